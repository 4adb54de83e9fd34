"""The HF Jobs protocol, free of I/O.

Every rule of the API lives here once — stages, the create body, timeout strings, labels, the uv command,
job JSON, hardware prices, error mapping, retry timing, pagination — and is used by the sync hook
(requests), the async client (httpx) and the local server alike. Nothing here opens a socket, reads a file
or sleeps, so all of it is tested without a network. Names follow ``huggingface_hub`` 2.4.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import random
import re
import shlex
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any
from urllib.parse import urljoin, urlsplit

from airflow_provider_hfjobs.exceptions import (
    HfJobsAPIError,
    HfJobsAuthError,
    HfJobsBadRequestError,
    HfJobsInputError,
    HfJobsNotFoundError,
    HfJobsPermissionError,
    HfJobsRateLimitError,
    HfJobsServerError,
)

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_FLAVOR = "cpu-basic"
DEFAULT_UV_IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"
#: Server-side default when ``timeoutSeconds`` is absent (hub-docs: 30 minutes).
DEFAULT_JOB_TIMEOUT_SECONDS = 1800
#: Prefixes that make an image a Space (``spaceId``) rather than a Docker image, as in ``huggingface_hub``.
SPACE_IMAGE_PREFIXES = (
    "https://huggingface.co/spaces/",
    "https://hf.co/spaces/",
    "huggingface.co/spaces/",
    "hf.co/spaces/",
)
#: The hardware flavors of ``huggingface_hub`` 2.4 (``JobHardware``); the server has the final word.
KNOWN_FLAVORS = (
    "cpu-basic", "cpu-upgrade", "cpu-performance", "cpu-xl",
    "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4", "l40sx8",
    "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4",
    "a100-large", "a100x4", "a100x8", "h200", "h200x2", "h200x4", "h200x8",
    "rtx-pro-6000", "rtx-pro-6000x2", "rtx-pro-6000x4", "rtx-pro-6000x8",
)  # fmt: skip
#: Log marker the server sends first on every connection; never a line of the job's own output.
JOB_STARTED_MARKER = "===== Job started"
#: Label carried by every job this provider creates, so that a create whose answer was lost can be found
#: instead of being sent twice (huggingface_hub issue #3972: intermittent 500 on create).
SUBMISSION_LABEL = "hfjobs-submission"
#: Inline uv scripts travel base64-encoded in one environment variable; the API takes about 1 MB there.
MAX_INLINE_SCRIPT_ENCODED_BYTES = 1_000_000
UV_SCRIPT_ENV = "UV_SCRIPT_ENCODED"

_LABEL_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_TIMEOUT_FACTORS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIMESTAMP_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$"
)
MAX_LABEL_LENGTH = 100

# Most bytes read of one answer body; a server (or a proxy or captive portal in front of it) sending more is
# not the Jobs API, and must not fill a worker's or the shared triggerer's memory. Read at call time, so a
# test can lower them.
#: An error answer: its message is in its first few hundred characters, the rest is cut off unread.
MAX_ERROR_BODY_BYTES = 64 << 10
#: A JSON answer (a job, whoami, the hardware list): a job is about 2 KB. More is an error.
MAX_JSON_BODY_BYTES = 8 << 20
#: One page of a job list: thousands of jobs. More is an error.
MAX_LIST_PAGE_BYTES = 64 << 20


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


def parse_timeout(timeout: int | float | str | None, *, field_name: str = "timeout") -> int | None:
    """Job timeout in seconds, parsed exactly as ``huggingface_hub`` does, with a clear error instead of a
    bare ``ValueError``: falsy → ``None`` (server default, 30 min); ``"90s"``/``"30m"``/``"1.5h"``/``"2d"``
    → ``int(float(n) * unit)``; anything else → ``int(value)``."""
    if isinstance(timeout, bool):
        raise HfJobsInputError(
            f"{field_name} must be seconds or a string like '30m'; got the boolean {timeout}."
        )
    if not timeout:
        return None
    try:
        if isinstance(timeout, str) and timeout[-1] in _TIMEOUT_FACTORS:
            seconds = int(float(timeout[:-1]) * _TIMEOUT_FACTORS[timeout[-1]])
        else:
            seconds = int(timeout)
    except (TypeError, ValueError):
        raise HfJobsInputError(
            f"{field_name}={timeout!r} is not a duration: use seconds (300) or a number with one of the "
            "lower-case units s, m, h, d ('90s', '30m', '1.5h', '2d')."
        ) from None
    if seconds <= 0:
        raise HfJobsInputError(
            f"{field_name}={timeout!r} must be a positive duration, such as '30m' or 1800."
        )
    return seconds


# --------------------------------------------------------------------------------------------- validation
def validate_labels(labels: Mapping[str, Any] | None, *, field_name: str = "labels") -> dict[str, str]:
    """Labels as the API accepts them: keys and values of at most 100 characters from ``[A-Za-z0-9_-]``."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise HfJobsInputError(
            f"{field_name} must be a dict of str to str, e.g. {{'team': 'ml'}}; got {labels!r}."
        )
    clean: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_RE.match(key) or len(key) > MAX_LABEL_LENGTH:
            raise HfJobsInputError(
                f"{field_name} key {key!r} is invalid: use 1-{MAX_LABEL_LENGTH} letters, digits, '-' or '_'."
            )
        if not isinstance(value, str):
            raise HfJobsInputError(
                f"{field_name}[{key!r}] must be a string; got {type(value).__name__} {value!r}."
            )
        if len(value) > MAX_LABEL_LENGTH or (value and not _LABEL_RE.match(value)):
            raise HfJobsInputError(
                f"{field_name}[{key!r}]={value!r} is invalid: use at most {MAX_LABEL_LENGTH} letters, digits, "
                "'-' or '_'."
            )
        clean[key] = value
    return clean


