"""What the local Jobs server accepts in a request body: every field of the API, checked, or a 4xx naming it.

The server is faithful or loud: each field of a create body (the reference's §3) is either honoured or
refused, never accepted and dropped, so that a DAG relying on a field cannot pass locally and break on the
Hub. This module checks the shape of the bodies (a wrong type or an unknown field is a ``400`` naming the
field); what this machine can do with a valid body (a bucket that exists, an architecture it runs, a mount
namespace) is :mod:`.volumes`' and :mod:`.app`'s business (``404``/``409``/``422``).
"""

from __future__ import annotations

import platform
import re
from typing import Any

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.jobs import validate_labels
from airflow_provider_hfjobs.local.hardware import FLAVORS

#: Every field a create body may carry (huggingface_hub 2.4's ``_create_job_spec`` plus the JS client's
#: ``arch`` and ``arguments``), in the reference's order.
CREATE_FIELDS = (
    "command", "arguments", "environment", "flavor", "secrets", "timeoutSeconds", "attempts", "labels",
    "volumes", "expose", "ssh", "network", "resourceGroupId", "dockerImage", "spaceId", "arch",
)  # fmt: skip
VOLUME_TYPES = ("bucket", "model", "dataset", "space")
VOLUME_FIELDS = ("type", "source", "mountPath", "revision", "readOnly", "path")
EXPOSE_FIELDS = ("ports", "portsPublic")
ARCHES = ("amd64", "arm64")
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_BUCKET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
#: From ``run_job``'s docstring: "Lowercase alphanumerics and dashes, 46 characters max" (34 for aliases).
_NETWORK_GROUP_RE = re.compile(r"^[a-z0-9-]{1,46}$")
_NETWORK_ALIAS_RE = re.compile(r"^[a-z0-9-]{1,34}$")
#: The Hub's rule for ``environment`` and ``secrets`` names (as the hook's): a shell variable name.
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
#: Top-level directories a volume may not cover, nor anything under them (plus ``/``, every ``/lib*`` and
#: the server's state directory, refused by :mod:`.volumes`): the job's command runs on this machine's
#: own files, and a mount there would hide what it (or the mount helper) runs on.
SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/var", "/run", "/boot")


class SpecError(ValueError):
    """A request body the server refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def bad(message: str) -> SpecError:
    return SpecError(400, message)


def host_arch() -> str:
    """This machine's architecture in the API's words (``amd64``/``arm64``), or what ``uname -m`` says."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def refuse_unknown(body: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """A key nobody defined is refused: a typo would otherwise be a setting silently not applied."""
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise bad(
            f"Unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in {where}: "
            f"the Jobs API defines {', '.join(known)}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad(f"{key} must be an object of string values")
    return dict(value)


def _variables(body: dict[str, Any], key: str) -> dict[str, str]:
    """``environment`` or ``secrets``: variable names, no NUL in a value (no process could get it). A
    value is never quoted: a secret's would end up in a client's log."""
    variables = _string_map(body, key)
    for name, value in variables.items():
        if not _ENV_NAME_RE.match(name):
            raise bad(
                f"{key}: {name!r} is not an environment variable name: use letters, digits and '_', not "
                "starting with a digit (no '=', not empty)"
            )
        if "\0" in value:
            raise bad(
                f"{key}[{name!r}] contains a NUL byte, which no environment variable can hold: remove it"
            )
    return variables


def _string_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(part, str) for part in value):
        raise bad(f"{key} must be an array of strings")
    for position, part in enumerate(value):
        if "\0" in part:
            raise bad(f"{key}[{position}] contains a NUL byte, which no program argument can hold: remove it")
    return list(value)


def system_directory(path: str) -> str | None:
    """The system directory ``path`` (normalized) is, or is inside, if any: ``/usr/lib`` → ``/usr``."""
    top = "/" + path.lstrip("/").split("/", 1)[0]
    if top == "/" or top in SYSTEM_DIRS or top.startswith("/lib"):
        return top
    return None


def normalize_mount_path(value: str) -> str:
    """An absolute path with every ``//``, ``.`` and trailing ``/`` gone (``posixpath.normpath`` keeps a
    leading ``//``): ``//proc``, ``/./proc`` and ``/proc/`` are all ``/proc``."""
    return "/" + "/".join(part for part in value.split("/") if part not in ("", "."))


