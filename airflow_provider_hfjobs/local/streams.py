"""A job's log as the API's server-sent events: shared by ``GET .../logs`` and the job page's stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from airflow_provider_hfjobs.jobs import format_timestamp
from airflow_provider_hfjobs.local.middleware import InjectedCut
from airflow_provider_hfjobs.local.store import JobRecord, LogCursor


def log_event(moment: float, text: str) -> bytes:
    """One log line as an SSE event. Compact, data first: the production wire, byte for byte (see the
    spec's quoted stream)."""
    payload = json.dumps(
        {"data": text, "timestamp": format_timestamp(moment)}, ensure_ascii=False, separators=(",", ":")
    )
    return f"data: {payload}\n\n".encode()


async def log_events(
    job: JobRecord,
    tail: int | None,
    *,
    closing: asyncio.Event,
    keepalive_interval: float,
    cut_after: int | None = None,
) -> AsyncIterator[bytes]:
    """Marker, then the whole log (or its tail), then live lines until the job is terminal. Lines no
    longer in memory are read back from the job's ``log.jsonl``, a batch at a time. Shared by the API's
    ``/logs`` and the job page's ``/events``, so both show the same lines."""
    pending = [job.marker()]
    sent = 0 if tail is None else max(0, job.log_end - tail)  # index of the next line to send
    on_disk = LogCursor()
    emitted = 0
    last_write = time.monotonic()
    while True:
        if sent < job.log_start:
            older = await asyncio.to_thread(job.read_log_file, on_disk, sent, job.log_start)
            pending += older
            sent = sent + len(older) if older else job.log_start  # the file is gone: skip
        if sent >= job.log_start:
            pending += job.lines_from(sent)
            sent = job.log_end
        if pending:
            if cut_after is not None:
                if emitted + len(pending) >= cut_after:
                    yield b"".join(log_event(*entry) for entry in pending[: cut_after - emitted])
                    raise InjectedCut(f"log stream of job {job.id} cut after {cut_after} events")
                emitted += len(pending)
            yield b"".join(log_event(moment, text) for moment, text in pending)
            pending = []
            last_write = time.monotonic()
            continue
        if job.stage.is_terminal:
            return
        if closing.is_set():  # the server goes away: the connection drops, as it would in production
            raise InjectedCut(f"log stream of job {job.id} cut: server stopping")
        remaining = keepalive_interval - (time.monotonic() - last_write)
        changed = remaining > 0 and await job.wait_changed(remaining)
        if not changed and sent >= job.log_end and not job.stage.is_terminal:
            yield b": keep-alive\n\n"
            last_write = time.monotonic()
