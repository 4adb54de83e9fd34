"""``HfJobLink``: the "Hugging Face Job" button on a task, from the ``job_url`` XCom.

The operator pushes ``job_url`` before it waits or defers, so the button works while the task is deferred.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

JOB_URL_XCOM_KEY = "job_url"
JOB_ID_XCOM_KEY = "job_id"


class HfJobLink(BaseOperatorLink):
    name = "Hugging Face Job"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The operator's own ``job_url`` when it ran in this process, else the XCom.

        Airflow 3 asks every link of a task when the task ends, on the worker, with the operator that ran:
        asking the API for an XCom that was never pushed (the task failed before any job existed, e.g. on
        bad input) logs an ERROR "XCom not found ... key='job_url'" under the task's real error. The
        operator knows: ``""`` once ``execute`` has started without a job. A resumed task (``execute_complete``)
        or the webserver of Airflow 2 (a deserialized operator) has no such value and reads the XCom.
        """
        known = getattr(operator, "job_url", None)
        if isinstance(known, str):
            return known
        return XCom.get_value(key=JOB_URL_XCOM_KEY, ti_key=ti_key) or ""
