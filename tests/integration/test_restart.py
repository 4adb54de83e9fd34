"""A local server that restarts, or is replaced by a new one on the same state directory, loses nothing:
jobs run on while it is down, clients reconnect, every log line arrives exactly once, no job is repeated.
And a server without a state directory never leaves a job running unwatched when it dies."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, HfJobsHook
from airflow_provider_hfjobs.jobs import JobStage, RetryPolicy
from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger
from tests.integration.waiting import wait_for
from tests.unit.test_trigger import recorded

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_job_left_behind")]

TOKEN = "hf_restart_token"
NS = "restarter"
# Long enough to ride out a restart (about a second of refused connections), short enough to fail fast.
PATIENT = RetryPolicy(max_retries=12, base_delay=0.1, max_delay=0.5)


def gated_job(gate: Path, before: int = 4, after: int = 4) -> list[str]:
    """Prints ``before`` lines, touches ``gate.ready``, waits for ``gate`` to exist, prints ``after`` more:
    the test decides when the job moves on, so a restart happens while it runs, with lines on both sides."""
    code = (
        "import os, pathlib, time\n"
        f"for i in range({before}): print(f'line {{i}}', flush=True)\n"
        f"pathlib.Path({str(gate)!r} + '.ready').touch()\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
        f"for i in range({before}, {before + after}): print(f'line {{i}}', flush=True)\n"
    )
    return ["python", "-c", code]


def printed_first_lines(gate: Path) -> bool:
    return Path(f"{gate}.ready").exists()


def expected(count: int) -> list[str]:
    return [f"line {i}" for i in range(count)]


def hook_for(
    server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, conn_id: str = "hf_restart"
) -> HfJobsHook:
    conn = {"conn_type": "hf_jobs", "host": server.url, "password": TOKEN, "extra": {"namespace": NS}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return HfJobsHook(conn_id, retry_policy=PATIENT)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=str(tmp_path / "state")) as srv:
        yield srv


def test_sync_hook_follows_a_job_across_a_restart(server, monkeypatch, tmp_path) -> None:
    hook = hook_for(server, monkeypatch)
    gate = tmp_path / "gate"
    job = hook.run_job(image="python:3.12", command=gated_job(gate), labels={"case": "hook-restart"})
    lines: list[str] = []
    follower = threading.Thread(target=lambda: lines.extend(hook.fetch_job_logs(job.id, follow=True)))
    follower.start()
    wait_for("line 3 to reach the follower", lambda: "line 3" in lines)
    server.restart(downtime=0.5)
    gate.touch()
    follower.join(timeout=60)
    assert not follower.is_alive()
    assert lines == expected(8)
    assert hook.wait_for_job(job.id, poll_interval=0.1, timeout=30).stage is JobStage.COMPLETED
    assert [j.id for j in hook.list_jobs(labels={"case": "hook-restart"})] == [job.id]


def test_trigger_follows_a_job_across_a_restart(server, monkeypatch, tmp_path) -> None:
    hook = hook_for(server, monkeypatch)
    gate = tmp_path / "gate"
    job = hook.run_job(image="python:3.12", command=gated_job(gate), labels={"case": "trigger-restart"})
    trigger = HfJobTrigger(job.id, NS, "hf_restart", poll_interval=0.1)
    log = recorded(trigger)
    monkeypatch.setattr(
        trigger, "_hook", lambda: HfJobsAsyncHook("hf_restart", namespace=NS, retry_policy=PATIENT)
    )

    async def restart_midway() -> None:
        await asyncio.to_thread(wait_for, "the first lines", lambda: printed_first_lines(gate))
        await asyncio.to_thread(server.restart, 0.5)
        gate.touch()

    async def run() -> list[dict]:
        restarting = asyncio.ensure_future(restart_midway())
        events = [event.payload async for event in trigger.run()]
        await restarting
        return events

    (event,) = asyncio.run(asyncio.wait_for(run(), 120))
    assert event["status"] == "success", event
    assert [text for text in log.texts("info") if text.startswith("line ")] == expected(8)
    assert [j.id for j in hook.list_jobs(labels={"case": "trigger-restart"})] == [job.id]


def test_a_new_server_on_the_same_state_directory_takes_over(monkeypatch, tmp_path) -> None:
    """Server A stops with one job running and one waiting; server B, on the same state directory and
    another port, finishes both with every line, and serves A's finished job unchanged."""
    state, gate = str(tmp_path / "state"), tmp_path / "gate"
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=state, max_concurrency=1) as first:
        hook = hook_for(first, monkeypatch, "hf_first")
        done = hook.run_job(image="python:3.12", command=["python", "-c", "print('early')"])
        hook.wait_for_job(done.id, poll_interval=0.05, timeout=30)
        running = hook.run_job(
            image="python:3.12", command=gated_job(gate), secrets={"TOKEN_FOR_JOB": "s3cr3t-value"}
        )
        waiting = hook.run_job(
            image="python:3.12",
            command=["python", "-c", "import os; print('second', os.environ['WAITING'])"],
            secrets={"WAITING": "w4it"},
        )
        wait_for("the first lines", lambda: printed_first_lines(gate))
        assert hook.inspect_job(waiting.id).stage is JobStage.SCHEDULING
    # A waiting job's secret values are kept (0600) for the server that starts it; a running one's are not.
    assert not (Path(state) / "jobs" / running.id / "secrets.json").exists()
    secrets_file = Path(state) / "jobs" / waiting.id / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    gate.touch()  # the job runs on while no server is up
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=state, max_concurrency=1) as second:
        hook = hook_for(second, monkeypatch, "hf_second")
        assert hook.wait_for_job(running.id, poll_interval=0.05, timeout=30).stage is JobStage.COMPLETED
        assert list(hook.fetch_job_logs(running.id)) == expected(8)
        assert hook.wait_for_job(waiting.id, poll_interval=0.05, timeout=30).stage is JobStage.COMPLETED
        assert list(hook.fetch_job_logs(waiting.id)) == ["second w4it"]  # its secret, kept across
        assert not secrets_file.exists()
        again = hook.inspect_job(done.id)
        assert (again.stage, again.created_at, list(hook.fetch_job_logs(done.id))) == (
            JobStage.COMPLETED,
            done.created_at,
            ["early"],
        )
        assert {j.id for j in hook.list_jobs()} == {done.id, running.id, waiting.id}


