"""A resumed trigger (triggerer restart, trigger moved) continues after the last line recorded shown, never
from the cursor it was deferred with; every trigger of a process shares one record (group commit), and no
line is ever shown past the place its process last wrote (checked at every line, in every test here); the
secrets of a deferred task reach the triggerer's masker sealed.

The record store is stood in for here by a dictionary of Variables shared by several "processes" (books),
as the metadata DB is by triggerers; the real stores (Variables through the trigger runner's supervisor on
Airflow 3, the metadata DB on Airflow 2) are exercised by tests/integration/test_checkpoint_store.py and, in
real triggerers, tests/system/test_triggerer_restart.py."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_hfjobs import masking
from airflow_provider_hfjobs.sse import LogBatch
from airflow_provider_hfjobs.triggers import hfjobs as trigger_module
from airflow_provider_hfjobs.triggers import log_checkpoint
from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger
from airflow_provider_hfjobs.triggers.log_checkpoint import (
    HEADROOM,
    RECORD_PREFIX,
    Checkpoint,
    CheckpointBook,
    RecordStore,
    checkpoint_book,
    position_key,
)
from tests.unit.test_trigger import JOB_ID, FakeHook, events, job, recorded, shown


class FakeTI:
    dag_id, task_id, run_id, map_index, try_number = "dag", "train", "manual__1", -1, 1


KEY = position_key(FakeTI(), JOB_ID)


class MemoryStore(RecordStore):
    """Variables in a dictionary, shared by the books (processes) of one test, as the metadata DB is."""

    def __init__(self, fail: bool = False) -> None:
        self.values: dict[str, str] = {}
        self.fail = fail
        self.puts: list[dict[str, Any]] = []
        self.gets: list[str] = []
        self.listings = 0

    def _check(self) -> None:
        if self.fail:
            raise ConnectionError("supervisor gone")

    async def keys(self, prefix: str, offset: int) -> tuple[list[str], int]:
        self._check()
        self.listings += 1
        found = sorted(key for key in self.values if key.startswith(prefix))
        return found[offset:], len(found)

    async def get(self, key: str) -> str | None:
        self._check()
        self.gets.append(key)
        return self.values.get(key)

    async def put(self, key: str, value: str) -> None:
        self._check()
        self.values[key] = value
        self.puts.append(json.loads(value))

    async def delete(self, key: str) -> None:
        self._check()
        self.values.pop(key, None)

    def history(self, key: str = KEY) -> list[tuple[int, int]]:
        """One trigger's place in each write, in order."""
        return [tuple(put["positions"][key]) for put in self.puts if key in put["positions"]]

    def record(self, positions: dict[str, list[int]], *, updated: float | None = None, seq: int = 1) -> None:
        """A record left by another (gone) process."""
        value = {"v": 1, "seq": seq, "updated": time.time() if updated is None else updated,
                 "positions": positions}  # fmt: skip
        self.values[f"{RECORD_PREFIX}other{len(self.values)}"] = json.dumps(value)


def process(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch, per_second: float = 1000.0
) -> CheckpointBook:
    """A trigger-runner process: its book, on the shared store, used by every trigger started after this."""
    book = CheckpointBook(store, per_second)
    monkeypatch.setattr(trigger_module, "checkpoint_book", lambda ti: book if ti is not None else None)
    monkeypatch.setattr(HfJobTrigger, "_show", _show_checked)
    return book


_SHOW = HfJobTrigger._show


def _show_checked(trigger: HfJobTrigger, texts: Any, end: int) -> None:
    """The invariant of the design: a line is shown only before the ``showing`` its process's record says
    as stored (so a stopped triggerer's successor repeats no line it does not declare)."""
    book = trigger._book
    if book is not None and book.failure is None:
        value = book.store.values.get(book.record_key)  # type: ignore[attr-defined]
        place = json.loads(value)["positions"].get(trigger._checkpoint_key) if value else None
        assert place is not None and end <= place[1], f"line before {end} shown, the record says {place}"
    _SHOW(trigger, texts, end)


def triggered(job_id: str = JOB_ID) -> HfJobTrigger:
    trigger = HfJobTrigger(job_id, "alice")
    trigger.task_instance = FakeTI()
    return trigger


