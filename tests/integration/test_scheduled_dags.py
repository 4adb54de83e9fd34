"""Scheduled jobs managed from Airflow, against the local Jobs server's real scheduler: the example DAG run
twice keeps one scheduled job, and its sensor shows the next run's lines once; the operator's updates in
place and replacements; suspend/resume/trigger/delete as operator actions; the sensor in poke mode."""

from __future__ import annotations

import json
import re
from typing import Any
from unittest import mock

import pytest

from airflow_provider_hfjobs.exceptions import HfJobsConcurrencyError, HfJobsInputError
from airflow_provider_hfjobs.jobs import SCHEDULED_TASK_LABEL, scheduled_task_labels
from airflow_provider_hfjobs.operators.scheduled import HfScheduledJobActionOperator, HfScheduledJobOperator
from airflow_provider_hfjobs.sensors.hfjobs import HfJobSensor
from tests.integration.airflow_run import AirflowHome, count, make_airflow_home
from tests.integration.conftest import TOKEN
from tests.integration.waiting import wait_for

pytestmark = [pytest.mark.integration]

EVERY_MINUTE = json.dumps({"schedule": "* * * * *"})


def output(result) -> str:
    return result.stdout + result.stderr


@pytest.mark.airflow_db
def test_the_example_dag_run_twice_keeps_one_scheduled_job_and_shows_each_next_run_once(
    server, hook, tmp_path
) -> None:
    home: AirflowHome = make_airflow_home(tmp_path, server.url, TOKEN)
    label = scheduled_task_labels("hfjobs_scheduled", "export_schedule")[SCHEDULED_TASK_LABEL]
    ids = []
    for attempt in (1, 2):
        result = home.run("dags", "test", "hfjobs_scheduled", "-c", EVERY_MINUTE, timeout=300)
        text = output(result)
        assert result.returncode == 0, text[-6000:]
        found = hook.list_scheduled_jobs(labels={SCHEDULED_TASK_LABEL: label})
        assert len(found) == 1, [job.id for job in found]  # never a second one
        ids.append(found[0].id)
        said = "Created scheduled job" if attempt == 1 else "is up to date"
        assert count(text, said) == 1, text[-6000:]
        # The sensor waited for the next run the server's cron started and showed its lines, once.
        run = re.search(
            r"Scheduled job [0-9a-f]{24}: watching its run, Hugging Face job ([0-9a-f]{24})", text
        )
        assert run, text[-6000:]
        assert hook.inspect_job(run[1]).initiator.type == "scheduled-job"
        assert count(text, "exported 42 rows") == 1, text[-6000:]
        # run_now triggered one more run.
        assert re.search(r"run started, Hugging Face job [0-9a-f]{24}", text), text[-6000:]
    assert ids[0] == ids[1]
    assert found[0].schedule == "* * * * *" and found[0].job_spec.labels["team"] == "data"
    hook.delete_scheduled_job(ids[0])


class FakeTI:
    """What the operators use of a task instance, with no metadata DB."""

    def __init__(self, dag_id: str = "dag_x", task_id: str = "schedule") -> None:
        self.dag_id, self.task_id = dag_id, task_id
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def schedule_operator(**overrides: Any) -> HfScheduledJobOperator:
    arguments = {
        "task_id": "schedule", "image": "python:3.12", "command": ["python", "-c", "print('scheduled run')"],
        "schedule": "0 3 * * *", "labels": {"team": "data"}, "hf_conn_id": "hf_local", **overrides,
    }  # fmt: skip
    return HfScheduledJobOperator(**arguments)


