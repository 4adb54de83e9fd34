"""A real Airflow deployment: ``airflow standalone`` (Airflow 3: scheduler, triggerer, API server, DAG
processor, LocalExecutor; Airflow 2.11: scheduler, triggerer, webserver, SequentialExecutor) in its own
process group, with the local Jobs server beside it.

Triggers the quickstart DAG through the REST API and reads the deferred task's log through the REST log
endpoint; marks a deferred task failed through the API and checks that the job gets CANCELED (Airflow 3.3:
the trigger's ``on_kill``; before: the cancelled trigger finds its task no longer DEFERRED).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer
from tests.integration.airflow_run import REPO, count

pytestmark = [pytest.mark.system, pytest.mark.airflow_db]
AIRFLOW_3 = int(pytest.importorskip("airflow").__version__.split(".")[0]) >= 3

TOKEN = "hf_system_token"
NS = "system-user"
EXPORTS = f"{NS}/system-exports"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except requests.RequestException as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last})")


class Deployment:
    def __init__(self, home: Path, jobs: LocalJobsServer) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        dags = home / "dags"
        dags.mkdir(parents=True)
        for source in [
            *(REPO / "example_dags").glob("example_hfjobs_quickstart.py"),
            REPO / "example_dags" / "example_hfjobs_assets.py",
            REPO / "tests/dags/hfjobs_long.py",
            REPO / "tests/dags/hfjobs_watch.py",
        ]:
            (dags / source.name).write_text(source.read_text())
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "HF_"))}
        self.env.update(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL="5",
            AIRFLOW_CONN_HF_DEFAULT=json.dumps({"conn_type": "hf_jobs", "host": jobs.url, "password": TOKEN}),
            HFJOBS_EXAMPLE_EXPORTS=EXPORTS,  # the bucket example_hfjobs_assets writes, its consumer waits on
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        if AIRFLOW_3:
            self.env.update(
                AIRFLOW__API__PORT=str(self.port),
                AIRFLOW__API__HOST="127.0.0.1",
                AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.url}/execution/",
            )
        else:
            self.env.update(
                AIRFLOW__WEBSERVER__WEB_SERVER_PORT=str(self.port),
                AIRFLOW__WEBSERVER__WEB_SERVER_HOST="127.0.0.1",
                AIRFLOW__WEBSERVER__WORKERS="1",
                AIRFLOW__API__AUTH_BACKENDS="airflow.api.auth.backend.basic_auth",
            )
        self.api_root = f"{self.url}/api/v2" if AIRFLOW_3 else f"{self.url}/api/v1"
        self.process: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()

    def migrate(self) -> None:
        migrated = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=self.env, capture_output=True, timeout=180
        )
        assert migrated.returncode == 0, migrated.stderr[-2000:]

    def start(self) -> None:
        self.migrate()
        log = open(self.home / "standalone.log", "wb")  # noqa: SIM115 - kept open for the process's life
        self.process = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home,
        )  # fmt: skip
        wait_for("the API server", lambda: self._healthy(), timeout=240)
        self.login()

    def login(self, airflow2_password: str | None = None) -> None:
        """Airflow 3: a JWT for the generated admin password; Airflow 2: basic auth (standalone writes the
        password to a file; a deployment that created its own admin passes it)."""
        if AIRFLOW_3:
            passwords = self.home / "simple_auth_manager_passwords.json.generated"
            wait_for("the admin password", passwords.exists, timeout=30)
            password = json.loads(passwords.read_text())["admin"]
            token = requests.post(
                f"{self.url}/auth/token", json={"username": "admin", "password": password}, timeout=10
            )
            token.raise_for_status()
            self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        elif airflow2_password is not None:
            self.session.auth = ("admin", airflow2_password)
        else:
            password_file = self.home / "standalone_admin_password.txt"
            wait_for("the admin password", password_file.exists, timeout=30)
            self.session.auth = ("admin", password_file.read_text().strip())

    def _healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.tail()
        health = requests.get(
            f"{self.url}/api/v2/monitor/health" if AIRFLOW_3 else f"{self.url}/health", timeout=5
        )
        if health.status_code != 200:
            return False
        body = health.json()
        return all(
            body.get(part, {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "triggerer")
        )

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.api_root}{path}", timeout=30, **kwargs)

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        wait_for(
            f"DAG {dag_id} to be parsed", lambda: self.api("GET", f"/dags/{dag_id}").status_code == 200, 120
        )
        body: dict = {"logical_date": None} if AIRFLOW_3 else {}
        if conf is not None:
            body["conf"] = conf
        response = self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]

    def finish(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait for the run to end; its state."""
        return wait_for(
            f"run {run_id} of {dag_id} to finish",
            lambda: (s := self.run_state(dag_id, run_id)) in ("success", "failed") and s,
            timeout=timeout,
        )

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}").json().get("state")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        response = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"}, headers={"Accept": "application/json"},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        content = response.json().get("content", [])
        if isinstance(content, str):  # Airflow 2: the repr of [(host, text), ...]; one line per record
            with contextlib.suppress(ValueError, SyntaxError):
                content = "\n".join(text for _host, text in ast.literal_eval(content))
            return content
        return "\n".join(
            entry.get("event", "") if isinstance(entry, dict) else str(entry) for entry in content
        )

    def tail(self) -> str:
        path = self.home / "standalone.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def groups(self) -> set[int]:
        """The process groups of this deployment."""
        return {self.process.pid} if self.process is not None else set()

    def processes(self) -> list[int]:
        """Live processes of this deployment: its process groups, plus any that left them (found by their
        AIRFLOW_HOME; a process that sets its title may have overwritten its environment, hence both)."""
        marker = f"AIRFLOW_HOME={self.home}".encode()
        groups = self.groups()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                state, _ppid, pgid = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[:3]
                if state == b"Z":
                    continue
                if int(pgid) in groups or marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
        return found

    def stop(self) -> None:
        if self.process is None:
            return
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        # Children still shutting down, or reparented out of the group: wait for them, then kill the rest.
        for pid in wait_for_none(self.processes, timeout=20):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not wait_for_none(self.processes), f"processes left behind: {self.processes()}"


