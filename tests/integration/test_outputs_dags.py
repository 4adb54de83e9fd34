"""Outputs, inputs and checkpoints through ``airflow dags test`` on the local Jobs server: the manifest of
one task (paths, sizes, sha256) is mounted read-only by the next (``example_hfjobs_outputs``), and a training
killed after epoch 2 is retried by Airflow and resumes from epoch 3 (``example_hfjobs_resume``)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import requests

from airflow_provider_hfjobs.reports import REPORT_PREFIX
from tests.integration.airflow_run import AirflowHome, count, make_airflow_home
from tests.integration.conftest import NAMESPACE, TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]

ARTIFACTS = f"{NAMESPACE}/outputs-artifacts"
CHECKPOINTS = f"{NAMESPACE}/outputs-checkpoints"


@pytest.fixture(scope="module")
def airflow_home(server, tmp_path_factory) -> AirflowHome:
    for bucket in (ARTIFACTS, CHECKPOINTS):
        answer = requests.post(
            f"{server.url}/api/buckets/{bucket}", headers={"authorization": f"Bearer {TOKEN}"}, json={},
            timeout=30,
        )  # fmt: skip
        assert answer.status_code in (200, 409), answer.text
    home = make_airflow_home(tmp_path_factory.mktemp("airflow-home"), server.url, TOKEN)
    home.env.update(HFJOBS_EXAMPLE_ARTIFACTS=ARTIFACTS, HFJOBS_EXAMPLE_CHECKPOINTS=CHECKPOINTS)
    return home


def output(result) -> str:
    return result.stdout + result.stderr


def test_the_manifest_of_one_task_is_mounted_by_the_next(airflow_home: AirflowHome, server) -> None:
    result = airflow_home.dags_test("hfjobs_outputs")
    text = output(result)
    assert result.returncode == 0, text[-8000:]
    assert REPORT_PREFIX not in text, text[-8000:]
    manifest = json.loads(re.search(r"^MANIFEST=(.*)$", text, re.M).group(1))  # type: ignore[union-attr]
    entry = json.loads(re.search(r"^ENTRY=(.*)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert manifest["type"] == "hf_job_outputs" and manifest["bucket"] == ARTIFACTS
    # <dag>/<run>/<task>/<map_index>/<try>, the run id escaped (':' and '+' are %XX)
    dag, run, task_id, map_index, try_number = manifest["prefix"].split("/")
    assert (dag, task_id, map_index, try_number) == ("hfjobs_outputs", "export", "-1", "1"), manifest
    assert ":" not in run and "+" not in run, run
    folder = Path(server.state_dir) / "buckets" / ARTIFACTS / manifest["prefix"]
    files = {item["path"]: item for item in manifest["files"]}
    assert set(files) == {"part-0.jsonl", "stats.json"}, manifest
    for path, item in files.items():
        data = (folder / path).read_bytes()
        assert item["size"] == len(data) and item["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry == {**files["part-0.jsonl"], "uri": f"{manifest['uri']}/part-0.jsonl"}
    # count mounted it read-only at /inputs and verified each sha256 against the manifest
    assert "part-0.jsonl: 3 rows, sha256 verified" in text and "stats.json: 1 rows, sha256 verified" in text
    assert count(text, "Output: part-0.jsonl") == 1, text[-8000:]


def test_a_killed_training_resumes_from_its_checkpoint(airflow_home: AirflowHome) -> None:
    result = airflow_home.dags_test("hfjobs_resume")
    text = output(result)
    assert result.returncode == 0, text[-8000:]
    first, _, retry = text.partition("Try 2 resumes from checkpoint folder")
    assert "starting from epoch 1" in first and "epoch 2 done" in first, text[-8000:]
    assert "simulated crash after epoch 2" in first, text[-8000:]
    assert "resuming from epoch 3 (checkpoint /checkpoints/epoch-2.json)" in retry, text[-8000:]
    assert "epoch 1 done" not in retry and "epoch 5 done: loss 0.0312" in retry, text[-8000:]
