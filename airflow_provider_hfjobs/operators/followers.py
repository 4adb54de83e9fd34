"""What runs beside a task that follows its job on a worker: daemon threads, each with a hook of its own (a
requests session is not shared across threads).

- :class:`MetricsFollower` samples the job's metrics stream (``log_metrics``, and the idle-GPU guard);
- :class:`GuardWatchdog` enforces the job's guardrails (:mod:`airflow_provider_hfjobs.guardrails`): it
  looks at the job's stage, billed time and metrics while the task reads the log, and when a guard fires it
  cancels the job and verifies the cancel. The task's log loop then ends with the job, and the task fails
  with the guard's reason (or resubmits on the next flavor).

The rules themselves are in :mod:`airflow_provider_hfjobs.guardrails`, shared with the trigger.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from airflow_provider_hfjobs.cancellation import CancelOutcome, cancel_and_confirm, log_outcome
from airflow_provider_hfjobs.exceptions import HfJobsError
from airflow_provider_hfjobs.guardrails import Guardrails, GuardStop, GuardWatch
from airflow_provider_hfjobs.jobs import JobInfo
from airflow_provider_hfjobs.metrics import MetricsAccumulator

#: Seconds the task waits, once its job is over, for a follower thread to let go of its stream. The
#: summary is taken then either way; a thread still blocked in a read ends with it (a daemon, bounded by
#: the stream's read timeout).
METRICS_STOP_WAIT = 2.0
#: The longest a guard watchdog sleeps between two looks at the job (a guard due sooner wakes it sooner).
GUARD_MAX_PAUSE = 10.0


class MetricsFollower:
    """Samples a job's metrics stream on a daemon thread while the worker follows its log (sync mode).

    Informational only: whatever the stream does (an error, silence, a 406 at once) the task goes on, and
    the summary is whatever arrived. ``on_sample`` also gets each sample (the idle-GPU guard)."""

    def __init__(
        self,
        hook: Any,
        job_id: str,
        namespace: str | None,
        log: Any,
        on_sample: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.hook, self.job_id, self.namespace, self.log = hook, job_id, namespace, log
        self.on_sample = on_sample
        self.accumulator = MetricsAccumulator()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hfjobs-metrics-{job_id}", daemon=True)

    def start(self) -> MetricsFollower:
        self._thread.start()
        return self

    def _run(self) -> None:
        samples = None
        try:
            samples = self.hook.fetch_job_metrics(self.job_id, namespace=self.namespace, follow=True)
            for sample in samples:
                if self._stopped.is_set():
                    break
                with self._lock:
                    self.accumulator.add(sample)
                if self.on_sample is not None:
                    self.on_sample(sample)
        except Exception as exc:  # never the task's failure: the summary covers what came before
            self.log.info(
                "Stopped reading the metrics of job %s (%s: %s).", self.job_id, type(exc).__name__, exc
            )
        finally:
            with contextlib.suppress(Exception):
                if samples is not None and hasattr(samples, "close"):
                    samples.close()  # the generator's response, and so its connection, is closed now
                self.hook.close()

    def stop(self, wait: float | None = None) -> dict[str, Any]:
        """The summary so far; waits at most ``wait`` seconds for the thread (it is not needed for the
        summary, only tidier)."""
        self._stopped.set()
        self._thread.join(METRICS_STOP_WAIT if wait is None else wait)
        with self._lock:
            return self.accumulator.summary()


class GuardWatchdog:
    """Enforces one job's guardrails on a daemon thread while the task follows the job's log.

    It looks at the job (one inspect) as often as the next guard could fire, at most every
    ``poll_interval`` seconds; the task tells it of each log batch (:meth:`life`) and the metrics follower
    of each sample (:meth:`sample`). A guard that fires is logged in one line, then the job is cancelled
    and the cancel verified; :attr:`stopped` and :attr:`cancel` say what happened."""

    def __init__(
        self,
        hook: Any,
        job: JobInfo,
        namespace: str | None,
        guardrails: Guardrails,
        log: Any,
        *,
        poll_interval: float,
        flavors: Sequence[str] = (),
        price_per_hour_usd: float | None = None,
    ) -> None:
        self.hook, self.job_id, self.namespace, self.log = hook, job.id, namespace, log
        self.poll_interval = float(poll_interval)
        self.price = price_per_hour_usd
        self.watch = GuardWatch(guardrails, job_id=job.id, flavor=job.flavor, flavors=flavors)
        self.watch.observe_job(job, time.monotonic())
        self.stopped: GuardStop | None = None
        self.cancel: CancelOutcome | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hfjobs-guard-{job.id}", daemon=True)

    def start(self) -> GuardWatchdog:
        self._thread.start()
        return self

    def life(self) -> None:
        with self._lock:
            self.watch.observe_life(time.monotonic())

    def sample(self, sample: dict[str, Any]) -> None:
        with self._lock:
            self.watch.observe_metrics(sample, time.monotonic())

    def _run(self) -> None:
        try:
            while not self._done.is_set():
                try:
                    job: JobInfo | None = self.hook.inspect_job(self.job_id, namespace=self.namespace)
                except HfJobsError as exc:  # the task's own wait sees a lasting failure; guards wait a turn
                    self.log.info("Guardrails could not look at job %s (%s).", self.job_id, exc)
                    job = None
                now = time.monotonic()
                with self._lock:
                    if job is not None:
                        self.watch.observe_job(job, now)
                        if job.is_terminal:
                            return
                    billed = job.billed_seconds if job is not None else None
                    stop = self.watch.check(now, price_per_hour_usd=self.price, billed_seconds=billed)
                    due = self.watch.next_check_in(now, price_per_hour_usd=self.price)
                if stop is not None:
                    self._enforce(stop)
                    return
                pause = self.poll_interval if due is None else min(self.poll_interval, due)
                self._done.wait(max(0.05, min(pause, GUARD_MAX_PAUSE)))
        except Exception as exc:  # a bug here must not hide the job: the task's own wait goes on
            self.log.warning(
                "Guardrails of job %s stopped working (%s: %s).", self.job_id, type(exc).__name__, exc
            )
        finally:
            with contextlib.suppress(Exception):
                self.hook.close()

    def _enforce(self, stop: GuardStop) -> None:
        self.log.warning("%s", stop.message)
        self.stopped = stop
        self.cancel = cancel_and_confirm(self.hook, self.job_id, namespace=self.namespace, reason=stop.guard)
        log_outcome(self.log, self.cancel)

    def stop(self, wait: float | None = None) -> None:
        """Stop looking (the job is over); a cancel under way is let finish (it is bounded)."""
        self._done.set()
        if self.stopped is not None:
            self._thread.join()  # the verified cancel decides what the task does next
        else:
            self._thread.join(METRICS_STOP_WAIT if wait is None else wait)
