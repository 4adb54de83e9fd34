"""``HfJobSensor``: wait for an existing Hugging Face job (say, one submitted by another task or outside
Airflow) to end. Poke, reschedule and deferrable modes; ``soft_fail`` turns a failed job into a skip."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseSensorOperator, conf

from airflow_provider_hfjobs.exceptions import HfJobsError
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
from airflow_provider_hfjobs.links.hfjobs import JOB_URL_XCOM_KEY, HfJobLink
from airflow_provider_hfjobs.operators.hfjobs import defer_timeout, failure_message, validate_event
from airflow_provider_hfjobs.results import visible_lines
from airflow_provider_hfjobs.triggers.hfjobs import EVENT_LOG_LINES, HfJobTrigger


class HfJobSensor(BaseSensorOperator):
    """Succeed when the job is COMPLETED; fail when it is ERROR, CANCELED or DELETED.

    :param job_id: the job to watch (templated, e.g. ``"{{ ti.xcom_pull('submit', key='job_id') }}"``).
    :param namespace: its namespace (default: the connection's, or the token's user).
    :param hf_conn_id: the ``hf_jobs`` connection.
    :param stream_logs: copy the job's log lines into the task log: new ones at each poke, live when
        deferred, all at once at the end in reschedule mode.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("job_id", "namespace", "hf_conn_id")
    operator_extra_links = (HfJobLink(),)
    ui_color = "#ffd21e"

    def __init__(
        self,
        *,
        job_id: str,
        namespace: str | None = None,
        hf_conn_id: str = HfJobsHook.default_conn_name,
        stream_logs: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.namespace = namespace
        self.hf_conn_id = hf_conn_id
        self.stream_logs = stream_logs
        self.deferrable = deferrable
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
            for batch in self.hook.iter_job_log_batches(self.job_id, follow=False, cursor=self._log_cursor):
                shown = visible_lines(batch.texts)  # a @task.hf_job's result lines stay out of the log
                for text in shown:
                    self.log.info("%s", text)
                lines.extend(shown)
                self._log_cursor = batch.next_cursor or self._log_cursor
        except HfJobsError as exc:
            self.log.warning("Could not read the logs of job %s: %s", self.job_id, exc)
        return lines

    def poke(self, context: Any) -> bool:
        job = self.hook.inspect_job(self.job_id)
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
        raise AirflowFailException(failure_message(job.id, job.stage.value, job.message, job.url, tail))

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        deadline = time.time() + float(self.timeout) if self.timeout else None
        self.defer(
            trigger=HfJobTrigger(
                job_id=self.job_id, namespace=self.hook.namespace, hf_conn_id=self.hf_conn_id,
                poll_interval=float(self.poke_interval), stream_logs=self.stream_logs, deadline=deadline,
                log_cursor=self._log_cursor,
            ),
            method_name="execute_complete",
            timeout=defer_timeout(deadline, float(self.poke_interval)),
        )  # fmt: skip

    def execute_complete(self, context: Any, event: Mapping[str, Any] | None = None) -> None:
        try:
            event = validate_event(event)
        except HfJobsError as exc:
            raise AirflowFailException(str(exc)) from exc
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
                event["job_id"], event.get("stage"), event.get("message"), event.get("job_url", ""), tail
            )
        )  # fmt: skip
