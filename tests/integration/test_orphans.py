"""Orphaned jobs, for real: DAGs run with ``airflow dags test`` in a throwaway AIRFLOW_HOME leave jobs
behind on a local Jobs server of this module's own (127.0.0.1), and the example maintenance DAG finds them
through the real task states lookup (the Task SDK supervisor on Airflow 3, the metadata DB on Airflow 2).

- ``orphans-maker.v2`` (a dotted DAG id, a task group task and a mapped task: labels that must be read
  back) starts three jobs with ``wait_for_completion=False``: its tasks succeed, the jobs run on: orphans.
- ``orphans_watched`` runs in the background, its task following a job that runs until the test releases
  it: a running task instance, whose job is never listed.
- Jobs made directly through the hook: without labels, with a scheduled job's labels (no ``airflow-ti``),
  with the labels of a deleted DAG run (an orphan) and of a DAG this Airflow does not know (never listed).

The maintenance DAG then runs with its default ``min_age`` (all too young), as a dry run (lists, cancels
nothing) and with ``cancel``: the orphans end CANCELED, every other job keeps running.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hfjobs.jobs import JobInfo, JobStage, task_instance_labels
from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.orphans import ti_keys
from tests.integration.airflow_run import AIRFLOW, AirflowHome, count, make_airflow_home
from tests.integration.conftest import NAMESPACE, TOKEN, set_connection
from tests.integration.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]

SECRET = "orphan-secret-value-7d1e"
MAKER, WATCHED, MAINTENANCE = "orphans-maker.v2", "orphans_watched", "hfjobs_maintenance"
SLEEP = "import time\nprint('orphan started', flush=True)\ntime.sleep(900)"

MAKER_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import DAG, TaskGroup

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

SLEEP = {sleep!r}

with DAG(dag_id={maker!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    with TaskGroup("grp"):
        HfJobRunOperator(
            task_id="start", image="python:3.12", command=["python", "-c", SLEEP], timeout="20m",
            secrets={{"API_KEY": {secret!r}}}, labels={{"suite": "orphans"}}, wait_for_completion=False,
        )
    HfJobRunOperator.partial(
        task_id="fan", image="python:3.12", timeout="20m", labels={{"suite": "orphans"}}, wait_for_completion=False,
    ).expand(command=[["python", "-c", SLEEP], ["python", "-c", SLEEP]])
"""

WATCHED_DAG = '''
import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

WAIT = """import os, time
print('watched job started', flush=True)
for _ in range(2400):
    if os.path.exists({marker!r}):
        break
    time.sleep(0.25)
print('released', flush=True)"""

with DAG(dag_id={watched!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    HfJobRunOperator(
        task_id="watch", image="python:3.12", command=["python", "-c", WAIT], timeout="20m",
        labels={{"suite": "orphans"}}, deferrable=False, poll_interval=1, stream_logs=False,
    )
'''


