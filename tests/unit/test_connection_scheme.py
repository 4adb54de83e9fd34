"""Airflow's "Connection schemes (type: hf_jobs) shall not contain '_' according to RFC3986" warning is kept out
of the logs (airflow_provider_hfjobs/_connection_scheme.py), and only for ``hf_jobs``: another type with a
``_`` still gets it. Each case runs in a fresh interpreter, Airflow imported before or after the provider."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
{first}
from airflow.models.connection import Connection
ours = Connection(conn_id="hf_x", conn_type="hf_jobs", host="https://hub.example", password="hf_secret_token")
other = Connection(conn_id="other_x", conn_type="other_type", host="https://other.example")
print("HFJOBS-URI " + ours.get_uri(), flush=True)
print("OTHER-URI " + other.get_uri(), flush=True)
"""


@pytest.mark.parametrize(
    "first",
    ["import airflow_provider_hfjobs", "import airflow; import airflow_provider_hfjobs"],
    ids=["provider-first", "airflow-first"],
)
def test_no_rfc3986_warning_for_hf_jobs_and_the_uri_is_unchanged(first: str, tmp_path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "HFJOBS-URI hf-jobs://" in output, output[-3000:]
    assert "(type: hf_jobs) shall not contain '_'" not in output, output[-3000:]
    # The check can see the warning: Airflow still says it of another type.
    assert "(type: other_type) shall not contain '_'" in output, output[-3000:]


def test_the_filter_drops_only_that_record() -> None:
    import logging

    from airflow_provider_hfjobs._connection_scheme import _MESSAGE, _SchemeWarningFilter

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord(
            "airflow.models.connection.Connection", logging.WARNING, "", 0, msg, args, None
        )

    keep = _SchemeWarningFilter().filter
    assert not keep(record(_MESSAGE, "hf_jobs"))
    assert keep(record(_MESSAGE, "google_cloud_platform"))
    assert keep(record("Connection %s is broken", "hf_jobs"))
