"""Test DAG: the worker is lost right after submitting (try 1); the retry must re-attach, not resubmit."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

WORK = "import time\nfor i in range(4):\n    print(f'working {i}', flush=True)\n    time.sleep(0.5)"


class LosesWorkerOnFirstTry(HfJobRunOperator):
    """Fails between submitting and watching on its first try, as a crashed worker would."""

    def _follow(self, context, job):
        if context["ti"].try_number == 1:
            raise RuntimeError(f"worker lost after submitting job {job.id}")
        return super()._follow(context, job)


with DAG(dag_id="hfjobs_retry", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    LosesWorkerOnFirstTry(
        task_id="train", image="python:3.12", command=["python", "-c", WORK], retries=1,
        retry_delay=timedelta(seconds=0), labels={"suite": "retry"},
    )  # fmt: skip
