"""One trigger replaying a long log never holds the triggerer's event loop for long: the 1,000,000 lines of
a finished job's log, served over real HTTP on 127.0.0.1, reach the trigger in bounded steps, the loop
running its other tasks between two.

The bound is asserted on the work itself, never on a clock (a busy machine stretches any wall-clock gap): a
callback that re-schedules itself on every turn of the loop counts the lines the trigger handled since its
last run, and no turn may hold more than one step (:data:`.sse.STEP_LINES` lines, parsed from at most
:data:`.sse.STEP_BYTES` bytes: about 10 ms in a trigger runner; benchmarks/loop_hold.py measures the
wall-clock hold)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, HfJobsCredentials
from airflow_provider_hfjobs.sse import STEP_LINES
from airflow_provider_hfjobs.triggers import hfjobs as trigger_module
from airflow_provider_hfjobs.triggers import log_checkpoint
from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger
from tests.unit.test_exactly_once import FakeTI, MemoryStore

pytestmark = pytest.mark.integration

LINES = 1_000_000
JOB_ID = "687fb701029421ae5549d998"
NAMESPACE = "alice"
MARKER = "===== Job started at 2026-11-24 16:00:00 ====="


def event(text: str) -> bytes:
    return b'data: {"data":"%s","timestamp":"2026-11-24T16:00:00.000Z"}\n\n' % text.encode()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The job's log (the start marker, then ``LINES`` lines) and its COMPLETED stage, over HTTP/1.1 with
    kept-alive connections, from threads of its own (the loop under test only reads)."""
    body = event(MARKER) + b"".join(event(f"line {i}") for i in range(1, LINES + 1))
    job = json.dumps({
        "id": JOB_ID, "owner": {"id": "1", "name": NAMESPACE, "type": "user"},
        "status": {"stage": "COMPLETED", "message": None}, "createdAt": "2026-11-24T16:00:00.000Z",
    }).encode()  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            logs = self.path == f"/api/jobs/{NAMESPACE}/{JOB_ID}/logs"
            answer = body if logs else job
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if logs else "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class CountingLog:
    """The trigger's logger: counts the job's lines (checking each comes once, in order), keeps the rest."""

    def __init__(self) -> None:
        self.lines = 0
        self.other: list[str] = []

    def info(self, message: str, *args: Any, **_: Any) -> None:
        if message == "%s" and args and str(args[0]).startswith("line "):
            self.lines += 1
            assert args[0] == f"line {self.lines}", f"line {self.lines} expected, {args[0]!r} shown"
        else:
            self.other.append(message % args if args else message)

    warning = exception = info


class Turns:
    """Runs on every turn of the loop (it re-schedules itself at once) and records, per turn, how much of
    ``work()`` was done since its last run, and the thread's CPU time in that turn."""

    def __init__(self, work: Any) -> None:
        self.work = work
        self.loop = asyncio.get_running_loop()
        self.most = 0
        self.turns = 0
        self.longest_cpu = 0.0
        self._last = work()
        self._cpu = time.thread_time()
        self._stopped = False
        self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        done, cpu = self.work(), time.thread_time()
        self.most = max(self.most, done - self._last)
        self.longest_cpu = max(self.longest_cpu, cpu - self._cpu)
        self._last, self._cpu = done, cpu
        self.turns += 1
        if not self._stopped:
            self.loop.call_soon(self._tick)

    def stop(self) -> None:
        self._stopped = True


def trigger_for(url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[HfJobTrigger, CountingLog]:
    monkeypatch.setattr(trigger_module, "START_COST_SECONDS", 0.0)
    trigger = HfJobTrigger(JOB_ID, NAMESPACE, "hf_default", poll_interval=5)
    log = CountingLog()
    trigger._log = log  # type: ignore[assignment]  # LoggingMixin.log returns _log once set

    def hook() -> HfJobsAsyncHook:
        made = HfJobsAsyncHook("hf_default", namespace=NAMESPACE)
        made._credentials = HfJobsCredentials(endpoint=url, token="hf_test_token", namespace=NAMESPACE)
        return made

    monkeypatch.setattr(trigger, "_hook", hook)
    return trigger, log


async def run(trigger: HfJobTrigger, work: Any) -> tuple[dict[str, Any], Turns]:
    turns = Turns(work)
    try:
        async with asyncio.timeout(300):  # a bound for a broken run, not a measure: 1e6 lines take seconds
            (payload,) = [e.payload async for e in trigger.run()]
    finally:
        turns.stop()
    print(
        f"{turns.turns} turns; at most {turns.most} lines in one; longest turn {turns.longest_cpu * 1e3:.1f} ms CPU"
    )
    return payload, turns


async def test_a_million_line_replay_is_shown_a_bounded_step_per_turn_of_the_loop(
    server, monkeypatch
) -> None:
    trigger, log = trigger_for(server, monkeypatch)
    payload, turns = await run(trigger, lambda: log.lines)
    assert payload["status"] == "success" and payload["log_complete"] is True, (payload, log.other)
    assert log.lines == LINES and payload["log_cursor"] == LINES + 1  # every line once (the marker counts)
    assert 0 < turns.most <= STEP_LINES


async def test_with_checkpoints_the_lines_reach_the_record_a_bounded_step_per_turn(
    server, monkeypatch
) -> None:
    """With log checkpoints the trigger hands its lines to its entry in the process's book (shown under the
    reservation, the rest left to the resumed task): handed in bounded batches too."""
    book = log_checkpoint.CheckpointBook(MemoryStore(), 1000.0)
    monkeypatch.setattr(trigger_module, "checkpoint_book", lambda ti: book if ti is not None else None)
    monkeypatch.setattr(log_checkpoint, "LOOKUP_INTERVAL", 0.0)
    trigger, log = trigger_for(server, monkeypatch)
    trigger.task_instance = FakeTI()  # type: ignore[attr-defined]
    handed = [0]
    add = log_checkpoint.Entry.add

    def counted(entry: log_checkpoint.Entry, indexes: Any, texts: Any) -> None:
        handed[0] += len(texts)
        add(entry, indexes, texts)

    monkeypatch.setattr(log_checkpoint.Entry, "add", counted)
    payload, turns = await run(trigger, lambda: handed[0])
    assert payload["status"] == "success", (payload, log.other)
    assert handed[0] == LINES  # every line reached the entry once ...
    assert payload["log_cursor"] == log.lines + 1  # ... and those shown are the first ones, in order
    assert 0 < turns.most <= STEP_LINES
