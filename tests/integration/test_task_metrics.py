"""Metrics in the task, over real HTTP: the operator (sync) and the trigger (deferred) sample a job's
metrics stream while it runs and end with one summary.

Two servers: the local Jobs server itself (its ``/metrics`` is real, CPU and memory of the job's process
group, no GPU), and :class:`GpuMetricsFront`, a stand-in in front of it that answers ``/metrics`` the way
the Hub does for a GPU flavor (a sample at a steady pace, GPU readings included, never ending by itself;
or a 406 at once) and passes every other request through. Jobs wait for a file the test creates once
enough samples were read, so no test depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.metrics import SUMMARY_KEYS, MetricsAccumulator
from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator
from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger
from tests.integration.conftest import NAMESPACE, TOKEN, set_connection
from tests.unit.test_operators import FakeTI
from tests.unit.test_trigger import RecordingLog, recorded

pytestmark = pytest.mark.integration

GB = 1_000_000_000
#: What the stand-in streams for a GPU flavor: an A10G at 5%, so the idle warning fires.
GPU_SAMPLE = {
    "cpu_usage_pct": 30, "cpu_millicores": 4000, "memory_used_bytes": 3 * GB, "memory_total_bytes": 15 * GB,
    "rx_bps": 1_200_000, "tx_bps": 100_000, "replica": "j6qz9",
    "gpus": {"d901cd7f": {"utilization": 5, "memory_used_bytes": 2 * GB, "memory_total_bytes": 22_836_000_000}},
}  # fmt: skip
_METRICS_PATH = re.compile(r"^/api/jobs/[^/]+/[^/]+/metrics$")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


class GpuMetricsFront:
    """The local server's API on another port, except ``GET .../metrics``: served here, as the Hub does
    for a GPU job: ``GPU_SAMPLE`` every ``interval`` seconds until the client goes (at most a minute), or,
    with ``refuse``, a 406 at once (a job the server considers finished)."""

    def __init__(self, upstream: str, interval: float = 0.05) -> None:
        self.upstream = upstream.rstrip("/")
        self.interval = interval
        self.refuse = False
        self.metrics_requests = 0
        self._closing = threading.Event()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if _METRICS_PATH.match(urlsplit(self.path).path):
                    front.metrics_requests += 1
                    self._metrics()
                else:
                    self._forward()

            do_POST = do_PUT = do_PATCH = do_DELETE = lambda self: self._forward()

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _metrics(self) -> None:
                if front.refuse:
                    body = b'{"error": "Job is not running"}'
                    self.send_response(406)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                event = f"event: metric\ndata: {json.dumps(GPU_SAMPLE)}\n\n".encode()
                ends = time.monotonic() + 60
                self.close_connection = True
                with contextlib.suppress(OSError):  # the client went: its task is over
                    while not front._closing.is_set() and time.monotonic() < ends:
                        self._chunk(event)
                        front._closing.wait(front.interval)
                    self.wfile.write(b"0\r\n\r\n")

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS | {"host"}}
                with requests.request(
                    self.command, front.upstream + self.path, headers=headers, data=body, stream=True,
                    timeout=(5, 120),
                ) as answer:  # fmt: skip
                    self.send_response(answer.status_code)
                    for key, value in answer.headers.items():
                        if key.lower() not in _HOP_HEADERS:
                            self.send_header(key, value)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in answer.raw.stream(None, decode_content=False):
                        if chunk:
                            self._chunk(chunk)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="gpu-front", daemon=True)

    def __enter__(self) -> GpuMetricsFront:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def front(server: LocalJobsServer) -> Iterator[GpuMetricsFront]:
    with GpuMetricsFront(server.url) as stand_in:
        yield stand_in


@pytest.fixture
def local(server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``hf_metrics`` connection, straight to the local server."""
    set_connection(monkeypatch, "hf_metrics", server.url, TOKEN, namespace=NAMESPACE)
    return "hf_metrics"


