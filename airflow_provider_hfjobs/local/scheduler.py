"""The local Jobs server's scheduler: starts each scheduled job's runs when its schedule says.

One asyncio task on the server's loop sleeps until the earliest due run (at most ``MAX_SLEEP`` seconds
at a time, so a wall-clock jump is noticed), and is woken early whenever a scheduled job is created,
changed, resumed or deleted (:meth:`Scheduler.wake`). No polling: with nothing due it sleeps.

Each due run goes through ``start_run`` (the app's: the same job create and runner start as
``POST /api/jobs``), which may decline it (``concurrency`` false and a run still active). Either way the
next run is the first schedule time after *now*: runs missed while the server was down (or while a run
was still active) are not caught up, so a server started after a long stop runs a due scheduled job
once, never a burst. Next-run times come from :func:`airflow_provider_hfjobs.jobs.next_schedule_time`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from airflow_provider_hfjobs.jobs import next_schedule_time
from airflow_provider_hfjobs.local.scheduled_store import ScheduledJobRecord, ScheduledJobStore

logger = logging.getLogger(__name__)

#: Longest sleep between two looks at the clock (seconds), even with nothing due sooner.
MAX_SLEEP = 60.0

StartRun = Callable[[ScheduledJobRecord], Any]


def next_run_after(schedule: str, moment: float) -> float:
    """The first time strictly after ``moment`` (epoch seconds) that ``schedule`` names."""
    return next_schedule_time(schedule, datetime.fromtimestamp(moment, tz=UTC)).timestamp()


class Scheduler:
    """Starts due runs of the scheduled jobs in ``store`` through ``start_run(record)``.

    ``clock`` (epoch seconds) is ``time.time`` on a server; only unit tests pass another.
    """

    def __init__(
        self,
        store: ScheduledJobStore,
        start_run: StartRun,
        clock: Callable[[], float] = time.time,
        max_sleep: float = MAX_SLEEP,
    ) -> None:
        self.store = store
        self.start_run = start_run
        self.clock = clock
        self.max_sleep = max_sleep
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def plan(self, record: ScheduledJobRecord) -> None:
        """Set the next run from now (none while suspended) and save the record."""
        record.next_run_at = None if record.suspend else next_run_after(record.schedule, self.clock())
        record.save()
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        for record in self.store.all():  # a record saved without a next run (never expected): plan one
            if not record.suspend and record.next_run_at is None:
                self.plan(record)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hfjobs-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def tick(self) -> float | None:
        """Start every due run; return when the next one is due (``None``: nothing scheduled)."""
        now = self.clock()
        earliest: float | None = None
        for record in self.store.all():
            if record.suspend or record.next_run_at is None:
                continue
            if record.next_run_at <= now:
                try:
                    self.start_run(record)
                except Exception:  # one broken run must not stop the scheduler
                    logger.exception("scheduled job %s: its run could not start", record.id)
                record.next_run_at = next_run_after(record.schedule, max(now, record.next_run_at))
                record.save()
            if earliest is None or record.next_run_at < earliest:
                earliest = record.next_run_at
        return earliest

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            earliest = self.tick()
            delay = self.max_sleep if earliest is None else earliest - self.clock()
            delay = min(self.max_sleep, max(0.0, delay))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
