"""The new job API of the hooks (issue 12) over real HTTP on 127.0.0.1: create with every argument, uv
commands, rerun, labels, expose, metrics and ``wait_for_job``, sync and async.

**Stand-in server, for now.** The local Jobs server (``airflow_provider_hfjobs.local``) does not serve
``/duplicate``, ``PUT /labels``, ``PUT /expose`` and ``/metrics`` yet, nor honour volumes or attempts (its
routes are being added in parallel). Until it does, these tests run against :class:`StandIn`, a small
threaded ``http.server`` in this module that answers spec-shaped JSON (hf-jobs-api.md sections 3, 4 and 6)
and records every request. Most tests send the same call through the official ``huggingface_hub`` 2.4
client to the same stand-in and compare the requests byte for byte. **Move these tests to the
``server`` fixture of ``tests/integration/conftest.py`` once the local server serves the routes**; the
request-equality checks stay as they are.
"""

from __future__ import annotations

import itertools
import json
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from huggingface_hub import HfApi
from huggingface_hub import Volume as HubVolume

from airflow_provider_hfjobs.exceptions import HfJobsConnectionError, HfJobsRateLimitError, HfJobsServerError
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, HfJobsHook, _recent_credentials
from airflow_provider_hfjobs.jobs import SUBMISSION_LABEL, JobStage, RetryPolicy, Volume, build_job_spec
from tests.integration.conftest import set_connection

pytestmark = pytest.mark.integration

TOKEN = "hf_stand_in_token_3b9a"
NS = "alice"
#: A queued "answer" that drops the connection instead of answering.
DROP = 0
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.02)
SAMPLES = [
    {"cpu_usage_pct": 12.5, "cpu_millicores": 3500, "memory_used_bytes": 1 << 30, "memory_total_bytes": 16 << 30,
     "rx_bps": 10, "tx_bps": 20, "gpus": {"882fa930": {"utilization": 87, "memory_used_bytes": 9 << 30,
     "memory_total_bytes": 22836000000}}, "replica": "57vr7"},
    {"cpu_usage_pct": 13.0, "cpu_millicores": 3500, "memory_used_bytes": 1 << 30, "memory_total_bytes": 16 << 30,
     "rx_bps": 0, "tx_bps": 0, "gpus": {}, "replica": "57vr7"},
    {"cpu_usage_pct": 99.0, "cpu_millicores": 3500, "memory_used_bytes": 2 << 30, "memory_total_bytes": 16 << 30,
     "rx_bps": 0, "tx_bps": 0, "gpus": {}, "replica": "57vr7"},
]  # fmt: skip


# ---------------------------------------------------------------------------------------- the stand-in
@dataclass
class Seen:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any

    @property
    def shape(self) -> tuple[str, str, str, Any]:
        return self.method, self.path, self.query, self.body


@dataclass
class Job:
    data: dict[str, Any]
    #: Stages the next GETs of the job answer, one each; the last one stays.
    stages: list[str] = field(default_factory=list)
    #: Metric connections to come, each a list of samples sent before the stream ends; then 406.
    metrics: list[list[dict[str, Any]]] = field(default_factory=list)


