"""Assets and OpenLineage of real jobs on the local Jobs server, through ``airflow dags test``
(``example_hfjobs_assets``): the written bucket and the reported model get their Asset events (Dataset
events on 2.11), with the job's id and URL, and queue the DAG scheduled on the bucket; a failed job emits
none; the OpenLineage provider's file transport receives the job's inputs, outputs and ``hfJob`` facet."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest
import requests

from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_PLUS
from tests.integration.airflow_run import AirflowHome, make_airflow_home
from tests.integration.conftest import NAMESPACE, TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]

EXPORTS = f"{NAMESPACE}/lineage-exports"
MODEL = f"{NAMESPACE}/lineage-model"
TEMPLATED = f"{NAMESPACE}/lineage-templated"  # a bucket no DAG declares: its asset is new when emitted
ASSET_TABLES = ("asset", "asset_event", "asset_id", "asset_dag_run_queue")
DATASET_TABLES = ("dataset", "dataset_event", "dataset_id", "dataset_dag_run_queue")

MORE_DAGS = f"""
import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

with DAG(dag_id="hfjobs_assets_failing", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    HfJobRunOperator(
        task_id="fails", image="python:3.12", command=["python", "-c", "raise SystemExit(3)"], retries=0,
        volumes=[{{"type": "bucket", "source": "{EXPORTS}", "mount_path": "/exports"}}],
    )

with DAG(
    dag_id="hfjobs_assets_templated", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={{"bucket": "{TEMPLATED}"}},
):
    HfJobRunOperator(
        task_id="writes", image="python:3.12", retries=0,
        command=["python", "-c", "open('/out/templated.txt', 'w').write('x')"],
        volumes=[{{"type": "bucket", "source": "{{{{ params.bucket }}}}", "mount_path": "/out"}}],
    )  # fmt: skip

    @task.hf_job(retries=0, volumes=[{{"type": "bucket", "source": "{{{{ params.bucket }}}}", "mount_path": "/out"}}])
    def writes_too() -> int:
        open("/out/function.txt", "w").write("y")
        return 1

    writes_too()

with DAG(dag_id="hfjobs_assets_reader", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    HfJobRunOperator(
        task_id="reads", image="python:3.12", retries=0,
        command=["python", "-c", "print('read', len(open('/exports/part-0.jsonl').readlines()), 'rows')"],
        volumes=[{{"type": "bucket", "source": "{EXPORTS}", "mount_path": "/exports", "read_only": True}}],
    )  # fmt: skip
"""


@pytest.fixture(scope="module")
def airflow_home(server, tmp_path_factory) -> AirflowHome:
    extra = tmp_path_factory.mktemp("lineage-dags")
    (extra / "hfjobs_assets_more.py").write_text(textwrap.dedent(MORE_DAGS))
    home = make_airflow_home(tmp_path_factory.mktemp("airflow-home"), server.url, TOKEN, extra)
    lineage = home.path / "openlineage"
    lineage.mkdir()
    home.env.update(
        HFJOBS_EXAMPLE_EXPORTS=EXPORTS,
        HFJOBS_EXAMPLE_MODEL=MODEL,
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(
            {"type": "file", "log_file_path": str(lineage / "events.jsonl"), "append": True}
        ),
        AIRFLOW__OPENLINEAGE__NAMESPACE="hfjobs-tests",
    )
    for bucket in (EXPORTS, TEMPLATED):
        created = requests.post(
            f"{server.url}/api/buckets/{bucket}",
            json={},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert created.status_code in (200, 409), created.text
    reserialized = home.run("dags", "reserialize")  # the consumer DAG in the DB, so that its queue fills
    assert reserialized.returncode == 0, reserialized.stderr[-3000:]
    unpaused = home.run("dags", "unpause", "hfjobs_assets_consumer")  # a paused DAG is queued no run
    assert unpaused.returncode == 0, output(unpaused)[-3000:]
    return home


def output(result) -> str:
    return result.stdout + result.stderr


def events(home: AirflowHome, dag_id: str) -> list[tuple[str, dict]]:
    """``(uri, extra)`` of each asset (dataset) event the DAG's tasks emitted, from the metadata DB."""
    table, event_table, key, _queue = ASSET_TABLES if AIRFLOW_V_3_PLUS else DATASET_TABLES
    with sqlite3.connect(home.path / "airflow.db") as db:
        rows = db.execute(
            f"SELECT a.uri, e.extra FROM {event_table} e JOIN {table} a ON a.id = e.{key} "
            "WHERE e.source_dag_id = ? ORDER BY e.id",
            (dag_id,),
        ).fetchall()
    return [(uri, json.loads(extra) if isinstance(extra, str) else extra) for uri, extra in rows]


def queued(home: AirflowHome, dag_id: str) -> list[str]:
    """The asset URIs a DAG's next run waits on that have an event (its ``*_dag_run_queue`` rows)."""
    table, _event_table, key, queue = ASSET_TABLES if AIRFLOW_V_3_PLUS else DATASET_TABLES
    with sqlite3.connect(home.path / "airflow.db") as db:
        rows = db.execute(
            f"SELECT a.uri FROM {queue} q JOIN {table} a ON a.id = q.{key} WHERE q.target_dag_id = ?",
            (dag_id,),
        ).fetchall()
    return [uri for (uri,) in rows]


def lineage_events(home: AirflowHome) -> list[dict]:
    path = home.path / "openlineage" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_completed_job_emits_its_written_bucket_and_reported_model(airflow_home: AirflowHome) -> None:
    result = airflow_home.dags_test("hfjobs_assets_producer")
    text = output(result)
    assert result.returncode == 0, text[-6000:]
    assert "wrote 3 rows to /exports/part-0.jsonl" in text, text[-6000:]
    emitted = dict(events(airflow_home, "hfjobs_assets_producer"))
    bucket, model = f"hf://buckets/{EXPORTS}", f"hf://models/{MODEL}"
    assert set(emitted) == {bucket, model}, emitted
    job_id = emitted[bucket]["hf_job_id"]
    assert emitted[bucket]["mount_path"] == "/exports" and emitted[bucket]["hf_job_url"].endswith(job_id)
    assert emitted[model] == {**emitted[model], "hf_job_id": job_id, "rows": 3}, emitted
    assert f"Asset events for job {job_id}: {bucket}, {model}" in text, text[-6000:]
    # The DAG scheduled on the bucket is queued to run (a scheduler starts it: tests/system).
    assert queued(airflow_home, "hfjobs_assets_consumer") == [bucket]


def test_a_bucket_known_only_at_run_time_gets_its_event_through_the_alias(airflow_home: AirflowHome) -> None:
    result = airflow_home.dags_test("hfjobs_assets_templated")
    assert result.returncode == 0, output(result)[-6000:]
    emitted = events(airflow_home, "hfjobs_assets_templated")
    assert [uri for uri, _ in emitted] == [f"hf://buckets/{TEMPLATED}"] * 2, emitted
    assert all(extra["mount_path"] == "/out" for _, extra in emitted)


def test_a_failed_job_emits_no_asset_event(airflow_home: AirflowHome) -> None:
    result = airflow_home.dags_test("hfjobs_assets_failing")
    assert "ERROR" in output(result) or result.returncode != 0
    assert events(airflow_home, "hfjobs_assets_failing") == []


def test_openlineage_events_carry_the_datasets_and_the_job_facet(airflow_home: AirflowHome) -> None:
    if not any(
        e.get("job", {}).get("name") == "hfjobs_assets_producer.export" for e in lineage_events(airflow_home)
    ):
        result = airflow_home.dags_test("hfjobs_assets_producer")
        assert result.returncode == 0, output(result)[-6000:]
    mine = [
        e
        for e in lineage_events(airflow_home)
        if e.get("job", {}).get("name") == "hfjobs_assets_producer.export"
    ]
    kinds = [e["eventType"] for e in mine]
    assert "START" in kinds and "COMPLETE" in kinds, kinds
    complete = [e for e in mine if e["eventType"] == "COMPLETE"][-1]
    outputs = {(d["namespace"], d["name"]) for d in complete["outputs"]}
    assert outputs == {("hf://buckets", EXPORTS), ("hf://models", MODEL)}, complete["outputs"]
    facet = complete["run"]["facets"]["hfJob"]
    assert facet["stage"] == "COMPLETED" and facet["image"] == "python:3.12", facet
    assert facet["jobUrl"].endswith(facet["jobId"]) and facet["flavor"], facet
    start = [e for e in mine if e["eventType"] == "START"][-1]
    assert {(d["namespace"], d["name"]) for d in start["outputs"]} == {("hf://buckets", EXPORTS)}
    # A read-only volume is an input, and no asset event.
    result = airflow_home.dags_test("hfjobs_assets_reader")
    assert result.returncode == 0 and "read 3 rows" in output(result), output(result)[-6000:]
    read = [
        e
        for e in lineage_events(airflow_home)
        if e.get("job", {}).get("name") == "hfjobs_assets_reader.reads"
    ]
    completed = [e for e in read if e["eventType"] == "COMPLETE"]
    assert completed and completed[-1]["outputs"] == [], read
    assert [(d["namespace"], d["name"]) for d in completed[-1]["inputs"]] == [("hf://buckets", EXPORTS)]
    assert events(airflow_home, "hfjobs_assets_reader") == []
    assert Path(airflow_home.path / "openlineage" / "events.jsonl").stat().st_size < 2_000_000
