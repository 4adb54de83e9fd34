"""Cancelling a job the task owns, and making sure it ended.

A cancel answered "accepted" is not a job that stopped billing: the Hub (and the local server) stop it
asynchronously, and a cancel can be lost. So a cancel is verified: the job's stage is looked at first (a
job already over is reported as what it is, never as "cancelled"), the cancel is sent, then the job is
polled (bounded, :data:`CANCEL_CONFIRM_SECONDS`) until it is terminal. The outcome is one log line: "job X
CANCELED after 4 s", or a warning with the command that cancels it by hand.

The rules and messages live here once; :func:`cancel_and_confirm` (sync hook, on a worker) and
:func:`acancel_and_confirm` (async hook, in the triggerer) only do the I/O.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_hfjobs.exceptions import HfJobsError, HfJobsNotFoundError
from airflow_provider_hfjobs.jobs import DEFAULT_ENDPOINT, JobInfo

if TYPE_CHECKING:
    from airflow_provider_hfjobs.hooks.async_ import HfJobsAsyncHook
    from airflow_provider_hfjobs.hooks.sync import HfJobsHook

#: How long a cancel is followed until the job is terminal, before a loud warning says it may still run.
CANCEL_CONFIRM_SECONDS = 60.0
#: Seconds between two looks at a cancelled job's stage.
CONFIRM_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class CancelOutcome:
    """What became of a cancel: ``stage`` is the terminal stage seen (``None``: not seen terminal);
    ``sent`` whether a cancel request went out (not for a job already over)."""

    job_id: str
    stage: str | None
    sent: bool
    seconds: float
    message: str

    @property
    def confirmed(self) -> bool:
        return self.stage is not None


def manual_cancel_command(job_id: str, namespace: str | None, endpoint: str | None = None) -> str:
    """The ``hf`` CLI command that cancels the job by hand (with the endpoint, if not the Hub's)."""
    prefix = f"HF_ENDPOINT={endpoint} " if endpoint and endpoint.rstrip("/") != DEFAULT_ENDPOINT else ""
    suffix = f" --namespace {namespace}" if namespace else ""
    return f"{prefix}hf jobs cancel {job_id}{suffix}"


def already_over(job: JobInfo, reason: str) -> CancelOutcome:
    return CancelOutcome(
        job.id, job.stage.value, False, 0.0,
        f"Hugging Face job {job.id} had already ended {job.stage.value} ({reason}): nothing to cancel.",
    )  # fmt: skip


def gone(job_id: str, seconds: float, sent: bool, reason: str) -> CancelOutcome:
    """The job no longer exists (deleted meanwhile): it is not billed any more."""
    return CancelOutcome(
        job_id, "DELETED", sent, seconds,
        f"Hugging Face job {job_id} no longer exists ({reason}): it was deleted, nothing to cancel.",
    )  # fmt: skip


def confirmed(job: JobInfo, seconds: float, reason: str) -> CancelOutcome:
    verb = "CANCELED" if job.stage.value == "CANCELED" else f"ended {job.stage.value}"
    return CancelOutcome(
        job.id, job.stage.value, True, seconds,
        f"Cancelled Hugging Face job {job.id} ({reason}): {verb} after {seconds:.1f} s.",
    )  # fmt: skip


def unconfirmed(
    job_id: str,
    *,
    namespace: str | None,
    endpoint: str | None,
    reason: str,
    seconds: float,
    sent: bool,
    last: JobInfo | None = None,
    error: Exception | None = None,
) -> CancelOutcome:
    """The loud outcome: the job may still be running (and billed)."""
    if error is not None:
        what = (
            f"could not be cancelled ({error})"
            if not sent
            else f"was cancelled but not seen ending ({error})"
        )
    else:
        stage = last.stage.value if last is not None else "not terminal"
        what = f"was cancelled but is still {stage} after {seconds:.0f} s"
    return CancelOutcome(
        job_id, None, sent, seconds,
        f"Hugging Face job {job_id} {what} ({reason}); it may still be running and billed. Cancel it by hand: "
        f"{manual_cancel_command(job_id, namespace, endpoint)}",
    )  # fmt: skip


def is_interruption(exc: BaseException) -> bool:
    """The task is being stopped (Ctrl-C, SIGTERM, ``execution_timeout``), not failing: its job must not
    outlive it whatever retries remain."""
    return isinstance(exc, (KeyboardInterrupt, SystemExit)) or type(exc).__name__ in (
        "AirflowTaskTimeout",
        "AirflowTaskTerminated",
    )


def stop_reason(exc: BaseException) -> str:
    """Why a task stopped watching its job, for the cancel's log line (the type only: an exception's text
    may hold anything)."""
    name = type(exc).__name__
    if isinstance(exc, KeyboardInterrupt):
        return "the task was interrupted (Ctrl-C)"
    if name == "AirflowTaskTimeout":
        return "the task's execution_timeout passed"
    if name == "AirflowTaskTerminated" or isinstance(exc, SystemExit):
        return "the task was stopped"
    return f"the task stopped watching it on {name}"


def log_outcome(log: Any, outcome: CancelOutcome) -> None:
    (log.info if outcome.confirmed else log.warning)("%s", outcome.message)


def cancel_and_confirm(
    hook: HfJobsHook,
    job_id: str,
    *,
    namespace: str | None,
    reason: str,
    wait: float = CANCEL_CONFIRM_SECONDS,
    poll_interval: float = CONFIRM_POLL_SECONDS,
) -> CancelOutcome:
    """Cancel ``job_id`` with the sync hook unless it is over, then follow it until it is terminal."""
    began = time.monotonic()
    endpoint = _endpoint(hook)
    sent = False
    try:
        job = hook.inspect_job(job_id, namespace=namespace)
        if job.is_terminal:
            return already_over(job, reason)
        hook.cancel_job(job_id, namespace=namespace)
        sent = True
        job = hook.wait_for_job(job_id, namespace=namespace, timeout=wait, poll_interval=poll_interval)
    except HfJobsNotFoundError:
        return gone(job_id, time.monotonic() - began, sent, reason)
    except TimeoutError:
        last = _last_seen(hook, job_id, namespace)
        return unconfirmed(
            job_id, namespace=namespace, endpoint=endpoint, reason=reason, sent=sent,
            seconds=time.monotonic() - began, last=last,
        )  # fmt: skip
    except HfJobsError as exc:
        return unconfirmed(
            job_id, namespace=namespace, endpoint=endpoint, reason=reason, sent=sent,
            seconds=time.monotonic() - began, error=exc,
        )  # fmt: skip
    return confirmed(job, time.monotonic() - began, reason)


async def acancel_and_confirm(
    hook: HfJobsAsyncHook,
    job_id: str,
    *,
    namespace: str | None,
    reason: str,
    wait: float = CANCEL_CONFIRM_SECONDS,
    poll_interval: float = CONFIRM_POLL_SECONDS,
) -> CancelOutcome:
    """:func:`cancel_and_confirm` with the async hook (in the triggerer: never blocks the loop)."""
    began = time.monotonic()
    endpoint = None
    sent = False
    try:
        endpoint = (await hook.get_credentials()).endpoint
        job = await hook.inspect_job(job_id, namespace=namespace)
        if job.is_terminal:
            return already_over(job, reason)
        await hook.cancel_job(job_id, namespace=namespace)
        sent = True
        job = await hook.wait_for_job(job_id, namespace=namespace, timeout=wait, poll_interval=poll_interval)
    except HfJobsNotFoundError:
        return gone(job_id, time.monotonic() - began, sent, reason)
    except TimeoutError:
        last = None
        with contextlib.suppress(HfJobsError):
            last = await hook.inspect_job(job_id, namespace=namespace)
        return unconfirmed(
            job_id, namespace=namespace, endpoint=endpoint, reason=reason, sent=sent,
            seconds=time.monotonic() - began, last=last,
        )  # fmt: skip
    except HfJobsError as exc:
        return unconfirmed(
            job_id, namespace=namespace, endpoint=endpoint, reason=reason, sent=sent,
            seconds=time.monotonic() - began, error=exc,
        )  # fmt: skip
    return confirmed(job, time.monotonic() - began, reason)


def _endpoint(hook: HfJobsHook) -> str | None:
    try:
        return str(hook.endpoint)
    except Exception:  # the endpoint is only for the by-hand command
        return None


def _last_seen(hook: HfJobsHook, job_id: str, namespace: str | None) -> JobInfo | None:
    try:
        return hook.inspect_job(job_id, namespace=namespace)
    except HfJobsError:
        return None
