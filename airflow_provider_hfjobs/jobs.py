"""The HF Jobs protocol, free of I/O.

Every rule of the API lives here once — stages, the create body, timeout strings, labels, the uv command,
job JSON, hardware prices, error mapping, retry timing, pagination — and is used by the sync hook
(requests), the async client (httpx) and the local server alike. Nothing here opens a socket, reads a file
or sleeps, so all of it is tested without a network. Names follow ``huggingface_hub`` 2.4.
"""

from __future__ import annotations

import base64
import difflib
import email.utils
import hashlib
import json
import posixpath
import random
import re
import shlex
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urljoin, urlsplit

from airflow_provider_hfjobs.exceptions import (
    HfJobsAPIError,
    HfJobsAuthError,
    HfJobsBadRequestError,
    HfJobsConcurrencyError,
    HfJobsError,
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

_LABEL_RE = re.compile(r"^[A-Za-z0-9_-]+\Z")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]+\Z")
_TIMEOUT_FACTORS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIMESTAMP_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$"
)
MAX_LABEL_LENGTH = 100
#: What a volume can mount (``huggingface_hub.Volume.type``).
VOLUME_TYPES = ("bucket", "model", "dataset", "space")
#: A network group and an alias, as the ``run_job`` docstring of ``huggingface_hub`` 2.4 gives them:
#: lower-case letters, digits and dashes, at most 46 and 34 characters.
_NETWORK_GROUP_RE = re.compile(r"^[a-z0-9-]{1,46}\Z")
_NETWORK_ALIAS_RE = re.compile(r"^[a-z0-9-]{1,34}\Z")
#: A uv ``script`` that is a plain command (``lighteval``, ``python``): a program name, nothing more.
_COMMAND_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*\Z")
#: A missing script with one of these endings is a missing file, never a command (``huggingface_hub``).
UV_FILE_SUFFIXES = (".py", ".sh", ".yaml", ".yml", ".toml")

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
        if "\0" in value:  # never quoted: it may be a secret
            raise HfJobsInputError(
                f"{field_name}[{key!r}] contains a NUL byte ('\\x00'), which no environment variable can "
                "hold: remove it (binary data travels base64-encoded)."
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


_VOLUME_KEYS = {
    "type": "type", "source": "source", "mountPath": "mount_path", "mount_path": "mount_path",
    "revision": "revision", "readOnly": "read_only", "read_only": "read_only", "path": "path",
}  # fmt: skip


def _pick(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = data.get(camel)
    return value if value is not None else data.get(snake)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _volume(item: Any, where: str) -> Volume:
    """One ``volumes`` entry as a :class:`Volume`: a ``Volume``, a dict (camelCase or snake_case) or any
    object with the same attributes (``huggingface_hub.Volume``)."""
    if isinstance(item, Volume):
        return item
    if isinstance(item, Mapping):
        fields: dict[str, Any] = {}
        for key, value in item.items():
            name = _VOLUME_KEYS.get(key) if isinstance(key, str) else None
            if name is None:
                raise HfJobsInputError(
                    f"{where} has an unknown key {key!r}: use type, source, mount_path (or mountPath), revision, "
                    "read_only (or readOnly) and path."
                )
            if name in fields and fields[name] != value:
                raise HfJobsInputError(f"{where} gives {name} twice, in camelCase and snake_case: keep one.")
            fields[name] = value
    elif hasattr(item, "source") and hasattr(item, "mount_path"):
        fields = {name: getattr(item, name, None) for name in set(_VOLUME_KEYS.values())}
    else:
        raise HfJobsInputError(
            f"{where} must be a Volume or a dict with type, source and mount_path; got {type(item).__name__}."
        )
    if fields.get("type") is None:
        fields.pop("type", None)  # huggingface_hub's default: a model
    if fields.get("source") in (None, ""):
        raise HfJobsInputError(
            f"{where} has no source: give the bucket or repo id, e.g. 'username/my-bucket'."
        )
    if fields.get("mount_path") in (None, ""):
        raise HfJobsInputError(
            f"{where} has no mount_path (mountPath): give the absolute path in the container, e.g. '/data'."
        )
    return Volume(**fields)


def _check_volume(volume: Volume, where: str) -> None:
    """The rules of ``huggingface_hub``'s ``hf://`` mount parser (``utils/_hf_uris.py``), which the CLI
    applies to every ``-v``, for volumes built in Python too; plus a read-write repo, which the Hub would
    silently mount read-only."""
    if not isinstance(volume.type, str) or volume.type not in VOLUME_TYPES:
        raise HfJobsInputError(
            f"{where}.type {volume.type!r} is not a volume type: use one of {', '.join(VOLUME_TYPES)}."
        )
    source = volume.source
    if not isinstance(source, str):
        raise HfJobsInputError(
            f"{where}.source must be a string such as 'username/my-bucket'; got {source!r}."
        )
    if "://" in source:
        raise HfJobsInputError(
            f"{where}.source {source!r} is a URI: give the type and the id apart, e.g. type='bucket', "
            "source='username/my-bucket'."
        )
    if source.count("/") != 1 or not all(source.split("/")) or source != source.strip():
        raise HfJobsInputError(
            f"{where}.source {source!r} must be 'namespace/name', e.g. 'username/my-bucket' or 'org/model'."
        )
    mount_path = volume.mount_path
    if not isinstance(mount_path, str) or not mount_path.startswith("/") or not _mount_key(mount_path):
        raise HfJobsInputError(
            f"{where}.mount_path {mount_path!r} must be an absolute path in the container other than '/', "
            "e.g. '/data'."
        )
    if volume.revision is not None:
        if not isinstance(volume.revision, str) or not volume.revision:
            raise HfJobsInputError(
                f"{where}.revision must be a branch, tag or commit such as 'main'; got {volume.revision!r}."
            )
        if volume.type == "bucket":
            raise HfJobsInputError(
                f"{where}.revision: a bucket has no revisions; drop it (it is for model, dataset and space volumes)."
            )
    if volume.read_only is not None and not isinstance(volume.read_only, bool):
        raise HfJobsInputError(f"{where}.read_only must be True, False or None; got {volume.read_only!r}.")
    if volume.read_only is False and volume.type != "bucket":
        raise HfJobsInputError(
            f"{where} is a {volume.type} volume, which the Hub always mounts read-only: drop read_only=False, "
            "or write to a bucket volume."
        )
    if volume.path is not None and (
        not isinstance(volume.path, str)
        or not volume.path
        or volume.path.startswith("/")
        or "//" in volume.path
    ):
        raise HfJobsInputError(
            f"{where}.path {volume.path!r} must be a folder inside the {volume.type}, such as 'sub/dir' (no "
            "leading '/', no empty segment)."
        )


def _mount_key(mount_path: str) -> str:
    """A mount path as the container sees it, for comparing: ``/data/``, ``//data`` and ``/data`` are one."""
    return posixpath.normpath(mount_path).strip("/")


def normalize_volumes(volumes: Sequence[Volume | Mapping[str, Any]] | None) -> list[Volume]:
    """``volumes`` as :class:`Volume` objects, each checked, no two at one mount path; the message of a
    bad one names it (``volumes[1].mount_path``)."""
    if volumes is None:
        return []
    if isinstance(volumes, (str, bytes, Mapping)) or not isinstance(volumes, (list, tuple)):
        raise HfJobsInputError(
            "volumes must be a list of Volume or dicts, e.g. [Volume(type='bucket', source='username/ckpts', "
            f"mount_path='/ckpts')]; got {type(volumes).__name__}."
        )
    result: list[Volume] = []
    mounted: dict[str, int] = {}
    for position, item in enumerate(volumes):
        where = f"volumes[{position}]"
        volume = _volume(item, where)
        _check_volume(volume, where)
        key = _mount_key(volume.mount_path)
        if key in mounted:
            raise HfJobsInputError(
                f"{where}.mount_path {volume.mount_path!r} is already used by volumes[{mounted[key]}]: give each "
                "volume its own mount path."
            )
        mounted[key] = position
        result.append(volume)
    return result


# ------------------------------------------------------------------------------- expose, network, attempts
def validate_ports(ports: Sequence[int] | None, *, field_name: str) -> list[int]:
    """Container ports: whole numbers from 1 to 65535, in a list."""
    if ports is None:
        return []
    if isinstance(ports, (str, bytes, Mapping)) or not isinstance(ports, (list, tuple)):
        raise HfJobsInputError(
            f"{field_name} must be a list of port numbers, e.g. [8000]; got {type(ports).__name__} {ports!r}."
        )
    for position, port in enumerate(ports):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise HfJobsInputError(
                f"{field_name}[{position}]={port!r} is not a port: use whole numbers from 1 to 65535."
            )
    return list(ports)


def build_expose_payload(
    expose: Sequence[int] | None, expose_public: Sequence[int] | None
) -> dict[str, list[int]]:
    """``{"ports", "portsPublic"}`` exactly as ``huggingface_hub._build_expose_payload``: a public port is
    exposed too (the server wants ``portsPublic`` within ``ports``), so it need not be in ``expose``."""
    ports = validate_ports(expose, field_name="expose")
    public = list(dict.fromkeys(validate_ports(expose_public, field_name="expose_public")))
    return {"ports": list(dict.fromkeys([*ports, *public])), "portsPublic": public}


def validate_network_group(network_group: str | None) -> str | None:
    """A network group (``None``: none; an empty one counts as none, as in ``huggingface_hub``)."""
    if network_group is None or network_group == "":
        return None
    if not isinstance(network_group, str) or not _NETWORK_GROUP_RE.match(network_group):
        raise HfJobsInputError(
            f"network_group {network_group!r} is invalid: use 1-46 lower-case letters, digits or '-'."
        )
    return network_group


def validate_network_aliases(network_aliases: Sequence[str] | None) -> list[str]:
    """The aliases a job claims in its network group: each valid, none twice."""
    aliases = [] if network_aliases is None else network_aliases
    if isinstance(aliases, (str, bytes, Mapping)) or not isinstance(aliases, (list, tuple)):
        raise HfJobsInputError(
            f"network_aliases must be a list of aliases, e.g. ['master']; got {type(aliases).__name__} {aliases!r}."
        )
    seen: set[str] = set()
    for position, alias in enumerate(aliases):
        if not isinstance(alias, str) or not _NETWORK_ALIAS_RE.match(alias):
            raise HfJobsInputError(
                f"network_aliases[{position}]={alias!r} is invalid: use 1-34 lower-case letters, digits or '-'."
            )
        if alias in seen:
            raise HfJobsInputError(f"network_aliases has {alias!r} twice: claim each alias once.")
        seen.add(alias)
    return list(aliases)


def validate_network(
    network_group: str | None, network_aliases: Sequence[str] | None
) -> dict[str, Any] | None:
    """The create body's ``network`` (``None``: no group), with the rules of ``huggingface_hub``'s
    docstring; an empty group counts as none, as there."""
    aliases = validate_network_aliases(network_aliases)
    if aliases and not network_group:
        raise HfJobsInputError(
            "network_aliases needs network_group: give the group the aliases are claimed in, e.g. "
            "network_group='train'."
        )
    group = validate_network_group(network_group)
    if group is None:
        return None
    network: dict[str, Any] = {"group": group}
    if aliases:
        network["aliases"] = aliases
    return network


def validate_attempts(attempts: int | None) -> int | None:
    """Tries in all, the first included (``huggingface_hub``: "3 retries a failed Job up to 2 times")."""
    if attempts is None:
        return None
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise HfJobsInputError(
            f"attempts must be a whole number of tries, at least 1 (1: no retry, 3: up to 2 retries); got "
            f"{attempts!r}."
        )
    return attempts


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


def validate_command(command: Sequence[str]) -> list[str]:
    """The job's command: a non-empty list of strings (no shell string: it would run as one program name)."""
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
        if "\0" in part:
            raise HfJobsInputError(
                f"command[{position}] contains a NUL byte ('\\x00'), which no program argument can hold: "
                "remove it."
            )
    return list(command)


def validate_flavor(flavor: str | None) -> str | None:
    """A flavor name, not checked against a list: the server knows the flavors (new ones appear on the
    Hub). :func:`check_known_flavor` is the stricter check of a DAG's literal flavor."""
    if flavor is not None and (not isinstance(flavor, str) or not flavor.strip()):
        raise HfJobsInputError(
            f"flavor must be a hardware name such as 'cpu-basic' or 'a10g-small'; got {flavor!r}."
        )
    return flavor


def check_known_flavor(flavor: str, extra_flavors: Iterable[str] = ()) -> str:
    """``flavor`` is one of :data:`KNOWN_FLAVORS` or ``extra_flavors``, else an error suggesting the
    closest name. For a DAG's literal flavor, where a name off the list is almost always a typo; the hook
    itself lets the server decide."""
    known = [*KNOWN_FLAVORS, *(name for name in extra_flavors if name not in KNOWN_FLAVORS)]
    if flavor in known:
        return flavor
    close = difflib.get_close_matches(flavor.lower(), known, n=1, cutoff=0.6)
    verdict = f"is unknown: did you mean {close[0]!r}?" if close else "is unknown."
    raise HfJobsInputError(
        f"flavor {flavor!r} {verdict} Known flavors: {', '.join(known)}. If {flavor!r} is a flavor "
        "newer than this provider, add it to the Airflow option [hfjobs] extra_flavors (comma-separated; "
        "environment variable AIRFLOW__HFJOBS__EXTRA_FLAVORS)."
    )


def validate_env(env: Mapping[str, Any] | None) -> dict[str, str]:
    """Environment variables: valid names, string values (shown in the message: they are not secret)."""
    return _validate_env(env, "env", show_values=True)


def validate_secrets(secrets: Mapping[str, Any] | None) -> dict[str, str]:
    """Secret environment variables: as ``env``, but no value is ever shown in a message."""
    return _validate_env(secrets, "secrets", show_values=False)


def check_env_and_secrets(env: Mapping[str, Any] | None, secrets: Mapping[str, Any] | None) -> None:
    """No variable in both ``env`` and ``secrets``."""
    if both := sorted(set(validate_env(env)) & set(validate_secrets(secrets))):
        raise HfJobsInputError(
            f"{', '.join(both)} given in both env and secrets: keep each name in one of them."
        )


def validate_job_name(name: str | None) -> str | None:
    """A job name: it travels as the ``name`` label, so a label value's rules apply."""
    return None if name is None else validate_labels({"name": name}, field_name="name")["name"]


def job_labels(labels: Mapping[str, Any] | None, name: str | None) -> dict[str, str]:
    """The labels with the job name among them: given as ``name=`` or as ``labels['name']``, not both."""
    clean = validate_labels(labels)
    if name is not None:
        if "name" in clean:
            raise HfJobsInputError("give the job name either as name= or as labels['name'], not both.")
        clean["name"] = validate_job_name(name)  # type: ignore[assignment]
    return clean


def validate_ssh(ssh: bool) -> bool:
    if not isinstance(ssh, bool):
        raise HfJobsInputError(f"ssh must be True or False; got {ssh!r}.")
    return ssh


def validate_resource_group_id(resource_group_id: str | None) -> str | None:
    if resource_group_id is not None and not isinstance(resource_group_id, str):
        raise HfJobsInputError(
            f"resource_group_id must be the resource group's id, a string; got {type(resource_group_id).__name__}."
        )
    return resource_group_id


#: The create arguments of ``huggingface_hub``'s ``run_job`` (and :func:`build_job_spec`), each with its
#: own rule, in the order they are checked.
_CREATE_ARGUMENT_RULES: dict[str, Callable[[Any], Any]] = {
    "image": image_fields,
    "command": validate_command,
    "env": validate_env,
    "secrets": validate_secrets,
    "flavor": validate_flavor,
    "timeout": parse_timeout,
    "attempts": validate_attempts,
    "labels": validate_labels,
    "name": validate_job_name,
    "volumes": normalize_volumes,
    "expose": lambda ports: validate_ports(ports, field_name="expose"),
    "expose_public": lambda ports: validate_ports(ports, field_name="expose_public"),
    "ssh": validate_ssh,
    "network_group": validate_network_group,
    "network_aliases": validate_network_aliases,
    "resource_group_id": validate_resource_group_id,
}
#: Rules between two arguments, checked once each of them has passed its own.
_JOINT_CREATE_RULES: dict[tuple[str, str], Callable[[Any, Any], Any]] = {
    ("env", "secrets"): check_env_and_secrets,
    ("labels", "name"): job_labels,
    ("expose", "expose_public"): build_expose_payload,
    ("network_group", "network_aliases"): validate_network,
}
CREATE_ARGUMENTS = frozenset(_CREATE_ARGUMENT_RULES)


def check_create_arguments(**known: Any) -> dict[str | tuple[str, str], Any]:
    """Check the create arguments given, and only those: each with its rule, and each rule between two
    arguments once both are given. :func:`build_job_spec` gives them all; an operator at DAG parse time
    leaves out those that hold a template (not known until the task runs).

    Returns every result by name: ``image`` → the body's image fields, ``command``, ``env``, ``secrets``,
    ``volumes`` … cleaned, and ``("labels", "name")``, ``("expose", "expose_public")``,
    ``("network_group", "network_aliases")`` → the labels with the name, the expose payload, the network.
    """
    if unknown := sorted(set(known) - CREATE_ARGUMENTS):
        raise TypeError(f"check_create_arguments() got unexpected arguments: {', '.join(unknown)}")
    checked: dict[str | tuple[str, str], Any] = {}
    for argument, rule in _CREATE_ARGUMENT_RULES.items():
        if argument in known:
            checked[argument] = rule(known[argument])
    for pair, joint_rule in _JOINT_CREATE_RULES.items():
        if all(argument in known for argument in pair):
            checked[pair] = joint_rule(*(known[argument] for argument in pair))
    return checked


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


# ---------------------------------------------------------------------------------------------------- uv
def classify_uv_script(
    script: str, *, is_file: Callable[[str], bool] | None = None, location: str | None = None
) -> str:
    """What a uv ``script`` is: ``"inline"`` (Python source: it has a line break), ``"url"`` (https),
    ``"file"`` or ``"command"`` (a program such as ``lighteval``, run as ``uv run lighteval``).

    With ``is_file`` (the caller's look at its disk) the rule is ``huggingface_hub``'s: an existing file
    is a file; a missing one that ends in .py/.sh/.yaml/.yml/.toml or has a path separator is the clear
    "does not exist" error; anything else is a command if it is a program name. Without it (no look
    yet), anything path-like is a ``"file"``. An ``http://`` URL is refused: the job runs the script with
    its secrets, and anyone on the path could swap it. ``location``: where ``is_file`` looked, for the
    message (an operator looks beside the DAG file)."""
    if not isinstance(script, str) or not script.strip():
        raise HfJobsInputError(
            "script is required: a local .py path, an https URL, inline Python source, or a command such as "
            "'lighteval'."
        )
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
    path_like = "/" in script or "\\" in script or script.lower().endswith(UV_FILE_SUFFIXES)
    if is_file is None:
        return "file" if path_like or not _COMMAND_RE.match(script) else "command"
    if is_file(script):
        return "file"
    if path_like:
        looked = f" (looked for {location})" if location and location != script else ""
        raise HfJobsInputError(
            f"script file {script!r} does not exist{looked}: pass an existing .py path, an https URL, inline "
            "Python source, or a command such as 'lighteval'."
        )
    if not _COMMAND_RE.match(script):
        raise HfJobsInputError(
            f"script {script!r} is no file, https URL, inline source (several lines) or command name: pass "
            "the program as script and its arguments as script_args, e.g. run_uv_job('python', "
            "script_args=['-c', 'print(1)'])."
        )
    return "command"


def _validate_script_args(script_args: Sequence[str] | None) -> list[str]:
    args = list(script_args or [])
    for position, part in enumerate(args):
        if not isinstance(part, str):
            raise HfJobsInputError(
                f"script_args[{position}] must be a string; got {type(part).__name__} {part!r}."
            )
    return args


def _validate_dependencies(dependencies: Sequence[str] | None) -> list[str]:
    for dep in dependencies or []:
        if not isinstance(dep, str) or not dep.strip():
            raise HfJobsInputError(
                f"dependencies must be requirement strings such as 'torch>=2.3'; got {dep!r}."
            )
    return list(dependencies or [])


def _validate_python(python: str | None) -> str | None:
    if python is not None and (not isinstance(python, str) or not python.strip()):
        raise HfJobsInputError(f"python must be a version string such as '3.12'; got {python!r}.")
    return python


_UV_ARGUMENT_RULES: dict[str, Callable[[Any], Any]] = {
    "script_args": _validate_script_args,
    "dependencies": _validate_dependencies,
    "python": _validate_python,
}


def check_uv_arguments(**known: Any) -> dict[str, Any]:
    """Check the uv arguments given (``script_args``, ``dependencies``, ``python``), and only those, as
    :func:`check_create_arguments` does for the create's; :func:`build_uv_command` gives all three."""
    if unknown := sorted(set(known) - set(_UV_ARGUMENT_RULES)):
        raise TypeError(f"check_uv_arguments() got unexpected arguments: {', '.join(unknown)}")
    return {name: rule(known[name]) for name, rule in _UV_ARGUMENT_RULES.items() if name in known}


def encode_script_source(script_source: bytes) -> str:
    """Script source as it travels in ``UV_SCRIPT_ENCODED``: base64, within what the API takes there."""
    encoded = base64.b64encode(script_source).decode("ascii")
    if len(encoded) > MAX_INLINE_SCRIPT_ENCODED_BYTES:
        limit_kb = MAX_INLINE_SCRIPT_ENCODED_BYTES * 3 // 4 // 1000
        raise HfJobsInputError(
            f"script is {len(script_source) // 1000} KB; scripts sent inside the job spec are limited to about "
            f"{limit_kb} KB. Serve it at an http(s) URL (or from a Hub repo) and pass the URL as script."
        )
    return encoded


def check_uv_env(env: Mapping[str, Any] | None, kind: str) -> None:
    """A file or inline script travels in ``UV_SCRIPT_ENCODED`` (see :func:`build_uv_command`): ``env``
    may not set it. ``kind`` is :func:`classify_uv_script`'s."""
    if kind in ("file", "inline") and isinstance(env, Mapping) and UV_SCRIPT_ENV in env:
        raise HfJobsInputError(f"env may not set {UV_SCRIPT_ENV}: it carries the script.")


def build_uv_command(
    *,
    script_args: list[str] | None = None,
    dependencies: list[str] | None = None,
    python: str | None = None,
    script_url: str | None = None,
    script_source: bytes | None = None,
    script_name: str = "script.py",
    script_command: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The job command (and extra environment) of a uv job.

    A URL or a command runs directly (``uv run ... <url or command> <args>``, as ``huggingface_hub``
    does). Source code travels
    inside the job spec, base64 in ``UV_SCRIPT_ENCODED``, and the command decodes it into the job's own
    working directory, so nothing is uploaded to a Hub repo or bucket. Script arguments are passed to
    ``bash -c`` as positional parameters, so they need no quoting.
    """
    checked = check_uv_arguments(script_args=script_args, dependencies=dependencies, python=python)
    args = checked["script_args"]
    uv_args: list[str] = []
    for dep in checked["dependencies"]:
        uv_args += ["--with", dep]
    if python is not None:
        uv_args += ["--python", python]
    direct = [target for target in (script_url, script_command) if target is not None]
    if len(direct) + (script_source is not None) != 1:
        raise HfJobsInputError("give exactly one of a script URL, a command and script source.")
    if direct:
        return ["uv", "run", *uv_args, direct[0], *args], {}
    assert script_source is not None
    encoded = encode_script_source(script_source)
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
            payload = loads_json(text)
        except JSONTooDeepError:
            payload = False  # no answer of the Jobs API: not quoted either
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
            errors = payload.get("errors")
            for item in errors if isinstance(errors, list) else ():
                if isinstance(item, dict) and item.get("message"):
                    parts.append(str(item["message"]))
        elif payload is None and not text.lstrip().startswith("<"):
            parts.append(text)
    unique = list(
        dict.fromkeys(part.strip()[:MAX_SERVER_TEXT_CHARS] for part in parts if part and part.strip())
    )
    return " ".join(unique).replace("\n", " ") or None


#: Longest piece of the server's own text quoted in an error message (each of header, ``error`` ...).
MAX_SERVER_TEXT_CHARS = 300
#: Deepest JSON nesting read from the server. A Jobs API answer is a few levels deep; a deeper one is
#: refused, since parsing or printing it could exhaust Python's recursion limit (a ``RecursionError`` out
#: of a hook, or out of the code that shows its message).
MAX_JSON_DEPTH = 64


class JSONTooDeepError(ValueError):
    """JSON nested deeper than :data:`MAX_JSON_DEPTH`; ``parsed=False``: so deep that the parser itself
    gave up (whether the rest was even JSON is unknown)."""

    def __init__(self, *, parsed: bool) -> None:
        super().__init__(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        self.parsed = parsed


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` for server answers: ``ValueError`` for anything that is not JSON, and
    :class:`JSONTooDeepError` (never ``RecursionError``) for JSON nested too deeply to handle safely."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise JSONTooDeepError(parsed=False) from None
    if isinstance(data, (dict, list)):
        brackets = (
            text.count("[") + text.count("{")
            if isinstance(text, str)
            else text.count(b"[") + text.count(b"{")
        )
        if brackets > MAX_JSON_DEPTH:  # only a body with that many brackets can be that deep
            _check_depth(data)
    return data


def _check_depth(data: dict[str, Any] | list[Any]) -> None:
    """Walk ``data`` without recursion; :class:`JSONTooDeepError` past :data:`MAX_JSON_DEPTH` levels."""
    stack: list[tuple[Iterable[Any], int]] = [(data.values() if isinstance(data, dict) else data, 1)]
    while stack:
        children, depth = stack.pop()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= MAX_JSON_DEPTH:
                    raise JSONTooDeepError(parsed=True)
                stack.append((child.values() if isinstance(child, dict) else child, depth + 1))


def body_limit(status_code: int, *, listing: bool = False) -> int:
    """How many bytes of an answer's body to read: see :data:`MAX_ERROR_BODY_BYTES` and the others. A
    transport reads at most this plus one byte, so that :func:`json_answer` can tell a body that was cut."""
    if is_error_status(status_code):
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
        return loads_json(content)
    except ValueError as exc:
        deep = isinstance(exc, JSONTooDeepError) and exc.parsed
        what = f"with {exc}, which no Jobs API answer is" if deep else "without JSON"
        raise HfJobsAPIError(
            f"Could not {action}: the server answered HTTP {status_code} {what}.", status_code=status_code
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
    retried: bool = True,
) -> HfJobsAPIError:
    """One provider exception, with a one-line message that says what to change (``retried=False``: the
    request was not retried, and the message does not claim it was).

    ``action`` says what was attempted ("create a job", "inspect job X"); the message never contains the
    token (it is only ever in the ``Authorization`` header, which is not read here).
    """
    server = server_error_text(body, headers)
    request_id = _header(headers, "x-request-id") or _header(headers, "x-amzn-trace-id")
    detail = f" Server said: {server}." if server else ""
    ref = f" (request id {request_id})" if request_id else ""
    after = ", still after retries" if retried else ""
    cls: type[HfJobsAPIError]
    if is_redirect(status_code):
        return HfJobsAPIError(redirect_message(status_code, headers, action), status_code=status_code)
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
            kind = "scheduled job" if "scheduled job" in action else "job"  # the scheduled routes say so
            text = (
                f"Could not {action}: {kind} {job_id} not found in namespace {namespace!r} (HTTP 404). Check "
                f"the {kind} id and the namespace it was created in."
            )
        else:
            text = f"Could not {action}: not found (HTTP 404). Check the namespace {namespace!r} and the endpoint."
    elif status_code in (400, 422):
        cls = HfJobsBadRequestError
        text = f"Could not {action}: the server rejected the request (HTTP {status_code})."
    elif status_code == 429:
        cls = HfJobsRateLimitError
        text = f"Could not {action}: rate limited by the Hub (HTTP 429){after}."
    elif status_code >= 500:
        cls = HfJobsServerError
        text = f"Could not {action}: the Hub failed (HTTP {status_code}){after}."
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


def is_redirect(status_code: int) -> bool:
    return 300 <= status_code < 400


def is_error_status(status_code: int) -> bool:
    """An answer both hooks turn into an error: a 4xx or 5xx, and a redirect, which no hook follows."""
    return status_code >= 300


def redirect_message(status_code: int, headers: Mapping[str, str] | None, action: str) -> str:
    """The one redirect rule, for both hooks and every route: never followed, to another origin or not, so
    that neither the token nor a body holding secret values is ever sent anywhere but the endpoint (the
    Jobs API does not redirect; a proxy or a moved endpoint does). Only the target's origin is shown."""
    location = _header(headers, "location")
    origin = None
    if location:
        try:
            parts = urlsplit(location)
            origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None
        except ValueError:
            origin = None
    where = f" to {origin[:200]}" if origin else ""
    fix = f" (perhaps {origin[:200]})" if origin else ""
    return (
        f"Could not {action}: the endpoint answered with a redirect (HTTP {status_code}){where}, which is not "
        "followed so that neither the token nor the request's body (which may hold secret values) goes "
        f"anywhere else. Set the connection's host to the address that answers itself{fix}."
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


def check_http_credentials(endpoint: str, token: str) -> None:
    """An endpoint and a token that HTTP can carry, checked where a hook reads them: a bad port, an
    unclosed IPv6 host or a token with a character no header holds would otherwise fail deep in a
    transport, as a bare ``ValueError`` or ``UnicodeEncodeError``. The token is never quoted."""
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError as exc:
        raise HfJobsInputError(
            f"the Hub endpoint {endpoint!r} is not a valid URL ({exc}): fix the connection's host."
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HfJobsInputError(
            f"the Hub endpoint {endpoint!r} is not an http(s) URL with a host: fix the connection's host."
        )
    if not (token.isascii() and token.isprintable()):
        raise HfJobsInputError(
            "the Hugging Face token contains a character an HTTP header cannot carry (a non-ASCII or control "
            "character, often from copying it): paste the token again."
        )


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
        if value.isascii() and value.isdigit():  # "²".isdigit() too, and float("²") raises
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
            if self.waited + delay > self.policy.max_total_wait:
                raise failure  # a Retry-After of days is no retry (a stream would sleep that long)
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


def outcome_unknown(error: HfJobsError) -> HfJobsError:
    """``error`` of a request that may have been done anyway (see :attr:`ApiCall.idempotent`), saying so."""
    note = " It may have happened anyway: check before trying again."
    if isinstance(error, HfJobsAPIError):
        return type(error)(
            f"{error}{note}", status_code=error.status_code, server_message=error.server_message,
            request_id=error.request_id, retry_after=error.retry_after,
        )  # fmt: skip
    return type(error)(f"{error}{note}")


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


# ------------------------------------------------------------------------------------------ scheduled jobs
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


def uv_job_command(
    script: str,
    kind: str,
    *,
    script_args: list[str] | None = None,
    dependencies: list[str] | None = None,
    python: str | None = None,
    read_file: Callable[[str], bytes] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command and extra environment of a uv job whose ``script`` is of ``kind``
    (:func:`classify_uv_script`); a ``"file"`` is read with ``read_file`` (the caller's disk)."""
    uv: dict[str, Any] = {"script_args": script_args, "dependencies": dependencies, "python": python}
    if kind == "file":
        if read_file is None:
            raise HfJobsInputError(f"script file {script!r} cannot be read here: pass its source instead.")
        name = posixpath.basename(script)
        return build_uv_command(**uv, script_source=read_file(script), script_name=name or "script.py")
    if kind == "inline":
        return build_uv_command(**uv, script_source=script.encode("utf-8"))
    if kind == "url":
        return build_uv_command(**uv, script_url=script)
    return build_uv_command(**uv, script_command=script)


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


# ------------------------------------------------------------------ scheduled jobs managed from Airflow
#: Label naming the Airflow task that manages a scheduled job: the same DAG and task find the same one.
SCHEDULED_TASK_LABEL = "airflow-scheduled-task"


def scheduled_task_labels(dag_id: str, task_id: str) -> dict[str, str]:
    """The labels a scheduled job managed by task ``task_id`` of ``dag_id`` carries: a uuid5 of the two
    (no run: every DAG run manages the same scheduled job), and readable ``airflow-dag``/``airflow-task``."""
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"airflow-scheduled-task:{dag_id}\x00{task_id}").hex
    return {
        SCHEDULED_TASK_LABEL: key,
        "airflow-dag": _sanitize_name(dag_id)[:MAX_LABEL_LENGTH],
        "airflow-task": _sanitize_name(task_id)[:MAX_LABEL_LENGTH],
    }


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
