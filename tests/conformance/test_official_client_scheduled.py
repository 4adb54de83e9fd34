"""The official ``huggingface_hub`` 2.4 client and ``hf jobs scheduled`` CLI, unchanged, drive scheduled jobs
on the local server: every ``HfApi`` scheduled-job method and CLI command, each answer parsed by the client
with the right values."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub._jobs_api import DEFAULT_UV_IMAGE, JobInfo, ScheduledJobInfo
from huggingface_hub.errors import HfHubHTTPError, JobNotFoundError

from airflow_provider_hfjobs.local import LocalJobsServer

pytestmark = [pytest.mark.conformance, pytest.mark.airflow_free]

TOKEN = "hf_conformance_scheduled_token"
NS = "conf-sched"
HF = str(Path(sys.executable).parent / "hf")
NEVER_SOON = "0 0 1 1 *"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=4) as srv:
        yield srv


@pytest.fixture(scope="module")
def api(server: LocalJobsServer) -> HfApi:
    return HfApi(endpoint=server.url, token=TOKEN)


@pytest.fixture(scope="module")
def hf(server: LocalJobsServer, tmp_path_factory: pytest.TempPathFactory):
    """``hf jobs scheduled ...`` with the environment of ``test_hf_cli.py``; ``--json`` output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=server.url,
        HF_TOKEN=TOKEN,
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_EXPERIMENTAL_WARNING="1",
        HF_HOME=str(tmp_path_factory.mktemp("hf-home")),
        NO_COLOR="1",
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HF, "jobs", "scheduled", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    return run


def finished(api: HfApi, job_id: str) -> JobInfo:
    (job,) = api.wait_for_job(job_id=[job_id], namespace=NS, timeout=60)
    return job


def test_every_scheduled_job_method(api: HfApi, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    code = "\n".join([
        "import os, time",
        "print('key', len(os.environ['KEY']), flush=True)",
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)",
    ])  # fmt: skip
    created = api.create_scheduled_job(
        image="python:3.12",
        command=["python", "-c", code],
        schedule="@daily",
        env={"MODE": "nightly"},
        secrets={"KEY": "abcd"},
        timeout="10m",
        name="nightly",
        labels={"team": "ml"},
        namespace=NS,
    )
    assert isinstance(created, ScheduledJobInfo) and len(created.id) == 24
    assert created.schedule == "@daily" and created.suspend is False and created.concurrency is False
    assert created.owner.name == NS and created.owner.type == "user"
    spec = created.job_spec
    assert spec.docker_image == "python:3.12" and spec.command == ["python", "-c", code]
    assert spec.environment == {"MODE": "nightly"} and spec.secrets == ["KEY"] and spec.timeout == 600
    assert spec.labels == {"team": "ml", "name": "nightly"} and spec.flavor == "cpu-basic"
    assert created.status.last_job is None
    next_run = created.status.next_job_run_at
    assert next_run > datetime.now(UTC) and (next_run.hour, next_run.minute) == (0, 0)
    sid = created.id

    other = api.create_scheduled_job(
        image="python:3.12", command=["python", "-c", "1"], schedule=NEVER_SOON, labels={"team": "web"},
        suspend=True, concurrency=True, namespace=NS,
    )  # fmt: skip
    assert other.suspend is True and other.concurrency is True and other.status.next_job_run_at is None
    assert {sid, other.id} <= {item.id for item in api.list_scheduled_jobs(namespace=NS)}
    assert [item.id for item in api.list_scheduled_jobs(labels={"team": "ml"}, namespace=NS)] == [sid]
    both = api.list_scheduled_jobs(labels={"team": "ml", "name": "nightly"}, namespace=NS)
    assert [item.id for item in both] == [sid]

    api.suspend_scheduled_job(scheduled_job_id=sid, namespace=NS)
    suspended = api.inspect_scheduled_job(scheduled_job_id=sid, namespace=NS)
    assert suspended.suspend is True and suspended.status.next_job_run_at is None
    api.resume_scheduled_job(scheduled_job_id=sid, namespace=NS)
    assert api.inspect_scheduled_job(scheduled_job_id=sid, namespace=NS).status.next_job_run_at == next_run

    rescheduled = api.update_scheduled_job_schedule(scheduled_job_id=sid, schedule="0 9 * * 1", namespace=NS)
    assert rescheduled.schedule == "0 9 * * 1"
    assert (rescheduled.status.next_job_run_at.weekday(), rescheduled.status.next_job_run_at.hour) == (0, 9)

    relabeled = api.update_scheduled_job_labels(
        scheduled_job_id=sid, labels={"team": "infra", "name": "nightly"}, namespace=NS
    )
    assert relabeled.job_spec.labels == {"team": "infra", "name": "nightly"}

    try:
        run = api.trigger_scheduled_job(scheduled_job_id=sid, namespace=NS)
        assert isinstance(run, JobInfo) and run.initiator.type == "scheduled-job" and run.initiator.id == sid
        assert run.labels == {"team": "infra", "name": "nightly"} and run.secrets == ["KEY"]
        (running,) = api.wait_for_job(job_id=[run.id], namespace=NS, timeout=60, stages=["RUNNING"])
        assert running.status.stage == "RUNNING"
        with pytest.raises(HfHubHTTPError) as refused:
            api.trigger_scheduled_job(scheduled_job_id=sid, namespace=NS)
        assert refused.value.response.status_code == 409 and "concurrency" in str(refused.value)
    finally:
        gate.touch()
    assert finished(api, run.id).status.stage == "COMPLETED"
    assert "key 4" in list(api.fetch_job_logs(job_id=run.id, namespace=NS))
    last_job = api.inspect_scheduled_job(scheduled_job_id=sid, namespace=NS).status.last_job
    assert last_job is not None and last_job.id == run.id

    for scheduled_id in (sid, other.id):
        api.delete_scheduled_job(scheduled_job_id=scheduled_id, namespace=NS)
        with pytest.raises(JobNotFoundError):
            api.inspect_scheduled_job(scheduled_job_id=scheduled_id, namespace=NS)