def test_restart_over_http(server: LocalJobsServer) -> None:
    url = f"{server.url}/_local/restart"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.post(url, json={"downtime": 0.2}, timeout=10).status_code == 401
    assert requests.post(url, json={"downtime": -1}, headers=auth, timeout=10).status_code == 400
    answer = requests.post(url, json={"downtime": 0.2}, headers=auth, timeout=10)
    assert answer.status_code == 202 and answer.json() == {"restarting": True, "downtime": 0.2}

    def whoami() -> bool:
        try:
            return requests.get(f"{server.url}/api/whoami-v2", headers=auth, timeout=5).ok
        except requests.ConnectionError:
            return False

    wait_for("the server to answer again", whoami)


def start_cli(*args: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_hfjobs.local", "serve", "--port", "0", "--token", TOKEN,
         "--namespace", NS, *args],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    first, second = process.stdout.readline(), process.stdout.readline()
    assert first.startswith("Local Hugging Face Jobs server on http://127.0.0.1:"), first
    assert "export HF_ENDPOINT=" in second and TOKEN not in second, second  # a chosen token is never echoed
    return process, first.split()[6]


def test_cli_serves_with_faults_and_state_dir(tmp_path: Path) -> None:
    process, url = start_cli(
        "--state-dir", str(tmp_path / "state"), "--fault", "status,status=418,path=hardware"
    )
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.get(f"{url}/api/jobs/hardware", headers=auth, timeout=10).status_code == 418
        assert requests.get(f"{url}/api/jobs/hardware", headers=auth, timeout=10).status_code == 200
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    assert (tmp_path / "state" / "jobs").is_dir()


def test_cli_rejects_a_bad_fault_spec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_hfjobs.local", "serve", "--fault", "explode"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "--fault" in result.stderr and "kind" in result.stderr


SLEEPER = ["python", "-c", "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(300)"]


def sleeper_pid(hook: HfJobsHook, job_id: str) -> int:
    """The pid a SLEEPER job printed first: the process that must not outlive its server."""
    lines = hook.fetch_job_logs(job_id, follow=True)
    try:
        return int(next(lines))
    finally:
        lines.close()


def test_a_dying_server_without_state_takes_its_jobs_with_it(monkeypatch) -> None:
    """Nothing could ever pick these jobs up again, so they must not run on unwatched."""
    process, url = start_cli()
    try:
        conn = {"conn_type": "hf_jobs", "host": url, "password": TOKEN, "extra": {"namespace": NS}}
        monkeypatch.setenv("AIRFLOW_CONN_HF_CLI", json.dumps(conn))
        hook = HfJobsHook("hf_cli", retry_policy=PATIENT)
        pid = sleeper_pid(hook, hook.run_job(image="python:3.12", command=SLEEPER).id)
        assert os.path.exists(f"/proc/{pid}")
    finally:
        process.kill()  # no chance to clean up: only the job's shim can stop the job now
        process.wait(timeout=30)
    wait_for(f"job process {pid} to stop", lambda: not os.path.exists(f"/proc/{pid}"), timeout=15)


def test_stop_without_state_cancels_running_jobs(monkeypatch) -> None:
    with LocalJobsServer(token=TOKEN, namespace=NS) as server:
        hook = hook_for(server, monkeypatch)
        job = hook.run_job(image="python:3.12", command=SLEEPER)
        pid = sleeper_pid(hook, job.id)
    wait_for(f"job process {pid} to stop", lambda: not os.path.exists(f"/proc/{pid}"), timeout=15)


def test_stop_with_state_leaves_jobs_running_for_the_next_server(monkeypatch, tmp_path) -> None:
    state = str(tmp_path / "state")
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=state) as server:
        hook = hook_for(server, monkeypatch)
        job = hook.run_job(image="python:3.12", command=SLEEPER)
        pid = sleeper_pid(hook, job.id)
    assert os.path.exists(f"/proc/{pid}")
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=state) as server:
        hook = hook_for(server, monkeypatch, "hf_next")
        assert hook.inspect_job(job.id).stage is JobStage.RUNNING
        assert hook.cancel_job(job.id).stage is JobStage.CANCELED
    wait_for(f"job process {pid} to stop", lambda: not os.path.exists(f"/proc/{pid}"), timeout=15)