@pytest.fixture(autouse=True)
def quick_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Look-ups as soon as asked, and triggers that start at once (no random spread)."""
    monkeypatch.setattr(log_checkpoint, "LOOKUP_INTERVAL", 0.0)
    monkeypatch.setattr(trigger_module, "START_COST_SECONDS", 0.0)


LINES = [f"step {i}" for i in range(1, 9)]


class EndsWhenTold(FakeHook):
    """The job's lines at once, then its end only once the test says so (``end``): the trigger has shown
    what it was going to show before the stream ends."""

    def __init__(self, lines: list[str], inspections: list[Any], gate: asyncio.Event | None = None) -> None:
        super().__init__(lines, inspections)
        self.gate = gate  # the lines come once it is set (None: at once)
        self.end = asyncio.Event()

    async def iter_job_log_batches(self, job_id: str, *, namespace: str, cursor: int, **kwargs: Any):
        if self.gate is not None:
            await self.gate.wait()
        async for batch in super().iter_job_log_batches(job_id, namespace=namespace, cursor=cursor, **kwargs):
            yield batch
        await self.end.wait()


async def until(check: Any, timeout: float = 30) -> None:
    """Bounded wait for a condition the triggers reach on their own (never a sleep for luck)."""

    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


def recorded_at(store: MemoryStore, end: int, key: str = KEY) -> bool:
    """The record (trailing the lines shown) says the lines before ``end`` are shown."""
    history = store.history(key)
    return bool(history) and history[-1][0] == end


async def run_until_shown(
    trigger: HfJobTrigger, hook: EndsWhenTold, store: MemoryStore, end: int, monkeypatch
) -> dict[str, Any]:
    """Run the trigger until the record says it showed everything before ``end``, then let the job end."""
    watching = asyncio.ensure_future(events(trigger, hook, monkeypatch))
    await until(lambda: recorded_at(store, end) or watching.done())
    hook.end.set()
    (event,) = await asyncio.wait_for(watching, 30)
    return event


async def test_lines_wait_for_a_reservation_once_then_the_record_trails_them(monkeypatch) -> None:
    store = MemoryStore()
    book = process(store, monkeypatch)
    trigger = triggered()
    log = recorded(trigger)
    hook = EndsWhenTold(LINES[:3], [job("COMPLETED")])
    event = await run_until_shown(trigger, hook, store, 4, monkeypatch)
    assert shown(log, hook) == LINES[:3]
    await until(lambda: store.history()[-1] == (4, 4))  # closed: its place written exact
    # The three lines (indexes 1-3; index 0 is the replay's first event) waited for the trigger's first
    # reservation; the record then said they were shown; the trigger's end made it exact.
    assert store.history() == [(0, HEADROOM), (4, 4 + HEADROOM), (4, 4)] and book.writes == 3
    assert event["log_cursor"] == 4 and event["log_complete"] is True
    assert all(put["positions"].keys() == {KEY} for put in store.puts)  # a hash: no job id, no log text
    assert JOB_ID not in json.dumps(store.values)


async def test_lines_under_a_reservation_are_shown_at_once_without_a_write(monkeypatch) -> None:
    """Once a streaming trigger holds a reservation its lines wait for nothing: no write, however slow
    the next one would be (a busy supervisor), until it has shown :data:`HEADROOM` lines past its record."""
    store = MemoryStore()
    book = process(store, monkeypatch)
    trigger = triggered()
    log = recorded(trigger)
    hook = Trickle(LINES[:4], [job("COMPLETED")])
    watching = asyncio.ensure_future(events(trigger, hook, monkeypatch))
    hook.gates[0].set()
    await until(lambda: recorded_at(store, 2))  # the first line waited for the first reservation
    book.per_second = 1 / 3600  # the next write: in an hour
    writes = book.writes
    for gate in hook.gates[1:]:
        gate.set()
    await until(lambda: len(shown(log, hook)) == 4)
    assert book.writes == writes and store.history()[-1] == (2, 2 + HEADROOM)
    hook.end.set()
    (event,) = await asyncio.wait_for(watching, 30)
    assert event["log_cursor"] == 5 and event["log_complete"] is True


async def test_one_write_covers_every_triggers_lines(monkeypatch) -> None:
    """Group commit: fifty triggers with lines waiting cost one write for their reservations and one for
    the record to say they were shown, not a hundred."""
    store = MemoryStore()
    book = process(store, monkeypatch)
    gate = asyncio.Event()
    ids = [f"{i:024x}" for i in range(50)]
    keys = [position_key(FakeTI(), job_id) for job_id in ids]
    hooks = [EndsWhenTold(LINES[:3], [job("COMPLETED")], gate) for _ in ids]
    triggers = [HfJobTrigger(job_id, "alice") for job_id in ids]
    logs = []
    for trigger, hook in zip(triggers, hooks, strict=True):
        trigger.task_instance = FakeTI()
        logs.append(recorded(trigger))
        monkeypatch.setattr(trigger, "_hook", lambda hook=hook: hook)
    watching = [asyncio.ensure_future(anext(trigger.run())) for trigger in triggers]
    await until(lambda: len(book._entries) == 50)  # every trigger found its place and opened its stream
    assert store.listings == 1  # the fifty starts shared one look-up
    gate.set()  # every job prints its lines, in the same moment
    await until(lambda: all(recorded_at(store, 4, key) for key in keys))
    assert book.writes == 2
    assert all(set(put["positions"]) == set(keys) for put in store.puts)
    for hook in hooks:
        hook.end.set()
    done = await asyncio.wait_for(asyncio.gather(*watching), 30)
    assert all(event.payload["log_cursor"] == 4 for event in done)
    assert all(shown(log, hook) == LINES[:3] for log, hook in zip(logs, hooks, strict=True))


async def test_the_jobs_end_waits_for_no_write_and_leaves_the_rest_to_the_task(monkeypatch) -> None:
    """Lines waiting for a write when the job ends are not shown by the trigger: the event goes out at
    once, saying where the trigger stopped, and the resumed task shows the rest."""
    store = MemoryStore()
    book = process(store, monkeypatch, per_second=1 / 3600)
    book._last_step = asyncio.get_running_loop().time()  # a step just happened: the next one in an hour
    trigger = triggered()
    log = recorded(trigger)
    hook = FakeHook(LINES[:4], [job("COMPLETED")])
    (event,) = await asyncio.wait_for(events(trigger, hook, monkeypatch), 30)
    assert shown(log, hook) == [] and store.history() == []
    assert event["status"] == "success" and event["log_cursor"] == 0 and event["log_complete"] is False


async def test_a_restarted_trigger_resumes_after_the_last_line_recorded(monkeypatch) -> None:
    """The first process stopped after its trigger showed 5 lines, recorded, with lines allowed ahead:
    the next one shows the rest, once, and says that the lines after the record may repeat."""
    store = MemoryStore()
    book = process(store, monkeypatch)
    first = triggered()
    first_log = recorded(first)
    stalls = Trickle(LINES[:6], [])  # five lines printed, the sixth never comes: the job is running
    for gate in stalls.gates[:5]:
        gate.set()
    monkeypatch.setattr(first, "_hook", lambda: stalls)
    consumer = asyncio.ensure_future(anext(first.run(), None))
    await until(lambda: recorded_at(store, 6))
    book._committer.cancel()  # as a triggerer that stops: it writes nothing more...
    consumer.cancel()  # ...and the trigger is cancelled mid-watch
    with pytest.raises(asyncio.CancelledError):
        await consumer

    # A new process; the resumed trigger has the kwargs the task deferred with: log_cursor 0.
    process(store, monkeypatch)
    second = triggered()
    second_log = recorded(second)
    hook = EndsWhenTold(LINES, [job("COMPLETED")])
    event = await run_until_shown(second, hook, store, 9, monkeypatch)
    assert hook.cursors == [6]
    both = shown(first_log, hook) + shown(second_log, hook)
    assert both == LINES  # each line exactly once across the two triggerers (none shown past the record)
    (warning,) = second_log.texts("warning")
    assert f"log events 7-{6 + HEADROOM} of job" in warning and f"at most {HEADROOM} lines" in warning
    assert event["log_cursor"] == 9


async def test_a_restarted_trigger_silent_before_the_stop_repeats_nothing_and_says_so(monkeypatch) -> None:
    """A trigger silent for IDLE_AFTER has its reservation dropped: the place is exact."""
    monkeypatch.setattr(log_checkpoint, "IDLE_AFTER", 0.0)
    store = MemoryStore()
    process(store, monkeypatch)
    first = triggered()
    stalls = Trickle(LINES[:6], [])
    for gate in stalls.gates[:5]:
        gate.set()
    monkeypatch.setattr(first, "_hook", lambda: stalls)
    consumer = asyncio.ensure_future(anext(first.run(), None))
    await until(lambda: store.history() and store.history()[-1] == (6, 6))
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    process(store, monkeypatch)
    second = triggered()
    second_log = recorded(second)
    hook = EndsWhenTold(LINES, [job("COMPLETED")])
    await run_until_shown(second, hook, store, 9, monkeypatch)
    assert hook.cursors == [6] and shown(second_log, hook) == LINES[5:]
    assert any("no line is repeated" in text for text in second_log.texts("info"))
    assert not second_log.texts("warning")


async def test_a_stopped_triggers_lines_past_its_record_repeat_once_declared(monkeypatch) -> None:
    """Stopped after showing lines the record did not say yet (the record trails): those lines, and only
    those, appear twice, inside the window the resumed trigger declares."""
    store = MemoryStore()
    book = process(store, monkeypatch)
    first = triggered()
    first_log = recorded(first)
    stalls = Trickle(LINES[:6], [])
    stalls.gates[0].set()
    monkeypatch.setattr(first, "_hook", lambda: stalls)
    consumer = asyncio.ensure_future(anext(first.run(), None))
    await until(lambda: recorded_at(store, 2))
    book.per_second = 1 / 3600  # no write after this one
    for gate in stalls.gates[1:5]:
        gate.set()
    await until(lambda: len(shown(first_log, stalls)) == 5)  # shown under the reservation, not recorded
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    process(store, monkeypatch)
    second = triggered()
    second_log = recorded(second)
    hook = EndsWhenTold(LINES, [job("COMPLETED")])
    await run_until_shown(second, hook, store, 9, monkeypatch)
    assert hook.cursors == [2]
    assert shown(first_log, hook) + shown(second_log, hook) == LINES[:5] + LINES[1:]
    (warning,) = second_log.texts("warning")
    assert f"log events 3-{2 + HEADROOM} of job" in warning and "may already appear above" in warning


async def test_a_trigger_killed_mid_write_says_which_lines_may_repeat(monkeypatch) -> None:
    """Killed between the intent and the confirmation: the unsure lines follow again after one warning."""
    store = MemoryStore()
    store.record({KEY: [3, 5]})
    process(store, monkeypatch)
    trigger = triggered()
    log = recorded(trigger)
    hook = EndsWhenTold(LINES, [job("COMPLETED")])
    await run_until_shown(trigger, hook, store, 9, monkeypatch)
    assert hook.cursors == [3]
    (warning,) = log.texts("warning")
    assert "log events 4-5" in warning and "may already appear above" in warning
    assert "at most 2 lines" in warning
    assert shown(log, hook) == LINES[2:]


async def test_the_furthest_place_of_any_process_wins(monkeypatch) -> None:
    """A trigger that moved twice is in two gone processes' records: the later (further) place counts."""
    store = MemoryStore()
    store.record({KEY: [2, 2]})
    store.record({KEY: [5, 5]})
    process(store, monkeypatch)
    trigger = triggered()
    hook = EndsWhenTold(LINES, [job("COMPLETED")])
    await run_until_shown(trigger, hook, store, 9, monkeypatch)
    assert hook.cursors == [5]


