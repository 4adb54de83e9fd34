"""Test DAG: deferred jobs for the triggerer restart tests: one prints 80 numbered lines over ~20 s, one
prints a canary secret (from an environment Variable, so it is stored nowhere by Airflow) while deferred.

A run of ``hfjobs_restart`` with ``{"gate": PATH}`` in its conf stops after line 40 until PATH exists (at
most 5 minutes), so that the test, not the machine's speed, decides the job is still running when its
triggerer is stopped."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

LINES = """import os, time
gate = os.environ.get("GATE", "")
for i in range(1, 81):
    print(f"restart line {i:02d}/80", flush=True)
    time.sleep(0.25)
    if i == 40 and gate:
        deadline = time.monotonic() + 300
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.2)
"""
CANARY = (
    "import os, time\nprint('canary start', flush=True)\nprint('the secret is', os.environ['CANARY'], flush=True)"
    "\nprint('config: CANARY=' + os.environ['CANARY'], flush=True)\ntime.sleep(1)\nprint('canary end', flush=True)"
)

with DAG(dag_id="hfjobs_restart", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    HfJobRunOperator(
        task_id="lines", image="python:3.12", command=["python", "-c", LINES], deferrable=True, poll_interval=2,
        retries=0, labels={"suite": "system-restart"}, env={"GATE": "{{ dag_run.conf.get('gate', '') }}"},
    )  # fmt: skip

with DAG(dag_id="hfjobs_canary_deferred", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    HfJobRunOperator(
        task_id="prints_secret", image="python:3.12", command=["python", "-c", CANARY], deferrable=True,
        poll_interval=2, retries=0, secrets={"CANARY": "{{ var.value.triggerer_canary }}"},
    )  # fmt: skip
