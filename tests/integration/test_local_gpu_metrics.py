"""The local server's simulated GPUs, over real HTTP: what is written to a GPU-flavor job's GPU file
(:func:`~airflow_provider_hfjobs.local.metrics.gpu_file_for`) is what the metrics endpoint reports, in the
Hub's shape, as read by the raw SSE stream, the provider's hooks, the official ``huggingface_hub`` client,
``hf jobs stats`` and the idle-GPU guardrail. CPU flavors, and a GPU flavor that wrote nothing, report
``gpus: {}``. Most tests write the file themselves, at the path the server computes; the last one has the
job find it in ``HFJOBS_LOCAL_GPU_FILE``, which the runner sets.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from huggingface_hub import HfApi

from airflow_provider_hfjobs.guardrails import Guardrails, GuardWatch
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, HfJobsHook
from airflow_provider_hfjobs.jobs import JobStage
from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.local.metrics import GPU_FILE, GPU_FILE_ENV, gpu_file_for
from airflow_provider_hfjobs.local.shim import WORK_DIR
from airflow_provider_hfjobs.local.store import JobRecord
from airflow_provider_hfjobs.metrics import MetricsAccumulator
from tests.integration.conftest import NAMESPACE, TOKEN
from tests.integration.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_job_left_behind")]

GB = 1_000_000_000
GPU_KEYS = {"utilization", "memory_used_bytes", "memory_total_bytes"}


def gated(gate: Path, *before: str) -> list[str]:
    """A job that runs ``before`` (Python statements), then waits for ``gate`` to exist."""
    code = "\n".join(
        ["import os, time", *before, f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)"]
    )
    return ["python", "-c", code]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """The file that lets this test's jobs end."""
    path = tmp_path / "gate"
    yield path
    path.touch()


def start(server: LocalJobsServer, hook: HfJobsHook, gate: Path, flavor: str, *before: str) -> JobRecord:
    """A gated job on ``flavor``, once RUNNING, as the server keeps it (its record in the state directory)."""
    job = hook.run_job(image="python:3.12", command=gated(gate, *before), flavor=flavor)
    assert (
        hook.wait_for_job(job.id, timeout=30, poll_interval=0.1, stages=["RUNNING"]).stage is JobStage.RUNNING
    )
    return JobRecord.load(Path(server.state_dir) / "jobs" / job.id)


def write_reading(path: Path, reading: Any) -> None:
    """As a job should: a temporary file next to it, then an atomic rename."""
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(reading))
    os.replace(part, path)


def metrics_url(server: LocalJobsServer, job_id: str) -> str:
    return f"{server.url}/api/jobs/{NAMESPACE}/{job_id}/metrics"


