"""The asset rule (:mod:`airflow_provider_hfjobs.assets`) and the operators' inlets, outlets and events
(:mod:`airflow_provider_hfjobs.operators.lineage`); the events of real jobs: tests/integration/test_lineage_dags.py."""

from __future__ import annotations

import logging
from typing import Any

import pendulum
import pytest
from airflow.providers.common.compat.sdk import DAG, Asset, AssetAlias

from airflow_provider_hfjobs.assets import alias_name, job_assets, openlineage_name, volume_assets, volume_uri
from airflow_provider_hfjobs.jobs import JobInfo, Volume
from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator
from airflow_provider_hfjobs.reports import ReportLog, format_report_line

BUCKET = {"type": "bucket", "source": "alice/ckpts", "mount_path": "/ckpts", "path": "nightly"}
DATASET = {"type": "dataset", "source": "alice/corpus", "mount_path": "/data"}


def test_each_volume_type_names_its_bucket_or_repo() -> None:
    assert volume_uri(Volume(type="bucket", source="alice/ckpts", mount_path="/c", path="x/y")) == (
        "hf://buckets/alice/ckpts"
    )
    assert (
        volume_uri(Volume(type="model", source="openai/whisper", mount_path="/m"))
        == "hf://models/openai/whisper"
    )
    assert (
        volume_uri(Volume(type="dataset", source="alice/corpus", mount_path="/d"))
        == "hf://datasets/alice/corpus"
    )
    assert volume_uri(Volume(type="space", source="alice/app", mount_path="/s")) == "hf://spaces/alice/app"


def test_written_buckets_are_outputs_read_only_volumes_inputs_and_the_uv_upload_bucket_neither() -> None:
    volumes = [
        Volume(type="bucket", source="alice/ckpts", mount_path="/ckpts", path="nightly"),
        Volume(type="bucket", source="alice/ref", mount_path="/ref", read_only=True),
        Volume(type="model", source="openai/whisper", mount_path="/model"),  # the Hub mounts repos read-only
        Volume(
            type="bucket", source="alice/jobs-artifacts", mount_path="/data", path="20260101T000000-abcdef"
        ),
    ]
    assets = volume_assets(volumes)
    assert assets.uris == (
        ["hf://buckets/alice/ref", "hf://models/openai/whisper"],
        ["hf://buckets/alice/ckpts"],
    )
    assert dict(assets.outputs[0].extra) == {"mount_path": "/ckpts", "path": "nightly"}


def test_reported_assets_are_outputs_with_their_metadata_once_each() -> None:
    volumes = [Volume(type="bucket", source="alice/ckpts", mount_path="/ckpts")]
    reported = [
        {"uri": "hf://buckets/alice/ckpts", "metadata": {"epoch": 3}},
        {"uri": "hf://models/alice/llm", "metadata": {"rows": 10}},
        {"uri": ""},
        {"metadata": {"no": "uri"}},
    ]
    assets = job_assets(volumes, reported, {"hf_job_id": "j1"})
    assert [(ref.uri, dict(ref.extra)) for ref in assets.outputs] == [
        ("hf://buckets/alice/ckpts", {"hf_job_id": "j1", "mount_path": "/ckpts", "epoch": 3}),
        ("hf://models/alice/llm", {"hf_job_id": "j1", "rows": 10}),
    ]


def test_openlineage_names_follow_the_namespace_and_name_convention() -> None:
    assert openlineage_name("hf://buckets/alice/ckpts") == ("hf://buckets", "alice/ckpts")
    assert openlineage_name("s3://bucket/key/part-0") == ("s3://bucket", "key/part-0")
    assert openlineage_name("/checkpoints/model.safetensors") == ("hf", "/checkpoints/model.safetensors")
    assert alias_name("nightly", "train") == "hfjobs:nightly.train" and alias_name(None, "t") == "hfjobs:t"


