"""Secret values never in a job's visible spec (issue 21, item 3), through ``airflow dags test`` against the
local Jobs server: a masked Variable passed to a ``@task.hf_job`` function as an argument, and put in an
operator's ``env``, travels as a job secret (the Jobs API shows its name only), never in the environment or
the script; the job still gets the value (it prints its digest)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests.integration.airflow_run import REPO, AirflowHome, make_airflow_home
from tests.integration.conftest import NAMESPACE, TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]
CANARY = "sk-masked-variable-canary-4c1d"


@pytest.fixture(scope="module")
def airflow_home(server, tmp_path_factory) -> AirflowHome:
    home = make_airflow_home(
        tmp_path_factory.mktemp("airflow-home"), server.url, TOKEN, REPO / "tests" / "dags"
    )
    home.env["AIRFLOW_VAR_HFJOBS_API_KEY"] = CANARY
    return home


def test_a_masked_variable_travels_as_a_job_secret_never_in_the_spec(airflow_home: AirflowHome, hook) -> None:
    result = airflow_home.dags_test("hfjobs_secret_args")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    digest = hashlib.sha256(CANARY.encode()).hexdigest()[:16]
    for suite, secret_name, printed in (
        ("secret-args", "HFJOBS_SECRET_ARG_1", f"argument digest {digest} shard plain-shard"),
        ("secret-env", "API_KEY", f"env digest {digest}"),
    ):
        (job,) = hook.list_jobs(labels={"suite": suite})
        raw = hook._send("GET", f"/api/jobs/{NAMESPACE}/{job.id}", action="inspect").content.decode()
        spec = json.loads(raw)
        assert CANARY not in raw, raw  # not in the environment, the command or anywhere of the spec
        assert secret_name in (spec.get("secrets") or []), spec
        script = (spec.get("environment") or {}).get("UV_SCRIPT_ENCODED")
        if script:
            assert CANARY not in base64.b64decode(script).decode()
            assert "plain-shard" in base64.b64decode(script).decode()  # an unmasked argument stays in it
        if suite == "secret-env":
            assert spec["environment"] == {"PLAIN": "visible", "HFJOBS_REPORTS": "1"}  # + the report helper's switch
        assert printed in list(hook.fetch_job_logs(job.id)), "the job did get the value"
