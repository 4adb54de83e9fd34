"""Scheduled jobs in the sans-IO core and the hooks (issue 15, item 1), differential against
``huggingface_hub`` 2.4: the create bodies (plain and uv) equal the official client's own requests,
captured from its HTTP client; the list query and the label filter; ``ScheduledJobInfo`` parsed field for
field as the official class; the route of each of the nine calls; bad input rejected before any request
(each case listed in docs/reliability.md); a 409 on trigger as a clear error."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import requests
from huggingface_hub import HfApi, hf_api
from huggingface_hub import Volume as HubVolume
from huggingface_hub import _jobs_api as official

from airflow_provider_hfjobs.exceptions import (
    HfJobsAPIError,
    HfJobsConcurrencyError,
    HfJobsInputError,
    HfJobsNotFoundError,
)
from airflow_provider_hfjobs.hooks.hfjobs import (
    HfJobsAsyncHook,
    HfJobsHook,
    LastJobInfo,
    ScheduledJobInfo,
    _recent_credentials,
)
from airflow_provider_hfjobs.jobs import (
    NAMESPACE,
    Volume,
    build_scheduled_job_spec,
    build_scheduled_uv_job_spec,
    create_scheduled_job_call,
    delete_scheduled_job_call,
    error_for_response,
    inspect_scheduled_job_call,
    list_scheduled_jobs_call,
    resume_scheduled_job_call,
    suspend_scheduled_job_call,
    trigger_error,
    trigger_scheduled_job_call,
    update_scheduled_job_labels_call,
    update_scheduled_job_schedule_call,
)

SCHEDULED = "6abb8dc9c617607c354d45f4"
JOB = "687fb701029421ae5549d998"
OWNER = {"id": "5e9ecfc04957053f60648a3e", "name": "alice", "type": "user"}


# ------------------------------------------------------------------- the official client's own requests
class Captured:
    """Requests the official client sent through its own HTTP client (``httpx2``), answered by ``reply``."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.requests: list[httpx2.Request] = []

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return httpx2.Response(200, json=self.reply)

    @property
    def body(self) -> Any:
        return json.loads(self.requests[-1].content)


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``capture(reply)``: route every request of ``huggingface_hub`` to a recorder answering ``reply``."""

    def start(reply: Any) -> Captured:
        captured = Captured(reply)
        client = httpx2.Client(transport=httpx2.MockTransport(captured.handle))
        monkeypatch.setattr(hf_api, "get_session", lambda: client)
        return captured

    yield start


def hub() -> HfApi:
    return HfApi(endpoint="http://hub.test", token="hf_x")


def hub_volumes(volumes: list[Any] | None) -> list[HubVolume] | None:
    if volumes is None:
        return None
    return [HubVolume(**(v if isinstance(v, dict) else v.to_xcom())) for v in volumes]


SCHEDULED_SPECS: list[dict[str, Any]] = [
    dict(image="python:3.12", command=["python", "-c", "print(1)"], schedule="@hourly"),
    dict(image="ubuntu", command=["echo", "hi"], schedule="*/5 * * * *", suspend=True, concurrency=False),
    dict(
        image="hf.co/spaces/alice/duckdb", command=["duckdb"], schedule="0 9 * * 1", concurrency=True,
        env={"A": "1"}, secrets={"S": "s"}, flavor="a10g-small", timeout="1.5h", attempts=3, name="nightly",
        labels={"team": "ml"},
        volumes=[{"type": "bucket", "source": "alice/ckpts", "mountPath": "/ckpts", "path": "run-1"}],
        expose=[8000], expose_public=[7860], resource_group_id="66f1a2b3c4d5e6f708192a3b",
    ),
    dict(
        image="pytorch/pytorch:2.6.0-cuda12.4-cudnn9-devel", command=["python", "train.py"], schedule="@weekly",
        suspend=False, labels={"name": "from-labels", "env": "prod"}, timeout=600,
        volumes=[Volume(type="dataset", source="o/d", mount_path="/data")],
    ),
    dict(image="python:3.12", command=["x"], schedule="@annually", env={}, secrets={}, expose=[], volumes=[]),
]  # fmt: skip


@pytest.mark.parametrize("spec", SCHEDULED_SPECS)
def test_create_body_equals_the_official_clients_request(spec: dict[str, Any], capture: Any) -> None:
    recorder = capture({"id": SCHEDULED, "owner": OWNER})
    hub().create_scheduled_job(**{**spec, "volumes": hub_volumes(spec.get("volumes"))}, namespace="alice")
    (request,) = recorder.requests
    ours = build_scheduled_job_spec(**spec)
    assert (request.method, request.url.path) == ("POST", "/api/scheduled-jobs/alice")
    assert json.dumps(ours) == json.dumps(recorder.body)  # same keys, same order, same values
    assert "ssh" not in ours["jobSpec"] and "network" not in ours["jobSpec"]
    call = create_scheduled_job_call(ours, "alice")
    assert (call.method, call.path, call.body, call.idempotent) == (
        "POST", "/api/scheduled-jobs/alice", ours, False,
    )  # fmt: skip


UV_SPECS: list[dict[str, Any]] = [
    dict(script="lighteval", script_args=["endpoint", "inference-providers", "model_name=x", "lighteval|gsm8k|0|0"],
         dependencies=["lighteval"], flavor="a10g-small", schedule="@weekly"),
    dict(script="https://example.com/sft.py?raw=1", script_args=["--epochs", "3"], dependencies=["trl", "torch>=2"],
         python="3.11", schedule="0 3 * * *", suspend=True, concurrency=True, env={"A": "1"}, labels={"team": "ml"}),
    dict(script="python", script_args=["-c", "print(1)"], schedule="@daily", image="ghcr.io/me/uv:latest",
         name="tiny", timeout="10m", attempts=2),
]  # fmt: skip


@pytest.mark.parametrize("spec", UV_SPECS)
def test_uv_body_equals_the_official_clients_request(spec: dict[str, Any], capture: Any) -> None:
    recorder = capture({"id": SCHEDULED, "owner": OWNER})
    with warnings.catch_warnings():  # create_scheduled_uv_job is experimental in huggingface_hub
        warnings.simplefilter("ignore")
        hub().create_scheduled_uv_job(**spec, namespace="alice")
    ours = build_scheduled_uv_job_spec(**spec)
    assert json.dumps(ours) == json.dumps(recorder.body)
    assert ours["jobSpec"]["command"][:2] == ["uv", "run"]


def test_a_uv_file_travels_inside_the_spec(tmp_path: Path) -> None:
    """A local script is read through the caller's ``read_file`` and shipped base64 in the spec (the
    official client uploads it to a bucket instead, which the local server cannot serve)."""
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    body = build_scheduled_uv_job_spec(
        str(script),
        schedule="@daily",
        is_file=lambda p: p == str(script),
        read_file=lambda p: Path(p).read_bytes(),
    )
    spec = body["jobSpec"]
    assert spec["command"][:2] == ["bash", "-c"] and spec["command"][3] == "train.py"
    assert "UV_SCRIPT_ENCODED" in spec["environment"]
    assert spec["labels"]["name"] == official._default_job_name_from_script(str(script), [])
    with pytest.raises(HfJobsInputError, match="does not exist"):
        build_scheduled_uv_job_spec(str(script), schedule="@daily")  # no look at the disk: no file


# --------------------------------------------------------------------------------------- list and labels
LISTED = [
    {"id": "a" * 24, "owner": OWNER, "jobSpec": {"labels": {"team": "ml", "env": "prod"}}},
    {"id": "b" * 24, "owner": OWNER, "jobSpec": {"labels": {"team": "ml", "env": "dev"}}},
    {"id": "c" * 24, "owner": OWNER, "jobSpec": {"labels": None}},
    {"id": "d" * 24, "owner": OWNER, "jobSpec": {}},
]


@pytest.mark.parametrize(
    "labels", [None, {}, {"team": "ml"}, {"team": "ml", "env": "prod"}, {"env": "dev", "team": "ml"}]
)
def test_list_sends_the_first_label_and_filters_the_rest_as_the_official_client(
    labels: dict[str, str] | None, capture: Any
) -> None:
    recorder = capture(LISTED)
    theirs = hub().list_scheduled_jobs(labels=labels, namespace="alice")
    call = list_scheduled_jobs_call(labels, "alice")
    sent = recorder.requests[0].url
    assert call.method == "GET" and call.path == sent.raw_path.decode()
    ours = call.result(200, json.dumps(LISTED).encode(), "http://hub.test")
    assert [job.id for job in ours] == [job.id for job in theirs]


def test_the_list_query_before_the_namespace_is_known() -> None:
    call = list_scheduled_jobs_call({"team": "ml", "env": "prod"})
    assert call.needs_namespace and NAMESPACE in call.route
    assert call.in_namespace("my-org").path == "/api/scheduled-jobs/my-org?label=team%3Dml"
    assert call.in_namespace("bob").action == "list scheduled jobs in namespace 'bob'"


def test_a_list_that_is_not_a_list_is_an_api_error() -> None:
    with pytest.raises(HfJobsAPIError, match="not a list of scheduled jobs"):
        list_scheduled_jobs_call(None, "alice").result(200, b'{"id": "x"}', "http://hub.test")


# ------------------------------------------------------------------------------------------------ parsing
SAMPLE = {
    "id": SCHEDULED, "createdAt": "2026-07-22T16:06:25.079Z",
    "jobSpec": {
        "spaceId": None, "dockerImage": "python:3.12", "command": ["python", "-c", "print(1)"], "arguments": [],
        "environment": {"A": "1"}, "secrets": ["HF_TOKEN"], "flavor": "cpu-basic", "timeout": 1800,
        "tags": ["t"], "arch": "amd64", "labels": {"name": "python-3-12-1a2b3c4d", "team": "ml"},
        "volumes": [{"type": "bucket", "source": "alice/ckpts", "mountPath": "/ckpts", "readOnly": False}],
        "retry": 1, "expose": {"ports": [8000, 7860], "portsPublic": [7860]},
    },
    "schedule": "@hourly", "suspend": False, "concurrency": False,
    "status": {"lastJob": {"id": JOB, "at": "2026-07-22T17:00:01.5Z"}, "nextJobRunAt": "2026-07-22T18:00:00.000Z"},
    "owner": OWNER, "updatedAt": "2026-07-22T16:06:25.079Z",
}  # fmt: skip


def test_a_scheduled_job_parses_as_the_official_client_parses_it() -> None:
    ours = ScheduledJobInfo.from_api(SAMPLE)
    theirs = official.ScheduledJobInfo(**SAMPLE)
    assert (ours.id, ours.created_at, ours.schedule, ours.suspend, ours.concurrency) == (
        theirs.id, theirs.created_at, theirs.schedule, theirs.suspend, theirs.concurrency,
    )  # fmt: skip
    assert (ours.owner_id, ours.owner_name, ours.owner_type) == (
        theirs.owner.id, theirs.owner.name, theirs.owner.type,
    )  # fmt: skip
    assert ours.last_job == LastJobInfo(theirs.status.last_job.id, theirs.status.last_job.at)
    assert ours.next_job_run_at == theirs.status.next_job_run_at
    spec, their_spec = ours.job_spec, theirs.job_spec
    for name in ("docker_image", "space_id", "command", "arguments", "environment", "flavor", "timeout", "tags",
                 "arch", "labels", "retry", "expose", "expose_public"):  # fmt: skip
        assert getattr(spec, name) == getattr(their_spec, name), name
    assert [v.to_dict() for v in spec.volumes] == [v.to_dict() for v in their_spec.volumes]
    assert spec.secret_names == their_spec.secrets == ["HF_TOKEN"] and spec.attempts == 2
    assert spec.image == "python:3.12"


def test_snake_case_a_first_run_and_xcom() -> None:
    """Snake_case keys are read too (as the official class does); before its first run a scheduled job
    has no ``lastJob``; ``to_dict`` is JSON-safe with secret names only."""
    data = {
        "id": SCHEDULED, "owner": OWNER, "created_at": "2026-07-22T16:06:25Z", "schedule": "0 9 * * 1",
        "job_spec": {"space_id": "alice/duckdb", "secrets": {"S": "secret-value"}, "timeoutSeconds": 60},
        "status": {"last_job": None, "next_job_run_at": "2026-07-27T09:00:00Z"},
    }  # fmt: skip
    info = ScheduledJobInfo.from_api(data)
    theirs = official.ScheduledJobInfo(**data)
    assert info.last_job is None and theirs.status.last_job is None
    assert info.next_job_run_at == theirs.status.next_job_run_at
    assert info.job_spec.image == "hf.co/spaces/alice/duckdb" and info.job_spec.timeout == 60
    dumped = info.to_dict()
    assert json.loads(json.dumps(dumped)) == dumped and "secret-value" not in json.dumps(dumped)
    assert dumped["next_job_run_at"] == "2026-07-27T09:00:00.000Z" and dumped["job_spec"]["secret_names"] == [
        "S"
    ]
    assert ScheduledJobInfo.from_api(SAMPLE).to_dict()["last_job"] == {
        "id": JOB,
        "at": "2026-07-22T17:00:01.500Z",
    }


@pytest.mark.parametrize(
    "data",
    [
        [SAMPLE],
        {"owner": OWNER},
        {"id": ""},
        {"id": True},
        {**SAMPLE, "jobSpec": ["python"]},
        {**SAMPLE, "status": "active"},
        {**SAMPLE, "status": {"lastJob": {"at": "2026-07-22T17:00:01Z"}}},
        {**SAMPLE, "status": {"lastJob": "abc"}},
        {**SAMPLE, "status": {"nextJobRunAt": "tomorrow"}},
        {**SAMPLE, "createdAt": "yesterday"},
        {**SAMPLE, "owner": "alice"},
        {**SAMPLE, "schedule": 5},
        {**SAMPLE, "suspend": "no"},
    ],
)
def test_malformed_answers_are_one_api_error(data: Any) -> None:
    with pytest.raises(HfJobsAPIError, match="not a scheduled job") as info:
        ScheduledJobInfo.from_api(data)
    assert info.value.status_code == 200


# ------------------------------------------------------------------------------------------------ routes
def test_each_scheduled_route_is_described_once_with_the_official_path_method_and_body() -> None:
    calls = {
        "create": create_scheduled_job_call({"schedule": "@daily"}, "alice"),
        "list": list_scheduled_jobs_call({"team": "ml"}, "alice"),
        "inspect": inspect_scheduled_job_call(SCHEDULED, "alice"),
        "delete": delete_scheduled_job_call(SCHEDULED, "alice"),
        "suspend": suspend_scheduled_job_call(SCHEDULED, "alice"),
        "resume": resume_scheduled_job_call(SCHEDULED, "alice"),
        "schedule": update_scheduled_job_schedule_call(SCHEDULED, "0 9 * * 1", "alice"),
        "run": trigger_scheduled_job_call(SCHEDULED, "alice"),
        "labels": update_scheduled_job_labels_call(SCHEDULED, {"team": "ml"}, "alice"),
    }
    base = f"/api/scheduled-jobs/alice/{SCHEDULED}"
    shape = {name: (call.method, call.path, call.body, call.idempotent) for name, call in calls.items()}
    assert shape == {
        "create": ("POST", "/api/scheduled-jobs/alice", {"schedule": "@daily"}, False),
        "list": ("GET", "/api/scheduled-jobs/alice?label=team%3Dml", None, True),
        "inspect": ("GET", base, None, True),
        "delete": ("DELETE", base, None, True),
        "suspend": ("POST", f"{base}/suspend", None, True),
        "resume": ("POST", f"{base}/resume", None, True),
        "schedule": ("POST", f"{base}/schedule", {"schedule": "0 9 * * 1"}, True),
        "run": ("POST", f"{base}/run", None, False),
        "labels": ("PUT", f"{base}/labels", {"labels": {"team": "ml"}}, True),
    }
    assert calls["delete"].result(200, b"", "http://hub.test") is None  # the answer is not read
    run = calls["run"].result(200, json.dumps({"id": JOB, "owner": OWNER}).encode(), "http://hub.test/")
    assert (run.id, run.url) == (JOB, f"http://hub.test/jobs/alice/{JOB}")
    assert calls["inspect"].action == f"inspect scheduled job {SCHEDULED}"


def test_a_409_on_trigger_names_concurrency() -> None:
    conflict = error_for_response(
        409, b'{"error": "A job is already running"}', {"x-request-id": "r-1"},
        action=f"trigger scheduled job {SCHEDULED}", namespace="alice", job_id=SCHEDULED, retried=False,
    )  # fmt: skip
    clear = trigger_error(conflict, SCHEDULED)
    assert isinstance(clear, HfJobsConcurrencyError) and isinstance(clear, HfJobsAPIError)
    assert "concurrent runs" in str(clear) and "concurrency=True" in str(clear)
    assert "A job is already running" in str(clear) and (clear.status_code, clear.request_id) == (409, "r-1")
    missing = error_for_response(404, b"", None, action="x", namespace="alice", job_id=SCHEDULED)
    assert trigger_error(missing, SCHEDULED) is missing and isinstance(missing, HfJobsNotFoundError)


# ------------------------------------------------------------------------------------------------ bad input
def create(**kwargs: Any):
    return lambda hook: hook.create_scheduled_job(
        **{"image": "python:3.12", "command": ["true"], "schedule": "@daily", **kwargs}
    )


def create_uv(script: str, **kwargs: Any):
    return lambda hook: hook.create_scheduled_uv_job(script, **{"schedule": "@daily", **kwargs})


# (case id, call, what the message must contain)
CASES = [
    ("schedule-alias-typo", create(schedule="@hourley"), "Did you mean '@hourly'?"),
    ("schedule-four-fields", create(schedule="0 9 * *"), "is not a cron expression of 5 fields"),
    (
        "schedule-out-of-range",
        create(schedule="61 * * * *"),
        "schedule '61 * * * *' is not a cron expression",
    ),
    ("schedule-missing", create(schedule=""), "schedule must be a cron expression"),
    ("schedule-suspend-not-bool", create(suspend="yes"), "suspend must be True, False or None"),
    ("schedule-concurrency-not-bool", create(concurrency=1), "concurrency must be True, False or None"),
    ("schedule-job-spec-checked", create(env={"EPOCHS": 3}), "env['EPOCHS'] must be a string"),
    ("schedule-labels-invalid", create(labels={"version": "1.2"}), "labels['version']"),
    ("schedule-uv-schedule-typo", create_uv("lighteval", schedule="@dayly"), "Did you mean '@daily'?"),
    ("schedule-uv-script-missing", create_uv("./no/such.py"), "does not exist"),
    ("scheduled-id-path", lambda hook: hook.inspect_scheduled_job("../x"), "is not a scheduled job id"),
    ("scheduled-delete-bad-id", lambda hook: hook.delete_scheduled_job("a/b"), "scheduled_job_id 'a/b'"),
    ("scheduled-suspend-bad-id", lambda hook: hook.suspend_scheduled_job(""), "is not a scheduled job id"),
    ("scheduled-resume-bad-id", lambda hook: hook.resume_scheduled_job(None), "is not a scheduled job id"),
    ("scheduled-trigger-bad-id", lambda hook: hook.trigger_scheduled_job("x?y"), "is not a scheduled job id"),
    (
        "scheduled-update-schedule-typo",
        lambda hook: hook.update_scheduled_job_schedule(SCHEDULED, schedule="0 0 * * * *"),
        "is not a cron expression of 5 fields",
    ),
    (
        "scheduled-labels-update-invalid",
        lambda hook: hook.update_scheduled_job_labels(SCHEDULED, labels={"a b": "x"}),
        "labels key 'a b'",
    ),
    (
        "scheduled-labels-update-missing",
        lambda hook: hook.update_scheduled_job_labels(SCHEDULED, labels=None),
        "labels is required",
    ),
    (
        "scheduled-list-labels-invalid",
        lambda hook: hook.list_scheduled_jobs(labels={"team": "m l"}),
        "labels['team']",
    ),
    (
        "scheduled-namespace-slash",
        lambda hook: hook.inspect_scheduled_job(SCHEDULED, namespace="org/team"),
        "not a Hub user",
    ),
]


@pytest.fixture(params=["namespace", "no-namespace"])
def offline_hook(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> HfJobsHook:
    """A hook whose every request fails the test; without a namespace, resolving one would be a whoami
    request, so bad input must fail before even that."""

    def no_http(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("bad input must be rejected before any request")

    monkeypatch.setattr(requests.Session, "request", no_http)
    extra = {"namespace": "alice"} if request.param == "namespace" else {}
    conn = {"conn_type": "hf_jobs", "host": "http://127.0.0.1:9", "password": "hf_x", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_HF_BAD_SCHEDULED", json.dumps(conn))
    return HfJobsHook("hf_bad_scheduled")


@pytest.mark.parametrize(("case", "call", "needle"), CASES, ids=[case for case, _, _ in CASES])
def test_rejected_before_any_request(offline_hook: HfJobsHook, case: str, call: Any, needle: str) -> None:
    with pytest.raises(HfJobsInputError) as info:
        call(offline_hook)
    assert needle in str(info.value), str(info.value)


async def test_the_async_inspect_rejects_a_bad_id_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    _recent_credentials.clear()
    conn = {
        "conn_type": "hf_jobs",
        "host": "http://127.0.0.1:9",
        "password": "hf_x",
    }  # no namespace: no whoami
    monkeypatch.setenv("AIRFLOW_CONN_HF_BAD_SCHEDULED_ASYNC", json.dumps(conn))
    async with HfJobsAsyncHook("hf_bad_scheduled_async") as hook:
        with pytest.raises(HfJobsInputError, match="is not a scheduled job id"):
            await hook.inspect_scheduled_job("../x")
        assert hook._client is None and hook._kept is None  # nothing was ever opened


def test_the_cases_are_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.MULTILINE))
    assert {case for case, _, _ in CASES} <= documented
