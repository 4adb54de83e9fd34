"""``HfJobRunOperator`` and ``HfUvJobOperator``: a Hugging Face job as an Airflow task.

Submit, push the job id and URL to XCom before waiting, then either follow the job here (its log lines
go into the task log as they are printed) or defer to :class:`HfJobTrigger` so no worker slot is held
while it runs. The task ends with the job: COMPLETED succeeds; ERROR, CANCELED and DELETED fail it with
the stage, the server's message, the URL and the last log lines. The billed duration and its cost are
logged and pushed with the final job info. With ``log_metrics`` (on by default for a GPU flavor), the
job's metrics stream is sampled while it runs (on the worker, or in the trigger) and the task ends with
one summary line, also pushed under ``metrics``.

The argument checks are in :mod:`.arguments`, the re-attach to an earlier try's job in :mod:`.reattach`,
the threads beside a followed job in :mod:`.followers`; helpers shared with the sensor in
:mod:`airflow_provider_hfjobs.task_side`.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections import deque
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, TaskDeferred, conf, mask_secret, redact

from airflow_provider_hfjobs.cancellation import (
    CancelOutcome,
    cancel_and_confirm,
    is_interruption,
    log_outcome,
    stop_reason,
)
from airflow_provider_hfjobs.exceptions import HfJobFailedError, HfJobsError
from airflow_provider_hfjobs.guardrails import (
    GUARDRAIL_ARGUMENTS,
    Guardrails,
    GuardStop,
    cap_warning,
    flavor_fallback,
    price_per_hour,
)
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
from airflow_provider_hfjobs.jobs import (
    DEFAULT_UV_IMAGE,
    TASK_INSTANCE_LABEL,
    JobInfo,
    Volume,
    job_url,
    task_instance_labels,
    validate_labels,
)
from airflow_provider_hfjobs.links.hfjobs import JOB_ID_XCOM_KEY, JOB_URL_XCOM_KEY, HfJobLink
from airflow_provider_hfjobs.masking import is_masked, seal_mask_values
from airflow_provider_hfjobs.metrics import (
    MetricsAccumulator,
    flavor_has_gpu,
    idle_gpu_warning,
    no_sample_means_something,
    summary_from,
    summary_line,
)
from airflow_provider_hfjobs.operators.arguments import _UV_ARGUMENTS as _UV_ARGUMENTS
from airflow_provider_hfjobs.operators.arguments import RunArgumentChecks, UvArgumentChecks
from airflow_provider_hfjobs.operators.followers import GuardWatchdog, MetricsFollower
from airflow_provider_hfjobs.operators.lineage import AssetLineage
from airflow_provider_hfjobs.operators.outputs import JobOutputs
from airflow_provider_hfjobs.operators.reattach import JOB_STATE_KEY, Reattachment, _task_state
from airflow_provider_hfjobs.operators.reattach import _first_try_of_run as _first_try_of_run
from airflow_provider_hfjobs.operators.reattach import _TaskState as _TaskState
from airflow_provider_hfjobs.reports import (
    HELPER_ENV,
    REPORTS_ENV,
    REPORTS_XCOM_KEY,
    ReportLog,
    helper_encoded,
    write_lines,
)
from airflow_provider_hfjobs.task_side import check_poll_interval as check_poll_interval
from airflow_provider_hfjobs.task_side import defer_timeout, failure_message, timeout_advice, validate_event
from airflow_provider_hfjobs.task_side import extra_flavors as extra_flavors
from airflow_provider_hfjobs.triggers.hfjobs import EVENT_LOG_LINES, HfJobTrigger

JOB_XCOM_KEY = "job"


class HfJobRunOperator(RunArgumentChecks, Reattachment, JobOutputs, AssetLineage, BaseOperator):
    """Run a command on Hugging Face Jobs and wait for it.

    :param image: Docker image (``python:3.12``, ``ghcr.io/...``) or Space (``hf.co/spaces/owner/name``).
    :param command: the command and its arguments, as a list.
    :param flavor: hardware, e.g. ``cpu-basic`` (default), ``t4-small``, ``a10g-small``, ``a100-large``, ``h200``.
    :param env: environment variables (strings).
    :param secrets: secret environment variables; values are masked everywhere in Airflow.
    :param timeout: the job's own timeout: seconds or ``"90s"``, ``"30m"``, ``"1.5h"``, ``"2d"`` (default 30 min
        on the Hub).
    :param labels: labels to put on the job.
    :param attempts: tries the Hub gives the job in all (it re-runs a failed job itself), as ``huggingface_hub``.
    :param name: the job's name (default: generated from the image, as ``huggingface_hub`` does).
    :param volumes: buckets, models, datasets or Spaces to mount: :class:`~airflow_provider_hfjobs.jobs.Volume`
        objects or dicts (``type``, ``source``, ``mount_path``, ``revision``, ``read_only``, ``path``);
        templated, so a list may come from XCom or params.
    :param expose: ports of the job to expose; ``expose_public``: those reachable without a token.
    :param ssh: enable ssh into the job.
    :param network_group: the private network the job joins; ``network_aliases``: its names there.
    :param resource_group_id: the organization resource group to bill and limit the job against.
    :param namespace: user or organization to run in (default: the connection's, or the token's user).
    :param hf_conn_id: the ``hf_jobs`` connection.
    :param wait_for_completion: wait for the job; ``False`` returns once it is submitted.
    :param deferrable: wait in the triggerer instead of a worker (default ``[operators] default_deferrable``).
    :param poll_interval: seconds between stage checks when logs are not followed.
    :param stream_logs: copy the job's log lines into the task log while it runs.
    :param cancel_on_kill: cancel the job when the task is killed or times out.
    :param reattach: before submitting, look for a job this task instance started in an earlier try (by its
        ``airflow-ti`` label) and watch it instead of starting a second one, if it is still live.
    :param reuse_completed: on a retry, return a job of an earlier try that already COMPLETED instead of
        running it again. A first try, or the first try after a clear, always runs anew.
    :param log_metrics: sample the job's metrics stream while it runs (on the worker, or in the trigger)
        and end the task with one summary line (GPU utilization and memory, CPU, memory, network), pushed
        in the ``job`` XCom under ``metrics``; a GPU mostly idle (under 10% mean) earns a warning with what
        it cost. ``None`` (default): on for a GPU flavor, off for ``cpu-*``. Off, no metrics request is made.
    :param emit_assets: declare the job's volumes as the task's inlets (read-only) and outlets (written
        buckets), and give each output an Asset event (a Dataset event on Airflow 2.11) when the job
        COMPLETED, reported assets (``report_asset``) included, through the task's alias
        ``hfjobs:<dag_id>.<task_id>``; see :mod:`airflow_provider_hfjobs.operators.lineage`.
    :param outputs: a bucket (``"alice/artifacts"``): this try's own folder of it,
        ``<dag>/<run>/<task>/<map_index>/<try>``, is mounted read-write at ``/outputs``, and the files the job
        wrote there (path, size, sha256) are pushed as a manifest to the ``hf_job_outputs`` XCom.
    :param inputs: such a manifest (or a list of them), e.g. ``export.output["hf_job_outputs"]``: its folder
        is mounted read-only at ``/inputs`` (a list: ``/inputs-0``, ``/inputs-1``...).
    :param checkpoint_dir: a bucket: a folder of it shared by every try of the task instance is mounted at
        ``/checkpoints`` (``HFJOBS_CHECKPOINT_DIR``); a retry gets ``HFJOBS_RESUME=1`` and the last checkpoint
        reported. See :mod:`airflow_provider_hfjobs.outputs` and docs/outputs.md.
    :param stall_timeout: guardrail: no new log line for that long while RUNNING (e.g. ``"30m"``) cancels
        the job and fails the task.
    :param max_cost_usd: guardrail: once the flavor's price times the time billed reaches it, the job is
        cancelled and the task fails with the figures (said at submit if the job's timeout allows more).
    :param idle_gpu_timeout: guardrail: GPU utilization under ``idle_gpu_threshold`` percent (default 5)
        for that long, from the metrics stream, cancels the job and fails the task with the idle time's cost.
    :param max_scheduling_time: guardrail: still SCHEDULING that long cancels the job; with ``flavor`` a
        list (fallback order, e.g. ``["h200", "a100-large"]``) it is resubmitted on the next flavor, never two
        live jobs at once; on the last one the task fails.

    Every guardrail is templated, checked when the DAG is parsed if literal, and enforced on the worker and
    in the trigger alike: the stop is one log line and ``stopped_by`` in the ``job`` XCom, and the job is
    cancelled and the cancel verified.
    """

    template_fields: Sequence[str] = (
        "image", "command", "flavor", "env", "secrets", "timeout", "labels", "volumes", "name", "network_group",
        "network_aliases", "resource_group_id", "namespace", "hf_conn_id", *GUARDRAIL_ARGUMENTS,
        "outputs", "inputs", "checkpoint_dir",
    )  # fmt: skip
    template_fields_renderers = {
        "command": "json", "env": "json", "labels": "json", "secrets": "json", "volumes": "json",
    }  # fmt: skip
    operator_extra_links: tuple[HfJobLink, ...] = (HfJobLink(),)
    ui_color = "#ffd21e"
    #: A subclass with arguments of its own calls :meth:`_check_known_arguments` once they are set.
    _checks_own_arguments = False

    def __init__(
        self,
        *,
        image: str,
        command: list[str],
        flavor: str | list[str] | None = None,
        env: dict[str, str] | None = None,
        secrets: dict[str, str] | None = None,
        timeout: int | float | str | None = None,
        labels: dict[str, str] | None = None,
        attempts: int | None = None,
        name: str | None = None,
        volumes: Sequence[Volume | Mapping[str, Any]] | None = None,
        expose: Sequence[int] | None = None,
        expose_public: Sequence[int] | None = None,
        ssh: bool = False,
        network_group: str | None = None,
        network_aliases: Sequence[str] | None = None,
        resource_group_id: str | None = None,
        namespace: str | None = None,
        hf_conn_id: str = HfJobsHook.default_conn_name,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        stream_logs: bool = True,
        cancel_on_kill: bool = True,
        reattach: bool = True,
        reuse_completed: bool = True,
        log_metrics: bool | None = None,
        stall_timeout: int | float | str | None = None,
        max_cost_usd: float | str | None = None,
        idle_gpu_timeout: int | float | str | None = None,
        idle_gpu_threshold: float | str | None = None,
        max_scheduling_time: int | float | str | None = None,
        emit_assets: bool = True,
        outputs: str | None = None,
        inputs: Any = None,
        checkpoint_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.outputs, self.inputs, self.checkpoint_dir = outputs, inputs, checkpoint_dir
        self.emit_assets = emit_assets
        self.stall_timeout = stall_timeout
        self.max_cost_usd = max_cost_usd
        self.idle_gpu_timeout = idle_gpu_timeout
        self.idle_gpu_threshold = idle_gpu_threshold
        self.max_scheduling_time = max_scheduling_time
        self.image = image
        self.command = command
        self.flavor = flavor
        self.env = env
        self.secrets = secrets
        self.timeout = timeout
        self.labels = labels
        self.attempts = attempts
        self.name = name
        self.volumes = volumes
        self.expose = expose
        self.expose_public = expose_public
        self.ssh = ssh
        self.network_group = network_group
        self.network_aliases = network_aliases
        self.resource_group_id = resource_group_id
        self.namespace = namespace
        self.hf_conn_id = hf_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.stream_logs = stream_logs
        self.cancel_on_kill = cancel_on_kill
        self.reattach = reattach
        self.reuse_completed = reuse_completed
        self.log_metrics = log_metrics
        self.job_id: str | None = None
        self.job_namespace: str | None = None
        #: How the cancel of this try's job went, once one was made (a task is stopped once).
        self._cancel_outcome: CancelOutcome | None = None
        #: The flavor this try's current job runs on (with ``flavor`` a fallback list: the one in use).
        self._flavor_in_use: str | None = None
        #: The job URL this operator pushed to XCom in this process; ``""`` once ``execute`` has started
        #: without one yet. ``HfJobLink`` reads it instead of asking for an XCom that may not exist.
        self.job_url: str | None = None
        #: The reports of the job this try follows (:mod:`airflow_provider_hfjobs.reports`).
        self._reports: ReportLog | None = None
        if not self._checks_own_arguments:  # a subclass checks once its own arguments are set
            self._check_known_arguments()
        self._declare_assets()

    # ------------------------------------------------------------------------------------------ plumbing
    @cached_property
    def hook(self) -> HfJobsHook:
        return HfJobsHook(self.hf_conn_id, namespace=self.namespace or None)

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Register every secret value with the masker as soon as it is rendered, before anything is logged
        or the rendered fields are stored."""
        super().render_template_fields(context, jinja_env)
        self._mask_secrets()

    def _move_masked_env_to_secrets(self) -> None:
        """An ``env`` value Airflow masks (a masked Variable, a connection's password put in ``env``) goes
        as a job secret instead: a job's environment is shown by the Jobs API and the job page to whoever
        can list the namespace; secrets are shown by name only."""
        if not isinstance(self.env, Mapping):
            return
        moved = {
            name: value for name, value in self.env.items() if isinstance(value, str) and is_masked(value)
        }
        if not moved:
            return
        self.env = {name: value for name, value in self.env.items() if name not in moved}
        self.secrets = {**(self.secrets or {}), **moved}
        self.log.info(
            "env %s hold(s) a value Airflow masks: sent as job secret(s) instead, so the Jobs API and the job "
            "page show only the name(s); put such values in secrets=.",
            ", ".join(sorted(moved)),
        )

    def _mask_secrets(self) -> None:
        if isinstance(self.secrets, Mapping):
            for value in self.secrets.values():
                if isinstance(value, str) and value:
                    mask_secret(value)

    def _create_arguments(self, labels: dict[str, str], *, followed: bool = True) -> dict[str, Any]:
        """What both operators pass to the hook's create, ``huggingface_hub``'s arguments (with ``flavor`` a
        fallback list: the flavor in use, the first to begin with). A job this task ``followed`` (reads the
        reports of) gets ``HFJOBS_REPORTS=1``, so its report helper prints (the user's ``env`` may say
        ``0``); a scheduled job's runs are followed by no task, so its spec keeps the user's env as written."""
        env = {REPORTS_ENV: "1", **(self.env or {})} if followed else self.env
        return self._with_outputs({
            "env": env, "secrets": self.secrets, "flavor": self._current_flavor(), "timeout": self.timeout,
            "attempts": self.attempts, "name": self.name or None, "labels": labels, "volumes": self.volumes,
            "expose": self.expose, "expose_public": self.expose_public, "ssh": self.ssh,
            "network_group": self.network_group or None, "network_aliases": self.network_aliases,
            "resource_group_id": self.resource_group_id or None, "namespace": self.namespace or None,
        }, followed)  # fmt: skip

    def submit_job(self, context: Any, labels: dict[str, str]) -> JobInfo:
        return self.hook.run_job(image=self.image, command=self.command, **self._create_arguments(labels))

    # -------------------------------------------------------------------------------------- guardrails
    def _flavors(self) -> list[str]:
        """The flavors to try in order (``[]``: the server's default)."""
        return flavor_fallback(self.flavor)

    def _current_flavor(self) -> str | None:
        if self._flavor_in_use is not None:
            return self._flavor_in_use
        if isinstance(self.flavor, (list, tuple)):
            return self.flavor[0] if self.flavor else None
        return self.flavor

    def _guardrails(self) -> Guardrails:
        return Guardrails.from_arguments(**{name: getattr(self, name) for name in GUARDRAIL_ARGUMENTS})

    def _hardware_price(self, flavor: str | None) -> float | None:
        """The flavor's price per hour from the hardware table (one request), ``None`` if unknown."""
        if not flavor:
            return None
        try:
            prices = {hw.name: hw for hw in self.hook.list_jobs_hardware()}
        except HfJobsError as exc:
            self.log.info("No price for flavor %s (%s).", flavor, exc)
            return None
        hardware = prices.get(flavor)
        return price_per_hour(hardware) if hardware else None

    def _announce_guardrails(self, job: JobInfo, guardrails: Guardrails) -> float | None:
        """Say which guardrails watch the job (and when the cost cap stops it before its timeout); the
        flavor's price, when a guard needs it."""
        price = (
            self._hardware_price(job.flavor) if guardrails.needs_price or guardrails.needs_metrics else None
        )
        self.log.info("Guardrails on job %s: %s.", job.id, guardrails.describe())
        warning = cap_warning(guardrails, self.timeout, price, job_id=job.id, flavor=job.flavor)
        if warning:
            self.log.warning("%s", warning)
        return price

    def _fall_back(self, context: Any, stop: GuardStop | None) -> JobInfo | None:
        """After ``max_scheduling_time`` stopped a job whose cancel was verified: the same task on the next
        flavor (``None``: nothing to fall back to). Never two live jobs: a cancel not seen ending fails."""
        if stop is None or stop.guard != "max_scheduling_time" or not stop.next_flavor:
            return None
        outcome = self._cancel_outcome
        if outcome is None or not outcome.confirmed:
            return None
        self.log.info(
            "Resubmitting on %s, the next flavor of %s (job %s waited too long on %s).",
            stop.next_flavor, ", ".join(self._flavors()), stop.job_id, stop.flavor,
        )  # fmt: skip
        self._flavor_in_use = stop.next_flavor
        self._cancel_outcome = None
        return self._submit(context)

    # --------------------------------------------------------------------------------------------- flow
    def execute(self, context: Any) -> str:
        self._mask_secrets()
        self.job_url = ""  # no job in this try yet (Airflow clears a try's XComs when it starts)
        self._check_arguments(context)  # the rendered values, before any request (the hook checks again)
        self._begin_outputs(context)
        self._move_masked_env_to_secrets()
        self._flavor_in_use = None
        job = (
            self._previous_job(context, self._own_labels(context)[TASK_INSTANCE_LABEL])
            if self.reattach
            else None
        )
        if job is None:
            job = self._submit(context)
        else:
            self._adopt(context, job)
            if job.flavor in self._flavors():  # a retry re-attached on a fallback flavor goes on from there
                self._flavor_in_use = job.flavor
        try:
            if not self.wait_for_completion:
                return job.id
            if self.deferrable:
                return self._defer(context, job)
            return self._follow(context, job)
        except (TaskDeferred, HfJobFailedError):
            raise  # the trigger watches it now / it is over
        except BaseException as exc:
            # Ctrl-C, execution_timeout, SIGTERM, a lost API: whatever stops this task from watching its
            # job, the job must not run on unwatched and billed. Only an error with a retry to come, which
            # re-attaches to the job (as after a SIGKILLed worker), leaves it running.
            if is_interruption(exc) or not self._retry_will_reattach(context):
                self._cancel(reason=stop_reason(exc))
            else:
                self.log.warning(
                    "Leaving Hugging Face job %s running: the retry of this task re-attaches to it (%s).",
                    self.job_id, type(exc).__name__,
                )  # fmt: skip
            raise

    def _own_labels(self, context: Any) -> dict[str, str]:
        ti = context["ti"]
        return task_instance_labels(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1) or -1)

    def _submit(self, context: Any) -> JobInfo:
        """Create this try's job (on the flavor in use) and make it the one the task watches."""
        self._prepare_folders(context)
        job = self.submit_job(context, {**validate_labels(self.labels), **self._own_labels(context)})
        _task_state(context, self.log).set(JOB_STATE_KEY, job.id)
        self._adopt(context, job)
        return job

    def _adopt(self, context: Any, job: JobInfo) -> None:
        """The job this try watches from now on: its id and URL in XCom and the log (before any wait)."""
        self.job_id, self.job_namespace = job.id, job.owner_name or self.hook.namespace
        self._cancel_outcome = None
        ti = context["ti"]
        ti.xcom_push(key=JOB_ID_XCOM_KEY, value=job.id)
        ti.xcom_push(key=JOB_URL_XCOM_KEY, value=job.url)
        self.job_url = job.url
        self.log.info("Hugging Face job %s: %s", job.id, job.url)

    def _follow(self, context: Any, job: JobInfo) -> str:
        """Wait on this worker, copying log lines into the task log as they come (and sampling the job's
        metrics beside them, see ``log_metrics``; and enforcing the guardrails, resubmitting on the next
        flavor after ``max_scheduling_time``)."""
        guardrails = self._guardrails()
        while True:
            tail: deque[str] = deque(maxlen=EVENT_LOG_LINES)
            guard = self._start_guard(job, guardrails)
            metrics = self._start_metrics(job, on_sample=guard.sample if guard is not None else None)
            try:
                cursor, complete = (
                    self._show_logs(job.id, tail, cursor=0, echo=True, on_batch=guard.life if guard else None)
                    if self.stream_logs
                    else (0, True)
                )
                final = self.hook.wait_for_job(
                    job.id, namespace=self.job_namespace, poll_interval=self.poll_interval
                )
            finally:
                summary = metrics.stop() if metrics is not None else None
                if guard is not None:
                    guard.stop()
            stopped = guard.stopped if guard is not None else None
            if stopped is not None:
                self._cancel_outcome = guard.cancel  # type: ignore[union-attr]
            if not complete:
                # The stream gave up early: the finished job's log is complete now, show what was missed.
                self._show_logs(job.id, tail, cursor=cursor, echo=True)
            if (resubmitted := self._fall_back(context, stopped)) is None:
                return self._finish(context, final, list(tail), metrics=summary, stopped_by=stopped)
            job = resubmitted

    def _start_guard(self, job: JobInfo, guardrails: Guardrails) -> GuardWatchdog | None:
        if not guardrails.active or job.is_terminal:
            return None
        price = self._announce_guardrails(job, guardrails)
        return GuardWatchdog(
            self._metrics_hook(), job, self.job_namespace, guardrails, self.log, poll_interval=self.poll_interval,
            flavors=self._flavors(), price_per_hour_usd=price,
        ).start()  # fmt: skip

    # ------------------------------------------------------------------------------------------- metrics
    def _wants_metrics(self, job: JobInfo) -> bool:
        """``log_metrics``, or (``None``) whether the job's flavor has a GPU: known from its name, so that
        deciding costs no request. A job already over has no stream left to read."""
        if job.is_terminal:
            return False
        if self.log_metrics is None:
            return flavor_has_gpu(job.flavor or self._current_flavor())
        return bool(self.log_metrics)

    def _start_metrics(self, job: JobInfo, on_sample: Any = None) -> MetricsFollower | None:
        """The metrics thread, for ``log_metrics`` or the idle-GPU guard (``on_sample``)."""
        if not self._wants_metrics(job) and not (on_sample is not None and self._guardrails().needs_metrics):
            return None
        return MetricsFollower(self._metrics_hook(), job.id, self.job_namespace, self.log, on_sample).start()

    def _metrics_hook(self) -> HfJobsHook:
        """A copy of the task's hook for the metrics thread: the credentials already read (no connection
        lookup from a thread), a requests session of its own."""
        _ = self.hook.credentials  # read here, on the task's thread
        hook = copy.copy(self.hook)
        hook.__dict__.pop("session", None)
        return hook

    def _report_metrics(self, job: JobInfo, summary: dict[str, Any] | None, cost_usd: float | None) -> None:
        """The summary line, and the warning when a GPU flavor's GPU mostly waited."""
        if summary is None:
            return
        flavor = job.flavor or self._current_flavor()
        if not summary.get("samples") and not no_sample_means_something(summary, job.billed_seconds):
            return  # a job too short for its stream to send a sample: nothing to say (still in the XCom)
        self.log.info("%s", summary_line(job.id, summary, gpu_flavor=flavor_has_gpu(flavor)))
        warning = idle_gpu_warning(job.id, flavor, summary, cost_usd)
        if warning:
            self.log.warning("%s", warning)

    def _show_logs(
        self, job_id: str, tail: deque[str], *, cursor: int, echo: bool, on_batch: Any = None
    ) -> tuple[int, bool]:
        """Follow the job's log from ``cursor`` until the job is terminal, into the task log if ``echo``.

        Best effort, never raises: returns the new cursor and whether the log was read to its end.
        """
        try:
            for batch in self.hook.iter_job_log_batches(
                job_id, namespace=self.job_namespace, follow=True, cursor=cursor
            ):
                shown = list(self._reports_of(job_id).lines(batch.texts))  # reports read, echo or not
                write_lines(self.log, shown if echo else ())
                tail.extend(batch.texts)
                cursor = batch.next_cursor or cursor
                if on_batch is not None:
                    on_batch()  # a sign of life, for stall_timeout
        except HfJobsError as exc:
            self.log.warning(
                "Could not read the logs of job %s (%s); waiting for the job instead.", job_id, exc
            )
            return cursor, False
        return cursor, True

    def _deadline(self, context: Any) -> float | None:
        """``execution_timeout`` as a wall-clock deadline, anchored on the task's start (kept across resumes)."""
        if not self.execution_timeout:
            return None
        start = getattr(context.get("ti"), "start_date", None)
        begin = start.timestamp() if start is not None else time.time()
        return begin + self.execution_timeout.total_seconds()

    def _defer(self, context: Any, job: JobInfo) -> str:
        current = self.hook.inspect_job(job.id, namespace=self.job_namespace)
        if current.is_terminal:
            # Finished before we could defer: no trigger needed, but still show its log.
            tail: deque[str] = deque(maxlen=EVENT_LOG_LINES)
            self._show_logs(job.id, tail, cursor=0, echo=self.stream_logs)
            unmeasured = MetricsAccumulator().summary() if self._wants_metrics(current) else None
            return self._finish(context, current, list(tail), metrics=unmeasured)
        deadline = self._deadline(context)
        guardrails = self._guardrails()
        price = self._announce_guardrails(current, guardrails) if guardrails.active else None
        self.defer(
            trigger=HfJobTrigger(
                job_id=job.id, namespace=self.job_namespace or self.hook.namespace, hf_conn_id=self.hf_conn_id,
                poll_interval=self.poll_interval, stream_logs=self.stream_logs, deadline=deadline,
                cancel_on_kill=self.cancel_on_kill, mask_values_sealed=self._sealed_secrets(),
                log_metrics=self._wants_metrics(current),
                guardrails=guardrails.to_dict() if guardrails.active else None, flavors=self._flavors(),
                price_per_hour_usd=price,
            ),
            method_name="execute_complete",
            timeout=defer_timeout(deadline, self.poll_interval),
        )  # fmt: skip
        raise AssertionError("defer() returned")  # pragma: no cover - defer always raises

    def _sealed_secrets(self) -> str | None:
        """The secret values for the triggerer's masker, sealed (see :mod:`airflow_provider_hfjobs.masking`)."""
        values = list(self.secrets.values()) if isinstance(self.secrets, Mapping) else []
        sealed = seal_mask_values(values)
        if sealed is None and any(isinstance(value, str) and value for value in values):
            self.log.warning(
                "No [core] fernet_key is configured, so the triggerer cannot be told this task's secret "
                "values: a deferred job that prints one shows it in clear. Configure a Fernet key (the same "
                "on workers and triggerers) or run with deferrable=False."
            )
        return sealed

    def execute_complete(self, context: Any, event: Mapping[str, Any] | None = None) -> str:
        event = validate_event(event)
        self.job_id = event["job_id"]
        self.job_namespace = self.job_namespace or self.hook.namespace
        self._reports = ReportLog.from_summary(event.get("reports"), event["job_id"])  # the trigger's
        metrics = summary_from(event.get("metrics"))  # numbers only: it came through the metadata DB
        if event["status"] in ("timeout", "error") and event.get("stage") is None:
            # We stopped watching a job that may still run (deadline, or the API became unreachable).
            if metrics is not None:
                self.log.info("%s", summary_line(event["job_id"], metrics, gpu_flavor=False))
            self._cancel(reason=event["status"])
            if self._cancel_outcome is not None and self._cancel_outcome.confirmed:
                self._show_rest_of_log(event)  # over now: what the trigger had not shown yet
            url = event.get("job_url", "")
            with contextlib.suppress(Exception):  # the configured endpoint: the trigger may not have read it
                url = job_url(self.hook.endpoint, self.job_namespace, event["job_id"])
            raise HfJobFailedError(
                failure_message(
                    event["job_id"], None, event.get("message"), url, self._log_tail(event["job_id"]),
                ),
                job_id=event["job_id"], stage=None, job_url=url,
            )  # fmt: skip
        self._show_rest_of_log(event)
        final = self.hook.inspect_job(event["job_id"], namespace=self.job_namespace)
        stopped = GuardStop.from_dict(event["stopped_by"]) if event.get("stopped_by") else None
        if stopped is not None:  # the trigger cancelled the job for a guard, and verified it
            self._cancel_outcome = CancelOutcome(
                final.id, final.stage.value if final.is_terminal else None, True, 0.0, stopped.message
            )
        if (resubmitted := self._fall_back(context, stopped)) is not None:
            return self._defer(context, resubmitted)
        return self._finish(context, final, [], metrics=metrics, stopped_by=stopped)

    def _show_rest_of_log(self, event: Mapping[str, Any]) -> None:
        """The lines of an ended job the trigger had not shown (a job's end never waits for the trigger's
        display steps), read here from where the event says the trigger stopped: each line once, before
        the task's result. Redacted here, not only by the log handler: a LocalExecutor also copies each
        task log record to its own output, unmasked."""
        if not self.stream_logs or event.get("log_complete"):
            return
        cursor = event.get("log_cursor")
        cursor = cursor if isinstance(cursor, int) and not isinstance(cursor, bool) and cursor >= 0 else 0
        try:
            for batch in self.hook.iter_job_log_batches(
                event["job_id"], namespace=self.job_namespace, follow=True, cursor=cursor
            ):
                write_lines(self.log, self._reports_of(event["job_id"]).lines(batch.texts), redact)
        except HfJobsError as exc:
            self.log.warning("Could not read the rest of the log of job %s: %s", event["job_id"], exc)

    def _log_tail(self, job_id: str) -> list[str]:
        """The job's last lines for a failure message: one logs call, read here on the worker (events carry
        no log text), masked by the worker's masker."""
        try:
            return list(self.hook.fetch_job_logs(job_id, namespace=self.job_namespace, tail=EVENT_LOG_LINES))
        except HfJobsError as exc:
            self.log.info("Could not read the log tail of job %s: %s", job_id, exc)
            return []

    def _finish(
        self,
        context: Any,
        job: JobInfo,
        log_tail: list[str],
        *,
        metrics: dict[str, Any] | None = None,
        stopped_by: GuardStop | None = None,
    ) -> str:
        info = job.to_dict()
        billed = job.billed_seconds
        price = self._hardware_price(job.flavor)
        info["billed_seconds"] = billed
        info["price_per_hour_usd"] = price
        info["cost_usd"] = (
            round(price * billed / 3600, 8) if price is not None and billed is not None else None
        )
        if metrics is not None:
            info["metrics"] = metrics
        if stopped_by is not None:
            info["stopped_by"] = stopped_by.to_dict()
        context["ti"].xcom_push(key=JOB_XCOM_KEY, value=info)
        self._publish_reports(context, job.id)
        self._publish_outputs(context, job)
        self._record_lineage(context, job, info)
        cost = f", about ${info['cost_usd']:.6f}" if info["cost_usd"] is not None else ""
        seconds = f" after {billed:.1f} s billed" if billed is not None else ""
        rate = f" (${price:g}/h)" if price is not None else ""
        self.log.info(
            "Hugging Face job %s %s on %s%s%s%s.", job.id, job.stage.value, job.flavor, rate, seconds, cost
        )
        self._report_metrics(job, metrics, info["cost_usd"])
        if not job.stage.is_success:
            log_tail = log_tail or self._log_tail(job.id)  # not followed here: read the tail once
            reason = f"Stopped by its guardrail: {stopped_by.message}\n" if stopped_by is not None else ""
            raise HfJobFailedError(
                reason
                + failure_message(
                    job.id, job.stage.value, job.message, job.url, log_tail,
                    advice=timeout_advice(job.message, given=self.timeout),
                ),
                job_id=job.id, stage=job.stage.value, job_url=job.url,
            )  # fmt: skip
        return job.id

    def _reports_of(self, job_id: str) -> ReportLog:
        """The reader of this job's reports (a new job, e.g. on a fallback flavor, starts a new one)."""
        if self._reports is None or self._reports.job_id != job_id:
            self._reports = ReportLog(job_id)
        return self._reports

    def _publish_reports(self, context: Any, job_id: str) -> None:
        """The last progress line if not shown yet, and the last reports of each kind in XCom (masked)."""
        reports = self._reports if self._reports is not None and self._reports.job_id == job_id else None
        if reports is None:
            return
        write_lines(self.log, reports.close(), redact)
        if (summary := reports.summary(redact)) is not None:
            context["ti"].xcom_push(key=REPORTS_XCOM_KEY, value=summary)

    def _cancel(self, *, reason: str) -> None:
        """Cancel the job this task started (never one it did not: ``cancel_on_kill``) and follow it until
        it is terminal (:mod:`airflow_provider_hfjobs.cancellation`); once per try, whichever way the task
        stops first (an interrupt and then ``on_kill`` cancel once)."""
        if not (self.cancel_on_kill and self.job_id) or self._cancel_outcome is not None:
            return
        self._cancel_outcome = cancel_and_confirm(
            self.hook, self.job_id, namespace=self.job_namespace, reason=reason
        )
        log_outcome(self.log, self._cancel_outcome)

    def on_kill(self) -> None:
        self._cancel(reason="task killed")


