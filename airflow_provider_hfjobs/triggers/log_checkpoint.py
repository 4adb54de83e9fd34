"""Where a deferred job's log stands, kept outside the triggerer so a restarted or moved trigger resumes
after the last line shown instead of the cursor it was deferred with.

The record is a small XCom of the task instance (key :data:`CHECKPOINT_XCOM_KEY`): ``{"job_id", "shown",
"showing"}``. A trigger writes ``showing`` (the lines it is about to write) *before* writing them and
``shown`` after, so a trigger resuming from a record with ``shown < showing`` knows that its predecessor
stopped in between — the only window in which a line may appear twice — and says so in the log instead of
repeating lines silently. That window is one display step (at most :data:`MAX_BATCH_LINES` lines) and lasts one write's round trip.

Writes cost the deployment (each is an XCom write), so display steps are budgeted per process
(:class:`StepBudget`): lines wait, and go out together, rather than the triggerer's supervisor being
swamped. The budget is ``[hfjobs] log_checkpoint_steps_per_second``.

Airflow 3 reaches the XCom through the trigger runner's supervisor (``GetXCom``/``SetXCom``, answered by
the triggerer's in-process API); Airflow 2 has the metadata DB in the triggerer (queried in a thread).
Checkpoints never decide a job's outcome: if the store fails, the trigger logs once and goes on without.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_PLUS

#: The XCom key of the checkpoint (visible in the task's XCom tab: it holds no log text).
CHECKPOINT_XCOM_KEY = "hf_job_log_checkpoint"
#: Most lines written between two checkpoints: the bound on lines a killed triggerer can leave unsure.
MAX_BATCH_LINES = 200
#: Seconds a save may take before the trigger gives up on checkpoints (never on the job).
STORE_TIMEOUT = 30.0
#: Seconds the one read at start may take: after a triggerer restart every trigger reads at once, and the
#: supervisor answers them one by one (about 12 ms each on Airflow 3.3: 2,000 take 24 s).
LOAD_TIMEOUT = 120.0
#: Display steps (two checkpoint writes each) a second, for all triggers of a triggerer together, unless
#: ``[hfjobs] log_checkpoint_steps_per_second`` says otherwise (0: no checkpoints). Airflow 3 writes through
#: the triggerer's supervisor, which serves about 73 writes a second (13.7 ms each, measured in
#: benchmarks/checkpoint_cost.py): 10 steps keep it under 30% busy. Airflow 2 writes in the triggerer
#: itself, 4.2 ms of CPU each: 25 steps are a fifth of a core.
DEFAULT_STEPS_PER_SECOND = 10.0 if AIRFLOW_V_3_PLUS else 25.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """Lines ``[0, shown)`` are in the task log; ``[shown, showing)`` were being written."""

    job_id: str
    shown: int
    showing: int

    @classmethod
    def from_value(cls, value: Any, job_id: str) -> Checkpoint | None:
        """A stored record for this job, or ``None`` (absent, another job's, or malformed)."""
        if not isinstance(value, dict) or value.get("job_id") != job_id:
            return None
        shown, showing = value.get("shown"), value.get("showing", value.get("shown"))
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (shown, showing)):
            return None
        return cls(job_id, shown, max(shown, showing))

    def to_value(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "shown": self.shown, "showing": self.showing}


class CheckpointStore:
    """The task instance's checkpoint XCom: :meth:`load` once, :meth:`save` after each display step."""

    def __init__(self, ti: Any) -> None:
        self.ti = ti
        self.writes = 0

    async def load(self, job_id: str) -> Checkpoint | None:
        return Checkpoint.from_value(await asyncio.wait_for(self._get(), LOAD_TIMEOUT), job_id)

    async def save(self, checkpoint: Checkpoint) -> None:
        await asyncio.wait_for(self._set(checkpoint.to_value()), STORE_TIMEOUT)
        self.writes += 1

    def _key(self) -> dict[str, Any]:
        """Which XCom: this task instance's, under :data:`CHECKPOINT_XCOM_KEY`."""
        ti = self.ti
        return {
            "key": CHECKPOINT_XCOM_KEY, "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
            "map_index": ti.map_index if ti.map_index is not None else -1,
        }  # fmt: skip

    async def _get(self) -> Any:
        raise NotImplementedError

    async def _set(self, value: dict[str, Any]) -> None:
        raise NotImplementedError


