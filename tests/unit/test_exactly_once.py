"""A resumed trigger (triggerer restart, trigger moved) continues after the last line shown, never from the
cursor it was deferred with; the secrets of a deferred task reach the triggerer's masker sealed.

The checkpoint store is stood in for here (the real ones, XCom through the trigger runner's supervisor on
Airflow 3 and the metadata DB on Airflow 2, are exercised by tests/system against real triggerers)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_hfjobs import masking
from airflow_provider_hfjobs.triggers import hfjobs as trigger_module
from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger
from airflow_provider_hfjobs.triggers.log_checkpoint import (
    MAX_BATCH_LINES,
    Checkpoint,
    CheckpointStore,
    checkpoint_store,
)
from tests.unit.test_trigger import JOB_ID, FakeHook, events, job, recorded, shown


class FakeTI:
    dag_id, task_id, run_id, map_index, try_number = "dag", "train", "manual__1", -1, 1


class MemoryStore(CheckpointStore):
    """One XCom row, kept in memory, shared by the triggers of one test (as the DB is across triggerers)."""

    def __init__(self, value: Any = None, fail: bool = False) -> None:
        super().__init__(FakeTI())
        self.value, self.fail, self.history = value, fail, []

    async def _get(self) -> Any:
        if self.fail:
            raise ConnectionError("supervisor gone")
        return self.value

    async def _set(self, value: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("supervisor gone")
        self.value = value
        self.history.append((value["shown"], value["showing"]))


@pytest.fixture(autouse=True)
def fast_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trigger_module, "CHECKPOINT_INTERVAL", 0.0)
    monkeypatch.setattr(trigger_module, "step_budget", lambda: None)  # no process-wide budget here


def with_store(trigger: HfJobTrigger, store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> HfJobTrigger:
    trigger.task_instance = FakeTI()
    monkeypatch.setattr(trigger_module, "checkpoint_store", lambda ti: store)
    return trigger


LINES = [f"step {i}" for i in range(1, 9)]


class EndsWhenTold(FakeHook):
    """The job's lines at once, then its end only once the test says so (``end``): the trigger has shown
    what it was going to show before the stream ends."""

    def __init__(self, lines: list[str], inspections: list[Any]) -> None:
        super().__init__(lines, inspections)
        self.end = asyncio.Event()

    async def iter_job_log_batches(self, job_id: str, *, namespace: str, cursor: int, **kwargs: Any):
        async for batch in super().iter_job_log_batches(job_id, namespace=namespace, cursor=cursor, **kwargs):
            yield batch
        await self.end.wait()


async def until(check: Any, timeout: float = 30) -> None:
    """Bounded wait for a condition the trigger reaches on its own (never a sleep for luck)."""

    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


async def run_until_shown(
    trigger: HfJobTrigger, hook: EndsWhenTold, store: MemoryStore, shown_: int, monkeypatch
) -> dict[str, Any]:
    """Run the trigger until its checkpoint says ``shown_``, then let the job end; its one event."""
    watching = asyncio.ensure_future(events(trigger, hook, monkeypatch))
    await until(lambda: (store.value or {}).get("shown") == shown_ == (store.value or {}).get("showing"))
    hook.end.set()
    (event,) = await asyncio.wait_for(watching, 30)
    return event


async def test_every_step_is_written_between_an_intent_and_a_confirmation(monkeypatch) -> None:
    store = MemoryStore()
    trigger = with_store(HfJobTrigger(JOB_ID, "alice"), store, monkeypatch)
    log = recorded(trigger)
    hook = EndsWhenTold(LINES[:3], [job("COMPLETED")])
    event = await run_until_shown(trigger, hook, store, 4, monkeypatch)
    assert shown(log, hook) == LINES[:3]
    # The three lines (indexes 1-3; index 0 is the replay's first event) arrived together: one step.
    assert store.history == [(0, 4), (4, 4)]
    assert store.value == {"job_id": f"{JOB_ID}#1", "shown": 4, "showing": 4}
    assert event["log_cursor"] == 4 and event["log_complete"] is True


async def test_the_jobs_end_waits_for_no_step_and_leaves_the_rest_to_the_task(monkeypatch) -> None:
    """Lines waiting for their step when the job ends are not shown by the trigger: the event goes out at
    once, saying where the trigger stopped, and the resumed task shows the rest."""
    monkeypatch.setattr(trigger_module, "CHECKPOINT_INTERVAL", 3600.0)
    store = MemoryStore()
    trigger = with_store(HfJobTrigger(JOB_ID, "alice"), store, monkeypatch)
    log = recorded(trigger)
    trigger._last_step = time.monotonic()  # a step just happened: the next one waits an hour
    hook = FakeHook(LINES[:4], [job("COMPLETED")])
    (event,) = await asyncio.wait_for(events(trigger, hook, monkeypatch), 30)
    assert shown(log, hook) == [] and store.history == []
    assert event["status"] == "success" and event["log_cursor"] == 0 and event["log_complete"] is False


async def test_a_restarted_trigger_resumes_after_the_last_line_shown(monkeypatch) -> None:
    """The triggerer died after the first trigger showed 5 lines: the new one shows the rest, once."""
    store = MemoryStore()
    first = with_store(HfJobTrigger(JOB_ID, "alice"), store, monkeypatch)
    first_log = recorded(first)
    stalls = Trickle(LINES[:6], [])  # five lines printed, the sixth never comes: the job is running
    for gate in stalls.gates[:5]:
        gate.set()
    monkeypatch.setattr(first, "_hook", lambda: stalls)
    consumer = asyncio.ensure_future(anext(first.run(), None))

    async def five_lines_recorded() -> None:
        while store.value != {"job_id": f"{JOB_ID}#1", "shown": 6, "showing": 6}:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(five_lines_recorded(), 30)
    consumer.cancel()  # as a triggerer that stops: the trigger is cancelled mid-watch
    with pytest.raises(asyncio.CancelledError):
        await consumer

    # The resumed trigger has the kwargs the task deferred with: log_cursor 0.
    second = with_store(HfJobTrigger(JOB_ID, "alice"), store, monkeypatch)
    second_log = recorded(second)
    hook = EndsWhenTold(LINES, [job("COMPLETED")])
    event = await run_until_shown(second, hook, store, 9, monkeypatch)
    assert hook.cursors == [6]
    both = shown(first_log, hook) + shown(second_log, hook)
    assert both == LINES  # each line exactly once across the two triggerers
    assert any("no line is repeated" in text for text in second_log.texts("info"))
    assert event["log_cursor"] == 9


async def test_a_trigger_killed_mid_write_says_which_lines_may_repeat(monkeypatch) -> None:
    """Killed between the intent and the confirmation: the unsure lines follow again after one warning."""
    store = MemoryStore({"job_id": f"{JOB_ID}#1", "shown": 3, "showing": 5})
    trigger = with_store(HfJobTrigger(JOB_ID, "alice"), store, monkeypatch)
    log = recorded(trigger)
    hook = EndsWhenTold(LINES, [job("COMPLETED")])
    await run_until_shown(trigger, hook, store, 9, monkeypatch)
    assert hook.cursors == [3]
    (warning,) = log.texts("warning")
    assert "log events 4-5" in warning and "may already appear above" in warning
    assert str(MAX_BATCH_LINES) in warning
    assert shown(log, hook) == LINES[2:]


@pytest.mark.parametrize(
    "stale",
    [
        {"job_id": "another#1", "shown": 5, "showing": 5},  # another job's record
        {"job_id": f"{JOB_ID}#0", "shown": 5, "showing": 5},  # an earlier try's (a retry logs anew)
        {"job_id": f"{JOB_ID}#1", "shown": "5"},  # malformed
        "garbage",
    ],
)
async def test_records_of_other_jobs_tries_or_shapes_are_ignored(stale, monkeypatch) -> None:
    store = MemoryStore(stale)
    trigger = with_store(HfJobTrigger(JOB_ID, "alice"), store, monkeypatch)
    hook = FakeHook(LINES[:2], [job("COMPLETED")])
    await events(trigger, hook, monkeypatch)
    assert hook.cursors == [0]


async def test_a_failing_store_never_fails_the_job_watch(monkeypatch) -> None:
    store = MemoryStore(fail=True)
    trigger = with_store(HfJobTrigger(JOB_ID, "alice"), store, monkeypatch)
    log = recorded(trigger)
    hook = FakeHook(LINES[:3], [job("COMPLETED")])
    (event,) = await events(trigger, hook, monkeypatch)
    assert event["status"] == "success" and shown(log, hook) == LINES[:3]
    (warning,) = log.texts("warning")
    assert "may repeat its lines" in warning


async def test_a_long_replay_is_written_in_bounded_steps(monkeypatch) -> None:
    """The unsure window is one step: a replay of 450 lines in one chunk is three steps, not one."""

    class OneBigChunk(EndsWhenTold):
        async def iter_job_log_batches(self, job_id: str, *, namespace: str, cursor: int, **_: Any):
            from airflow_provider_hfjobs.sse import LogBatch

            self.cursors.append(cursor)
            yield LogBatch(list(range(1, 451)), [f"l{i}" for i in range(1, 451)], [None] * 450)
            await self.end.wait()

    store = MemoryStore()
    trigger = with_store(HfJobTrigger(JOB_ID, "alice"), store, monkeypatch)
    await run_until_shown(trigger, OneBigChunk([], [job("COMPLETED")]), store, 451, monkeypatch)
    intents = [(shown_, showing) for shown_, showing in store.history if showing > shown_]
    assert intents == [(0, 201), (201, 401), (401, 451)]


class Trickle(EndsWhenTold):
    """One line at a time, each after the test lets it through: a job printing slowly; its end once the
    test says so."""

    def __init__(self, lines: list[str], inspections: list[Any]) -> None:
        super().__init__(lines, inspections)
        self.gates = [asyncio.Event() for _ in lines]

    async def iter_job_log_batches(self, job_id: str, *, namespace: str, cursor: int, **_: Any):
        from airflow_provider_hfjobs.sse import LogBatch

        self.cursors.append(cursor)
        for index, (text, gate) in enumerate(zip(self.lines, self.gates, strict=True), start=1):
            await gate.wait()
            yield LogBatch([index], [text], [None])
        await self.end.wait()


async def test_lines_that_arrive_while_a_step_waits_go_out_together(monkeypatch) -> None:
    """A step waits for the trigger's interval (and the process's budget); whatever arrived meanwhile is
    written in that one step, so a chatty job costs two writes per interval, not per line."""
    monkeypatch.setattr(trigger_module, "CHECKPOINT_INTERVAL", 0.2)
    store = MemoryStore()
    trigger = with_store(HfJobTrigger(JOB_ID, "alice"), store, monkeypatch)
    log = recorded(trigger)
    hook = Trickle(LINES[:3], [job("COMPLETED")])
    trigger._last_step = time.monotonic()  # a step just happened: the next one waits its interval
    watching = asyncio.ensure_future(events(trigger, hook, monkeypatch))
    for gate in hook.gates:
        gate.set()
    await until(lambda: store.history)
    assert store.history[0] == (0, 4)  # the three lines, in one step
    await until(lambda: len(store.history) == 2)
    hook.end.set()
    (event,) = await asyncio.wait_for(watching, 10)
    assert shown(log, hook) == LINES[:3] and store.history == [(0, 4), (4, 4)]
    assert event["log_cursor"] == 4


async def test_the_process_budget_hands_out_steps_first_come_first_served(monkeypatch) -> None:
    from airflow_provider_hfjobs.triggers import log_checkpoint

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))

    monkeypatch.setattr(log_checkpoint.asyncio, "sleep", sleep)
    monkeypatch.setattr(log_checkpoint.time, "monotonic", lambda: 100.0)  # all ask at the same moment
    budget = log_checkpoint.StepBudget(per_second=10)
    for _ in range(4):
        await budget.acquire()
    assert slept == [0.1, 0.2, 0.3]  # the first goes at once, each next one 1/10 s later


def test_a_zero_budget_turns_checkpoints_off(monkeypatch) -> None:
    from airflow_provider_hfjobs.triggers import log_checkpoint

    monkeypatch.setenv("AIRFLOW__HFJOBS__LOG_CHECKPOINT_STEPS_PER_SECOND", "0")
    monkeypatch.setattr(log_checkpoint, "_budget", [])
    assert log_checkpoint.step_budget() is None and checkpoint_store(FakeTI()) is None
    monkeypatch.setenv("AIRFLOW__HFJOBS__LOG_CHECKPOINT_STEPS_PER_SECOND", "4")
    monkeypatch.setattr(log_checkpoint, "_budget", [])
    assert log_checkpoint.step_budget().per_second == 4.0
    monkeypatch.setenv("AIRFLOW__HFJOBS__LOG_CHECKPOINT_STEPS_PER_SECOND", "")  # the registered default
    monkeypatch.setattr(log_checkpoint, "_budget", [])
    assert log_checkpoint.step_budget().per_second == log_checkpoint.DEFAULT_STEPS_PER_SECOND


def test_checkpoint_values_round_trip_and_reject_other_jobs() -> None:
    point = Checkpoint("j#1", 3, 5)
    assert Checkpoint.from_value(point.to_value(), "j#1") == point
    assert Checkpoint.from_value(point.to_value(), "k#1") is None
    assert Checkpoint.from_value({"job_id": "j#1", "shown": 4}, "j#1") == Checkpoint("j#1", 4, 4)
    assert Checkpoint.from_value({"job_id": "j#1", "shown": True}, "j#1") is None


def test_no_task_instance_means_no_store() -> None:
    assert checkpoint_store(None) is None
    assert checkpoint_store(FakeTI()) is not None


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
