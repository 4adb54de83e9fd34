"""Nightly fine-tuning: a UV training script on an A10G GPU, every day, deferred while it trains.

The script lives next to this DAG (``scripts/train.py``); it travels inside the job spec, nothing is
uploaded. The HF token reaches the job as a secret (masked in Airflow's logs and rendered fields).
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfUvJobOperator

with DAG(
    dag_id="hfjobs_nightly_training",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["huggingface", "example", "training"],
) as dag:
    # [START howto_operator_hf_uv_job]
    train = HfUvJobOperator(
        task_id="train",
        script="scripts/train.py",
        script_args=["--epochs", "3", "--lr", "3e-4", "--output", "trained-{{ ds_nodash }}"],
        flavor="a10g-small",
        timeout="2h",
        secrets={"HF_TOKEN": "{{ conn.hf_default.password }}"},
        labels={"pipeline": "nightly-training"},
        deferrable=True,
        poll_interval=30,
    )
    # [END howto_operator_hf_uv_job]
