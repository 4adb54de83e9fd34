"""Every example DAG, run for real with ``airflow dags test`` against the local Jobs server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_3_PLUS
from tests.integration.airflow_run import REPO, AirflowHome, count, make_airflow_home
from tests.integration.conftest import NAMESPACE, TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]


@pytest.fixture(scope="module")
def airflow_home(server, tmp_path_factory) -> AirflowHome:
    return make_airflow_home(
        tmp_path_factory.mktemp("airflow-home"), server.url, TOKEN, REPO / "tests" / "dags"
    )


def output(result) -> str:
    return result.stdout + result.stderr


def test_example_dags_parse_without_import_errors(airflow_home: AirflowHome) -> None:
    reserialized = airflow_home.run("dags", "reserialize")
    assert reserialized.returncode == 0, output(reserialized)
    result = airflow_home.run("dags", "list-import-errors", "--output", "json")
    assert result.returncode == 0, output(result)
    last_line = (result.stdout.strip().splitlines() or [""])[-1]  # 2.11 prints log lines before the JSON
    assert last_line in ("[]", "", "No data found"), result.stdout
    listed = airflow_home.run("dags", "list", "--output", "json")
    for dag_id in (
        "hfjobs_quickstart",
        "hfjobs_nightly_training",
        "hfjobs_data_pipeline",
        "hfjobs_fanout",
        "hfjobs_sensor",
        "hfjobs_scheduled",
        "hfjobs_function",
    ):
        assert dag_id in listed.stdout


def test_quickstart_shows_each_job_line_once_sync_and_deferred(airflow_home: AirflowHome) -> None:
    result = airflow_home.dags_test("hfjobs_quickstart")
    text = output(result)
    assert result.returncode == 0, text[-5000:]
    # One job per task (sync, then deferred), each line exactly once per task.
    assert count(text, "Hello from the cloud!") == 2, text[-5000:]
    for step in (1, 2, 3):
        assert count(text, f"step {step}/3 running on") == 2
    assert "[DAG TEST] running trigger in line" in text or "Pausing task as DEFERRED" in text
    assert len(set(re.findall(r"Hugging Face job ([0-9a-f]{24}): http", text))) == 2
    assert count(text, "COMPLETED on cpu-basic") == 2


def test_a_connection_stored_in_the_metadata_db_serves_deferred_tasks_too(server, tmp_path) -> None:
    """The README's `airflow connections add` set-up, no AIRFLOW_CONN_ variable: the deferred task's trigger
    (run in-process by `dags test`) must find the stored connection as the worker task does."""
    home = make_airflow_home(tmp_path, server.url, TOKEN)
    home.env.pop("AIRFLOW_CONN_HF_DEFAULT")
    added = home.run(
        "connections", "add", "hf_default", "--conn-type", "hf_jobs", "--conn-host", server.url,
        "--conn-password", TOKEN, "--conn-extra", json.dumps({"namespace": NAMESPACE}),
    )  # fmt: skip
    assert added.returncode == 0, output(added)
    result = home.dags_test("hfjobs_quickstart")
    text = output(result)
    assert result.returncode == 0, text[-5000:]
    assert count(text, "Hello from the cloud!") == 2 and "ended unwatched" not in text


def test_nightly_training_checkpoints_to_a_bucket_the_evaluation_reads(
    airflow_home: AirflowHome, server
) -> None:
    """A dataset volume in, a bucket volume out, attempts=2 and the metrics summary (deferred); the
    evaluation (on a worker) reads the checkpoint back through the same bucket."""
    created = requests.post(
        f"{server.url}/api/buckets/{NAMESPACE}/nightly-checkpoints", json={},
        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
    )  # fmt: skip
    assert created.status_code in (200, 409), created.text
    conf = {"dataset": f"{NAMESPACE}/corpus", "checkpoints": f"{NAMESPACE}/nightly-checkpoints"}
    result = airflow_home.run("dags", "test", "hfjobs_nightly_training", "-c", json.dumps(conf), timeout=300)
    text = output(result)
    assert result.returncode == 0, text[-5000:]
    assert count(text, "dataset at /data: 3 files") == 1, text[-5000:]
    assert count(text, "epoch 3/3") == 1
    assert count(text, "HF token available: True") == 1
    assert count(text, "COMPLETED on a10g-small") == 1
    assert count(text, "used: ") >= 1, text[-5000:]  # the metrics summary of the GPU-flavor task
    assert re.search(r"loaded checkpoint /checkpoints/\d{8}: epoch 3, loss=", text), text[-5000:]
    checkpoints = list(
        (Path(server.state_dir) / "buckets" / NAMESPACE / "nightly-checkpoints").glob("*/state.json")
    )
    assert len(checkpoints) == 1


def test_pipeline_gpu_step_between_cpu_steps(airflow_home: AirflowHome) -> None:
    result = airflow_home.dags_test("hfjobs_data_pipeline")
    text = output(result)
    assert result.returncode == 0, text[-5000:]
    for line in (
        "prepared 100 rows",
        "embedding HuggingFaceFW/fineweb-edu in batches of 64",
        "published embeddings",
    ):
        assert count(text, line) == 1, line


def test_fanout_maps_one_job_per_shard(airflow_home: AirflowHome) -> None:
    result = airflow_home.dags_test("hfjobs_fanout")
    text = output(result)
    assert result.returncode == 0, text[-5000:]
    for shard in ("00", "01", "02", "03"):
        assert count(text, f"scored shard {shard}") == 1
    assert count(text, "merged 4 shards") == 1


def test_sensor_watches_a_job_submitted_by_another_task(airflow_home: AirflowHome) -> None:
    result = airflow_home.dags_test("hfjobs_sensor")
    text = output(result)
    assert result.returncode == 0, text[-5000:]
    for i in range(3):
        assert count(text, f"evaluating {i}") == 1


def test_failing_job_fails_its_task_with_url_and_log_tail(airflow_home: AirflowHome, server) -> None:
    result = airflow_home.dags_test("hfjobs_failing")
    text = output(result)
    assert result.returncode != 0
    assert "DagRun failed" in text
    # Both tasks fail with the stage, the message, the URL and the log tail.
    assert len(set(re.findall(r"job ([0-9a-f]{24}) ended ERROR: exit code 1", text))) == 2, text[-5000:]
    assert count(text, "Pausing task as DEFERRED") + count(text, "running trigger in line") >= 1
    assert f"{server.url}/jobs/alice/" in text
    assert "Last 2 log lines:" in text and "bad shard 7" in text


def test_retry_reattaches_to_the_live_job_instead_of_starting_another(
    airflow_home: AirflowHome, server
) -> None:
    from huggingface_hub import HfApi

    result = airflow_home.dags_test("hfjobs_retry")
    text = output(result)
    assert result.returncode == 0, text[-5000:]
    assert count(text, "worker lost after submitting job") >= 1
    assert count(text, "Re-attaching to Hugging Face job") == 1
    # Airflow 3.3 remembers the job in task_state_store (one inspect); 2.11 finds it by its label.
    how = "remembered in task_state_store" if AIRFLOW_V_3_3_PLUS else "found by its airflow-ti label"
    assert count(text, f"started by an earlier try ({how})") == 1, text[-5000:]
    jobs = list(
        HfApi(endpoint=server.url, token=TOKEN).list_jobs(labels={"suite": "retry"}, namespace="alice")
    )
    assert len(jobs) == 1 and jobs[0].status.stage == "COMPLETED"


CANARY_SECRET = "canary-secret-7Qf3xZ"


def test_no_token_or_secret_leaks_anywhere(airflow_home: AirflowHome) -> None:
    """A canary token (the connection password) and a canary secret (a Variable rendered into ``secrets``)
    go through jobs on a worker, deferred, and failing. Then: not in the task/trigger output, not in the
    metadata DB file (XCom, rendered fields, trigger kwargs, task instances), not in any log file."""
    airflow_home.env["AIRFLOW_VAR_CANARY_SECRET"] = CANARY_SECRET
    try:
        result = airflow_home.dags_test("hfjobs_canary")
    finally:
        del airflow_home.env["AIRFLOW_VAR_CANARY_SECRET"]
    text = output(result)
    assert result.returncode != 0  # fails_with_secret fails, on purpose
    assert count(text, f"key length {len(CANARY_SECRET)}") >= 3  # the jobs did get the secret
    assert "ended ERROR: exit code 2" in text
    haystacks = {"task output": text.encode()}
    for path in airflow_home.path.rglob("*"):
        if path.is_file() and (path.suffix in (".db", ".log", ".json") or "logs" in path.parts):
            haystacks[str(path)] = path.read_bytes()
    assert any(name.endswith("airflow.db") for name in haystacks)
    for canary in (TOKEN, CANARY_SECRET):
        leaks = [name for name, data in haystacks.items() if canary.encode() in data]
        assert leaks == [], f"{canary[:6]}... found in {leaks}"
