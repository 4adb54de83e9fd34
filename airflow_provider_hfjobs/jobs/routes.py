"""Each request of the Jobs API described once (route, method, body, how its 2xx answer is read), for
the sync and async hooks alike; with the create body, the list query, pagination and ``wait_for_job``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urljoin, urlsplit

from airflow_provider_hfjobs.exceptions import HfJobsAPIError, HfJobsInputError
from airflow_provider_hfjobs.jobs.errors import json_answer
from airflow_provider_hfjobs.jobs.models import TERMINAL_STAGES, HardwareInfo, JobInfo, JobStage, Volume
from airflow_provider_hfjobs.jobs.validation import (
    DEFAULT_FLAVOR,
    build_expose_payload,
    check_create_arguments,
    default_job_name,
    validate_job_id,
    validate_labels,
    validate_namespace,
)

#: Log marker the server sends first on every connection; never a line of the job's own output.
JOB_STARTED_MARKER = "===== Job started"


def build_job_spec(
    *,
    image: str,
    command: list[str],
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
    ssh: bool = False,
    network_group: str | None = None,
    network_aliases: Sequence[str] | None = None,
    resource_group_id: str | None = None,
) -> dict[str, Any]:
    """The ``POST /api/jobs/{namespace}`` body, field for field and in the same order as
    ``huggingface_hub._create_job_spec``.

    Validates everything first (:func:`check_create_arguments`), so that bad input fails with a message
    naming the field and the fix before any request is sent. Secret values never appear in these messages.
    """
    checked = check_create_arguments(
        image=image, command=command, env=env, secrets=secrets, flavor=flavor, timeout=timeout,
        attempts=attempts, name=name, labels=labels, volumes=volumes, expose=expose, expose_public=expose_public,
        ssh=ssh, network_group=network_group, network_aliases=network_aliases, resource_group_id=resource_group_id,
    )  # fmt: skip
    clean_labels = checked["labels", "name"]
    if "name" not in clean_labels:
        clean_labels["name"] = default_job_name(image, checked["command"])
    spec: dict[str, Any] = {
        "command": checked["command"],
        "arguments": [],
        "environment": checked["env"],
        "flavor": flavor or DEFAULT_FLAVOR,
    }
    if checked["secrets"]:
        spec["secrets"] = checked["secrets"]
    if checked["timeout"]:
        spec["timeoutSeconds"] = checked["timeout"]
    if checked["attempts"] is not None:
        spec["attempts"] = checked["attempts"]
    spec["labels"] = clean_labels
    if checked["volumes"]:
        spec["volumes"] = [volume.to_dict() for volume in checked["volumes"]]
    exposed = checked["expose", "expose_public"]
    if exposed["ports"]:
        spec["expose"] = exposed
    if ssh:
        spec["ssh"] = {"enabled": True}
    network = checked["network_group", "network_aliases"]
    if network is not None:
        spec["network"] = network
    if resource_group_id:
        spec["resourceGroupId"] = resource_group_id
    spec.update(checked["image"])
    return spec


# ------------------------------------------------------------------------------------------ list and pages
def list_jobs_params(
    status: str | JobStage | Iterable[str | JobStage] | None = None, labels: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """Query of ``GET /api/jobs/{ns}``: one ``stage=`` per stage and one ``label=k=v`` per label."""
    params: list[tuple[str, str]] = []
    if status is not None:
        stages = [status] if isinstance(status, (str, JobStage)) else list(status)
        for stage in stages:
            value = stage.value if isinstance(stage, JobStage) else str(stage).upper()
            if value not in JobStage.__members__:
                raise HfJobsInputError(
                    f"status {stage!r} is not a job stage: use one of {', '.join(JobStage.__members__)}."
                )
            params.append(("stage", value))
    for key, value in validate_labels(labels).items():
        params.append(("label", f"{key}={value}"))
    return params


_LINK_RE = re.compile(r"<([^>]+)>\s*;\s*rel=\"?next\"?")


def next_page_url(link_header: str | None, page_url: str | None = None) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header, if any, resolved against ``page_url``.

    A target on another origin (scheme, host, port) than ``page_url`` is refused with
    :class:`HfJobsAPIError`: following it would send the token there, and stopping quietly would return a
    partial list, which the create's duplicate check would trust."""
    if not link_header:
        return None
    match = _LINK_RE.search(link_header)
    if not match:
        return None
    target = match.group(1).strip()
    if page_url is None:
        return target
    try:
        target = urljoin(page_url, target)
    except ValueError:  # "http://[::1/x": an unclosed IPv6 host
        raise HfJobsAPIError(
            f"Could not list all jobs: the server's next page {target[:200]!r} is not a valid URL.",
            status_code=200,
        ) from None
    origin = _origin(page_url)
    if origin is None or _origin(target) != origin:
        raise HfJobsAPIError(
            f"Could not list all jobs: the server's next page is on {_shown_origin(target)}, not on the "
            f"endpoint's origin {_shown_origin(page_url)}; not followed, so that the token is not sent there.",
            status_code=200,
        )
    return target


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return None  # a malformed host or port: never the endpoint's origin
    return scheme, (parts.hostname or "").lower(), port


