"""Bad input is rejected before any request, with a message that names the field and the fix.

The table is also documented in docs/reliability.md (a test keeps the two in step).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
from airflow_provider_hfjobs.jobs import MAX_INLINE_SCRIPT_ENCODED_BYTES
from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

JOB = "687fb701029421ae5549d998"
BIG_SCRIPT = "x = 1\n" * (MAX_INLINE_SCRIPT_ENCODED_BYTES // 6)


def run(**kwargs: Any):
    return lambda hook: hook.run_job(**{"image": "python:3.12", "command": ["true"], **kwargs})


def uv(script: str, **kwargs: Any):
    return lambda hook: hook.run_uv_job(script, **kwargs)


# (case id, call, what the message must contain)
CASES = [
    ("timeout-no-unit", run(timeout="1.5"), "timeout='1.5'"),
    ("timeout-upper-unit", run(timeout="2H"), "lower-case units"),
    ("timeout-negative", run(timeout=-5), "positive"),
    ("timeout-bool", run(timeout=True), "timeout"),
    ("image-empty", run(image=""), "image is required"),
    ("space-without-name", run(image="hf.co/spaces/alice"), "names no Space"),
    ("command-string", run(command="python -c 1"), "command must be a list"),
    ("command-empty", run(command=[]), "command is empty"),
    ("command-non-string", run(command=["python", 3]), "command[1]"),
    ("env-non-string", run(env={"EPOCHS": 3}), "env['EPOCHS'] must be a string"),
    ("env-bad-name", run(env={"1ST": "x"}), "not a valid environment variable name"),
    ("secret-non-string", run(secrets={"TOKEN": 123456}), "secrets['TOKEN'] must be a string"),
    ("env-and-secret", run(env={"KEY": "a"}, secrets={"KEY": "b"}), "both env and secrets"),
    ("label-key-space", run(labels={"my team": "ml"}), "labels key 'my team'"),
    ("label-key-long", run(labels={"k" * 101: "v"}), "1-100 letters"),
    ("label-value-dot", run(labels={"version": "1.2"}), "labels['version']"),
    ("labels-not-dict", run(labels=["team"]), "labels must be a dict"),
    ("name-twice", run(labels={"name": "a"}, name="b"), "not both"),
    ("flavor-empty", run(flavor=""), "flavor must be a hardware name"),
    ("uv-script-missing", uv("/no/such/train.py"), "does not exist"),
    ("uv-script-empty", uv(""), "script is required"),
    ("uv-script-too-large", uv(BIG_SCRIPT), "Serve it at an http(s) URL"),
    ("uv-arg-non-string", uv("https://e.x/s.py", script_args=["--epochs", 3]), "script_args[1]"),
    ("uv-dependency-empty", uv("https://e.x/s.py", dependencies=[""]), "dependencies"),
    ("uv-python-empty", uv("https://e.x/s.py", python=""), "python must be a version"),
    ("uv-env-clash", uv("print(1)\n", env={"UV_SCRIPT_ENCODED": "x"}), "UV_SCRIPT_ENCODED"),
    ("list-unknown-stage", lambda hook: list(hook.list_jobs(status="FINISHED")), "not a job stage"),
    ("job-id-path", lambda hook: hook.inspect_job("../../etc"), "is not a job id"),
    ("namespace-slash", lambda hook: hook.inspect_job(JOB, namespace="org/team"), "not a Hub user"),
    ("tail-negative", lambda hook: list(hook.fetch_job_logs(JOB, tail=-1)), "tail must be"),
    ("wait-poll-zero", lambda hook: hook.wait_for_job(JOB, poll_interval=0), "poll_interval"),
]


@pytest.mark.parametrize(("case", "call", "needle"), CASES, ids=[case for case, _, _ in CASES])
def test_rejected_before_any_request(hook: HfJobsHook, case: str, call, needle: str) -> None:
    with pytest.raises(HfJobsInputError) as info:
        call(hook)
    message = str(info.value)
    assert needle in message, message
    assert "123456" not in message  # a secret's value is never echoed


@pytest.mark.parametrize("value", [0, -1, True, "5"])
def test_operator_poll_interval(value: Any) -> None:
    with pytest.raises(HfJobsInputError, match="poll_interval must be a positive number"):
        HfJobRunOperator(task_id="t", image="python:3.12", command=["true"], poll_interval=value)


def test_connection_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(HfJobsInputError, match="no Airflow connection 'hf_default' and no HF_TOKEN"):
        HfJobsHook().credentials  # noqa: B018
    with pytest.raises(HfJobsInputError, match="connection 'hf_missing' does not exist"):
        HfJobsHook("hf_missing").credentials  # noqa: B018
    monkeypatch.setenv("AIRFLOW_CONN_HF_NOTOKEN", '{"conn_type": "hf_jobs", "host": "http://127.0.0.1:9"}')
    with pytest.raises(HfJobsInputError, match="has no token"):
        HfJobsHook("hf_notoken").credentials  # noqa: B018
    with pytest.raises(HfJobsInputError, match="namespace"):
        HfJobsHook(namespace="bad/namespace")


def test_the_table_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.MULTILINE))
    assert {case for case, _, _ in CASES} <= documented
