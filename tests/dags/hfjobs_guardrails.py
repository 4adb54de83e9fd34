"""Test DAGs: each guardrail stopping a job (or falling back to the next flavor), on a worker and deferred,
against a local Jobs server whose ``h200`` has no capacity. A downstream task prints the guarded task's
``job`` XCom, so the test reads ``stopped_by`` from a real run."""

from __future__ import annotations

import json

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

QUIET = "import time\nprint('guarded job started', flush=True)\ntime.sleep(600)"
CHATTY = "import time\nfor i in range(600):\n    print(f'guarded line {i}', flush=True)\n    time.sleep(0.5)"
IDLE_GPU = (
    "import json, os, time\n"
    "open(os.environ['HFJOBS_LOCAL_GPU_FILE'], 'w').write(json.dumps({'utilization': 0}))\n"
    "for i in range(600):\n    print(f'guarded line {i}', flush=True)\n    time.sleep(0.5)"
)
CASES = {
    "stall": {"command": QUIET, "stall_timeout": "3s"},
    "cost": {"command": CHATTY, "flavor": "h200x8", "max_cost_usd": 0.04, "timeout": "1h"},
    "idle_gpu": {"command": IDLE_GPU, "flavor": "a10g-small", "idle_gpu_timeout": "3s"},
    "fallback": {
        "command": "print('ran on the fallback flavor', flush=True)", "flavor": ["h200", "cpu-basic"],
        "max_scheduling_time": "3s",
    },
}  # fmt: skip


def show_job(ti=None) -> None:
    print("GUARDED_JOB=" + json.dumps(ti.xcom_pull(task_ids="guarded", key="job")))


for case, arguments in CASES.items():
    for mode in ("worker", "deferred"):
        with DAG(
            dag_id=f"hfjobs_guard_{case}_{mode}", schedule=None,
            start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        ):  # fmt: skip
            options = {key: value for key, value in arguments.items() if key != "command"}
            guarded = HfJobRunOperator(
                task_id="guarded", image="python:3.12", command=["python", "-c", arguments["command"]],
                deferrable=mode == "deferred", poll_interval=1, retries=0,
                labels={"suite": f"guard-{case}-{mode}"}, **options,
            )  # fmt: skip
            guarded >> task(task_id="show", trigger_rule="all_done")(show_job)()
