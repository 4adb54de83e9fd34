"""Scheduled jobs through the hooks over real HTTP on 127.0.0.1 (issue 15, item 1): each of the nine
calls sends the method, path, query and body the official ``huggingface_hub`` 2.4 client sends, and reads
the answer; a 409 on trigger is a clear error naming concurrency; a trigger is sent at most once.

**Stand-in server, for now.** The local Jobs server gets its ``/api/scheduled-jobs`` routes in parallel;
until then these tests run against :class:`ScheduledStandIn`, a small threaded ``http.server`` in this
module that answers spec-shaped JSON (hf-jobs-api.md sections 2, 4, 8 and 11) and records every request.
Each call also goes through the official client to the same stand-in, and the two requests are compared.
Every wait is bounded; nothing sleeps.
"""

from __future__ import annotations

import itertools
import json
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from huggingface_hub import HfApi
from huggingface_hub import Volume as HubVolume

from airflow_provider_hfjobs.exceptions import (
    HfJobsConcurrencyError,
    HfJobsConnectionError,
    HfJobsNotFoundError,
    HfJobsServerError,
)
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, HfJobsHook, _recent_credentials
from airflow_provider_hfjobs.jobs import JobStage, RetryPolicy, build_scheduled_job_spec
from tests.integration.conftest import set_connection

pytestmark = pytest.mark.integration

TOKEN = "hf_scheduled_token_41c7"
NS = "alice"
OWNER = {"id": "5e9ecfc04957053f60648a3e", "name": NS, "type": "user"}
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.02)
#: A queued "answer" that drops the connection instead of answering.
DROP = 0


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any

    @property
    def shape(self) -> tuple[str, str, dict[str, list[str]], Any]:
        return self.method, self.path, parse_qs(self.query), self.body


