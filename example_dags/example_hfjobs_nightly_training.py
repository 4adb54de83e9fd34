"""Nightly fine-tuning on an A10G GPU, every day: a dataset mounted in, checkpoints written to a bucket,
the Hub retrying a failed run once by itself, and a CPU evaluation that reads the checkpoint back.

The scripts live next to this DAG (``scripts/``) and travel inside the job spec, nothing is uploaded. The
dataset and the bucket are params (``my-org/...`` by default): trigger the DAG with a conf such as
``{"dataset": "alice/corpus", "checkpoints": "alice/nightly-checkpoints"}`` to use yours (the bucket must
exist: ``hf buckets create``). The HF token reaches the jobs as a secret, masked everywhere in Airflow. The
training task defers (no worker slot while it trains) and ends with its GPU/CPU metrics summary.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfUvJobOperator

CHECKPOINT = "{{ ds_nodash }}"

with DAG(
    dag_id="hfjobs_nightly_training",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"dataset": "my-org/nightly-corpus", "checkpoints": "my-org/nightly-checkpoints"},
    tags=["huggingface", "example", "training"],
) as dag:
    # [START howto_operator_hf_uv_job]
    train = HfUvJobOperator(
        task_id="train",
        script="scripts/train.py",
        script_args=["--epochs", "3", "--lr", "3e-4", "--data", "/data", "--output", f"/checkpoints/{CHECKPOINT}"],
        flavor="a10g-small",
        timeout="2h",
        attempts=2,  # the Hub runs a failed job once more by itself
        volumes=[
            {"type": "dataset", "source": "{{ params.dataset }}", "mount_path": "/data"},
            {"type": "bucket", "source": "{{ params.checkpoints }}", "mount_path": "/checkpoints"},
        ],
        secrets={"HF_TOKEN": "{{ conn.hf_default.password }}"},
        labels={"pipeline": "nightly-training"},
        deferrable=True,
        poll_interval=30,
    )
    # [END howto_operator_hf_uv_job]
    evaluate = HfUvJobOperator(
        task_id="evaluate",
        script="scripts/evaluate.py",
        script_args=["--checkpoint", f"/checkpoints/{CHECKPOINT}"],
        flavor="cpu-basic",
        timeout="20m",
        volumes=[
            {"type": "bucket", "source": "{{ params.checkpoints }}", "mount_path": "/checkpoints", "read_only": True}
        ],
        labels={"pipeline": "nightly-training"},
    )
    train >> evaluate