def samples(server: LocalJobsServer, job_id: str) -> Iterator[dict[str, Any]]:
    """The raw SSE stream of the official endpoint, one ``event: metric`` sample after the other."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
    with requests.get(metrics_url(server, job_id), headers=headers, stream=True, timeout=15) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        previous = b""
        for line in stream.iter_lines():
            if line.startswith(b"data: "):
                assert previous == b"event: metric"
                yield json.loads(line[len(b"data: ") :])
            previous = line


def first_sample(server: LocalJobsServer, job_id: str) -> dict[str, Any]:
    return next(samples(server, job_id))


def only_gpu(gpus: dict[str, Any]) -> dict[str, Any]:
    (gpu,) = gpus.values()
    return gpu


# ----------------------------------------------------------------------------------------------- reading
def test_a_gpu_job_is_reported_as_it_wrote_by_every_client(
    server: LocalJobsServer, hook: HfJobsHook, gate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = start(server, hook, gate, "a10g-small")
    path = gpu_file_for(record)
    assert path == record.directory / WORK_DIR / GPU_FILE and path.parent.is_dir()
    write_reading(path, {"utilization": 3, "memory_used_bytes": 2 * GB})

    raw = first_sample(server, record.id)
    (gpu_id,) = raw["gpus"]
    assert re.fullmatch(r"[0-9a-f]{8}", gpu_id)
    # The Hub's shape, integers only: what `hf jobs stats` divides and formats.
    assert raw["gpus"][gpu_id] == {
        "utilization": 3,
        "memory_used_bytes": 2 * GB,
        "memory_total_bytes": 24 * GB,
    }
    assert all(type(value) is int for value in raw["gpus"][gpu_id].values())

    (synced,) = hook.fetch_job_metrics(record.id)
    assert synced["gpus"] == raw["gpus"]

    async def read_async() -> list[dict[str, Any]]:
        async with HfJobsAsyncHook("hf_local") as async_hook:
            return [sample async for sample in async_hook.fetch_job_metrics(record.id)]

    (asynced,) = asyncio.run(read_async())
    assert asynced["gpus"] == raw["gpus"]

    hub = HfApi(endpoint=server.url, token=TOKEN)
    (official,) = list(hub.fetch_job_metrics(job_id=record.id, namespace=NAMESPACE))
    assert official["gpus"] == raw["gpus"]

    accumulator = MetricsAccumulator()
    accumulator.add(synced)
    summary = accumulator.summary()
    assert (summary["gpu_samples"], summary["gpu_count"], summary["gpu_utilization_mean_pct"]) == (1, 1, 3.0)
    assert summary["gpu_memory_total_bytes"] == 24 * GB


def test_a_multi_gpu_flavor_reports_each_gpu_from_a_list(
    server: LocalJobsServer, hook: HfJobsHook, gate: Path
) -> None:
    record = start(server, hook, gate, "l4x4")
    write_reading(gpu_file_for(record), [90, {"utilization": 10.4, "memory_used_bytes": 1e9}])
    gpus = first_sample(server, record.id)["gpus"]
    assert len(gpus) == 4 and all(set(gpu) == GPU_KEYS for gpu in gpus.values())
    # One entry per GPU in order; the GPUs the list leaves out are idle; each GPU has a quarter of 96 GB.
    readings = sorted((gpu["utilization"], gpu["memory_used_bytes"]) for gpu in gpus.values())
    assert readings == [(0, 0), (0, 0), (10, GB), (90, 0)]
    assert {gpu["memory_total_bytes"] for gpu in gpus.values()} == {24 * GB}
    # Stable ids: the same on the next connection.
    assert set(first_sample(server, record.id)["gpus"]) == set(gpus)


def test_one_number_sets_every_gpu_and_values_are_clamped(
    server: LocalJobsServer, hook: HfJobsHook, gate: Path
) -> None:
    record = start(server, hook, gate, "a10g-largex2")
    write_reading(gpu_file_for(record), 250)
    assert [gpu["utilization"] for gpu in first_sample(server, record.id)["gpus"].values()] == [100, 100]
    write_reading(gpu_file_for(record), {"utilization": -4, "memory_used_bytes": 999 * GB})
    gpus = first_sample(server, record.id)["gpus"].values()
    assert [(gpu["utilization"], gpu["memory_used_bytes"]) for gpu in gpus] == [(0, 24 * GB), (0, 24 * GB)]


def test_nothing_written_no_reading_then_the_last_good_reading_survives_a_bad_write(
    server: LocalJobsServer, hook: HfJobsHook, gate: Path
) -> None:
    """On one stream: ``{}`` before the job writes (no fabricated 0%), its reading once it does, the same
    reading while the file holds garbage (caught half written), ``{}`` again once the file is gone."""
    record = start(server, hook, gate, "t4-small")
    path = gpu_file_for(record)
    phase, garbage_samples, removed_samples = "empty", 0, 0
    for sample in samples(server, record.id):
        utilization = only_gpu(sample["gpus"])["utilization"] if sample["gpus"] else None
        if phase == "empty":
            assert utilization is None, sample
            write_reading(path, 40)
            phase = "written"
        elif phase == "written" and utilization == 40:
            path.write_text('{"utilization": ')
            phase = "garbage"
        elif phase == "garbage":
            assert utilization == 40, sample
            garbage_samples += 1
            if garbage_samples == 2:
                path.unlink()
                phase = "removed"
        elif phase == "removed":
            if utilization is None:
                break
            removed_samples += 1  # a sample taken before the file went
            assert removed_samples < 2 and utilization == 40, sample
    assert phase == "removed" and garbage_samples == 2


def test_a_cpu_flavor_has_no_gpu_file_and_reports_no_gpu(
    server: LocalJobsServer, hook: HfJobsHook, gate: Path
) -> None:
    record = start(server, hook, gate, "cpu-basic")
    assert gpu_file_for(record) is None
    write_reading(record.directory / WORK_DIR / GPU_FILE, 80)  # where a GPU flavor's file would be
    assert first_sample(server, record.id)["gpus"] == {}


# ----------------------------------------------------------------------------------- the idle-GPU guard
def test_the_idle_gpu_guard_stops_a_job_whose_gpu_idles_on_the_local_server(
    server: LocalJobsServer, hook: HfJobsHook, gate: Path
) -> None:
    """The guard end to end offline: fed the hook's samples of a job at 2%, it fires after its 2 s; a
    busy GPU (60%) first keeps it quiet, and the job is cancelled with the guard's line."""
    record = start(server, hook, gate, "a10g-small")
    path = gpu_file_for(record)
    write_reading(path, {"utilization": 60})
    watch = GuardWatch(Guardrails.from_arguments(idle_gpu_timeout=2, idle_gpu_threshold=5))
    watch.observe_job(hook.inspect_job(record.id), time.monotonic())
    stop, busy_samples = None, 0
    deadline = time.monotonic() + 30
    for sample in hook.fetch_job_metrics(record.id, follow=True):
        now = time.monotonic()
        watch.observe_metrics(sample, now)
        stop = watch.check(now, price_per_hour_usd=1.0)
        if sample["gpus"] and only_gpu(sample["gpus"])["utilization"] == 60:
            assert stop is None
            busy_samples += 1
            if busy_samples == 3:
                write_reading(path, {"utilization": 2})
        if stop is not None or now > deadline:
            break
    assert stop is not None and stop.guard == "idle_gpu_timeout" and busy_samples >= 3
    assert stop.value >= 2 and stop.message.startswith(
        f"idle_gpu_timeout: the GPU of job {record.id} was under 5%"
    )
    hook.cancel_job(record.id)
    assert hook.wait_for_job(record.id, timeout=30, poll_interval=0.1).stage is JobStage.CANCELED


