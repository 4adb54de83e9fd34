"""What the Jobs API answers, read into dataclasses: stages, timestamps, jobs, volumes, hardware and
scheduled jobs. A malformed answer is one :class:`~airflow_provider_hfjobs.exceptions.HfJobsAPIError`;
informational fields of an unexpected shape are left out, never making a running job unreadable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from airflow_provider_hfjobs.exceptions import HfJobsAPIError

DEFAULT_ENDPOINT = "https://huggingface.co"


_TIMESTAMP_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$"
)


class JobStage(StrEnum):
    """Stage of a job (``status.stage``). Only ``COMPLETED`` is success; four stages are terminal."""

    SCHEDULING = "SCHEDULING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    CANCELED = "CANCELED"
    DELETED = "DELETED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STAGES

    @property
    def is_success(self) -> bool:
        return self is JobStage.COMPLETED

    @classmethod
    def parse(cls, value: str | JobStage) -> JobStage:
        """Parse a stage; an unknown one (the JS types list Spaces leftovers such as ``UPDATING``) counts
        as still running, never as finished, so a job is not abandoned on a schema drift."""
        try:
            return cls(str(value.value if isinstance(value, JobStage) else value).upper())
        except ValueError:
            return cls.RUNNING


TERMINAL_STAGES = frozenset({JobStage.COMPLETED, JobStage.ERROR, JobStage.CANCELED, JobStage.DELETED})


# --------------------------------------------------------------------------------------------------- time
def parse_timestamp(value: str | None) -> datetime | None:
    """Parse the API's ``2026-11-24T06:49:34.580Z`` (any fraction length, or none) into an aware UTC datetime."""
    if not value:
        return None
    match = _TIMESTAMP_RE.match(value.strip())
    if not match:
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC)
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        parsed = parsed.replace(tzinfo=timezone(offset if zone[0] == "+" else -offset)).astimezone(UTC)
    return parsed


def format_timestamp(moment: datetime | float) -> str:
    """Format as the API does: UTC, milliseconds, a trailing ``Z`` (the official client requires the ``Z``)."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# ------------------------------------------------------------------------------------------------ volumes
@dataclass(frozen=True, kw_only=True)
class Volume:
    """A bucket or Hub repo mounted in the job's container, as ``huggingface_hub.Volume``.

    Keyword-only, and ``type`` defaults to ``"model"``, as there. Plain dicts work wherever a ``Volume``
    does, in the API's camelCase (``mountPath``, ``readOnly``) or in snake_case; :func:`normalize_volumes`
    checks both before any request."""

    type: str = "model"
    source: str
    mount_path: str
    revision: str | None = None
    read_only: bool | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The API's JSON, exactly ``huggingface_hub.Volume.to_dict``: unset optional keys are left out."""
        data: dict[str, Any] = {"type": self.type, "source": self.source, "mountPath": self.mount_path}
        if self.revision is not None:
            data["revision"] = self.revision
        if self.read_only is not None:
            data["readOnly"] = self.read_only
        if self.path is not None:
            data["path"] = self.path
        return data

    def to_xcom(self) -> dict[str, Any]:
        """Snake_case and every key, like the rest of the ``job`` XCom; accepted back as a volume."""
        return {
            "type": self.type, "source": self.source, "mount_path": self.mount_path, "revision": self.revision,
            "read_only": self.read_only, "path": self.path,
        }  # fmt: skip

    @classmethod
    def from_api(cls, data: Any) -> Volume | None:
        """A volume of a job answer (camelCase or snake_case); ``None`` if it lacks what ``huggingface_hub``
        requires (``source`` and ``mountPath``): a job is never unreadable for an odd volume."""
        if not isinstance(data, Mapping):
            return None
        source, mount_path = data.get("source"), _pick(data, "mountPath", "mount_path")
        if not isinstance(source, str) or not isinstance(mount_path, str):
            return None
        read_only = _pick(data, "readOnly", "read_only")
        return cls(
            type=str(data.get("type") or "model"), source=source, mount_path=mount_path,
            revision=_str_or_none(data.get("revision")), read_only=read_only if isinstance(read_only, bool) else None,
            path=_str_or_none(data.get("path")),
        )  # fmt: skip