def check_labels(value: Any, key: str = "labels") -> dict[str, str]:
    try:
        return validate_labels(value, field_name=key)
    except HfJobsInputError as exc:
        raise bad(str(exc)) from None


def check_expose(value: Any, key: str = "expose") -> dict[str, list[int]]:
    """``{"ports": [int], "portsPublic": [int]}``; public ports must be exposed too (the reference's §3)."""
    if not isinstance(value, dict):
        raise bad(f'{key} must be an object {{"ports": [int], "portsPublic": [int]}}')
    refuse_unknown(value, EXPOSE_FIELDS, key)
    lists: dict[str, list[int]] = {}
    for name in EXPOSE_FIELDS:
        ports = value.get(name) or []
        if not isinstance(ports, list) or not all(_is_int(p) and 1 <= p <= 65535 for p in ports):
            raise bad(f"{key}.{name} must be an array of port numbers (1-65535)")
        lists[name] = list(dict.fromkeys(ports))
    if not_exposed := [p for p in lists["portsPublic"] if p not in lists["ports"]]:
        raise bad(f"{key}.portsPublic {not_exposed} must also be in {key}.ports")
    return {"ports": lists["ports"], "portsPublic": lists["portsPublic"]}


def _check_ssh(value: Any) -> dict[str, bool]:
    if not isinstance(value, dict) or not isinstance(value.get("enabled"), bool):
        raise bad('ssh must be an object {"enabled": true}')
    refuse_unknown(value, ("enabled",), "ssh")
    return {"enabled": value["enabled"]}


