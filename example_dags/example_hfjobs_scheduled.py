"""Scheduled jobs: the Hub's own cron runs the job (even while Airflow is down); this DAG sets it up and
watches its runs.

``export_schedule`` creates the scheduled job the first time and brings the same one up to date on every
later run (found by its ``airflow-scheduled-task`` label: never a second one). ``wait_for_next_run`` waits
in the triggerer for the next run the Hub starts and shows that run's log lines; then ``run_now`` starts
one at once (``action="suspend"``/``"resume"`` pause it around a maintenance window, ``"delete"`` ends it).
The schedule is a param: ``airflow dags test hfjobs_scheduled -c '{"schedule": "* * * * *"}'`` runs it
every minute (the tests do that against the local Jobs server).
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.scheduled import HfScheduledJobActionOperator, HfScheduledJobOperator
from airflow_provider_hfjobs.sensors.hfjobs import HfJobSensor

EXPORT = """
import datetime
print(f"export started at {datetime.datetime.now(datetime.UTC):%H:%M:%S}")
print("exported 42 rows")
"""

with DAG(
    dag_id="hfjobs_scheduled",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"schedule": "0 3 * * *"},
    tags=["huggingface", "example", "scheduled"],
) as dag:
    # [START howto_operator_hf_scheduled_job]
    export_schedule = HfScheduledJobOperator(
        task_id="export_schedule",
        image="python:3.12",
        command=["python", "-c", EXPORT],
        schedule="{{ params.schedule }}",
        flavor="cpu-basic",
        timeout="10m",
        labels={"team": "data"},
    )
    # [END howto_operator_hf_scheduled_job]

    # [START howto_sensor_hf_scheduled_run]
    wait_for_next_run = HfJobSensor(
        task_id="wait_for_next_run",
        scheduled_job_id=export_schedule.output,
        run="next",
        stream_logs=True,
        deferrable=True,
        poke_interval=10,
        timeout=3600,
    )
    # [END howto_sensor_hf_scheduled_run]

    export_schedule >> wait_for_next_run

    run_now = HfScheduledJobActionOperator(
        task_id="run_now", scheduled_job_id=export_schedule.output, action="trigger"
    )
    wait_for_next_run >> run_now
