"""Scheduled jobs managed from Airflow: the Hub's own cron runs them (even while Airflow is down), and a DAG
sets them up, keeps them up to date, pauses, resumes, triggers or deletes them.

``HfScheduledJobOperator`` is idempotent: the scheduled job carries a label naming its DAG and task
(:func:`~airflow_provider_hfjobs.jobs.scheduled_task_labels`), so every run of the DAG finds the one it made
and brings it up to date instead of making another. ``HfScheduledJobActionOperator`` acts on one by id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_hfjobs.exceptions import HfJobsError, HfJobsInputError
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
from airflow_provider_hfjobs.jobs import (
    SCHEDULED_TASK_LABEL,
    ScheduledJobInfo,
    build_scheduled_job_spec,
    scheduled_spec_changes,
    scheduled_task_labels,
    validate_labels,
    validate_schedule,
    validate_scheduled_job_id,
)
from airflow_provider_hfjobs.links.hfjobs import JOB_ID_XCOM_KEY, JOB_URL_XCOM_KEY, HfJobLink
from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

SCHEDULED_JOB_XCOM_KEY = "scheduled_job"
#: What a scheduled job cannot have (``huggingface_hub``'s ``create_scheduled_job`` takes neither), and
#: waiting arguments that mean nothing for an operator that only sets a schedule up.
_NOT_FOR_SCHEDULES = ("ssh", "network_group", "network_aliases")
_NOT_WAITING = ("deferrable", "wait_for_completion", "poll_interval", "stream_logs", "reattach", "reuse_completed",
                "cancel_on_kill", "log_metrics")  # fmt: skip
ACTIONS = ("suspend", "resume", "trigger", "delete")


class HfScheduledJobOperator(HfJobRunOperator):
    """Create a scheduled job on the Hub, or bring up to date the one this task made before.

    The same DAG and task always manage one scheduled job: it is found by its ``airflow-scheduled-task``
    label. Then a changed ``schedule`` is updated in place, changed ``labels`` too, and ``suspend``
    (when given) suspends or resumes it. The API cannot change what a scheduled job runs, so a changed
    image, command, env, secret names, flavor, timeout, attempts, volumes or ports replace it: the old
    one is deleted and a new one made (its id changes; the log says so). Secret values are never served
    back, so a changed value alone is not seen: pass ``recreate=True`` to replace it anyway.

    Returns the scheduled job's id; XCom ``scheduled_job`` holds it (secret names only).

    :param schedule: a 5-field cron expression or ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``,
        ``@yearly``, ``@annually`` (checked when the DAG is parsed when not templated).
    :param suspend: ``True`` pauses it, ``False`` resumes it; ``None`` leaves it as it is (a new one runs).
    :param concurrency: let a run start while the previous one still runs (default: no).
    :param recreate: replace the scheduled job even if nothing visible changed (a new secret value).

    Every other argument is :class:`~airflow_provider_hfjobs.operators.hfjobs.HfJobRunOperator`'s
    job argument (``image``, ``command``, ``flavor``, ``env``, ``secrets``, ``timeout``, ``labels``,
    ``attempts``, ``name``, ``volumes``, ``expose``, ``expose_public``, ``resource_group_id``,
    ``namespace``, ``hf_conn_id``), templated the same way.
    """

    template_fields: Sequence[str] = (
        "image", "command", "schedule", "flavor", "env", "secrets", "timeout", "labels", "volumes", "name",
        "resource_group_id", "namespace", "hf_conn_id",
    )  # fmt: skip
    operator_extra_links = ()
    _checks_own_arguments = True

    def __init__(
        self,
        *,
        image: str,
        command: list[str],
        schedule: str,
        suspend: bool | None = None,
        concurrency: bool | None = None,
        recreate: bool = False,
        **kwargs: Any,
    ) -> None:
        refused = [name for name in (*_NOT_FOR_SCHEDULES, *_NOT_WAITING) if name in kwargs]
        if refused:
            raise HfJobsInputError(
                f"Task {kwargs.get('task_id')!r}: {', '.join(refused)} cannot be given to HfScheduledJobOperator: "
                "a scheduled job has no ssh or network and this operator does not wait for runs (watch one "
                "with HfJobSensor(scheduled_job_id=...))."
            )
        super().__init__(image=image, command=command, **kwargs)
        self.schedule = schedule
        self.suspend = suspend
        self.concurrency = concurrency
        self.recreate = recreate
        self._check_known_arguments()

    def _check_arguments(self, context: Any | None) -> None:
        """The schedule and the create's rules (those of every job)."""
        if self._known("schedule", context):
            validate_schedule(self.schedule)
        super()._check_arguments(context)

    def execute(self, context: Any) -> str:
        self._check_arguments(context)
        ti = context["ti"]
        own = scheduled_task_labels(ti.dag_id, ti.task_id)
        labels = {**validate_labels(self.labels), **own}
        arguments = {
            "image": self.image, "command": self.command, "schedule": self.schedule, "suspend": self.suspend,
            "concurrency": self.concurrency, **self._create_arguments(labels, followed=False),
        }  # fmt: skip
        for name in _NOT_FOR_SCHEDULES:
            arguments.pop(name, None)
        namespace = arguments.pop("namespace", None) or None
        found = self.hook.list_scheduled_jobs(labels={SCHEDULED_TASK_LABEL: own[SCHEDULED_TASK_LABEL]},
                                              namespace=namespace)  # fmt: skip
        if len(found) > 1:
            ids = ", ".join(job.id for job in found)
            raise HfJobsError(
                f"{len(found)} scheduled jobs carry this task's label {SCHEDULED_TASK_LABEL}="
                f"{own[SCHEDULED_TASK_LABEL]} ({ids}): delete all but one (hf jobs scheduled delete ID), then "
                "run the task again."
            )
        current = found[0] if found else None
        if current is None:
            scheduled = self.hook.create_scheduled_job(**arguments, namespace=namespace)
            self.log.info("Created scheduled job %s (%s).", scheduled.id, _when(scheduled))
        else:
            scheduled = self._bring_up_to_date(current, arguments, namespace)
        ti.xcom_push(key=SCHEDULED_JOB_XCOM_KEY, value=scheduled.to_dict())
        return scheduled.id

    def _bring_up_to_date(
        self, current: ScheduledJobInfo, arguments: dict[str, Any], namespace: str | None
    ) -> ScheduledJobInfo:
        """Update in place what the API can update; replace the scheduled job when its spec changed."""
        desired = build_scheduled_job_spec(**arguments)
        changed = scheduled_spec_changes(desired["jobSpec"], current.job_spec)
        if self.concurrency is not None and bool(self.concurrency) != bool(current.concurrency):
            changed.append("concurrency")
        if changed or self.recreate:
            why = ", ".join(changed) if changed else "recreate=True"
            self.hook.delete_scheduled_job(current.id, namespace=namespace)
            scheduled = self.hook.create_scheduled_job(**arguments, namespace=namespace)
            self.log.info(
                "Replaced scheduled job %s by %s (%s changed; the API cannot change what a scheduled job runs). %s.",
                current.id, scheduled.id, why, _when(scheduled, sentence=True),
            )  # fmt: skip
            return scheduled
        scheduled = current
        if desired["schedule"] != current.schedule:
            scheduled = self.hook.update_scheduled_job_schedule(
                current.id, schedule=desired["schedule"], namespace=namespace
            )
            self.log.info(
                "Scheduled job %s: schedule %r -> %r.", current.id, current.schedule, desired["schedule"]
            )
        wanted_labels = dict(desired["jobSpec"].get("labels") or {})
        if wanted_labels != dict(current.job_spec.labels):
            scheduled = self.hook.update_scheduled_job_labels(
                current.id, labels=wanted_labels, namespace=namespace
            )
            self.log.info("Scheduled job %s: labels updated.", current.id)
        if self.suspend is not None and bool(self.suspend) != bool(current.suspend):
            if self.suspend:
                self.hook.suspend_scheduled_job(current.id, namespace=namespace)
            else:
                self.hook.resume_scheduled_job(current.id, namespace=namespace)
            self.log.info("Scheduled job %s %s.", current.id, "suspended" if self.suspend else "resumed")
        scheduled = self.hook.inspect_scheduled_job(current.id, namespace=namespace)
        self.log.info("Scheduled job %s is up to date (%s).", scheduled.id, _when(scheduled))
        return scheduled


