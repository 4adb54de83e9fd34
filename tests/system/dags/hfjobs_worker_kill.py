"""Test DAG for the distributed system test: a task that follows its job on the worker (not deferred), with
one retry, for killing the Celery worker mid-job. The job prints a numbered line every half second until the
test opens its gate (a file named in the run's conf), then three closing lines, and ends (300 s at most)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

GATED = (
    "import os, sys, time\ngate = sys.argv[1]\ni = 0\nwhile not os.path.exists(gate) and i < 600:\n"
    "    i += 1\n    print(f'worker line {i:03d}', flush=True)\n    time.sleep(0.5)\n"
    "for j in range(1, 4):\n    print(f'closing line {j}/3', flush=True)\nsys.exit(0 if os.path.exists(gate) else 3)"
)

with DAG(
    dag_id="hfjobs_worker_kill", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"gate": "/nonexistent"},
) as dag:  # fmt: skip
    HfJobRunOperator(
        task_id="follow", image="python:3.12", command=["python", "-c", GATED, "{{ params.gate }}"],
        deferrable=False, poll_interval=2, retries=1, retry_delay=timedelta(seconds=0),
        labels={"suite": "system-worker-kill"},
    )  # fmt: skip
