"""Assets: a job writes a bucket and pushes a model; another DAG runs because the bucket was written.

``hfjobs_assets_producer`` runs a job with a bucket mounted read-write at ``/exports``: the task declares
``Asset("hf://buckets/<bucket>")`` as its outlet when the DAG is parsed, and when the job COMPLETED the asset
gets an event whose extra names the job (id, URL). The job also reports the model it pushed
(``report_asset``, here the documented report line, as an image without the helper prints it): that asset,
known only at run time, gets its event through the task's alias ``hfjobs:hfjobs_assets_producer.export``.
``hfjobs_assets_consumer`` is scheduled on the bucket's asset, so each successful export starts it.

The bucket and model are read from the environment when the DAG is parsed (an asset schedule must be a
literal): ``HFJOBS_EXAMPLE_EXPORTS`` (default ``my-org/nightly-exports``; the bucket must exist:
``hf buckets create``) and ``HFJOBS_EXAMPLE_MODEL``. With the OpenLineage provider installed, the same
inputs and outputs and an ``hfJob`` run facet (id, URL, flavor, cost) go into its events.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG, Asset, get_current_context, task

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

EXPORTS = os.environ.get("HFJOBS_EXAMPLE_EXPORTS", "my-org/nightly-exports")
MODEL = os.environ.get("HFJOBS_EXAMPLE_MODEL", "my-org/tiny-model")
EXPORTS_ASSET = Asset(f"hf://buckets/{EXPORTS}")

EXPORT = """
import json, os, pathlib
rows = [{"id": i, "text": f"row {i}"} for i in range(3)]
pathlib.Path("/exports/part-0.jsonl").write_text("".join(json.dumps(row) + "\\n" for row in rows))
print("wrote", len(rows), "rows to /exports/part-0.jsonl", flush=True)
report = {"kind": "asset", "uri": "hf://models/" + os.environ["MODEL"], "metadata": {"rows": len(rows)}}
print("::hfjobs-report::" + json.dumps(report), flush=True)
"""

with DAG(
    dag_id="hfjobs_assets_producer",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["huggingface", "assets"],
):
    HfJobRunOperator(
        task_id="export",
        image="python:3.12",
        command=["python", "-c", EXPORT],
        env={"MODEL": MODEL},
        volumes=[{"type": "bucket", "source": EXPORTS, "mount_path": "/exports"}],
    )

with DAG(
    dag_id="hfjobs_assets_consumer",
    schedule=[EXPORTS_ASSET],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["huggingface", "assets"],
):

    @task
    def announce() -> list[str]:
        """Say which job's write started this run (Airflow 3: ``triggering_asset_events``; 2.11:
        ``triggering_dataset_events``)."""
        context = get_current_context()
        events = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
        seen = []
        for asset, asset_events in events.items():
            for event in asset_events:
                extra = event.extra or {}
                print(
                    f"triggered by {getattr(asset, 'uri', asset)}: job {extra.get('hf_job_id')}", flush=True
                )
                seen.append(str(extra.get("hf_job_id")))
        return seen

    announce()
