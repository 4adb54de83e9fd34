"""HfJobTrigger: serialization and every event branch, with a stand-in async hook (unit edges only; the
real HTTP path is covered in tests/integration)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from airflow_provider_hfjobs.exceptions import (
    HfJobsConnectionError,
    HfJobsNotFoundError,
    HfJobsServerError,
    HfJobsTLSError,
)
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsCredentials
from airflow_provider_hfjobs.jobs import JobInfo
from airflow_provider_hfjobs.sse import LogBatch
from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger

JOB_ID = "687fb701029421ae5549d998"


@pytest.fixture(autouse=True)
def no_start_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Triggers wait a random moment before their first request (spreading a triggerer restart); not here."""
    from airflow_provider_hfjobs.triggers import hfjobs as module

    monkeypatch.setattr(module, "START_COST_SECONDS", 0.0)


def job(stage: str, message: str | None = None) -> JobInfo:
    return JobInfo.from_api(
        {
            "id": JOB_ID,
            "owner": {"id": "1", "name": "alice", "type": "user"},
            "status": {"stage": stage, "message": message},
        },
        "http://hub.test",
    )


class FakeHook:
    """Plays back a script of log lines and inspect answers (values or exceptions)."""

    def __init__(self, lines: list[str] | Exception = (), inspections: list[Any] = ()) -> None:
        self.lines = lines
        self.inspections = list(inspections)
        self.cursors: list[int] = []
        self.inspected = 0
        self.cancelled: list[str] = []

    async def __aenter__(self) -> FakeHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def get_credentials(self) -> HfJobsCredentials:
        return HfJobsCredentials(endpoint="http://hub.test", token="hf_secret_token_value", namespace="alice")

    async def iter_job_log_batches(self, job_id: str, *, namespace: str, cursor: int, **_: Any):
        self.cursors.append(cursor)
        if isinstance(self.lines, Exception):
            raise self.lines
        for index, text in enumerate(self.lines, start=1):
            if index >= cursor:
                yield LogBatch([index], [text], [None])

    async def cancel_job(self, job_id: str, *, namespace: str) -> None:
        self.cancelled.append(job_id)

    async def inspect_job(self, job_id: str, *, namespace: str) -> JobInfo:
        self.inspected += 1
        if self.cancelled:  # a verified cancel looks again: the job ended
            return job("CANCELED")
        answer = self.inspections.pop(0) if self.inspections else job("RUNNING")
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def wait_for_job(self, job_id: str, *, namespace: str, **_: Any) -> JobInfo:
        return await self.inspect_job(job_id, namespace=namespace)


class RecordingLog:
    """Stands in for the trigger's logger: what the task log would show, formatted."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def _record(self, level: str, message: str, *args: Any, **_: Any) -> None:
        self.records.append((level, message % args if args else message))

    def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._record("info", message, *args, **kwargs)

    def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._record("warning", message, *args, **kwargs)

    def texts(self, level: str | None = None) -> list[str]:
        return [text for lvl, text in self.records if level in (None, lvl)]


def recorded(trigger: HfJobTrigger) -> RecordingLog:
    trigger._log = RecordingLog()  # LoggingMixin.log returns _log once set
    return trigger._log


async def events(
    trigger: HfJobTrigger, hook: FakeHook, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    monkeypatch.setattr(trigger, "_hook", lambda: hook)
    return [event.payload async for event in trigger.run()]


def shown(log: RecordingLog, hook: FakeHook) -> list[str]:
    """The job's lines the trigger wrote to the task log, in order."""
    return [text for text in log.texts("info") if text in hook.lines]


