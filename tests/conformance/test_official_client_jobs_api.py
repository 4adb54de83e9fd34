"""The official ``huggingface_hub`` 2.4 client, unchanged, drives the rest of the job API on the local
server: every ``run_job`` argument (attempts, volumes, expose, ssh, networks, resource groups), metrics,
rerun, label and expose updates, and the bucket calls ``hf jobs`` makes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, Volume
from huggingface_hub.errors import HfHubHTTPError

from airflow_provider_hfjobs.local import LocalJobsServer

pytestmark = [pytest.mark.conformance, pytest.mark.airflow_free]

TOKEN = "hf_conformance_api_token"
NS = "conf-api"
METRIC_KEYS = {
    "cpu_usage_pct", "cpu_millicores", "memory_used_bytes", "memory_total_bytes", "rx_bps", "tx_bps",
    "gpus", "replica",
}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalJobsServer]:
    sources = tmp_path_factory.mktemp("sources")
    (sources / "datasets" / NS / "rows").mkdir(parents=True)
    (sources / "datasets" / NS / "rows" / "rows.csv").write_text("a,b\n1,2\n")
    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=6, volume_source_dir=str(sources)) as srv:
        yield srv


@pytest.fixture(scope="module")
def api(server: LocalJobsServer) -> HfApi:
    return HfApi(endpoint=server.url, token=TOKEN)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gated(gate: Path, *before: str) -> list[str]:
    """A job that runs ``before`` (Python statements), then waits for ``gate`` to exist."""
    code = "\n".join(
        ["import os, time", *before, f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)"]
    )
    return ["python", "-c", code]


def running(api: HfApi, job_id: str) -> None:
    (job,) = api.wait_for_job(job_id=[job_id], namespace=NS, timeout=60, stages=["RUNNING"])
    assert job.status.stage == "RUNNING", job.status


def test_run_job_with_every_argument(api: HfApi) -> None:
    api.create_bucket(f"{NS}/outputs", exist_ok=True)
    public, private = free_port(), free_port()
    job = api.run_job(
        image="python:3.12",
        command=[
            "python",
            "-c",
            "import os; print(open('/rows/rows.csv').read().split()); open('/out/done', 'w')",
        ],
        env={"MODE": "all"},
        secrets={"TOKEN_FOR_JOB": "s3cr3t"},
        flavor="cpu-upgrade",
        timeout="5m",
        attempts=2,
        name="every-argument",
        labels={"suite": "conformance"},
        volumes=[
            Volume(type="dataset", source=f"{NS}/rows", mount_path="/rows"),
            Volume(type="bucket", source=f"{NS}/outputs", mount_path="/out"),
        ],
        expose=[private],
        expose_public=[public],
        ssh=True,
        network_group="train",
        network_aliases=["master"],
        resource_group_id="66670e5163145ca562cb1988",
        namespace=NS,
    )
    assert job.retry == 1 and job.labels == {"suite": "conformance", "name": "every-argument"}
    assert [(v.type, v.source, v.mount_path, v.read_only) for v in job.volumes] == [
        ("dataset", f"{NS}/rows", "/rows", True),
        ("bucket", f"{NS}/outputs", "/out", False),
    ]
    assert job.expose == [private, public] and job.expose_public == [public]
    assert job.status.expose_urls == [f"http://127.0.0.1:{port}" for port in (private, public)]
    assert job.status.ssh_url is None and "ssh" in job.status.message
    assert (job.network.group, job.network.aliases) == ("train", ["master"])
    assert job.initiator.type == "user" and job.initiator.name == NS
    final = api.wait_for_job(job_id=job.id, namespace=NS, timeout=60)
    assert final.status.stage == "COMPLETED", final.status
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS)) == ["['a,b', '1,2']"]
    assert api.bucket_info(f"{NS}/outputs").total_files == 1


def test_attempts_run_a_failed_job_again(api: HfApi, tmp_path: Path) -> None:
    count = str(tmp_path / "count")
    code = "\n".join(
        [
            f"open({count!r}, 'a').write('x')",
            f"n = len(open({count!r}).read())",
            "print('attempt', n)",
            "raise SystemExit(n < 2)",
        ]
    )
    job = api.run_job(image="python:3.12", command=["python", "-c", code], attempts=3, namespace=NS)
    assert job.retry == 2
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS, follow=True)) == ["attempt 1", "attempt 2"]
    assert api.wait_for_job(job_id=job.id, namespace=NS, timeout=60).status.stage == "COMPLETED"


def test_fetch_job_metrics(api: HfApi, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job = api.run_job(image="python:3.12", command=gated(gate, "x = b'x' * (32 << 20)"), namespace=NS)
    running(api, job.id)
    (snapshot,) = list(api.fetch_job_metrics(job_id=job.id, namespace=NS))
    assert set(snapshot) == METRIC_KEYS and snapshot["gpus"] == {}
    followed = []
    for sample in api.fetch_job_metrics(job_id=job.id, namespace=NS, follow=True):
        followed.append(sample)
        if len(followed) == 2:
            gate.touch()  # the job ends, so does the stream: the loop ends by itself
    assert len(followed) >= 2 and all(set(sample) == METRIC_KEYS for sample in followed)
    assert max(sample["memory_used_bytes"] for sample in followed) > 32 << 20
    assert api.wait_for_job(job_id=job.id, namespace=NS).status.stage == "COMPLETED"
    assert list(api.fetch_job_metrics(job_id=job.id, namespace=NS)) == []  # 406 once finished: tolerated


def test_rerun_job(api: HfApi) -> None:
    job = api.run_job(
        image="python:3.12", command=["python", "-c", "print('again')"], labels={"r": "1"}, namespace=NS
    )
    api.wait_for_job(job_id=job.id, namespace=NS, timeout=60)
    rerun = api.rerun_job(job_id=job.id, namespace=NS)
    assert rerun.id != job.id and (rerun.initiator.type, rerun.initiator.id) == ("duplicated-job", job.id)
    assert rerun.command == job.command and rerun.labels == job.labels
    assert api.wait_for_job(job_id=rerun.id, namespace=NS, timeout=60).status.stage == "COMPLETED"
    assert list(api.fetch_job_logs(job_id=rerun.id, namespace=NS)) == ["again"]


def test_update_job_labels_and_expose(api: HfApi, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job = api.run_job(image="python:3.12", command=gated(gate), labels={"a": "1"}, namespace=NS)
    try:
        assert api.update_job_labels(job_id=job.id, labels={"b": "2"}, namespace=NS).labels == {"b": "2"}
        port = free_port()
        exposed = api.update_job_expose(job_id=job.id, expose_public=[port], namespace=NS)
        assert (exposed.expose, exposed.expose_public) == ([port], [port])
        assert exposed.status.expose_urls == [f"http://127.0.0.1:{port}"]
        closed = api.update_job_expose(job_id=job.id, namespace=NS)
        assert closed.expose is None and closed.status.expose_urls is None
    finally:
        gate.touch()
    api.wait_for_job(job_id=job.id, namespace=NS, timeout=60)
    with pytest.raises(HfHubHTTPError) as info:
        api.update_job_expose(job_id=job.id, expose=[8000], namespace=NS)
    assert info.value.response.status_code == 409


def test_fields_the_server_cannot_honour_are_refused(api: HfApi) -> None:
    before = len(list(api.list_jobs(namespace=NS)))
    with pytest.raises(HfHubHTTPError, match="not-there") as info:
        api.run_job(
            image="python:3.12",
            command=["true"],
            volumes=[Volume(type="bucket", source=f"{NS}/not-there", mount_path="/x")],
            namespace=NS,
        )
    assert info.value.response.status_code == 404
    with pytest.raises(HfHubHTTPError, match="revision") as info:
        api.run_job(
            image="python:3.12",
            command=["true"],
            volumes=[Volume(type="dataset", source=f"{NS}/rows", mount_path="/rows", revision="refs/pr/1")],
            namespace=NS,
        )
    assert info.value.response.status_code == 422
    assert len(list(api.list_jobs(namespace=NS))) == before


def test_buckets_and_the_uv_upload_that_is_not_served(api: HfApi, tmp_path: Path) -> None:
    url = api.create_bucket("scratch", private=True)  # the "me" namespace
    assert url.bucket_id == f"{NS}/scratch" and url.url.endswith(f"/buckets/{NS}/scratch")
    assert api.create_bucket(f"{NS}/scratch", exist_ok=True).bucket_id == f"{NS}/scratch"
    with pytest.raises(HfHubHTTPError) as info:
        api.create_bucket(f"{NS}/scratch")
    assert info.value.response.status_code == 409
    info_ = api.bucket_info(f"{NS}/scratch")
    assert info_.private is True and (info_.size, info_.total_files) == (0, 0)
    assert f"{NS}/scratch" in {bucket.id for bucket in api.list_buckets(namespace=NS)}

    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    before = len(list(api.list_jobs(namespace=NS)))
    started = time.monotonic()
    with pytest.raises(Exception, match=r"501.*xet-write-token"):
        api.run_uv_job(str(script), namespace=NS)
    assert time.monotonic() - started < 30  # at once, not after retries
    assert len(list(api.list_jobs(namespace=NS))) == before
