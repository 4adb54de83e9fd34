"""Triggerers stopping mid-job, in a real deployment run as separate processes (Airflow 3: API server,
scheduler, DAG processor; Airflow 2.11: webserver, scheduler) with triggerers the test starts and kills:

- a triggerer stopped with SIGTERM, or killed with SIGKILL, then a new one started (every deploy does this);
- two triggerers (HA), the one running the trigger killed: the other takes it over;

each time the deferred task's log, as the REST API returns it, holds every line of the job exactly once and
the event Airflow logs holds none, and no triggerer logged an error for a checkpoint not written yet (the
earlier per-task XCom design's "XCom not found" at every trigger start). And a deferred job printing a
secret shows it masked, the value found nowhere in the deployment's files (logs, metadata DB).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer
from tests.integration.airflow_run import REPO, count
from tests.system.test_deployment import (
    AIRFLOW_3,
    BIN,
    NS,
    TOKEN,
    Deployment,
    free_port,
    wait_for,
    wait_for_none,
)

pytestmark = [pytest.mark.system, pytest.mark.airflow_db]

CANARY = "hf_canary_triggerer_5e0c77d1a9"
LINES = [f"restart line {i:02d}/80" for i in range(1, 81)]
#: A resumed trigger's one-line notice when its predecessor died between two checkpoint writes.
UNSURE = re.compile(r"log events (\d+)-(\d+) of job \S+ allowed ahead of its record")


def live_jobs(jobs: LocalJobsServer) -> list[str]:
    """The restart DAG's jobs not ended yet."""
    from huggingface_hub import HfApi

    listed = HfApi(endpoint=jobs.url, token=TOKEN).list_jobs(namespace=NS, labels={"suite": "system-restart"})
    return [job.id for job in listed if job.status.stage in ("RUNNING", "SCHEDULING")]


@contextlib.contextmanager
def gate() -> Iterator[Path]:
    """A path the ``hfjobs_restart`` job waits for after its 40th line (its run conf's ``gate``): the job is
    sure to be running when the test stops its triggerer, however slow the machine. Outside the local
    server's state directory (a job cannot see that), world-traversable (a root server's jobs run as a user
    of their own)."""
    directory = Path(tempfile.mkdtemp(prefix="hfjobs-gate-"))
    directory.chmod(0o755)
    try:
        yield directory / uuid.uuid4().hex
    finally:
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()


#: An error record in a component's log (Airflow 3's console format, Airflow 2's logging format).
ERROR = re.compile(r"\[error\s*\]|\bERROR\b")


