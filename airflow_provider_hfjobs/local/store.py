"""Job records and their log buffers, for the local Jobs server, kept in a state directory.

Everything here runs on the server's event loop. A record knows its spec, stage, timestamps and log
lines, renders itself as the API's job JSON (camelCase, ``...Z`` timestamps, secret *names* only), and
wakes the log streams that wait on it whenever a line arrives or the stage changes.

With a root directory, every job has ``jobs/<id>/``: ``job.json`` (the record, rewritten atomically on
every change), ``secrets.json`` (a job still waiting must get its secrets after a restart; removed as
soon as the job's process holds them or the job ends) and the files the job's shim writes (``log.jsonl``,
``exit.json``, ``work/``, ``home/``; see :mod:`.shim`). Directories are 0700 and files 0600 whatever the
umask: they hold secrets and the job's output. A new server on the same root loads them all, so a
restart loses no job and no line.

A job's log can be far larger than memory: only its newest lines (``LOG_MEMORY_BUDGET``) are kept in
``log``; a reader further back reads ``log.jsonl`` (:meth:`JobRecord.read_log_file`). Jobs without a
directory (load-testing mode) keep every line: their size is what the scenario asked for.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
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

logger = logging.getLogger(__name__)

RECORD_FILE = "job.json"
SECRETS_FILE = "secrets.json"
#: What ``job.json`` holds besides the spec (the log and secret values have their own files).
_PERSISTED = (
    "id", "namespace", "spec", "created_at", "stage", "message", "started_at", "finished_at",
    "cancel_requested", "pid", "pid_started", "secret_names", "initiator", "failure_count",
)  # fmt: skip
#: What ``status.message`` says of a job created with ``ssh`` enabled: it is stored, but nothing listens.
SSH_NOTE = "ssh is not available on the local Jobs server (no sshUrl): the job runs as a local process"
#: Where a job's exposed ports are: its own sockets on this machine (the local server runs no proxy).
EXPOSE_HOST = "127.0.0.1"
#: Characters of log text (plus ``LINE_OVERHEAD`` per line) kept in memory per job; older lines stay in
#: ``log.jsonl`` only. Read at each append, so tests can lower it.
LOG_MEMORY_BUDGET = 1 << 20
LINE_OVERHEAD = 64
#: Bytes of ``log.jsonl`` read at once.
READ_CHUNK = 1 << 20


def owner_id(namespace: str) -> str:
    """A stable 24-hex id for a namespace, shaped like the Hub's ids."""
    return hashlib.sha256(f"owner:{namespace}".encode()).hexdigest()[:24]


@dataclass
class LogCursor:
    """Where one reader of ``log.jsonl`` is: line ``index`` starts at byte ``offset``."""

    index: int = 0
    offset: int = 0