def _operator(**kwargs: Any) -> HfJobRunOperator:
    with DAG("assets_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        return HfJobRunOperator(task_id="t", image="python:3.12", command=["true"], **kwargs)


def test_literal_volumes_are_declared_as_inlets_and_outlets_beside_the_users_own() -> None:
    mine = Asset("s3://elsewhere/table")
    op = _operator(volumes=[BUCKET, DATASET], outlets=[mine])
    assert [a.uri for a in op.inlets] == ["hf://datasets/alice/corpus"]
    assert op.outlets[:2] == [mine, Asset("hf://buckets/alice/ckpts")]
    assert op.outlets[2] == AssetAlias(name="hfjobs:assets_dag.t")


def test_templated_volumes_a_task_not_waiting_and_emit_assets_off() -> None:
    templated = _operator(volumes="{{ params.volumes }}")
    assert templated.inlets == [] and templated.outlets == [AssetAlias(name="hfjobs:assets_dag.t")]
    not_waiting = _operator(volumes=[BUCKET, DATASET], wait_for_completion=False)
    assert [a.uri for a in not_waiting.inlets] == ["hf://datasets/alice/corpus"]
    assert not any(isinstance(outlet, Asset) for outlet in not_waiting.outlets)  # it ends before any write
    off = _operator(volumes=[BUCKET, DATASET], emit_assets=False)
    assert off.inlets == [] and off.outlets == []


class _Accessor:
    def __init__(self) -> None:
        self.extra: dict[str, Any] = {}
        self.added: list[tuple[str, dict[str, Any]]] = []

    def add(self, asset: Any, extra: dict[str, Any] | None = None) -> None:
        self.added.append((asset.uri, dict(extra or {})))


class _OutletEvents(dict):
    def __missing__(self, key: Any) -> _Accessor:
        self[key] = _Accessor()
        return self[key]


def _job(stage: str = "COMPLETED") -> JobInfo:
    return JobInfo.from_api({
        "id": "j1", "owner": {"name": "alice"}, "status": {"stage": stage}, "dockerImage": "python:3.12",
        "flavor": "cpu-basic", "volumes": [{"type": "bucket", "source": "alice/ckpts", "mountPath": "/ckpts"}],
    }, endpoint="https://huggingface.co")  # fmt: skip


def test_a_completed_job_gives_declared_outlets_their_extra_and_the_rest_goes_through_the_alias(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    op = _operator(volumes=[BUCKET])
    op._reports = ReportLog("j1")
    for uri in ("hf://models/alice/llm", "airflow://reserved"):
        op._reports.feed(format_report_line({"kind": "asset", "uri": uri, "metadata": {"rows": 1}}))
    events = _OutletEvents()
    with caplog.at_level(logging.INFO):
        op._record_lineage({"outlet_events": events}, _job(), {})
    declared = events[Asset("hf://buckets/alice/ckpts")]
    assert declared.extra["hf_job_id"] == "j1" and declared.extra["mount_path"] == "/ckpts"
    alias = events[AssetAlias(name="hfjobs:assets_dag.t")]
    assert alias.added == [("hf://models/alice/llm", {**alias.added[0][1], "rows": 1, "hf_job_id": "j1"})]
    logged = caplog.text + capsys.readouterr().out  # Airflow 3 logs through structlog to stdout
    assert "Asset events for job j1: hf://buckets/alice/ckpts, hf://models/alice/llm" in logged
    assert "Not Airflow assets, so no event: airflow://reserved" in logged


def test_a_failed_job_gives_no_event_but_its_lineage_is_kept() -> None:
    op = _operator(volumes=[BUCKET])
    events = _OutletEvents()
    op._record_lineage({"outlet_events": events}, _job("ERROR"), {"cost_usd": 0.01})
    assert events == {}
    lineage = op.get_openlineage_facets_on_failure(None)
    facet = lineage.run_facets["hfJob"]
    assert facet.stage == "ERROR" and facet.costUsd == 0.01 and facet.jobId == "j1"
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("hf://buckets", "alice/ckpts")]


def test_a_reported_path_in_a_written_bucket_is_a_file_of_its_event_and_any_other_path_no_asset() -> None:
    volumes = [
        Volume(type="bucket", source="alice/ckpts", mount_path="/ckpts", path="nightly/"),
        Volume(type="bucket", source="alice/ckpts-best", mount_path="/ckpts/best"),
        Volume(type="bucket", source="alice/ref", mount_path="/ref", read_only=True),
    ]
    reported = [
        {"uri": "/ckpts/epoch-3/model.safetensors", "metadata": {"epoch": 3}},
        {"uri": "/ckpts/best/model.safetensors"},
        {"uri": "/ref/table.parquet"},
        {"uri": "/tmp/scratch.bin"},
        {"uri": "/ckpts-other/x"},
    ]
    assets = job_assets(volumes, reported)
    assert [(ref.uri, ref.extra.get("files")) for ref in assets.outputs] == [
        (
            "hf://buckets/alice/ckpts",
            [{"path": "nightly/epoch-3/model.safetensors", "metadata": {"epoch": 3}}],
        ),
        ("hf://buckets/alice/ckpts-best", [{"path": "model.safetensors"}]),  # the longest mount holds it
    ]
    assert assets.local == ("/ref/table.parquet", "/tmp/scratch.bin", "/ckpts-other/x")
