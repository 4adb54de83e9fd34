"""A job's end never waits for the trigger's display steps: the lines a deferred trigger had not shown when
the job ended are shown by the resumed task (``HfJobRunOperator``, ``HfJobSensor`` with ``stream_logs``),
read over HTTP from the position the event carries. Every line exactly once across the two, before the
task's result; a trigger that showed everything costs the task no logs request."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator
from airflow_provider_hfjobs.sensors.hfjobs import HfJobSensor
from airflow_provider_hfjobs.triggers import hfjobs as trigger_module
from airflow_provider_hfjobs.triggers import log_checkpoint
from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger
from airflow_provider_hfjobs.triggers.log_checkpoint import CheckpointBook
from tests.integration.conftest import NAMESPACE, TOKEN, set_connection
from tests.integration.waiting import wait_for
from tests.unit.test_exactly_once import FakeTI as TriggerTI
from tests.unit.test_exactly_once import MemoryStore
from tests.unit.test_operators import FakeTI
from tests.unit.test_trigger import RecordingLog, recorded

pytestmark = pytest.mark.integration

CONN = "hf_handoff"
LINES = [f"handoff line {i:02d}" for i in range(12)]


def gated(*gates: tuple[Path, int]) -> list[str]:
    """Prints :data:`LINES`, waiting for each ``(gate, at)``'s file to exist before printing line ``at``."""
    code = (
        "import os, time\n"
        f"lines, gates = {LINES!r}, {dict((at, str(gate)) for gate, at in gates)!r}\n"
        "for at, line in enumerate(lines):\n"
        "    while at in gates and not os.path.exists(gates[at]): time.sleep(0.02)\n"
        "    print(line, flush=True)\n"
    )
    return ["python", "-c", code]


@pytest.fixture
def conn(server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch) -> str:
    set_connection(monkeypatch, CONN, server.url, TOKEN, namespace=NAMESPACE)
    return CONN


@pytest.fixture
def slow_display(monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    """Checkpoints on (a stand-in record store), reservations of 4 lines, and the process's second write an
    hour after its first: the lines past the first reservation are all still waiting when the job ends."""
    monkeypatch.setattr(log_checkpoint, "HEADROOM", 4)
    store = MemoryStore()
    book = CheckpointBook(store, per_second=1 / 3600)
    monkeypatch.setattr(trigger_module, "checkpoint_book", lambda ti: book if ti is not None else None)
    monkeypatch.setattr(trigger_module, "START_COST_SECONDS", 0.0)
    return store


def task_log(monkeypatch: pytest.MonkeyPatch, cls: type) -> RecordingLog:
    log = RecordingLog()
    monkeypatch.setattr(cls, "log", property(lambda self: log), raising=False)
    return log


def requests_for(server: LocalJobsServer, job_id: str) -> int:
    """API requests the server counted for one job."""
    counted = requests.get(
        f"{server.url}/_local/stats?per_job=1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    return counted.json()["per_job"][job_id]


def job_lines(log: RecordingLog) -> list[str]:
    return [text for text in log.texts("info") if text.startswith("handoff line")]


def run_trigger(trigger: HfJobTrigger, gate: Path, store: MemoryStore) -> dict[str, Any]:
    """The trigger until its first reservation is written, then the job is let go; its one event."""

    async def watch() -> dict[str, Any]:
        watching = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.to_thread(wait_for, "the trigger's first reservation", lambda: len(store.puts) >= 1)
        gate.touch()
        return (await asyncio.wait_for(watching, 120)).payload

    return asyncio.run(watch())


def test_the_resumed_operator_shows_what_the_trigger_had_not(
    conn: str, slow_display: MemoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = tmp_path / "go"
    op = HfJobRunOperator(
        task_id="train", image="python:3.12", command=gated((gate, 8)), hf_conn_id=conn, deferrable=True,
        reattach=False, poll_interval=0.2,
    )  # fmt: skip
    worker = task_log(monkeypatch, HfJobRunOperator)
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})
    trigger = deferred.value.trigger
    trigger.task_instance = TriggerTI()
    shown_by_trigger = recorded(trigger)
    event = run_trigger(trigger, gate, slow_display)

    assert event["status"] == "success" and event["log_complete"] is False
    by_trigger = job_lines(shown_by_trigger)
    assert by_trigger and by_trigger == LINES[: len(by_trigger)]  # its first step only
    assert op.execute_complete({"ti": ti}, event) == event["job_id"]
    by_worker = job_lines(worker)
    assert by_trigger + by_worker == LINES  # each line once, in order
    assert len(by_worker) >= 4  # at least the lines printed after the gate
    final = worker.texts("info")[-1]
    assert final.startswith(f"Hugging Face job {event['job_id']} COMPLETED"), final  # after the lines


def test_the_resumed_sensor_shows_what_the_trigger_had_not(
    conn: str, slow_display: MemoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook
) -> None:
    first, then = tmp_path / "first", tmp_path / "then"
    job = hook.run_job(image="python:3.12", command=gated((first, 3), (then, 6)))
    wait_for("the job's first lines", lambda: len(list(hook.fetch_job_logs(job.id, follow=False))) >= 3)
    sensor = HfJobSensor(
        task_id="watch", job_id=job.id, hf_conn_id=conn, stream_logs=True, deferrable=True, poke_interval=0.2
    )
    worker = task_log(monkeypatch, HfJobSensor)
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": ti})
    shown_before = job_lines(worker)  # the sensor's own look, before deferring
    trigger = deferred.value.trigger
    trigger.task_instance = TriggerTI()
    shown_by_trigger = recorded(trigger)

    first.touch()
    event = run_trigger(trigger, then, slow_display)
    assert event["status"] == "success" and event["log_complete"] is False
    assert job_lines(shown_by_trigger)
    sensor.execute_complete({"ti": ti}, event)
    everything = shown_before + job_lines(shown_by_trigger) + job_lines(worker)[len(shown_before) :]
    assert everything == LINES


def test_a_trigger_that_showed_everything_costs_the_task_no_logs_request(
    conn: str, server: LocalJobsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints off: the trigger shows each line as it comes, the event says so, the task reads nothing."""
    monkeypatch.setattr(trigger_module, "checkpoint_book", lambda ti: None)
    monkeypatch.setattr(trigger_module, "START_COST_SECONDS", 0.0)
    op = HfJobRunOperator(
        task_id="train", image="python:3.12", command=gated(), hf_conn_id=conn, deferrable=True,
        reattach=False, poll_interval=0.2,
    )  # fmt: skip
    worker = task_log(monkeypatch, HfJobRunOperator)
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})
    trigger = deferred.value.trigger
    shown_by_trigger = recorded(trigger)

    async def watch() -> dict[str, Any]:
        return (await anext(trigger.run())).payload

    event = asyncio.run(watch())
    assert event["log_complete"] is True and job_lines(shown_by_trigger) == LINES
    before = requests_for(server, event["job_id"])
    op.execute_complete({"ti": ti}, event)
    assert job_lines(worker) == []
    assert requests_for(server, event["job_id"]) - before == 1  # the final inspect only
