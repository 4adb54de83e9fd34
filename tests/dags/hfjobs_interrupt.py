"""Test DAGs: a long job followed on the worker and one deferred, for stopping ``airflow dags test`` with
Ctrl-C (SIGINT to its process group) and checking the job is cancelled."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

LONG = "import time\nprint('interruptible job started', flush=True)\ntime.sleep(600)"

for mode in ("worker", "deferred"):
    with DAG(
        dag_id=f"hfjobs_interrupt_{mode}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")
    ):
        HfJobRunOperator(
            task_id="long", image="python:3.12", command=["python", "-c", LONG], deferrable=mode == "deferred",
            poll_interval=2, retries=0, labels={"suite": f"interrupt-{mode}"},
        )  # fmt: skip
