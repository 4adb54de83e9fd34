"""Task-side helpers shared by the operators and the sensor: what a task makes of a trigger's event, the
failure message of a job that did not complete, the deferral timeout, and the operator arguments' own rules
(the poll interval, the flavors this Airflow accepts besides huggingface_hub's list)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import conf

from airflow_provider_hfjobs.exceptions import HfJobsError, HfJobsInputError
from airflow_provider_hfjobs.results import visible_lines
from airflow_provider_hfjobs.triggers.hfjobs import EVENT_STATUSES


def validate_event(event: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A resumed task trusts nothing: a missing or unknown event fails it, never succeeds it."""
    if not isinstance(event, Mapping) or event.get("status") not in EVENT_STATUSES or not event.get("job_id"):
        raise HfJobsError(f"The trigger sent no valid event ({event!r:.200}); the job's outcome is unknown.")
    return event


def failure_message(
    job_id: str, stage: str | None, message: str | None, url: str, log_lines: Sequence[str]
) -> str:
    head = f"Hugging Face job {job_id} ended {stage or 'unwatched'}"
    head += f": {message.rstrip('. ')}" if message else ""
    text = f"{head}. {url}"
    log_lines = visible_lines(log_lines)  # a @task.hf_job function's result lines are not for people
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
