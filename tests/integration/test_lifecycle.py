"""A job the task started is cancelled however the task stops: here Ctrl-C to ``airflow dags test`` (SIGINT
to its process group, as a terminal sends it), on a worker and deferred, against the local Jobs server.
The cancel is verified: the output says the job was CANCELED, and the server agrees."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.airflow_run import AIRFLOW, REPO, AirflowHome, make_airflow_home
from tests.integration.conftest import TOKEN
from tests.integration.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]


@pytest.fixture(scope="module")
def airflow_home(server, tmp_path_factory) -> AirflowHome:
    return make_airflow_home(
        tmp_path_factory.mktemp("airflow-home"), server.url, TOKEN, REPO / "tests" / "dags"
    )


@pytest.mark.parametrize("mode", ["worker", "deferred"])
def test_ctrl_c_to_dags_test_cancels_the_job_and_says_so(
    mode: str, airflow_home: AirflowHome, hook, tmp_path: Path
) -> None:
    label = {"suite": f"interrupt-{mode}"}
    before = {job.id for job in hook.list_jobs(labels=label)}
    output = tmp_path / "dags-test.log"
    with output.open("w") as sink:
        process = subprocess.Popen(
            [AIRFLOW, "dags", "test", f"hfjobs_interrupt_{mode}"], env=airflow_home.env, cwd=airflow_home.path,
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:

        def running_job():
            jobs = [job for job in hook.list_jobs(labels=label) if job.id not in before]
            started = "interruptible job started" in output.read_text()
            return jobs[0] if jobs and jobs[0].stage.value == "RUNNING" and started else None

        job = wait_for(f"the {mode} task's job to run and print", running_job, timeout=180)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = output.read_text()
    assert process.returncode != 0, text[-3000:]
    assert wait_for("the job to be CANCELED", lambda: hook.inspect_job(job.id).stage.value == "CANCELED", 60)
    reason = (
        "the task was interrupted (Ctrl-C)"
        if mode == "worker"
        else "airflow dags test was interrupted (Ctrl-C)"
    )
    said = f"Cancelled Hugging Face job {job.id} ({reason}): CANCELED after "
    assert re.search(re.escape(said) + r"[\d.]+ s\.", text), text[-3000:]