class HfUvJobOperator(UvArgumentChecks, HfJobRunOperator):
    """Run a UV script on Hugging Face Jobs and wait for it.

    :param script: a local ``.py`` file (absolute, or relative to the DAG file), an http(s) URL, or inline
        Python source. Local files and source travel inside the job spec; nothing is uploaded.
    :param script_args: arguments for the script.
    :param dependencies: extra requirements (``uv run --with``), on top of the script's PEP 723 header.
    :param python: Python version for ``uv run --python``.
    :param image: default ``ghcr.io/astral-sh/uv:python3.12-bookworm``.
    :param allow_script_outside_dags_folder: a local ``script`` must lie under the DAG folder (or beside the
        DAG file), so that a templated path cannot ship any file of the worker (``../../airflow.cfg``) into
        the job; ``True`` lifts that.

    Everything else as :class:`HfJobRunOperator`.
    """

    template_fields: Sequence[str] = (
        "script", "script_args", "dependencies", "python", "image", "flavor", "env", "secrets", "timeout",
        "labels", "volumes", "name", "network_group", "network_aliases", "resource_group_id", "namespace",
        "hf_conn_id", *GUARDRAIL_ARGUMENTS, "outputs", "inputs", "checkpoint_dir",
    )  # fmt: skip
    template_fields_renderers = {
        "script": "py", "script_args": "json", "dependencies": "json", "env": "json", "labels": "json",
        "secrets": "json", "volumes": "json",
    }  # fmt: skip
    _checks_own_arguments = True

    def __init__(
        self,
        *,
        script: str,
        script_args: list[str] | None = None,
        dependencies: list[str] | None = None,
        python: str | None = None,
        image: str = DEFAULT_UV_IMAGE,
        allow_script_outside_dags_folder: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(image=image, command=[], **kwargs)
        self.script = script
        self.script_args = script_args
        self.dependencies = dependencies
        self.python = python
        self.allow_script_outside_dags_folder = allow_script_outside_dags_folder
        self._check_known_arguments()

    def _job_arguments(self) -> dict[str, Any]:
        """The command is built from the script; an empty image is the hook's default uv image."""
        arguments = super()._job_arguments()
        del arguments["command"]
        if not self.image:
            del arguments["image"]
        return arguments

    def submit_job(self, context: Any, labels: dict[str, str]) -> JobInfo:
        """A script that travels in the spec gets the report helper beside it (``hfjobs_report``, see
        :func:`airflow_provider_hfjobs.jobs.uv.build_uv_command`): a URL or a command has no place for it."""
        kind, script = self._resolve_script(self._dag_of(context))
        arguments = self._create_arguments(labels)
        if kind in ("inline", "file"):
            arguments["env"] = {HELPER_ENV: helper_encoded(), **arguments["env"]}
        return self.hook.run_uv_job(
            script, script_args=self.script_args, dependencies=self.dependencies, python=self.python,
            image=self.image, **arguments,
        )  # fmt: skip
