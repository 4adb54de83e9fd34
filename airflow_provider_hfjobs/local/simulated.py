"""The simulated runner: a load-testing mode of the local Jobs server. No process is started.

Each job plays a script on the server's event loop: RUNNING at once, ``lines`` log lines spread evenly over
``duration`` seconds (give or take ``jitter``, drawn per job), then the final ``stage``. Thousands of
concurrent jobs fit on two cores, so a benchmark can watch as many jobs as a busy triggerer does. Jobs are
kept in memory only.

The script comes from the job's environment, falling back to the server's defaults
(``hfjobs-local serve --simulate duration=5,lines=10``)::

    HFJOBS_SIM_DURATION=5  HFJOBS_SIM_LINES=10  HFJOBS_SIM_STAGE=COMPLETED  HFJOBS_SIM_LINE_BYTES=60
    HFJOBS_SIM_PHASE=random   (or aligned: jobs created together print together)
    HFJOBS_SIM_JITTER=0       (seconds: each job runs duration ± up to this, so jobs started together
                              end over a window, as jobs do, instead of all in the same second)
    HFJOBS_SIM_START_AFTER=   (a file's path: the job is RUNNING at once, but its script begins only once
                              that file exists, so thousands of jobs created over many seconds start in
                              the same moment, when a benchmark creates the file)

A job with ``attempts`` whose scenario ends in ERROR plays again, up to that many times, with the start
marker before each replay; its metrics stream serves a constant idle sample each second while it runs.

Use it to measure clients, never to check what a job does: the command is recorded and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from dataclasses import dataclass, fields, replace
from typing import Any

from airflow_provider_hfjobs.jobs import JobStage
from airflow_provider_hfjobs.local.metrics import SimulatedSampler
from airflow_provider_hfjobs.local.shim import marker
from airflow_provider_hfjobs.local.store import JobRecord

ENV_PREFIX = "HFJOBS_SIM_"


@dataclass(frozen=True)
class Scenario:
    """What a simulated job does."""

    duration: float = 5.0
    lines: int = 10
    stage: str = "COMPLETED"
    line_bytes: int = 60
    #: ``random``: each job prints at its own phase within the line interval (real jobs do not print in
    #: lockstep); ``aligned``: all jobs created together print together (the worst case for a watcher).
    phase: str = "random"
    #: Each job's duration is ``duration`` ± up to ``jitter`` seconds (uniform, fixed per job id).
    jitter: float = 0.0
    #: A file's path (empty: none): the script begins once it exists (checked every 10 ms, one check for
    #: all the jobs waiting on the same path), not when the job is created.
    start_after: str = ""

    def __post_init__(self) -> None:
        if self.duration < 0 or self.lines < 0 or self.line_bytes < 1:
            raise ValueError("duration and lines must not be negative, line_bytes must be positive")
        if not 0 <= self.jitter <= self.duration:
            raise ValueError(f"jitter {self.jitter:g} must be between 0 and the duration ({self.duration:g})")
        if self.stage not in (JobStage.COMPLETED, JobStage.ERROR, JobStage.CANCELED):
            raise ValueError(f"stage {self.stage!r} is not one of COMPLETED, ERROR, CANCELED")
        if self.phase not in ("RANDOM", "ALIGNED", "random", "aligned"):
            raise ValueError(f"phase {self.phase!r} is not one of random, aligned")

    @classmethod
    def parse(cls, spec: str) -> Scenario:
        """``duration=5,lines=10,stage=ERROR,line_bytes=60,jitter=2`` (the CLI form); empty: the defaults."""
        return cls().with_values(dict(_pairs(spec)))

    def with_values(self, values: dict[str, str]) -> Scenario:
        kinds = {f.name: f.type for f in fields(self)}
        unknown = set(values) - set(kinds)
        if unknown:
            raise ValueError(f"unknown scenario keys {sorted(unknown)}: use {', '.join(kinds)}")
        converted: dict[str, Any] = {}  # each to its field's type, from the field's name
        for key, raw in values.items():
            kind = str(kinds[key])
            try:
                if key == "start_after":  # a path, as given
                    converted[key] = raw
                else:
                    converted[key] = (
                        float(raw) if "float" in kind else int(raw) if "int" in kind else raw.upper()
                    )
            except ValueError:
                raise ValueError(f"scenario {key}={raw!r} is not a number") from None
        return replace(self, **converted)

    def for_job(self, environment: dict[str, str]) -> Scenario:
        """This scenario, overridden by the job's ``HFJOBS_SIM_*`` variables."""
        values = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in environment.items()
            if key.startswith(ENV_PREFIX)
        }
        return self.with_values(values) if values else self


