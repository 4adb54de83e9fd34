"""Submit a job without waiting, then watch it with a deferrable sensor (for example, from another team's
DAG, or a job started outside Airflow: give ``job_id`` literally then)."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator
from airflow_provider_hfjobs.sensors.hfjobs import HfJobSensor

with DAG(
    dag_id="hfjobs_sensor",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["huggingface", "example", "sensor"],
) as dag:
    submit = HfJobRunOperator(
        task_id="submit",
        image="python:3.12",
        command=[
            "python",
            "-c",
            "import time\nfor i in range(3):\n    print(f'evaluating {i}', flush=True)\n    time.sleep(0.5)",
        ],
        flavor="cpu-basic",
        wait_for_completion=False,
    )
    # [START howto_sensor_hf_job]
    wait = HfJobSensor(
        task_id="wait_for_job",
        job_id="{{ ti.xcom_pull(task_ids='submit', key='job_id') }}",
        stream_logs=True,
        deferrable=True,
        poke_interval=5,
        timeout=3600,
    )
    # [END howto_sensor_hf_job]
    submit >> wait
