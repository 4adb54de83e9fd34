"""Buckets and volumes of the local Jobs server: directories on this machine, mounted into a job's view.

A **bucket** is a directory the server keeps, ``<state dir>/buckets/<namespace>/<name>/``: created through
``POST /api/buckets/{ns}/{name}`` (``hf buckets create``), or by making the directory yourself; files put
there are the bucket's files. A ``bucket`` volume mounts it (or its folder ``path``) at ``mountPath``, read
and write unless ``readOnly``; what one job writes there the next one reads.

**model / dataset / space** volumes come from a directory the user points the server at
(``--volume-source-dir DIR``): ``DIR/models/<source>``, ``DIR/datasets/<source>``, ``DIR/spaces/<source>``,
always read-only, as on the Hub. Without one they are refused with a 422 that says so.

The mounts are made for the job's process only, in a private mount namespace (:mod:`.mounts`), so nothing
changes for the rest of the machine. What can be checked when the job is created is checked then (the
bucket or repo exists, the mount path can be made, the machine allows mount namespaces), with a 4xx naming
the volume; a folder ``path`` that does not exist fails the job when it starts, as on the Hub.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from airflow_provider_hfjobs.jobs import format_timestamp
from airflow_provider_hfjobs.local.spec import SpecError, system_directory, validate_bucket_name
from airflow_provider_hfjobs.local.store import private_directory

#: Bucket metadata kept beside the buckets (never inside one: a job would see it).
RECORDS_DIR = "bucket-records"
BUCKETS_DIR = "buckets"
#: The helper that makes a job's mounts (:mod:`.mounts`), run as a script: never imported here.
MOUNTS_SCRIPT = str(Path(__file__).with_name("mounts.py"))


class VolumeError(Exception):
    """A volume that cannot be mounted when the job starts: the job fails with this message."""


class BucketStore:
    """The buckets under ``<state dir>/buckets``: a directory each, plus a small record of its settings."""

    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir) / BUCKETS_DIR
        self.records = Path(state_dir) / RECORDS_DIR

    def path(self, bucket_id: str) -> Path:
        namespace, name = bucket_id.split("/", 1)
        return self.root / namespace / name

    def exists(self, bucket_id: str) -> bool:
        return self.path(bucket_id).is_dir()

    def create(self, namespace: str, name: str, settings: dict[str, Any]) -> None:
        """Make the bucket's directory; ``FileExistsError`` if it is there already."""
        validate_bucket_name(namespace, name)
        private_directory(self.root)
        private_directory(self.root / namespace)
        (self.root / namespace / name).mkdir(mode=0o700)
        private_directory(self.records / namespace)
        record = {"createdAt": time.time(), **settings}
        (self.records / namespace / f"{name}.json").write_text(json.dumps(record), encoding="utf-8")

    def info(self, bucket_id: str) -> dict[str, Any] | None:
        """``GET /api/buckets/{id}``: id, privacy, creation time, size and file count (walks the directory)."""
        path = self.path(bucket_id)
        if not path.is_dir():
            return None
        namespace, name = bucket_id.split("/", 1)
        try:
            record = json.loads((self.records / namespace / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):  # a directory made by hand: as old as the directory
            record = {"createdAt": path.stat().st_mtime}
        size = files = 0
        for directory, _, names in os.walk(path):
            for file_name in names:
                try:
                    size += os.lstat(os.path.join(directory, file_name)).st_size
                    files += 1
                except OSError:
                    continue
        info = {
            "id": bucket_id,
            "name": name,
            "private": bool(record.get("private", False)),
            "createdAt": format_timestamp(record["createdAt"]),
            "size": size,
            "totalFiles": files,
        }
        for key in ("resourceGroupId", "region"):
            if record.get(key) is not None:
                info[key] = record[key]
        return info

    def list_buckets(self, namespace: str) -> list[dict[str, Any]]:
        folder = self.root / namespace
        if not folder.is_dir():
            return []
        names = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
        return [info for name in names if (info := self.info(f"{namespace}/{name}")) is not None]


@dataclass(frozen=True)
class Mount:
    """One volume as the job's mount namespace makes it: ``source`` (here) appears at ``target``."""

    source: str
    target: str
    read_only: bool

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "readOnly": self.read_only}


def _within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


