"""A distributed deployment: CeleryExecutor with a Redis broker and PostgreSQL as the metadata DB (and the
Celery result backend), every component its own process group: scheduler, API server and DAG processor
(Airflow 3) or webserver (Airflow 2.11), a Celery worker, two triggerers; PostgreSQL and Redis from Debian's
packages, started by the test on 127.0.0.1; the jobs run on the local Jobs server beside them.

The same checks as the LocalExecutor legs (test_deployment, test_triggerer_restart), here where tasks run on a
Celery worker, triggers are shared out by PostgreSQL's row locks, and a worker can die:

- the quickstart DAG (a task following its job on the worker, then a deferred one): each job line once in each
  task log, both tasks run through Celery;
- two triggerers, the one running a deferred job's trigger SIGKILLed mid-job: the other finishes it, and the
  task log read through the REST API holds every line of the job once;
- a deferred task marked failed: its job is CANCELED;
- a deferrable HfJobSensor on a job started outside Airflow, marked failed: the job is still RUNNING;
- the Celery worker SIGKILLed (its process group, and what left it) while a task follows its job there: the
  retry, on a new worker, re-attaches to the same job (no second job), and the job's lines go on in its log.

Where PostgreSQL or Redis cannot be had, the module skips and the run's summary says so (tests/system/services.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_hfjobs.local import LocalJobsServer
from tests.integration.airflow_run import REPO, count
from tests.system.services import Postgres, Redis, services_problem, skip_loudly
from tests.system.test_deployment import AIRFLOW_3, NS, TOKEN, wait_for
from tests.system.test_triggerer_restart import LINES, UNSURE, ComponentsDeployment, gate

pytestmark = [pytest.mark.system, pytest.mark.airflow_db, pytest.mark.distributed]

#: A task whose worker stops heartbeating is failed (and retried) after this many seconds. Heartbeats come
#: every 5 s (Airflow's default), so a healthy task on a busy machine is far from it.
HEARTBEAT_TIMEOUT = 30
WORKER_LINE = re.compile(r"worker line (\d{3})")


class DistributedDeployment(ComponentsDeployment):
    """CeleryExecutor, Redis broker, PostgreSQL metadata DB; workers and triggerers started by the test."""

    def __init__(self, home: Path, jobs: LocalJobsServer, postgres: Postgres, redis: Redis) -> None:
        super().__init__(home, jobs)
        self.postgres = postgres
        dag = REPO / "tests/system/dags/hfjobs_worker_kill.py"
        (home / "dags" / dag.name).write_text(dag.read_text())
        self.env.update(
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgres.url,
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__CELERY__BROKER_URL=redis.url,
            AIRFLOW__CELERY__RESULT_BACKEND=postgres.celery_url,
            AIRFLOW__CELERY__WORKER_CONCURRENCY="2",
        )
        if AIRFLOW_3:
            self.env.update(
                AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT),
                AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="2",
            )
        else:
            self.env.update(
                AIRFLOW__SCHEDULER__SCHEDULER_ZOMBIE_TASK_THRESHOLD=str(HEARTBEAT_TIMEOUT),
                AIRFLOW__SCHEDULER__ZOMBIE_DETECTION_INTERVAL="2",
            )
        #: Triggerer name -> its job id in the metadata DB.
        self.triggerer_ids: dict[str, int] = {}
        self.workers = 0

    def start(self) -> None:
        super().start()  # migrate; API server / webserver, scheduler (and DAG processor)
        self.start_worker()
        self.start_registered_triggerer("triggerer-a")
        self.start_registered_triggerer("triggerer-b")

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A Celery worker (only one lives at a time: they share the log-server port the API server knows)."""
        self.workers += 1
        name = f"worker-{self.workers}"
        return self.spawn(
            name, "celery", "worker", "--celery-hostname", f"{name}@%h", "--pid", str(self.home / f"{name}.pid"),
            "--without-mingle", "--without-gossip",
        )  # fmt: skip

    def live_triggerers(self) -> dict[int, str]:
        """Triggerer job ids in the DB with a live process of this test, by id."""
        running = {
            job_id
            for (job_id,) in self.postgres.query(
                "SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running'"
            )
        }
        return {
            job_id: name
            for name, job_id in self.triggerer_ids.items()
            if job_id in running and self.parts[name].poll() is None
        }

    def start_registered_triggerer(self, name: str) -> subprocess.Popen[bytes]:
        """A triggerer, once its job row is in the DB (so that its id is known: it names the trigger's owner)."""
        known = set(self.triggerer_ids.values())
        process = self.start_triggerer(name)

        def registered() -> int | None:
            assert process.poll() is None, f"{name} exited:\n{self.tail()}"
            rows = self.postgres.query(
                "SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' ORDER BY id"
            )
            new = [job_id for (job_id,) in rows if job_id not in known]
            return new[-1] if len(new) == 1 else None

        self.triggerer_ids[name] = wait_for(f"{name} to register", registered, timeout=120)
        return process

    def trigger_owner(self, dag_id: str, run_id: str, task_id: str) -> int | None:
        rows = self.postgres.query(
            "SELECT t.triggerer_id FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
            "WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.task_id = %s",
            dag_id, run_id, task_id,
        )  # fmt: skip
        return rows[0][0] if rows else None

    def log_records(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> list[str]:
        """As ``raw_log``, for any try: one string per record; none while that try has no log yet."""
        response = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"}, headers={"Accept": "application/json"},
        )  # fmt: skip
        if response.status_code == 404:
            return []
        assert response.status_code == 200, response.text
        content = response.json().get("content", [])
        if isinstance(content, str):  # Airflow 2: the repr of [(host, text), ...]
            import ast

            with contextlib.suppress(ValueError, SyntaxError):
                content = "\n".join(text for _host, text in ast.literal_eval(content))
            return content.splitlines()
        return [json.dumps(entry) if isinstance(entry, dict) else str(entry) for entry in content]

    def kill_tree(self, process: subprocess.Popen[bytes]) -> list[int]:
        """SIGKILL a component as a lost machine or a killed container would: its process group, and every
        process descended from it that left the group (both Airflows run a task in a process group of its own:
        Airflow 3's supervisor, Airflow 2's task runner: a SIGKILL of the worker's group alone leaves that
        process alive, orphaned). Each one found is stopped first (SIGSTOP), so that none forks past the
        search; then all are killed, and waited for (bounded)."""
        found: set[int] = set()
        while True:
            table = _process_table()
            new = {
                pid
                for pid, (_ppid, pgid) in table.items()
                if pid not in found
                and (pgid == process.pid or pid == process.pid or _descends(pid, process.pid, table))
            }
            if not new:
                break
            for pid in new:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            found |= new
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=60)
        wait_for(
            f"the {len(found)} killed processes to go",
            lambda: not (set(_process_table()) & found),
            timeout=60,
            interval=0.2,
        )
        return sorted(found)


