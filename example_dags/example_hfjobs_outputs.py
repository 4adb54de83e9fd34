"""Outputs per task instance: one task writes files, the next mounts them.

``export`` (``@task.hf_job`` with ``outputs=``) gets its own folder of the bucket, ``<dag>/<run>/<task>/
<map_index>/<try>``, mounted read-write at ``/outputs`` (``HFJOBS_OUTPUTS_DIR``); what it writes there comes
back as a manifest (path, size, sha256 of each file) in its ``hf_job_outputs`` XCom, and the path it returns
comes back as that file's manifest entry. ``count`` (an image job) takes the manifest as ``inputs=`` and
gets the folder mounted read-only at ``/inputs``; it checks each file's sha256 against the manifest.

The bucket is read from ``HFJOBS_EXAMPLE_ARTIFACTS`` (default ``my-org/artifacts``; it must exist:
``hf buckets create my-org/artifacts``).
"""

from __future__ import annotations

import json
import os

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

ARTIFACTS = os.environ.get("HFJOBS_EXAMPLE_ARTIFACTS", "my-org/artifacts")

COUNT = """
import hashlib, json, os, pathlib
manifest = json.loads(os.environ["MANIFEST"])
for entry in manifest["files"]:
    data = (pathlib.Path(os.environ["HFJOBS_INPUTS_DIR"]) / entry["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry
    print(f"{entry['path']}: {len(data.splitlines())} rows, sha256 verified", flush=True)
"""

with DAG(
    dag_id="hfjobs_outputs",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["huggingface", "outputs"],
):

    @task.hf_job(outputs=ARTIFACTS, retries=0)
    def export(rows: int) -> str:
        import json
        import os

        folder = os.environ["HFJOBS_OUTPUTS_DIR"]  # /outputs: this try's own folder of the bucket
        with open(os.path.join(folder, "part-0.jsonl"), "w") as handle:
            handle.writelines(json.dumps({"id": i, "text": f"row {i}"}) + "\n" for i in range(rows))
        with open(os.path.join(folder, "stats.json"), "w") as handle:
            json.dump({"rows": rows}, handle)
        return os.path.join(folder, "part-0.jsonl")  # comes back as its manifest entry

    exported = export(3)
    manifest = exported.operator.output["hf_job_outputs"]  # the XCom the task pushed: a manifest

    count = HfJobRunOperator(
        task_id="count",
        image="python:3.12",
        command=["python", "-c", COUNT],
        inputs=manifest,  # mounted read-only at /inputs
        env={"MANIFEST": "{{ ti.xcom_pull(task_ids='export', key='hf_job_outputs') | tojson }}"},
        retries=0,
    )

    @task
    def show(manifest: dict, entry: dict) -> None:
        print("MANIFEST=" + json.dumps(manifest), flush=True)
        print("ENTRY=" + json.dumps(entry), flush=True)

    exported >> count >> show(manifest, exported)
