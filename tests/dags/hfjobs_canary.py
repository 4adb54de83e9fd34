"""Test DAG: secrets from a Variable and from the connection, on a worker and deferred, succeeding and
failing. The leak test then looks for their values everywhere Airflow keeps things."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator, HfUvJobOperator

USE = "import os; print('key length', len(os.environ['API_KEY']), flush=True)"
SECRETS = {"API_KEY": "{{ var.value.canary_secret }}", "HF_TOKEN": "{{ conn.hf_default.password }}"}

with DAG(dag_id="hfjobs_canary", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    HfJobRunOperator(
        task_id="uses_secret", image="python:3.12", command=["python", "-c", USE], secrets=SECRETS
    )
    HfJobRunOperator(
        task_id="uses_secret_deferred", image="python:3.12", command=["python", "-c", USE + "; import time; time.sleep(1)"],
        secrets=SECRETS, deferrable=True, poll_interval=1,
    )  # fmt: skip
    HfUvJobOperator(
        task_id="fails_with_secret", script=USE + "\nraise SystemExit(2)\n", secrets=SECRETS, retries=0,
        trigger_rule="all_done",
    )  # fmt: skip