def test_create_scheduled_uv_job_of_a_url_and_a_command(api: HfApi) -> None:
    url = api.create_scheduled_uv_job(
        "https://example.com/s.py", script_args=["--x", "1"], dependencies=["requests"],
        schedule="@hourly", namespace=NS,
    )  # fmt: skip
    assert url.job_spec.docker_image == DEFAULT_UV_IMAGE
    assert url.job_spec.command == ["uv", "run", "--with", "requests", "https://example.com/s.py", "--x", "1"]
    assert url.job_spec.labels["name"]  # the client's default name
    command = api.create_scheduled_uv_job(
        "python", script_args=["-c", "print(1)"], schedule="@weekly", namespace=NS
    )
    assert command.job_spec.command == ["uv", "run", "python", "-c", "print(1)"]
    assert command.status.next_job_run_at.weekday() == 6  # Sunday midnight
    for item in (url, command):
        api.delete_scheduled_job(scheduled_job_id=item.id, namespace=NS)


def test_errors_are_the_official_ones(api: HfApi) -> None:
    with pytest.raises(HfHubHTTPError) as bad:
        api.create_scheduled_job(image="python:3.12", command=["true"], schedule="@dayly", namespace=NS)
    assert bad.value.response.status_code == 400 and "@daily" in str(bad.value)
    with pytest.raises(HfHubHTTPError) as bad:
        api.create_scheduled_job(
            image="python:3.12", command=["true"], schedule="@daily", flavor="cpu-huge", namespace=NS
        )
    assert bad.value.response.status_code == 400 and "flavor" in str(bad.value)
    with pytest.raises(JobNotFoundError):
        api.trigger_scheduled_job(scheduled_job_id="0" * 24, namespace=NS)


def json_of(result: subprocess.CompletedProcess[str]):
    """The JSON ``--json`` prints first (hints may follow it)."""
    assert result.returncode == 0, result.stdout + result.stderr
    return json.JSONDecoder().raw_decode(result.stdout.lstrip())[0]


def test_hf_jobs_scheduled_commands(hf, api: HfApi) -> None:
    created = json_of(
        hf("run", "--json", "@hourly", "--name", "cli-nightly", "-l", "team=cli", "-s", "KEY=value",
           "python:3.12", "python", "-c", "import os; print('cli key', len(os.environ['KEY']))")
    )  # fmt: skip
    sid = created["id"]
    assert re.fullmatch(r"[0-9a-f]{24}", sid) and created["name"] == "cli-nightly"

    listed = json_of(hf("ps", "--json", "--label", "team=cli"))
    assert [item["id"] for item in listed] == [sid]
    assert listed[0]["schedule"] == "@hourly" and listed[0]["next_run"] != "N/A"
    assert listed[0]["job_spec"]["secrets"] == ["KEY"]
    (inspected,) = json_of(hf("inspect", "--json", sid))
    assert inspected["name"] == "cli-nightly" and inspected["job_spec"]["labels"]["team"] == "cli"

    assert json_of(hf("suspend", "--json", sid))["id"] == sid
    assert json_of(hf("ps", "--json", "--label", "team=cli")) == []  # suspended ones are hidden by default
    (hidden,) = json_of(hf("ps", "-a", "--json", "--label", "team=cli"))
    assert hidden["suspend"] is True and hidden["next_run"] == "N/A"
    assert hf("resume", "--json", sid).returncode == 0
    assert api.inspect_scheduled_job(scheduled_job_id=sid, namespace=NS).suspend is False

    assert json_of(hf("reschedule", "--json", sid, "*/30 * * * *"))["schedule"] == "*/30 * * * *"
    assert json_of(hf("labels", "--json", sid, "--name", "renamed"))["name"] == "renamed"
    labels = api.inspect_scheduled_job(scheduled_job_id=sid, namespace=NS).job_spec.labels
    assert labels == {"team": "cli", "name": "renamed"}

    triggered = json_of(hf("trigger", "--json", sid))
    run = finished(api, triggered["id"])
    assert run.status.stage == "COMPLETED" and run.initiator.id == sid and run.labels["name"] == "renamed"
    assert "cli key 5" in list(api.fetch_job_logs(job_id=run.id, namespace=NS))

    assert json_of(hf("delete", "--json", sid))["id"] == sid
    gone = hf("inspect", sid)
    assert gone.returncode != 0 and "Job Not Found" in gone.stdout + gone.stderr


def test_hf_jobs_scheduled_run_refuses_a_bad_schedule(hf) -> None:
    result = hf("run", "every day", "python:3.12", "python", "-c", "1")
    assert result.returncode != 0 and "every day" in result.stdout + result.stderr
