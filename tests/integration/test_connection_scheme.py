"""No "Connection schemes (type: hf_jobs) shall not contain '_' according to RFC3986" warning in a normal run:
``airflow dags test`` of the quickstart (a worker task and a deferred one), with the connection in the metadata
DB (where Airflow 3 warned, from its execution API's lookup) and in a JSON ``AIRFLOW_CONN_`` variable (where
Airflow 2.11 warned, from the hook's lookup), and ``airflow connections get``, which prints its URI."""

from __future__ import annotations

import pytest

from tests.integration.airflow_run import make_airflow_home
from tests.integration.conftest import TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]

WARNING = "shall not contain '_' according to RFC3986"


@pytest.mark.parametrize("stored", ["metadata-db", "environment-json"])
def test_a_dags_test_logs_no_rfc3986_warning(server, tmp_path, stored: str) -> None:
    home = make_airflow_home(tmp_path, server.url, TOKEN)
    if stored == "metadata-db":
        home.env.pop("AIRFLOW_CONN_HF_DEFAULT")
        added = home.run(
            "connections", "add", "hf_default", "--conn-type", "hf_jobs", "--conn-host", server.url,
            "--conn-password", TOKEN, fresh=True,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr[-3000:]
        shown = home.run("connections", "get", "hf_default", "--output", "json", fresh=True)
        assert shown.returncode == 0 and "hf-jobs://" in shown.stdout, shown.stderr[-3000:]
        assert WARNING not in shown.stdout + shown.stderr
    result = home.dags_test("hfjobs_quickstart", fresh=True)  # a warning at start-up would be in its output
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-5000:]
    assert "Hello from the cloud!" in text
    assert WARNING not in text, [line for line in text.splitlines() if WARNING in line]