class StandIn(ThreadingHTTPServer):
    """Spec-shaped answers for the job routes of huggingface_hub 2.4, every request recorded; ``fail``
    queues answers (status, body) to give first on ``"<METHOD> <last path part>"``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.seen: list[Seen] = []
        self.jobs: dict[str, Job] = {}
        self.fail: dict[str, list[tuple[int, Any]]] = {}
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    def __enter__(self) -> StandIn:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def requests_to(self, suffix: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path.endswith(suffix)]

    def new_job(self, spec: dict[str, Any], *, initiator: dict[str, Any] | None = None) -> dict[str, Any]:
        """A job as the Hub answers a create (hf-jobs-api.md section 4): the spec echoed, secrets as names."""
        job_id = f"{next(self._ids):024x}"
        status: dict[str, Any] = {"stage": "SCHEDULING", "message": None}
        data: dict[str, Any] = {
            "id": job_id, "createdAt": "2026-11-24T06:49:34.580Z", "type": "job",
            "dockerImage": spec.get("dockerImage"), "spaceId": spec.get("spaceId"), "command": spec["command"],
            "arguments": spec.get("arguments", []), "environment": spec.get("environment", {}),
            "secrets": sorted(spec.get("secrets") or {}), "flavor": spec.get("flavor"), "labels": spec.get("labels"),
            "owner": {"id": "5e9ecfc04957053f60648a3e", "name": NS, "type": "user"}, "status": status,
            "initiator": initiator or {"type": "user", "id": "5e9ecfc04957053f60648a3e", "name": NS},
        }  # fmt: skip
        for key in ("volumes", "network", "resourceGroupId", "expose", "ssh"):
            if key in spec:
                data[key] = spec[key]
        if "attempts" in spec:
            data["retry"] = spec["attempts"] - 1
        self._expose_urls(data)
        if spec.get("ssh"):
            status["sshUrl"] = f"ssh://{job_id}@ssh.hf.jobs"
        self.jobs[job_id] = Job(data)
        return data

    @staticmethod
    def _expose_urls(data: dict[str, Any]) -> None:
        ports = (data.get("expose") or {}).get("ports") or []
        data["status"]["exposeUrls"] = [f"https://{data['id']}--{port}.hf.jobs" for port in ports] or None

    def answer(self, handler: Handler, method: str, parts: list[str], body: Any) -> tuple[int, Any]:
        if parts == ["api", "whoami-v2"]:
            return 200, {"type": "user", "id": "5e9ecfc04957053f60648a3e", "name": NS}
        if len(parts) < 3 or parts[:2] != ["api", "jobs"] or parts[2] != NS:
            return 404, {"error": "Not Found"}
        if len(parts) == 3:
            if method == "POST":
                return 200, self.new_job(body)
            return 200, [job.data for job in self.jobs.values()]
        job = self.jobs.get(parts[3])
        if job is None:
            return 404, {"error": "Job not found"}
        action = parts[4] if len(parts) > 4 else None
        if action is None and method == "GET":
            if job.stages:
                job.data["status"]["stage"] = job.stages.pop(0) if len(job.stages) > 1 else job.stages[0]
            return 200, job.data
        if action == "duplicate" and method == "POST":
            spec = {**job.data, "attempts": job.data["retry"] + 1} if "retry" in job.data else dict(job.data)
            return 200, self.new_job(spec, initiator={"type": "duplicated-job", "id": job.data["id"]})
        if action == "labels" and method == "PUT":
            job.data["labels"] = body["labels"]
            return 200, job.data
        if action == "expose" and method == "PUT":
            job.data["expose"] = body
            self._expose_urls(job.data)
            return 200, job.data
        if action == "metrics" and method == "GET":
            if JobStage(job.data["status"]["stage"]).is_terminal or not job.metrics:
                return 406, {"error": "Job is not running"}
            events = b"".join(
                b": keep-alive\n\nevent: metric\ndata: "
                + json.dumps(sample, separators=(",", ":")).encode()
                + b"\n\n"
                for sample in job.metrics.pop(0)
            )
            return 200, events
        return 405, {"error": f"{method} {action} not served by the stand-in"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandIn

    def _handle(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else None
        url = urlsplit(self.path)
        parts = [part for part in url.path.split("/") if part]
        with self.server.lock:
            headers = {name.lower(): value for name, value in self.headers.items()}
            self.server.seen.append(Seen(self.command, url.path, url.query, headers, body))
            queued = self.server.fail.get(f"{self.command} {parts[-1] if parts else ''}")
            status, answer = queued.pop(0) if queued else self.server.answer(self, self.command, parts, body)
        if status == DROP:  # the request arrived, its answer is lost
            self.close_connection = True
            return
        events = isinstance(answer, bytes)
        payload = answer if events else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/event-stream" if events else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


@pytest.fixture
def hook(stand_in: StandIn, monkeypatch: pytest.MonkeyPatch) -> Iterator[HfJobsHook]:
    set_connection(monkeypatch, "hf_stand_in", stand_in.url, TOKEN)  # no namespace: one whoami, then cached
    hook = HfJobsHook("hf_stand_in", retry_policy=FAST)
    yield hook
    hook.close()


@pytest.fixture
def async_hook(stand_in: StandIn, monkeypatch: pytest.MonkeyPatch) -> HfJobsAsyncHook:
    _recent_credentials.clear()
    set_connection(monkeypatch, "hf_stand_in", stand_in.url, TOKEN, namespace=NS)
    return HfJobsAsyncHook("hf_stand_in", retry_policy=FAST)


@pytest.fixture
def hub(stand_in: StandIn) -> HfApi:
    """The official client, pointed at the same stand-in."""
    return HfApi(endpoint=stand_in.url, token=TOKEN)


def running_job(stand_in: StandIn, **spec: Any) -> str:
    data = stand_in.new_job({"command": ["python", "train.py"], "dockerImage": "python:3.12", **spec})
    data["status"]["stage"] = "RUNNING"
    return data["id"]


def without_submission(body: dict[str, Any]) -> dict[str, Any]:
    labels = {key: value for key, value in body["labels"].items() if key != SUBMISSION_LABEL}
    return {**body, "labels": labels}


# ---------------------------------------------------------------------------------------------- create
EVERY_ARGUMENT: dict[str, Any] = dict(
    image="hf.co/spaces/alice/trainer", command=["python", "train.py"], env={"EPOCHS": "3"},
    secrets={"HF_TOKEN": "hf_secret_value"}, flavor="a10g-small", timeout="2h", attempts=3, name="nightly",
    labels={"team": "ml"}, expose=[8000], expose_public=[7860], ssh=True, network_group="train",
    network_aliases=["master"], resource_group_id="66f1a2b3c4d5e6f708192a3b",
)  # fmt: skip
VOLUMES = [
    {"type": "dataset", "source": "HuggingFaceFW/fineweb", "mountPath": "/data", "path": "sample/10BT"},
    {"type": "bucket", "source": "alice/checkpoints", "mount_path": "/checkpoints", "read_only": False},
]


def test_create_sends_exactly_the_official_body_and_parses_the_new_fields(
    stand_in: StandIn, hook: HfJobsHook, hub: HfApi
) -> None:
    job = hook.run_job(**EVERY_ARGUMENT, volumes=[*VOLUMES[:1], Volume(**VOLUMES[1])])
    hub.run_job(**EVERY_ARGUMENT, volumes=[HubVolume(**v) for v in VOLUMES], namespace=NS)
    ours, theirs = stand_in.requests_to(f"/api/jobs/{NS}")
    assert (ours.method, ours.path, theirs.method, theirs.path) == (
        "POST",
        f"/api/jobs/{NS}",
        "POST",
        f"/api/jobs/{NS}",
    )
    assert (
        ours.headers["authorization"] == f"Bearer {TOKEN}"
        and ours.headers["content-type"] == "application/json"
    )
    assert without_submission(ours.body) == theirs.body == build_job_spec(**EVERY_ARGUMENT, volumes=VOLUMES)
    assert list(ours.body) == list(theirs.body)  # the same key order too
    assert len(ours.body["labels"][SUBMISSION_LABEL]) == 32  # the at-most-once create key, ours only

    assert [v.to_dict() for v in job.volumes] == [HubVolume(**v).to_dict() for v in VOLUMES]
    assert (job.attempts, job.retry) == (3, 2)
    assert (job.expose, job.expose_public) == ([8000, 7860], [7860])
    assert job.expose_urls == [f"https://{job.id}--8000.hf.jobs", f"https://{job.id}--7860.hf.jobs"]
    assert job.ssh_url == f"ssh://{job.id}@ssh.hf.jobs"
    assert (job.network.group, job.network.aliases) == ("train", ["master"])
    assert (job.initiator.type, job.initiator.name) == ("user", NS)
    assert job.resource_group_id == "66f1a2b3c4d5e6f708192a3b" and job.secret_names == ["HF_TOKEN"]
    assert "hf_secret_value" not in json.dumps(job.to_dict())


def test_a_uv_command_is_sent_as_the_official_client_sends_it(
    stand_in: StandIn, hook: HfJobsHook, hub: HfApi
) -> None:
    """``run_uv_job("lighteval", ...)`` failed with "script file not found"; now it is the very create
    the official client sends: ``uv run --with lighteval lighteval <args>`` in the uv image."""
    args = [
        "endpoint",
        "inference-providers",
        "model_name=openai/gpt-oss-20b,provider=auto",
        "lighteval|gsm8k|0|0",
    ]
    bucket = {"type": "bucket", "source": "alice/evals", "mountPath": "/evals"}
    hook.run_uv_job(
        "lighteval", script_args=args, dependencies=["lighteval"], flavor="a10g-small", volumes=[bucket]
    )
    with warnings.catch_warnings():  # run_uv_job is experimental in huggingface_hub
        warnings.simplefilter("ignore")
        hub.run_uv_job(
            "lighteval", script_args=args, dependencies=["lighteval"], flavor="a10g-small",
            volumes=[HubVolume(**bucket)], namespace=NS,
        )  # fmt: skip
    ours, theirs = stand_in.requests_to(f"/api/jobs/{NS}")
    assert without_submission(ours.body) == theirs.body
    assert ours.body["command"] == ["uv", "run", "--with", "lighteval", "lighteval", *args]


# ------------------------------------------------------------------------------- rerun, labels, expose
def test_rerun_labels_and_expose_send_the_official_requests(
    stand_in: StandIn, hook: HfJobsHook, hub: HfApi
) -> None:
    job_id = running_job(stand_in, attempts=2, labels={"team": "ml"})
    rerun = hook.rerun_job(job_id)
    hub.rerun_job(job_id=job_id, namespace=NS)
    labeled = hook.update_job_labels(job_id, labels={"team": "research", "run": "7"})
    hub.update_job_labels(job_id=job_id, labels={"team": "research", "run": "7"}, namespace=NS)
    exposed = hook.update_job_expose(job_id, expose=[8000], expose_public=[7860, 8000])
    hub.update_job_expose(job_id=job_id, expose=[8000], expose_public=[7860, 8000], namespace=NS)
    closed = hook.update_job_expose(job_id)
    hub.update_job_expose(job_id=job_id, namespace=NS)

    for suffix in ("/duplicate", "/labels", "/expose"):
        seen = stand_in.requests_to(suffix)
        ours, theirs = seen[0::2], seen[1::2]
        assert [s.shape for s in ours] == [s.shape for s in theirs], suffix
    assert stand_in.requests_to("/duplicate")[0].shape == (
        "POST",
        f"/api/jobs/{NS}/{job_id}/duplicate",
        "",
        None,
    )
    assert stand_in.requests_to("/labels")[0].body == {"labels": {"team": "research", "run": "7"}}
    assert [s.body for s in stand_in.requests_to("/expose")[::2]] == [
        {"ports": [8000, 7860], "portsPublic": [7860, 8000]}, {"ports": [], "portsPublic": []},
    ]  # fmt: skip

    assert rerun.id != job_id and rerun.stage is JobStage.SCHEDULING and rerun.attempts == 2
    assert (rerun.initiator.type, rerun.initiator.id) == ("duplicated-job", job_id)
    assert labeled.labels == {"team": "research", "run": "7"}
    assert exposed.expose_urls == [f"https://{job_id}--8000.hf.jobs", f"https://{job_id}--7860.hf.jobs"]
    assert closed.expose == [] and closed.expose_urls is None
    assert len(stand_in.requests_to("/whoami-v2")) == 1  # the namespace is resolved once per hook


async def test_the_async_hook_sends_the_same_requests(stand_in: StandIn, async_hook: HfJobsAsyncHook) -> None:
    job_id = running_job(stand_in, labels={"team": "ml"})
    async with async_hook as hook:
        rerun = await hook.rerun_job(job_id)
        labeled = await hook.update_job_labels(job_id, labels={"team": "research"})
        exposed = await hook.update_job_expose(job_id, expose_public=[7860])
        inspected = await hook.inspect_job(job_id)
    assert [s.shape for s in stand_in.seen] == [
        ("POST", f"/api/jobs/{NS}/{job_id}/duplicate", "", None),
        ("PUT", f"/api/jobs/{NS}/{job_id}/labels", "", {"labels": {"team": "research"}}),
        ("PUT", f"/api/jobs/{NS}/{job_id}/expose", "", {"ports": [7860], "portsPublic": [7860]}),
        ("GET", f"/api/jobs/{NS}/{job_id}", "", None),
    ]
    assert all(s.headers["authorization"] == f"Bearer {TOKEN}" for s in stand_in.seen)
    assert rerun.initiator.type == "duplicated-job" and labeled.labels == {"team": "research"}
    assert exposed.expose_public == [7860] and inspected.expose_urls == [f"https://{job_id}--7860.hf.jobs"]


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_a_rerun_is_sent_at_most_once(
    stand_in: StandIn, hook: HfJobsHook, async_hook: HfJobsAsyncHook, flavor: str
) -> None:
    """Each duplicate that reaches the server starts a job: a 5xx (the answer may be lost, not the job) is
    raised at once, saying so; a 429, which certainly started nothing, is retried like any request."""
    job_id = running_job(stand_in)

    async def rerun() -> Any:
        if flavor == "sync":
            return hook.rerun_job(job_id, namespace=NS)
        async with async_hook as ahook:
            return await ahook.rerun_job(job_id)

    stand_in.fail["POST duplicate"] = [(500, {"error": "Internal Error"})]
    with pytest.raises(
        HfJobsServerError, match=r"HTTP 500\)\. Server said: Internal Error\. It may have happened"
    ):
        await rerun()
    assert len(stand_in.requests_to("/duplicate")) == 1
    stand_in.fail["POST duplicate"] = [(DROP, None)]
    with pytest.raises(HfJobsConnectionError, match="may have happened anyway"):
        await rerun()
    assert len(stand_in.requests_to("/duplicate")) == 2
    stand_in.fail["POST duplicate"] = [(429, {"error": "slow down"})]
    assert (await rerun()).initiator.id == job_id
    assert len(stand_in.requests_to("/duplicate")) == 4
    stand_in.fail["POST duplicate"] = [(429, {"error": "slow down"})] * 4
    with pytest.raises(HfJobsRateLimitError, match="still after retries"):
        await rerun()


def test_label_and_expose_updates_are_retried(stand_in: StandIn, hook: HfJobsHook) -> None:
    """A PUT replaces, so sending it twice is harmless: a 503 is retried."""
    job_id = running_job(stand_in)
    stand_in.fail["PUT labels"] = [(503, {"error": "busy"})]
    assert hook.update_job_labels(job_id, labels={"a": "b"}, namespace=NS).labels == {"a": "b"}
    assert len(stand_in.requests_to("/labels")) == 2


# ---------------------------------------------------------------------------------------------- metrics
async def read_metrics(
    flavor: str, hook: HfJobsHook, async_hook: HfJobsAsyncHook, job_id: str, follow: bool
) -> list:
    if flavor == "sync":
        return list(hook.fetch_job_metrics(job_id, follow=follow))
    async with async_hook as ahook:
        return [sample async for sample in ahook.fetch_job_metrics(job_id, follow=follow)]


@pytest.mark.parametrize("flavor", ["sync", "async", "huggingface_hub"])
async def test_metrics_read_like_the_official_client(
    stand_in: StandIn, hook: HfJobsHook, async_hook: HfJobsAsyncHook, hub: HfApi, flavor: str
) -> None:
    """Without ``follow``, the current sample; with it, every sample until the job is over (here the
    stream ends after two and the job is then COMPLETED). The same dicts the official client yields."""

    async def read(job_id: str, follow: bool) -> list:
        if flavor == "huggingface_hub":
            return list(hub.fetch_job_metrics(job_id=job_id, namespace=NS, follow=follow))
        return await read_metrics(flavor, hook, async_hook, job_id, follow)

    one = running_job(stand_in)
    stand_in.jobs[one].metrics = [SAMPLES[:2]]
    assert await read(one, follow=False) == SAMPLES[:1]
    stand_in.jobs[one].metrics, stand_in.jobs[one].stages = [SAMPLES[:2]], ["COMPLETED"]
    assert await read(one, follow=True) == SAMPLES[:2]
    metrics = stand_in.requests_to("/metrics")
    assert {s.shape for s in metrics} == {("GET", f"/api/jobs/{NS}/{one}/metrics", "", None)}
    assert all(s.headers.get("authorization") == f"Bearer {TOKEN}" for s in metrics)


@pytest.mark.parametrize("flavor", ["sync", "async", "huggingface_hub"])
@pytest.mark.parametrize("status", [406, 500])
async def test_metrics_of_a_finished_job_end_quietly(
    stand_in: StandIn, hook: HfJobsHook, async_hook: HfJobsAsyncHook, hub: HfApi, flavor: str, status: int
) -> None:
    """A finished job's metrics answer 406 (formerly 500): no sample, no error, followed or not."""
    job_id = running_job(stand_in)
    stand_in.jobs[job_id].stages = ["COMPLETED"]
    for follow in (False, True):
        stand_in.fail["GET metrics"] = [(status, {"error": "Job is not running"})]
        if flavor == "huggingface_hub":
            assert list(hub.fetch_job_metrics(job_id=job_id, namespace=NS, follow=follow)) == []
        else:
            assert await read_metrics(flavor, hook, async_hook, job_id, follow) == []
    assert len(stand_in.requests_to("/metrics")) == 2


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_followed_metrics_reconnect_until_the_job_is_over(
    stand_in: StandIn, hook: HfJobsHook, async_hook: HfJobsAsyncHook, flavor: str
) -> None:
    """The stream ends (or the server restarts) while the job runs: reconnect, nothing replayed (there is
    no history), until the job is terminal; then its 406 ends the reading quietly."""
    job_id = running_job(stand_in)
    stand_in.jobs[job_id].metrics = [SAMPLES[:2], SAMPLES[2:]]
    stand_in.jobs[job_id].stages = ["RUNNING", "COMPLETED"]
    assert await read_metrics(flavor, hook, async_hook, job_id, follow=True) == SAMPLES
    assert len(stand_in.requests_to("/metrics")) == 2