def _pick(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = data.get(camel)
    return value if value is not None else data.get(snake)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# ------------------------------------------------------------------------------------------------ job JSON
@dataclass(frozen=True)
class JobNetwork:
    """The network group a job joined and the aliases it claims (``huggingface_hub.JobNetwork``)."""

    group: str
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobInitiator:
    """What started a job (``huggingface_hub.JobInitiator``): ``type`` is ``user``, ``org``,
    ``scheduled-job`` or ``duplicated-job`` (then ``id`` is the job it reran)."""

    type: str
    id: str
    name: str | None = None


@dataclass
class JobInfo:
    """A job as the API returns it (camelCase JSON), with the fields a DAG author needs.

    ``secrets`` are names only: the server never returns values. ``url`` is built by the client, as in
    ``huggingface_hub``: ``{endpoint}/jobs/{owner}/{id}``.
    """

    id: str
    stage: JobStage
    message: str | None
    owner_name: str
    owner_type: str | None = None
    owner_id: str | None = None
    flavor: str | None = None
    docker_image: str | None = None
    space_id: str | None = None
    command: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    secret_names: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    scheduling_secs: int | None = None
    running_secs: int | None = None
    total_secs: int | None = None
    endpoint: str = DEFAULT_ENDPOINT
    url: str = ""
    volumes: list[Volume] = field(default_factory=list)
    #: Tries in all (``attempts`` of the create); the job JSON says ``retry`` (= attempts - 1).
    attempts: int | None = None
    retry: int | None = None
    #: Failed tries so far (``status.failureCount``, in the JS client's types).
    failure_count: int | None = None
    #: Every exposed port, public ones included, and the public ones (``expose.ports``/``portsPublic``).
    expose: list[int] | None = None
    expose_public: list[int] | None = None
    #: One URL per exposed port (``status.exposeUrls``).
    expose_urls: list[str] | None = None
    #: Where to ``ssh`` into the job (``status.sshUrl``), for a job created with ``ssh=True``.
    ssh_url: str | None = None
    network: JobNetwork | None = None
    initiator: JobInitiator | None = None
    resource_group_id: str | None = None

    @property
    def image(self) -> str | None:
        return self.docker_image or (f"hf.co/spaces/{self.space_id}" if self.space_id else None)

    @property
    def is_terminal(self) -> bool:
        return self.stage.is_terminal

    @classmethod
    def from_api(cls, data: Any, endpoint: str = DEFAULT_ENDPOINT) -> JobInfo:
        """Parse a job object; accepts camelCase (server) and snake_case keys like ``huggingface_hub``.

        Anything else a 2xx answer may carry (a list, a job without an id, a field of the wrong type, a bad
        timestamp) is an :class:`HfJobsAPIError`, for the sync and async hooks alike: never a bare
        ``KeyError`` or ``AttributeError`` that crashes a trigger. A job without ``status`` is still
        SCHEDULING, as an unknown stage is still RUNNING: never taken for finished. The informational
        fields (volumes, expose, ssh, network, initiator, retry) are read leniently: one of an unexpected
        shape is left out, and never makes a running job unreadable."""
        job_id = data.get("id") if isinstance(data, Mapping) else None
        if isinstance(job_id, bool) or not isinstance(job_id, (str, int)) or job_id == "":
            raise _not_a_job(data, "no id")
        try:
            return cls._from_mapping(data, str(job_id), endpoint)
        except (TypeError, ValueError, AttributeError) as exc:
            raise _not_a_job(data, str(exc)) from None

    @classmethod
    def _from_mapping(cls, data: Mapping[str, Any], job_id: str, endpoint: str) -> JobInfo:
        def pick(camel: str, snake: str) -> Any:
            value = data.get(camel)
            return value if value is not None else data.get(snake)

        def mapping(key: str) -> Mapping[str, Any]:
            value = data.get(key) or {}
            if not isinstance(value, Mapping):
                raise TypeError(f"{key} is a {type(value).__name__}, not an object")
            return value

        owner, status, durations = mapping("owner"), mapping("status"), mapping("durations")
        stage = status.get("stage") or JobStage.SCHEDULING
        if not isinstance(stage, str):
            raise TypeError(f"status.stage is a {type(stage).__name__}, not a string")
        secrets = data.get("secrets") or []
        secret_names = sorted(secrets) if isinstance(secrets, (Mapping, list)) else []
        endpoint = endpoint.rstrip("/")
        owner_name = str(owner.get("name") or "")
        return cls(
            id=job_id,
            stage=JobStage.parse(stage),
            message=status.get("message"),
            owner_name=owner_name,
            owner_type=owner.get("type"),
            owner_id=owner.get("id"),
            flavor=data.get("flavor"),
            docker_image=pick("dockerImage", "docker_image"),
            space_id=pick("spaceId", "space_id"),
            command=list(data.get("command") or []),
            arguments=list(data.get("arguments") or []),
            environment=dict(data.get("environment") or {}),
            labels=dict(data.get("labels") or {}),
            secret_names=[str(name) for name in secret_names],
            created_at=parse_timestamp(pick("createdAt", "created_at")),
            started_at=parse_timestamp(pick("startedAt", "started_at")),
            finished_at=parse_timestamp(pick("finishedAt", "finished_at")),
            scheduling_secs=durations.get("schedulingSecs", durations.get("scheduling_secs")),
            running_secs=durations.get("runningSecs", durations.get("running_secs")),
            total_secs=durations.get("totalSecs", durations.get("total_secs")),
            endpoint=endpoint,
            url=job_url(endpoint, owner_name, job_id),
            **_job_extras(data, status),
        )

    @property
    def billed_seconds(self) -> float | None:
        """Running time, which is what Jobs bills (by the second): from the timestamps when the server
        gave them, else its ``runningSecs``."""
        if self.started_at is not None and self.finished_at is not None:
            return max(0.0, (self.finished_at - self.started_at).total_seconds())
        if self.running_secs is not None:
            return float(self.running_secs)
        if self.started_at is None:
            return None
        return max(0.0, (datetime.now(tz=UTC) - self.started_at).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict for XCom (secret names only, timestamps as ``...Z`` strings)."""
        return {
            "id": self.id,
            "stage": self.stage.value,
            "message": self.message,
            "owner": self.owner_name,
            "owner_type": self.owner_type,
            "flavor": self.flavor,
            "image": self.image,
            "docker_image": self.docker_image,
            "space_id": self.space_id,
            "command": list(self.command),
            "labels": dict(self.labels),
            "secret_names": list(self.secret_names),
            "created_at": format_timestamp(self.created_at) if self.created_at else None,
            "started_at": format_timestamp(self.started_at) if self.started_at else None,
            "finished_at": format_timestamp(self.finished_at) if self.finished_at else None,
            "scheduling_secs": self.scheduling_secs,
            "running_secs": self.running_secs,
            "total_secs": self.total_secs,
            "url": self.url,
            "volumes": [volume.to_xcom() for volume in self.volumes],
            "attempts": self.attempts,
            "retry": self.retry,
            "failure_count": self.failure_count,
            "expose": self.expose,
            "expose_public": self.expose_public,
            "expose_urls": self.expose_urls,
            "ssh_url": self.ssh_url,
            "network": asdict(self.network) if self.network else None,
            "initiator": asdict(self.initiator) if self.initiator else None,
            "resource_group_id": self.resource_group_id,
        }


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list_of(value: Any, kind: type) -> list[Any] | None:
    if not isinstance(value, list) or not all(
        isinstance(item, kind) and not isinstance(item, bool) for item in value
    ):
        return None
    return list(value)


def _job_extras(data: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """The informational fields of a job answer, each dropped when of an unexpected shape."""

    def mapping(value: Any) -> Mapping[str, Any]:
        return value if isinstance(value, Mapping) else {}

    volumes = data.get("volumes")
    parsed = [Volume.from_api(item) for item in volumes] if isinstance(volumes, list) else []
    retry, attempts = _whole(data.get("retry")), _whole(data.get("attempts"))
    expose, network, initiator = (
        mapping(data.get("expose")),
        mapping(data.get("network")),
        mapping(data.get("initiator")),
    )
    group, kind, maker = network.get("group"), initiator.get("type"), initiator.get("id")
    return {
        "volumes": [volume for volume in parsed if volume is not None],
        "attempts": attempts if attempts is not None else (retry + 1 if retry is not None else None),
        "retry": retry,
        "failure_count": _whole(status.get("failureCount")),
        "expose": _list_of(expose.get("ports"), int),
        "expose_public": _list_of(_pick(expose, "portsPublic", "ports_public"), int),
        "expose_urls": _list_of(_pick(status, "exposeUrls", "expose_urls"), str),
        "ssh_url": _str_or_none(_pick(status, "sshUrl", "ssh_url")),
        "network": JobNetwork(group, _list_of(network.get("aliases"), str) or [])
        if isinstance(group, str)
        else None,
        "initiator": (
            JobInitiator(kind, str(maker), _str_or_none(initiator.get("name")))
            if isinstance(kind, str) and isinstance(maker, (str, int)) and not isinstance(maker, bool)
            else None
        ),
        "resource_group_id": _str_or_none(_pick(data, "resourceGroupId", "resource_group_id")),
    }


def _not_a_job(data: Any, problem: str) -> HfJobsAPIError:
    return HfJobsAPIError(
        f"The Jobs API answered something that is not a job ({problem}): {str(data)[:200]!r}.",
        status_code=200,
    )


def job_url(endpoint: str, namespace: str, job_id: str) -> str:
    return f"{endpoint.rstrip('/')}/jobs/{namespace}/{job_id}"


@dataclass(frozen=True)
class HardwareInfo:
    """One entry of ``GET /api/jobs/hardware``: what a flavor is and what it costs."""

    name: str
    pretty_name: str
    cpu: str
    ram: str
    accelerator: dict[str, Any] | None
    unit_cost_usd: float
    unit_label: str

    @classmethod
    def from_api(cls, data: Any) -> HardwareInfo:
        if not isinstance(data, Mapping) or not data.get("name"):
            raise HfJobsAPIError(
                f"The Jobs API answered something that is not a hardware flavor: {str(data)[:200]!r}.",
                status_code=200,
            )
        cost = data.get("unitCostUSD")
        if cost is None and data.get("unitCostMicroUSD") is not None:
            cost = data["unitCostMicroUSD"] / 1_000_000
        return cls(
            name=str(data["name"]),
            pretty_name=str(data.get("prettyName") or data["name"]),
            cpu=str(data.get("cpu") or ""),
            ram=str(data.get("ram") or ""),
            accelerator=data.get("accelerator"),
            unit_cost_usd=float(cost or 0.0),
            unit_label=str(data.get("unitLabel") or "minute"),
        )

    def cost_usd(self, seconds: float) -> float:
        """Pay-as-you-go cost of ``seconds`` on this flavor."""
        per_unit = {"second": 1, "minute": 60, "hour": 3600}.get(self.unit_label.lower().rstrip("s"), 60)
        return self.unit_cost_usd * seconds / per_unit


@dataclass
class JobSpec:
    """What a scheduled job runs (its ``jobSpec``), read as ``huggingface_hub.JobSpec``: camelCase or
    snake_case keys; ``secrets`` are names only (the server never returns values)."""

    docker_image: str | None = None
    space_id: str | None = None
    command: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    secret_names: list[str] = field(default_factory=list)
    flavor: str | None = None
    #: Seconds; ``huggingface_hub`` reads ``timeout``, the JS types say ``timeoutSeconds``: both are read.
    timeout: int | None = None
    tags: list[str] | None = None
    arch: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    volumes: list[Volume] = field(default_factory=list)
    retry: int | None = None
    attempts: int | None = None
    expose: list[int] | None = None
    expose_public: list[int] | None = None
    resource_group_id: str | None = None

    @property
    def image(self) -> str | None:
        return self.docker_image or (f"hf.co/spaces/{self.space_id}" if self.space_id else None)

    @classmethod
    def _from_mapping(cls, data: Mapping[str, Any]) -> JobSpec:
        secrets = data.get("secrets") or []
        timeout = _pick(data, "timeout", "timeoutSeconds")
        extras = _job_extras(data, {})  # the informational fields, read leniently as a job's
        return cls(
            docker_image=_pick(data, "dockerImage", "docker_image"),
            space_id=_pick(data, "spaceId", "space_id"),
            command=list(data.get("command") or []),
            arguments=list(data.get("arguments") or []),
            environment=dict(data.get("environment") or {}),
            secret_names=[
                str(name) for name in (sorted(secrets) if isinstance(secrets, (Mapping, list)) else [])
            ],
            flavor=data.get("flavor"),
            timeout=_whole(timeout),
            tags=_list_of(data.get("tags"), str),
            arch=_str_or_none(data.get("arch")),
            labels=dict(data.get("labels") or {}),
            volumes=extras["volumes"],
            retry=extras["retry"],
            attempts=extras["attempts"],
            expose=extras["expose"],
            expose_public=extras["expose_public"],
            resource_group_id=extras["resource_group_id"],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for XCom (secret names only)."""
        return {
            "image": self.image, "docker_image": self.docker_image, "space_id": self.space_id,
            "command": list(self.command), "arguments": list(self.arguments), "environment": dict(self.environment),
            "secret_names": list(self.secret_names), "flavor": self.flavor, "timeout": self.timeout,
            "tags": self.tags, "arch": self.arch, "labels": dict(self.labels),
            "volumes": [volume.to_xcom() for volume in self.volumes], "retry": self.retry, "attempts": self.attempts,
            "expose": self.expose, "expose_public": self.expose_public, "resource_group_id": self.resource_group_id,
        }  # fmt: skip


@dataclass(frozen=True)
class LastJobInfo:
    """The latest run a scheduled job started (``status.lastJob``): its job id and when."""

    id: str
    at: datetime | None = None


@dataclass(frozen=True)
class ScheduledJobStatus:
    """``status`` of a scheduled job: its latest run (``None`` before the first) and the next run's time."""

    last_job: LastJobInfo | None = None
    next_job_run_at: datetime | None = None


@dataclass
class ScheduledJobInfo:
    """A scheduled job as the API returns it, read as ``huggingface_hub.ScheduledJobInfo``.

    The owner is flattened as in :class:`JobInfo`. There is no ``url``: the Hub has no page address for a
    scheduled job that the official client knows of."""

    id: str
    owner_name: str
    owner_type: str | None = None
    owner_id: str | None = None
    created_at: datetime | None = None
    job_spec: JobSpec = field(default_factory=JobSpec)
    schedule: str | None = None
    suspend: bool | None = None
    concurrency: bool | None = None
    status: ScheduledJobStatus = field(default_factory=ScheduledJobStatus)

    @property
    def last_job(self) -> LastJobInfo | None:
        return self.status.last_job

    @property
    def next_job_run_at(self) -> datetime | None:
        return self.status.next_job_run_at

    @classmethod
    def from_api(cls, data: Any) -> ScheduledJobInfo:
        """Parse a scheduled job (camelCase or snake_case keys). Anything else a 2xx answer may carry (a
        list, no id, a field of the wrong type, a bad timestamp) is an :class:`HfJobsAPIError`, as for
        :meth:`JobInfo.from_api`: never a bare ``KeyError`` in a sensor or trigger."""
        job_id = data.get("id") if isinstance(data, Mapping) else None
        if isinstance(job_id, bool) or not isinstance(job_id, (str, int)) or job_id == "":
            raise _not_a_scheduled_job(data, "no id")
        try:
            return cls._from_mapping(data, str(job_id))
        except (TypeError, ValueError, AttributeError) as exc:
            raise _not_a_scheduled_job(data, str(exc)) from None

    @classmethod
    def _from_mapping(cls, data: Mapping[str, Any], job_id: str) -> ScheduledJobInfo:
        def mapping(value: Any, key: str) -> Mapping[str, Any]:
            value = value or {}
            if not isinstance(value, Mapping):
                raise TypeError(f"{key} is a {type(value).__name__}, not an object")
            return value

        def flag(key: str) -> bool | None:
            value = data.get(key)
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"{key} is a {type(value).__name__}, not a boolean")
            return value

        owner = mapping(data.get("owner"), "owner")
        spec = mapping(_pick(data, "jobSpec", "job_spec"), "jobSpec")
        status = mapping(data.get("status"), "status")
        last = mapping(_pick(status, "lastJob", "last_job"), "status.lastJob")
        last_job = None
        if last:
            last_id = last.get("id")
            if isinstance(last_id, bool) or not isinstance(last_id, (str, int)) or last_id == "":
                raise TypeError("status.lastJob has no id")
            last_job = LastJobInfo(str(last_id), parse_timestamp(last.get("at")))
        schedule = data.get("schedule")
        if schedule is not None and not isinstance(schedule, str):
            raise TypeError(f"schedule is a {type(schedule).__name__}, not a string")
        next_run = _pick(status, "nextJobRunAt", "next_job_run_at")
        return cls(
            id=job_id,
            owner_name=str(owner.get("name") or ""),
            owner_type=owner.get("type"),
            owner_id=owner.get("id"),
            created_at=parse_timestamp(_pick(data, "createdAt", "created_at")),
            job_spec=JobSpec._from_mapping(spec),
            schedule=schedule,
            suspend=flag("suspend"),
            concurrency=flag("concurrency"),
            status=ScheduledJobStatus(last_job, parse_timestamp(next_run) if next_run else None),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict for XCom (secret names only, timestamps as ``...Z`` strings)."""
        last = self.status.last_job
        return {
            "id": self.id, "owner": self.owner_name, "owner_type": self.owner_type,
            "created_at": format_timestamp(self.created_at) if self.created_at else None,
            "job_spec": self.job_spec.to_dict(), "schedule": self.schedule, "suspend": self.suspend,
            "concurrency": self.concurrency,
            "last_job": {"id": last.id, "at": format_timestamp(last.at) if last.at else None} if last else None,
            "next_job_run_at": format_timestamp(self.next_job_run_at) if self.next_job_run_at else None,
        }  # fmt: skip


def _not_a_scheduled_job(data: Any, problem: str) -> HfJobsAPIError:
    return HfJobsAPIError(
        f"The Jobs API answered something that is not a scheduled job ({problem}): {str(data)[:200]!r}.",
        status_code=200,
    )
