"""A data pipeline with one GPU step between CPU steps: prepare on CPU, embed on a T4, publish on CPU.

Each step is its own job; only the GPU step pays GPU prices, by the second.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator, HfUvJobOperator

PREPARE = """
rows = [f"document {i}" for i in range(100)]
print(f"prepared {len(rows)} rows from dataset {__import__('os').environ['DATASET']}")
"""

EMBED = """
# /// script
# dependencies = []
# ///
import os, sys
batch = int(sys.argv[sys.argv.index("--batch-size") + 1])
print(f"embedding {os.environ['DATASET']} in batches of {batch} on {os.environ.get('FLAVOR_HINT', 'gpu')}")
for step in range(3):
    print(f"batch {step} done", flush=True)
print("wrote embeddings")
"""

with DAG(
    dag_id="hfjobs_data_pipeline",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["huggingface", "example", "pipeline"],
) as dag:
    prepare = HfJobRunOperator(
        task_id="prepare",
        image="python:3.12",
        command=["python", "-c", PREPARE],
        env={"DATASET": "HuggingFaceFW/fineweb-edu"},
        flavor="cpu-upgrade",
        timeout="20m",
    )
    embed = HfUvJobOperator(
        task_id="embed",
        script=EMBED,
        script_args=["--batch-size", "64"],
        env={"DATASET": "HuggingFaceFW/fineweb-edu", "FLAVOR_HINT": "t4-small"},
        flavor="t4-small",
        timeout="1h",
        deferrable=True,
        poll_interval=15,
    )
    publish = HfJobRunOperator(
        task_id="publish",
        image="python:3.12",
        command=["python", "-c", "print('published embeddings for run {{ run_id }}')"],
        flavor="cpu-basic",
        timeout="10m",
    )
    prepare >> embed >> publish
