"""Reports from inside real jobs on the local Jobs server, through ``airflow dags test``: progress lines (with
rate) in the task log on a worker and deferred, never a raw report line, the last of each kind in the
``hf_job_reports`` XCom, a malformed line one warning, and reports keeping ``stall_timeout`` from firing
(the same job with its helper silenced, ``HFJOBS_REPORTS=0``, is stopped)."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from airflow_provider_hfjobs.reports import REPORT_PREFIX
from tests.integration.airflow_run import AirflowHome, count, make_airflow_home
from tests.integration.conftest import TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]

STALL_DAG = """
import json

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

MALFORMED = (
    "print('::hfjobs-report::{\\"kind\\":\\"progress\\",\\"done\\":5,\\"total\\":0,\\"unit\\":\\"x\\"}', flush=True)\\n"
    "print('::hfjobs-report::not json', flush=True)\\n"
    "print('::hfjobs-report::{\\"kind\\":\\"metric\\",\\"name\\":\\"ok\\",\\"value\\":1}', flush=True)\\n"
    "print('after the bad lines', flush=True)\\n"
)

with DAG(dag_id="hfjobs_reports_stall", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):

    @task.hf_job(retries=0, poll_interval=1, stall_timeout="4s", timeout="5m")
    def quiet_but_reporting(seconds: int) -> int:
        import time

        from hfjobs_report import report_progress

        print("started", flush=True)
        for second in range(seconds + 1):  # nothing but reports from here on
            report_progress(second, seconds, "s")
            if second < seconds:
                time.sleep(1)
        return seconds

    quiet = quiet_but_reporting(12)
    quiet_deferred = quiet_but_reporting.override(task_id="quiet_but_reporting_deferred", deferrable=True)(12)
    silenced = quiet_but_reporting.override(task_id="silenced", env={"HFJOBS_REPORTS": "0"})(12)
    malformed = HfJobRunOperator(
        task_id="malformed", image="python:3.12", command=["python", "-c", MALFORMED], poll_interval=1,
        retries=0,
    )

    @task(trigger_rule="all_done")
    def show(ti=None) -> None:
        for task_id in ("quiet_but_reporting", "quiet_but_reporting_deferred", "malformed"):
            print(f"REPORTS {task_id}=" + json.dumps(ti.xcom_pull(task_ids=task_id, key="hf_job_reports")))

    [quiet, quiet_deferred, silenced, malformed] >> show()
"""


@pytest.fixture(scope="module")
def airflow_home(server, tmp_path_factory) -> AirflowHome:
    extra = tmp_path_factory.mktemp("report-dags")
    (extra / "hfjobs_reports_stall.py").write_text(textwrap.dedent(STALL_DAG))
    return make_airflow_home(tmp_path_factory.mktemp("airflow-home"), server.url, TOKEN, extra)


def output(result) -> str:
    return result.stdout + result.stderr


def pushed(text: str) -> dict[str, object]:
    """The ``hf_job_reports`` XCom of each task, as the ``show`` task printed it."""
    return {task_id: json.loads(value) for task_id, value in re.findall(r"REPORTS (\w+)=(.*)$", text, re.M)}


def test_the_example_shows_progress_and_pushes_the_last_report_of_each_kind(
    airflow_home: AirflowHome,
) -> None:
    result = airflow_home.dags_test("hfjobs_reports")
    text = output(result)
    assert result.returncode == 0, text[-6000:]
    assert REPORT_PREFIX not in text and "hfjobs-report::" not in text, text[-6000:]
    # train on the worker and train_deferred in the triggerer: the first and the last progress lines, the
    # last with its rate (the job ran 2.5 s, under the 10 s between two lines).
    assert count(text, "Progress: 0/5 epoch (0%)") == 2, text[-6000:]
    assert len(re.findall(r"Progress: 5/5 epoch \(100%\), [\d.]+ epoch/s", text)) >= 2, text[-6000:]
    assert count(text, "Metric loss = 0.0778 (step 5)") == 2
    assert count(text, "Asset: /checkpoints/model.safetensors") == 2
    assert count(text, "Check loss_below_0.1: passed") == 2
    assert count(text, "Check accuracy_above_0.9: passed") == 1 and count(text, "Metric accuracy = 0.93") == 1
    assert (
        count(text, "Asset: /exports/part-0.parquet") == 1 and count(text, "Check no_empty_rows: passed") == 1
    )
    xcoms = pushed(text)
    for task_id in ("train", "train_deferred"):
        reports = xcoms[task_id]
        assert isinstance(reports, dict), xcoms
        assert reports["progress"]["done"] == 5 and reports["progress"]["total"] == 5  # type: ignore[index]
        assert reports["progress"]["rate_per_second"] > 0  # type: ignore[index]
        assert reports["metrics"] == {"loss": {"value": 0.0778, "step": 5}}
        assert reports["assets"] == [{"uri": "/checkpoints/model.safetensors", "metadata": {"epochs": 5}}]
        assert reports["checks"] == {"loss_below_0.1": {"passed": True, "metadata": {"loss": 0.0778}}}
    assert xcoms["score"] == {
        "metrics": {"accuracy": {"value": 0.93}}, "assets": [],
        "checks": {"accuracy_above_0.9": {"passed": True, "metadata": {"accuracy": 0.93}}},
    }  # fmt: skip
    assert xcoms["export"] == {
        "metrics": {}, "assets": [{"uri": "/exports/part-0.parquet", "metadata": {"rows": 1000}}],
        "checks": {"no_empty_rows": {"passed": True}},
    }  # fmt: skip


def test_reports_are_life_for_stall_timeout_and_a_bad_line_is_one_warning(airflow_home: AirflowHome) -> None:
    result = airflow_home.dags_test("hfjobs_reports_stall")
    text = output(result)
    # A job that prints nothing but a report a second for 12 s outlives its 4 s stall_timeout, on a worker
    # and deferred; the same job with its helper silenced is stopped.
    assert re.search(r"HfJobFailedError: Stopped by its guardrail: stall_timeout: no log line", text), text[
        -6000:
    ]
    stopped = set(re.findall(r"stall_timeout: no log line from job (\w+)", text))
    assert len(stopped) == 1, text[-6000:]
    xcoms = pushed(text)
    for task_id in ("quiet_but_reporting", "quiet_but_reporting_deferred"):
        progress = xcoms[task_id]["progress"]  # type: ignore[index]
        assert progress["done"] == 12 and progress["total"] == 12, xcoms
    # Paced: the first, one about 10 s in, the last (not one a second), with rate and ETA in between.
    assert count(text, "Progress: 0/12 s (0%)") == 2, text[-6000:]
    assert len(re.findall(r"Progress: 12/12 s \(100%\), [\d.]+ s/s", text)) >= 2, text[-6000:]
    middle = re.findall(r"Progress: (\d+)/12 s \(\d+%\), [\d.]+ s/s, ETA [\d.]+s", text)
    assert middle and all(9 <= int(done) <= 11 for done in middle), text[-6000:]
    assert sum(count(text, f"Progress: {done}/12 s (") for done in range(1, 12)) <= 4
    # A malformed line: one warning (the first), never the task's failure; the good line is kept.
    assert count(text, "Ignoring a malformed report line of job") == 1, text[-6000:]
    assert count(text, "progress total must be above 0") == 1 and count(text, "after the bad lines") == 1
    assert xcoms["malformed"] == {"metrics": {"ok": {"value": 1}}, "assets": [], "checks": {}, "malformed": 2}
    assert REPORT_PREFIX not in text
    assert count(text, "COMPLETED on cpu-basic") == 3, text[-6000:]  # all but the silenced job
