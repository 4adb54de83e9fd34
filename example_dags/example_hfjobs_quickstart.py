"""Quickstart: say hello from Hugging Face Jobs, once waiting on a worker and once deferred.

Needs an ``hf_default`` connection (type ``hf_jobs``, password = your HF token). ``make demo`` runs this DAG
against the local Jobs server.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

HELLO = """
import platform, time
print("Hello from the cloud!")
for step in range(1, 4):
    print(f"step {step}/3 running on {platform.machine()}")
    time.sleep(0.5)
"""

with DAG(
    dag_id="hfjobs_quickstart",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["huggingface", "example"],
) as dag:
    # [START howto_operator_hf_job_run]
    hello = HfJobRunOperator(
        task_id="hello",
        image="python:3.12",
        command=["python", "-c", HELLO],
        flavor="cpu-basic",
        timeout="10m",
        labels={"example": "quickstart"},
    )
    # [END howto_operator_hf_job_run]

    # The same job, waiting in the triggerer instead of holding a worker slot; its log lines still land
    # in this task's log as the job prints them.
    hello_deferred = HfJobRunOperator(
        task_id="hello_deferred",
        image="python:3.12",
        command=["python", "-c", HELLO],
        flavor="cpu-basic",
        timeout="10m",
        labels={"example": "quickstart"},
        deferrable=True,
        poll_interval=5,
    )

    hello >> hello_deferred
