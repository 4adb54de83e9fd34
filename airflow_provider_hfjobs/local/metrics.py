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
- ``gpus``: ``{}``, since no GPU is emulated (the official CLI shows ``N/A``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from typing import Any

import psutil

from airflow_provider_hfjobs.jobs import JobStage
from airflow_provider_hfjobs.local.store import JobRecord


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


def sample(
    job: JobRecord, cpu_used: float, memory_used: int, previous: tuple[float, float] | None
) -> dict[str, Any]:
    """One metric event; ``previous`` is the (CPU seconds, moment) of the last sample, if any."""
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
        "gpus": {},
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
        event = sample(self.job, cpu, memory, self.previous)
        self.previous = (cpu, time.monotonic())
        return event


class SimulatedSampler:
    """Load-testing mode: no process, so a constant idle sample while the job is RUNNING."""

    blocking = False  # read on the event loop: thousands of streams must not queue for threads

    def __init__(self, job: JobRecord) -> None:
        self.job = job

    def read(self) -> dict[str, Any] | None:
        return sample(self.job, 0.0, 0, None) if self.job.stage is JobStage.RUNNING else None
