"""Task-side helpers shared by the operators and the sensor: what a task makes of a trigger's event, the
failure message of a job that did not complete (and what to do of a timeout), the deferral timeout, and the operator arguments' own rules
(the poll interval, the flavors this Airflow accepts besides huggingface_hub's list)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import conf

from airflow_provider_hfjobs.exceptions import HfJobsError, HfJobsInputError
from airflow_provider_hfjobs.jobs import parse_timeout
from airflow_provider_hfjobs.reports import is_report_line
from airflow_provider_hfjobs.results import visible_lines
from airflow_provider_hfjobs.triggers.hfjobs import EVENT_STATUSES


def validate_event(event: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A resumed task trusts nothing: a missing or unknown event fails it, never succeeds it."""
    if not isinstance(event, Mapping) or event.get("status") not in EVENT_STATUSES or not event.get("job_id"):
        raise HfJobsError(f"The trigger sent no valid event ({event!r:.200}); the job's outcome is unknown.")
    return event


#: The timeout the Hub gives a job created without one (``timeoutSeconds`` absent: 30 minutes).
HUB_DEFAULT_TIMEOUT_SECONDS = 30 * 60
#: ``status.message`` of a job the Hub stopped at its timeout (stage ``ERROR``).
TIMEOUT_MESSAGE = "job timeout"


def _duration(seconds: int) -> str:
    """Seconds as the ``timeout=`` argument takes them: ``"2h"``, ``"45m"``, ``"90s"``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def timeout_advice(
    message: str | None, *, job_timeout: int | None = None, given: Any = None, own: bool = True
) -> str | None:
    """What to say of a job the Hub stopped at its timeout (``None`` for any other ending): the timeout
    and how to raise it. ``job_timeout``: the job's own, in seconds, when the API reported it; ``given``:
    the operator's ``timeout=`` argument; ``own``: the task submitted the job (a sensor's was someone's)."""
    if not message or message.strip().rstrip(".").lower() != TIMEOUT_MESSAGE:
        return None
    if job_timeout is None and given:
        with contextlib.suppress(HfJobsInputError):
            job_timeout = parse_timeout(given)
    if own and not given:
        seconds = job_timeout or HUB_DEFAULT_TIMEOUT_SECONDS
        return (
            f"It reached the Hub's default timeout of {_duration(seconds)}, as no timeout= was given: pass the "
            f"operator a longer one, e.g. timeout='{_duration(2 * seconds)}'."
        )
    if own:
        limit = f"its timeout of {_duration(job_timeout)}" if job_timeout is not None else "its timeout"
        longer = f", e.g. timeout='{_duration(2 * job_timeout)}'" if job_timeout is not None else ""
        return (
            f"It reached {limit} (timeout={given!r}): raise it with the operator's timeout= argument{longer}."
        )
    limit = (
        _duration(job_timeout)
        if job_timeout is not None
        else f"the Hub's default of {_duration(HUB_DEFAULT_TIMEOUT_SECONDS)} unless it was given one"
    )
    return (
        f"It reached its timeout ({limit}), set by whoever submits the job: HfJobRunOperator's timeout= "
        "argument, or hf jobs run --timeout."
    )


def failure_message(
    job_id: str,
    stage: str | None,
    message: str | None,
    url: str,
    log_lines: Sequence[str],
    *,
    advice: str | None = None,
) -> str:
    """The failure of a job that did not complete: its stage, the server's message, ``advice`` (say,
    :func:`timeout_advice`), the URL and the last log lines."""
    head = f"Hugging Face job {job_id} ended {stage or 'unwatched'}"
    head += f": {message.rstrip('. ')}" if message else ""
    text = f"{head}. {advice + ' ' if advice else ''}{url}"
    # A @task.hf_job function's result lines and report lines (read, not shown raw) are not for people.
    log_lines = [line for line in visible_lines(log_lines) if not is_report_line(line)]
    if log_lines:
        text += f"\nLast {len(log_lines)} log lines:\n" + "\n".join(f"  {line}" for line in log_lines)
    return text


def defer_timeout(deadline: float | None, poll_interval: float) -> timedelta | None:
    """Airflow's own deferral timeout, padded so the trigger's ``timeout`` event (which cancels the job)
    arrives first: Airflow's timeout would fail the task and leave the job running."""
    if deadline is None:
        return None
    return timedelta(seconds=max(0.0, deadline - time.time()) + max(60.0, 2 * poll_interval))


def extra_flavors() -> list[str]:
    """``[hfjobs] extra_flavors``: flavors newer than this provider, accepted in a DAG's literal ``flavor``."""
    names = conf.get("hfjobs", "extra_flavors", fallback="") or ""
    return [name.strip() for name in names.split(",") if name.strip()]


def check_poll_interval(poll_interval: Any) -> float:
    """The operator's own rule (the hook's ``wait_for_job`` has its own): positive seconds, as a float."""
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)) or poll_interval <= 0:
        raise HfJobsInputError(f"poll_interval must be a positive number of seconds; got {poll_interval!r}.")
    return float(poll_interval)