def wait_for_none(list_processes, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := list_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture(scope="module")
def jobs() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(jobs: LocalJobsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path_factory.mktemp("deployment"), jobs)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def test_deferred_task_log_holds_every_job_line_once(deployment: Deployment) -> None:
    run_id = deployment.trigger("hfjobs_quickstart")
    assert deployment.finish("hfjobs_quickstart", run_id, timeout=240) == "success", deployment.tail()
    for task in ("hello", "hello_deferred"):
        log = deployment.task_log("hfjobs_quickstart", run_id, task)
        assert count(log, "Hello from the cloud!") == 1, log[-3000:]
        for step in (1, 2, 3):
            assert count(log, f"step {step}/3 running on") == 1, log[-3000:]


def test_marking_a_deferred_task_failed_cancels_its_job(
    deployment: Deployment, jobs: LocalJobsServer
) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=jobs.url, token=TOKEN)
    run_id = deployment.trigger("hfjobs_long")
    wait_for(
        "the task to defer", lambda: deployment.task_state("hfjobs_long", run_id, "long") == "deferred", 180
    )
    (job,) = wait_for(
        "its job", lambda: list(api.list_jobs(labels={"suite": "system-long"}, namespace=NS)), 60
    )
    wait_for(
        "the job to run", lambda: api.inspect_job(job_id=job.id, namespace=NS).status.stage == "RUNNING", 60
    )
    # Wait until the triggerer really runs the trigger (its first log line is in the task log): a task killed
    # before the triggerer picked its trigger up gets no on_kill from Airflow at all.
    wait_for(
        "the trigger to stream",
        lambda: "long job started" in deployment.task_log("hfjobs_long", run_id, "long"),
        timeout=120,
    )
    change = {"new_state": "failed"} if AIRFLOW_3 else {"new_state": "failed", "dry_run": False}
    response = deployment.api("PATCH", f"/dags/hfjobs_long/dagRuns/{run_id}/taskInstances/long", json=change)
    assert response.status_code == 200, response.text
    wait_for(
        "the job to be CANCELED",
        lambda: api.inspect_job(job_id=job.id, namespace=NS).status.stage == "CANCELED",
        timeout=120,
    )