def _shown_origin(url: str) -> str:
    parts = urlsplit(url)
    return repr(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}")


def namespace_from_whoami(data: Mapping[str, Any]) -> str:
    name = data.get("name") if isinstance(data, Mapping) else None
    if not name:
        raise HfJobsAPIError(
            "whoami answered without a user name; set the namespace explicitly.", status_code=200
        )
    return str(name)


# ------------------------------------------------------------------------------------------------- routes
T = TypeVar("T")
#: Stands for the namespace in a route until the hook has resolved it (see :meth:`Route.in_namespace`).
NAMESPACE = "{namespace}"


@dataclass(frozen=True)
class Route:
    """Where a request goes and what it is for. Built and checked (every argument, every name) before any
    I/O; a route without a namespace gets the hook's with :meth:`in_namespace`, so that bad input fails
    before even the ``whoami`` that resolving it may take."""

    route: str
    what: str
    namespace: str | None = None
    job_id: str | None = None

    @property
    def path(self) -> str:
        if self.namespace is None and NAMESPACE in self.route:
            raise ValueError(f"{self.route}: the namespace is not resolved yet")
        return self.route.replace(NAMESPACE, quote(self.namespace or ""))

    @property
    def action(self) -> str:
        """What was attempted, as every error message about it says it."""
        return self.what.replace(NAMESPACE, repr(self.namespace))

    @property
    def needs_namespace(self) -> bool:
        return self.namespace is None and NAMESPACE in self.route

    def in_namespace(self: R, namespace: str) -> R:
        return replace(self, namespace=validate_namespace(namespace))


R = TypeVar("R", bound=Route)


@dataclass(frozen=True)
class ApiCall(Route, Generic[T]):
    """One request of the Jobs API, described once: the sync and async hooks only send it and hand a
    2xx answer to :meth:`result`.

    ``idempotent=False`` (create, rerun): a request whose outcome is unknown (a 5xx, a connection lost
    after sending) is not sent again blindly, since it may have been done; one that certainly was not (a
    refused connection, 408, 429) is retried."""

    method: str = "GET"
    parse: Callable[[int, bytes, str, str], T] | None = None
    body: Any = None
    idempotent: bool = True

    def result(self, status_code: int, content: bytes, endpoint: str) -> T:
        """The answer of a 2xx (its body read within :func:`body_limit`) as the route's result."""
        assert self.parse is not None
        return self.parse(status_code, content, endpoint.rstrip("/"), self.action)


@dataclass(frozen=True)
class StreamRoute(Route):
    """An event stream of a job (``/logs``, ``/metrics``): where, how long it may stay silent, and which
    answers are not errors but its end."""

    read_timeout: float = 0.0
    #: Statuses that end the stream quietly: ``/metrics`` answers 406 (formerly 500) once the job is over.
    ends_on: frozenset[int] = frozenset()


#: Read timeout of a followed log stream: four missed 30 s keep-alives, as ``huggingface_hub``.
FOLLOW_READ_TIMEOUT = 120.0
#: Read timeout of a metrics stream: ten missed one-second samples, as ``huggingface_hub``.
METRICS_READ_TIMEOUT = 10.0


def job_route(job_id: str | None = None, suffix: str | None = None, namespace: str | None = None) -> str:
    """``/api/jobs/{namespace}[/{job_id}[/{suffix}]]``, the names checked first (never a path trick)."""
    route = f"/api/jobs/{quote(validate_namespace(namespace)) if namespace else NAMESPACE}"
    if job_id is not None:
        route += f"/{validate_job_id(job_id)}"
    return f"{route}/{suffix}" if suffix else route