def _validate_env(env: Mapping[str, Any] | None, field_name: str, *, show_values: bool) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise HfJobsInputError(
            f"{field_name} must be a dict of variable name to string value; got {type(env).__name__}."
        )
    clean: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME_RE.match(key):
            raise HfJobsInputError(
                f"{field_name} key {key!r} is not a valid environment variable name (letters, digits, '_', "
                "not starting with a digit)."
            )
        if not isinstance(value, str):
            shown = f" {value!r}" if show_values else ""
            raise HfJobsInputError(
                f"{field_name}[{key!r}] must be a string; got {type(value).__name__}{shown}. "
                "Convert it, e.g. str(value) or a JSON string."
            )
        clean[key] = value
    return clean


def validate_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE_RE.match(namespace):
        raise HfJobsInputError(f"namespace {namespace!r} is not a Hub user or organization name.")
    return namespace


def validate_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
        raise HfJobsInputError(
            f"job_id {job_id!r} is not a job id (24 hex characters, e.g. 687fb701029421ae5549d998)."
        )
    return job_id


def image_fields(image: str) -> dict[str, str]:
    """``{"spaceId": ...}`` for the four ``hf.co/spaces/`` prefixes, else ``{"dockerImage": image}``."""
    if not isinstance(image, str) or not image.strip():
        raise HfJobsInputError(
            "image is required: a Docker image such as 'python:3.12' or a Space such as 'hf.co/spaces/user/space'."
        )
    for prefix in SPACE_IMAGE_PREFIXES:
        if image.startswith(prefix):
            space_id = image[len(prefix) :].strip("/")
            if space_id.count("/") != 1:
                raise HfJobsInputError(f"image {image!r} names no Space: use '{prefix}<owner>/<space>'.")
            return {"spaceId": space_id}
    return {"dockerImage": image}


def _sanitize_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "-", name)


