"""Test DAG: a deferred job that prints a line, waits for a file the test creates, then prints another, so a
test can watch its job page follow the log live (tests/integration/test_first_hour.py)."""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

SIGNAL = os.environ.get("HFJOBS_TEST_SIGNAL_FILE", "/nonexistent/hfjobs-signal")
WAIT = (
    "import os, time\n"
    "print('waiting for the signal', flush=True)\n"
    f"while not os.path.exists({SIGNAL!r}):\n"
    "    time.sleep(0.05)\n"
    "print('signal received', flush=True)\n"
)

with DAG(dag_id="hfjobs_live_page", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    HfJobRunOperator(
        task_id="live", image="python:3.12", command=["python", "-c", WAIT], timeout="5m", deferrable=True,
        retries=0, labels={"suite": "first-hour"},
    )  # fmt: skip