def test_the_operator_updates_in_place_what_it_can_and_replaces_what_it_cannot(hook, tmp_path) -> None:
    ti = FakeTI(task_id=f"schedule_{tmp_path.name[-12:]}")
    context = {"ti": ti}
    first = schedule_operator(task_id=ti.task_id).execute(context)
    assert ti.xcom["scheduled_job"]["id"] == first
    # Same arguments: the same scheduled job, nothing changed.
    assert schedule_operator(task_id=ti.task_id).execute(context) == first
    # A new schedule, new labels, suspended: the same one, updated in place.
    again = schedule_operator(task_id=ti.task_id, schedule="@daily", labels={"team": "ml"}, suspend=True)
    assert again.execute(context) == first
    current = hook.inspect_scheduled_job(first)
    assert current.schedule == "@daily" and current.suspend and current.job_spec.labels["team"] == "ml"
    assert current.next_job_run_at is None
    # A new command: the API cannot change what it runs, so it is replaced (and the old one deleted).
    replaced = schedule_operator(task_id=ti.task_id, command=["python", "-c", "print('v2')"]).execute(context)
    assert replaced != first
    labels = {SCHEDULED_TASK_LABEL: scheduled_task_labels(ti.dag_id, ti.task_id)[SCHEDULED_TASK_LABEL]}
    assert [job.id for job in hook.list_scheduled_jobs(labels=labels)] == [replaced]
    hook.delete_scheduled_job(replaced)


def test_bad_arguments_fail_when_the_dag_is_parsed() -> None:
    with pytest.raises(
        HfJobsInputError, match=r"Task 'schedule': schedule '@daly' is not one of .* '@daily'"
    ):
        schedule_operator(schedule="@daly")
    with pytest.raises(HfJobsInputError, match="ssh cannot be given to HfScheduledJobOperator"):
        schedule_operator(ssh=True)
    schedule_operator(schedule="{{ params.schedule }}")  # a template is checked when rendered
    with pytest.raises(
        HfJobsInputError, match="action 'pause' must be one of suspend, resume, trigger, delete"
    ):
        HfScheduledJobActionOperator(task_id="x", scheduled_job_id="a" * 24, action="pause")
    with pytest.raises(HfJobsInputError, match=r"either job_id .* or scheduled_job_id"):
        HfJobSensor(task_id="x", job_id="a" * 24, scheduled_job_id="b" * 24)
    with pytest.raises(HfJobsInputError, match="run='next' cannot be watched in reschedule mode"):
        HfJobSensor(task_id="x", scheduled_job_id="b" * 24, mode="reschedule")


def test_actions_and_the_sensor_in_poke_mode_on_a_real_schedule(hook, tmp_path) -> None:
    signal = tmp_path / "go"
    waits = f"import os, time\nprint('run begins', flush=True)\nwhile not os.path.exists({str(signal)!r}): time.sleep(0.05)\nprint('run ends', flush=True)"
    scheduled = hook.create_scheduled_job(
        image="python:3.12", command=["python", "-c", waits], schedule="0 3 * * *", labels={"suite": "sched"}
    )

    def act(action: str) -> Any:
        operator = HfScheduledJobActionOperator(
            task_id=f"do_{action}", scheduled_job_id=scheduled.id, action=action, hf_conn_id="hf_local"
        )
        return operator.execute({"ti": FakeTI(task_id=f"do_{action}")})

    act("suspend")
    assert hook.inspect_scheduled_job(scheduled.id).suspend
    act("resume")
    assert not hook.inspect_scheduled_job(scheduled.id).suspend
    run_id = act("trigger")
    assert hook.inspect_job(run_id).initiator.type == "scheduled-job"
    wait_for("the run's first line", lambda: "run begins" in list(hook.fetch_job_logs(run_id, follow=False)))
    with pytest.raises(HfJobsConcurrencyError):  # a run is active and concurrency is off: nothing starts
        act("trigger")
    # The sensor watches the latest run (the one running), shows its lines and succeeds when it completes.
    sensor = HfJobSensor(
        task_id="wait_run", scheduled_job_id=scheduled.id, run="latest", hf_conn_id="hf_local",
        stream_logs=True, poke_interval=0.2, timeout=60, mode="poke",
    )  # fmt: skip
    logger = mock.Mock()
    with mock.patch.object(HfJobSensor, "log", new_callable=mock.PropertyMock, return_value=logger):
        first_poke = sensor.poke({"ti": FakeTI(task_id="wait_run")})
        assert not first_poke and sensor.job_id == run_id
        signal.touch()
        assert wait_for("the run to end", lambda: sensor.poke({"ti": FakeTI(task_id="wait_run")}))
    logged = [call.args[0] % call.args[1:] for call in logger.info.call_args_list]
    assert logged.count("run begins") == 1 and logged.count("run ends") == 1, logged
    act("delete")
    assert not hook.list_scheduled_jobs(labels={"suite": "sched"})