# --------------------------------------------------------------------------------------- wait_for_job
@pytest.mark.parametrize("flavor", ["sync", "async", "huggingface_hub"])
async def test_wait_for_one_job_or_several(
    stand_in: StandIn, hook: HfJobsHook, async_hook: HfJobsAsyncHook, hub: HfApi, flavor: str
) -> None:
    """One id gives a job, a list gives a list in the same order; ``stages`` adds targets, a terminal
    stage always ends the wait (a failed job does not raise)."""
    first, second, failing = (running_job(stand_in) for _ in range(3))
    stand_in.jobs[first].stages = ["SCHEDULING", "SCHEDULING", "RUNNING"]
    stand_in.jobs[second].stages = ["SCHEDULING", "RUNNING", "COMPLETED"]
    stand_in.jobs[failing].stages = ["SCHEDULING", "ERROR"]
    if flavor == "sync":
        several = hook.wait_for_job(
            [first, second, failing], stages=["RUNNING"], poll_interval=0.01, namespace=NS
        )
        one = hook.wait_for_job(second, poll_interval=0.01)
    elif flavor == "async":
        async with async_hook as ahook:
            several = await ahook.wait_for_job(
                [first, second, failing], stages=[JobStage.RUNNING], poll_interval=0.01
            )
            one = await ahook.wait_for_job(second, poll_interval=0.01)
    else:
        several = hub.wait_for_job(
            job_id=[first, second, failing], stages=[JobStage.RUNNING], poll_interval=0.01, namespace=NS
        )
        one = hub.wait_for_job(job_id=second, poll_interval=0.01, namespace=NS)
    stages = [getattr(job, "stage", None) or job.status.stage for job in [*several, one]]
    assert [job.id for job in several] == [first, second, failing] and one.id == second
    assert [str(JobStage(stage)) for stage in stages] == ["RUNNING", "RUNNING", "ERROR", "COMPLETED"]
    polls = [s.path.rsplit("/", 1)[1] for s in stand_in.seen if s.path.startswith(f"/api/jobs/{NS}/")]
    assert polls == [first] * 3 + [second] * 2 + [failing] * 2 + [second]


async def test_a_wait_gives_up_after_its_timeout(
    stand_in: StandIn, async_hook: HfJobsAsyncHook, hook: HfJobsHook
) -> None:
    job_id = running_job(stand_in)
    with pytest.raises(TimeoutError, match=f"job {job_id} is still RUNNING after 0.05 s"):
        hook.wait_for_job(job_id, timeout=0.05, poll_interval=0.01)
    async with async_hook as ahook:
        with pytest.raises(TimeoutError, match=f"job {job_id} is still RUNNING"):
            await ahook.wait_for_job([job_id], timeout=0.05, poll_interval=0.01)
