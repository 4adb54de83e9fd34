"""Maintenance: every hour, list the Hugging Face jobs still billed although no task watches them any more
(a task that ran with ``wait_for_completion=False``, was marked success or failed, was cleared, or whose DAG
run was deleted). A dry run by default; trigger it with ``{"cancel": true}`` to cancel them, or set the
param's default to ``True`` once the list looks right.

Params (a run's conf overrides them): ``cancel``, ``min_age`` (only jobs older than that: ``"10m"``,
``"2h"``, seconds) and ``labels`` (only jobs carrying these labels too).
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.maintenance import HfOrphanJobsOperator

with DAG(
    dag_id="hfjobs_maintenance",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # "{{ params.cancel }}" renders the bool itself, "{{ params.labels }}" the dict.
    render_template_as_native_obj=True,
    params={"cancel": False, "min_age": "10m", "labels": {}},
    tags=["huggingface", "example", "maintenance"],
) as dag:
    # [START howto_operator_hf_orphan_jobs]
    HfOrphanJobsOperator(
        task_id="orphan_jobs",
        cancel="{{ params.cancel }}",
        min_age="{{ params.min_age }}",
        labels="{{ params.labels }}",
    )
    # [END howto_operator_hf_orphan_jobs]