@pytest.mark.parametrize(
    "stale",
    [
        {position_key(FakeTI(), "another"): [5, 5]},  # another job's place
        {position_key(type("Try0", (FakeTI,), {"try_number": 0})(), JOB_ID): [5, 5]},  # an earlier try's
        {KEY: "5"},  # malformed
        {KEY: [True, 5]},
    ],
)
async def test_places_of_other_jobs_tries_or_shapes_are_ignored(stale, monkeypatch) -> None:
    store = MemoryStore()
    store.record(stale)
    store.values[f"{RECORD_PREFIX}garbage"] = "not json"
    process(store, monkeypatch)
    trigger = triggered()
    hook = EndsWhenTold(LINES[:2], [job("COMPLETED")])
    await run_until_shown(trigger, hook, store, 3, monkeypatch)
    assert hook.cursors == [0]


async def test_a_failing_store_never_fails_the_job_watch(monkeypatch) -> None:
    store = MemoryStore(fail=True)
    process(store, monkeypatch)
    trigger = triggered()
    log = recorded(trigger)
    hook = FakeHook(LINES[:3], [job("COMPLETED")])
    (event,) = await events(trigger, hook, monkeypatch)
    assert event["status"] == "success" and shown(log, hook) == LINES[:3]
    (warning,) = log.texts("warning")
    assert "may repeat its lines" in warning


