"""The official ``hf jobs`` CLI (huggingface_hub 2.4) against the local Jobs server, unchanged."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_hfjobs.local import LocalJobsServer

pytestmark = [pytest.mark.conformance, pytest.mark.airflow_free]

HF = str(Path(sys.executable).parent / "hf")
TOKEN = "hf_cli_token"
NS = "cli-user"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS) as srv:
        yield srv


@pytest.fixture(scope="module")
def hf(server: LocalJobsServer, tmp_path_factory: pytest.TempPathFactory):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=server.url,
        HF_TOKEN=TOKEN,
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_EXPERIMENTAL_WARNING="1",
        HF_HOME=str(tmp_path_factory.mktemp("hf-home")),
        NO_COLOR="1",
    )

    def run(*args: str, timeout: float = 120, group: str = "jobs") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HF, group, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    return run


def test_run_follows_logs_and_exits_zero(hf) -> None:
    result = hf("run", "python:3.12", "python", "-c", "print('hi from the cli')")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hi from the cli" in result.stdout


def test_run_of_a_failing_job_exits_non_zero(hf) -> None:
    result = hf("run", "python:3.12", "python", "-c", "raise SystemExit(4)")
    assert result.returncode != 0
    assert "ERROR" in result.stdout + result.stderr


def test_detach_ps_logs_inspect_cancel(hf) -> None:
    started = hf(
        "run",
        "--detach",
        "python:3.12",
        "python",
        "-c",
        "import time; print('detached', flush=True); time.sleep(60)",
    )
    assert started.returncode == 0, started.stderr
    job_id = re.search(r"\b([0-9a-f]{24})\b", started.stdout).group(1)
    listed = hf("ps", "--format", "json")
    assert listed.returncode == 0 and job_id in listed.stdout
    logs = hf("logs", job_id)
    assert logs.returncode == 0 and "detached" in logs.stdout
    inspected = hf("inspect", "--format", "json", job_id)
    assert inspected.returncode == 0 and job_id in inspected.stdout
    canceled = hf("cancel", job_id)
    assert canceled.returncode == 0, canceled.stderr
    assert '"CANCELED"' in hf("inspect", "--format", "json", job_id).stdout
    assert job_id in hf("ps", "-a", "--format", "json").stdout


def test_hardware_table(hf) -> None:
    result = hf("hardware")
    assert result.returncode == 0, result.stderr
    assert "cpu-basic" in result.stdout and "a100-large" in result.stdout


def test_uv_run_of_a_command(hf) -> None:
    result = hf("uv", "run", "--detach", "python", "-c", "print('uv via cli')")
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = re.search(r"\b([0-9a-f]{24})\b", result.stdout).group(1)
    assert '"uv"' in hf("inspect", "--format", "json", job_id).stdout


def job_id_in(output: str) -> str:
    return re.search(r"\b([0-9a-f]{24})\b", output).group(1)


def test_run_with_bucket_volumes_shares_files_between_jobs(hf) -> None:
    created = hf("create", f"{NS}/checkpoints", group="buckets")
    assert created.returncode == 0, created.stdout + created.stderr
    write = "import os; os.makedirs('/ckpt/step-1'); open('/ckpt/step-1/w', 'w').write('42'); print('saved')"
    first = hf("run", "-v", f"hf://buckets/{NS}/checkpoints:/ckpt", "python:3.12", "python", "-c", write)
    assert first.returncode == 0 and "saved" in first.stdout, first.stdout + first.stderr
    read = "print(open('/resume/w').read()); open('/resume/x', 'w')"
    second = hf(
        "run", "-v", f"hf://buckets/{NS}/checkpoints/step-1:/resume:ro", "python:3.12", "python", "-c", read
    )
    assert second.returncode != 0  # the read worked, the write into a read-only volume did not
    assert "42" in second.stdout and "Read-only file system" in second.stdout, second.stdout + second.stderr


def test_run_with_attempts_runs_a_failed_job_again(hf, tmp_path: Path) -> None:
    mark = str(tmp_path / "mark")
    code = f"import os, sys\nagain = os.path.exists({mark!r})\nopen({mark!r}, 'a').close()\nprint('again' if again else 'first')\nsys.exit(0 if again else 3)"
    result = hf("run", "--attempts", "2", "python:3.12", "python", "-c", code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.index("first") < result.stdout.index("again")


def test_stats_labels_expose_and_rerun(hf, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    code = f"import os, time\nx = b'x' * (40 << 20)\nprint('up', flush=True)\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    started = hf("run", "--detach", "python:3.12", "python", "-c", code)
    job_id = job_id_in(started.stdout)
    deadline = time.monotonic() + 60
    while json.loads(hf("inspect", "--format", "json", job_id).stdout)[0]["status"]["stage"] != "RUNNING":
        assert time.monotonic() < deadline, "the job did not start"
    stats = hf("stats", job_id, "--format", "json")
    assert stats.returncode == 0, stats.stdout + stats.stderr
    (sample,) = json.loads(stats.stdout)
    assert sample["job_id"] == job_id and sample["gpus"] == {} and sample["memory_used_bytes"] > 40 << 20
    table = hf("stats")
    assert table.returncode == 0 and job_id[:16] in table.stdout and "N/A" in table.stdout

    assert hf("labels", job_id, "--label", "team=ml", "--label", "run=7").returncode == 0
    assert hf("labels", job_id, "--name", "nightly").returncode == 0
    inspected = json.loads(hf("inspect", "--format", "json", job_id).stdout)[0]
    assert inspected["labels"] == {"team": "ml", "run": "7", "name": "nightly"}

    exposed = hf("expose", job_id, "18431", "--public", "18432")
    assert exposed.returncode == 0 and "18432" in exposed.stdout, exposed.stdout + exposed.stderr
    gate.touch()
    assert hf("wait", job_id).returncode == 0

    rerun = hf("rerun", job_id)  # follows the new job's logs to its end; the gate is open now
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    new_id = job_id_in(rerun.stdout)
    assert new_id != job_id and "up" in rerun.stdout
    assert "http://127.0.0.1:18431" in rerun.stderr  # the CLI's hint: the rerun exposes the same ports
    again = json.loads(hf("inspect", "--format", "json", new_id).stdout)[0]
    assert again["initiator"] == {"type": "duplicated-job", "id": job_id}


def test_uv_run_of_a_local_script_fails_at_once_with_the_501(hf, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('never runs here')\n")
    result = hf("uv", "run", str(script), timeout=60)
    assert result.returncode != 0
    assert "501" in result.stderr and "xet-write-token" in result.stderr, result.stderr[-2000:]
