"""Re-attaching: a retry (or a restarted worker) finds the job an earlier try of the task instance
started, by ``task_state_store`` (Airflow >= 3.3) or its ``airflow-ti`` label, and watches it instead of
starting a second one. A mixin of :mod:`airflow_provider_hfjobs.operators.hfjobs`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_hfjobs.exceptions import HfJobsNotFoundError
from airflow_provider_hfjobs.jobs import TASK_INSTANCE_LABEL, JobInfo

if TYPE_CHECKING:
    from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook

    _OperatorBase = BaseOperator
else:
    _OperatorBase = object

#: The ``task_state_store`` key (Airflow >= 3.3) holding the job of this task instance across tries.
JOB_STATE_KEY = "hf_job_id"


def _first_try_of_run(context: Any, task: BaseOperator) -> bool:
    """Is this the first try of the run, or the first after a clear (a fresh start, not a retry)?

    Airflow sets ``max_tries = retries`` for a new run and ``max_tries = try_number + retries`` on a clear,
    so only a retry has fewer than ``retries`` tries left after this one.
    """
    ti = context["ti"]
    try:
        return int(ti.max_tries) - int(ti.try_number) >= int(task.retries or 0) - 1
    except (AttributeError, TypeError, ValueError):
        return True


class _TaskState:
    """``task_state_store`` (Airflow >= 3.3) or nothing: never fails the task, it only speeds up a retry."""

    def __init__(self, store: Any, log: Any) -> None:
        self.store, self.log = store, log

    def get(self, key: str) -> Any:
        if self.store is None:
            return None
        try:
            return self.store.get(key)
        except Exception as exc:  # the store is an optimisation: the label lookup still finds the job
            self.log.info("task_state_store is not available (%s); looking jobs up by label.", exc)
            return None

    def set(self, key: str, value: str) -> None:
        if self.store is None:
            return
        try:
            self.store.set(key, value)
        except Exception as exc:
            self.log.info(
                "Could not remember job %s in task_state_store (%s); its label still finds it.", value, exc
            )


def _task_state(context: Any, log: Any) -> _TaskState:
    try:
        store = context["task_state_store"]
    except (KeyError, TypeError):
        store = None
    return _TaskState(store, log)


class Reattachment(_OperatorBase):
    """The earlier tries' jobs of an ``HfJobRunOperator`` task instance (see its ``reattach`` and
    ``reuse_completed``)."""

    if TYPE_CHECKING:  # the operator's, for the type checker only
        namespace: str | None
        reattach: bool
        reuse_completed: bool

        @property
        def hook(self) -> HfJobsHook: ...

    def _previous_job(self, context: Any, ti_label: str) -> JobInfo | None:
        """The job an earlier try of this task instance started, if it should be reused (see ``reattach``).

        Airflow >= 3.3 remembers the job id in ``task_state_store`` (one inspect); otherwise, or if that job
        is gone, the ``airflow-ti`` label finds it (one filtered list, any Airflow, deferrable too)."""
        remembered = _task_state(context, self.log).get(JOB_STATE_KEY)
        if isinstance(remembered, str) and remembered:
            try:
                job = self.hook.inspect_job(remembered, namespace=self.namespace or None)
            except HfJobsNotFoundError:
                job = None
            if job is not None and self._reusable(context, job, "remembered in task_state_store"):
                return job
        earlier = sorted(
            self.hook.list_jobs(labels={TASK_INSTANCE_LABEL: ti_label}, namespace=self.namespace or None),
            key=lambda job: job.created_at.timestamp() if job.created_at else 0.0,
            reverse=True,
        )
        live = [job for job in earlier if not job.is_terminal]
        for job in live[:1] or earlier[:1]:
            if self._reusable(context, job, f"found by its {TASK_INSTANCE_LABEL} label"):
                return job
        return None

    def _reusable(self, context: Any, job: JobInfo, how: str) -> bool:
        """One rule for both lookups: a live job is re-attached; a COMPLETED one is reused on a retry."""
        if not job.is_terminal:
            self.log.info(
                "Re-attaching to Hugging Face job %s (%s), started by an earlier try (%s).",
                job.id,
                job.stage.value,
                how,
            )
            return True
        if job.stage.is_success and self.reuse_completed and not _first_try_of_run(context, self):
            self.log.info(
                "Hugging Face job %s of an earlier try already COMPLETED (%s); not running it again.",
                job.id,
                how,
            )
            return True
        return False

    def _retry_will_reattach(self, context: Any) -> bool:
        """Will a retry of this task instance follow this job (``reattach``, and a try left)?"""
        ti = context["ti"]
        try:
            return self.reattach and int(ti.try_number) <= int(ti.max_tries)
        except (AttributeError, TypeError, ValueError):
            return False