class SupervisorCheckpointStore(CheckpointStore):
    """Airflow 3: the trigger runner's own channel to its supervisor (``asend``: never blocks the loop)."""

    async def _send(self, message: Any) -> Any:
        from airflow.sdk.execution_time import task_runner

        comms = task_runner.SUPERVISOR_COMMS
        if hasattr(comms, "asend"):
            return await comms.asend(message)
        return comms.send(message)  # ``airflow dags test``: an in-process supervisor, answered at once

    async def _get(self) -> Any:
        from airflow.sdk.execution_time.comms import GetXCom

        response = await self._send(GetXCom(**self._key()))
        return getattr(response, "value", None)

    async def _set(self, value: dict[str, Any]) -> None:
        from airflow.sdk.execution_time.comms import SetXCom

        # The plain JSON value, not through the XCom backend's serializer: a custom backend (object
        # storage) would otherwise upload a file for every checkpoint.
        await self._send(SetXCom(value=value, **self._key()))


class DatabaseCheckpointStore(CheckpointStore):
    """Airflow 2: the triggerer has the metadata DB; each query runs in a thread (it blocks)."""

    async def _get(self) -> Any:
        def get() -> Any:
            from airflow.models.xcom import XCom

            return XCom.get_one(**self._key())

        return await asyncio.to_thread(get)

    async def _set(self, value: dict[str, Any]) -> None:
        def put() -> None:
            from airflow.models.xcom import XCom

            XCom.set(value=value, **self._key())

        await asyncio.to_thread(put)


def checkpoint_store(ti: Any) -> CheckpointStore | None:
    """The store for this Airflow, or ``None`` when the trigger runs without a task instance or checkpoints
    are turned off (``[hfjobs] log_checkpoint_steps_per_second = 0``)."""
    if ti is None or not all(getattr(ti, name, None) for name in ("dag_id", "run_id", "task_id")):
        return None
    if step_budget() is None:
        return None
    return SupervisorCheckpointStore(ti) if AIRFLOW_V_3_PLUS else DatabaseCheckpointStore(ti)


class StepBudget:
    """At most ``per_second`` display steps a second for the whole process, first come first served.

    Each caller is given the next free moment and sleeps until it (virtual scheduling): thousands of
    triggers with lines to show queue up fairly, each step showing everything its trigger received while it
    waited, and the writes never exceed what the supervisor was budgeted for."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self._gap = 1.0 / per_second
        self._next = 0.0

    def reserve(self) -> float:
        """Take the next free moment: the seconds until it (0: at once)."""
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._gap
        return slot - now

    async def acquire(self) -> None:
        if (wait := self.reserve()) > 0:
            await asyncio.sleep(wait)


_budget: list[StepBudget | None] = []


def step_budget() -> StepBudget | None:
    """The process's budget (read from the configuration once); ``None``: checkpoints are off."""
    if not _budget:
        try:
            from airflow.providers.common.compat.sdk import conf

            raw = conf.get("hfjobs", "log_checkpoint_steps_per_second", fallback="") or ""
            rate = float(raw) if raw.strip() else DEFAULT_STEPS_PER_SECOND  # empty: this Airflow's default
        except Exception:  # an unreadable setting must not stop a trigger: the default then
            rate = DEFAULT_STEPS_PER_SECOND
        _budget.append(StepBudget(rate) if rate > 0 else None)
    return _budget[0]
