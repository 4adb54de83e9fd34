"""The local server's load-testing mode: scripted jobs in memory, no process, same HTTP API; and the
request counts benchmarks read from ``/_local/stats``."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
from airflow_provider_hfjobs.jobs import JobStage
from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.local.simulated import Scenario
from tests.unit.test_trigger import recorded

pytestmark = pytest.mark.integration

TOKEN = "hf_sim_token"
NS = "simulator"
NO_SUCH_PROGRAM = ["/no/such/program"]  # never run: a simulated job only plays its script


@pytest.fixture(scope="module")
def server() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS, simulate=Scenario(duration=0.3, lines=5)) as srv:
        yield srv


@pytest.fixture
def hook(server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch) -> HfJobsHook:
    conn = {"conn_type": "hf_jobs", "host": server.url, "password": TOKEN, "extra": {"namespace": NS}}
    monkeypatch.setenv("AIRFLOW_CONN_HF_SIM", json.dumps(conn))
    return HfJobsHook("hf_sim")


def test_a_simulated_job_plays_its_script(hook: HfJobsHook) -> None:
    job = hook.run_job(image="python:3.12", command=NO_SUCH_PROGRAM)
    lines = list(hook.fetch_job_logs(job.id, follow=True))
    assert [line.split(" of job ")[0] for line in lines] == [f"line {i}" for i in range(5)]
    assert all(len(line) == 60 for line in lines)
    assert hook.wait_for_job(job.id, poll_interval=0.05, timeout=30).stage is JobStage.COMPLETED


def test_a_job_overrides_the_script_through_its_environment(hook: HfJobsHook) -> None:
    env = {"HFJOBS_SIM_STAGE": "error", "HFJOBS_SIM_LINES": "2", "HFJOBS_SIM_DURATION": "0"}
    job = hook.wait_for_job(
        hook.run_job(image="python:3.12", command=NO_SUCH_PROGRAM, env=env).id, poll_interval=0.05
    )
    assert (job.stage, job.message, len(list(hook.fetch_job_logs(job.id)))) == (
        JobStage.ERROR,
        "exit code 1",
        2,
    )
    bad = hook.run_job(image="python:3.12", command=NO_SUCH_PROGRAM, env={"HFJOBS_SIM_LINES": "many"})
    bad = hook.wait_for_job(bad.id, poll_interval=0.05)
    assert bad.stage is JobStage.ERROR and "HFJOBS_SIM" not in bad.message and "lines='many'" in bad.message


def test_jitter_spreads_the_durations_of_jobs_started_together(hook: HfJobsHook) -> None:
    """Each job runs duration ± jitter, drawn from its id: jobs created together end over a window."""
    env = {"HFJOBS_SIM_DURATION": "0.4", "HFJOBS_SIM_JITTER": "0.4", "HFJOBS_SIM_LINES": "2"}
    jobs = [hook.run_job(image="python:3.12", command=NO_SUCH_PROGRAM, env=env) for _ in range(6)]
    jobs = [hook.wait_for_job(job.id, poll_interval=0.05, timeout=30) for job in jobs]
    planned = [0.4 + random.Random(job.id).uniform(-0.4, 0.4) for job in jobs]
    taken = [(job.finished_at - job.started_at).total_seconds() for job in jobs]
    assert all(p - 0.01 <= t <= p + 5 for p, t in zip(planned, taken, strict=True)), (planned, taken)
    assert len(set(planned)) == 6  # six ids, six durations (rounded to 1 ms, two of six collide ~2% of runs)


def test_jobs_waiting_for_a_start_file_begin_together_when_it_appears(hook: HfJobsHook, tmp_path) -> None:
    """``HFJOBS_SIM_START_AFTER``: RUNNING at once, but no line and no end before the file exists (a
    benchmark creating thousands of jobs over seconds starts them all in one moment); the path is kept
    as given, not upper-cased like the stage."""
    start = tmp_path / "Start"
    env = {"HFJOBS_SIM_START_AFTER": str(start), "HFJOBS_SIM_DURATION": "0.2", "HFJOBS_SIM_LINES": "2"}
    jobs = [hook.run_job(image="python:3.12", command=NO_SUCH_PROGRAM, env=env) for _ in range(3)]
    time.sleep(0.3)  # longer than the jobs' duration
    assert {hook.inspect_job(job.id).stage for job in jobs} == {JobStage.RUNNING}
    assert all(list(hook.fetch_job_logs(job.id)) == [] for job in jobs)
    start.touch()
    done = [hook.wait_for_job(job.id, poll_interval=0.05, timeout=30) for job in jobs]
    assert {job.stage for job in done} == {JobStage.COMPLETED}
    assert all(len(list(hook.fetch_job_logs(job.id))) == 2 for job in jobs)


def test_a_long_simulated_log_is_replayed_whole(hook: HfJobsHook, monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-memory log budget holds only for lines also on disk: a simulated job has nowhere else to
    replay them from (``benchmarks/logs.py`` replays 100,000 lines)."""
    from airflow_provider_hfjobs.local import store

    monkeypatch.setattr(store, "LOG_MEMORY_BUDGET", 16 << 10)
    env = {"HFJOBS_SIM_LINES": "3000", "HFJOBS_SIM_DURATION": "0"}
    job = hook.wait_for_job(hook.run_job(image="python:3.12", command=NO_SUCH_PROGRAM, env=env).id)
    lines = list(hook.fetch_job_logs(job.id))
    assert [line.split(" of job ")[0] for line in lines] == [f"line {i}" for i in range(3000)]