def _entry(raw: bytes) -> tuple[float, str]:
    entry = json.loads(raw)
    return entry["t"], entry["line"]


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
    #: What the API shows of the secrets; the values go once the job's process holds them.
    secret_names: list[str] = field(default_factory=list)
    #: Who started the job: ``None`` is the namespace's user; a rerun names the job it copies.
    initiator: dict[str, str] | None = None
    #: Failed attempts so far (``status.failureCount``); a job with ``attempts`` runs again after each.
    failure_count: int = 0
    #: Where the job's files live (``None``: in memory only).
    directory: Path | None = None
    #: Bytes of ``log.jsonl`` already turned into ``log`` lines.
    log_offset: int = 0
    #: The newest lines; ``log_start`` older ones were dropped from memory (they stay in ``log.jsonl``).
    log: list[tuple[float, str]] = field(default_factory=list)
    log_start: int = 0
    log_size: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def __post_init__(self) -> None:
        if not self.secret_names:
            self.secret_names = sorted(self.secrets)

    # ------------------------------------------------------------------------------------ state changes
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def wake(self) -> None:
        """Wake whatever waits on this job (a closing server ends its log streams this way)."""
        self._notify()

    def add_line(self, text: str, moment: float | None = None) -> None:
        self._append([(time.time() if moment is None else moment, text)])
        self._notify()

    def _append(self, entries: list[tuple[float, str]]) -> None:
        """Add lines, then drop the oldest down to 3/4 of the budget once it is exceeded (amortized).
        Only lines ``log.jsonl`` also holds: a job in memory only (simulated) keeps every line."""
        self.log.extend(entries)
        self.log_size += sum(len(text) + LINE_OVERHEAD for _, text in entries)
        if self.log_size <= LOG_MEMORY_BUDGET or self.directory is None:
            return
        keep, dropped = LOG_MEMORY_BUDGET * 3 // 4, 0
        while dropped < len(self.log) - 1 and self.log_size > keep:
            self.log_size -= len(self.log[dropped][1]) + LINE_OVERHEAD
            dropped += 1
        del self.log[:dropped]
        self.log_start += dropped

    @property
    def log_end(self) -> int:
        """How many lines the job has printed (as far as read): the index after the newest."""
        return self.log_start + len(self.log)

    def lines_from(self, index: int) -> list[tuple[float, str]]:
        """The lines in memory from line ``index`` on (all of them if ``index`` is older)."""
        return self.log[max(0, index - self.log_start) :]

    def mark_running(self, pid: int | None = None, pid_started: int | None = None) -> None:
        """RUNNING, with its shim; never for a job already ended (a cancel that came first wins)."""
        if self.stage.is_terminal:
            return
        self.stage, self.message, self.started_at = JobStage.RUNNING, None, time.time()
        self.pid, self.pid_started = pid, pid_started
        self.save()
        if pid is not None:  # its process has the secrets now: none on disk any longer than that
            self.forget_secrets()
        self._notify()

    def attach(self, pid: int, pid_started: int | None) -> None:
        """Record the shim of a job cancelled while it was being started: the shim is told not to start
        the command, so the job goes from SCHEDULING to CANCELED without ever showing RUNNING."""
        self.pid, self.pid_started = pid, pid_started
        self.save()
        self.forget_secrets()

    def forget_secrets(self) -> None:
        """Drop the secret values, in memory and on disk; the names stay."""
        self.secrets = {}
        if self.directory is not None:
            (self.directory / SECRETS_FILE).unlink(missing_ok=True)

    def request_cancel(self) -> None:
        self.cancel_requested = True
        self.save()

    def set_labels(self, labels: dict[str, str]) -> None:
        self.spec["labels"] = labels
        self.save()

    def set_expose(self, expose: dict[str, list[int]]) -> None:
        """Replace the exposed ports; no ports at all removes ``expose``."""
        if expose["ports"]:
            self.spec["expose"] = expose
        else:
            self.spec.pop("expose", None)
        self.save()
        self._notify()

    def record_failure(self, failures: int, reason: str | None) -> None:
        """An attempt failed and the next one started (the job stays RUNNING)."""
        if failures <= self.failure_count or self.stage.is_terminal:
            return
        self.failure_count = failures
        self.message = f"Retrying: attempt {failures + 1} of {self.attempts} ({reason or 'failed'})"
        self.save()
        self._notify()

    def finish(self, stage: JobStage, message: str | None = None) -> None:
        """Make the job terminal (once); log streams see the stage before they close."""
        if self.stage.is_terminal:
            return
        if stage is JobStage.ERROR:  # its last attempt failed
            self.failure_count += 1
        self.stage, self.message, self.finished_at = stage, message, time.time()
        try:
            self.save()
        except OSError as exc:  # out of file descriptors, a full disk: the job still ends, in memory
            logger.warning("job %s: could not save its end (%s): %s", self.id, stage.value, exc)
        self.forget_secrets()
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
        secrets_file = directory / SECRETS_FILE
        try:
            secret_values = json.loads(secrets_file.read_text(encoding="utf-8"))
        except FileNotFoundError:  # the job started (or ended) before: its values are gone on purpose
            secret_values = {}
        job = cls(**{**record, "stage": JobStage(record["stage"]), "secrets": secret_values})
        job.directory = directory
        if job.stage is not JobStage.SCHEDULING and secrets_file.exists():  # a server died mid-way
            job.save()  # the names first (an older job.json has none), then the values go
            job.forget_secrets()
        job._skip_to_log_tail()
        job.read_log()
        return job

    def _skip_to_log_tail(self) -> None:
        """Before loading a log too large for memory: count, without parsing, the lines it will drop."""
        if self.directory is None:
            return
        try:
            with open(self.directory / LOG_FILE, "rb") as handle:
                skip = os.fstat(handle.fileno()).st_size - LOG_MEMORY_BUDGET
                if skip <= self.log_offset:
                    return
                handle.seek(self.log_offset)
                while self.log_offset < skip:
                    chunk = handle.read(min(READ_CHUNK, skip - self.log_offset))
                    end = chunk.rfind(b"\n") + 1
                    if not end:
                        break
                    self.log_start += chunk.count(b"\n")
                    self.log_offset += end
                    handle.seek(self.log_offset)
        except FileNotFoundError:
            return

    def read_log(self) -> None:
        """Take the complete lines the shim appended to ``log.jsonl`` since the last call."""
        if self.directory is None:
            return
        added = False
        try:
            with open(self.directory / LOG_FILE, "rb") as handle:
                handle.seek(self.log_offset)
                while data := handle.read(READ_CHUNK):
                    end = data.rfind(b"\n") + 1
                    if not end:
                        break  # a line still being written (a record is far shorter than a chunk)
                    self._append([_entry(raw) for raw in data[:end].splitlines()])
                    self.log_offset += end
                    added = True
                    handle.seek(self.log_offset)
        except FileNotFoundError:
            return
        if added:
            self._notify()

    def read_log_file(
        self, cursor: LogCursor, start: int, stop: int, limit: int = 2000
    ) -> list[tuple[float, str]]:
        """Lines ``start`` up to ``stop`` (at most ``limit``) read from ``log.jsonl``, for a reader behind
        the lines in memory; ``cursor`` moves past them. Blocking: run it in a thread."""
        if self.directory is None:
            return []
        if cursor.index > start:
            cursor.index = cursor.offset = 0
        lines: list[tuple[float, str]] = []
        try:
            with open(self.directory / LOG_FILE, "rb") as handle:
                handle.seek(cursor.offset)
                while cursor.index < stop and len(lines) < limit:
                    raw = handle.readline()
                    if not raw.endswith(b"\n"):
                        break
                    if cursor.index >= start:
                        lines.append(_entry(raw))
                    cursor.index += 1
                    cursor.offset += len(raw)
        except FileNotFoundError:
            return []
        return lines

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

    @property
    def flavor(self) -> str:
        return str(self.spec.get("flavor") or "cpu-basic")

    @property
    def attempts(self) -> int:
        return int(self.spec.get("attempts") or 1)

    @property
    def exposed_ports(self) -> list[int]:
        return list((self.spec.get("expose") or {}).get("ports") or [])

    def status_json(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "stage": self.stage.value,
            "message": self.message,
            "failureCount": self.failure_count,
        }
        if (self.spec.get("ssh") or {}).get("enabled"):
            if self.message is None:
                status["message"] = SSH_NOTE
            elif not self.stage.is_terminal:  # an outcome ("exit code 3", "Job timeout") stays exact
                status["message"] = f"{self.message}. {SSH_NOTE}"
        if ports := self.exposed_ports:
            status["exposeUrls"] = [f"http://{EXPOSE_HOST}:{port}" for port in ports]
        return status

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
        data: dict[str, Any] = {
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
            "secrets": list(self.secret_names),
            "flavor": self.spec.get("flavor"),
            "labels": self.labels,
            "timeoutSeconds": self.timeout_seconds,
            "owner": owner,
            "initiator": self.initiator or {"type": "user", "id": owner["id"], "name": self.namespace},
            "status": self.status_json(),
            "durations": self.durations(),
            "attempts": self.attempts,
            "retry": self.attempts - 1,
        }
        for key in ("volumes", "expose", "ssh", "network", "resourceGroupId", "arch"):
            if key in self.spec:
                data[key] = copy.deepcopy(self.spec[key])
        return data

    def marker(self) -> tuple[float, str]:
        """The ``===== Job started`` event every log connection opens with (stable across connections)."""
        moment = datetime.fromtimestamp(self.created_at, tz=UTC)
        return self.created_at, f"===== Job started at {moment:%Y-%m-%d %H:%M:%S} ====="


def private_directory(path: Path) -> None:
    """``path`` (and missing parents) as a directory only its owner can enter, whatever the umask."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


class JobStore:
    """All jobs of the server, newest last; kept under ``root`` when one is given."""

    def __init__(self, root: str | Path | None = None) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self.root = None if root is None else Path(root) / "jobs"
        if self.root is not None:
            private_directory(self.root)
            for directory in sorted(self.root.iterdir()):
                if (directory / RECORD_FILE).exists():
                    job = JobRecord.load(directory)
                    self._jobs[job.id] = job

    def create(
        self,
        namespace: str,
        spec: dict[str, Any],
        secret_values: dict[str, str],
        initiator: dict[str, str] | None = None,
    ) -> JobRecord:
        job = JobRecord(
            id=secrets.token_hex(12),
            namespace=namespace,
            spec=spec,
            secrets=secret_values,
            initiator=initiator,
        )
        if self.root is not None:
            job.directory = self.root / job.id
            job.directory.mkdir(mode=0o700)
            descriptor = os.open(job.directory / SECRETS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(secret_values, handle)
            job.save()
        self._jobs[job.id] = job
        return job

    def get(self, namespace: str, job_id: str) -> JobRecord | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.namespace == namespace else None

    def list_jobs(
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
