"""``HfJobSensor``: wait for an existing Hugging Face job (say, one submitted by another task or outside
Airflow) to end. Poke, reschedule and deferrable modes; ``soft_fail`` turns a failed job into a skip."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, cast

from airflow.providers.common.compat.sdk import AirflowFailException, BaseSensorOperator, conf, redact

from airflow_provider_hfjobs.cancellation import cancel_and_confirm, log_outcome
from airflow_provider_hfjobs.exceptions import HfJobsError, HfJobsInputError
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
from airflow_provider_hfjobs.links.hfjobs import JOB_URL_XCOM_KEY, HfJobLink
from airflow_provider_hfjobs.results import visible_lines
from airflow_provider_hfjobs.task_side import defer_timeout, failure_message, timeout_advice, validate_event
from airflow_provider_hfjobs.triggers.hfjobs import EVENT_LOG_LINES, HfJobTrigger
from airflow_provider_hfjobs.triggers.scheduled import HfScheduledRunTrigger

SCHEDULED_RUNS = ("next", "latest")


class HfJobSensor(BaseSensorOperator):
    """Succeed when the job is COMPLETED; fail when it is ERROR, CANCELED or DELETED.

    :param job_id: the job to watch (templated, e.g. ``"{{ ti.xcom_pull('submit', key='job_id') }}"``).
    :param scheduled_job_id: instead of ``job_id``, watch a run of this scheduled job (templated): the
        ``next`` one to start after the sensor starts (by its schedule or a trigger), or the ``latest``
        one (the next, if there is none yet), as ``run`` says. Deferred, the wait for the run is in the
        triggerer too. ``run="next"`` needs poke or deferrable mode (reschedule mode keeps no memory of
        which run was the latest when it started).
    :param run: ``"next"`` (default) or ``"latest"``.
    :param namespace: its namespace (default: the connection's, or the token's user).
    :param hf_conn_id: the ``hf_jobs`` connection.
    :param stream_logs: copy the job's log lines into the task log: new ones at each poke, live when
        deferred, all at once at the end in reschedule mode.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param cancel_on_kill: cancel the watched job when this sensor is stopped (marked failed or success,
        cleared, killed, timed out). Off by default: a sensor only watches a job someone else started, and
        stopping the watch must never stop their job. Pass ``True`` only for a job this DAG owns.
    """

    template_fields: Sequence[str] = ("job_id", "scheduled_job_id", "namespace", "hf_conn_id")
    operator_extra_links = (HfJobLink(),)
    ui_color = "#ffd21e"

    def __init__(
        self,
        *,
        job_id: str | None = None,
        scheduled_job_id: str | None = None,
        run: str = "next",
        namespace: str | None = None,
        hf_conn_id: str = HfJobsHook.default_conn_name,
        stream_logs: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        cancel_on_kill: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (job_id is None) == (scheduled_job_id is None):
            raise HfJobsInputError(
                f"Task {self.task_id!r}: give HfJobSensor either job_id (a job) or scheduled_job_id (a run of a "
                "scheduled job), not both or neither."
            )
        if run not in SCHEDULED_RUNS:
            raise HfJobsInputError(f"Task {self.task_id!r}: run {run!r} must be 'next' or 'latest'.")
        if scheduled_job_id is not None and run == "next" and self.reschedule and not deferrable:
            raise HfJobsInputError(
                f"Task {self.task_id!r}: run='next' cannot be watched in reschedule mode (each poke starts "
                "afresh and cannot tell which run was the latest when the sensor started): use mode='poke' "
                "or deferrable=True, or run='latest'."
            )
        self.job_id = job_id
        self.scheduled_job_id = scheduled_job_id
        self.run = run
        #: The latest run when the sensor started (``run="next"`` waits for another), once looked at.
        self._baseline: str | None = None
        self._baseline_known = False
        self.namespace = namespace
        self.hf_conn_id = hf_conn_id
        self.stream_logs = stream_logs
        self.deferrable = deferrable
        self.cancel_on_kill = bool(cancel_on_kill)
        self._log_cursor = 0
        self._url_pushed = False
        #: The watched job's URL once a poke saw it (``None``: the link reads the ``job_url`` XCom).
        self.job_url: str | None = None

    @cached_property
    def hook(self) -> HfJobsHook:
        return HfJobsHook(self.hf_conn_id, namespace=self.namespace or None)

    def _show_new_lines(self) -> list[str]:
        lines: list[str] = []
        try:
            for batch in self.hook.iter_job_log_batches(self.job_id, follow=False, cursor=self._log_cursor):  # type: ignore[arg-type]
                shown = visible_lines(batch.texts)  # a @task.hf_job's result lines stay out of the log
                for text in shown:
                    self.log.info("%s", text)
                lines.extend(shown)
                self._log_cursor = batch.next_cursor or self._log_cursor
        except HfJobsError as exc:
            self.log.warning("Could not read the logs of job %s: %s", self.job_id, exc)
        return lines

    def _show_rest_of_log(self, event: Mapping[str, Any]) -> None:
        """The lines of the ended job the trigger had not shown (its end never waits for the trigger's
        display steps), from where the event says it stopped; redacted here (a LocalExecutor copies each
        task log record to its own output, unmasked)."""
        if not self.stream_logs or event.get("log_complete"):
            return
        cursor = event.get("log_cursor")
        cursor = cursor if isinstance(cursor, int) and not isinstance(cursor, bool) and cursor >= 0 else 0
        try:
            for batch in self.hook.iter_job_log_batches(event["job_id"], follow=True, cursor=cursor):
                for text in visible_lines(batch.texts):  # a @task.hf_job's result lines stay out of the log
                    self.log.info("%s", redact(text))
        except HfJobsError as exc:
            self.log.warning("Could not read the rest of the log of job %s: %s", event["job_id"], exc)

    def _find_run(self) -> bool:
        """For a scheduled job: set ``job_id`` to the run to watch once there is one (``False`` until then)."""
        scheduled = self.hook.inspect_scheduled_job(self.scheduled_job_id)  # type: ignore[arg-type]
        latest = scheduled.last_job.id if scheduled.last_job else None
        if not self._baseline_known:
            self._baseline, self._baseline_known = (None if self.run == "latest" else latest), True
        if latest is None or latest == self._baseline:
            next_run = scheduled.next_job_run_at
            self.log.info(
                "Scheduled job %s: waiting for its %s run (%s).", self.scheduled_job_id,
                "next" if latest else "first",
                "suspended" if scheduled.suspend else f"next at {next_run.isoformat() if next_run else 'unknown'}",
            )  # fmt: skip
            return False
        self.job_id = latest
        self.log.info(
            "Scheduled job %s: watching its run, Hugging Face job %s.", self.scheduled_job_id, latest
        )
        return True

    def poke(self, context: Any) -> bool:
        if self.job_id is None and not self._find_run():
            return False
        job = self.hook.inspect_job(self.job_id)  # type: ignore[arg-type]
        self.job_url = job.url  # the link reads it at the task's end instead of asking for the XCom
        if not self._url_pushed:
            context["ti"].xcom_push(key=JOB_URL_XCOM_KEY, value=job.url)
            self._url_pushed = True
        # In reschedule mode every poke is a fresh instance with no cursor: show the log once, at the end.
        show = self.stream_logs and (job.is_terminal or not self.reschedule)
        tail = self._show_new_lines()[-EVENT_LOG_LINES:] if show else []
        if not job.is_terminal:
            self.log.info("Hugging Face job %s is %s.", job.id, job.stage.value)
            return False
        if job.stage.is_success:
            return True
        # AirflowFailException: a failed job does not get better on a retry; soft_fail turns it into a skip.
        advice = timeout_advice(job.message, own=False)
        raise AirflowFailException(
            failure_message(job.id, job.stage.value, job.message, job.url, tail, advice=advice)
        )

    def execute(self, context: Any) -> Any:
        # No job seen yet in this process: the link shows nothing rather than asking for an XCom that a
        # sensor failing before its first look (a wrong id) never pushed (Airflow 3 logs that as an ERROR).
        self.job_url = ""
        if not self.deferrable:
            return super().execute(context)
        deadline = time.time() + float(self.timeout) if self.timeout else None
        if self.job_id is None and not self._find_run():
            self.defer(
                trigger=HfScheduledRunTrigger(
                    scheduled_job_id=self.scheduled_job_id, namespace=self.hook.namespace,  # type: ignore[arg-type]
                    hf_conn_id=self.hf_conn_id, after_job_id=self._baseline, poll_interval=float(self.poke_interval),
                    deadline=deadline,
                ),
                method_name="execute_run_started",
                timeout=defer_timeout(deadline, float(self.poke_interval)),
            )  # fmt: skip
        return self._watch_deferred(context, deadline)

    def execute_run_started(self, context: Any, event: Mapping[str, Any] | None = None) -> Any:
        """The scheduled job started the run to watch (or the wait failed): follow it as a job."""
        if not isinstance(event, Mapping) or event.get("status") != "started" or not event.get("job_id"):
            message = event.get("message") if isinstance(event, Mapping) else None
            raise AirflowFailException(
                f"Scheduled job {self.scheduled_job_id}: no run to watch: {message or event!r}"
            )
        self.job_id = str(event["job_id"])
        self.log.info(
            "Scheduled job %s: watching its run, Hugging Face job %s.", self.scheduled_job_id, self.job_id
        )
        return self._watch_deferred(context, event.get("deadline"))

    def _watch_deferred(self, context: Any, deadline: float | None) -> Any:
        if self.poke(context):
            return None
        self.defer(
            trigger=HfJobTrigger(
                job_id=cast(str, self.job_id), namespace=self.hook.namespace, hf_conn_id=self.hf_conn_id,
                poll_interval=float(self.poke_interval), stream_logs=self.stream_logs, deadline=deadline,
                log_cursor=self._log_cursor, cancel_on_kill=self.cancel_on_kill,
            ),
            method_name="execute_complete",
            timeout=defer_timeout(deadline, float(self.poke_interval)),
        )  # fmt: skip

    def execute_complete(self, context: Any, event: Mapping[str, Any] | None = None) -> None:
        try:
            event = validate_event(event)
        except HfJobsError as exc:
            raise AirflowFailException(str(exc)) from exc
        if event.get("stage") is not None:  # the job ended: what the trigger had not shown yet, once
            self._show_rest_of_log(event)
        if event["status"] == "success":
            self.log.info("Hugging Face job %s COMPLETED.", event["job_id"])
            return
        tail: list[str] = []
        if self.stream_logs:  # events carry no log text: the tail is read here, once
            try:
                tail = list(self.hook.fetch_job_logs(event["job_id"], tail=EVENT_LOG_LINES))
            except HfJobsError as exc:
                self.log.info("Could not read the log tail of job %s: %s", event["job_id"], exc)
        raise AirflowFailException(
            failure_message(
                event["job_id"], event.get("stage"), event.get("message"), event.get("job_url", ""), tail,
                advice=timeout_advice(event.get("message"), own=False),
            )
        )  # fmt: skip

    def on_kill(self) -> None:
        """Never the watched job, unless the DAG said it owns it (``cancel_on_kill=True``)."""
        if self.cancel_on_kill and self.job_id:
            log_outcome(
                self.log,
                cancel_and_confirm(
                    self.hook, self.job_id, namespace=self.namespace or None, reason="its sensor was stopped"
                ),
            )