def test_a_simulated_job_can_be_cancelled(hook: HfJobsHook) -> None:
    job = hook.run_job(image="python:3.12", command=NO_SUCH_PROGRAM, env={"HFJOBS_SIM_DURATION": "300"})
    hook.cancel_job(job.id)
    assert hook.inspect_job(job.id).stage is JobStage.CANCELED


def test_stats_count_api_requests_by_kind(server: LocalJobsServer, hook: HfJobsHook) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{server.url}/_local/stats"
    assert requests.get(url, timeout=10).status_code == 401
    job = hook.run_job(image="python:3.12", command=NO_SUCH_PROGRAM, env={"HFJOBS_SIM_DURATION": "0"})
    requests.delete(url, headers=auth, timeout=10)
    hook.inspect_job(job.id)
    list(hook.fetch_job_logs(job.id))
    stats = requests.get(url, headers=auth, timeout=10).json()
    assert stats["requests"] == {"inspect": 1, "logs": 1} and stats["total"] == 2
    assert stats["jobs"]["COMPLETED"] >= 1


def test_a_trigger_checks_the_stage_on_its_log_stream_connection(
    server: LocalJobsServer, hook: HfJobsHook
) -> None:
    """A streaming trigger costs the API two requests on one connection: the stage check after the
    stream's end reuses it (over TLS, one handshake per job instead of two)."""
    from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger

    auth = {"Authorization": f"Bearer {TOKEN}"}
    job = hook.run_job(image="python:3.12", command=NO_SUCH_PROGRAM, env={"HFJOBS_SIM_DURATION": "0.3"})
    requests.delete(f"{server.url}/_local/stats", headers=auth, timeout=10)

    trigger = HfJobTrigger(job.id, NS, "hf_sim", poll_interval=0.1)
    log = recorded(trigger)

    async def watch() -> list:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(watch())
    assert event["status"] == "success" and event["log_cursor"] == 6
    assert len([text for text in log.texts("info") if text.startswith("line ")]) == 5
    stats = requests.get(f"{server.url}/_local/stats?per_job=1", headers=auth, timeout=10).json()
    assert stats["per_job"][job.id] == 2 and stats["requests"] == {"logs": 1, "inspect": 1}
    assert stats["per_job_connections"][job.id] == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("duration=soon", "not a number"),
        ("stage=RUNNING", "not one of"),
        ("speed=1", "unknown scenario keys"),
        ("duration=2,jitter=3", "between 0 and the duration"),
    ],
)
def test_bad_scenarios_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scenario.parse(spec)
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_hfjobs.local", "serve", "--simulate", spec],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "--simulate" in result.stderr and message in result.stderr