class ScheduledStandIn(ThreadingHTTPServer):
    """Spec-shaped answers for whoami and the scheduled-job routes; ``fail`` queues answers (status, body)
    to give first on ``"<METHOD> <last path part>"``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.seen: list[Seen] = []
        self.scheduled: dict[str, dict[str, Any]] = {}
        #: Scheduled job id -> whether its latest run is still active.
        self.active: dict[str, bool] = {}
        self.fail: dict[str, list[tuple[int, Any]]] = {}
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    def __enter__(self) -> ScheduledStandIn:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def requests_to(self, suffix: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path.endswith(suffix)]

    def new_scheduled(self, body: dict[str, Any]) -> dict[str, Any]:
        """A scheduled job as the Hub answers a create (section 8): the spec echoed, secrets as names."""
        sid = f"{next(self._ids):024x}"
        spec = {**body["jobSpec"], "secrets": sorted(body["jobSpec"].get("secrets") or {})}
        data = {
            "id": sid, "createdAt": "2026-07-22T16:06:25.079Z", "jobSpec": spec, "schedule": body["schedule"],
            "suspend": body.get("suspend", False), "concurrency": body.get("concurrency", False),
            "status": {"lastJob": None, "nextJobRunAt": "2026-07-22T17:00:00.000Z"}, "owner": OWNER,
        }  # fmt: skip
        self.scheduled[sid] = data
        return data

    def run(self, scheduled: dict[str, Any]) -> tuple[int, Any]:
        if self.active.get(scheduled["id"]) and not scheduled["concurrency"]:
            return 409, {"error": "A job is already running for this scheduled job"}
        job_id = f"{next(self._ids) + 0x100:024x}"
        spec = scheduled["jobSpec"]
        job = {
            "id": job_id, "createdAt": "2026-07-22T16:10:00.000Z", "dockerImage": spec.get("dockerImage"),
            "spaceId": spec.get("spaceId"), "command": spec["command"], "flavor": spec.get("flavor"),
            "labels": spec.get("labels"), "owner": OWNER, "status": {"stage": "SCHEDULING", "message": None},
            "initiator": {"type": "scheduled-job", "id": scheduled["id"]},
        }  # fmt: skip
        scheduled["status"]["lastJob"] = {"id": job_id, "at": "2026-07-22T16:10:00.000Z"}
        self.active[scheduled["id"]] = True
        return 200, job

    def answer(
        self, method: str, parts: list[str], query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        if parts == ["api", "whoami-v2"]:
            return 200, {"type": "user", "id": OWNER["id"], "name": NS}
        if parts[:3] != ["api", "scheduled-jobs", NS]:
            return 404, {"error": "Not Found"}
        if len(parts) == 3:
            if method == "POST":
                return 200, self.new_scheduled(body)
            listed = list(self.scheduled.values())
            for label in query.get("label", []):
                key, _, value = label.partition("=")
                listed = [s for s in listed if (s["jobSpec"].get("labels") or {}).get(key) == value]
            return 200, listed
        scheduled = self.scheduled.get(parts[3])
        if scheduled is None:
            return 404, {"error": "Scheduled job not found"}
        action = parts[4] if len(parts) > 4 else None
        if action is None and method == "GET":
            return 200, scheduled
        if action is None and method == "DELETE":
            del self.scheduled[parts[3]]
            return 200, b""
        if action in ("suspend", "resume") and method == "POST":
            scheduled["suspend"] = action == "suspend"
            return 200, b""
        if action == "schedule" and method == "POST":
            scheduled["schedule"] = body["schedule"]
            return 200, scheduled
        if action == "run" and method == "POST":
            return self.run(scheduled)
        if action == "labels" and method == "PUT":
            scheduled["jobSpec"]["labels"] = body["labels"]
            return 200, scheduled
        return 405, {"error": f"{method} {action} not served by the stand-in"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ScheduledStandIn

    def _handle(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else None
        url = urlsplit(self.path)
        parts = [part for part in url.path.split("/") if part]
        with self.server.lock:
            headers = {name.lower(): value for name, value in self.headers.items()}
            self.server.seen.append(Seen(self.command, url.path, url.query, headers, body))
            queued = self.server.fail.get(f"{self.command} {parts[-1] if parts else ''}")
            if queued:
                status, answer = queued.pop(0)
            else:
                status, answer = self.server.answer(self.command, parts, parse_qs(url.query), body)
        if status == DROP:  # the request arrived, its answer is lost
            self.close_connection = True
            return
        payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[ScheduledStandIn]:
    with ScheduledStandIn() as server:
        yield server


@pytest.fixture
def hook(stand_in: ScheduledStandIn, monkeypatch: pytest.MonkeyPatch) -> Iterator[HfJobsHook]:
    set_connection(monkeypatch, "hf_scheduled", stand_in.url, TOKEN)  # no namespace: one whoami, then cached
    hook = HfJobsHook("hf_scheduled", retry_policy=FAST)
    yield hook
    hook.close()


@pytest.fixture
def hub(stand_in: ScheduledStandIn) -> HfApi:
    """The official client, pointed at the same stand-in."""
    return HfApi(endpoint=stand_in.url, token=TOKEN)


EVERY_ARGUMENT: dict[str, Any] = dict(
    image="hf.co/spaces/alice/trainer", command=["python", "train.py"], schedule="0 9 * * 1", suspend=False,
    concurrency=True, env={"EPOCHS": "3"}, secrets={"HF_TOKEN": "hf_secret_value"}, flavor="a10g-small",
    timeout="2h", attempts=3, name="nightly", labels={"team": "ml"}, expose=[8000], expose_public=[7860],
    resource_group_id="66f1a2b3c4d5e6f708192a3b",
)  # fmt: skip
VOLUME = {"type": "bucket", "source": "alice/checkpoints", "mountPath": "/checkpoints", "readOnly": False}


def pairs(seen: list[Seen]) -> tuple[list[Any], list[Any]]:
    """Ours and theirs, sent alternately."""
    return [s.shape for s in seen[0::2]], [s.shape for s in seen[1::2]]


# ---------------------------------------------------------------------------------------------- create
def test_create_sends_exactly_the_official_request(
    stand_in: ScheduledStandIn, hook: HfJobsHook, hub: HfApi
) -> None:
    ours = hook.create_scheduled_job(**EVERY_ARGUMENT, volumes=[VOLUME])
    hub.create_scheduled_job(**EVERY_ARGUMENT, volumes=[HubVolume(**VOLUME)], namespace=NS)
    mine, theirs = stand_in.requests_to(f"/api/scheduled-jobs/{NS}")
    assert mine.shape == theirs.shape
    assert mine.method == "POST" and mine.query == ""
    assert mine.body == build_scheduled_job_spec(**EVERY_ARGUMENT, volumes=[VOLUME])
    assert list(mine.body) == ["jobSpec", "schedule", "concurrency", "suspend"]
    assert list(mine.body["jobSpec"]) == list(theirs.body["jobSpec"])  # the same key order too
    assert (
        mine.headers["authorization"] == f"Bearer {TOKEN}"
        and mine.headers["content-type"] == "application/json"
    )

    assert (ours.schedule, ours.suspend, ours.concurrency, ours.owner_name) == ("0 9 * * 1", False, True, NS)
    assert ours.job_spec.space_id == "alice/trainer" and ours.job_spec.secret_names == ["HF_TOKEN"]
    assert ours.job_spec.labels == {"team": "ml", "name": "nightly"} and ours.last_job is None
    assert ours.next_job_run_at is not None and "hf_secret_value" not in json.dumps(ours.to_dict())
    assert len(stand_in.requests_to("/whoami-v2")) == 1  # the namespace is resolved once per hook


def test_a_uv_command_is_scheduled_as_the_official_client_schedules_it(
    stand_in: ScheduledStandIn, hook: HfJobsHook, hub: HfApi
) -> None:
    args = [
        "endpoint",
        "inference-providers",
        "model_name=openai/gpt-oss-20b,provider=auto",
        "lighteval|gsm8k|0|0",
    ]
    uv = dict(
        script_args=args, dependencies=["lighteval"], flavor="a10g-small", schedule="@weekly", suspend=True
    )
    hook.create_scheduled_uv_job("lighteval", **uv)
    with warnings.catch_warnings():  # create_scheduled_uv_job is experimental in huggingface_hub
        warnings.simplefilter("ignore")
        hub.create_scheduled_uv_job("lighteval", **uv, namespace=NS)
    mine, theirs = stand_in.requests_to(f"/api/scheduled-jobs/{NS}")
    assert mine.shape == theirs.shape
    assert mine.body["jobSpec"]["command"] == ["uv", "run", "--with", "lighteval", "lighteval", *args]


# ------------------------------------------------------------------------------- the other eight calls
def test_every_call_sends_the_official_request_and_reads_the_answer(
    stand_in: ScheduledStandIn, hook: HfJobsHook, hub: HfApi
) -> None:
    first = hook.create_scheduled_job(
        image="python:3.12",
        command=["python", "-c", "1"],
        schedule="@hourly",
        labels={"team": "ml", "env": "prod"},
    )
    other = hook.create_scheduled_job(
        image="python:3.12",
        command=["python", "-c", "2"],
        schedule="@daily",
        labels={"team": "ml", "env": "dev"},
    )
    sid = first.id
    stand_in.seen.clear()

    listed = hook.list_scheduled_jobs(labels={"team": "ml", "env": "prod"})
    their_list = hub.list_scheduled_jobs(labels={"team": "ml", "env": "prod"}, namespace=NS)
    everything = hook.list_scheduled_jobs()
    hub.list_scheduled_jobs(namespace=NS)
    inspected = hook.inspect_scheduled_job(sid)
    hub.inspect_scheduled_job(scheduled_job_id=sid, namespace=NS)
    assert hook.suspend_scheduled_job(sid) is None
    hub.suspend_scheduled_job(scheduled_job_id=sid, namespace=NS)
    suspended = hook.inspect_scheduled_job(sid).suspend
    hub.inspect_scheduled_job(scheduled_job_id=sid, namespace=NS)
    assert hook.resume_scheduled_job(sid) is None
    hub.resume_scheduled_job(scheduled_job_id=sid, namespace=NS)
    rescheduled = hook.update_scheduled_job_schedule(sid, schedule="*/5 * * * *")
    hub.update_scheduled_job_schedule(scheduled_job_id=sid, schedule="*/5 * * * *", namespace=NS)
    labeled = hook.update_scheduled_job_labels(sid, labels={"team": "research"})
    hub.update_scheduled_job_labels(scheduled_job_id=sid, labels={"team": "research"}, namespace=NS)
    assert hook.delete_scheduled_job(other.id) is None
    stand_in.new_scheduled({"jobSpec": {"command": ["x"]}, "schedule": "@daily"})  # theirs deletes another
    hub.delete_scheduled_job(scheduled_job_id=f"{3:024x}", namespace=NS)

    ours, theirs = pairs(stand_in.seen)
    base = f"/api/scheduled-jobs/{NS}"
    assert ours[:-1] == theirs[:-1] and ours[-1][0] == theirs[-1][0] == "DELETE"
    assert ours == [
        ("GET", base, {"label": ["team=ml"]}, None),  # the first label only, as the official client
        ("GET", base, {}, None),
        ("GET", f"{base}/{sid}", {}, None),
        ("POST", f"{base}/{sid}/suspend", {}, None),
        ("GET", f"{base}/{sid}", {}, None),
        ("POST", f"{base}/{sid}/resume", {}, None),
        ("POST", f"{base}/{sid}/schedule", {}, {"schedule": "*/5 * * * *"}),
        ("PUT", f"{base}/{sid}/labels", {}, {"labels": {"team": "research"}}),
        ("DELETE", f"{base}/{other.id}", {}, None),
    ]
    assert stand_in.requests_to(base)[0].query == "label=team%3Dml" == stand_in.requests_to(base)[1].query
    assert all(s.headers["authorization"] == f"Bearer {TOKEN}" for s in stand_in.seen)

    assert [s.id for s in listed] == [s.id for s in their_list] == [sid]  # env=dev filtered out here
    assert [s.id for s in everything] == [sid, other.id]
    assert (inspected.id, inspected.schedule, suspended) == (sid, "@hourly", True)
    assert (rescheduled.schedule, rescheduled.suspend) == ("*/5 * * * *", False)
    assert labeled.job_spec.labels == {"team": "research"}
    assert other.id not in stand_in.scheduled


# ----------------------------------------------------------------------------------------------- trigger
def test_trigger_starts_one_run_and_a_409_names_concurrency(
    stand_in: ScheduledStandIn, hook: HfJobsHook, hub: HfApi
) -> None:
    sid = hook.create_scheduled_job(image="python:3.12", command=["python"], schedule="@daily").id
    run = hook.trigger_scheduled_job(sid)
    assert run.stage is JobStage.SCHEDULING and (run.initiator.type, run.initiator.id) == (
        "scheduled-job",
        sid,
    )
    assert run.url == f"{stand_in.url}/jobs/{NS}/{run.id}"
    assert hook.inspect_scheduled_job(sid).last_job.id == run.id
    with pytest.raises(HfJobsConcurrencyError) as info:
        hook.trigger_scheduled_job(sid)
    message = str(info.value)
    assert f"Could not trigger scheduled job {sid}: a run of it is still active" in message
    assert "concurrency=True" in message and "A job is already running" in message
    assert info.value.status_code == 409
    with pytest.raises(Exception, match="409"):  # the official client: an HfHubHTTPError
        hub.trigger_scheduled_job(scheduled_job_id=sid, namespace=NS)
    runs = stand_in.requests_to("/run")
    assert [s.shape for s in runs] == [("POST", f"/api/scheduled-jobs/{NS}/{sid}/run", {}, None)] * 3


def test_a_trigger_is_sent_at_most_once(stand_in: ScheduledStandIn, hook: HfJobsHook) -> None:
    """Each trigger that reaches the server starts a run: a 5xx or a lost answer is raised at once, saying
    it may have happened; a 429, which certainly started nothing, is retried."""
    sid = hook.create_scheduled_job(
        image="python:3.12", command=["python"], schedule="@daily", concurrency=True
    ).id
    stand_in.fail["POST run"] = [(500, {"error": "Internal Error"})]
    with pytest.raises(HfJobsServerError, match="It may have happened anyway"):
        hook.trigger_scheduled_job(sid)
    assert len(stand_in.requests_to("/run")) == 1
    stand_in.fail["POST run"] = [(DROP, None)]
    with pytest.raises(HfJobsConnectionError, match="may have happened anyway"):
        hook.trigger_scheduled_job(sid)
    assert len(stand_in.requests_to("/run")) == 2
    stand_in.fail["POST run"] = [(429, {"error": "slow down"})]
    assert hook.trigger_scheduled_job(sid).initiator.id == sid
    assert len(stand_in.requests_to("/run")) == 4


def test_a_create_is_sent_at_most_once_and_reads_are_retried(
    stand_in: ScheduledStandIn, hook: HfJobsHook
) -> None:
    stand_in.fail[f"POST {NS}"] = [(503, {"error": "busy"})]
    with pytest.raises(HfJobsServerError, match="It may have happened anyway"):
        hook.create_scheduled_job(image="python:3.12", command=["python"], schedule="@daily")
    assert len(stand_in.requests_to(f"/api/scheduled-jobs/{NS}")) == 1
    sid = hook.create_scheduled_job(image="python:3.12", command=["python"], schedule="@daily").id
    stand_in.fail[f"GET {sid}"] = [(503, {"error": "busy"})]
    assert hook.inspect_scheduled_job(sid).id == sid
    assert len(stand_in.requests_to(f"/{sid}")) == 2


def test_an_unknown_scheduled_job_is_one_clear_line(stand_in: ScheduledStandIn, hook: HfJobsHook) -> None:
    missing = "0123456789abcdef01234567"
    expected = f"Could not inspect scheduled job {missing}: scheduled job {missing} not found in namespace .*HTTP 404"
    with pytest.raises(HfJobsNotFoundError, match=expected):
        hook.inspect_scheduled_job(missing, namespace=NS)


# ------------------------------------------------------------------------------------------------ async
async def test_the_async_hook_inspects_a_scheduled_job(
    stand_in: ScheduledStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a trigger waiting on a scheduled job's runs polls: its latest run and its next run time."""
    _recent_credentials.clear()
    set_connection(monkeypatch, "hf_scheduled_async", stand_in.url, TOKEN)  # no namespace: whoami once
    data = stand_in.new_scheduled(
        {"jobSpec": {"command": ["x"], "dockerImage": "python:3.12"}, "schedule": "@daily"}
    )
    stand_in.run(data)
    async with HfJobsAsyncHook("hf_scheduled_async", retry_policy=FAST) as hook:
        first = await hook.inspect_scheduled_job(data["id"])
        again = await hook.inspect_scheduled_job(data["id"], namespace=NS)
        with pytest.raises(HfJobsNotFoundError):
            await hook.inspect_scheduled_job("f" * 24)
    assert first.last_job.id == data["status"]["lastJob"]["id"] and first.next_job_run_at is not None
    assert again == first
    assert [s.shape for s in stand_in.seen] == [
        ("GET", "/api/whoami-v2", {}, None),
        ("GET", f"/api/scheduled-jobs/{NS}/{data['id']}", {}, None),
        ("GET", f"/api/scheduled-jobs/{NS}/{data['id']}", {}, None),
        ("GET", f"/api/scheduled-jobs/{NS}/{'f' * 24}", {}, None),
    ]
    assert all(s.headers["authorization"] == f"Bearer {TOKEN}" for s in stand_in.seen)