async def test_writes_failing_mid_watch_say_so_once_and_show_the_lines_as_they_come(monkeypatch) -> None:
    store = MemoryStore()
    book = process(store, monkeypatch)
    trigger = triggered()
    log = recorded(trigger)
    hook = Trickle(LINES[:3], [job("COMPLETED")])
    watching = asyncio.ensure_future(events(trigger, hook, monkeypatch))
    hook.gates[0].set()
    await until(lambda: recorded_at(store, 2))
    store.fail = True
    hook.gates[1].set()
    await until(lambda: book.failure is not None)
    hook.gates[2].set()
    await until(lambda: len(shown(log, hook)) == 3)
    hook.end.set()
    (event,) = await asyncio.wait_for(watching, 30)
    assert shown(log, hook) == LINES[:3] and event["log_cursor"] == 4
    (warning,) = log.texts("warning")
    assert "may repeat its lines" in warning and "supervisor gone" in warning


async def test_a_long_replay_is_shown_in_bounded_reservations(monkeypatch) -> None:
    """The unsure window is one reservation: a replay of 450 lines in one chunk takes three."""

    class OneBigChunk(EndsWhenTold):
        async def iter_job_log_batches(self, job_id: str, *, namespace: str, cursor: int, **_: Any):
            self.cursors.append(cursor)
            yield LogBatch(list(range(1, 451)), [f"l{i}" for i in range(1, 451)], [None] * 450)
            await self.end.wait()

    store = MemoryStore()
    process(store, monkeypatch)
    await run_until_shown(triggered(), OneBigChunk([], [job("COMPLETED")]), store, 451, monkeypatch)
    assert store.history()[:4] == [(0, 200), (200, 400), (400, 600), (451, 651)]