@pytest.fixture
def gpu(front: GpuMetricsFront, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``hf_gpu`` connection, through the GPU stand-in."""
    set_connection(monkeypatch, "hf_gpu", front.url, TOKEN, namespace=NAMESPACE)
    return "hf_gpu"


@pytest.fixture
def task_log(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    log = RecordingLog()
    monkeypatch.setattr(HfJobRunOperator, "log", property(lambda self: log), raising=False)
    return log


@pytest.fixture
def samples_read(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many samples the task folded in so far (on the worker's thread or in the trigger)."""
    count = 0
    add = MetricsAccumulator.add

    def counting(self: MetricsAccumulator, sample: Any) -> None:
        nonlocal count
        add(self, sample)
        count += 1

    monkeypatch.setattr(MetricsAccumulator, "add", counting)
    return lambda: count


def waits_for(flag: Path) -> list[str]:
    """A job that runs until ``flag`` exists (a minute at most), then prints and ends."""
    code = (
        "import os, time\n"
        "ends = time.monotonic() + 60\n"
        f"while not os.path.exists({str(flag)!r}) and time.monotonic() < ends:\n"
        "    sum(range(20000)); time.sleep(0.02)\n"
        "print('released', flush=True)\n"
    )
    return ["python", "-c", code]


@contextlib.contextmanager
def release_when(flag: Path, condition: Callable[[], bool], timeout: float = 45.0) -> Iterator[None]:
    """End the job (create ``flag``) once ``condition`` holds, or after ``timeout``, or when the block
    ends, whichever comes first: the job always ends, and an assertion says what was missing."""
    done = threading.Event()

    def watch() -> None:
        ends = time.monotonic() + timeout
        while not done.is_set() and not condition() and time.monotonic() < ends:
            done.wait(0.02)
        flag.touch()

    watcher = threading.Thread(target=watch, name="release", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(10)


def stats(server: LocalJobsServer, reset: bool = False) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    if reset:
        requests.delete(f"{server.url}/_local/stats", headers=auth, timeout=10)
        return {}
    return requests.get(f"{server.url}/_local/stats?per_job=1", headers=auth, timeout=10).json()


def run_trigger(trigger: HfJobTrigger) -> dict[str, Any]:
    async def watch() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(watch())
    return event


def deferred(op: HfJobRunOperator, ti: FakeTI) -> HfJobTrigger:
    with pytest.raises(TaskDeferred) as info:
        op.execute({"ti": ti})
    return info.value.trigger


def operator(conn_id: str, flag: Path, **kwargs: Any) -> HfJobRunOperator:
    return HfJobRunOperator(
        task_id="train", image="python:3.12", command=waits_for(flag), flavor="a10g-small", hf_conn_id=conn_id,
        reattach=False, **{"poll_interval": 0.2, **kwargs},
    )  # fmt: skip


def hf_lines(log: RecordingLog, level: str) -> list[str]:
    return [text for text in log.texts(level) if text.startswith("Hugging Face job")]


def numbers_only(summary: dict[str, Any]) -> bool:
    return set(summary) == set(SUMMARY_KEYS) and all(
        value is None or type(value) in (int, float) for value in summary.values()
    )


# ---------------------------------------------------------------------------- the local server's /metrics
def test_sync_task_sums_up_the_local_servers_cpu_and_memory(
    local: str, server: LocalJobsServer, tmp_path: Path, task_log: RecordingLog, samples_read
) -> None:
    """No GPU locally: the line says CPU and memory, and no idle-GPU warning fires on the GPU flavor."""
    op, ti = operator(local, tmp_path / "go"), FakeTI()
    with release_when(tmp_path / "go", lambda: samples_read() >= 2):
        assert op.execute({"ti": ti}) == ti.xcom["job_id"]
    metrics = ti.xcom["job"]["metrics"]
    assert numbers_only(metrics) and metrics["samples"] >= 2 and metrics["gpu_samples"] == 0
    assert metrics["memory_used_peak_bytes"] > 0 and metrics["cpu_usage_mean_pct"] is not None
    last = hf_lines(task_log, "info")[-1]
    assert last.startswith(f"Hugging Face job {op.job_id} used: CPU ") and "memory " in last
    assert last.endswith("(no GPU reading in them).") and "GPU %" not in last
    assert hf_lines(task_log, "warning") == []


def test_deferred_task_sums_up_in_the_trigger_on_a_second_connection(
    local: str, server: LocalJobsServer, tmp_path: Path, task_log: RecordingLog, samples_read
) -> None:
    # A poll interval longer than the job: a quiet stream costs a stage check each poll_interval of
    # silence (the hooks' stage_check_interval), none here, so what metrics add is counted alone.
    op, ti = operator(local, tmp_path / "go", deferrable=True, poll_interval=30), FakeTI()
    trigger = deferred(op, ti)
    assert trigger.log_metrics is True
    stats(server, reset=True)
    log = recorded(trigger)
    with release_when(tmp_path / "go", lambda: samples_read() >= 2):
        event = run_trigger(trigger)
    assert event["status"] == "success" and json.loads(json.dumps(event)) == event
    assert numbers_only(event["metrics"]) and event["metrics"]["samples"] >= 2
    assert "released" in log.texts("info")
    counted = stats(server)
    job_id = event["job_id"]
    # What metrics add to a deferred job: one metrics request, on a connection of its own; the stage check
    # after the log stream stays one. (When the server ends the metrics stream with the job, the hook may
    # look at the stage once more on the metrics connection before the trigger cancels it.)
    assert counted["requests"]["metrics"] == 1 and counted["requests"]["logs"] == 1
    assert 1 <= counted["requests"]["inspect"] <= 2 and counted["per_job"][job_id] <= 4
    assert counted["per_job_connections"][job_id] == 2
    assert op.execute_complete({"ti": ti}, event) == job_id
    assert ti.xcom["job"]["metrics"] == event["metrics"]
    assert hf_lines(task_log, "info")[-1].startswith(f"Hugging Face job {job_id} used: CPU ")


@pytest.mark.parametrize("deferrable", [False, True])
def test_metrics_off_makes_no_metrics_request(
    local: str, server: LocalJobsServer, tmp_path: Path, task_log: RecordingLog, deferrable: bool
) -> None:
    """``log_metrics=False`` on a GPU flavor: not one ``/metrics`` request; deferred, the trigger still
    costs two requests on one connection."""
    op = operator(local, tmp_path / "go", log_metrics=False, deferrable=deferrable, poll_interval=30)
    ti = FakeTI()
    stats(server, reset=True)
    with release_when(tmp_path / "go", lambda: False, timeout=0.5):
        if deferrable:
            trigger = deferred(op, ti)
            assert trigger.log_metrics is False
            stats(server, reset=True)
            event = run_trigger(trigger)
            assert "metrics" not in event
            counted = stats(server)
            assert counted["per_job"][event["job_id"]] == 2
            assert counted["per_job_connections"][event["job_id"]] == 1
            op.execute_complete({"ti": ti}, event)
        else:
            op.execute({"ti": ti})
    assert "metrics" not in stats(server)["requests"]
    assert "metrics" not in ti.xcom["job"]
    assert not any(" used: " in text for text in hf_lines(task_log, "info"))


# ------------------------------------------------------------------------------------ the GPU stand-in
def test_sync_task_warns_of_an_idle_gpu_with_its_cost(
    gpu: str, front: GpuMetricsFront, tmp_path: Path, task_log: RecordingLog, samples_read
) -> None:
    op, ti = operator(gpu, tmp_path / "go"), FakeTI()
    with release_when(tmp_path / "go", lambda: samples_read() >= 5):
        op.execute({"ti": ti})
    metrics = ti.xcom["job"]["metrics"]
    assert metrics["gpu_samples"] >= 5 and metrics["gpu_utilization_mean_pct"] == 5.0
    assert metrics["gpu_memory_total_bytes"] == 22_836_000_000 and front.metrics_requests == 1
    last = hf_lines(task_log, "info")[-1]
    assert last.startswith(
        f"Hugging Face job {op.job_id} used: GPU 5% mean / 5% peak, GPU memory 2.0/22.8 GB"
    )
    assert "network 1.2 Mbps in / 100.0 kbps out" in last
    (warning,) = hf_lines(task_log, "warning")
    cost = ti.xcom["job"]["cost_usd"]
    assert "the a10g-small was idle 95% of the time" in warning
    assert (cost is None) == ("paid for nothing" not in warning)


def test_trigger_sends_the_gpu_summary_and_the_task_warns(
    gpu: str, front: GpuMetricsFront, tmp_path: Path, task_log: RecordingLog, samples_read
) -> None:
    op, ti = operator(gpu, tmp_path / "go", deferrable=True), FakeTI()
    trigger = deferred(op, ti)
    recorded(trigger)
    with release_when(tmp_path / "go", lambda: samples_read() >= 5):
        event = run_trigger(trigger)
    assert event["metrics"]["gpu_samples"] >= 5 and event["metrics"]["gpu_utilization_peak_pct"] == 5.0
    assert numbers_only(event["metrics"]) and front.metrics_requests == 1
    op.execute_complete({"ti": ti}, event)
    assert hf_lines(task_log, "info")[-1].startswith(f"Hugging Face job {op.job_id} used: GPU 5% mean")
    (warning,) = hf_lines(task_log, "warning")
    assert "idle 95% of the time" in warning


@pytest.mark.parametrize("deferrable", [False, True])
def test_a_406_at_once_gives_an_empty_summary_and_no_warning(
    gpu: str, front: GpuMetricsFront, tmp_path: Path, task_log: RecordingLog, deferrable: bool
) -> None:
    front.refuse = True
    op, ti = operator(gpu, tmp_path / "go", deferrable=deferrable), FakeTI()
    with release_when(tmp_path / "go", lambda: front.metrics_requests >= 1):
        if deferrable:
            trigger = deferred(op, ti)
            recorded(trigger)
            op.execute_complete({"ti": ti}, run_trigger(trigger))
        else:
            op.execute({"ti": ti})
    assert ti.xcom["job"]["metrics"]["samples"] == 0
    # A job of a second or two: no sample is no news, not worth a line (one of 10 s or more gets it).
    assert not [text for text in hf_lines(task_log, "info") if "metrics sample" in text or " used: " in text]
    assert hf_lines(task_log, "warning") == []


def test_the_stand_in_passes_the_rest_of_the_api_through(gpu: str) -> None:
    """The front is the local server for anything but ``/metrics`` (what the tests above rely on)."""
    hook = HfJobsHook(gpu)
    try:
        assert any(hw.name == "a10g-small" for hw in hook.list_jobs_hardware())
    finally:
        hook.close()
