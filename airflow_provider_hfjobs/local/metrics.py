"""Metrics of a local job, for ``GET /api/jobs/{ns}/{id}/metrics``: its process group's CPU and memory.

The Hub sends one ``event: metric`` a second with snake_case keys (the reference's §6). Here a sample is
the job's whole process group (the command and every process it started that stayed in its group, even
one that daemonized), read with psutil:

- ``cpu_millicores``: the CPUs this server's jobs may use (``cpu_count`` * 1000): what a job could use, as
  the Hub reports its flavor's CPUs; ``cpu_usage_pct``: the group's CPU time over the last interval, in
  percent of those CPUs (0-100);
- ``memory_used_bytes``: the group's resident memory; ``memory_total_bytes``: this machine's memory;
- ``rx_bps``/``tx_bps``: 0, since a process's network traffic is not measured locally (the job shares the
  machine's network);
- ``gpus``: ``{}`` (the official CLI shows ``N/A``), unless the job reports a simulated GPU (below).

Simulated GPUs, so that what reads GPU metrics (the task's summary, its idle-GPU warning, the
``idle_gpu_timeout`` guardrail) can be tried offline. A job on a GPU flavor (any but ``cpu-*``, as
``metrics.flavor_has_gpu`` decides) finds in its environment ``HFJOBS_LOCAL_GPU_FILE`` (:data:`GPU_FILE_ENV`,
set by the runner from :func:`gpu_environment`) the path of a file in its own working directory,
:func:`gpu_file_for`, and may write its GPU utilization there at any time, best atomically (a temporary
file next to it, then ``os.replace``)::

    75                                              every GPU of the flavor at 75%
    {"utilization": 75, "memory_used_bytes": 3e9}   every GPU at 75%, each with 3 GB in use
    [90, {"utilization": 10}]                       one entry per GPU, in order (missing ones: 0%, 0 B)

Each sample then reports the flavor's GPUs in the Hub's exact shape, ``{"<8-hex id>": {"utilization",
"memory_used_bytes", "memory_total_bytes"}}`` (integers; utilization clamped to 0-100, memory to the GPU's
size, which is the flavor's VRAM over its GPU count; ids stable for the job). While no such file exists,
``gpus`` stays ``{}``: no reading, not a fabricated 0%. A local job runs on no GPU at all, so a made-up idle
GPU would turn every local GPU-flavor job into an idle-GPU warning (and a cancel by ``idle_gpu_timeout``)
that the Hub, where the command would have had its GPU, would not give; reporting is the job's opt-in.
A file that cannot be read as one of the forms above (half written, say) keeps this stream's last good
reading. The file lives in ``work/``, which each attempt gets fresh: a new attempt, like a new container,
starts with no reading.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from airflow_provider_hfjobs.jobs import DEFAULT_FLAVOR, JobStage
from airflow_provider_hfjobs.local.hardware import FLAVORS, hardware_entry
from airflow_provider_hfjobs.local.shim import WORK_DIR
from airflow_provider_hfjobs.local.store import JobRecord
from airflow_provider_hfjobs.metrics import flavor_has_gpu

#: The variable that gives a job on a GPU flavor the path of its simulated GPU reading.
GPU_FILE_ENV = "HFJOBS_LOCAL_GPU_FILE"
#: That file's name, in the job's working directory.
GPU_FILE = ".hfjobs-local-gpu.json"
#: Bytes of it read at most: a reading is a few dozen; a runaway file is not a reading.
MAX_GPU_FILE_BYTES = 64 << 10


@functools.cache
def memory_capacity() -> int:
    """This machine's memory in bytes."""
    return int(psutil.virtual_memory().total)


@functools.cache
def cpu_capacity() -> int:
    """The CPUs a job may run on, in millicores."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    return count * 1000


def replica(job: JobRecord) -> str:
    """A short id per attempt, like the Hub's replica id: each attempt is a new "container"."""
    return hashlib.sha256(f"{job.id}:{job.failure_count}".encode()).hexdigest()[:5]


# ------------------------------------------------------------------------------------------ simulated GPUs
def gpu_file_for(job: JobRecord) -> Path | None:
    """Where the job may write its simulated GPU reading: ``None`` on a CPU flavor, or for a job without
    files (load-testing mode)."""
    if job.directory is None or not flavor_has_gpu(job.spec.get("flavor")):
        return None
    return job.directory / WORK_DIR / GPU_FILE


def gpu_environment(job: JobRecord) -> dict[str, str]:
    """What the runner adds to the job's environment: :data:`GPU_FILE_ENV` on a GPU flavor, else nothing."""
    path = gpu_file_for(job)
    return {} if path is None else {GPU_FILE_ENV: str(path)}


def flavor_gpus(flavor: str | None) -> tuple[int, int]:
    """The flavor's GPU count and each GPU's memory in bytes (its VRAM shared evenly), from the local
    hardware table; one GPU of unknown size for a flavor off the table."""
    name = flavor or DEFAULT_FLAVOR
    accelerator = hardware_entry(name)["accelerator"] if name in FLAVORS else None
    if not accelerator:
        return 1, 0
    count = max(1, int(accelerator["quantity"]))
    vram = float(str(accelerator["vram"]).split()[0]) * 1e9
    return count, int(vram / count)


