"""The labels by which the provider finds its own jobs again: a create's submission, a task instance's
job, a task's scheduled job.
"""

from __future__ import annotations

import uuid

from airflow_provider_hfjobs.jobs.validation import MAX_LABEL_LENGTH, _sanitize_name

#: Label carried by every job this provider creates, so that a create whose answer was lost can be found
#: instead of being sent twice (huggingface_hub issue #3972: intermittent 500 on create).
SUBMISSION_LABEL = "hfjobs-submission"


#: Label identifying the Airflow task instance (dag, task, run, map index) that created a job, so that a
#: retry finds the job of an earlier try instead of starting a second one.
TASK_INSTANCE_LABEL = "airflow-ti"


def task_instance_labels(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> dict[str, str]:
    """Deterministic labels for a task instance, within the API's label rules.

    ``airflow-ti`` is a uuid5 of the four parts (no try number: every try of the instance shares it);
    ``airflow-dag`` and ``airflow-task`` are readable, for filtering in the Hub UI.
    """
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"airflow-ti:{dag_id}\x00{task_id}\x00{run_id}\x00{map_index}").hex
    return {
        TASK_INSTANCE_LABEL: key,
        "airflow-dag": _sanitize_name(dag_id)[:MAX_LABEL_LENGTH],
        "airflow-task": _sanitize_name(task_id)[:MAX_LABEL_LENGTH],
    }


#: Label naming the Airflow task that manages a scheduled job: the same DAG and task find the same one.
SCHEDULED_TASK_LABEL = "airflow-scheduled-task"


def scheduled_task_labels(dag_id: str, task_id: str) -> dict[str, str]:
    """The labels a scheduled job managed by task ``task_id`` of ``dag_id`` carries: a uuid5 of the two
    (no run: every DAG run manages the same scheduled job), and readable ``airflow-dag``/``airflow-task``."""
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"airflow-scheduled-task:{dag_id}\x00{task_id}").hex
    return {
        SCHEDULED_TASK_LABEL: key,
        "airflow-dag": _sanitize_name(dag_id)[:MAX_LABEL_LENGTH],
        "airflow-task": _sanitize_name(task_id)[:MAX_LABEL_LENGTH],
    }
