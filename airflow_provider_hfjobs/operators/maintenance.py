"""``HfOrphanJobsOperator``: find (and cancel) the jobs billed with nobody watching, for a maintenance DAG.

A job whose task is over (``wait_for_completion=False``, marked success or failed, cleared, its DAG run
deleted) runs on until its own timeout. This task lists such jobs (:mod:`airflow_provider_hfjobs.orphans`),
one log line each, pushes the list to XCom, and with ``cancel=True`` cancels each one and follows it until
it is over, so that "cancelled" means the job stopped, not that a request was accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_hfjobs.cancellation import cancel_and_confirm, log_outcome, manual_cancel_command
from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
from airflow_provider_hfjobs.jobs import validate_labels, validate_namespace
from airflow_provider_hfjobs.orphans import (
    DEFAULT_MIN_AGE,
    OrphanJob,
    OrphanScan,
    default_task_states,
    parse_flag,
    parse_min_age,
    scan_orphan_jobs,
)

#: Seconds a cancelled orphan is followed until it is terminal, before a warning says it may still run.
CANCEL_WAIT_SECONDS = 60.0
#: By-hand cancel commands a dry run's summary line shows (the XCom lists every orphan).
MAX_COMMANDS_SHOWN = 20


class HfOrphanJobsOperator(BaseOperator):
    """List the Hugging Face jobs this provider's operators started that no task watches any more; cancel
    them with ``cancel=True``.

    A job counts when it is live (SCHEDULING, RUNNING), carries the task instance labels of
    ``HfJobRunOperator``/``HfUvJobOperator`` and its task instance is not running, queued, scheduled, up for
    retry or reschedule, deferred or restarting (it finished, failed, was cleared, or its DAG run is gone).
    Jobs without those labels are never touched, nor are jobs whose labels name a DAG or task this Airflow
    does not know (another Airflow sharing the namespace?): those are logged apart.

    :param cancel: cancel each orphan and follow it until it is over (default ``False``: a dry run, which
        only lists them). Templated: ``"{{ params.cancel }}"`` works (``"True"``/``"False"`` too).
    :param min_age: only jobs older than this (a timedelta, seconds, or ``"90s"``, ``"10m"``, ``"1.5h"``,
        ``"2d"``; default 10 minutes), so that a job just submitted, whose task's state has not been written
        yet, is left alone. Zero: every job.
    :param labels: only jobs carrying all these labels as well (e.g. a label all of one Airflow deployment's
        operators set, when several deployments share a namespace).
    :param namespace: user or organization to look in (default: the connection's, or the token's user).
    :param hf_conn_id: the ``hf_jobs`` connection.
    :param cancel_wait: seconds each cancelled job is followed until it is terminal (default 60).
    :param poll_interval: seconds between looks at a cancelled job's stage.

    Returns (and so pushes to XCom) one dict per orphan: job id, URL, namespace, stage, flavor, creation time,
    age, the task instance (dag, task, run, map index) and its state, why it is an orphan and, when
    cancelled, ``cancel`` (``stage`` reached, ``seconds``, ``confirmed``). No command, environment or token.
    """

    template_fields: Sequence[str] = ("cancel", "min_age", "labels", "namespace", "hf_conn_id")
    template_fields_renderers = {"labels": "json"}
    ui_color = "#ffd21e"

    def __init__(
        self,
        *,
        cancel: bool | str = False,
        min_age: timedelta | float | str = DEFAULT_MIN_AGE,
        labels: Mapping[str, str] | str | None = None,
        namespace: str | None = None,
        hf_conn_id: str = HfJobsHook.default_conn_name,
        cancel_wait: float = CANCEL_WAIT_SECONDS,
        poll_interval: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cancel = cancel
        self.min_age = min_age
        self.labels = labels
        self.namespace = namespace
        self.hf_conn_id = hf_conn_id
        self.cancel_wait = cancel_wait
        self.poll_interval = poll_interval
        try:
            for name in ("cancel_wait", "poll_interval"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                    raise HfJobsInputError(f"{name} must be a positive number of seconds; got {value!r}.")
            self._checked(templates_rendered=False)
        except HfJobsInputError as error:
            raise type(error)(f"Task {self.task_id!r}: {error}") from None

    # -------------------------------------------------------------------------------------- validation
    def _checked(
        self, *, templates_rendered: bool = True
    ) -> tuple[bool, timedelta, dict[str, str], str | None]:
        """The arguments, checked; before rendering, a value holding a template is left for later."""

        def later(value: Any) -> bool:
            if templates_rendered:
                return False
            if isinstance(value, Mapping):
                return any(map(later, value.values()))
            return isinstance(value, str) and "{" in value

        cancel = False if later(self.cancel) else parse_flag(self.cancel, field_name="cancel")
        min_age = DEFAULT_MIN_AGE if later(self.min_age) else parse_min_age(self.min_age)
        labels: dict[str, str] = {}
        if not later(self.labels):
            if isinstance(self.labels, str):
                raise HfJobsInputError(
                    f"labels must be a dict such as {{'team': 'ml'}}; got the string {self.labels!r} (a template "
                    "renders a dict only with render_template_as_native_obj=True on the DAG)."
                )
            labels = validate_labels(self.labels)
        namespace = self.namespace or None
        if namespace and not later(namespace):
            validate_namespace(namespace)
        return cancel, min_age, labels, namespace

    # ------------------------------------------------------------------------------------------ the run
    @cached_property
    def hook(self) -> HfJobsHook:
        return HfJobsHook(self.hf_conn_id, namespace=self.namespace or None)

    def execute(self, context: Any) -> list[dict[str, Any]]:
        cancel, min_age, labels, namespace = self._checked()
        namespace = namespace or self.hook.namespace
        scan = scan_orphan_jobs(
            self.hook, default_task_states(), namespace=namespace, labels=labels, min_age=min_age
        )
        self._report(scan, namespace, min_age)
        found = [orphan.to_dict() for orphan in scan.orphans]
        if not scan.orphans:
            return found
        if not cancel:
            self.log.warning(
                "Dry run (cancel=False): %d orphan job(s) left running. Cancel them with cancel=True, or by "
                "hand: %s",
                len(scan.orphans),
                "; ".join(self._command(orphan, namespace) for orphan in scan.orphans[:MAX_COMMANDS_SHOWN])
                + ("; ..." if len(scan.orphans) > MAX_COMMANDS_SHOWN else ""),
            )
            return found
        failed = 0
        for orphan, entry in zip(scan.orphans, found, strict=True):
            entry["cancel"] = self._cancel(orphan, namespace)
            failed += not entry["cancel"]["confirmed"]
        if failed:
            self.log.warning(
                "%d of %d orphan job(s) were not seen ending: see the warnings above.", failed, len(found)
            )
        return found

    def _report(self, scan: OrphanScan, namespace: str, min_age: timedelta) -> None:
        self.log.info("%s (min_age %s)", scan.summary(namespace), min_age)
        for orphan in scan.orphans:
            self.log.warning("%s", orphan.describe())
        for job in scan.unmatched:
            self.log.info(
                "Not touched: job %s %s carries task labels (dag %s, task %s) of no task instance this Airflow "
                "can find: another Airflow's, or a DAG deleted here? If it is an orphan, cancel it by hand: %s",
                job.id, job.url, job.labels.get("airflow-dag"), job.labels.get("airflow-task"),
                manual_cancel_command(job.id, job.owner_name or namespace, self._endpoint()),
            )  # fmt: skip

    def _endpoint(self) -> str | None:
        try:
            return self.hook.endpoint
        except Exception:  # only for the by-hand command
            return None

    def _command(self, orphan: OrphanJob, namespace: str) -> str:
        return manual_cancel_command(orphan.job.id, orphan.job.owner_name or namespace, self._endpoint())

    def _cancel(self, orphan: OrphanJob, namespace: str) -> dict[str, Any]:
        """Cancel one orphan and follow it (bounded) until it is terminal (the one verified cancel of
        :mod:`airflow_provider_hfjobs.cancellation`); one log line either way."""
        outcome = cancel_and_confirm(
            self.hook, orphan.job.id, namespace=orphan.job.owner_name or namespace, reason="orphan: no task "
            "watches it", wait=self.cancel_wait, poll_interval=self.poll_interval,
        )  # fmt: skip
        log_outcome(self.log, outcome)
        return {"confirmed": outcome.confirmed, "stage": outcome.stage, "seconds": round(outcome.seconds, 1)}
