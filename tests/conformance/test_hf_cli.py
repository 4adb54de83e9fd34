"""The official ``hf jobs`` CLI (huggingface_hub 2.4) against the local Jobs server, unchanged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_hfjobs.local import LocalJobsServer

pytestmark = pytest.mark.conformance

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

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HF, "jobs", *args],
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
