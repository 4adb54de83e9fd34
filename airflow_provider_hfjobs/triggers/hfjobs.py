"""``HfJobTrigger``: watch a Hugging Face job from the triggerer, streaming its log into the task log.

Fully async (one ``httpx.AsyncClient`` per trigger, async connection lookup), so one triggerer can watch
thousands of jobs. It yields exactly one event, and the event carries no log line (Airflow logs every event
and stores it in the metadata DB). Its kwargs are plain values — job id, namespace, connection id, poll
interval, stream flag, deadline, log cursor, metrics flag — plus the task's secret values sealed with
Airflow's Fernet key (:mod:`airflow_provider_hfjobs.masking`), never a token or a secret in clear.

With ``log_metrics``, a second task beside the log stream follows the job's metrics stream (on a connection
of its own) and folds its samples into a summary (:mod:`airflow_provider_hfjobs.metrics`); the event
carries that summary, numbers only.

Each line is written once even when the triggerer restarts or the trigger moves to another triggerer: the
triggers of a process keep their places in one record, written around the display steps they share
(:mod:`.log_checkpoint`), and a resumed trigger continues after the last line shown. A job's end waits for
no step: the event says how far the trigger showed the log, and the resumed task shows the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from airflow.providers.common.compat.sdk import mask_secret, redact
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_hfjobs.cancellation import acancel_and_confirm, log_outcome
from airflow_provider_hfjobs.exceptions import HfJobsAPIError, HfJobsError, HfJobsTLSError
from airflow_provider_hfjobs.guardrails import Guardrails, GuardStop, GuardWatch
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook
from airflow_provider_hfjobs.jobs import JobInfo, JobStage, job_url
from airflow_provider_hfjobs.masking import unseal_mask_values
from airflow_provider_hfjobs.metrics import MetricsAccumulator
from airflow_provider_hfjobs.reports import ReportLog, write_lines
from airflow_provider_hfjobs.triggers.log_checkpoint import (
    CheckpointBook,
    Entry,
    checkpoint_book,
    position_key,
)
from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_3_PLUS, AIRFLOW_V_3_PLUS

#: Event statuses, by terminal stage. Anything else is an error.
EVENT_STATUS = {
    JobStage.COMPLETED: "success",
    JobStage.ERROR: "error",
    JobStage.CANCELED: "cancelled",
    JobStage.DELETED: "cancelled",
}
EVENT_STATUSES = frozenset({"success", "error", "cancelled", "timeout"})
#: How many of the job's last log lines a failure message shows (read on the worker, never carried in events).
EVENT_LOG_LINES = 20
#: About the CPU one trigger's start takes (connection lookup, connect, log replay). Starts are spread over
#: twice that per trigger running in the process, so a triggerer starting thousands at once stays responsive.
START_COST_SECONDS = 0.001
#: The longest the guardrails' task sleeps between two looks at the job (a guard due sooner wakes it sooner).
GUARD_MAX_PAUSE = 10.0
#: Airflow 3.3 calls ``on_kill`` when a user stops a deferred task; before, the trigger is only cancelled.
TRIGGER_ON_KILL = AIRFLOW_V_3_3_PLUS


def job_event(
    status: str,
    job_id: str,
    *,
    stage: str | None,
    message: str | None,
    url: str,
    cursor: int,
    metrics: dict[str, Any] | None = None,
    log_complete: bool = False,
) -> dict[str, Any]:
    """The one event payload shape, plain JSON and no log text (Airflow logs and stores every event); with
    metrics on, their summary too (numbers only).

    ``log_cursor`` is how far the trigger showed the job's log and ``log_complete`` whether it showed all of
    it: a job's end never waits for lines still to be shown, the resumed task shows them after the cursor."""
    event: dict[str, Any] = {
        "status": status,
        "job_id": job_id,
        "stage": stage,
        "message": message,
        "job_url": url,
        "log_cursor": cursor,
        "log_complete": log_complete,
    }
    if metrics is not None:
        event["metrics"] = metrics
    return event


def event_from_job(
    job: JobInfo, cursor: int, metrics: dict[str, Any] | None = None, log_complete: bool = False
) -> dict[str, Any]:
    status = EVENT_STATUS.get(job.stage, "error")
    return job_event(
        status, job.id, stage=job.stage.value, message=job.message, url=job.url, cursor=cursor,
        metrics=metrics, log_complete=log_complete,
    )  # fmt: skip