@dataclass
class Scenario:
    home: AirflowHome
    hook: Any
    maker_run: str
    orphans: dict[str, str]  # what each orphan is -> its job id
    kept: dict[str, str]  # jobs that must never be listed -> their ids
    watched: subprocess.Popen[str] | None
    watched_log: Path
    marker: Path

    def stage(self, job_id: str) -> JobStage:
        return self.hook.inspect_job(job_id).stage

    def watched_job(self) -> str | None:
        """The id of the background task's job once it runs (the task fails the test if it ended)."""
        assert self.watched is not None
        if self.watched.poll() is not None:
            pytest.fail(f"{WATCHED} ended early:\n{self.watched_log.read_text()[-6000:]}")
        running = [
            job.id for job in self.hook.list_jobs(labels={"airflow-dag": WATCHED}) if not job.is_terminal
        ]
        return running[0] if running and self.stage(running[0]) is JobStage.RUNNING else None


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def sql(home: AirflowHome, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(home.path / "airflow.db", timeout=30) as db:
        return db.execute(query, args).fetchall()


def last_xcom(home: AirflowHome) -> tuple[str, list[dict[str, Any]]]:
    """The raw text and the value of the maintenance task's latest ``return_value`` XCom."""
    rows = sql(
        home,
        "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'orphan_jobs' AND key = 'return_value' "
        "ORDER BY timestamp DESC LIMIT 1",
        MAINTENANCE,
    )
    assert rows, "the maintenance task pushed no return_value"
    raw = rows[0][0]
    raw = raw.decode() if isinstance(raw, bytes) else raw
    value: Any = raw
    while isinstance(value, str):  # Airflow 2 stores JSON bytes; Airflow 3 JSON (maybe of a JSON string)
        value = json.loads(value)
    return raw, value


def maintenance(scenario: Scenario, **conf: Any) -> str:
    args = ["dags", "test", MAINTENANCE, *(["-c", json.dumps(conf)] if conf else [])]
    result = scenario.home.run(*args, timeout=300)
    text = output(result)
    assert result.returncode == 0, text[-6000:]
    return text


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    base = tmp_path_factory.mktemp("orphans")
    marker = base / "release-watched-job"
    dags = base / "orphan-dags"
    dags.mkdir()
    (dags / "orphans_maker.py").write_text(
        textwrap.dedent(MAKER_DAG.format(sleep=SLEEP, maker=MAKER, secret=SECRET))
    )
    (dags / "orphans_watched.py").write_text(
        textwrap.dedent(WATCHED_DAG.format(marker=str(marker), watched=WATCHED))
    )
    monkeypatch = pytest.MonkeyPatch()
    with LocalJobsServer(token=TOKEN, namespace=NAMESPACE, max_concurrency=12) as server:
        from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook

        set_connection(monkeypatch, "hf_orphans", server.url, TOKEN, namespace=NAMESPACE)
        hook = HfJobsHook("hf_orphans")
        home = make_airflow_home(base / "airflow-home", server.url, TOKEN, dags)
        # Two `dags test` processes would both insert the DAGs' first rows: write them once, first.
        reserialized = home.run("dags", "reserialize")
        assert reserialized.returncode == 0, output(reserialized)[-6000:]
        watched_log, watched = base / "watched.log", None
        try:
            made = home.dags_test(MAKER)
            assert made.returncode == 0, output(made)[-6000:]
            ((maker_run,),) = sql(home, "SELECT run_id FROM dag_run WHERE dag_id = ?", MAKER)
            scenario = Scenario(home, hook, maker_run, {}, {}, None, watched_log, marker)
            by_key = {
                job.labels.get("airflow-ti"): job.id
                for job in hook.list_jobs(labels={"airflow-dag": "orphans-maker-v2"})
            }
            for what, task_id, map_index in (
                ("grp.start", "grp.start", -1),
                ("fan[0]", "fan", 0),
                ("fan[1]", "fan", 1),
            ):
                (job_id,) = {
                    by_key[key] for key in ti_keys(MAKER, task_id, maker_run, map_index) if key in by_key
                }
                scenario.orphans[what] = job_id
            command = ["python", "-c", SLEEP]
            scenario.orphans["deleted run"] = hook.run_job(
                image="python:3.12", command=command, timeout="20m",
                labels={**task_instance_labels(MAKER, "grp.start", "manual__deleted-run"), "suite": "orphans"},
            ).id  # fmt: skip
            scenario.kept["no labels"] = hook.run_job(
                image="python:3.12", command=command, timeout="20m", labels={"suite": "orphans"}
            ).id
            scenario.kept["scheduled job labels"] = hook.run_job(
                image="python:3.12", command=command, timeout="20m",
                labels={"airflow-dag": "orphans-maker-v2", "airflow-task": "grp-start", "suite": "orphans"},
            ).id  # fmt: skip
            scenario.kept["another Airflow's DAG"] = hook.run_job(
                image="python:3.12", command=command, timeout="20m",
                labels={**task_instance_labels("elsewhere", "train", "manual__1"), "suite": "orphans"},
            ).id  # fmt: skip
            with watched_log.open("w") as sink:  # its task follows its job until the test releases it
                scenario.watched = watched = subprocess.Popen(
                    [AIRFLOW, "dags", "test", WATCHED], env=home.env, cwd=home.path, stdout=sink,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                )  # fmt: skip
            scenario.kept["watched"] = wait_for("the watched task's job to run", scenario.watched_job, 180)
            all_jobs = [*scenario.orphans.values(), *scenario.kept.values()]
            wait_for(
                "every job to run", lambda: all(scenario.stage(j) is JobStage.RUNNING for j in all_jobs), 60
            )
            yield scenario
        finally:
            marker.touch()
            if watched is not None:
                try:
                    watched.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    watched.kill()
                    watched.wait(timeout=30)
            for job in hook.list_jobs():
                if not job.is_terminal:
                    hook.cancel_job(job.id)
            hook.close()
            monkeypatch.undo()


def orphan_lines(text: str, job_id: str) -> int:
    return count(text, f"Orphan Hugging Face job {job_id} (")


def test_default_min_age_leaves_jobs_just_started_alone(scenario: Scenario) -> None:
    text = maintenance(scenario)
    assert count(text, "Looked at 8 live Hugging Face jobs in 'alice': 0 orphaned, 0 watched") == 1, text[
        -6000:
    ]
    assert count(text, "6 younger than min_age") == 1
    assert all(orphan_lines(text, job_id) == 0 for job_id in scenario.orphans.values())
    _, pushed = last_xcom(scenario.home)
    assert pushed == []


def test_dry_run_lists_each_orphan_once_and_leaves_it_running(scenario: Scenario) -> None:
    text = maintenance(scenario, min_age=0)
    assert (
        count(text, "Looked at 8 live Hugging Face jobs in 'alice': 4 orphaned, 1 watched by a live task")
        == 1
    ), text[-6000:]
    assert count(text, "1 with task labels this Airflow cannot match, 2 not started by this provider") == 1
    for what, job_id in scenario.orphans.items():
        assert orphan_lines(text, job_id) == 1, what
    for what, job_id in scenario.kept.items():
        assert orphan_lines(text, job_id) == 0, what
    start = scenario.orphans["grp.start"]
    assert count(text, f"Orphan Hugging Face job {start} (RUNNING, cpu-basic, ") == 1
    assert (
        count(text, f"task instance {MAKER}/grp.start run={scenario.maker_run}; its task instance is success")
        == 1
    )
    assert count(text, f"{MAKER}/fan run={scenario.maker_run} map_index=1; its task instance is success") == 1
    assert count(text, "its task instance no longer exists") == 1
    foreign = scenario.kept["another Airflow's DAG"]
    assert count(text, f"Not touched: job {foreign}") == 1
    assert count(text, "Dry run (cancel=False): 4 orphan job(s) left running") == 1
    assert count(text, f"hf jobs cancel {start} --namespace alice") >= 1
    assert all(scenario.stage(job_id) is JobStage.RUNNING for job_id in scenario.orphans.values())

    raw, pushed = last_xcom(scenario.home)
    assert TOKEN not in raw and SECRET not in raw and "API_KEY" not in raw and "python" not in raw
    by_id = {entry["job_id"]: entry for entry in pushed}
    assert set(by_id) == set(scenario.orphans.values())
    entry = by_id[start]
    assert (entry["dag_id"], entry["task_id"], entry["run_id"], entry["map_index"], entry["task_state"]) == (
        MAKER, "grp.start", scenario.maker_run, -1, "success",
    )  # fmt: skip
    assert (
        entry["stage"] == "RUNNING"
        and entry["url"].endswith(f"/jobs/alice/{start}")
        and "cancel" not in entry
    )
    assert {by_id[scenario.orphans[f"fan[{i}]"]]["map_index"] for i in (0, 1)} == {0, 1}
    assert by_id[scenario.orphans["deleted run"]]["task_state"] == "missing"


def test_the_hook_lists_the_same_orphans_with_a_reader_of_its_own(scenario: Scenario) -> None:
    """``list_orphan_jobs`` takes any task states reader: here one over the throwaway home's DB file. On
    Airflow 3 outside a task, the default reader (the Task SDK supervisor) says plainly that it needs one."""
    from airflow_provider_hfjobs.exceptions import HfJobsError
    from airflow_provider_hfjobs.orphans import TaskInstanceRow
    from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_PLUS

    def from_sqlite(dag_id: str, task_ids: Any) -> list[TaskInstanceRow]:
        rows = sql(
            scenario.home,
            "SELECT run_id, task_id, map_index, state FROM task_instance WHERE dag_id = ?",
            dag_id,
        )
        return [TaskInstanceRow(*row) for row in rows if not task_ids or row[1] in task_ids]

    found = scenario.hook.list_orphan_jobs(from_sqlite, min_age=0, labels={"suite": "orphans"})
    assert sorted(orphan.job.id for orphan in found) == sorted(scenario.orphans.values())
    if AIRFLOW_V_3_PLUS:
        with pytest.raises(HfJobsError, match="needs a running task"):
            scenario.hook.list_orphan_jobs(min_age=0)


def test_cancel_ends_each_orphan_canceled_and_touches_nothing_else(scenario: Scenario) -> None:
    text = maintenance(scenario, min_age="0s", cancel=True)
    for what, job_id in scenario.orphans.items():
        assert (
            count(text, f"Cancelled Hugging Face job {job_id} (orphan: no task watches it): CANCELED after ")
            == 1
        ), (what, text[-6000:])
        assert scenario.stage(job_id) is JobStage.CANCELED, what
    assert "may still be running and billed" not in text
    for what, job_id in scenario.kept.items():
        assert orphan_lines(text, job_id) == 0, what
        assert scenario.stage(job_id) is JobStage.RUNNING, what
    _, pushed = last_xcom(scenario.home)
    assert {entry["job_id"] for entry in pushed} == set(scenario.orphans.values())
    assert all(entry["cancel"]["confirmed"] and entry["cancel"]["stage"] == "CANCELED" for entry in pushed)


def test_the_watched_task_still_finishes_with_its_job(scenario: Scenario) -> None:
    scenario.marker.touch()
    assert scenario.watched is not None
    assert scenario.watched.wait(timeout=180) == 0, scenario.watched_log.read_text()[-6000:]
    job: JobInfo = scenario.hook.inspect_job(scenario.kept["watched"])
    assert job.stage is JobStage.COMPLETED
