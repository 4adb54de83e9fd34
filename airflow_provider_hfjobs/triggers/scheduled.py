"""``HfScheduledRunTrigger``: wait in the triggerer for a scheduled job to start a run.

A sensor waiting for a scheduled job's next run may wait hours; this trigger polls the scheduled job
(``status.lastJob``) and fires once its latest run is another than ``after_job_id``. The sensor then
follows that run with :class:`~airflow_provider_hfjobs.triggers.hfjobs.HfJobTrigger` (live logs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_hfjobs.exceptions import HfJobsError
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook
from airflow_provider_hfjobs.triggers.hfjobs import _is_permanent


def run_started_event(
    status: str, scheduled_job_id: str, *, job_id: str | None = None, message: str | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The one payload shape: ``started`` (with the run's ``job_id``), ``timeout`` or ``error``."""
    return {
        "status": status, "scheduled_job_id": scheduled_job_id, "job_id": job_id, "message": message,
        "deadline": deadline,
    }  # fmt: skip


class HfScheduledRunTrigger(BaseTrigger):
    """Fire when scheduled job ``scheduled_job_id`` has a latest run other than ``after_job_id``.

    :param after_job_id: the run already known (``None``: any run will do, the first one included).
    :param poll_interval: seconds between two looks at the scheduled job.
    :param deadline: wall-clock epoch seconds after which a ``timeout`` event is sent.
    :param max_consecutive_errors: transient API failures tolerated in a row before an ``error`` event.
    """

    def __init__(
        self,
        scheduled_job_id: str,
        namespace: str,
        hf_conn_id: str = "hf_default",
        after_job_id: str | None = None,
        poll_interval: float = 60.0,
        deadline: float | None = None,
        max_consecutive_errors: int = 5,
    ) -> None:
        super().__init__()
        self.scheduled_job_id = scheduled_job_id
        self.namespace = namespace
        self.hf_conn_id = hf_conn_id
        self.after_job_id = after_job_id
        self.poll_interval = float(poll_interval)
        self.deadline = None if deadline is None else float(deadline)
        self.max_consecutive_errors = int(max_consecutive_errors)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "scheduled_job_id": self.scheduled_job_id,
                "namespace": self.namespace,
                "hf_conn_id": self.hf_conn_id,
                "after_job_id": self.after_job_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "max_consecutive_errors": self.max_consecutive_errors,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        errors = 0
        async with HfJobsAsyncHook(self.hf_conn_id, namespace=self.namespace) as hook:
            while True:
                if self.deadline is not None and time.time() >= self.deadline:
                    yield self._event("timeout", message="the sensor's timeout passed before a run started")
                    return
                try:
                    scheduled = await hook.inspect_scheduled_job(
                        self.scheduled_job_id, namespace=self.namespace
                    )
                except HfJobsError as exc:
                    errors += 1
                    if _is_permanent(exc) or errors >= self.max_consecutive_errors:
                        yield self._event("error", message=str(exc))
                        return
                    self.log.warning(
                        "Could not inspect scheduled job %s (%s); trying again.", self.scheduled_job_id, exc
                    )
                else:
                    errors = 0
                    last = scheduled.last_job.id if scheduled.last_job else None
                    if last is not None and last != self.after_job_id:
                        self.log.info("Scheduled job %s started run %s.", self.scheduled_job_id, last)
                        yield self._event("started", job_id=last)
                        return
                wait = self.poll_interval
                if self.deadline is not None:
                    wait = max(0.0, min(wait, self.deadline - time.time()))
                await asyncio.sleep(wait)

    def _event(self, status: str, *, job_id: str | None = None, message: str | None = None) -> TriggerEvent:
        return TriggerEvent(
            run_started_event(
                status, self.scheduled_job_id, job_id=job_id, message=message, deadline=self.deadline
            )
        )
