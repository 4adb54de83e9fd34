"""The create arguments of ``run_job``, each with its rule: bad input fails with a message naming the
field and the fix before any request is sent (secret values never appear in it).
"""

from __future__ import annotations

import difflib
import hashlib
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, overload

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.jobs.models import Volume

DEFAULT_FLAVOR = "cpu-basic"


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


_LABEL_RE = re.compile(r"^[A-Za-z0-9_-]+\Z")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]+\Z")
_TIMEOUT_FACTORS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


MAX_LABEL_LENGTH = 100
#: What a volume can mount (``huggingface_hub.Volume.type``).
VOLUME_TYPES = ("bucket", "model", "dataset", "space")
#: A network group and an alias, as the ``run_job`` docstring of ``huggingface_hub`` 2.4 gives them:
#: lower-case letters, digits and dashes, at most 46 and 34 characters.
_NETWORK_GROUP_RE = re.compile(r"^[a-z0-9-]{1,46}\Z")
_NETWORK_ALIAS_RE = re.compile(r"^[a-z0-9-]{1,34}\Z")


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


_VOLUME_KEYS = {
    "type": "type", "source": "source", "mountPath": "mount_path", "mount_path": "mount_path",
    "revision": "revision", "readOnly": "read_only", "read_only": "read_only", "path": "path",
}  # fmt: skip


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


@overload
def validate_flavor(flavor: str) -> str: ...
@overload
def validate_flavor(flavor: None) -> None: ...
@overload
def validate_flavor(flavor: str | None) -> str | None: ...
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


@overload
def validate_job_name(name: str) -> str: ...
@overload
def validate_job_name(name: None) -> None: ...
@overload
def validate_job_name(name: str | None) -> str | None: ...
def validate_job_name(name: str | None) -> str | None:
    """A job name: it travels as the ``name`` label, so a label value's rules apply."""
    return None if name is None else validate_labels({"name": name}, field_name="name")["name"]


def job_labels(labels: Mapping[str, Any] | None, name: str | None) -> dict[str, str]:
    """The labels with the job name among them: given as ``name=`` or as ``labels['name']``, not both."""
    clean = validate_labels(labels)
    if name is not None:
        if "name" in clean:
            raise HfJobsInputError("give the job name either as name= or as labels['name'], not both.")
        clean["name"] = validate_job_name(name)
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
