"""The official ``huggingface_hub`` client (2.4) against the local Jobs server, unchanged.

If these pass, the server speaks the wire protocol the real clients expect: the same JSON, stages, SSE
framing, errors and filters.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, JobNotFoundError

from airflow_provider_hfjobs.local import LocalJobsServer

pytestmark = [pytest.mark.conformance, pytest.mark.airflow_free]

TOKEN = "hf_conformance_token"
NS = "conf-user"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=6) as srv:
        yield srv


@pytest.fixture(scope="module")
def api(server: LocalJobsServer) -> HfApi:
    return HfApi(endpoint=server.url, token=TOKEN)


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value (bounded; no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def test_run_inspect_wait_and_logs(api: HfApi) -> None:
    job = api.run_job(
        image="python:3.12",
        command=["python", "-c", "print('alpha'); print('beta')"],
        env={"MODE": "test"},
        secrets={"SECRET_VALUE": "s3cr3t-conformance"},
        labels={"suite": "conformance"},
        namespace=NS,
    )
    assert job.owner.name == NS and job.status.stage in ("SCHEDULING", "RUNNING")
    assert job.url == f"{api.endpoint}/jobs/{NS}/{job.id}"
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS, follow=True)) == ["alpha", "beta"]
    (final,) = api.wait_for_job(job_id=[job.id], namespace=NS, timeout=60)
    assert final.status.stage == "COMPLETED"
    assert final.created_at and final.started_at and final.finished_at
    assert final.durations is not None and final.durations.total_secs is not None
    assert final.secrets == ["SECRET_VALUE"]  # names only
    assert final.labels["suite"] == "conformance" and final.labels["name"]
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS)) == ["alpha", "beta"]
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS, tail=1)) == ["beta"]


def test_list_jobs_filters_by_stage_and_label(api: HfApi) -> None:
    done = api.run_job(image="python:3.12", command=["true"], labels={"lst": "a"}, namespace=NS)
    api.wait_for_job(job_id=done.id, namespace=NS, timeout=60)
    live = api.run_job(image="python:3.12", command=["sleep", "60"], labels={"lst": "a"}, namespace=NS)
    try:
        wait_until(lambda: api.inspect_job(job_id=live.id, namespace=NS).status.stage == "RUNNING")
        both = {j.id for j in api.list_jobs(labels={"lst": "a"}, namespace=NS)}
        assert both == {done.id, live.id}
        running = {j.id for j in api.list_jobs(status="RUNNING", labels={"lst": "a"}, namespace=NS)}
        assert running == {live.id}
        completed = {j.id for j in api.list_jobs(status=["COMPLETED"], labels={"lst": "a"}, namespace=NS)}
        assert completed == {done.id}
    finally:
        api.cancel_job(job_id=live.id, namespace=NS)


def test_cancel_kills_the_process_group(api: HfApi) -> None:
    code = "import os, subprocess, time\nchild = subprocess.Popen(['sleep', '120'])\nprint(os.getpid(), child.pid, flush=True)\ntime.sleep(120)"
    job = api.run_job(image="python:3.12", command=["python", "-c", code], namespace=NS)
    line = next(iter(api.fetch_job_logs(job_id=job.id, namespace=NS, follow=True)))
    pids = [int(pid) for pid in line.split()]
    api.cancel_job(job_id=job.id, namespace=NS)
    assert wait_until(lambda: api.inspect_job(job_id=job.id, namespace=NS).status.stage == "CANCELED", 15)

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # a zombie awaiting its reaper

    assert wait_until(lambda: all(gone(pid) for pid in pids), 15)


def test_failures_and_timeouts(api: HfApi) -> None:
    failing = api.run_job(image="python:3.12", command=["python", "-c", "raise SystemExit(3)"], namespace=NS)
    slow = api.run_job(image="python:3.12", command=["sleep", "30"], timeout=1, namespace=NS)
    missing = api.run_job(image="python:3.12", command=["no-such-program-xyz"], namespace=NS)
    stages = {
        j.id: j for j in api.wait_for_job(job_id=[failing.id, slow.id, missing.id], namespace=NS, timeout=60)
    }
    assert (stages[failing.id].status.stage, stages[failing.id].status.message) == ("ERROR", "exit code 3")
    assert (stages[slow.id].status.stage, stages[slow.id].status.message) == ("ERROR", "Job timeout")
    assert (
        stages[missing.id].status.stage == "ERROR"
        and "no-such-program-xyz" in stages[missing.id].status.message
    )


def test_hardware(api: HfApi) -> None:
    hardware = {hw.name: hw for hw in api.list_jobs_hardware()}
    assert hardware["cpu-basic"].unit_cost_micro_usd == 167 and hardware["cpu-basic"].accelerator is None
    assert hardware["a100-large"].accelerator.model == "A100"
    assert {"t4-small", "l4x1", "a10g-small", "h200x8"} <= set(hardware)


def test_errors_are_the_official_ones(server: LocalJobsServer, api: HfApi) -> None:
    with pytest.raises(HfHubHTTPError, match="a100-huge"):
        api.run_job(image="python:3.12", command=["true"], flavor="a100-huge", namespace=NS)
    with pytest.raises(JobNotFoundError):
        api.inspect_job(job_id="0123456789abcdef01234567", namespace=NS)
    with pytest.raises(HfHubHTTPError) as info:
        HfApi(endpoint=server.url, token="hf_wrong").inspect_job(
            job_id="0123456789abcdef01234567", namespace=NS
        )
    assert info.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as info:
        api.run_job(image="python:3.12", command=["true"], namespace="someone-else")
    assert info.value.response.status_code == 403


def test_run_uv_job_from_a_url(api: HfApi, tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text("import sys\nprint('uv from url', *sys.argv[1:])\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/hello.py"
        job = api.run_uv_job(url, script_args=["--x", "1"], namespace=NS)
        assert job.command == ["uv", "run", url, "--x", "1"]
        final = api.wait_for_job(job_id=job.id, namespace=NS, timeout=120)
        logs = list(api.fetch_job_logs(job_id=job.id, namespace=NS))
        assert final.status.stage == "COMPLETED", (final.status, logs)
        assert "uv from url --x 1" in logs
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_jobs_beyond_concurrency_wait_in_scheduling(tmp_path: Path) -> None:
    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=1) as small:
        api = HfApi(endpoint=small.url, token=TOKEN)
        first = api.run_job(image="python:3.12", command=["sleep", "30"], namespace=NS)
        second = api.run_job(image="python:3.12", command=["python", "-c", "print('my turn')"], namespace=NS)
        wait_until(lambda: api.inspect_job(job_id=first.id, namespace=NS).status.stage == "RUNNING")
        waiting = api.inspect_job(job_id=second.id, namespace=NS)
        assert waiting.status.stage == "SCHEDULING" and waiting.status.message
        api.cancel_job(job_id=first.id, namespace=NS)
        assert api.wait_for_job(job_id=second.id, namespace=NS, timeout=60).status.stage == "COMPLETED"
        assert list(api.fetch_job_logs(job_id=second.id, namespace=NS)) == ["my turn"]


def test_update_labels(api: HfApi) -> None:
    job = api.run_job(image="python:3.12", command=["true"], labels={"a": "1"}, namespace=NS)
    api.update_job_labels(job_id=job.id, labels={"b": "2"}, namespace=NS)
    assert api.inspect_job(job_id=job.id, namespace=NS).labels == {"b": "2"}


def test_job_ids_look_like_the_hubs(api: HfApi) -> None:
    job = api.run_job(image="hf.co/spaces/alice/duckdb", command=["true"], namespace=NS)
    assert (
        re.fullmatch(r"[0-9a-f]{24}", job.id) and job.space_id == "alice/duckdb" and job.docker_image is None
    )
