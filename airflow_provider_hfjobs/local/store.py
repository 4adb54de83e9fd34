"""Job records and their log buffers, for the local Jobs server, kept in a state directory.

Everything here runs on the server's event loop. A record knows its spec, stage, timestamps and log
lines, renders itself as the API's job JSON (camelCase, ``...Z`` timestamps, secret *names* only), and
wakes the log streams that wait on it whenever a line arrives or the stage changes.

With a root directory, every job has ``jobs/<id>/``: ``job.json`` (the record, rewritten atomically on
every change), ``secrets.json`` (mode 0600: a job still waiting must get its secrets after a restart) and
the files the job's shim writes (``log.jsonl``, ``exit.json``, ``work/``; see :mod:`.shim`). A new
server on the same root loads them all, so a restart loses no job and no line.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow_provider_hfjobs.jobs import DEFAULT_JOB_TIMEOUT_SECONDS, JobStage, format_timestamp
from airflow_provider_hfjobs.local.shim import LOG_FILE, write_json_atomically

RECORD_FILE = "job.json"
SECRETS_FILE = "secrets.json"
#: What ``job.json`` holds besides the spec (the log and secrets have their own files).
_PERSISTED = (
    "id", "namespace", "spec", "created_at", "stage", "message", "started_at", "finished_at",
    "cancel_requested", "pid", "pid_started",
)  # fmt: skip


def owner_id(namespace: str) -> str:
    """A stable 24-hex id for a namespace, shaped like the Hub's ids."""
    return hashlib.sha256(f"owner:{namespace}".encode()).hexdigest()[:24]