class Trickle(EndsWhenTold):
    """One line at a time, each after the test lets it through: a job printing slowly; its end once the
    test says so."""

    def __init__(self, lines: list[str], inspections: list[Any]) -> None:
        super().__init__(lines, inspections)
        self.gates = [asyncio.Event() for _ in lines]

    async def iter_job_log_batches(self, job_id: str, *, namespace: str, cursor: int, **_: Any):
        self.cursors.append(cursor)
        for index, (text, gate) in enumerate(zip(self.lines, self.gates, strict=True), start=1):
            await gate.wait()
            if index >= cursor:
                yield LogBatch([index], [text], [None])
        await self.end.wait()


async def test_records_of_gone_processes_are_read_once_and_deleted_when_old(monkeypatch) -> None:
    monkeypatch.setattr(log_checkpoint, "STALE_AFTER", 0.0)
    store = MemoryStore()
    store.record({KEY: [2, 2]})  # a process that stopped just now
    store.record({KEY: [1, 1]}, updated=time.time() - log_checkpoint.RECORD_TTL - 60)  # a week ago
    book = process(store, monkeypatch)
    assert await book.find(KEY) == Checkpoint(2, 2)
    assert len(store.values) == 1  # the week-old record is gone
    gets = len(store.gets)
    assert await book.find(KEY) == Checkpoint(2, 2)
    assert len(store.gets) == gets  # the gone process's record is not read again


async def test_a_live_processs_record_is_read_again(monkeypatch) -> None:
    store = MemoryStore()
    store.record({KEY: [2, 2]}, seq=1)
    book = process(store, monkeypatch)
    assert await book.find(KEY) == Checkpoint(2, 2)
    (other,) = store.values
    store.values[other] = store.values[other].replace('"seq": 1', '"seq": 2').replace("[2, 2]", "[4, 4]")
    assert await book.find(KEY) == Checkpoint(4, 4)