def test_a_deferred_sensor_stopped_any_way_leaves_the_job_it_watches_running(
    deployment: Deployment, jobs: LocalJobsServer
) -> None:
    """A job started outside Airflow (the official client), watched by a deferrable HfJobSensor: marking the
    sensor failed, then success, then clearing it, each while it is deferred and streaming, never cancels
    the job. Each stop is seen in the task log ("keeps running") before the job's stage is read."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=jobs.url, token=TOKEN)
    script = (
        "import time\nfor i in range(600):\n    print(f'watched line {i}', flush=True)\n    time.sleep(1)"
    )
    job = api.run_job(image="python:3.12", command=["python", "-c", script], namespace=NS)
    try:
        run_id = deployment.trigger("hfjobs_watch", conf={"job_id": job.id})
        dag, task = "hfjobs_watch", "watch"
        ti_path = f"/dags/{dag}/dagRuns/{run_id}/taskInstances/{task}"

        def last_line(try_number: int) -> int:
            numbers = re.findall(r"watched line (\d+)", deployment.task_log(dag, run_id, task, try_number))
            return max(map(int, numbers), default=-1)

        def deferred_and_streaming(try_number: int) -> None:
            wait_for(
                "the sensor to defer", lambda: deployment.task_state(dag, run_id, task) == "deferred", 180
            )
            # The sensor shows the lines so far before it defers: lines two past those come from the trigger,
            # so the triggerer runs it (a task stopped before that gets no on_kill at all).
            shown = last_line(try_number)
            wait_for(
                "the sensor's trigger to stream", lambda: last_line(try_number) >= shown + 2, timeout=120
            )

        def said_it_keeps_running(try_number: int) -> bool:
            said = "it keeps running: this task only watches it"
            if said in deployment.task_log(dag, run_id, task, try_number):
                return True
            # Airflow 2.11 writes a trigger's lines after its task stopped to the triggerer's own output.
            output = (deployment.home / "standalone.log").read_text(errors="replace")
            return not AIRFLOW_3 and output.count(said) >= try_number

        def stopped_and_still_running(try_number: int) -> None:
            wait_for(
                "the trigger to say the job keeps running", lambda: said_it_keeps_running(try_number), 120
            )
            assert api.inspect_job(job_id=job.id, namespace=NS).status.stage == "RUNNING"

        def clear() -> None:
            body = {"dry_run": False, "task_ids": [task], "dag_run_id": run_id, "only_failed": False}
            if not AIRFLOW_3:
                body.update(include_subdags=False, reset_dag_runs=True)  # else a failed run stays failed
            response = deployment.api("POST", f"/dags/{dag}/clearTaskInstances", json=body)
            assert response.status_code == 200, response.text

        def mark(state: str) -> None:
            change = {"new_state": state} if AIRFLOW_3 else {"new_state": state, "dry_run": False}
            response = deployment.api("PATCH", ti_path, json=change)
            assert response.status_code == 200, response.text

        deferred_and_streaming(1)
        mark("failed")
        stopped_and_still_running(1)
        clear()  # the sensor runs again (try 2) and defers
        deferred_and_streaming(2)
        mark("success")
        stopped_and_still_running(2)
        clear()  # try 3 defers; clearing it while deferred stops that watch too
        deferred_and_streaming(3)
        clear()
        stopped_and_still_running(3)
    finally:
        api.cancel_job(job_id=job.id, namespace=NS)


def test_a_dag_scheduled_on_the_bucket_a_job_wrote_runs(deployment: Deployment, jobs: LocalJobsServer) -> None:
    """The scheduler starts ``hfjobs_assets_consumer`` (``schedule=[Asset("hf://buckets/<EXPORTS>")]``)
    once ``hfjobs_assets_producer``'s job wrote that bucket, and the run sees which job it was."""
    created = requests.post(
        f"{jobs.url}/api/buckets/{EXPORTS}", json={}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert created.status_code in (200, 409), created.text
    wait_for(
        "the consumer DAG to be parsed",
        lambda: deployment.api("GET", "/dags/hfjobs_assets_consumer").status_code == 200,
        timeout=120,
    )
    run_id = deployment.trigger("hfjobs_assets_producer")
    assert deployment.finish("hfjobs_assets_producer", run_id, timeout=240) == "success", deployment.tail()

    def consumer_runs() -> list[dict]:
        answer = deployment.api("GET", "/dags/hfjobs_assets_consumer/dagRuns")
        return [run for run in answer.json().get("dag_runs", []) if run["state"] in ("success", "failed")]

    (run,) = wait_for("a finished run of the consumer DAG", consumer_runs, timeout=240)
    assert run["state"] == "success", deployment.tail()
    log = deployment.task_log("hfjobs_assets_consumer", run["dag_run_id"], "announce")
    job_ids = re.findall(rf"triggered by hf://buckets/{EXPORTS}: job (\w+)", log)
    assert len(job_ids) == 1, log[-3000:]
    producer_log = deployment.task_log("hfjobs_assets_producer", run_id, "export")
    assert f"Hugging Face job {job_ids[0]}:" in producer_log, producer_log[-3000:]