class HfJobTrigger(BaseTrigger):
    """Wait for a Hugging Face job to end.

    :param job_id: the job to watch.
    :param namespace: its namespace (resolved by the operator, so the trigger needs no whoami call).
    :param hf_conn_id: the ``hf_jobs`` connection.
    :param poll_interval: seconds between stage checks when not streaming logs.
    :param stream_logs: follow the log stream and write each line to the task log.
    :param deadline: wall-clock epoch seconds after which a ``timeout`` event is sent (from the task's
        ``execution_timeout``); wall-clock, so it survives a triggerer restart.
    :param log_cursor: log events already shown, so that a resumed trigger repeats none.
    :param max_consecutive_errors: transient API failures tolerated in a row before an ``error`` event.
    :param cancel_on_kill: the job is the task's own (it created it): cancel it when a user marks the
        deferred task failed or success, or clears it (``on_kill`` on Airflow >= 3.3; before, the cancelled
        trigger checks that its task left DEFERRED: a triggerer restart or a trigger moving leaves it
        DEFERRED, and the job running), or when ``airflow dags test`` running it inline is interrupted.
        Off by default: a trigger watching a job it was only given (``HfJobSensor``) never cancels it.
        Every cancel is verified (:mod:`airflow_provider_hfjobs.cancellation`).
    :param mask_values_sealed: the task's secret values, sealed by
        :func:`airflow_provider_hfjobs.masking.seal_mask_values`: registered with the triggerer's masker so
        that a job printing one shows ``***``.
    :param log_metrics: follow the job's metrics stream beside its log (a second connection, one request)
        and put their summary in the event. Off, not one metrics request is made. A resumed trigger (a
        triggerer restart) summarizes what it saw itself: the stream has no history.
    :param guardrails: the job's guardrails (:meth:`Guardrails.to_dict`, numbers only): enforced here as on
        a worker, by one more task that looks at the job as often as a guard could fire (its own
        connection). A guard that fires cancels the job (verified) and the event carries ``stopped_by``.
    :param flavors: the task's flavor fallback list, so that a ``max_scheduling_time`` stop names the next
        flavor (the task resubmits on it when it resumes).
    :param price_per_hour_usd: the job's flavor price, for ``max_cost_usd`` (read once by the task).
    """

    #: Triggers of this class running in this process (to spread their starts).
    running = 0

    def __init__(
        self,
        job_id: str,
        namespace: str,
        hf_conn_id: str = "hf_default",
        poll_interval: float = 10.0,
        stream_logs: bool = True,
        deadline: float | None = None,
        log_cursor: int = 0,
        max_consecutive_errors: int = 5,
        cancel_on_kill: bool = False,
        mask_values_sealed: str | None = None,
        log_metrics: bool = False,
        guardrails: dict[str, Any] | None = None,
        flavors: Sequence[str] | None = None,
        price_per_hour_usd: float | None = None,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.namespace = namespace
        self.hf_conn_id = hf_conn_id
        self.poll_interval = float(poll_interval)
        self.stream_logs = bool(stream_logs)
        self.deadline = None if deadline is None else float(deadline)
        self.log_cursor = int(log_cursor)
        self.max_consecutive_errors = int(max_consecutive_errors)
        self.cancel_on_kill = bool(cancel_on_kill)
        self.mask_values_sealed = mask_values_sealed
        self.log_metrics = bool(log_metrics)
        self.guardrails = dict(guardrails) if guardrails else None
        self.flavors = list(flavors or [])
        self.price_per_hour_usd = None if price_per_hour_usd is None else float(price_per_hour_usd)
        self._guard: GuardWatch | None = None
        self._guard_stop: GuardStop | None = None
        self._metrics: MetricsAccumulator | None = None
        self._event_sent = False
        self._book: CheckpointBook | None = None
        self._entry: Entry | None = None
        self._checkpoint_key = ""
        #: Every line of the job's log up to its end is in the task log (else the resumed task shows the rest).
        self._log_complete = False
        self._streams = 0
        #: The job's reports: shown paced; the last of each kind goes in the event (bounded, see ``run``).
        self._reports = ReportLog(job_id)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "namespace": self.namespace,
                "hf_conn_id": self.hf_conn_id,
                "poll_interval": self.poll_interval,
                "stream_logs": self.stream_logs,
                "deadline": self.deadline,
                "log_cursor": self.log_cursor,
                "max_consecutive_errors": self.max_consecutive_errors,
                "cancel_on_kill": self.cancel_on_kill,
                "mask_values_sealed": self.mask_values_sealed,
                "log_metrics": self.log_metrics,
                "guardrails": self.guardrails,
                "flavors": self.flavors,
                "price_per_hour_usd": self.price_per_hour_usd,
            },
        )

    def __repr__(self) -> str:
        """Airflow logs this at every start: the sealed values are ciphertext, but noise there."""
        sealed = "sealed" if self.mask_values_sealed else None
        return (
            f"<{type(self).__module__}.{type(self).__qualname__} job_id={self.job_id} "
            f"namespace={self.namespace} hf_conn_id={self.hf_conn_id} stream_logs={self.stream_logs} "
            f"log_cursor={self.log_cursor} mask_values={sealed}>"
        )

    def _hook(self) -> HfJobsAsyncHook:
        return HfJobsAsyncHook(self.hf_conn_id, namespace=self.namespace)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        HfJobTrigger.running += 1  # one generator, not two: thousands of triggers, each a few objects less
        try:
            url = job_url("https://huggingface.co", self.namespace, self.job_id)
            async with self._hook() as hook:
                try:
                    # Thousands of triggers (re)started at once would look up their connection and open their
                    # streams in one burst, holding the triggerer's loop and hitting the API together: each waits
                    # a random moment first (2 ms per running trigger: 20 ms for ten, 4 s for 2,000; at most
                    # its poll interval).
                    await asyncio.sleep(0)  # let the triggers started together all count themselves first
                    spread = 2 * START_COST_SECONDS * HfJobTrigger.running
                    await asyncio.sleep(random.uniform(0, min(spread, self.poll_interval)))
                    # The log position is looked up (and a first reservation written) while the connection is.
                    place = asyncio.ensure_future(self._resume_from_checkpoint()) if self.stream_logs else None
                    try:
                        credentials = await hook.get_credentials()
                    except BaseException:
                        if place is not None:
                            place.cancel()
                        raise
                    url = job_url(credentials.endpoint, self.namespace, self.job_id)
                    for value in unseal_mask_values(self.mask_values_sealed):
                        mask_secret(value)
                    if place is not None:
                        await place
                        place = None  # a done task keeps its coroutine: a few objects less per trigger
                    if self.deadline is None:  # (no timeout scope held for the job's whole life)
                        job = await self._watch_and_measure(hook)
                    else:
                        async with asyncio.timeout(max(0.0, self.deadline - time.time())):
                            job = await self._watch_and_measure(hook)
                except asyncio.CancelledError:
                    if self.cancel_on_kill and interrupted_by_ctrl_c():
                        # ``airflow dags test`` runs this inline and is being stopped: nothing will watch
                        # the job after this process (a triggerer's triggers never take this branch).
                        with contextlib.suppress(asyncio.CancelledError):
                            await self._cancel_in_background(
                                "airflow dags test was interrupted (Ctrl-C)", check_deferred=False
                            )
                    elif not TRIGGER_ON_KILL and self.cancel_on_kill:
                        # Before Airflow 3.3 this is all a trigger learns of a user stopping its task.
                        with contextlib.suppress(asyncio.CancelledError):
                            await self._cancel_in_background("its task was stopped")
                    elif not TRIGGER_ON_KILL:
                        self._say_not_ours()
                    raise
                except TimeoutError:
                    failure: tuple[str, str] | None = (
                        "timeout",
                        "the task's execution_timeout passed while the job was still running",
                    )
                except HfJobsError as exc:
                    failure = ("error", str(exc))
                except Exception as exc:
                    # Never die without an event: the task resumes, fails with this, and cancels its job.
                    self.log.exception("Watching Hugging Face job %s failed unexpectedly.", self.job_id)
                    failure = (
                        "error",
                        f"the trigger failed unexpectedly ({type(exc).__name__}); see the triggerer's log",
                    )
                else:
                    failure = None
            self._event_sent = True
            metrics = self._metrics.summary() if self._metrics is not None else None
            if failure is None:
                event = event_from_job(job, self.log_cursor, metrics, self._log_complete)
                if self._guard_stop is not None:
                    event["stopped_by"] = self._guard_stop.to_dict()
                self._say(self._reports.close())  # the last progress line, if it was not due yet
                # The last report of each kind, masked: at most reports.MAX_SUMMARY_CHARS of JSON (each
                # name, URI and metadata is capped, and so is how many are kept), never the lines.
                if (reports := self._reports.summary(redact)) is not None:
                    event["reports"] = reports
                yield TriggerEvent(event)
            else:
                status, message = failure
                yield TriggerEvent(
                    job_event(
                        status, self.job_id, stage=None, message=message, url=url, cursor=self.log_cursor,
                        metrics=metrics, log_complete=False,
                    )
                )  # fmt: skip
        finally:
            HfJobTrigger.running -= 1
            if self._entry is not None:
                self._entry.close()  # from here on this trigger shows no line of its job

    async def on_kill(self) -> None:
        """Airflow >= 3.3 calls this when a user marks the deferred task failed or success, or clears it:
        the job would otherwise run on, unwatched and billed. Airflow 3.3.0 can also call it for a trigger
        that is merely moving to another triggerer (apache/airflow#73454), so the task's state is checked
        first: a task still DEFERRED keeps its job."""
        if self.cancel_on_kill:
            await self._cancel_in_background("its task was stopped")
        else:
            self._say_not_ours()

    def _say_not_ours(self) -> None:
        self.log.info(
            "Stopped watching Hugging Face job %s; it keeps running: this task only watches it "
            "(cancel_on_kill=False).",
            self.job_id,
        )

    async def _cancel_in_background(self, reason: str, *, check_deferred: bool = True) -> None:
        """Cancel the job unless an event was sent or the task is still DEFERRED. The triggerer may cancel
        the caller again on its next loop while this awaits Airflow or the API, so the work runs as its
        own task, shielded: the job does get cancelled."""
        if self._event_sent:
            return
        self._kill_task = asyncio.ensure_future(self._cancel_unwatched_job(reason, check_deferred))
        await asyncio.shield(self._kill_task)

    async def _cancel_unwatched_job(self, reason: str, check_deferred: bool) -> None:
        if check_deferred and await self._task_still_deferred():
            self.log.info(
                "Task is still deferred (the trigger is moving or its triggerer restarting; see "
                "apache/airflow#73454): job %s keeps running.",
                self.job_id,
            )
            return
        async with self._hook() as hook:
            outcome = await acancel_and_confirm(hook, self.job_id, namespace=self.namespace, reason=reason)
        log_outcome(self.log, outcome)

    async def _task_still_deferred(self) -> bool:
        """Ask Airflow for this task instance's state; ``False`` when it cannot tell (then the documented
        meaning of ``on_kill``, a user action, wins)."""
        ti = getattr(self, "task_instance", None)
        if ti is None:
            return False
        try:
            if not AIRFLOW_V_3_PLUS:
                async with asyncio.timeout(15):  # (not wait_for: on 3.11 it can swallow a cancellation)
                    state = await asyncio.to_thread(_task_state_from_db, ti)
            else:
                state = await _task_state_from_supervisor(ti)
        except Exception as exc:
            self.log.info("Could not read the task's state (%s); treating the stop as a user action.", exc)
            return False
        return str(state or "").lower() == "deferred"

    # ------------------------------------------------------------------------------------------- metrics
    async def _watch_and_measure(self, hook: HfJobsAsyncHook) -> JobInfo:
        """:meth:`_watch`, with (``log_metrics``, or the idle-GPU guard) the metrics stream read beside it
        and (guardrails) the guards' task, until the job is over; both are cancelled then, whatever ended
        the watch (terminal stage, deadline, error)."""
        guardrails = Guardrails.from_dict(self.guardrails)
        helpers: set[asyncio.Future[Any]] = set()
        if guardrails.active:
            self._guard = GuardWatch(guardrails, job_id=self.job_id, flavors=self.flavors)
        if self.log_metrics or guardrails.needs_metrics:
            into = MetricsAccumulator()
            if self.log_metrics:
                self._metrics = into
            helpers.add(asyncio.ensure_future(self._sample_metrics(await hook.get_credentials(), into)))
        try:
            if self._guard is None:
                return await self._watch(hook)
            return await self._watch_guarded(hook, helpers)
        finally:
            for task in helpers:
                task.cancel()
            if helpers:
                await asyncio.wait(helpers)

    async def _watch_guarded(self, hook: HfJobsAsyncHook, helpers: set[asyncio.Future[Any]]) -> JobInfo:
        """:meth:`_watch` beside the guards' task. A guard that fired and saw its cancel end lets the watch
        see the job's end (and its last lines); one whose cancel was not seen ending ends the watch too."""
        watch = asyncio.ensure_future(self._watch(hook))
        guard = asyncio.ensure_future(self._enforce_guardrails(await hook.get_credentials()))
        helpers.update({watch, guard})
        await asyncio.wait({watch, guard}, return_when=asyncio.FIRST_COMPLETED)
        if guard.done() and not watch.done() and guard.result() is False:
            watch.cancel()
            await asyncio.wait({watch})
            return await hook.inspect_job(self.job_id, namespace=self.namespace)
        return await watch

    # ----------------------------------------------------------------------------------------- guardrails
    async def _enforce_guardrails(self, credentials: Any) -> bool | None:
        """Look at the job as often as a guard could fire (at most every ``poll_interval``), on a connection
        of its own; when one fires, say why, cancel the job and verify it. ``None``: the job ended first;
        ``True``/``False``: a guard fired and the cancel was / was not seen ending."""
        assert self._guard is not None
        async with self._hook() as hook:
            hook._credentials = credentials  # the lookup the trigger already made
            while True:
                try:
                    job: JobInfo | None = await hook.inspect_job(self.job_id, namespace=self.namespace)
                except HfJobsError as exc:  # the watch itself decides about lasting failures
                    self.log.info("Guardrails could not look at job %s (%s).", self.job_id, exc)
                    job = None
                now = time.monotonic()
                if job is not None:
                    self._guard.observe_job(job, now)
                    if job.is_terminal:
                        return None
                billed = job.billed_seconds if job is not None else None
                stop = self._guard.check(
                    now, price_per_hour_usd=self.price_per_hour_usd, billed_seconds=billed
                )
                if stop is not None:
                    self.log.warning("%s", stop.message)
                    self._guard_stop = stop
                    outcome = await acancel_and_confirm(
                        hook, self.job_id, namespace=self.namespace, reason=stop.guard
                    )
                    log_outcome(self.log, outcome)
                    return outcome.confirmed
                due = self._guard.next_check_in(now, price_per_hour_usd=self.price_per_hour_usd)
                pause = self.poll_interval if due is None else min(self.poll_interval, due)
                await asyncio.sleep(max(0.05, min(pause, GUARD_MAX_PAUSE)))

    def _alive(self) -> None:
        """A log batch arrived: a sign of life for ``stall_timeout``."""
        if self._guard is not None:
            self._guard.observe_life(time.monotonic())

    async def _sample_metrics(self, credentials: Any, into: MetricsAccumulator) -> None:
        """Fold the job's metric samples into ``into`` until cancelled. A hook of its own, so the stream
        has its own connection (the log stream and stage checks keep theirs); informational, so any failure
        only ends the sampling."""
        try:
            async with self._hook() as hook:
                hook._credentials = credentials  # the lookup the trigger already made
                samples = hook.fetch_job_metrics(self.job_id, namespace=self.namespace, follow=True)
                async with contextlib.aclosing(samples):
                    async for sample in samples:
                        into.add(sample)
                        if self._guard is not None:
                            self._guard.observe_metrics(sample, time.monotonic())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.info(
                "Stopped reading the metrics of job %s (%s: %s); the summary covers what came before.",
                self.job_id, type(exc).__name__, exc,
            )  # fmt: skip

    async def _watch(self, hook: HfJobsAsyncHook) -> JobInfo:
        if not self.stream_logs:
            return await self._poll(hook)
        complete = await self._stream_logs(hook)
        final = getattr(hook, "last_terminal_job", None)
        if complete and final is not None and final.id == self.job_id:
            return final  # the stream ended on this terminal job: no need to ask again
        job = await self._poll(hook)
        if not complete:
            # The stream gave up early: the finished job's log is complete now, show what was missed.
            await self._stream_logs(hook)
        return job

    async def _stream_logs(self, hook: HfJobsAsyncHook) -> bool:
        """Follow the log from the cursor into the task log; ``False`` if it stopped early. Logs are best
        effort: they never decide the outcome (only a permanent error, such as a 404, is raised).

        Called again once the job is over when the stream gave up: without checkpoints the trigger reads the
        rest itself (a replay, no wait); with them the resumed task shows it (``log_complete`` is false)."""
        self._streams += 1
        self._log_complete = False
        if self._book is not None and self._streams > 1:
            return False
        try:
            if self._book is None:
                async for batch in hook.iter_job_log_batches(
                    self.job_id,
                    namespace=self.namespace,
                    cursor=self.log_cursor,
                    stage_check_interval=self.poll_interval,  # a stream left open after the end: left soon
                ):
                    self._alive()  # a report line too: it is life for stall_timeout
                    self._say(self._reports.lines(batch.texts))
                    self.log_cursor = batch.next_cursor or self.log_cursor
                    del batch  # not held while the next one is awaited (see iter_job_log_batches)
                self._log_complete = True
            else:
                await self._stream_logs_checkpointed(hook)
        except HfJobsError as exc:
            self._log_complete = False
            if _is_permanent(exc):
                raise
            self.log.warning(
                "Could not stream the logs of job %s (%s); polling its stage instead.", self.job_id, exc
            )
            return False
        return True

    # ------------------------------------------------------------------------------ exactly-once log lines
    async def _resume_from_checkpoint(self) -> None:
        """Continue after the last line an earlier run of this trigger showed (a triggerer restart, or the
        trigger moved to another triggerer), instead of the cursor it was deferred with."""
        ti = getattr(self, "task_instance", None)
        self._book = checkpoint_book(ti)
        if self._book is None:
            return
        self._checkpoint_key = position_key(ti, self.job_id)
        # Opened now, so that its first reservation is written while its place is looked up.
        self._entry = self._book.open(self._checkpoint_key, self.log_cursor, self._show, self._checkpoints_failed)
        try:
            found = await self._book.find(self._checkpoint_key)
        except Exception as exc:
            self._entry.close()
            self._entry = None
            self._checkpoints_failed(exc)
            return
        if found is None or found.showing <= self.log_cursor:
            return
        if found.shown < found.showing:
            self.log.warning(
                "The previous triggerer stopped with log events %d-%d of job %s allowed ahead of its record "
                "of them: those it had shown follow again and may already appear above (at most %d lines).",
                found.shown + 1, found.showing, self.job_id, found.showing - found.shown,
            )  # fmt: skip
        else:
            self.log.info(
                "Resuming the log of job %s after event %d, where the previous triggerer left it (a "
                "triggerer restart or move): no line is repeated.",
                self.job_id, found.shown,
            )  # fmt: skip
        if found.shown > self.log_cursor:
            self.log_cursor = found.shown
            self._entry.restart_at(found.shown)

    def _checkpoints_failed(self, exc: BaseException) -> None:
        if self._book is None:  # said already (the look-up and the process's writes may both fail)
            return
        self._book = None
        self.log.warning(
            "Cannot keep the log position of job %s (%s: %s); a triggerer restart may repeat its lines.",
            self.job_id, type(exc).__name__, exc,
        )  # fmt: skip

    async def _stream_logs_checkpointed(self, hook: HfJobsAsyncHook) -> None:
        """Follow the log, handing its lines to this trigger's place in the process's record
        (:mod:`.log_checkpoint`), which shows them at once under the reservation it last wrote, the rest
        after its next write. The job's end waits for no write: once the stream ends this trigger shows
        nothing more, and lines still waiting (rare) are left to the resumed task (``log_complete``
        false). Raises the stream's error."""
        entry = self._entry
        assert entry is not None
        try:
            async for batch in hook.iter_job_log_batches(
                self.job_id,
                namespace=self.namespace,
                cursor=self.log_cursor,
                stage_check_interval=self.poll_interval,  # a stream left open after the end: left soon
            ):
                self._alive()
                entry.add(batch.indexes, batch.texts)  # (copied: the batch is not kept)
                del batch  # not held while the next one is awaited (see iter_job_log_batches)
        finally:
            entry.close()  # from here on no line of this job is shown by this trigger
        self._log_complete = not entry.pending
        if self._book is not None:
            await self._book.settle(entry)

    def _show(self, texts: Sequence[str], end: int) -> None:
        """A display step's lines of this job, into the task log (the process's step runs it in this
        trigger's context, synchronously: between its two writes)."""
        self._say(self._reports.lines(texts))
        self.log_cursor = end

    def _say(self, shown: Iterable[tuple[int, str]]) -> None:
        """Job lines into the task log, as :meth:`ReportLog.lines` gives them (reports read, not shown raw;
        a ``@task.hf_job`` result line not at all: the task reads it at the end)."""
        write_lines(self.log, shown)

    async def _step(self, texts: Sequence[str], end: int) -> None:
        """:meth:`_show` from a coroutine (the steps themselves are the process's, see :meth:`_show`)."""
        self._show(texts, end)

    async def _poll(self, hook: HfJobsAsyncHook) -> JobInfo:
        failures = 0
        last_stage: JobStage | None = None
        while True:
            try:
                job = await hook.inspect_job(self.job_id, namespace=self.namespace)
            except HfJobsError as exc:
                failures += 1
                if _is_permanent(exc) or failures > self.max_consecutive_errors:
                    raise
                self.log.warning(
                    "Checking job %s failed (%s); %d/%d.",
                    self.job_id,
                    exc,
                    failures,
                    self.max_consecutive_errors,
                )
            else:
                failures = 0
                if job.is_terminal:
                    return job
                if job.stage is not last_stage:
                    self.log.info(
                        "Job %s is %s%s",
                        self.job_id,
                        job.stage.value,
                        f": {job.message}" if job.message else "",
                    )
                    last_stage = job.stage
            await asyncio.sleep(self.poll_interval)