def _json(status_code: int, content: bytes, endpoint: str, action: str) -> Any:
    return json_answer(status_code, content, action=action)


def _job(status_code: int, content: bytes, endpoint: str, action: str) -> JobInfo:
    return JobInfo.from_api(json_answer(status_code, content, action=action), endpoint)


def _job_if_any(status_code: int, content: bytes, endpoint: str, action: str) -> JobInfo | None:
    try:
        return _job(status_code, content, endpoint, action)
    except HfJobsAPIError:
        return None  # done; the answer just is not a job (huggingface_hub ignores a cancel's body)


def _hardware(status_code: int, content: bytes, endpoint: str, action: str) -> list[HardwareInfo]:
    data = json_answer(status_code, content, action=action)
    if not isinstance(data, list):
        raise HfJobsAPIError(
            f"Could not {action}: the server answered a {type(data).__name__}, not a list of flavors.",
            status_code=status_code,
        )
    return [HardwareInfo.from_api(item) for item in data]


def _job_call(
    method: str, job_id: str, suffix: str | None, what: str, parse: Callable[[int, bytes, str, str], T],
    namespace: str | None, **kwargs: Any,
) -> ApiCall[T]:  # fmt: skip
    return ApiCall(
        job_route(validate_job_id(job_id), suffix, namespace), what.format(job_id=job_id),
        namespace=validate_namespace(namespace) if namespace else None, job_id=job_id, method=method, parse=parse,
        **kwargs,
    )  # fmt: skip


def whoami_call() -> ApiCall[Any]:
    """``GET /api/whoami-v2``: who the token belongs to (heavily rate-limited: ask once)."""
    return ApiCall("/api/whoami-v2", "check the token (whoami)", parse=_json)


def hardware_call() -> ApiCall[list[HardwareInfo]]:
    """``GET /api/jobs/hardware``: the flavors and their prices."""
    return ApiCall("/api/jobs/hardware", "list hardware", parse=_hardware)


def create_job_call(spec: Mapping[str, Any], namespace: str | None = None) -> ApiCall[JobInfo]:
    """``POST /api/jobs/{ns}`` with the body of :func:`build_job_spec`. Not idempotent: the sync hook
    looks a job up by its submission label before sending a create again (see ``HfJobsHook``)."""
    return ApiCall(
        job_route(namespace=namespace), f"create a job in namespace {NAMESPACE}", namespace=namespace or None,
        method="POST", parse=_job, body=spec, idempotent=False,
    )  # fmt: skip


def inspect_job_call(job_id: str, namespace: str | None = None) -> ApiCall[JobInfo]:
    """``GET /api/jobs/{ns}/{id}``."""
    return _job_call("GET", job_id, None, "inspect job {job_id}", _job, namespace)


def cancel_job_call(job_id: str, namespace: str | None = None) -> ApiCall[JobInfo | None]:
    """``POST /api/jobs/{ns}/{id}/cancel``, no body: the job, if the server sends it back."""
    return _job_call("POST", job_id, "cancel", "cancel job {job_id}", _job_if_any, namespace)


def rerun_job_call(job_id: str, namespace: str | None = None) -> ApiCall[JobInfo]:
    """``POST /api/jobs/{ns}/{id}/duplicate``, no body: a new job with the same spec (``rerun_job``).
    Not idempotent: each one that arrives starts a job."""
    return _job_call("POST", job_id, "duplicate", "rerun job {job_id}", _job, namespace, idempotent=False)


def update_job_labels_call(
    job_id: str, labels: Mapping[str, Any], namespace: str | None = None
) -> ApiCall[JobInfo]:
    """``PUT /api/jobs/{ns}/{id}/labels`` with ``{"labels": {...}}``: replaces all the job's labels."""
    if labels is None:
        raise HfJobsInputError(
            "labels is required: the job's new labels, e.g. {'team': 'ml'} ({} clears them)."
        )
    body = {"labels": validate_labels(labels)}
    return _job_call("PUT", job_id, "labels", "update the labels of job {job_id}", _job, namespace, body=body)


