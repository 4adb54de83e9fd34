"""Test DAG: a masked Variable (its name holds ``api_key``, so Airflow masks it) given to a ``@task.hf_job``
function as an argument and to an ``HfJobRunOperator`` in ``env``: both must travel as job secrets, never in
the job's visible spec (environment, script)."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

DIGEST = (
    "import hashlib, os\nprint('env digest', hashlib.sha256(os.environ['API_KEY'].encode()).hexdigest()[:16])"
)

with DAG(
    dag_id="hfjobs_secret_args", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
) as dag:  # fmt: skip

    @task.hf_job(labels={"suite": "secret-args"}, poll_interval=1)
    def uses_key(api_key: str, shard: str) -> str:
        import hashlib

        digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        print("argument digest", digest, "shard", shard, flush=True)
        return digest

    uses_key("{{ var.value.hfjobs_api_key }}", "plain-shard")
    HfJobRunOperator(
        task_id="env_key", image="python:3.12", command=["python", "-c", DIGEST], poll_interval=1,
        env={"API_KEY": "{{ var.value.hfjobs_api_key }}", "PLAIN": "visible"}, labels={"suite": "secret-env"},
    )  # fmt: skip