async def _task_state_from_supervisor(ti: Any) -> str | None:
    """Airflow 3: the trigger runner's own async channel to its supervisor (a sync call blocks the loop)."""
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import GetTaskStates

    request = GetTaskStates(
        dag_id=ti.dag_id, map_index=ti.map_index, task_ids=[ti.task_id], run_ids=[ti.run_id]
    )
    async with asyncio.timeout(15):  # (not wait_for: on 3.11 it can swallow a cancellation)
        response = await task_runner.SUPERVISOR_COMMS.asend(request)
    states = getattr(response, "task_states", None) or {}
    key = ti.task_id if (ti.map_index or -1) < 0 else f"{ti.task_id}_{ti.map_index}"
    return states.get(ti.run_id, {}).get(key)


def _task_state_from_db(ti: Any) -> str | None:
    """Airflow 2: the triggerer reads the metadata DB (run in a thread: the query blocks)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        found = TaskInstance.get_task_instance(
            dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, map_index=ti.map_index, session=session
        )
        return None if found is None else found.state


def interrupted_by_ctrl_c() -> bool:
    """Is the current task the main task of an ``asyncio.run`` that Ctrl-C is interrupting? ``airflow dags
    test`` runs a trigger inline that way (Python's runner cancels its main task on the first SIGINT). A
    triggerer's triggers are tasks of their own, never its main task: a triggerer stopped by Ctrl-C leaves
    its jobs running for the next one."""
    handler = signal.getsignal(signal.SIGINT)
    runner = getattr(getattr(handler, "func", None), "__self__", None)
    main_task = (getattr(handler, "keywords", None) or {}).get("main_task")
    return (
        isinstance(runner, asyncio.Runner)
        and main_task is not None
        and main_task is asyncio.current_task()
        and getattr(runner, "_interrupt_count", 0) > 0
    )


def _is_permanent(error: HfJobsError) -> bool:
    """Errors that no retry mends: bad token, no access, no such job, a certificate that does not verify."""
    if isinstance(error, HfJobsTLSError):
        return True
    return isinstance(error, HfJobsAPIError) and error.status_code in (401, 403, 404)
