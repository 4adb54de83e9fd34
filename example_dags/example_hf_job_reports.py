"""Reports from inside the job: progress, metrics, assets and checks, in the task log and in XCom.

``train`` (a ``@task.hf_job`` function, on the worker and again deferred) and ``score`` (an
``HfUvJobOperator`` script) import ``hfjobs_report``, which the provider puts in the job: nothing to
install. ``export`` runs a command in an image and prints the documented line format itself. The task log
shows ``Progress: 3/5 epoch (60%), 2 epoch/s, ETA 1s`` (at most one such line per 10 s, plus the first and
the last) and a short line per metric, asset and check, never the raw lines; ``show`` prints the
``hf_job_reports`` XCom each task pushed: the last progress, the last value of each metric, every asset,
the last result of each check. See docs/reports.md.
"""

from __future__ import annotations

import json

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator, HfUvJobOperator

SCORE = """
from hfjobs_report import report_check, report_metric

accuracy = 0.93
report_metric("accuracy", accuracy)
report_check("accuracy_above_0.9", accuracy > 0.9, {"accuracy": accuracy})
print("scored")
"""

# An image job has no helper: it prints the lines itself (one JSON object after the prefix).
EXPORT = (
    "import json\n"
    "line = lambda **report: print('::hfjobs-report::' + json.dumps(report), flush=True)\n"
    "line(kind='asset', uri='/exports/part-0.parquet', metadata={'rows': 1000})\n"
    "line(kind='check', name='no_empty_rows', passed=True)\n"
    "print('exported')\n"
)

with DAG(
    dag_id="hfjobs_reports",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["huggingface", "example", "reports"],
) as dag:
    # [START howto_hf_job_reports]
    @task.hf_job(flavor="cpu-basic", timeout="10m", poll_interval=2)
    def train(epochs: int = 5) -> dict:
        import time

        from hfjobs_report import report_asset, report_check, report_metric, report_progress

        report_progress(0, epochs, "epoch")
        loss = 1.0
        for epoch in range(1, epochs + 1):
            time.sleep(0.5)  # the real work
            loss *= 0.6
            report_metric("loss", round(loss, 4), step=epoch)
            report_progress(epoch, epochs, "epoch")
        report_asset("/checkpoints/model.safetensors", {"epochs": epochs})
        report_check("loss_below_0.1", loss < 0.1, {"loss": round(loss, 4)})
        return {"loss": round(loss, 4)}

    # [END howto_hf_job_reports]

    trained = train()
    trained_deferred = train.override(task_id="train_deferred", deferrable=True)()
    score = HfUvJobOperator(task_id="score", script=SCORE, flavor="cpu-basic", timeout="10m", poll_interval=2)
    export = HfJobRunOperator(
        task_id="export", image="python:3.12", command=["python", "-c", EXPORT], flavor="cpu-basic",
        timeout="10m", poll_interval=2, deferrable=True,
    )  # fmt: skip

    @task
    def show(ti=None) -> None:
        for task_id in ("train", "train_deferred", "score", "export"):
            print(f"REPORTS {task_id}=" + json.dumps(ti.xcom_pull(task_ids=task_id, key="hf_job_reports")))

    [trained, trained_deferred, score, export] >> show()