def test_serialize_round_trip_holds_only_plain_values() -> None:
    trigger = HfJobTrigger(
        JOB_ID, "alice", "hf_conn", poll_interval=3, stream_logs=False, deadline=123.0, log_cursor=7
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_hfjobs.triggers.hfjobs.HfJobTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert HfJobTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert not any("token" in key or "secret" in key for key in kwargs)


@pytest.mark.parametrize(
    ("stage", "status"),
    [("COMPLETED", "success"), ("ERROR", "error"), ("CANCELED", "cancelled"), ("DELETED", "cancelled")],
)
async def test_terminal_stage_gives_one_event(stage: str, status: str, monkeypatch) -> None:
    hook = FakeHook(["a", "b"], [job(stage, "exit code 1" if stage == "ERROR" else None)])
    trigger = HfJobTrigger(JOB_ID, "alice")
    log = recorded(trigger)
    (event,) = await events(trigger, hook, monkeypatch)
    assert event["status"] == status and event["stage"] == stage
    assert shown(log, hook) == ["a", "b"] and event["log_cursor"] == 3
    assert event["job_url"] == f"http://hub.test/jobs/alice/{JOB_ID}"
    # Airflow logs every event and stores it in the DB: no line of the job travels in it.
    assert "log_lines" not in event and '"a"' not in json.dumps(event) and '"b"' not in json.dumps(event)


async def test_resumed_trigger_starts_at_its_cursor(monkeypatch) -> None:
    hook = FakeHook(["a", "b", "c"], [job("COMPLETED")])
    trigger = HfJobTrigger(JOB_ID, "alice", log_cursor=3)
    log = recorded(trigger)
    (event,) = await events(trigger, hook, monkeypatch)
    assert hook.cursors == [3] and shown(log, hook) == ["c"] and event["log_cursor"] == 4


async def test_deadline_passed_gives_timeout_event(monkeypatch) -> None:
    hook = FakeHook([], [job("RUNNING")] * 100)
    trigger = HfJobTrigger(
        JOB_ID, "alice", stream_logs=False, poll_interval=0.01, deadline=time.time() + 0.05
    )
    (event,) = await events(trigger, hook, monkeypatch)
    assert event["status"] == "timeout" and event["stage"] is None


async def test_transient_errors_are_tolerated_in_a_row(monkeypatch) -> None:
    flaky = [
        HfJobsServerError("boom", status_code=502),
        HfJobsConnectionError("down"),
        job("RUNNING"),
        job("COMPLETED"),
    ]
    trigger = HfJobTrigger(JOB_ID, "alice", stream_logs=False, poll_interval=0.001, max_consecutive_errors=2)
    (event,) = await events(trigger, FakeHook([], flaky), monkeypatch)
    assert event["status"] == "success"


async def test_too_many_errors_in_a_row_give_an_error_event(monkeypatch) -> None:
    failing = [HfJobsConnectionError("down")] * 3
    trigger = HfJobTrigger(JOB_ID, "alice", stream_logs=False, poll_interval=0.001, max_consecutive_errors=2)
    (event,) = await events(trigger, FakeHook([], failing), monkeypatch)
    assert event["status"] == "error" and event["stage"] is None and "down" in event["message"]


@pytest.mark.parametrize(
    "permanent",
    [HfJobsNotFoundError("job gone", status_code=404), HfJobsTLSError("TLS certificate verification failed")],
)
async def test_permanent_error_is_not_retried(permanent, monkeypatch) -> None:
    hook = FakeHook([], [permanent, job("COMPLETED")])
    (event,) = await events(
        HfJobTrigger(JOB_ID, "alice", stream_logs=False, poll_interval=0.001), hook, monkeypatch
    )
    assert event["status"] == "error" and hook.inspected == 1


async def test_log_streaming_failure_falls_back_to_polling(monkeypatch) -> None:
    hook = FakeHook(HfJobsConnectionError("stream kept failing"), [job("COMPLETED")])
    (event,) = await events(HfJobTrigger(JOB_ID, "alice", poll_interval=0.001), hook, monkeypatch)
    assert event["status"] == "success"


async def test_trigger_logs_each_line_verbatim(monkeypatch, capsys) -> None:
    hook = FakeHook(["100% done", "line with %s"], [job("COMPLETED")])
    await events(HfJobTrigger(JOB_ID, "alice"), hook, monkeypatch)
    out = capsys.readouterr().out  # Airflow 3 routes self.log through structlog to stdout
    assert "100% done" in out and "line with %s" in out


class FakeTI:
    dag_id, task_id, run_id = "dag", "train", "manual__1"

    def __init__(self, map_index: int = -1) -> None:
        self.map_index = map_index


@pytest.mark.parametrize(
    ("still_deferred", "cancel_on_kill", "event_sent", "cancels"),
    [
        (False, True, False, True),
        (True, True, False, False),
        (False, False, False, False),
        (False, True, True, False),
    ],
)
async def test_on_kill_cancels_only_a_job_nobody_watches(
    still_deferred, cancel_on_kill, event_sent, cancels, monkeypatch
) -> None:
    hook = FakeHook()
    trigger = HfJobTrigger(JOB_ID, "alice", cancel_on_kill=cancel_on_kill)
    trigger._event_sent = event_sent
    monkeypatch.setattr(trigger, "_hook", lambda: hook)

    async def deferred() -> bool:
        return still_deferred

    monkeypatch.setattr(trigger, "_task_still_deferred", deferred)
    await trigger.on_kill()
    assert hook.cancelled == ([JOB_ID] if cancels else [])


@pytest.mark.parametrize(
    ("map_index", "states", "expected"),
    [
        (-1, {"manual__1": {"train": "deferred"}}, True),
        (-1, {"manual__1": {"train": "failed"}}, False),
        (2, {"manual__1": {"train_2": "deferred"}}, True),
        (2, {"manual__1": {"train_1": "deferred", "train_2": "success"}}, False),
    ],
)
async def test_task_state_check(map_index, states, expected, monkeypatch) -> None:
    # Airflow 3 only: on 2.11 there is no trigger on_kill, and no task SDK to ask.
    task_runner = pytest.importorskip("airflow.sdk.execution_time.task_runner")
    asked = []

    class Comms:
        async def asend(self, message):
            asked.append(message)
            return type("TaskStatesResult", (), {"task_states": states})()

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", Comms(), raising=False)
    trigger = HfJobTrigger(JOB_ID, "alice")
    trigger.task_instance = FakeTI(map_index)
    assert await trigger._task_still_deferred() is expected
    (message,) = asked
    assert (message.dag_id, message.task_ids, message.run_ids, message.map_index) == (
        "dag",
        ["train"],
        ["manual__1"],
        map_index,
    )


async def test_task_state_unknown_means_user_action() -> None:
    trigger = HfJobTrigger(JOB_ID, "alice")
    assert await trigger._task_still_deferred() is False  # no task instance attached


async def test_log_stream_that_gives_up_is_caught_up_after_the_job_ends(monkeypatch) -> None:
    class GivesUpOnce(FakeHook):
        async def iter_job_log_batches(self, job_id: str, *, namespace: str, cursor: int, **_: Any):
            self.cursors.append(cursor)
            for index, text in enumerate(self.lines, start=1):
                if index >= cursor:
                    yield LogBatch([index], [text], [None])
                if len(self.cursors) == 1 and index == 2:
                    raise HfJobsConnectionError("the stream kept failing")

    hook = GivesUpOnce(["a", "b", "c", "d"], [job("COMPLETED")])
    trigger = HfJobTrigger(JOB_ID, "alice", poll_interval=0.001)
    log = recorded(trigger)
    (event,) = await events(trigger, hook, monkeypatch)
    assert hook.cursors == [0, 3] and shown(log, hook) == ["a", "b", "c", "d"] and event["log_cursor"] == 5


@pytest.mark.parametrize(
    ("on_kill_exists", "still_deferred", "cancels"),
    [
        (False, False, True),  # Airflow < 3.3: a user stopped the task; only the cancelled trigger can tell
        (False, True, False),  # Airflow < 3.3: triggerer restart or trigger moving; the job runs on
        (True, False, False),  # Airflow >= 3.3: on_kill does it; a cancelled trigger is no user action
    ],
)
async def test_cancelled_trigger_cancels_the_job_only_before_3_3_and_only_if_the_task_left_deferred(
    on_kill_exists, still_deferred, cancels, monkeypatch
) -> None:
    import asyncio

    from airflow_provider_hfjobs.triggers import hfjobs as module

    monkeypatch.setattr(module, "TRIGGER_ON_KILL", on_kill_exists)
    hook = FakeHook(lines=[], inspections=[job("RUNNING")] * 100)
    trigger = HfJobTrigger(JOB_ID, "alice", poll_interval=0.01, cancel_on_kill=True)
    monkeypatch.setattr(trigger, "_hook", lambda: hook)

    async def deferred() -> bool:
        return still_deferred

    monkeypatch.setattr(trigger, "_task_still_deferred", deferred)

    async def consume() -> None:
        async for _ in trigger.run():
            pass

    task = asyncio.ensure_future(consume())
    while hook.inspected < 2:  # the trigger is watching
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hook.cancelled == ([JOB_ID] if cancels else [])


async def test_task_state_from_the_db_on_airflow_2(monkeypatch) -> None:
    """Airflow 2's triggerer has the metadata DB: the state comes from there, off the event loop."""
    from airflow_provider_hfjobs.triggers import hfjobs as module

    asked = []

    def from_db(ti):
        asked.append((ti.dag_id, ti.task_id, ti.run_id, ti.map_index))
        return "failed"

    monkeypatch.setattr(module, "AIRFLOW_V_3_PLUS", False)
    monkeypatch.setattr(module, "_task_state_from_db", from_db)
    trigger = HfJobTrigger(JOB_ID, "alice")
    trigger.task_instance = FakeTI(-1)
    assert await trigger._task_still_deferred() is False
    assert asked == [("dag", "train", "manual__1", -1)]


async def test_a_stream_that_ended_on_the_terminal_job_needs_no_second_look(monkeypatch) -> None:
    hook = FakeHook(["a"], [])
    hook.last_terminal_job = job("ERROR", "exit code 3")  # what the async hook keeps from its last look
    (event,) = await events(HfJobTrigger(JOB_ID, "alice"), hook, monkeypatch)
    assert (event["status"], event["message"], hook.inspected) == ("error", "exit code 3", 0)


async def test_triggers_starting_together_share_one_connection_lookup(monkeypatch) -> None:
    """Thousands of triggers (re)started at once ask Airflow for their connection once, not each; an edited
    connection is read again once the few seconds pass."""
    from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, _recent_credentials

    def connect_to(host: str) -> None:
        conn = {"conn_type": "hf_jobs", "host": host, "password": "hf_x", "extra": {"namespace": "ns"}}
        monkeypatch.setenv("AIRFLOW_CONN_HF_SHARED", json.dumps(conn))

    connect_to("http://127.0.0.1:1")
    first = await HfJobsAsyncHook("hf_shared").get_credentials()
    connect_to("http://127.0.0.1:2")
    second = await HfJobsAsyncHook("hf_shared").get_credentials()
    assert first is second and second.endpoint == "http://127.0.0.1:1"
    monkeypatch.setattr(_recent_credentials, "seconds", -1.0)  # every entry has expired
    assert (await HfJobsAsyncHook("hf_shared").get_credentials()).endpoint == "http://127.0.0.1:2"


async def test_triggers_starting_while_the_lookup_is_under_way_join_it(monkeypatch) -> None:
    """The triggers that start while the first look-up is in flight wait for it instead of each making
    their own (5,000 of 10,000 did, in benchmarks/scale.py); one that is cancelled meanwhile does not
    cancel it for the others."""
    import asyncio

    from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook

    conn = {"conn_type": "hf_jobs", "host": "http://127.0.0.1:1", "password": "hf_x", "extra": {"namespace": "n"}}
    monkeypatch.setenv("AIRFLOW_CONN_HF_JOINED", json.dumps(conn))
    gate, calls = asyncio.Event(), []
    look_up = HfJobsAsyncHook._look_up_credentials

    async def slow(self: HfJobsAsyncHook) -> Any:
        calls.append(self)
        await gate.wait()
        return await look_up(self)

    monkeypatch.setattr(HfJobsAsyncHook, "_look_up_credentials", slow)
    callers = [asyncio.ensure_future(HfJobsAsyncHook("hf_joined").get_credentials()) for _ in range(50)]
    await asyncio.sleep(0.01)
    callers[0].cancel()
    gate.set()
    found = await asyncio.gather(*callers[1:])
    assert len(calls) == 1 and all(creds is found[0] for creds in found)
    assert found[0].endpoint == "http://127.0.0.1:1" and callers[0].cancelled()


@pytest.mark.parametrize("on_kill_exists", [False, True])
async def test_a_trigger_not_told_it_owns_the_job_never_cancels_it(on_kill_exists, monkeypatch) -> None:
    """``HfJobSensor`` builds its trigger without ``cancel_on_kill``: a job it only watches is not its own,
    whatever stops the watch (a cancelled trigger before 3.3, ``on_kill`` on 3.3)."""
    import asyncio

    from airflow_provider_hfjobs.triggers import hfjobs as module

    monkeypatch.setattr(module, "TRIGGER_ON_KILL", on_kill_exists)
    hook = FakeHook(lines=[], inspections=[job("RUNNING")] * 100)
    trigger = HfJobTrigger(JOB_ID, "alice", poll_interval=0.01)
    assert trigger.serialize()[1]["cancel_on_kill"] is False
    monkeypatch.setattr(trigger, "_hook", lambda: hook)

    async def not_deferred() -> bool:
        return False

    monkeypatch.setattr(trigger, "_task_still_deferred", not_deferred)

    async def consume() -> None:
        async for _ in trigger.run():
            pass

    task = asyncio.ensure_future(consume())
    while hook.inspected < 2:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await trigger.on_kill()
    assert hook.cancelled == []


async def test_an_unexpected_exception_becomes_an_error_event(monkeypatch) -> None:
    """A bug or an odd answer never kills the trigger silently: the task gets an error event (and, being
    the job's owner, cancels it when it resumes)."""
    hook = FakeHook(lines=[], inspections=[RecursionError("deep"), job("RUNNING")])
    trigger = HfJobTrigger(JOB_ID, "alice", stream_logs=False, poll_interval=0.01, cancel_on_kill=True)
    monkeypatch.setattr(trigger, "_hook", lambda: hook)
    payloads = [event.payload async for event in trigger.run()]
    assert len(payloads) == 1
    assert payloads[0]["status"] == "error" and payloads[0]["stage"] is None
    assert "RecursionError" in payloads[0]["message"] and "deep" not in payloads[0]["message"]


async def test_cancel_reports_a_job_already_over_as_what_it_is(monkeypatch) -> None:
    """A stop arriving after the job ended (an old trigger picked up late) sends no cancel and says so."""
    hook = FakeHook(lines=[], inspections=[job("COMPLETED")])
    trigger = HfJobTrigger(JOB_ID, "alice", cancel_on_kill=True)
    monkeypatch.setattr(trigger, "_hook", lambda: hook)
    log = recorded(trigger)

    async def not_deferred() -> bool:
        return False

    monkeypatch.setattr(trigger, "_task_still_deferred", not_deferred)
    await trigger.on_kill()
    assert hook.cancelled == []
    assert ("info", f"Hugging Face job {JOB_ID} had already ended COMPLETED (its task was stopped): nothing "
            "to cancel.") in log.records  # fmt: skip
    assert not any("Cancelled" in message for _, message in log.records)