def _reading_value(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _gpu_entry(entry: Any) -> tuple[float, float] | None:
    """One GPU's (utilization, memory used) from a number or ``{"utilization", "memory_used_bytes"?}``."""
    if isinstance(entry, Mapping):
        utilization = _reading_value(entry.get("utilization"))
        memory = _reading_value(entry.get("memory_used_bytes", 0))
        return None if utilization is None or memory is None else (utilization, memory)
    utilization = _reading_value(entry)
    return None if utilization is None else (utilization, 0.0)


def parse_gpu_reading(data: Any, count: int) -> list[tuple[float, float]] | None:
    """The file's content as ``count`` (utilization, memory used) pairs; ``None`` if it is none of the
    documented forms (a number, one object for every GPU, or a list with one entry per GPU)."""
    if isinstance(data, list):
        entries = [_gpu_entry(entry) for entry in data[:count]]
        readings = [entry for entry in entries if entry is not None]
        if len(readings) < len(entries):
            return None
        return [*readings, *[(0.0, 0.0)] * (count - len(readings))]
    entry = _gpu_entry(data)
    return None if entry is None else [entry] * count


def gpu_ids(job: JobRecord, count: int) -> list[str]:
    """Stable 8-hex ids, like the Hub's GPU ids, one per GPU of the job."""
    return [hashlib.sha256(f"{job.id}:gpu:{index}".encode()).hexdigest()[:8] for index in range(count)]


def gpu_sample(job: JobRecord, reading: list[tuple[float, float]]) -> dict[str, dict[str, int]]:
    """The ``gpus`` of a metric event, in the Hub's shape, from a parsed reading."""
    _, total = flavor_gpus(job.spec.get("flavor"))
    gpus = {}
    for gpu_id, (utilization, memory) in zip(gpu_ids(job, len(reading)), reading, strict=True):
        used = max(0, int(memory))
        gpus[gpu_id] = {
            "utilization": round(min(100.0, max(0.0, utilization))),
            "memory_used_bytes": min(used, total) if total else used,
            "memory_total_bytes": total,
        }
    return gpus


class GpuFileReader:
    """Reads a job's simulated GPU file for one metrics stream, keeping the last good reading for a file
    caught half written. Blocking (a file read): call it where the sampler reads."""

    def __init__(self, job: JobRecord) -> None:
        self.job = job
        self.last: list[tuple[float, float]] | None = None

    def read(self) -> dict[str, dict[str, int]]:
        path = gpu_file_for(self.job)
        if path is None:
            return {}
        try:
            with open(path, "rb") as handle:
                content = handle.read(MAX_GPU_FILE_BYTES + 1)
        except FileNotFoundError:
            self.last = None  # no file (or a new attempt's fresh work/): no reading
            return {}
        except OSError:
            content = b""
        reading = None
        if len(content) <= MAX_GPU_FILE_BYTES:
            try:
                reading = parse_gpu_reading(json.loads(content), flavor_gpus(self.job.spec.get("flavor"))[0])
            except (ValueError, RecursionError):  # JSON errors, bad UTF-8, absurd nesting
                reading = None
        if reading is not None:
            self.last = reading
        return {} if self.last is None else gpu_sample(self.job, self.last)


# ------------------------------------------------------------------------------------------------- samples
def sample(
    job: JobRecord,
    cpu_used: float,
    memory_used: int,
    previous: tuple[float, float] | None,
    gpus: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """One metric event; ``previous`` is the (CPU seconds, moment) of the last sample, if any; ``gpus``
    the simulated GPUs' readings (none: ``{}``)."""
    millicores = cpu_capacity()
    now = time.monotonic()
    percent = 0.0
    if previous is not None and now > previous[1]:
        percent = max(0.0, cpu_used - previous[0]) / (now - previous[1]) / (millicores / 1000) * 100
    return {
        "cpu_usage_pct": round(min(100.0, percent)),
        "cpu_millicores": millicores,
        "memory_used_bytes": int(memory_used),
        "memory_total_bytes": memory_capacity(),
        "rx_bps": 0,
        "tx_bps": 0,
        "gpus": gpus or {},
        "replica": replica(job),
    }


class ProcessGroupSampler:
    """Samples a running job's process group; one per metrics connection (it keeps the last reading).

    Blocking (psutil reads ``/proc``): call :meth:`read` in a thread.
    """

    blocking = True

    def __init__(self, job: JobRecord) -> None:
        self.job = job
        self.previous: tuple[float, float] | None = None
        self.gpus = GpuFileReader(job)

    def group(self) -> int | None:
        """The process group of the job's current command: the shim's child leads it."""
        if self.job.pid is None:
            return None
        try:
            for child in psutil.Process(self.job.pid).children():
                return os.getpgid(child.pid)
        except (psutil.Error, ProcessLookupError):
            return None
        return None

    def read(self) -> dict[str, Any] | None:
        """The next sample, or ``None`` while there is no process to measure (between attempts)."""
        pgid = self.group()
        if pgid is None:
            return None
        cpu, memory = 0.0, 0
        for process in psutil.process_iter():
            try:
                if os.getpgid(process.pid) != pgid:
                    continue
                with process.oneshot():
                    times = process.cpu_times()
                    # Reaped children's time moves into their parent's: the group's total stays continuous.
                    cpu += times.user + times.system + times.children_user + times.children_system
                    memory += process.memory_info().rss
            except (psutil.Error, ProcessLookupError):
                continue
        if self.previous is None:  # the first sample: the average since the command started
            try:
                started = psutil.Process(pgid).create_time()
                self.previous = (0.0, time.monotonic() - max(0.001, time.time() - started))
            except psutil.Error:
                pass
        event = sample(self.job, cpu, memory, self.previous, self.gpus.read())
        self.previous = (cpu, time.monotonic())
        return event


class SimulatedSampler:
    """Load-testing mode: no process, so a constant idle sample while the job is RUNNING."""

    blocking = False  # read on the event loop: thousands of streams must not queue for threads

    def __init__(self, job: JobRecord) -> None:
        self.job = job

    def read(self) -> dict[str, Any] | None:
        return sample(self.job, 0.0, 0, None) if self.job.stage is JobStage.RUNNING else None