def _check_network(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad('network must be an object {"group": str, "aliases": [str]}')
    refuse_unknown(value, ("group", "aliases"), "network")
    group = value.get("group")
    if not isinstance(group, str) or not _NETWORK_GROUP_RE.match(group):
        raise bad(f"network.group {group!r} must be 1-46 lowercase letters, digits or dashes")
    aliases = value.get("aliases") or []
    if not isinstance(aliases, list) or not all(
        isinstance(a, str) and _NETWORK_ALIAS_RE.match(a) for a in aliases
    ):
        raise bad("network.aliases must be an array of 1-34 lowercase letters, digits or dashes each")
    if len(set(aliases)) != len(aliases):
        raise bad("network.aliases must be unique within the job")
    return {"group": group, "aliases": list(aliases)}


def clean_relative_path(value: str, key: str) -> str:
    """A folder inside a bucket or repo: relative, normalized, never leaving it (``..``)."""
    parts = [part for part in value.strip("/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise bad(f"{key} {value!r} must stay inside the bucket or repo (no '..')")
    return "/".join(parts)


def _check_volume(value: Any, index: int) -> dict[str, Any]:
    key = f"volumes[{index}]"
    if not isinstance(value, dict):
        raise bad(f"{key} must be an object {{type, source, mountPath, revision?, readOnly?, path?}}")
    refuse_unknown(value, VOLUME_FIELDS, key)
    kind = value.get("type")
    if kind not in VOLUME_TYPES:
        raise bad(f"{key}.type {kind!r} must be one of {', '.join(VOLUME_TYPES)}")
    source = value.get("source")
    if not isinstance(source, str) or not _REPO_ID_RE.match(source):
        raise bad(f"{key}.source {source!r} must be 'namespace/name'")
    mount_path = value.get("mountPath")
    if not isinstance(mount_path, str) or not mount_path.startswith("/") or "\0" in mount_path:
        raise bad(f"{key}.mountPath {mount_path!r} must be an absolute path such as '/data'")
    if ".." in mount_path.split("/"):
        raise bad(f"{key}.mountPath {mount_path!r} must not contain '..'")
    mount_path = normalize_mount_path(mount_path)
    if mount_path == "/":
        raise bad(f"{key}.mountPath must not be '/'")
    if (system := system_directory(mount_path)) is not None:
        raise bad(
            f"{key}.mountPath {value['mountPath']!r} is {'inside ' if system != mount_path else ''}the "
            f"system directory {system}, which the local Jobs server never covers (the job's command runs "
            "on this machine's own files): mount the volume elsewhere, e.g. at '/data'"
        )
    volume: dict[str, Any] = {"type": kind, "source": source, "mountPath": mount_path}
    revision = value.get("revision")
    if revision is not None:
        if kind == "bucket":
            raise bad(
                f"{key}.revision: a bucket has no revisions (revision applies to model, dataset, space)"
            )
        if not isinstance(revision, str) or not revision:
            raise bad(f"{key}.revision must be a non-empty string")
        volume["revision"] = revision
    read_only = value.get("readOnly")
    if read_only is not None and not isinstance(read_only, bool):
        raise bad(f"{key}.readOnly must be true or false")
    # Volume's docstring: "Forced True for repos, defaults to False for buckets".
    volume["readOnly"] = True if kind != "bucket" else bool(read_only)
    path = value.get("path")
    if path is not None:
        if not isinstance(path, str):
            raise bad(f"{key}.path must be a string (a folder inside the {kind})")
        if cleaned := clean_relative_path(path, f"{key}.path"):
            volume["path"] = cleaned
    return volume


def _check_volumes(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise bad("volumes must be an array of {type, source, mountPath, ...} objects")
    volumes = [_check_volume(item, index) for index, item in enumerate(value)]
    seen: set[str] = set()
    for volume in volumes:
        if volume["mountPath"] in seen:
            raise bad(f"volumes: two volumes are mounted at {volume['mountPath']}")
        seen.add(volume["mountPath"])
    return volumes


def validate_create(body: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The create body, checked field by field; returns (the spec as stored, without secrets; secrets).

    Only the shape is checked here: whether this machine can honour a valid value is the caller's check.
    """
    if not isinstance(body, dict):
        raise bad("Request body must be a JSON object")
    refuse_unknown(body, CREATE_FIELDS, "the job spec")
    images = [key for key in ("dockerImage", "spaceId") if body.get(key)]
    if len(images) != 1:
        raise bad("Exactly one of dockerImage and spaceId is required")
    if not isinstance(body[images[0]], str):
        raise bad(f"{images[0]} must be a string")
    command = body.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(part, str) for part in command):
        raise bad("command must be a non-empty array of strings")
    spec: dict[str, Any] = {
        images[0]: body[images[0]],
        "command": _string_list(command, "command"),
        "arguments": _string_list(body.get("arguments") or [], "arguments"),
        "environment": _variables(body, "environment"),
    }
    secret_values = _variables(body, "secrets")
    flavor = body.get("flavor") or "cpu-basic"
    if flavor not in FLAVORS:
        raise bad(f"Invalid flavor '{flavor}'. Valid flavors: {', '.join(sorted(FLAVORS))}")
    spec["flavor"] = flavor
    timeout = body.get("timeoutSeconds")
    if timeout is not None:
        if not _is_int(timeout) or timeout <= 0:
            raise bad("timeoutSeconds must be a positive integer")
        spec["timeoutSeconds"] = timeout
    attempts = body.get("attempts")
    if attempts is not None:
        if not _is_int(attempts) or attempts < 1:
            raise bad("attempts must be a positive integer (the total number of tries, 1 = no retry)")
        spec["attempts"] = attempts
    spec["labels"] = check_labels(body.get("labels"))
    if body.get("volumes") is not None:
        spec["volumes"] = _check_volumes(body["volumes"])
    if body.get("expose") is not None:
        spec["expose"] = check_expose(body["expose"])
    if body.get("ssh") is not None:
        spec["ssh"] = _check_ssh(body["ssh"])
    if body.get("network") is not None:
        spec["network"] = _check_network(body["network"])
    group_id = body.get("resourceGroupId")
    if group_id is not None:
        if not isinstance(group_id, str) or not group_id.strip():
            raise bad("resourceGroupId must be a non-empty string")
        spec["resourceGroupId"] = group_id
    arch = body.get("arch")
    if arch is not None:
        if arch not in ARCHES:
            raise bad(f"arch {arch!r} must be one of {', '.join(ARCHES)}")
        if arch != host_arch():
            raise SpecError(
                422,
                f"arch {arch!r} is not supported by the local Jobs server: it runs each job as a process "
                f"of this machine, which is {host_arch()}. Leave arch out, or set it to {host_arch()!r}.",
            )
        spec["arch"] = arch
    return spec, secret_values


def validate_bucket_name(namespace: str, name: str) -> None:
    """Bucket names as repo names: letters, digits, ``-``, ``_``, ``.``; at most 96 characters."""
    if not _BUCKET_NAME_RE.match(name) or name.endswith(".") or ".." in name:
        raise bad(f"Invalid bucket name {namespace}/{name!r}: use letters, digits, '-', '_' or '.' (max 96)")
