"""Job records and their log buffers, for the local Jobs server.

Everything here runs on the server's event loop. A record knows its spec, stage, timestamps and log
lines, renders itself as the API's job JSON (camelCase, ``...Z`` timestamps, secret *names* only), and
wakes the log streams that wait on it whenever a line arrives or the stage changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_provider_hfjobs.jobs import DEFAULT_JOB_TIMEOUT_SECONDS, JobStage, format_timestamp


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
    exit_code: int | None = None
    cancel_requested: bool = False
    log: list[tuple[float, str]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    # ------------------------------------------------------------------------------------ state changes
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def add_line(self, text: str) -> None:
        self.log.append((time.time(), text))
        self._notify()

    def mark_running(self) -> None:
        self.stage, self.message, self.started_at = JobStage.RUNNING, None, time.time()
        self._notify()

    def finish(self, stage: JobStage, message: str | None = None) -> None:
        """Make the job terminal (once); log streams see the stage before they close."""
        if self.stage.is_terminal:
            return
        self.stage, self.message, self.finished_at = stage, message, time.time()
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
    """All jobs of the server, newest last."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}

    def create(self, namespace: str, spec: dict[str, Any], secret_values: dict[str, str]) -> JobRecord:
        job = JobRecord(id=secrets.token_hex(12), namespace=namespace, spec=spec, secrets=secret_values)
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
