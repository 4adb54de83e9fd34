"""A Python function of the DAG runs on Hugging Face hardware: ``@task.hf_job``.

A plain ``@task`` lists the shards; ``embed`` runs once per shard (``.expand``) as a job on a GPU flavor,
waiting on the worker, and again deferred to the triggerer (``embed_deferred``); ``summarize`` runs as one job on a CPU flavor, deferred to the triggerer, and
returns several values (``multiple_outputs``); a plain ``@task`` reads what the jobs returned from XCom.

The functions travel to the job as source: they import what they use inside their body (the DAG file's
imports do not exist there), take and return JSON values, and use no variable of an enclosing function.
Real code would list its packages, e.g. ``@task.hf_job(flavor="a10g-small", dependencies=["torch",
"sentence-transformers"])``: they go into the script's PEP 723 header. This example sticks to the standard
library so that ``make demo`` and the tests run it offline against the local Jobs server.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

with DAG(
    dag_id="hfjobs_function",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["huggingface", "example", "taskflow"],
) as dag:

    @task
    def list_shards() -> list[str]:
        return ["00", "01", "02"]

    # [START howto_decorator_hf_job]
    @task.hf_job(flavor="a10g-small", timeout="30m", labels={"example": "function"}, poll_interval=2)
    def embed(shard: str, model: str = "BAAI/bge-small-en") -> dict:
        import hashlib

        rows = 10 + int(shard)
        digest = hashlib.sha256(f"{model}/{shard}".encode()).hexdigest()[:8]
        print(f"embedding shard {shard} with {model}: {rows} rows")
        return {"shard": shard, "rows": rows, "path": f"/embeddings/{shard}-{digest}.npy"}

    shards = list_shards()
    stats = embed.expand(shard=shards)
    # [END howto_decorator_hf_job]

    # The same function, deferred: the triggerer follows each job and no worker slot is held meanwhile.
    stats_deferred = embed.override(task_id="embed_deferred", deferrable=True).expand(shard=shards)

    @task.hf_job(flavor="cpu-basic", timeout="10m", deferrable=True, poll_interval=2, multiple_outputs=True)
    def summarize(stats: list[dict]) -> dict:
        total = sum(item["rows"] for item in stats)
        print(f"summarized {len(stats)} shards: {total} rows")
        return {"total_rows": total, "paths": sorted(item["path"] for item in stats)}

    summary = summarize(stats)

    @task
    def report(stats: list[dict], stats_deferred: list[dict], total_rows: int) -> None:
        print(f"rows per shard from the jobs: {[item['rows'] for item in stats]}")
        print(f"rows per shard from the deferred jobs: {[item['rows'] for item in stats_deferred]}")
        print(f"total rows from the summarize job: {total_rows}")

    report(stats, stats_deferred, summary["total_rows"])
