"""Test DAG: a long deferred job, for stopping its task from the outside (mark failed) in the system test."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

LONG = "import time\nprint('long job started', flush=True)\ntime.sleep(300)"

with DAG(dag_id="hfjobs_long", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    HfJobRunOperator(
        task_id="long", image="python:3.12", command=["python", "-c", LONG], deferrable=True, poll_interval=2,
        retries=0, labels={"suite": "system-long"},
    )  # fmt: skip
