"""Scheduled-job records for the local Jobs server, kept in its state directory.

A record is what ``POST /api/scheduled-jobs/{ns}`` asked for (the job spec, checked like a job create;
the schedule; ``suspend``; ``concurrency``) plus what the scheduler needs: when the next run is due and
which run came last. It renders itself as the API's ScheduledJob JSON (the reference's §8), with secrets
as names only. When the next run is due is :mod:`.scheduler`'s business; this module only keeps it.

Unlike a job, which forgets its secret values once its process holds them, a scheduled job must hand
them to every future run: with a root directory each record has ``scheduled-jobs/<id>/``
(``scheduled-job.json``, rewritten atomically on every change, and ``secrets.json``, kept until the
scheduled job is deleted). Directories are 0700 and files 0600 whatever the umask. A new server on the
same root loads them all.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_hfjobs.jobs import format_timestamp
from airflow_provider_hfjobs.local.shim import write_json_atomically
from airflow_provider_hfjobs.local.store import owner_id, private_directory

RECORD_FILE = "scheduled-job.json"
SECRETS_FILE = "secrets.json"
_PERSISTED = (
    "id", "namespace", "spec", "schedule", "suspend", "concurrency", "created_at", "updated_at",
    "next_run_at", "last_job_id", "last_job_at", "secret_names",
)  # fmt: skip


@dataclass
class ScheduledJobRecord:
    """One scheduled job: its spec (secret values kept apart), schedule and run bookkeeping."""

    id: str
    namespace: str
    spec: dict[str, Any]
    schedule: str
    suspend: bool = False
    concurrency: bool = False
    created_at: float = field(default_factory=time.time)
    updated_at: float | None = None
    #: When the scheduler starts the next run (epoch seconds); ``None`` while suspended.
    next_run_at: float | None = None
    last_job_id: str | None = None
    last_job_at: float | None = None
    secret_names: list[str] = field(default_factory=list)
    #: Secret values for every future run (``secrets.json`` on disk, until the record is deleted).
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    directory: Path | None = None

    def __post_init__(self) -> None:
        if self.updated_at is None:
            self.updated_at = self.created_at
        if not self.secret_names:
            self.secret_names = sorted(self.secrets)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.spec.get("labels") or {})

    def matches(self, labels: dict[str, str]) -> bool:
        own = self.labels
        return all(own.get(key) == value for key, value in labels.items())

    def touch(self) -> None:
        """A change of what was asked (schedule, suspend, labels): ``updatedAt`` moves, the file follows."""
        self.updated_at = time.time()
        self.save()

    def record_run(self, job_id: str, at: float) -> None:
        self.last_job_id, self.last_job_at = job_id, at
        self.save()

    def save(self) -> None:
        if self.directory is None:
            return
        write_json_atomically(
            str(self.directory / RECORD_FILE), {name: getattr(self, name) for name in _PERSISTED}
        )

    @classmethod
    def load(cls, directory: Path) -> ScheduledJobRecord:
        record = json.loads((directory / RECORD_FILE).read_text(encoding="utf-8"))
        try:
            secret_values = json.loads((directory / SECRETS_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            secret_values = {}
        return cls(**record, secrets=secret_values, directory=directory)

    def to_json(self) -> dict[str, Any]:
        """The ScheduledJob JSON. ``jobSpec`` is the spec as stored, secrets as names only; its timeout is
        both ``timeoutSeconds`` (the create body's and the JS client's key) and ``timeout`` (what the
        Python client's ``JobSpec`` reads): the reference calls that key uncertain."""
        spec = copy.deepcopy(self.spec)
        spec["secrets"] = list(self.secret_names)
        if "timeoutSeconds" in spec:
            spec["timeout"] = spec["timeoutSeconds"]
        last_job = None
        if self.last_job_id is not None and self.last_job_at is not None:
            last_job = {"id": self.last_job_id, "at": format_timestamp(self.last_job_at)}
        return {
            "id": self.id,
            "createdAt": format_timestamp(self.created_at),
            "updatedAt": format_timestamp(self.updated_at or self.created_at),
            "jobSpec": spec,
            "schedule": self.schedule,
            "suspend": self.suspend,
            "concurrency": self.concurrency,
            "status": {
                "lastJob": last_job,
                "nextJobRunAt": None
                if self.suspend or self.next_run_at is None
                else format_timestamp(self.next_run_at),
            },
            "owner": {"id": owner_id(self.namespace), "name": self.namespace, "type": "user"},
        }


class ScheduledJobStore:
    """All scheduled jobs of the server; kept under ``root/scheduled-jobs`` when a root is given."""

    def __init__(self, root: str | Path | None = None) -> None:
        self._records: dict[str, ScheduledJobRecord] = {}
        self.root = None if root is None else Path(root) / "scheduled-jobs"
        if self.root is not None:
            private_directory(self.root)
            for directory in sorted(self.root.iterdir()):
                if (directory / RECORD_FILE).exists():
                    record = ScheduledJobRecord.load(directory)
                    self._records[record.id] = record

    def create(
        self,
        namespace: str,
        spec: dict[str, Any],
        secret_values: dict[str, str],
        schedule: str,
        *,
        suspend: bool = False,
        concurrency: bool = False,
        next_run_at: float | None = None,
    ) -> ScheduledJobRecord:
        record = ScheduledJobRecord(
            id=secrets.token_hex(12),
            namespace=namespace,
            spec=spec,
            schedule=schedule,
            suspend=suspend,
            concurrency=concurrency,
            next_run_at=next_run_at,
            secrets=dict(secret_values),
        )
        if self.root is not None:
            record.directory = self.root / record.id
            record.directory.mkdir(mode=0o700)
            descriptor = os.open(record.directory / SECRETS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(record.secrets, handle)
            record.save()
        self._records[record.id] = record
        return record

    def get(self, namespace: str, scheduled_job_id: str) -> ScheduledJobRecord | None:
        record = self._records.get(scheduled_job_id)
        return record if record is not None and record.namespace == namespace else None

    def list_scheduled_jobs(
        self, namespace: str, labels: dict[str, str] | None = None
    ) -> list[ScheduledJobRecord]:
        found = [r for r in self._records.values() if r.namespace == namespace and r.matches(labels or {})]
        return sorted(found, key=lambda record: record.created_at, reverse=True)

    def all(self) -> list[ScheduledJobRecord]:
        return list(self._records.values())

    def delete(self, record: ScheduledJobRecord) -> None:
        """Forget the record, its secret values first."""
        self._records.pop(record.id, None)
        record.secrets = {}
        if record.directory is not None:
            (record.directory / SECRETS_FILE).unlink(missing_ok=True)
            shutil.rmtree(record.directory, ignore_errors=True)
