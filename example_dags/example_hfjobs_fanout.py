"""Fan out: one job per shard with dynamic task mapping, then a step that runs once all have succeeded."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

SHARDS = ["00", "01", "02", "03"]

with DAG(
    dag_id="hfjobs_fanout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["huggingface", "example", "mapping"],
) as dag:
    score_shards = HfJobRunOperator.partial(
        task_id="score_shard",
        image="python:3.12",
        flavor="cpu-upgrade",
        timeout="30m",
        labels={"pipeline": "fanout"},
        deferrable=True,
        poll_interval=10,
    ).expand(
        command=[
            ["python", "-c", f"print('scored shard {shard}: {int(shard) * 10 + 7} rows')"] for shard in SHARDS
        ]
    )

    # Runs only when every mapped job COMPLETED (default trigger rule all_success).
    merge = HfJobRunOperator(
        task_id="merge",
        image="python:3.12",
        command=["python", "-c", f"print('merged {len(SHARDS)} shards')"],
        flavor="cpu-basic",
    )
    score_shards >> merge
