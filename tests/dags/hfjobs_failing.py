"""Test DAG: a job that prints and exits 1, once followed on the worker and once deferred."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

# Sleeps so that the deferrable task really defers before the job fails.
FAIL = "import time; print('checking inputs'); time.sleep(1.5); print('bad shard 7'); raise SystemExit(1)"

with DAG(dag_id="hfjobs_failing", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    HfJobRunOperator(task_id="fails_sync", image="python:3.12", command=["python", "-c", FAIL], retries=0)
    HfJobRunOperator(
        task_id="fails_deferred", image="python:3.12", command=["python", "-c", FAIL], deferrable=True,
        poll_interval=1, retries=0,
    )  # fmt: skip