def update_job_expose_call(
    job_id: str,
    expose: Sequence[int] | None = None,
    expose_public: Sequence[int] | None = None,
    namespace: str | None = None,
) -> ApiCall[JobInfo]:
    """``PUT /api/jobs/{ns}/{id}/expose`` with ``{"ports", "portsPublic"}``: the whole new port
    configuration (neither list: every port closed)."""
    body = build_expose_payload(expose, expose_public)
    return _job_call(
        "PUT", job_id, "expose", "update the exposed ports of job {job_id}", _job, namespace, body=body
    )


def job_logs_route(job_id: str, namespace: str | None = None) -> StreamRoute:
    """``GET /api/jobs/{ns}/{id}/logs`` (optional ``?tail=N``): the whole log replayed, then live lines."""
    return StreamRoute(
        job_route(job_id, "logs", namespace), f"read the logs of job {job_id}",
        namespace=validate_namespace(namespace) if namespace else None, job_id=job_id,
        read_timeout=FOLLOW_READ_TIMEOUT,
    )  # fmt: skip


def job_metrics_route(job_id: str, namespace: str | None = None) -> StreamRoute:
    """``GET /api/jobs/{ns}/{id}/metrics``: one sample a second, no history, never ending by itself; 406
    (formerly 500) once the job is over, which ``huggingface_hub`` takes as the end."""
    return StreamRoute(
        job_route(job_id, "metrics", namespace), f"read the metrics of job {job_id}",
        namespace=validate_namespace(namespace) if namespace else None, job_id=job_id,
        read_timeout=METRICS_READ_TIMEOUT, ends_on=frozenset({406, 500}),
    )  # fmt: skip


class JobWait:
    """``wait_for_job``'s rules, free of I/O (``huggingface_hub`` 2.4): poll each job in turn until its
    stage is one of ``stages`` or terminal (a failed job does not raise), under one deadline for all;
    one id gives one job, a list gives a list in the same order."""

    def __init__(
        self,
        job_id: str | Sequence[str],
        *,
        timeout: float | None,
        poll_interval: float,
        stages: Iterable[str | JobStage] | str | JobStage | None,
        now: float,
    ) -> None:
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, (int, float))
            or poll_interval <= 0
        ):
            raise HfJobsInputError(f"poll_interval must be positive seconds; got {poll_interval!r}.")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            raise HfJobsInputError(
                f"timeout must be seconds (0 or more) or None to wait forever; got {timeout!r}."
            )
        self.single = isinstance(job_id, str)
        if not self.single and not isinstance(job_id, (list, tuple)):
            raise HfJobsInputError(
                f"job_id must be a job id or a list of job ids; got {type(job_id).__name__}."
            )
        self.job_ids = [job_id] if isinstance(job_id, str) else list(job_id)
        for one in self.job_ids:
            validate_job_id(one)
        self.targets = set(TERMINAL_STAGES) | set(_stages(stages, "stages"))
        self.timeout = timeout
        self.poll_interval = float(poll_interval)
        self.deadline = None if timeout is None else now + timeout

    def reached(self, job: JobInfo) -> bool:
        return job.stage in self.targets

    def pause(self, job: JobInfo, now: float) -> float:
        """Seconds to sleep before polling ``job`` again; ``TimeoutError`` once the deadline has passed."""
        if self.deadline is None:
            return self.poll_interval
        remaining = self.deadline - now
        if remaining <= 0:
            raise TimeoutError(f"job {job.id} is still {job.stage.value} after {self.timeout} s: {job.url}")
        return min(self.poll_interval, remaining)

    def result(self, jobs: list[JobInfo]) -> JobInfo | list[JobInfo]:
        return jobs[0] if self.single else jobs


def _stages(stages: Iterable[str | JobStage] | str | JobStage | None, field_name: str) -> list[JobStage]:
    """Stages named by the caller, each checked: ``JobStage`` members or their names in any case."""
    if stages is None:
        return []
    listed = [stages] if isinstance(stages, (str, JobStage)) else list(stages)
    parsed = []
    for position, stage in enumerate(listed):
        value = stage.value if isinstance(stage, JobStage) else str(stage).upper()
        if value not in JobStage.__members__:
            raise HfJobsInputError(
                f"{field_name}[{position}] {stage!r} is not a job stage: use one of {', '.join(JobStage.__members__)}."
            )
        parsed.append(JobStage(value))
    return parsed
