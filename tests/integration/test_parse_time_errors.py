"""Bad input, for real: a literal mistake is a DAG import error naming the task and the fix; a templated one
fails its task at run time with the hook's message and nothing misleading after it in the task log."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_PLUS
from tests.integration.airflow_run import count, make_airflow_home
from tests.integration.conftest import TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]

HEADER = """
import pendulum
from airflow.providers.common.compat.sdk import DAG
from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator
from airflow_provider_hfjobs.sensors.hfjobs import HfJobSensor

START = pendulum.datetime(2026, 1, 1, tz="UTC")
"""
# Renders to a timeout the hook refuses, so only the run can tell; the other task runs a real job.
INPUT_ERROR_DAG = """
with DAG(dag_id="hfjobs_input_error", schedule=None, start_date=START, params={"timeout": "1.5"}):
    HfJobRunOperator(
        task_id="bad_timeout", image="python:3.12", command=["true"], timeout="{{ params.timeout }}", retries=0
    )
    HfJobRunOperator(task_id="good", image="python:3.12", command=["python", "-c", "print('fine here')"])
    # A sensor given a job id that does not exist fails on its first look, before any URL is known.
    HfJobSensor(task_id="no_such_job", job_id="0123456789abcdef01234567", retries=0, poke_interval=1)
"""
BAD_LITERAL_DAG = """
with DAG(dag_id="hfjobs_bad_literal", schedule=None, start_date=START):
    HfJobRunOperator(task_id="train", image="python:3.12", command=["true"], flavor="a10g-smal")
"""


def link_xcoms(home: Path, dag_id: str) -> dict[str, object]:
    """The extra-link XComs Airflow 3 pushes when each task ends, by task id."""
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, value FROM xcom WHERE dag_id = ? AND key = '_link_HfJobLink'", (dag_id,)
        ).fetchall()
    return {
        task_id: json.loads(value) if isinstance(value, (str, bytes)) else value for task_id, value in rows
    }


def test_input_errors_at_parse_time_and_at_run_time(server, tmp_path: Path) -> None:
    dags = tmp_path / "extra-dags"
    dags.mkdir()
    (dags / "hfjobs_input_error.py").write_text(textwrap.dedent(HEADER) + textwrap.dedent(INPUT_ERROR_DAG))
    (dags / "hfjobs_bad_literal.py").write_text(textwrap.dedent(HEADER) + textwrap.dedent(BAD_LITERAL_DAG))
    home = make_airflow_home(tmp_path / "home", server.url, TOKEN, dags)

    # Run time: the templated value renders bad; the task fails with the hook's message, and the log says
    # nothing about an XCom the task never pushed. The other task's job runs and its link is kept.
    result = home.dags_test("hfjobs_input_error")
    text = result.stdout + result.stderr
    assert result.returncode != 0, text[-5000:]
    assert count(text, "HfJobsInputError: timeout='1.5' is not a duration: use seconds (300)") >= 1, text[
        -5000:
    ]
    assert count(text, "fine here") == 1, text[-5000:]
    assert count(text, "job 0123456789abcdef01234567 not found in namespace") >= 1, text[-5000:]
    assert "XCom not found" not in text, text[-5000:]
    assert not [line for line in text.splitlines() if "job_url" in line and "error" in line.lower()], text[
        -5000:
    ]
    if AIRFLOW_V_3_PLUS:
        links = link_xcoms(home.path, "hfjobs_input_error")
        assert links["bad_timeout"] == "" and links["no_such_job"] == ""
        assert str(links["good"]).startswith(f"{server.url}/jobs/alice/"), links

    # Parse time: the literal typo is the DAG's import error, naming the task, the closest flavor and
    # the option for a flavor newer than the provider.
    home.run("dags", "reserialize")
    errors = home.run("dags", "list-import-errors", "--output", "json")
    listed = errors.stdout + errors.stderr
    assert "hfjobs_bad_literal.py" in listed, listed[-3000:]
    assert "Task 'train': flavor 'a10g-smal' is unknown: did you mean 'a10g-small'?" in listed, listed[-3000:]
    assert "[hfjobs] extra_flavors" in listed
    assert "hfjobs_input_error.py" not in listed
