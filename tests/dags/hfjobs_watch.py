"""Test DAG: a deferrable HfJobSensor watching a job started outside Airflow (its id in the run's conf), for
stopping the sensor from the outside (mark failed or success, clear) in the system test."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.sensors.hfjobs import HfJobSensor

with DAG(
    dag_id="hfjobs_watch", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"job_id": "0" * 24},
) as dag:  # fmt: skip
    HfJobSensor(
        task_id="watch", job_id="{{ params.job_id }}", deferrable=True, stream_logs=True, poke_interval=2,
        retries=0,
    )  # fmt: skip