async def test_a_process_with_nothing_left_to_keep_deletes_its_record(monkeypatch) -> None:
    monkeypatch.setattr(log_checkpoint, "CLOSED_KEPT", 0.0)
    store = MemoryStore()
    book = process(store, monkeypatch)
    trigger = triggered()
    hook = EndsWhenTold(LINES[:2], [job("COMPLETED")])
    await run_until_shown(trigger, hook, store, 3, monkeypatch)
    await until(lambda: book._committer.done())
    assert store.values == {} and store.puts


async def test_a_trigger_starting_while_the_record_is_deleted_still_shows_its_lines(monkeypatch) -> None:
    monkeypatch.setattr(log_checkpoint, "CLOSED_KEPT", 0.0)

    class SlowDelete(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.deleting, self.release = asyncio.Event(), asyncio.Event()

        async def delete(self, key: str) -> None:
            self.deleting.set()
            await self.release.wait()
            await super().delete(key)

    store = SlowDelete()
    book = process(store, monkeypatch)
    await run_until_shown(triggered(), EndsWhenTold(LINES[:2], [job("COMPLETED")]), store, 3, monkeypatch)
    await until(store.deleting.is_set)  # nothing left to keep: the process deletes its record...
    other = "0" * 24
    second = triggered(other)
    log = recorded(second)
    hook = EndsWhenTold(LINES[:2], [job("COMPLETED")])
    monkeypatch.setattr(second, "_hook", lambda: hook)
    watching = asyncio.ensure_future(anext(second.run()))
    await until(lambda: position_key(FakeTI(), other) in book._entries)  # ...while another trigger starts
    store.release.set()
    await until(lambda: recorded_at(store, 3, position_key(FakeTI(), other)))
    hook.end.set()
    await asyncio.wait_for(watching, 30)
    assert shown(log, hook) == LINES[:2]


async def test_a_missing_place_is_no_error_and_needs_no_record_of_its_own(monkeypatch, caplog) -> None:
    store = MemoryStore()
    book = process(store, monkeypatch)
    assert await book.find(KEY) is None
    assert store.values == {} and not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]


async def test_no_task_instance_rate_zero_or_no_listing_means_no_checkpoints(monkeypatch) -> None:
    monkeypatch.setattr(log_checkpoint, "_book", [])
    monkeypatch.setattr(log_checkpoint, "_rate", [2.0])
    assert checkpoint_book(None) is None
    book = checkpoint_book(FakeTI())
    assert isinstance(book, CheckpointBook) and checkpoint_book(FakeTI()) is book  # one per process
    monkeypatch.setattr(log_checkpoint, "_book", [])
    monkeypatch.setattr(log_checkpoint, "_rate", [0.0])
    assert checkpoint_book(FakeTI()) is None
    monkeypatch.setattr(log_checkpoint, "_book", [])
    monkeypatch.setattr(log_checkpoint, "_rate", [2.0])
    monkeypatch.setattr(log_checkpoint, "record_store", lambda: None)
    assert checkpoint_book(FakeTI()) is None


def test_the_rate_comes_from_the_configuration(monkeypatch) -> None:
    for raw, rate in (("0", 0.0), ("4", 4.0), ("", log_checkpoint.DEFAULT_STEPS_PER_SECOND)):
        monkeypatch.setenv("AIRFLOW__HFJOBS__LOG_CHECKPOINT_STEPS_PER_SECOND", raw)
        monkeypatch.setattr(log_checkpoint, "_rate", [])
        assert log_checkpoint.steps_per_second() == rate


def test_checkpoint_values_and_keys() -> None:
    assert Checkpoint.from_value([3, 5]) == Checkpoint(3, 5)
    assert Checkpoint.from_value([4, 2]) == Checkpoint(4, 4)
    assert Checkpoint.from_value([True, 1]) is None and Checkpoint.from_value({"shown": 1}) is None
    assert position_key(FakeTI(), "a") != position_key(FakeTI(), "b")
    mapped = type("Mapped", (FakeTI,), {"map_index": 3})()
    assert position_key(mapped, "a") != position_key(FakeTI(), "a")


