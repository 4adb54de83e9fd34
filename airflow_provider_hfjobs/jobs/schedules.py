"""Scheduled jobs: the schedule, the create body, the routes, and what only a new scheduled job can
change (the API never updates a scheduled job's spec).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from airflow_provider_hfjobs.exceptions import (
    HfJobsAPIError,
    HfJobsConcurrencyError,
    HfJobsError,
    HfJobsInputError,
)
from airflow_provider_hfjobs.jobs.errors import json_answer
from airflow_provider_hfjobs.jobs.models import JobInfo, JobSpec, ScheduledJobInfo, Volume
from airflow_provider_hfjobs.jobs.routes import NAMESPACE, ApiCall, T, _job, build_job_spec
from airflow_provider_hfjobs.jobs.uv import (
    DEFAULT_UV_IMAGE,
    _validate_script_args,
    check_uv_env,
    classify_uv_script,
    default_uv_job_name,
    uv_job_command,
)
from airflow_provider_hfjobs.jobs.validation import (
    _JOB_ID_RE,
    validate_env,
    validate_labels,
    validate_namespace,
)

#: The schedule aliases ``huggingface_hub`` documents, and the cron expression each stands for.
SCHEDULE_ALIASES = {
    "@annually": "0 0 1 1 *",
    "@yearly": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def validate_schedule(schedule: str) -> str:
    """A scheduled job's ``schedule``: one of :data:`SCHEDULE_ALIASES` or a 5-field cron expression (minute,
    hour, day of month, month, day of week), checked before any request."""
    aliases = ", ".join(SCHEDULE_ALIASES)
    if not isinstance(schedule, str) or not schedule.strip():
        raise HfJobsInputError(
            f"schedule must be a cron expression such as '*/5 * * * *' or one of {aliases}; got {schedule!r}."
        )
    schedule = schedule.strip()
    if schedule.startswith("@"):
        if schedule not in SCHEDULE_ALIASES:
            close = difflib.get_close_matches(schedule, SCHEDULE_ALIASES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise HfJobsInputError(f"schedule {schedule!r} is not one of {aliases}.{hint}")
        return schedule
    from croniter import croniter  # installed with Airflow; only needed here

    fields = schedule.split()
    if len(fields) != 5 or not croniter.is_valid(schedule):
        raise HfJobsInputError(
            f"schedule {schedule!r} is not a cron expression of 5 fields (minute hour day-of-month month "
            f"day-of-week), e.g. '0 9 * * 1' for 9:00 every Monday or '*/5 * * * *'; or use one of {aliases}."
        )
    return schedule


def next_schedule_time(schedule: str, after: datetime) -> datetime:
    """The first moment strictly after ``after`` (UTC) that ``schedule`` names."""
    from croniter import croniter

    expression = SCHEDULE_ALIASES.get(schedule, schedule)
    return croniter(expression, after.astimezone(UTC)).get_next(datetime)


_SCHEDULED_JOB_ID_RE = _JOB_ID_RE


def validate_scheduled_job_id(scheduled_job_id: str) -> str:
    """A scheduled job's id (24 hex characters on the Hub), never a path trick."""
    if not isinstance(scheduled_job_id, str) or not _SCHEDULED_JOB_ID_RE.match(scheduled_job_id):
        raise HfJobsInputError(
            f"scheduled_job_id {scheduled_job_id!r} is not a scheduled job id (24 hex characters, e.g. "
            "6abb8dc9c617607c354d45f4)."
        )
    return scheduled_job_id


