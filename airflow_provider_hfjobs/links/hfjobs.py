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
        return XCom.get_value(key=JOB_URL_XCOM_KEY, ti_key=ti_key) or ""