class ComponentsDeployment(Deployment):
    """Each Airflow component its own process group; triggerers started and stopped by the test."""

    def __init__(self, home: Path, jobs: LocalJobsServer) -> None:
        super().__init__(home, jobs)
        (home / "dags" / "hfjobs_restart.py").write_text((REPO / "tests/dags/hfjobs_restart.py").read_text())
        self.env.update(
            # A killed triggerer's triggers move once its heartbeat is this old (default 30 s).
            AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD="8",
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
            AIRFLOW_VAR_TRIGGERER_CANARY=CANARY,  # a Variable from the environment: stored nowhere
        )
        self.parts: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the process's life
        process = subprocess.Popen(
            [str(BIN / "airflow"), *args], env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home,
        )  # fmt: skip
        self.parts[name] = process
        return process

    def start(self) -> None:
        self.migrate()
        if AIRFLOW_3:
            self.spawn("api-server", "api-server")
            self.spawn("dag-processor", "dag-processor")
        else:
            created = subprocess.run(
                [str(BIN / "airflow"), "users", "create", "--role", "Admin", "--username", "admin", "--password",
                 "admin", "--email", "admin@example.invalid", "--firstname", "a", "--lastname", "b"],
                env=self.env, capture_output=True, timeout=120,
            )  # fmt: skip
            assert created.returncode == 0, created.stderr[-2000:]
            self.spawn("webserver", "webserver")
        self.spawn("scheduler", "scheduler")
        wait_for("the API server", self._healthy, timeout=240)
        self.login(airflow2_password="admin")

    def _healthy(self) -> bool:
        for name, process in self.parts.items():
            assert process.poll() is None, f"{name} exited:\n{self.tail()}"
        health = requests.get(
            f"{self.url}/api/v2/monitor/health" if AIRFLOW_3 else f"{self.url}/health", timeout=5
        )
        if health.status_code != 200:
            return False
        body = health.json()
        return all(body.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler"))

    def start_triggerer(self, name: str) -> subprocess.Popen[bytes]:
        # Each triggerer serves its logs on its own port: two on one machine would clash.
        return self.spawn(name, "triggerer", AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()))

    def signal(self, process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        """Signal a component's whole process group (as a container stop does) and wait until it is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(timeout=60)
        group = process.pid
        wait_for(f"process group {group} to exit", lambda: not self._group(group), timeout=60, interval=0.2)

    def _group(self, pgid: int) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    state, _ppid, group = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[:3]
                    if state != b"Z" and int(group) == pgid:
                        found.append(int(entry.name))
        return found

    def groups(self) -> set[int]:
        return {process.pid for process in self.parts.values()}

    def stop(self) -> None:
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            live = [process for process in self.parts.values() if process.poll() is None]
            for process in live:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
            deadline = time.monotonic() + grace
            for process in live:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        left = wait_for_none(self.processes, timeout=20)
        assert not left, f"processes left behind: {left}"

    def tail(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}" for path in self.home.glob("*.log")
        )

    def raw_log(self, dag_id: str, run_id: str, task_id: str) -> list[str]:
        """The task log as the REST API returns it, one string per record (Airflow 3: each JSON record
        whole, event payloads included; Airflow 2: each text line); none while the task has no try yet."""
        response = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
            params={"full_content": "true"}, headers={"Accept": "application/json"},
        )  # fmt: skip
        if response.status_code == 404:
            return []
        assert response.status_code == 200, response.text
        content = response.json().get("content", [])
        if isinstance(content, str):  # Airflow 2: the repr of [(host, text), ...]
            with contextlib.suppress(ValueError, SyntaxError):
                content = "\n".join(text for _host, text in ast.literal_eval(content))
            return content.splitlines()
        return [json.dumps(entry) if isinstance(entry, dict) else str(entry) for entry in content]


@pytest.fixture(scope="module")
def jobs() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=4) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(
    jobs: LocalJobsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComponentsDeployment]:
    deployment = ComponentsDeployment(tmp_path_factory.mktemp("components"), jobs)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@pytest.mark.parametrize(
    ("sig", "standby", "ends_first"),
    [
        (signal.SIGTERM, False, False),
        (signal.SIGKILL, False, False),
        (signal.SIGKILL, True, False),
        (signal.SIGKILL, False, True),
    ],
    ids=[
        "sigterm-then-new-triggerer",
        "sigkill-then-new-triggerer",
        "two-triggerers-one-killed",
        "sigkill-job-ends-while-no-triggerer-runs",
    ],
)
def test_each_line_once_when_the_triggerer_stops_mid_job(
    deployment: ComponentsDeployment,
    jobs: LocalJobsServer,
    sig: signal.Signals,
    standby: bool,
    ends_first: bool,
    request: pytest.FixtureRequest,
) -> None:
    name = request.node.callspec.id
    first = deployment.start_triggerer(f"{name}-first")
    with gate() as path:
        run_id = deployment.trigger("hfjobs_restart", conf={"gate": str(path)})
        wait_for(
            "25 lines in the task log",
            lambda: any(LINES[24] in text for text in deployment.raw_log("hfjobs_restart", run_id, "lines")),
            timeout=240,
        )
        second = deployment.start_triggerer(f"{name}-second") if standby else None
        if second is not None:
            time.sleep(3)  # the standby is up and heartbeating before the first dies (not a correctness wait)
        deployment.signal(first, sig)
        if ends_first:  # the job ends while no triggerer runs: the next one replays its 40 last lines at once
            path.touch()
            wait_for("the job to end", lambda: not live_jobs(jobs), timeout=120)
        second = second or deployment.start_triggerer(f"{name}-second")
        path.touch()  # the job, held after line 40 until now, prints the rest
        try:
            state = deployment.finish("hfjobs_restart", run_id)
            records = deployment.raw_log("hfjobs_restart", run_id, "lines")
        finally:
            deployment.signal(second, signal.SIGTERM)
    text = "\n".join(records)
    assert state == "success", text[-4000:]
    unsure = [UNSURE.search(record) for record in records]
    unsure = [match for match in unsure if match]
    counts = {line: count(text, line) for line in LINES}
    if not unsure:
        assert all(n == 1 for n in counts.values()), {k: v for k, v in counts.items() if v != 1}
    else:
        # The only permitted repeat: the one declared step the killed triggerer was writing.
        assert len(unsure) == 1 and all(n in (1, 2) for n in counts.values()), (
            {k: v for k, v in counts.items() if v != 1}, unsure[0].group(0), text[-6000:]
        )
        first_event, last_event = map(int, unsure[0].groups())
        assert sum(n - 1 for n in counts.values()) <= last_event - first_event + 1
    resumed = [record for record in records if "Resuming the log of job" in record or UNSURE.search(record)]
    assert resumed, "the resumed trigger said nothing about where it resumed"

    # Airflow logs the event it fires (3.x "Trigger fired event", 2.11 "... fired: TriggerEvent<...>"): it
    # carries no line of the job. The triggerer may write that record after the resumed task has finished,
    # so it is waited for (bounded) rather than expected in the first read.
    def fired_records() -> list[str]:
        return [
            record
            for record in deployment.raw_log("hfjobs_restart", run_id, "lines")
            if "Trigger fired event" in record or ") fired: TriggerEvent" in record
        ]

    fired = wait_for("the fired event in the task's log", fired_records, timeout=60)
    assert not any("restart line" in record for record in fired), fired

    # Looking for a place that does not exist yet (every first start) is no error in a triggerer's log.
    for triggerer in (f"{name}-first", f"{name}-second"):
        logged = (deployment.home / f"{triggerer}.log").read_text(errors="replace")
        assert "XCom not found" not in logged and "hf_job_log_checkpoint" not in logged, triggerer
        errors = [line for line in logged.splitlines() if ERROR.search(line) and "hfjobs" in line]
        assert not errors, errors


def test_a_deferred_job_printing_a_secret_shows_it_masked(deployment: ComponentsDeployment) -> None:
    triggerer = deployment.start_triggerer("canary-triggerer")
    try:
        run_id = deployment.trigger("hfjobs_canary_deferred")
        state = deployment.finish("hfjobs_canary_deferred", run_id)
        text = "\n".join(deployment.raw_log("hfjobs_canary_deferred", run_id, "prints_secret"))
    finally:
        deployment.signal(triggerer, signal.SIGTERM)
    assert state == "success", text[-4000:]
    assert "canary start" in text and "canary end" in text, text[-4000:]
    assert "the secret is ***" in text and "CANARY=***" in text, text[-4000:]
    assert CANARY not in text
    # Nowhere in the deployment's files either: task and trigger logs, component logs, the metadata DB.
    leaks = [
        str(path.relative_to(deployment.home))
        for path in deployment.home.rglob("*")
        if path.is_file() and CANARY.encode() in path.read_bytes()
    ]
    assert not leaks, leaks