def _validate_optional_bool(value: bool | None, field_name: str, meaning: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise HfJobsInputError(f"{field_name} must be True, False or None ({meaning}); got {value!r}.")
    return value


def build_scheduled_job_spec(
    *,
    image: str,
    command: list[str],
    schedule: str,
    suspend: bool | None = None,
    concurrency: bool | None = None,
    env: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    flavor: str | None = None,
    timeout: int | float | str | None = None,
    attempts: int | None = None,
    name: str | None = None,
    labels: Mapping[str, Any] | None = None,
    volumes: Sequence[Volume | Mapping[str, Any]] | None = None,
    expose: Sequence[int] | None = None,
    expose_public: Sequence[int] | None = None,
    resource_group_id: str | None = None,
) -> dict[str, Any]:
    """The ``POST /api/scheduled-jobs/{namespace}`` body, exactly as ``huggingface_hub``'s
    ``create_scheduled_job`` builds it: ``{"jobSpec": <the create body of build_job_spec, without ssh and
    network, which a scheduled job cannot have>, "schedule", "concurrency"?, "suspend"?}`` (the job name
    defaults as for ``run_job``). Everything is validated first, the schedule included."""
    checked_schedule = validate_schedule(schedule)
    _validate_optional_bool(suspend, "suspend", "True creates the schedule paused")
    _validate_optional_bool(concurrency, "concurrency", "True lets runs overlap")
    body: dict[str, Any] = {
        "jobSpec": build_job_spec(
            image=image, command=command, env=env, secrets=secrets, flavor=flavor, timeout=timeout,
            attempts=attempts, name=name, labels=labels, volumes=volumes, expose=expose,
            expose_public=expose_public, resource_group_id=resource_group_id,
        ),
        "schedule": checked_schedule,
    }  # fmt: skip
    if concurrency is not None:
        body["concurrency"] = concurrency
    if suspend is not None:
        body["suspend"] = suspend
    return body


def _with_extra_env(env: Mapping[str, Any] | None, extra: Mapping[str, str]) -> Mapping[str, Any] | None:
    if not extra:
        return env
    return {**validate_env(env), **extra}


def build_scheduled_uv_job_spec(
    script: str,
    *,
    schedule: str,
    script_args: list[str] | None = None,
    suspend: bool | None = None,
    concurrency: bool | None = None,
    dependencies: list[str] | None = None,
    python: str | None = None,
    image: str | None = None,
    env: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    flavor: str | None = None,
    timeout: int | float | str | None = None,
    attempts: int | None = None,
    name: str | None = None,
    labels: Mapping[str, Any] | None = None,
    volumes: Sequence[Volume | Mapping[str, Any]] | None = None,
    expose: Sequence[int] | None = None,
    expose_public: Sequence[int] | None = None,
    resource_group_id: str | None = None,
    is_file: Callable[[str], bool] | None = None,
    read_file: Callable[[str], bytes] | None = None,
) -> dict[str, Any]:
    """The body of ``huggingface_hub``'s ``create_scheduled_uv_job``: the uv image by default, the name
    from the script, the command as ``run_uv_job``'s (a URL or a command: ``uv run ...`` exactly as
    there; a file or inline source travels in the spec, see :func:`build_uv_command`). Free of I/O:
    ``is_file``/``read_file`` are the caller's look at its disk (without them no script is a file)."""
    kind = classify_uv_script(script, is_file=is_file or (lambda _: False))
    if name is None and not (isinstance(labels, Mapping) and "name" in labels):
        name = default_uv_job_name(script, _validate_script_args(script_args))
    command, extra_env = uv_job_command(
        script, kind, script_args=script_args, dependencies=dependencies, python=python, read_file=read_file
    )
    check_uv_env(env, kind)
    return build_scheduled_job_spec(
        image=image or DEFAULT_UV_IMAGE, command=command, schedule=schedule, suspend=suspend,
        concurrency=concurrency, env=_with_extra_env(env, extra_env), secrets=secrets, flavor=flavor,
        timeout=timeout, attempts=attempts, name=name, labels=labels, volumes=volumes, expose=expose,
        expose_public=expose_public, resource_group_id=resource_group_id,
    )  # fmt: skip


def scheduled_job_route(
    scheduled_job_id: str | None = None, suffix: str | None = None, namespace: str | None = None
) -> str:
    """``/api/scheduled-jobs/{namespace}[/{id}[/{suffix}]]``, the names checked first."""
    route = f"/api/scheduled-jobs/{quote(validate_namespace(namespace)) if namespace else NAMESPACE}"
    if scheduled_job_id is not None:
        route += f"/{validate_scheduled_job_id(scheduled_job_id)}"
    return f"{route}/{suffix}" if suffix else route


def _scheduled_job(status_code: int, content: bytes, endpoint: str, action: str) -> ScheduledJobInfo:
    return ScheduledJobInfo.from_api(json_answer(status_code, content, action=action))


def _ignored(status_code: int, content: bytes, endpoint: str, action: str) -> None:
    return None  # done; huggingface_hub reads nothing of the answer either


def _scheduled_call(
    method: str, scheduled_job_id: str, suffix: str | None, what: str, parse: Callable[[int, bytes, str, str], T],
    namespace: str | None, **kwargs: Any,
) -> ApiCall[T]:  # fmt: skip
    validate_scheduled_job_id(scheduled_job_id)  # a missing id (None) too: never the list route
    return ApiCall(
        scheduled_job_route(scheduled_job_id, suffix, namespace), what.format(id=scheduled_job_id),
        namespace=validate_namespace(namespace) if namespace else None, job_id=scheduled_job_id, method=method,
        parse=parse, **kwargs,
    )  # fmt: skip


def create_scheduled_job_call(
    body: Mapping[str, Any], namespace: str | None = None
) -> ApiCall[ScheduledJobInfo]:
    """``POST /api/scheduled-jobs/{ns}`` with the body of :func:`build_scheduled_job_spec`. Not
    idempotent: each create that arrives makes a schedule, so one whose outcome is unknown is not re-sent."""
    return ApiCall(
        scheduled_job_route(namespace=namespace), f"create a scheduled job in namespace {NAMESPACE}",
        namespace=namespace or None, method="POST", parse=_scheduled_job, body=body, idempotent=False,
    )  # fmt: skip


def list_scheduled_jobs_call(
    labels: Mapping[str, str] | None = None, namespace: str | None = None
) -> ApiCall[list[ScheduledJobInfo]]:
    """``GET /api/scheduled-jobs/{ns}``: the server filters on one label only, so, as
    ``huggingface_hub``, the first label goes in the query (``?label=k=v``) and the others are checked
    here, on the answer."""
    wanted = validate_labels(labels)
    route = scheduled_job_route(namespace=namespace)
    if wanted:
        key, value = next(iter(wanted.items()))
        route += "?" + urlencode([("label", f"{key}={value}")])

    def parse(status_code: int, content: bytes, endpoint: str, action: str) -> list[ScheduledJobInfo]:
        data = json_answer(status_code, content, action=action)
        if not isinstance(data, list):
            raise HfJobsAPIError(
                f"Could not {action}: the server answered a {type(data).__name__}, not a list of scheduled jobs.",
                status_code=status_code,
            )
        found = [ScheduledJobInfo.from_api(item) for item in data]
        return [job for job in found if all(job.job_spec.labels.get(k) == v for k, v in wanted.items())]

    return ApiCall(
        route, f"list scheduled jobs in namespace {NAMESPACE}", namespace=namespace or None, parse=parse
    )


def inspect_scheduled_job_call(
    scheduled_job_id: str, namespace: str | None = None
) -> ApiCall[ScheduledJobInfo]:
    """``GET /api/scheduled-jobs/{ns}/{id}``."""
    return _scheduled_call(
        "GET", scheduled_job_id, None, "inspect scheduled job {id}", _scheduled_job, namespace
    )


def delete_scheduled_job_call(scheduled_job_id: str, namespace: str | None = None) -> ApiCall[None]:
    """``DELETE /api/scheduled-jobs/{ns}/{id}`` (the answer is not read, as in ``huggingface_hub``)."""
    return _scheduled_call("DELETE", scheduled_job_id, None, "delete scheduled job {id}", _ignored, namespace)


def suspend_scheduled_job_call(scheduled_job_id: str, namespace: str | None = None) -> ApiCall[None]:
    """``POST /api/scheduled-jobs/{ns}/{id}/suspend``, no body: no more runs until resumed."""
    return _scheduled_call(
        "POST", scheduled_job_id, "suspend", "suspend scheduled job {id}", _ignored, namespace
    )


def resume_scheduled_job_call(scheduled_job_id: str, namespace: str | None = None) -> ApiCall[None]:
    """``POST /api/scheduled-jobs/{ns}/{id}/resume``, no body."""
    return _scheduled_call(
        "POST", scheduled_job_id, "resume", "resume scheduled job {id}", _ignored, namespace
    )


def update_scheduled_job_schedule_call(
    scheduled_job_id: str, schedule: str, namespace: str | None = None
) -> ApiCall[ScheduledJobInfo]:
    """``POST /api/scheduled-jobs/{ns}/{id}/schedule`` with ``{"schedule": ...}`` (checked first)."""
    body = {"schedule": validate_schedule(schedule)}
    return _scheduled_call(
        "POST", scheduled_job_id, "schedule", "update the schedule of scheduled job {id}", _scheduled_job,
        namespace, body=body,
    )  # fmt: skip


def trigger_scheduled_job_call(scheduled_job_id: str, namespace: str | None = None) -> ApiCall[JobInfo]:
    """``POST /api/scheduled-jobs/{ns}/{id}/run``, no body: the job of the run it starts. Not idempotent:
    each one that arrives starts a run. 409: a run is active and the scheduled job disallows concurrency
    (see :func:`trigger_error`)."""
    return _scheduled_call(
        "POST", scheduled_job_id, "run", "trigger scheduled job {id}", _job, namespace, idempotent=False
    )


def update_scheduled_job_labels_call(
    scheduled_job_id: str, labels: Mapping[str, Any], namespace: str | None = None
) -> ApiCall[ScheduledJobInfo]:
    """``PUT /api/scheduled-jobs/{ns}/{id}/labels`` with ``{"labels": {...}}``: replaces all its labels."""
    if labels is None:
        raise HfJobsInputError(
            "labels is required: the scheduled job's new labels, e.g. {'team': 'ml'} ({} clears them)."
        )
    body = {"labels": validate_labels(labels)}
    return _scheduled_call(
        "PUT", scheduled_job_id, "labels", "update the labels of scheduled job {id}", _scheduled_job, namespace,
        body=body,
    )  # fmt: skip


def trigger_error(error: HfJobsError, scheduled_job_id: str) -> HfJobsError:
    """The error of a trigger, said plainly: a 409 is :class:`HfJobsConcurrencyError` (a run is still
    active and the scheduled job does not allow concurrent runs); anything else as it was."""
    if not isinstance(error, HfJobsAPIError) or error.status_code != 409:
        return error
    detail = f" Server said: {error.server_message}." if error.server_message else ""
    return HfJobsConcurrencyError(
        f"Could not trigger scheduled job {scheduled_job_id}: a run of it is still active and it does not allow "
        f"concurrent runs (concurrency is off; HTTP 409). Wait for that run to finish, or create the scheduled "
        f"job with concurrency=True.{detail}",
        status_code=409, server_message=error.server_message, request_id=error.request_id,
    )  # fmt: skip


def _attempts_of(spec: JobSpec) -> int:
    if spec.attempts is not None:
        return spec.attempts
    return spec.retry + 1 if spec.retry is not None else 1


def scheduled_spec_changes(desired: Mapping[str, Any], current: JobSpec) -> list[str]:
    """The fields of ``current`` (a scheduled job's spec, as served) that differ from ``desired`` (the
    ``jobSpec`` of a create body): what only a new scheduled job can change, since the API updates the
    schedule, labels and suspension of one but never its spec.

    Labels are left out (they have their own update); secrets compare by name (values are never served);
    a field the create leaves to the server (no timeout given) is not compared, and empty equals absent."""
    wanted = JobSpec._from_mapping(desired)
    changed = []
    for name in ("image", "command", "arguments", "environment", "secret_names", "flavor", "timeout",
                 "volumes", "expose", "expose_public", "resource_group_id"):  # fmt: skip
        want, have = getattr(wanted, name), getattr(current, name)
        if name == "timeout" and want is None:
            continue
        if name == "secret_names":
            want, have = sorted(want), sorted(have)
        if (want or None) != (have or None):
            changed.append(name)
    if _attempts_of(wanted) != _attempts_of(current):
        changed.append("attempts")
    return changed
