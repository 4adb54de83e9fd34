"""Where deferred jobs stand in their logs, kept outside the triggerer so that a restarted or moved trigger
resumes after the last line shown instead of the cursor it was deferred with: each line once across a
triggerer's SIGTERM and SIGKILL.

**Group commit, lines at once.** One record per trigger-runner process covers all its triggers: an Airflow
Variable (``hfjobs_log_positions.<process>``) holding, per trigger, ``[shown, showing]``: lines before
``shown`` are in the task log, lines from ``showing`` on are not. A trigger shows a line at once when it lies
before the ``showing`` its process last *wrote* (its reservation, :data:`HEADROOM` lines ahead while it is
streaming), so no line waits for a write while the reservation lasts; the record trails, rewritten for every
trigger at once at most ``[hfjobs] log_checkpoint_steps_per_second`` a second (and faster while some trigger
has lines past its reservation). So what checkpoints cost does not grow with the number of triggers, and
a busy supervisor (a churn of trigger starts and ends on SQLite makes a write take up to a second) delays
the record, not the lines. A triggerer stopped by any signal leaves the lines shown since the last write
unsure (at most :data:`HEADROOM`; in practice the lines of the last half second), and the resumed trigger
says which may repeat; a trigger silent for :data:`IDLE_AFTER` has its reservation dropped, so its place
is exact. On Airflow 3 the record goes through the trigger runner's supervisor (PutVariable: about 12 ms of
its time with a few triggers, 14 ms with 1,000, 35 ms with 10,000, in benchmarks/checkpoint_cost.py), on
Airflow 2 to the metadata DB from a thread.

**Finding one's place.** A starting trigger looks for its key in the records of the other processes: one
listing by prefix and a read of each record that may still change, shared by all the triggers that start
together (a triggerer restart starts thousands). A record unchanged for :data:`STALE_AFTER` belongs to a
process that is gone: it is read once and kept, and deleted after :data:`RECORD_TTL`. A key found nowhere
is no error (a missing Variable is not logged, unlike ``GetXCom``'s "XCom not found").

A job's end never waits for a write: the trigger's event says how far it showed the log and the resumed task
shows the rest (only lines past a reservation, rare). Checkpoints never decide a job's outcome: if the store fails, the triggers say so once each
and go on without.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_PLUS

#: The Variables holding the records, one per trigger-runner process.
RECORD_PREFIX = "hfjobs_log_positions."
RECORD_DESCRIPTION = (
    "airflow-provider-hfjobs: how far the deferred Hugging Face jobs of one triggerer process have shown "
    "their logs, so that a restarted triggerer repeats no line. Written and deleted by the provider."
)
#: Lines a streaming trigger may show past its recorded place: the bound on lines a stopped triggerer can
#: leave unsure (shown, perhaps, but not recorded).
HEADROOM = 200
#: Seconds without a line after which a trigger's reservation is dropped (its place written exact).
IDLE_AFTER = 10.0
#: Seconds a write may take before the process gives up on checkpoints (never on the jobs).
STORE_TIMEOUT = 30.0
#: Seconds a trigger waits for its place at start before going on without checkpoints.
LOAD_TIMEOUT = 120.0
#: Writes of the record a second for the whole process unless ``[hfjobs] log_checkpoint_steps_per_second``
#: says otherwise (0: no checkpoints): about 3% of an Airflow 3 supervisor with 1,000 streaming triggers
#: (12 to 14 ms a write), 7% with 10,000 (35 ms).
DEFAULT_STEPS_PER_SECOND = 2.0
#: Share of the supervisor's time the writes may take: a large record is written less often, at most
#: :data:`MAX_STEP_GAP` apart. Judged by the record's size (the service time benchmarks/checkpoint_cost.py
#: measured: about 12 ms, and 0.06 ms a KB), not by how long a write took: a busy supervisor makes a write
#: wait in its queue, which costs it nothing, and one write is in flight at a time.
WRITE_SHARE = 0.25
WRITE_COST_SECONDS = 0.012
WRITE_COST_PER_KB = 0.00006
MAX_STEP_GAP = 5.0
#: Writes come this many times as often while some trigger has lines past its reservation (a trigger
#: starting or waking from silence, a long replay, a job printing thousands of lines a second).
BACKLOG_SPEEDUP = 4.0
#: Most seconds an ended trigger's event waits for its exact place to be written.
SETTLE_TIMEOUT = 0.5
#: Most seconds the lines waiting for a write are shown without letting the loop run other triggers.
SLICE_SECONDS = 0.02
#: A live process writes its record at least this often (seconds) while it holds any trigger's place.
REFRESH_EVERY = 30.0
#: A record unchanged this long (by the reader's clock), or older than this plus :data:`CLOCK_SLACK` by its
#: own time stamp, is a gone process's: it no longer changes.
STALE_AFTER = 120.0
CLOCK_SLACK = 600.0
#: Records of gone processes are deleted this long after their last write (a trigger resuming later starts
#: again from where its task deferred).
RECORD_TTL = 2 * 86400.0
#: Seconds an ended trigger's place stays in the record (its event may not have reached Airflow yet when a
#: triggerer dies: the trigger then runs again, and must find its place).
CLOSED_KEPT = 300.0
#: Least seconds between two look-ups of the other processes' records (starting triggers share them).
LOOKUP_INTERVAL = 0.5
#: Keys per GetVariableKeys page.
PAGE = 1000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """Lines ``[0, shown)`` are in the task log; ``[shown, showing)`` were being written."""

    shown: int
    showing: int

    @classmethod
    def from_value(cls, value: Any) -> Checkpoint | None:
        """``[shown, showing]`` as stored, or ``None`` if malformed."""
        if not isinstance(value, list | tuple) or len(value) != 2:
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            return None
        return cls(value[0], max(value[0], value[1]))


def position_key(ti: Any, job_id: str) -> str:
    """A trigger's key in the records: its task instance, try and job (a retry re-attaching to the job
    logs it anew; two tasks watching one job keep two places), hashed short."""
    map_index = ti.map_index if ti.map_index is not None else -1
    parts = (ti.dag_id, ti.run_id, ti.task_id, str(map_index), str(getattr(ti, "try_number", "")), job_id)
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:20]


# ------------------------------------------------------------------------------------------------ stores
class RecordStore:
    """Where the records live: named strings, listed by prefix."""

    async def keys(self, prefix: str, offset: int) -> tuple[list[str], int]:
        """One page of the keys starting with ``prefix``, and how many there are in all."""
        raise NotImplementedError

    async def get(self, key: str) -> str | None:
        raise NotImplementedError

    async def put(self, key: str, value: str) -> None:
        raise NotImplementedError

    async def delete(self, key: str) -> None:
        raise NotImplementedError


class SupervisorRecordStore(RecordStore):
    """Airflow 3: Variables through the trigger runner's own channel to its supervisor (``asend``: never
    blocks the loop)."""

    async def _send(self, message: Any) -> Any:
        from airflow.sdk.execution_time import task_runner

        comms = task_runner.SUPERVISOR_COMMS
        if hasattr(comms, "asend"):
            return await comms.asend(message)
        return comms.send(message)  # an in-process supervisor (tests): answered at once

    async def keys(self, prefix: str, offset: int) -> tuple[list[str], int]:
        from airflow.sdk.execution_time.comms import GetVariableKeys

        found = await self._send(GetVariableKeys(prefix=prefix, limit=PAGE, offset=offset))
        keys = list(getattr(found, "keys", None) or [])
        return keys, int(getattr(found, "total_entries", None) or len(keys))

    async def get(self, key: str) -> str | None:
        from airflow.sdk.execution_time.comms import GetVariable

        found = await self._send(GetVariable(key=key))
        return getattr(found, "value", None)  # a missing one is an ErrorResponse: nothing logged

    async def put(self, key: str, value: str) -> None:
        from airflow.sdk.execution_time.comms import PutVariable

        await self._send(PutVariable(key=key, value=value, description=RECORD_DESCRIPTION))

    async def delete(self, key: str) -> None:
        from airflow.sdk.execution_time.comms import DeleteVariable

        await self._send(DeleteVariable(key=key))


class DatabaseRecordStore(RecordStore):
    """Airflow 2: the triggerer has the metadata DB; each query runs in a thread (it blocks)."""

    async def keys(self, prefix: str, offset: int) -> tuple[list[str], int]:
        def keys() -> list[str]:
            from airflow.models.variable import Variable
            from airflow.utils.session import create_session

            with create_session() as session:
                rows = session.query(Variable.key).filter(Variable.key.startswith(prefix)).all()
            return sorted(key for (key,) in rows if key.startswith(prefix))  # LIKE's "_" is a wildcard

        found = await asyncio.to_thread(keys)
        return found[offset:], len(found)

    async def get(self, key: str) -> str | None:
        def get() -> str | None:
            from airflow.models.variable import Variable
            from airflow.utils.session import create_session

            with create_session() as session:
                row = session.query(Variable).filter(Variable.key == key).one_or_none()
                return None if row is None else row.val

        return await asyncio.to_thread(get)

    async def put(self, key: str, value: str) -> None:
        def put() -> None:
            from airflow.models.variable import Variable

            Variable.set(key, value, description=RECORD_DESCRIPTION)

        await asyncio.to_thread(put)

    async def delete(self, key: str) -> None:
        def delete() -> None:
            from airflow.models.variable import Variable

            Variable.delete(key)

        await asyncio.to_thread(delete)


def record_store() -> RecordStore | None:
    """This Airflow's store, or ``None`` when it has no way to list Variables by prefix (Airflow 3 before
    ``GetVariableKeys``)."""
    if not AIRFLOW_V_3_PLUS:
        return DatabaseRecordStore()
    try:
        from airflow.sdk.execution_time.comms import GetVariableKeys  # noqa: F401
    except ImportError:
        return None
    return SupervisorRecordStore()


# ---------------------------------------------------------------------------------------- one trigger
class Entry:
    """One trigger's place: the lines it received and has not shown yet, how far it may show them
    (``reserved``: the ``showing`` of the record as written), and how to show them (its ``write``, run in
    the trigger's own context so that the lines reach its task's log)."""

    __slots__ = (
        "book",
        "closed_at",
        "context",
        "epoch",
        "failed",
        "indexes",
        "key",
        "last_line",
        "reserved",
        "shown",
        "texts",
        "write",
        "written",
    )

    def __init__(
        self,
        book: CheckpointBook,
        key: str,
        shown: int,
        write: Callable[[Sequence[str], int], None],
        failed: Callable[[BaseException], None],
    ) -> None:
        self.book, self.key, self.shown, self.reserved = book, key, shown, shown
        self.written: tuple[int, int] | None = None  # [shown, showing] as last written
        self.epoch = 0  # a write planned before a restart_at() grants no reservation
        self.last_line = time.monotonic()
        self.texts: list[str] = []
        self.indexes: list[int] = []
        self.write, self.failed = write, failed
        self.context = contextvars.copy_context()  # the trigger's: its log lines go to its task's log
        self.closed_at: float | None = None

    def add(self, indexes: Sequence[int], texts: Sequence[str]) -> None:
        """Lines read from the job's log: shown now as far as the reservation goes, the rest after the
        process's next write."""
        self.indexes.extend(indexes)
        self.texts.extend(texts)
        if self.book.failure is not None:  # no checkpoints any more: shown as they come
            self.show_until(None)
            return
        self.show_until(self.reserved)
        self.book.wake()  # the record trails (or, with lines left waiting, a write to show them)

    @property
    def pending(self) -> bool:
        return bool(self.texts)

    def restart_at(self, position: int) -> None:
        """The trigger resumes further on (a place another process recorded, found after this entry was
        opened): no line is shown before the next write says where it stands."""
        self.shown = max(self.shown, position)
        self.reserved = self.shown
        self.epoch += 1

    def wanted(self, now: float) -> tuple[int, int]:
        """The ``[shown, showing]`` to write next: a reservation :data:`HEADROOM` lines ahead while the
        trigger streams, exact once it closed or was silent for :data:`IDLE_AFTER`."""
        if self.closed_at is None and (self.texts or now - self.last_line < IDLE_AFTER):
            return self.shown, self.shown + HEADROOM
        return self.shown, self.shown

    def show_until(self, end: int | None) -> None:
        """Show the waiting lines before position ``end`` (all with ``None``), in the trigger's context
        (synchronous: nothing else runs meanwhile, so a trigger that has closed its place never shows
        another line)."""
        if self.closed_at is not None:
            return
        count = len(self.indexes) if end is None else bisect.bisect_left(self.indexes, end)
        if not count:
            return
        texts = self.texts[:count]
        self.shown = max(self.shown, self.indexes[count - 1] + 1)
        del self.texts[:count], self.indexes[:count]
        self.last_line = time.monotonic()
        try:
            self.context.run(self.write, texts, self.shown)
        except Exception:  # a logging failure must not stop the other triggers
            log.exception("Writing log lines failed.")

    def close(self) -> None:
        """The trigger stops showing lines (its job ended, or it was cancelled): its place is final. The
        entry stays :data:`CLOSED_KEPT` seconds (a retry in this process resumes exactly) but lets go of the
        trigger: its ``write`` and ``failed`` (bound methods) and context would keep the whole trigger, hook
        and logger reachable that long, thousands of them in a busy triggerer, each full collection slower.
        Nothing calls them once closed (every caller checks ``closed_at`` first)."""
        if self.closed_at is None:
            self.closed_at = time.monotonic()
            self.write, self.failed, self.context = _closed_write, _closed_failed, _CLOSED_CONTEXT
            self.book.wake()