def default_job_name(image: str, command: list[str]) -> str:
    """The ``name`` label ``huggingface_hub`` (1.25+) gives a job: image tail + hash of image and command."""
    base = None
    for prefix in SPACE_IMAGE_PREFIXES:
        if image.startswith(prefix):
            base = _sanitize_name(image[len(prefix) :] or image)
            break
    if base is None:
        base = _sanitize_name(image.rstrip("/").split("/")[-1] or image)
    digest = hashlib.sha256("\x00".join([image, *command]).encode()).hexdigest()[:8]
    return f"{base[: MAX_LABEL_LENGTH - 9]}-{digest}"


def build_job_spec(
    *,
    image: str,
    command: list[str],
    env: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    flavor: str | None = None,
    timeout: int | float | str | None = None,
    labels: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The ``POST /api/jobs/{namespace}`` body, field for field as ``huggingface_hub._create_job_spec``.

    Validates everything first, so that bad input fails with a message naming the field and the fix
    before any request is sent. Secret values never appear in these messages.
    """
    placement = image_fields(image)
    if isinstance(command, str) or not isinstance(command, (list, tuple)):
        raise HfJobsInputError(
            f"command must be a list of strings, e.g. ['python', '-c', 'print(1)']; got {type(command).__name__}."
        )
    if not command:
        raise HfJobsInputError(
            "command is empty: give the program and its arguments, e.g. ['python', 'train.py']."
        )
    for position, part in enumerate(command):
        if not isinstance(part, str):
            raise HfJobsInputError(
                f"command[{position}] must be a string; got {type(part).__name__} {part!r}."
            )
    environment = _validate_env(env, "env", show_values=True)
    secret_values = _validate_env(secrets, "secrets", show_values=False)
    if both := sorted(set(environment) & set(secret_values)):
        raise HfJobsInputError(
            f"{', '.join(both)} given in both env and secrets: keep each name in one of them."
        )
    if flavor is not None and (not isinstance(flavor, str) or not flavor.strip()):
        raise HfJobsInputError(
            f"flavor must be a hardware name such as 'cpu-basic' or 'a10g-small'; got {flavor!r}."
        )
    timeout_seconds = parse_timeout(timeout)
    clean_labels = validate_labels(labels)
    if name is not None:
        if "name" in clean_labels:
            raise HfJobsInputError("give the job name either as name= or as labels['name'], not both.")
        clean_labels["name"] = validate_labels({"name": name}, field_name="name")["name"]
    elif "name" not in clean_labels:
        clean_labels["name"] = default_job_name(image, list(command))

    spec: dict[str, Any] = {
        "command": list(command),
        "arguments": [],
        "environment": environment,
        "flavor": flavor or DEFAULT_FLAVOR,
    }
    if secret_values:
        spec["secrets"] = secret_values
    if timeout_seconds:
        spec["timeoutSeconds"] = timeout_seconds
    spec["labels"] = clean_labels
    spec.update(placement)
    return spec


# ---------------------------------------------------------------------------------------------------- uv
def classify_uv_script(script: str) -> str:
    """``"url"`` for https URLs, ``"inline"`` for Python source (it has a line break), else ``"file"``.

    An ``http://`` URL is refused: the job runs the script with its secrets, and anyone on the path could
    swap it."""
    if not isinstance(script, str) or not script.strip():
        raise HfJobsInputError("script is required: a local .py path, an https URL, or inline Python source.")
    if "\n" in script:
        return "inline"
    scheme = script.split("://", 1)[0].lower() if "://" in script else ""
    if scheme == "https":
        return "url"
    if scheme == "http":
        raise HfJobsInputError(
            f"script URL {script!r} is plain http: the job runs it with its secrets, and anyone on the way "
            "could change it. Serve it over https."
        )
    return "file"


def build_uv_command(
    *,
    script_args: list[str] | None = None,
    dependencies: list[str] | None = None,
    python: str | None = None,
    script_url: str | None = None,
    script_source: bytes | None = None,
    script_name: str = "script.py",
) -> tuple[list[str], dict[str, str]]:
    """The job command (and extra environment) of a uv job.

    A URL runs directly (``uv run ... <url> <args>``, as ``huggingface_hub`` does). Source code travels
    inside the job spec, base64 in ``UV_SCRIPT_ENCODED``, and the command decodes it into the job's own
    working directory, so nothing is uploaded to a Hub repo or bucket. Script arguments are passed to
    ``bash -c`` as positional parameters, so they need no quoting.
    """
    args = list(script_args or [])
    for position, part in enumerate(args):
        if not isinstance(part, str):
            raise HfJobsInputError(
                f"script_args[{position}] must be a string; got {type(part).__name__} {part!r}."
            )
    uv_args: list[str] = []
    for dep in dependencies or []:
        if not isinstance(dep, str) or not dep.strip():
            raise HfJobsInputError(
                f"dependencies must be requirement strings such as 'torch>=2.3'; got {dep!r}."
            )
        uv_args += ["--with", dep]
    if python is not None:
        if not isinstance(python, str) or not python.strip():
            raise HfJobsInputError(f"python must be a version string such as '3.12'; got {python!r}.")
        uv_args += ["--python", python]
    if (script_url is None) == (script_source is None):
        raise HfJobsInputError("give exactly one of a script URL and script source.")
    if script_url is not None:
        return ["uv", "run", *uv_args, script_url, *args], {}
    assert script_source is not None
    encoded = base64.b64encode(script_source).decode("ascii")
    if len(encoded) > MAX_INLINE_SCRIPT_ENCODED_BYTES:
        limit_kb = MAX_INLINE_SCRIPT_ENCODED_BYTES * 3 // 4 // 1000
        raise HfJobsInputError(
            f"script is {len(script_source) // 1000} KB; scripts sent inside the job spec are limited to about "
            f"{limit_kb} KB. Serve it at an http(s) URL (or from a Hub repo) and pass the URL as script."
        )
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", script_name) or "script.py"
    if not safe_name.endswith(".py"):
        safe_name += ".py"
    uv_line = " ".join(shlex.quote(part) for part in ["uv", "run", *uv_args])
    shell = f'printf %s "${UV_SCRIPT_ENV}" | base64 -d > "$0" && exec {uv_line} "$0" "$@"'
    return ["bash", "-c", shell, safe_name, *args], {UV_SCRIPT_ENV: encoded}


def default_uv_job_name(script: str, script_args: list[str]) -> str:
    """The ``name`` label ``huggingface_hub`` gives a uv job: script stem + hash of script and arguments."""
    if "\n" in script:
        stem = "inline-script"
    else:
        stem = script.split("?", 1)[0].split("#", 1)[0].rstrip("/").split("/")[-1]
        stem = stem.removesuffix(".py")
    digest = hashlib.sha256("\x00".join([script, *script_args]).encode()).hexdigest()[:8]
    return f"{_sanitize_name(stem or 'script')[: MAX_LABEL_LENGTH - 9]}-{digest}"


# ------------------------------------------------------------------------------------------------ job JSON
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
        SCHEDULING, as an unknown stage is still RUNNING: never taken for finished."""
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


# ------------------------------------------------------------------------------------------------- errors
def server_error_text(body: bytes | str | None, headers: Mapping[str, str] | None = None) -> str | None:
    """The server's own explanation: ``X-Error-Message`` and the JSON body's ``error``, as the official
    client reads them (``{"error": str | [str]}``, ``error_description``, ``errors[].message``, raw text)."""
    parts: list[str] = []
    header_message = _header(headers, "x-error-message")
    if header_message:
        parts.append(header_message)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    text = text.strip()
    if text:
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            error = payload.get("error")
            if isinstance(error, list):
                parts.extend(str(item) for item in error)
            elif error:
                parts.append(str(error))
            if payload.get("error_description"):
                parts.append(str(payload["error_description"]))
            for item in payload.get("errors") or []:
                if isinstance(item, dict) and item.get("message"):
                    parts.append(str(item["message"]))
        elif payload is None and not text.lstrip().startswith("<"):
            parts.append(text[:300])
    unique = list(dict.fromkeys(part.strip() for part in parts if part and part.strip()))
    return " ".join(unique).replace("\n", " ") or None


def body_limit(status_code: int, *, listing: bool = False) -> int:
    """How many bytes of an answer's body to read: see :data:`MAX_ERROR_BODY_BYTES` and the others. A
    transport reads at most this plus one byte, so that :func:`json_answer` can tell a body that was cut."""
    if status_code >= 400:
        return MAX_ERROR_BODY_BYTES
    return MAX_LIST_PAGE_BYTES if listing else MAX_JSON_BODY_BYTES


def json_answer(status_code: int, content: bytes, *, action: str, listing: bool = False) -> Any:
    """The JSON of a 2xx answer read under :func:`body_limit`; anything else (a proxy's HTML page, a cut
    or over-long body) is one :class:`HfJobsAPIError`, on the sync and async paths alike."""
    limit = body_limit(status_code, listing=listing)
    if len(content) > limit:
        raise HfJobsAPIError(
            f"Could not {action}: the server answered HTTP {status_code} with more than {_amount(limit)}, "
            "more than the Jobs API ever sends; not read.",
            status_code=status_code,
        )
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        raise HfJobsAPIError(
            f"Could not {action}: the server answered HTTP {status_code} without JSON.",
            status_code=status_code,
        ) from None


def _amount(size: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


def error_for_response(
    status_code: int,
    body: bytes | str | None,
    headers: Mapping[str, str] | None,
    *,
    action: str,
    namespace: str | None = None,
    job_id: str | None = None,
) -> HfJobsAPIError:
    """One provider exception, with a one-line message that says what to change.

    ``action`` says what was attempted ("create a job", "inspect job X"); the message never contains the
    token (it is only ever in the ``Authorization`` header, which is not read here).
    """
    server = server_error_text(body, headers)
    request_id = _header(headers, "x-request-id") or _header(headers, "x-amzn-trace-id")
    detail = f" Server said: {server}." if server else ""
    ref = f" (request id {request_id})" if request_id else ""
    cls: type[HfJobsAPIError]
    if status_code == 401:
        cls = HfJobsAuthError
        text = (
            f"Could not {action}: invalid token (HTTP 401). Set a valid Hugging Face token as the password of "
            "the Airflow connection (or HF_TOKEN)."
        )
    elif status_code == 403:
        cls = HfJobsPermissionError
        where = f" to namespace {namespace!r}" if namespace else ""
        text = (
            f"Could not {action}: the token has no access{where} (HTTP 403). Use a token with write access "
            "to that user or organization, and check it has Jobs access and credits."
        )
    elif status_code == 404:
        cls = HfJobsNotFoundError
        if job_id:
            text = (
                f"Could not {action}: job {job_id} not found in namespace {namespace!r} (HTTP 404). Check the "
                "job id and the namespace it was created in."
            )
        else:
            text = f"Could not {action}: not found (HTTP 404). Check the namespace {namespace!r} and the endpoint."
    elif status_code in (400, 422):
        cls = HfJobsBadRequestError
        text = f"Could not {action}: the server rejected the request (HTTP {status_code})."
    elif status_code == 429:
        cls = HfJobsRateLimitError
        text = f"Could not {action}: rate limited by the Hub (HTTP 429), still after retries."
    elif status_code >= 500:
        cls = HfJobsServerError
        text = f"Could not {action}: the Hub failed (HTTP {status_code}), still after retries."
    else:
        cls = HfJobsAPIError
        text = f"Could not {action}: HTTP {status_code}."
    return cls(
        f"{text}{detail}{ref}",
        status_code=status_code,
        server_message=server,
        request_id=request_id,
        retry_after=retry_after_seconds(headers),
    )


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


# ------------------------------------------------------------------------------------------------ retries
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: Statuses after which a create certainly did not happen, so re-sending it cannot start a second job.
CREATE_NOT_APPLIED_STATUS = frozenset({408, 429})
_RATELIMIT_RE = re.compile(r"\"?(?P<name>[\w-]+)\"?\s*;\s*r\s*=\s*(?P<r>\d+)\s*;\s*t\s*=\s*(?P<t>\d+)")


def retry_after_seconds(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """How long the server asked us to wait: ``Retry-After`` (seconds or HTTP date) or the IETF ``RateLimit``
    header's reset ``t=`` when nothing is left (``r=0``)."""
    value = _header(headers, "retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return max(0.0, moment.timestamp() - (time.time() if now is None else now))
    ratelimit = _header(headers, "ratelimit")
    if ratelimit:
        match = _RATELIMIT_RE.search(ratelimit)
        if match and int(match.group("r")) == 0:
            return float(match.group("t"))
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a request again and how long to wait: the one retry rule of the provider.

    Retries connection errors and 408/429/5xx, with full-jitter exponential backoff, honouring
    ``Retry-After``/``RateLimit`` (plus a little jitter), and gives up after ``max_retries`` or when the
    waits would exceed ``max_total_wait`` seconds.
    """

    max_retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_total_wait: float = 300.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.base_delay < 0 or self.max_delay < 0 or self.max_total_wait < 0:
            raise HfJobsInputError("retry settings must be non-negative numbers.")

    def delay(
        self,
        attempt: int,
        *,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
        waited: float = 0.0,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before retry number ``attempt`` (1-based), or ``None`` to give up.

        ``status_code`` is ``None`` for a transport error (connection refused, reset, timeout).
        """
        if status_code is not None and status_code not in RETRYABLE_STATUS:
            return None
        if attempt > self.max_retries:
            return None
        draw = (rng or random).random()
        backoff = draw * min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        asked = retry_after_seconds(headers)
        if asked is not None:
            backoff = asked + draw * min(1.0, self.base_delay)
        if waited + backoff > self.max_total_wait:
            return None
        return backoff


class RetryAttempts:
    """The attempts of one request under a :class:`RetryPolicy`: each failure either gives the seconds to
    wait before the next attempt or raises the failure. One helper for every sync and async caller."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0
        self.waited = 0.0

    def reset(self) -> None:
        """Progress was made: the next failure is a first failure again."""
        self.failures, self.waited = 0, 0.0

    def after(
        self, failure: Exception, *, status_code: int | None = None, headers: Mapping[str, str] | None = None
    ) -> float:
        self.failures += 1
        delay = self.policy.delay(self.failures, status_code=status_code, headers=headers, waited=self.waited)
        if delay is None:
            raise failure
        asked = getattr(failure, "retry_after", None)
        if headers is None and asked is not None:
            delay = max(delay, asked)
        self.waited += delay
        return delay


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
    target = urljoin(page_url, target)
    origin = _origin(page_url)
    if origin is None or _origin(target) != origin:
        raise HfJobsAPIError(
            f"Could not list all jobs: the server's next page is on {_shown_origin(target)}, not on the "
            f"endpoint's origin {_shown_origin(page_url)}; not followed, so that the token is not sent there.",
            status_code=200,
        )
    return target


def _origin(url: str) -> tuple[str, str, int | None] | None:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return None  # a malformed port: never the endpoint's origin
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


# ------------------------------------------------------------------------------------------- Airflow labels
#: Label identifying the Airflow task instance (dag, task, run, map index) that created a job, so that a
#: retry finds the job of an earlier try instead of starting a second one.
TASK_INSTANCE_LABEL = "airflow-ti"


def task_instance_labels(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> dict[str, str]:
    """Deterministic labels for a task instance, within the API's label rules.

    ``airflow-ti`` is a uuid5 of the four parts (no try number: every try of the instance shares it);
    ``airflow-dag`` and ``airflow-task`` are readable, for filtering in the Hub UI.
    """
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"airflow-ti:{dag_id}\x00{task_id}\x00{run_id}\x00{map_index}").hex
    return {
        TASK_INSTANCE_LABEL: key,
        "airflow-dag": _sanitize_name(dag_id)[:MAX_LABEL_LENGTH],
        "airflow-task": _sanitize_name(task_id)[:MAX_LABEL_LENGTH],
    }