# ---------------------------------------------------------------------------------- the job's variable
def test_a_gpu_job_finds_its_gpu_file_in_its_environment(
    server: LocalJobsServer, hook: HfJobsHook, gate: Path
) -> None:
    record = start(
        server,
        hook,
        gate,
        "a10g-small",
        f"path = os.environ.get({GPU_FILE_ENV!r})",
        "print('gpu file:', path, flush=True)",
        "path and open(path, 'w').write('55')",
    )
    line = wait_for("the job's line", lambda: next(iter(hook.fetch_job_logs(record.id)), None))
    assert line == f"gpu file: {gpu_file_for(record)}"
    assert only_gpu(first_sample(server, record.id)["gpus"])["utilization"] == 55


def test_the_official_cli_shows_the_gpu(
    server: LocalJobsServer, hook: HfJobsHook, gate: Path, tmp_path: Path
) -> None:
    """``hf jobs stats`` divides and formats each GPU's figures: the shape must be the Hub's exactly."""
    record = start(server, hook, gate, "l4x4")
    write_reading(gpu_file_for(record), [{"utilization": 37, "memory_used_bytes": 6 * GB}])
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.update(HF_ENDPOINT=server.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf-home"), NO_COLOR="1")
    env.update(
        HF_HUB_DISABLE_UPDATE_CHECK="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_EXPERIMENTAL_WARNING="1"
    )
    hf = Path(sys.executable).with_name("hf")
    result = subprocess.run(
        [str(hf), "jobs", "stats", record.id, "--namespace", NAMESPACE],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "37%" in result.stdout and "25.0%" in result.stdout and "N/A" not in result.stdout, result.stdout