def _closed_write(texts: Sequence[str], end: int) -> None:
    """A closed entry's ``write``: never called (a closed entry shows nothing)."""


def _closed_failed(exc: BaseException) -> None:
    """A closed entry's ``failed``: never called (a closed entry's trigger has its place)."""


_CLOSED_CONTEXT = contextvars.Context()


# ------------------------------------------------------------------------------------------ the process
class CheckpointBook:
    """The process's record and its display steps; and the look-ups of the other processes' records."""

    def __init__(self, store: RecordStore, per_second: float) -> None:
        self.store = store
        self.per_second = per_second
        self.record_key = f"{RECORD_PREFIX}{uuid.uuid4().hex[:16]}"
        self.failure: BaseException | None = None
        self.writes = 0
        self.steps = 0
        self._entries: dict[str, Entry] = {}
        self._seq = 0
        self._wakeup = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._last_step = float("-inf")
        self._write_cost = WRITE_COST_SECONDS  # of the supervisor's time, by the record's size
        self._written_at = float("-inf")
        self._stored = False
        # Look-ups: the next one (joined by callers until it starts), the task serving them, what is known
        # of other processes' records (key -> (seq, since when unchanged)) and the records of gone ones.
        self._next_lookup: asyncio.Future[list[dict[str, Any]]] | None = None
        self._lookups: asyncio.Task[None] | None = None
        self._last_lookup = float("-inf")
        self._seen: dict[str, tuple[int, float]] = {}
        self._gone: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------------------------- triggers' side
    def open(
        self,
        key: str,
        shown: int,
        write: Callable[[Sequence[str], int], None],
        failed: Callable[[BaseException], None],
    ) -> Entry:
        """A trigger starts showing lines from ``shown`` (its resume position); call from its own task. A
        trigger that ran in this process before takes up where it was (the process knows exactly)."""
        if (earlier := self._entries.get(key)) is not None:
            shown = max(shown, earlier.shown)
            earlier.close()
        entry = Entry(self, key, shown, write, failed)
        self._entries[key] = entry
        if self.failure is not None:
            failed(self.failure)
            return entry
        if self._committer is None or self._committer.done():
            self._committer = _spawn(self._commit_loop())
        self.wake()  # its first reservation, while its stream connects
        return entry

    def wake(self) -> None:
        self._wakeup.set()

    async def find(self, key: str) -> Checkpoint | None:
        """This trigger's place as recorded by any process (the furthest one), read after this call."""
        future = self._next_lookup
        if future is None:
            future = self._next_lookup = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            if self._lookups is None or self._lookups.done():
                self._lookups = _spawn(self._lookup_loop())
        async with asyncio.timeout(LOAD_TIMEOUT):
            records = await asyncio.shield(future)
        found = [Checkpoint.from_value(record.get(key)) for record in records]
        if (own := self._entries.get(key)) is not None:  # this trigger ran in this process before: exact
            found.append(Checkpoint(own.shown, own.shown))
        return max((point for point in found if point is not None), default=None, key=_furthest)

    # ----------------------------------------------------------------------------------- display steps
    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._entries and self.failure is None:
                with contextlib.suppress(TimeoutError):  # (asyncio.timeout: wait_for may swallow a cancel)
                    async with asyncio.timeout(REFRESH_EVERY):
                        await self._wakeup.wait()
                self._wakeup.clear()
                # Lines waiting for a write go faster, the writes' share of the time still bounded.
                rate = self.per_second * (BACKLOG_SPEEDUP if self._waiting() else 1)
                gap = max(1.0 / rate, min(MAX_STEP_GAP, self._write_cost / WRITE_SHARE))
                if (wait := self._last_step + gap - loop.time()) > 0:
                    await asyncio.sleep(wait)
                try:
                    await self._step(loop)
                except Exception as exc:
                    self._fail(exc)
            if self.failure is not None:
                return
            if self._stored:
                with contextlib.suppress(Exception):  # nothing left to keep: the record goes
                    async with asyncio.timeout(STORE_TIMEOUT):
                        await self.store.delete(self.record_key)
                    self._stored = False
            if not self._entries:  # (a trigger may have started while the record was deleted)
                return

    async def _step(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write every trigger's place (one write for all), then show the lines that waited for it."""
        now = time.monotonic()
        expired = [
            key
            for key, e in self._entries.items()
            if e.closed_at is not None and now - e.closed_at > CLOSED_KEPT
        ]
        for key in expired:
            del self._entries[key]
        # The plan outlives the write's await: parallel lists, not a tuple per trigger. Objects alive that
        # long reach the collector's oldest generation, and 10,000 more at every step (several a second)
        # bring its next full collection of the whole heap closer.
        entries = list(self._entries.values())
        places = [entry.wanted(now) for entry in entries]
        epochs = [entry.epoch for entry in entries]
        changed = any(entry.written != place for entry, place in zip(entries, places, strict=True))
        if not entries or not (changed or loop.time() - self._written_at >= REFRESH_EVERY):
            return  # (a process's record is rewritten now and then, so that others see it alive)
        self._last_step = loop.time()
        self.steps += 1
        for entry, place in zip(entries, places, strict=True):  # a shrinking reservation binds from now
            entry.reserved = min(entry.reserved, place[1])  # on, a growing one once written
        await self._write(loop, {entry.key: place for entry, place in zip(entries, places, strict=True)})
        ready = []
        for entry, place, epoch in zip(entries, places, epochs, strict=True):
            entry.written = place
            if entry.epoch == epoch:
                entry.reserved = place[1]
                if entry.texts:
                    ready.append(entry)
        del entries, places, epochs
        # The lines that waited for this write, a slice at a time: thousands of triggers starting together
        # must not hold the loop (their events, the other triggers) while all their lines are logged.
        began = time.monotonic()
        for entry in ready:
            entry.show_until(entry.reserved)
            if time.monotonic() - began > SLICE_SECONDS:
                await asyncio.sleep(0)
                began = time.monotonic()
        if self._waiting() or self._changed():
            self._wakeup.set()  # lines past a reservation, or lines shown since: the record trails them

    def _changed(self) -> bool:
        """Some trigger's place is not as written (lines shown, a reservation to take or drop)."""
        now = time.monotonic()
        return any(entry.written != entry.wanted(now) for entry in self._entries.values())

    def _waiting(self) -> bool:
        """Some trigger has lines it may not show before the next write, is starting (its first
        reservation is written while its stream connects) or ended (its event waits for its exact place)."""
        return any(
            (e.texts or e.written is None) if e.closed_at is None else e.written != (e.shown, e.shown)
            for e in self._entries.values()
        )

    async def settle(self, entry: Entry, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait (bounded) until the record says exactly where a closed trigger stopped: then a trigger run
        again after its event was lost repeats nothing, and its last lines have long left for the
        triggerer's log before its event (Airflow closes a trigger's log file when it learns the trigger
        finished, and lines arriving after that go to the triggerer's own log)."""
        # A poll, not a future the write resolves: that was tried (for the 10,000-trigger benchmark) and a
        # real Celery deployment then lost a short job's only line: the event went out the moment the write
        # returned, ahead of the line still on its way to the task's log file (see above).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.failure is None and entry.written != (entry.shown, entry.shown) and loop.time() < deadline:
            await asyncio.sleep(0.01)

    def record(self, positions: dict[str, tuple[int, int]]) -> str:
        """The record as written: every trigger's place, with a sequence number and a time stamp."""
        self._seq += 1
        return json.dumps(
            {"v": 1, "seq": self._seq, "updated": round(time.time(), 3), "host": _HOST, "pid": os.getpid(),
             "positions": positions},
            separators=(",", ":"),
        )  # fmt: skip

    async def _write(self, loop: asyncio.AbstractEventLoop, positions: dict[str, tuple[int, int]]) -> None:
        value = self.record(positions)
        async with asyncio.timeout(STORE_TIMEOUT):
            await self.store.put(self.record_key, value)
        self._written_at = loop.time()
        self._write_cost = WRITE_COST_SECONDS + WRITE_COST_PER_KB * len(value) / 1024
        self._stored = True
        self.writes += 1

    def _fail(self, exc: BaseException) -> None:
        """The store failed: no checkpoints any more in this process; every trigger says so and shows its
        waiting lines now, and the next ones as they come."""
        log.warning("Log checkpoints stopped (%s: %s).", type(exc).__name__, exc)
        self.failure = exc
        for entry in self._entries.values():
            if entry.closed_at is None:
                with contextlib.suppress(Exception):
                    entry.context.run(entry.failed, exc)
                entry.show_until(None)

    # ----------------------------------------------------------------------------------------- look-ups
    async def _lookup_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while (future := self._next_lookup) is not None:
            if (wait := self._last_lookup + LOOKUP_INTERVAL - loop.time()) > 0:
                await asyncio.sleep(wait)
            self._next_lookup = None  # callers from now on wait for the next look-up
            self._last_lookup = loop.time()
            try:
                records = await self._read_records(loop)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(records)

    async def _read_records(self, loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
        """The positions of every other process's record: gone ones from memory, the others read now."""
        keys: list[str] = []
        while True:
            page, total = await self.store.keys(RECORD_PREFIX, len(keys))
            keys += [key for key in page if key.startswith(RECORD_PREFIX)]
            if not page or len(keys) >= total:
                break
        listed = set(keys)
        for key in [k for k in self._gone if k not in listed]:
            del self._gone[key]
        records = []
        now, wall = loop.time(), time.time()
        for key in keys:
            if key == self.record_key:
                continue
            record = self._gone.get(key)
            if record is None and (record := _parse(await self.store.get(key))) is not None:
                seq, since = self._seen.get(key, (None, now))
                self._seen[key] = (record["seq"], since if seq == record["seq"] else now)
                unchanged = now - self._seen[key][1]
                if unchanged >= STALE_AFTER or wall - record["updated"] >= STALE_AFTER + CLOCK_SLACK:
                    self._gone[key] = record
                    del self._seen[key]
            if record is None:
                continue
            if wall - record["updated"] > RECORD_TTL:
                self._gone.pop(key, None)
                with contextlib.suppress(Exception):
                    await self.store.delete(key)
                continue
            records.append(record["positions"])
        return records


def _parse(raw: str | None) -> dict[str, Any] | None:
    """A record as written by :meth:`CheckpointBook._write`, or ``None``."""
    try:
        record = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("positions"), dict):
        return None
    if not isinstance(record.get("seq"), int) or not isinstance(record.get("updated"), int | float):
        return None
    return record


def _furthest(point: Checkpoint) -> tuple[int, int]:
    return point.shown, point.showing


def _retrieve(future: asyncio.Future[Any]) -> None:
    """A look-up nobody waits for any more (its callers were cancelled) must not warn about its error."""
    if not future.cancelled():
        future.exception()


def _spawn(coroutine: Any) -> asyncio.Task[Any]:
    """A task of the process, not of the trigger that happens to start it: an empty context, so that its
    own log lines go to the triggerer's log and not to that trigger's task log."""
    return contextvars.Context().run(asyncio.get_running_loop().create_task, coroutine)


_HOST = socket.gethostname()
_book: list[tuple[asyncio.AbstractEventLoop, CheckpointBook | None]] = []
_rate: list[float] = []


def steps_per_second() -> float:
    """``[hfjobs] log_checkpoint_steps_per_second`` (read once); 0: checkpoints are off."""
    if not _rate:
        try:
            from airflow.providers.common.compat.sdk import conf

            raw = conf.get("hfjobs", "log_checkpoint_steps_per_second", fallback="") or ""
            rate = float(raw) if raw.strip() else DEFAULT_STEPS_PER_SECOND  # empty: the default
        except Exception:  # an unreadable setting must not stop a trigger: the default then
            rate = DEFAULT_STEPS_PER_SECOND
        _rate.append(max(0.0, rate))
    return _rate[0]


def checkpoint_book(ti: Any) -> CheckpointBook | None:
    """The process's book (one per event loop), or ``None`` when the trigger runs without a task instance,
    checkpoints are off (``[hfjobs] log_checkpoint_steps_per_second = 0``) or this Airflow cannot keep
    them."""
    if ti is None or not all(getattr(ti, name, None) for name in ("dag_id", "run_id", "task_id")):
        return None
    loop = asyncio.get_running_loop()
    if not _book or _book[0][0] is not loop:
        rate, store = steps_per_second(), record_store()
        _book[:] = [(loop, CheckpointBook(store, rate) if rate > 0 and store is not None else None)]
    return _book[0][1]
