"""Where a deferred job's log stands, kept outside the triggerer so a restarted or moved trigger resumes
after the last line shown instead of the cursor it was deferred with.

The record is a small XCom of the task instance (key :data:`CHECKPOINT_XCOM_KEY`): ``{"job_id", "shown",
"showing"}``. A trigger writes ``showing`` (the lines it is about to write) *before* writing them and
``shown`` after, so a trigger resuming from a record with ``shown < showing`` knows that its predecessor
stopped in between — the only window in which a line may appear twice — and says so in the log instead of
repeating lines silently. That window is one display batch (at most :data:`MAX_BATCH_LINES` lines).

Airflow 3 reaches the XCom through the trigger runner's supervisor (``GetXCom``/``SetXCom``, answered by
the triggerer's in-process API); Airflow 2 has the metadata DB in the triggerer (queried in a thread).
Checkpoints never decide a job's outcome: if the store fails, the trigger logs once and goes on without.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_PLUS

#: The XCom key of the checkpoint (visible in the task's XCom tab: it holds no log text).
CHECKPOINT_XCOM_KEY = "hf_job_log_checkpoint"
#: Most lines written between two checkpoints: the bound on lines a killed triggerer can leave unsure.
MAX_BATCH_LINES = 200
#: Seconds a store call may take before the trigger gives up on checkpoints (never on the job).
STORE_TIMEOUT = 15.0

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
        return Checkpoint.from_value(await asyncio.wait_for(self._get(), STORE_TIMEOUT), job_id)

    async def save(self, checkpoint: Checkpoint) -> None:
        await asyncio.wait_for(self._set(checkpoint.to_value()), STORE_TIMEOUT)
        self.writes += 1

    async def _get(self) -> Any:
        raise NotImplementedError

    async def _set(self, value: dict[str, Any]) -> None:
        raise NotImplementedError


class SupervisorCheckpointStore(CheckpointStore):
    """Airflow 3: the trigger runner's own channel to its supervisor (``asend``: never blocks the loop)."""

    def _key(self) -> dict[str, Any]:
        ti = self.ti
        return {
            "key": CHECKPOINT_XCOM_KEY, "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
            "map_index": ti.map_index if ti.map_index is not None else -1,
        }  # fmt: skip

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

    def _where(self) -> dict[str, Any]:
        ti = self.ti
        return {
            "key": CHECKPOINT_XCOM_KEY, "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
            "map_index": ti.map_index if ti.map_index is not None else -1,
        }  # fmt: skip

    async def _get(self) -> Any:
        def get() -> Any:
            from airflow.models.xcom import XCom

            return XCom.get_one(**self._where())

        return await asyncio.to_thread(get)

    async def _set(self, value: dict[str, Any]) -> None:
        def put() -> None:
            from airflow.models.xcom import XCom

            XCom.set(value=value, **self._where())

        await asyncio.to_thread(put)


def checkpoint_store(ti: Any) -> CheckpointStore | None:
    """The store for this Airflow, or ``None`` when the trigger runs without a task instance."""
    if ti is None or not all(getattr(ti, name, None) for name in ("dag_id", "run_id", "task_id")):
        return None
    return SupervisorCheckpointStore(ti) if AIRFLOW_V_3_PLUS else DatabaseCheckpointStore(ti)