# ------------------------------------------------------------------------------------------------ masking
def test_secret_values_travel_sealed_and_the_triggerer_masks_them(monkeypatch) -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()

    class Key:
        is_encrypted = True
        _fernet = Fernet(key)

        def encrypt(self, data: bytes) -> bytes:
            return self._fernet.encrypt(data)

        def decrypt(self, data: bytes) -> bytes:
            return self._fernet.decrypt(data)

    monkeypatch.setattr(masking, "_fernet", lambda: Key())
    sealed = masking.seal_mask_values(["hf_canary_secret_1234", "", 7, "hf_canary_secret_1234"])
    assert sealed and "hf_canary_secret_1234" not in sealed
    trigger = HfJobTrigger(JOB_ID, "alice", mask_values_sealed=sealed)
    _, kwargs = trigger.serialize()
    assert "hf_canary_secret_1234" not in json.dumps(kwargs) and "hf_canary" not in repr(trigger)
    assert masking.unseal_mask_values(sealed) == ["hf_canary_secret_1234"]


def test_without_a_fernet_key_nothing_is_sent_and_the_task_says_so(monkeypatch) -> None:
    from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

    monkeypatch.setattr(masking, "_fernet", lambda: None)
    assert masking.seal_mask_values(["hf_canary_secret_1234"]) is None
    assert masking.unseal_mask_values("gAAAA-not-readable") == []
    op = HfJobRunOperator(task_id="t", image="python:3.12", command=["true"], secrets={"K": "hf_canary_x"})
    warnings: list[str] = []
    monkeypatch.setattr(op.log, "warning", lambda message, *args: warnings.append(message % args))
    assert op._sealed_secrets() is None
    assert len(warnings) == 1 and "fernet_key" in warnings[0] and "hf_canary_x" not in warnings[0]


async def test_the_trigger_registers_unsealed_values_with_the_masker(monkeypatch) -> None:
    masked: list[str] = []
    monkeypatch.setattr(trigger_module, "mask_secret", masked.append)
    monkeypatch.setattr(
        trigger_module, "unseal_mask_values", lambda sealed: ["hf_canary_v"] if sealed else []
    )
    trigger = HfJobTrigger(JOB_ID, "alice", mask_values_sealed="sealed-blob")
    await events(trigger, FakeHook(["x"], [job("COMPLETED")]), monkeypatch)
    assert masked == ["hf_canary_v"]


async def test_a_closed_entry_lets_go_of_its_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished trigger's entry is kept a while (a retry here resumes exactly) but must not keep the
    trigger itself reachable: at thousands of triggers, dead ones kept alive make every full GC slower."""
    import gc
    import weakref

    book = process(MemoryStore(), monkeypatch)

    class Shower:
        def show(self, texts: Any, end: int) -> None:
            pass

        def failed(self, exc: BaseException) -> None:
            pass

    owner = Shower()
    entry = book.open(KEY, 0, owner.show, owner.failed)
    gone = weakref.ref(owner)
    del owner
    gc.collect()
    assert gone() is not None  # an open entry shows lines through its trigger
    entry.close()
    gc.collect()
    assert gone() is None, "a closed entry still holds its trigger"
    assert book._entries[KEY] is entry and entry.closed_at is not None  # still kept, place final
    entry.add([0], ["after the end"])  # a line after close shows nothing and raises nothing
    await book.settle(entry, timeout=1.0)  # its exact place is written all the same
    assert book.store.values  # type: ignore[attr-defined]


async def test_an_ended_triggers_event_waits_for_the_write_of_its_place(monkeypatch) -> None:
    """``settle`` returns soon after the write that makes the place exact lands, and soon when the store
    fails (no write will come), long before its timeout."""
    loop = asyncio.get_running_loop()
    store = MemoryStore()
    book = process(store, monkeypatch)
    entry = book.open(KEY, 0, lambda texts, end: None, lambda exc: None)
    entry.add([0, 1], ["a", "b"])
    await until(lambda: entry.shown == 2)
    entry.close()
    began = loop.time()
    await book.settle(entry, timeout=10)
    assert entry.written == (2, 2) and loop.time() - began < 2
    assert store.history()[-1] == (2, 2)

    failing = MemoryStore()
    book = process(failing, monkeypatch)
    entry = book.open(KEY, 0, lambda texts, end: None, lambda exc: None)
    entry.close()
    failing.fail = True
    began = loop.time()
    await book.settle(entry, timeout=10)
    assert book.failure is not None and loop.time() - began < 2