def _pairs(spec: str) -> list[tuple[str, str]]:
    pairs = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"scenario part {part!r}: use key=value, e.g. duration=5,lines=10")
        pairs.append((key.strip(), value.strip()))
    return pairs


class SimulatedRunner:
    """Plays scripted jobs on the server's event loop (same interface as :class:`.runner.ProcessRunner`)."""

    def __init__(self, scenario: Scenario | None = None) -> None:
        self.scenario = scenario or Scenario()
        self.keep_jobs = False  # nothing outlives the server: jobs live in memory
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._start_signals: dict[str, asyncio.Task[None]] = {}

    def start(self, job: JobRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._play(job), name=f"simulated-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))

    resume = start

    async def cancel(self, job: JobRecord) -> None:
        if job.stage.is_terminal:
            return
        job.request_cancel()
        task = self._tasks.pop(job.id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        job.finish(JobStage.CANCELED)

    async def shutdown(self) -> None:
        tasks = [*self._tasks.values(), *self._start_signals.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _play(self, job: JobRecord) -> None:
        try:
            scenario = self.scenario.for_job(job.spec.get("environment") or {})
        except ValueError as exc:
            job.mark_running()
            job.finish(JobStage.ERROR, f"Bad simulation scenario: {exc}")
            return
        loop = asyncio.get_running_loop()
        job.mark_running()
        if scenario.start_after:
            await asyncio.shield(self._start_signal(scenario.start_after))
        draw = random.Random(job.id)
        for attempt in range(1, job.attempts + 1):
            if attempt > 1:  # a failed attempt runs again, as a job with ``attempts`` does
                job.record_failure(attempt - 1, "exit code 1")
                job.add_line(marker(time.time()))
            begin = loop.time()
            duration = scenario.duration + draw.uniform(-scenario.jitter, scenario.jitter)
            gap = duration / scenario.lines if scenario.lines else 0.0
            offset = draw.uniform(0, gap) if scenario.phase.lower() == "random" else 0.0
            for index in range(scenario.lines):
                await asyncio.sleep(max(0.0, begin + offset + index * gap - loop.time()))
                text = f"line {index} of job {job.id} "
                job.add_line(text + "." * max(0, scenario.line_bytes - len(text)))
            await asyncio.sleep(max(0.0, begin + duration - loop.time()))
            if scenario.stage != JobStage.ERROR:
                break
        message = "exit code 1" if scenario.stage == JobStage.ERROR else None
        job.finish(JobStage(scenario.stage), message)

    def _start_signal(self, path: str) -> asyncio.Task[None]:
        """Done once ``path`` exists: one watcher for all the jobs waiting on it."""
        signal = self._start_signals.get(path)
        if signal is None:
            signal = self._start_signals[path] = asyncio.get_running_loop().create_task(
                self._wait_for_file(path), name=f"simulated-start-after-{path}"
            )
        return signal

    @staticmethod
    async def _wait_for_file(path: str) -> None:
        while not os.path.exists(path):
            await asyncio.sleep(0.01)

    def metrics_sampler(self, job: JobRecord) -> SimulatedSampler:
        """Metrics of a simulated job: a constant idle sample while it is RUNNING."""
        return SimulatedSampler(job)