def _when(scheduled: ScheduledJobInfo, *, sentence: bool = False) -> str:
    """Its schedule and next run; ``sentence``: starting with a capital (only the first letter: the
    schedule and the ISO timestamp stay as they are)."""
    if scheduled.suspend:
        text = f"schedule {scheduled.schedule!r}, suspended"
    else:
        next_run = scheduled.next_job_run_at
        text = (
            f"schedule {scheduled.schedule!r}, next run at {next_run.isoformat() if next_run else 'unknown'}"
        )
    return text[:1].upper() + text[1:] if sentence else text


class HfScheduledJobActionOperator(BaseOperator):
    """Suspend, resume, trigger or delete a scheduled job (say, around a maintenance window).

    :param scheduled_job_id: its id (templated, e.g. ``"{{ ti.xcom_pull('schedule') }}"``).
    :param action: ``suspend``, ``resume``, ``trigger`` (one run now: returns its job id and pushes
        ``job_id``/``job_url``, so ``HfJobSensor(job_id=...)`` can watch it) or ``delete``.
    :param namespace: its namespace (default: the connection's, or the token's user).
    :param hf_conn_id: the ``hf_jobs`` connection.

    A trigger while a run is active on a scheduled job without ``concurrency`` fails the task with
    :class:`~airflow_provider_hfjobs.exceptions.HfJobsConcurrencyError`: nothing was started.
    """

    template_fields: Sequence[str] = ("scheduled_job_id", "namespace", "hf_conn_id")
    operator_extra_links = (HfJobLink(),)
    ui_color = "#ffd21e"

    def __init__(
        self,
        *,
        scheduled_job_id: str,
        action: str,
        namespace: str | None = None,
        hf_conn_id: str = HfJobsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if action not in ACTIONS:
            raise HfJobsInputError(
                f"Task {self.task_id!r}: action {action!r} must be one of {', '.join(ACTIONS)}."
            )
        self.scheduled_job_id = scheduled_job_id
        self.action = action
        self.namespace = namespace
        self.hf_conn_id = hf_conn_id
        #: The triggered run's URL in this process (the link reads it instead of an XCom; ``""``: none).
        self.job_url: str | None = None

    def execute(self, context: Any) -> str | None:
        self.job_url = ""
        scheduled_job_id = validate_scheduled_job_id(self.scheduled_job_id)
        hook = HfJobsHook(self.hf_conn_id, namespace=self.namespace or None)
        namespace = self.namespace or None
        if self.action == "trigger":
            job = hook.trigger_scheduled_job(scheduled_job_id, namespace=namespace)
            context["ti"].xcom_push(key=JOB_ID_XCOM_KEY, value=job.id)
            context["ti"].xcom_push(key=JOB_URL_XCOM_KEY, value=job.url)
            self.job_url = job.url
            self.log.info(
                "Scheduled job %s: run started, Hugging Face job %s: %s", scheduled_job_id, job.id, job.url
            )
            return job.id
        getattr(hook, f"{self.action}_scheduled_job")(scheduled_job_id, namespace=namespace)
        self.log.info("Scheduled job %s %s.", scheduled_job_id, _DONE[self.action])
        return None


_DONE: Mapping[str, str] = {"suspend": "suspended", "resume": "resumed", "delete": "deleted"}