class Volumes:
    """Checks a job's volumes against this machine and turns them into mounts."""

    def __init__(
        self,
        buckets: BucketStore,
        source_dir: str | Path | None = None,
        state_dir: str | Path | None = None,
        mount_namespaces: bool = True,
    ) -> None:
        self.buckets = buckets
        self.source_dir = None if source_dir is None else Path(source_dir).resolve()
        self.state_dir = None if state_dir is None else Path(state_dir).resolve()
        #: Load-testing mode runs no process: nothing is mounted, so the machine need not allow it.
        self.mount_namespaces = mount_namespaces
        self._probe: str | Literal[False] | None = False  # False: not probed yet; None: works; str: why not

    def protected(self) -> list[tuple[str, str]]:
        """Paths a mount must not cover, with what they are to the job."""
        paths = [
            (str(Path(sys.prefix).resolve()), "the Python the local server runs jobs with"),
            (str(Path(sys.base_prefix).resolve()), "the Python the local server runs jobs with"),
            (str(Path(shutil.which("uv") or sys.executable).resolve().parent), "the job's uv"),
        ]
        if self.state_dir is not None:
            paths.append((str(self.state_dir), "the server's state directory (the job's working directory)"))
        return paths

    def check(self, volumes: list[dict[str, Any]]) -> None:
        """At create: every volume can be honoured here, else ``SpecError`` (404/422) naming it."""
        targets = [volume["mountPath"] for volume in volumes]
        for index, volume in enumerate(volumes):
            key = f"volumes[{index}] ({volume['type']} {volume['source']} at {volume['mountPath']})"
            for other in targets:
                if other != volume["mountPath"] and _within(volume["mountPath"], other):
                    raise SpecError(
                        422,
                        f"{key}: the local Jobs server does not mount a volume inside another one "
                        f"({other}); use separate mount paths",
                    )
            self._check_source(volume, key)
            self._check_target(volume["mountPath"], key)
        if volumes and self.mount_namespaces and (why := self.probe()):
            raise SpecError(
                422,
                "volumes are not supported by the local Jobs server on this machine: they are mounted in a "
                f"private mount namespace (as root, or in a user namespace otherwise), which fails here: {why}",
            )

    def _check_source(self, volume: dict[str, Any], key: str) -> None:
        if volume["type"] == "bucket":
            if not self.buckets.exists(volume["source"]):
                raise SpecError(
                    404,
                    f"{key}: bucket {volume['source']} not found on the local Jobs server. Create it first "
                    f"(hf buckets create {volume['source']}), or make the directory "
                    f"{self.buckets.path(volume['source'])}",
                )
            return
        if self.source_dir is None:
            raise SpecError(
                422,
                f"{key}: {volume['type']} volumes are not supported by this local Jobs server: it downloads "
                "nothing from the Hub. Start it with --volume-source-dir DIR (volume_source_dir= in Python) "
                f"and put the {volume['type']}'s files in DIR/{volume['type']}s/{volume['source']}",
            )
        if volume.get("revision") not in (None, "main"):
            raise SpecError(
                422,
                f"{key}: revision {volume['revision']!r} is not supported by the local Jobs server: it "
                f"serves one version of each {volume['type']}, the directory "
                f"{self.repo_path(volume)}. Leave revision out (or 'main').",
            )
        if not self.repo_path(volume).is_dir():
            raise SpecError(
                404,
                f"{key}: {volume['type']} {volume['source']} not found: the local Jobs server reads it from "
                f"{self.repo_path(volume)}, which is not a directory",
            )

    def _check_target(self, target: str, key: str) -> None:
        """``target`` (normalized by :mod:`.spec`, which refused the system directories) is a place this
        machine can mount at without hiding what jobs run on; a symbolic link is followed first."""
        real = os.path.realpath(target)
        for path in dict.fromkeys((target, real)):
            shown = target if path == target else f"{target} (a link to {path})"
            if (system := system_directory(path)) is not None:
                raise SpecError(
                    400, f"{key}: mountPath {shown} would hide the system directory {system}: mount elsewhere"
                )
            if self.state_dir is not None and _within(path, str(self.state_dir)):
                raise SpecError(
                    400,
                    f"{key}: mountPath {shown} is inside the local Jobs server's state directory "
                    f"({self.state_dir}, where jobs run): mount elsewhere, e.g. at /data",
                )
        for path, what in self.protected():
            if _within(path, target):
                raise SpecError(
                    422, f"{key}: mountPath {target} would hide {what} ({path}) from the job's process"
                )
        location = Path(target)
        if location.exists():
            if not location.is_dir() or location.is_symlink():
                raise SpecError(422, f"{key}: mountPath {target} exists here and is not a directory")
        elif location.parent != Path("/"):
            raise SpecError(
                422,
                f"{key}: the local Jobs server mounts a volume at a new top-level directory (such as "
                f"/{location.parts[1]}) or at an existing directory; {target} is neither (its job runs on "
                "this machine's file system, not in a container)",
            )

    def repo_path(self, volume: dict[str, Any]) -> Path:
        assert self.source_dir is not None
        return self.source_dir / f"{volume['type']}s" / volume["source"]

    def probe(self) -> str | None:
        """Whether this machine lets a process make a private mount namespace (checked once)."""
        if self._probe is False:
            probe_dir = Path(self.state_dir or "/tmp") / "mount-probe"
            private_directory(probe_dir)
            try:
                done = subprocess.run(
                    [sys.executable, "-I", "-S", MOUNTS_SCRIPT, "--probe", str(probe_dir)],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                self._probe = None if done.returncode == 0 else (done.stderr.strip() or "unknown error")
            except (OSError, subprocess.SubprocessError) as exc:
                self._probe = str(exc)
        return self._probe

    def resolve(self, volumes: list[dict[str, Any]]) -> list[Mount]:
        """At start: the mounts to make, or ``VolumeError`` (a missing bucket, repo or folder)."""
        result = []
        for volume in volumes:
            if volume["type"] == "bucket":
                base = self.buckets.path(volume["source"])
                what = f"bucket {volume['source']}"
            else:
                if self.source_dir is None:
                    raise VolumeError(f"Volume {volume['mountPath']}: no --volume-source-dir on this server")
                base = self.repo_path(volume)
                what = f"{volume['type']} {volume['source']}"
            if not base.is_dir():
                raise VolumeError(f"Volume {volume['mountPath']}: {what} not found ({base})")
            source = base / volume["path"] if volume.get("path") else base
            if not source.is_dir():
                raise VolumeError(
                    f"Volume {volume['mountPath']}: no folder {volume['path']!r} in {what} ({source})"
                )
            result.append(Mount(str(source.resolve()), volume["mountPath"], bool(volume["readOnly"])))
        return result