@dataclass
class JobRecord:
    """One job: what was asked (``spec``, secrets kept apart) and what happened."""

    id: str
    namespace: str
    spec: dict[str, Any]
    secrets: dict[str, str]
    created_at: float = field(default_factory=time.time)
    stage: JobStage = JobStage.SCHEDULING
    message: str | None = "Waiting for hardware"
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    #: The job's shim process and its start time (``/proc`` clock ticks: a reused pid is not the shim).
    pid: int | None = None
    pid_started: int | None = None
    #: Where the job's files live (``None``: in memory only).
    directory: Path | None = None
    #: Bytes of ``log.jsonl`` already turned into ``log`` lines.
    log_offset: int = 0
    log: list[tuple[float, str]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    # ------------------------------------------------------------------------------------ state changes
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def wake(self) -> None:
        """Wake whatever waits on this job (a closing server ends its log streams this way)."""
        self._notify()

    def add_line(self, text: str, moment: float | None = None) -> None:
        self.log.append((time.time() if moment is None else moment, text))
        self._notify()

    def mark_running(self, pid: int | None = None, pid_started: int | None = None) -> None:
        self.stage, self.message, self.started_at = JobStage.RUNNING, None, time.time()
        self.pid, self.pid_started = pid, pid_started
        self.save()
        self._notify()

    def request_cancel(self) -> None:
        self.cancel_requested = True
        self.save()

    def set_labels(self, labels: dict[str, str]) -> None:
        self.spec["labels"] = labels
        self.save()

    def finish(self, stage: JobStage, message: str | None = None) -> None:
        """Make the job terminal (once); log streams see the stage before they close."""
        if self.stage.is_terminal:
            return
        self.stage, self.message, self.finished_at = stage, message, time.time()
        self.save()
        self._notify()

    # ------------------------------------------------------------------------------------- persistence
    def save(self) -> None:
        if self.directory is None:
            return
        record = {name: getattr(self, name) for name in _PERSISTED}
        write_json_atomically(str(self.directory / RECORD_FILE), record)

    @classmethod
    def load(cls, directory: Path) -> JobRecord:
        record = json.loads((directory / RECORD_FILE).read_text(encoding="utf-8"))
        secret_values = json.loads((directory / SECRETS_FILE).read_text(encoding="utf-8"))
        job = cls(**{**record, "stage": JobStage(record["stage"]), "secrets": secret_values})
        job.directory = directory
        job.read_log()
        return job

    def read_log(self) -> None:
        """Take the complete lines the shim appended to ``log.jsonl`` since the last call."""
        if self.directory is None:
            return
        try:
            with open(self.directory / LOG_FILE, "rb") as handle:
                handle.seek(self.log_offset)
                data = handle.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        if not end:
            return
        for raw in data[:end].splitlines():
            entry = json.loads(raw)
            self.log.append((entry["t"], entry["line"]))
        self.log_offset += end
        self._notify()

    async def wait_changed(self, timeout: float) -> bool:
        """Wait for the next line or stage change; ``False`` when ``timeout`` passed first."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------------------------------- views
    @property
    def timeout_seconds(self) -> int:
        return int(self.spec.get("timeoutSeconds") or DEFAULT_JOB_TIMEOUT_SECONDS)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.spec.get("labels") or {})

    def matches(self, stages: set[str], labels: dict[str, str]) -> bool:
        if stages and self.stage.value not in stages:
            return False
        own = self.labels
        return all(own.get(key) == value for key, value in labels.items())

    def durations(self, now: float | None = None) -> dict[str, int | None]:
        now = time.time() if now is None else now
        end = self.finished_at or now
        scheduling_end = self.started_at or end
        return {
            "schedulingSecs": int(scheduling_end - self.created_at),
            "runningSecs": None if self.started_at is None else int(end - self.started_at),
            "totalSecs": int(end - self.created_at),
        }

    def to_json(self) -> dict[str, Any]:
        """The job as the API returns it. Secrets appear as names only."""
        owner = {"id": owner_id(self.namespace), "name": self.namespace, "type": "user"}
        return {
            "id": self.id,
            "type": "job",
            "createdAt": format_timestamp(self.created_at),
            "startedAt": format_timestamp(self.started_at) if self.started_at else None,
            "finishedAt": format_timestamp(self.finished_at) if self.finished_at else None,
            "dockerImage": self.spec.get("dockerImage"),
            "spaceId": self.spec.get("spaceId"),
            "command": list(self.spec.get("command") or []),
            "arguments": list(self.spec.get("arguments") or []),
            "environment": dict(self.spec.get("environment") or {}),
            "secrets": sorted(self.secrets),
            "flavor": self.spec.get("flavor"),
            "labels": self.labels,
            "timeoutSeconds": self.timeout_seconds,
            "owner": owner,
            "initiator": {"type": "user", "id": owner["id"], "name": self.namespace},
            "status": {"stage": self.stage.value, "message": self.message},
            "durations": self.durations(),
        }

    def marker(self) -> tuple[float, str]:
        """The ``===== Job started`` event every log connection opens with (stable across connections)."""
        moment = datetime.fromtimestamp(self.created_at, tz=UTC)
        return self.created_at, f"===== Job started at {moment:%Y-%m-%d %H:%M:%S} ====="


class JobStore:
    """All jobs of the server, newest last; kept under ``root`` when one is given."""

    def __init__(self, root: str | Path | None = None) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self.root = None if root is None else Path(root) / "jobs"
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            for directory in sorted(self.root.iterdir()):
                if (directory / RECORD_FILE).exists():
                    job = JobRecord.load(directory)
                    self._jobs[job.id] = job

    def create(self, namespace: str, spec: dict[str, Any], secret_values: dict[str, str]) -> JobRecord:
        job = JobRecord(id=secrets.token_hex(12), namespace=namespace, spec=spec, secrets=secret_values)
        if self.root is not None:
            job.directory = self.root / job.id
            job.directory.mkdir()
            descriptor = os.open(job.directory / SECRETS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(secret_values, handle)
            job.save()
        self._jobs[job.id] = job
        return job

    def get(self, namespace: str, job_id: str) -> JobRecord | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.namespace == namespace else None

    def list(
        self, namespace: str, stages: Iterable[str] = (), labels: dict[str, str] | None = None
    ) -> list[JobRecord]:
        wanted = set(stages)
        found = [
            job
            for job in self._jobs.values()
            if job.namespace == namespace and job.matches(wanted, labels or {})
        ]
        return sorted(found, key=lambda job: job.created_at, reverse=True)

    def all(self) -> list[JobRecord]:
        return list(self._jobs.values())

    def unfinished(self) -> list[JobRecord]:
        """Jobs a (re)started server must pick up again, oldest first."""
        return sorted(
            (job for job in self._jobs.values() if not job.stage.is_terminal), key=lambda j: j.created_at
        )