def _process_table() -> dict[int, tuple[int, int]]:
    """Live (not zombie) processes: pid -> (parent pid, process group)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                state, ppid, pgid = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[:3]
                if state != b"Z":
                    table[int(entry.name)] = (int(ppid), int(pgid))
    return table


def _descends(pid: int, ancestor: int, table: dict[int, tuple[int, int]]) -> bool:
    seen = set()
    while pid in table and pid not in seen:
        seen.add(pid)
        pid = table[pid][0]
        if pid == ancestor:
            return True
    return False


@pytest.fixture(scope="module")
def services(request: pytest.FixtureRequest) -> Iterator[tuple[Postgres, Redis]]:
    if (problem := services_problem()) is not None:
        skip_loudly(request, problem)
    postgres, redis = Postgres(), Redis()
    try:
        postgres.start()
        redis.start()
        yield postgres, redis
    finally:
        with contextlib.suppress(Exception):
            redis.stop()
        postgres.stop()


@pytest.fixture(scope="module")
def jobs() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=4) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(
    services: tuple[Postgres, Redis], jobs: LocalJobsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DistributedDeployment]:
    deployment = DistributedDeployment(tmp_path_factory.mktemp("distributed"), jobs, *services)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def test_tasks_run_on_the_celery_worker_and_their_logs_hold_every_job_line_once(
    deployment: DistributedDeployment,
) -> None:
    """The quickstart DAG (a task following its job on the worker, then a deferred one): each job line once
    in each task log; the task instances in PostgreSQL were run through Celery (a Celery task id each)."""
    dag = "hfjobs_quickstart"
    run_id = deployment.trigger(dag)
    state = deployment.finish(dag, run_id, timeout=240)
    assert state == "success", deployment.tail()
    for task in ("hello", "hello_deferred"):
        text = "\n".join(deployment.log_records(dag, run_id, task))
        assert count(text, "Hello from the cloud!") == 1, text[-3000:]
        for step in (1, 2, 3):
            assert count(text, f"step {step}/3 running on") == 1, text[-3000:]
    rows = deployment.postgres.query(
        "SELECT task_id, state, external_executor_id FROM task_instance WHERE dag_id = %s AND run_id = %s",
        dag, run_id,
    )  # fmt: skip
    assert {task for task, _, _ in rows} >= {"hello", "hello_deferred"}, rows
    assert all(state == "success" and celery_id for _, state, celery_id in rows), rows


def test_each_line_once_when_the_triggerer_running_it_is_killed(deployment: DistributedDeployment) -> None:
    """Two triggerers; the one the trigger went to is SIGKILLed mid-job; the other takes the trigger over."""
    while len(deployment.live_triggerers()) < 2:
        deployment.start_registered_triggerer(f"triggerer-{len(deployment.triggerer_ids) + 1}")
    dag, task = "hfjobs_restart", "lines"
    with gate() as path:
        run_id = deployment.trigger(dag, conf={"gate": str(path)})
        wait_for(
            "25 lines in the task log",
            lambda: any(LINES[24] in text for text in deployment.log_records(dag, run_id, task)),
            timeout=240,
        )
        owner = wait_for("the trigger's triggerer", lambda: deployment.trigger_owner(dag, run_id, task), 60)
        live = deployment.live_triggerers()
        assert owner in live, (owner, live)
        (standby,) = (name for job_id, name in live.items() if job_id != owner)
        deployment.kill_tree(deployment.parts[live[owner]])
        path.touch()  # the job, held after line 40 until the kill, prints the rest
        # The standby takes the trigger over once the dead one's heartbeat is old
        # (TRIGGERER_HEALTH_CHECK_THRESHOLD).
        state = deployment.finish(dag, run_id)
    records = deployment.log_records(dag, run_id, task)
    text = "\n".join(records)
    assert state == "success", text[-4000:]
    assert deployment.parts[standby].poll() is None
    unsure = [match for record in records if (match := UNSURE.search(record))]
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
    # The standby alone runs triggers now: two again for the tests after this one.
    deployment.start_registered_triggerer(f"triggerer-{len(deployment.triggerer_ids) + 1}")


def test_marking_a_deferred_task_failed_cancels_its_job(
    deployment: DistributedDeployment, jobs: LocalJobsServer
) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=jobs.url, token=TOKEN)
    dag, task = "hfjobs_long", "long"
    run_id = deployment.trigger(dag)
    wait_for("the task to defer", lambda: deployment.task_state(dag, run_id, task) == "deferred", 180)
    (job,) = wait_for(
        "its job", lambda: list(api.list_jobs(labels={"suite": "system-long"}, namespace=NS)), 60
    )
    # The triggerer runs the trigger (its first line is in the task log): a task stopped before that gets no
    # on_kill from Airflow at all.
    wait_for(
        "the trigger to stream",
        lambda: any("long job started" in record for record in deployment.log_records(dag, run_id, task)),
        timeout=120,
    )
    assert api.inspect_job(job_id=job.id, namespace=NS).status.stage == "RUNNING"
    change = {"new_state": "failed"} if AIRFLOW_3 else {"new_state": "failed", "dry_run": False}
    response = deployment.api("PATCH", f"/dags/{dag}/dagRuns/{run_id}/taskInstances/{task}", json=change)
    assert response.status_code == 200, response.text
    wait_for(
        "the job to be CANCELED",
        lambda: api.inspect_job(job_id=job.id, namespace=NS).status.stage == "CANCELED",
        timeout=120,
    )


def test_a_deferred_sensor_marked_failed_leaves_the_job_it_watches_running(
    deployment: DistributedDeployment, jobs: LocalJobsServer
) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=jobs.url, token=TOKEN)
    script = (
        "import time\nfor i in range(600):\n    print(f'watched line {i}', flush=True)\n    time.sleep(1)"
    )
    job = api.run_job(image="python:3.12", command=["python", "-c", script], namespace=NS)
    try:
        dag, task = "hfjobs_watch", "watch"
        run_id = deployment.trigger(dag, conf={"job_id": job.id})

        def last_line() -> int:
            text = "\n".join(deployment.log_records(dag, run_id, task))
            return max(map(int, re.findall(r"watched line (\d+)", text)), default=-1)

        wait_for("the sensor to defer", lambda: deployment.task_state(dag, run_id, task) == "deferred", 180)
        shown = last_line()  # lines two past those the sensor showed before deferring come from the trigger
        wait_for("the sensor's trigger to stream", lambda: last_line() >= shown + 2, timeout=120)
        change = {"new_state": "failed"} if AIRFLOW_3 else {"new_state": "failed", "dry_run": False}
        response = deployment.api("PATCH", f"/dags/{dag}/dagRuns/{run_id}/taskInstances/{task}", json=change)
        assert response.status_code == 200, response.text
        wait_for(
            "the trigger to say the job keeps running",
            lambda: any(
                "it keeps running: this task only watches it" in record
                for record in deployment.log_records(dag, run_id, task)
            ),
            timeout=120,
        )
        assert api.inspect_job(job_id=job.id, namespace=NS).status.stage == "RUNNING"
    finally:
        api.cancel_job(job_id=job.id, namespace=NS)


def test_a_killed_workers_retry_reattaches_to_its_job(
    deployment: DistributedDeployment, jobs: LocalJobsServer, tmp_path: Path
) -> None:
    """The Celery worker dies (SIGKILL) while a task follows its job on it. The job goes on; the task gets no
    heartbeat, fails and is retried on a new worker, which re-attaches to the same job: one job in all, and
    the retry's log holds every line of it once, including those printed after the kill."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=jobs.url, token=TOKEN)
    gate = tmp_path / "gate"
    dag, task = "hfjobs_worker_kill", "follow"
    labels = {"suite": "system-worker-kill"}
    run_id = deployment.trigger(dag, conf={"gate": str(gate)})

    def last_line(try_number: int) -> int:
        text = "\n".join(deployment.log_records(dag, run_id, task, try_number))
        return max(map(int, WORKER_LINE.findall(text)), default=0)

    wait_for("the worker to follow the job's lines", lambda: last_line(1) >= 5, timeout=240)
    (job,) = api.list_jobs(labels=labels, namespace=NS)
    worker = next(
        process
        for name, process in deployment.parts.items()
        if name.startswith("worker-") and process.poll() is None
    )
    deployment.kill_tree(worker)
    seen_before_kill = last_line(1)
    assert api.inspect_job(job_id=job.id, namespace=NS).status.stage == "RUNNING"
    deployment.start_worker()  # as a restarted container would

    reattached = f"Re-attaching to Hugging Face job {job.id}"
    wait_for(
        "the retry to re-attach to the job",
        lambda: any(reattached in record for record in deployment.log_records(dag, run_id, task, 2)),
        timeout=HEARTBEAT_TIMEOUT + 240,
    )
    wait_for(
        "the job's lines to go on in the retry's log",
        lambda: last_line(2) > seen_before_kill + 2,
        timeout=120,
    )
    gate.touch()
    state = deployment.finish(dag, run_id, timeout=180)
    records = deployment.log_records(dag, run_id, task, 2)
    text = "\n".join(records)
    assert state == "success", text[-4000:]
    assert [j.id for j in api.list_jobs(labels=labels, namespace=NS)] == [job.id], "a second job was started"
    assert api.inspect_job(job_id=job.id, namespace=NS).status.stage == "COMPLETED"
    job_lines = [line for line in api.fetch_job_logs(job_id=job.id, namespace=NS) if line.strip()]
    job_lines = [line.strip() for line in job_lines]
    assert job_lines[-3:] == ["closing line 1/3", "closing line 2/3", "closing line 3/3"], job_lines[-5:]
    assert len(job_lines) > seen_before_kill + 3
    counts = {line: count(text, line) for line in job_lines}
    assert all(n == 1 for n in counts.values()), {k: v for k, v in counts.items() if v != 1}
    try_one = "\n".join(deployment.log_records(dag, run_id, task, 1))
    assert "closing line" not in try_one  # try 1 died with its worker
