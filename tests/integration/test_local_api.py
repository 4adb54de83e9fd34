"""The local Jobs server implements the whole job API for real, or refuses a field with a 4xx naming it.

Every field of a create body (the reference's §3) is either honoured, with a test here or in the
conformance suite showing its effect, or refused without creating a job: ``FIELD_TESTS`` names the test of
each, and ``test_every_create_field_has_a_test`` keeps that list complete. Real HTTP on 127.0.0.1; every
wait is bounded and waits for a condition (a gate file, a log line, a stage), never for luck.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.local.simulated import Scenario
from airflow_provider_hfjobs.local.spec import CREATE_FIELDS, host_arch
from tests.integration.waiting import wait_for

pytestmark = [
    pytest.mark.integration, pytest.mark.airflow_free, pytest.mark.usefixtures("no_job_left_behind")
]

TOKEN = "hf_local_api_token"
NS = "alice"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
MARKER = "===== Job started at "
OTHER_ARCH = "arm64" if host_arch() == "amd64" else "amd64"
METRIC_KEYS = {
    "cpu_usage_pct", "cpu_millicores", "memory_used_bytes", "memory_total_bytes", "rx_bps", "tx_bps",
    "gpus", "replica",
}  # fmt: skip

#: For each create field: the test that shows the server honours it (or refuses what it cannot honour).
FIELD_TESTS = {
    "command": "tests.conformance.test_official_client::test_run_inspect_wait_and_logs",
    "arguments": "test_arguments_follow_the_command",
    "environment": "tests.conformance.test_official_client::test_run_inspect_wait_and_logs",
    "flavor": "tests.conformance.test_official_client::test_errors_are_the_official_ones",
    "secrets": "tests.integration.test_local_security::test_secret_values_leave_the_disk_once_the_job_has_them",
    "timeoutSeconds": "tests.conformance.test_official_client::test_failures_and_timeouts",
    "attempts": "test_a_failed_attempt_runs_again_in_a_fresh_directory",
    "labels": "test_labels_are_replaced_whole",
    "volumes": "test_two_jobs_share_a_bucket_through_a_volume",
    "expose": "test_exposed_ports_are_the_jobs_own_on_loopback",
    "ssh": "test_ssh_network_and_resource_group_are_kept_and_shown",
    "network": "test_ssh_network_and_resource_group_are_kept_and_shown",
    "resourceGroupId": "test_ssh_network_and_resource_group_are_kept_and_shown",
    "dockerImage": "tests.conformance.test_official_client::test_run_inspect_wait_and_logs",
    "spaceId": "tests.conformance.test_official_client::test_job_ids_look_like_the_hubs",
    "arch": "test_arch_is_this_machines_or_refused",
}


# ---------------------------------------------------------------------------------------------- helpers


def call(server: LocalJobsServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{server.url}{path}", headers=AUTH, timeout=30, **kwargs)


def body(command: list[str], **extra: Any) -> dict[str, Any]:
    return {"command": command, "arguments": [], "environment": {}, "flavor": "cpu-basic",
            "dockerImage": "python:3.12", **extra}  # fmt: skip


def create(server: LocalJobsServer, command: list[str], **extra: Any) -> dict:
    answer = call(server, "POST", f"/api/jobs/{NS}", json=body(command, **extra))
    assert answer.status_code == 200, answer.text
    return answer.json()


def python(*lines: str) -> list[str]:
    return ["python", "-c", "\n".join(lines)]


def inspect(server: LocalJobsServer, job_id: str) -> dict:
    return call(server, "GET", f"/api/jobs/{NS}/{job_id}").json()


def wait_terminal(server: LocalJobsServer, job_id: str, timeout: float = 60.0) -> dict:
    return wait_for(
        f"job {job_id} to end",
        lambda: (job := inspect(server, job_id))["status"]["stage"] in TERMINAL and job,
        timeout,
    )


def events(server: LocalJobsServer, job_id: str) -> list[str]:
    """Every log event as served, the ``===== Job started`` markers included."""
    text = call(server, "GET", f"/api/jobs/{NS}/{job_id}/logs").text
    return [json.loads(b[len("data: ") :])["data"] for b in text.split("\n\n") if b.startswith("data: ")]


def lines(server: LocalJobsServer, job_id: str) -> list[str]:
    return [event for event in events(server, job_id) if not event.startswith(MARKER)]


def wait_for_line(server: LocalJobsServer, job_id: str, text: str, timeout: float = 60.0) -> None:
    """Read the live log until the job prints ``text`` (a running job's log stream stays open)."""
    deadline = time.monotonic() + timeout
    url = f"{server.url}/api/jobs/{NS}/{job_id}/logs"
    with requests.get(url, headers=AUTH, stream=True, timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith(b"data: ") and json.loads(line[len(b"data: ") :])["data"] == text:
                return
            assert time.monotonic() < deadline, f"job {job_id} did not print {text!r} within {timeout} s"
    raise AssertionError(f"job {job_id} ended without printing {text!r}")


def job_count(server: LocalJobsServer) -> int:
    return len(call(server, "GET", f"/api/jobs/{NS}").json())


def refused(server: LocalJobsServer, status: int, fragment: str, command: list[str], **extra: Any) -> str:
    """The create is answered ``status`` with an error naming ``fragment``, and no job exists."""
    before = job_count(server)
    answer = call(server, "POST", f"/api/jobs/{NS}", json=body(command, **extra))
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert fragment in message, message
    assert job_count(server) == before
    return message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_bucket(server: LocalJobsServer, name: str) -> Path:
    answer = call(server, "POST", f"/api/buckets/{NS}/{name}", json={})
    assert answer.status_code == 200, answer.text
    return Path(server.state_dir) / "buckets" / NS / name


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --volume-source-dir with one dataset and one model."""
    root = tmp_path_factory.mktemp("sources")
    (root / "datasets" / NS / "data" / "train").mkdir(parents=True)
    (root / "datasets" / NS / "data" / "train" / "part-0.txt").write_text("row 1\nrow 2\n")
    (root / "models" / NS / "tiny").mkdir(parents=True)
    (root / "models" / NS / "tiny" / "config.json").write_text('{"layers": 2}')
    return root


@pytest.fixture(scope="module")
def server(sources: Path) -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=6, volume_source_dir=str(sources)) as srv:
        yield srv


# -------------------------------------------------------------------------------- faithful or loud
def test_every_create_field_has_a_test() -> None:
    assert set(FIELD_TESTS) == set(CREATE_FIELDS)
    for field, where in FIELD_TESTS.items():
        module_name, _, name = where.rpartition("::")
        module = importlib.import_module(module_name) if module_name else sys.modules[__name__]
        assert callable(getattr(module, name, None)), f"{field}: no test {where}"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"volume": []}, "'volume'"),
        ({"timeout": 60}, "'timeout'"),
        ({"volumes": [{"type": "bucket", "source": "a/b", "mountPath": "/x", "mode": "rw"}]}, "'mode'"),
        ({"expose": {"ports": [8000], "public": [8000]}}, "'public'"),
        ({"ssh": {"enabled": True, "key": "ssh-ed25519 AAAA"}}, "'key'"),
        ({"network": {"group": "train", "alias": ["a"]}}, "'alias'"),
    ],
)
def test_unknown_fields_are_refused_and_create_nothing(server: LocalJobsServer, extra, fragment) -> None:
    refused(server, 400, fragment, ["true"], **extra)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"attempts": "2"}, "attempts"),
        ({"attempts": 0}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"timeoutSeconds": "60"}, "timeoutSeconds"),
        ({"arguments": "--x"}, "arguments"),
        ({"environment": {"A": 1}}, "environment"),
        ({"secrets": ["TOKEN"]}, "secrets"),
        ({"labels": {"a b": "x"}}, "labels"),
        ({"flavor": "a100-huge"}, "a100-huge"),
        ({"spaceId": "alice/duckdb"}, "dockerImage and spaceId"),
        ({"volumes": {"type": "bucket"}}, "volumes"),
        ({"volumes": [{"type": "disk", "source": "a/b", "mountPath": "/x"}]}, "volumes[0].type"),
        ({"volumes": [{"type": "bucket", "source": "b", "mountPath": "/x"}]}, "volumes[0].source"),
        ({"volumes": [{"type": "bucket", "source": "a/b", "mountPath": "x"}]}, "volumes[0].mountPath"),
        ({"volumes": [{"type": "bucket", "source": "a/b", "mountPath": "/"}]}, "volumes[0].mountPath"),
        (
            {"volumes": [{"type": "bucket", "source": "a/b", "mountPath": "/x", "readOnly": "yes"}]},
            "readOnly",
        ),
        ({"volumes": [{"type": "bucket", "source": "a/b", "mountPath": "/x", "revision": "v1"}]}, "revision"),
        ({"volumes": [{"type": "bucket", "source": "a/b", "mountPath": "/x", "path": "../up"}]}, "path"),
        ({"volumes": [{"type": "bucket", "source": "a/b", "mountPath": "/x"}] * 2}, "/x"),
        ({"expose": [8000]}, "expose"),
        ({"expose": {"ports": ["8000"]}}, "expose.ports"),
        ({"expose": {"ports": [70000]}}, "expose.ports"),
        ({"expose": {"ports": [8000], "portsPublic": [9000]}}, "portsPublic"),
        ({"ssh": True}, "ssh"),
        ({"network": "train"}, "network"),
        ({"network": {"group": "Train_1"}}, "network.group"),
        ({"network": {"group": "train", "aliases": ["a", "a"]}}, "network.aliases"),
        ({"resourceGroupId": 7}, "resourceGroupId"),
        ({"arch": "x86"}, "arch"),
    ],
)
def test_wrong_values_are_refused_naming_the_field(server: LocalJobsServer, extra, fragment) -> None:
    refused(server, 400, fragment, ["true"], **extra)


def test_command_must_be_a_list_and_a_body_json(server: LocalJobsServer) -> None:
    refused(server, 400, "command", [])
    answer = requests.post(f"{server.url}/api/jobs/{NS}", data=b"{not json", headers=AUTH, timeout=10)
    assert answer.status_code == 400 and "JSON" in answer.json()["error"]


def test_arguments_follow_the_command(server: LocalJobsServer) -> None:
    job = create(server, python("import sys", "print(sys.argv[1:])"), arguments=["--lr", "0.1"])
    assert wait_terminal(server, job["id"])["status"]["stage"] == "COMPLETED"
    assert lines(server, job["id"]) == ["['--lr', '0.1']"]
    assert job["arguments"] == ["--lr", "0.1"]


def test_arch_is_this_machines_or_refused(server: LocalJobsServer) -> None:
    job = create(server, ["true"], arch=host_arch())
    assert job["arch"] == host_arch()
    message = refused(server, 422, "arch", ["true"], arch=OTHER_ARCH)
    assert host_arch() in message and "local Jobs server" in message


def test_an_ordinary_job_is_initiated_by_its_user(server: LocalJobsServer) -> None:
    job = create(server, ["true"])
    assert job["initiator"] == {"type": "user", "id": job["owner"]["id"], "name": NS}
    assert (job["attempts"], job["retry"], job["status"]["failureCount"]) == (1, 0, 0)
    assert not {"volumes", "expose", "ssh", "network", "resourceGroupId"} & set(job)


# ------------------------------------------------------------------------------------------ attempts
def counting(count_file: Path, *then: str) -> list[str]:
    """A job that appends a line to ``count_file`` (its attempt number is the line count), then ``then``."""
    return python(
        "import os, sys, time",
        f"with open({str(count_file)!r}, 'a') as f: f.write('x\\n')",
        f"attempt = len(open({str(count_file)!r}).read().split())",
        *then,
    )


def test_a_failed_attempt_runs_again_in_a_fresh_directory(server: LocalJobsServer, tmp_path: Path) -> None:
    command = counting(
        tmp_path / "count",
        "print('attempt', attempt, 'leftover', os.path.exists('left-here'), flush=True)",
        "open('left-here', 'w').close()",
        "sys.exit(0 if attempt == 3 else 7)",
    )
    job = create(server, command, attempts=3)
    assert (job["attempts"], job["retry"]) == (3, 2)
    final = wait_terminal(server, job["id"])
    assert final["status"]["stage"] == "COMPLETED", final["status"]
    assert final["status"]["failureCount"] == 2
    served = events(server, job["id"])
    assert [e.startswith(MARKER) for e in served] == [True, False, True, False, True, False]
    assert lines(server, job["id"]) == [f"attempt {n} leftover False" for n in (1, 2, 3)]


def test_when_every_attempt_fails_the_job_fails_with_the_last(
    server: LocalJobsServer, tmp_path: Path
) -> None:
    job = create(server, counting(tmp_path / "count", "sys.exit(3 + attempt)"), attempts=2)
    final = wait_terminal(server, job["id"])
    assert (final["status"]["stage"], final["status"]["message"]) == ("ERROR", "exit code 5")
    assert final["status"]["failureCount"] == 2
    assert len((tmp_path / "count").read_text().split()) == 2


def test_a_timeout_is_retried_but_a_cancel_is_not(server: LocalJobsServer, tmp_path: Path) -> None:
    timed_out_once = create(
        server,
        counting(tmp_path / "timeouts", "time.sleep(60 if attempt == 1 else 0)", "print('done')"),
        attempts=2,
        timeoutSeconds=1,
    )
    final = wait_terminal(server, timed_out_once["id"])
    assert final["status"]["stage"] == "COMPLETED" and final["status"]["failureCount"] == 1
    assert lines(server, timed_out_once["id"]) == ["done"]

    cancelled = create(
        server,
        counting(
            tmp_path / "cancels",
            "print('attempt', attempt, flush=True)",
            "sys.exit(1) if attempt == 1 else time.sleep(60)",
        ),
        attempts=3,
    )
    wait_for_line(server, cancelled["id"], "attempt 2")
    running = inspect(server, cancelled["id"])
    assert running["status"]["stage"] == "RUNNING" and running["status"]["failureCount"] == 1
    assert running["status"]["message"].startswith("Retrying: attempt 2 of 3")
    call(server, "POST", f"/api/jobs/{NS}/{cancelled['id']}/cancel")
    final = wait_terminal(server, cancelled["id"])
    assert final["status"]["stage"] == "CANCELED" and final["status"]["failureCount"] == 1
    assert len((tmp_path / "cancels").read_text().split()) == 2  # no third attempt


def test_attempts_go_on_across_a_server_restart(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    command = counting(
        tmp_path / "count",
        f"while attempt == 1 and not os.path.exists({str(gate)!r}): time.sleep(0.02)",
        "print('attempt', attempt)",
        "sys.exit(attempt == 1)",
    )
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=str(tmp_path / "state")) as local:
        job = create(local, command, attempts=2)
        wait_for("the first attempt", lambda: (tmp_path / "count").exists())
        local.restart(downtime=0.2)
        gate.touch()
        final = wait_terminal(local, job["id"])
        assert final["status"]["stage"] == "COMPLETED" and final["status"]["failureCount"] == 1
        assert lines(local, job["id"]) == ["attempt 1", "attempt 2"]


# ------------------------------------------------------------------------------------------- metrics
def test_metrics_stream_the_process_groups_cpu_and_memory(server: LocalJobsServer, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    child = "x = b'x' * (96 << 20)\nwhile True: pass"  # a child: memory and a busy CPU
    job = create(
        server,
        python(
            "import os, subprocess, sys, time",
            f"subprocess.Popen([sys.executable, '-c', {child!r}])",
            "print('started', flush=True)",
            f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)",
        ),
    )
    wait_for_line(server, job["id"], "started")
    samples: list[tuple[float, dict]] = []
    url = f"{server.url}/api/jobs/{NS}/{job['id']}/metrics"
    with requests.get(url, headers=AUTH, stream=True, timeout=15) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        previous = b""
        for line in stream.iter_lines():
            if line.startswith(b"data: "):
                assert previous == b"event: metric"
                sample = json.loads(line[len(b"data: ") :])
                samples.append((time.monotonic(), sample))
                if len(samples) == 4 or (
                    sample["memory_used_bytes"] > 96 << 20 and sample["cpu_usage_pct"] >= 10
                ):
                    break
            previous = line
    assert all(set(sample) == METRIC_KEYS for _, sample in samples)
    last = samples[-1][1]
    assert last["gpus"] == {} and (last["rx_bps"], last["tx_bps"]) == (0, 0)
    assert last["memory_used_bytes"] > 96 << 20, last  # the child is counted: the whole process group
    assert last["cpu_usage_pct"] >= 10, last
    assert last["cpu_millicores"] == len(os.sched_getaffinity(0)) * 1000
    assert last["memory_total_bytes"] == psutil.virtual_memory().total
    if len(samples) > 2:  # one a second, not a flood
        assert samples[-1][0] - samples[1][0] >= 0.8 * (len(samples) - 2)

    with requests.get(url, headers=AUTH, stream=True, timeout=15) as stream:
        next(line for line in stream.iter_lines() if line.startswith(b"data: "))
        gate.touch()
        for _ in stream.iter_lines():  # the stream ends when the job does (the read timeout bounds it)
            pass
    assert wait_terminal(server, job["id"])["status"]["stage"] == "COMPLETED"
    finished = call(server, "GET", f"/api/jobs/{NS}/{job['id']}/metrics")
    assert finished.status_code == 406 and "COMPLETED" in finished.json()["error"]


# -------------------------------------------------------------------------------------------- expose
SERVE = (
    "import http.server, os, sys",
    "class Hello(http.server.BaseHTTPRequestHandler):",
    "    def do_GET(self):",
    "        self.send_response(200); self.end_headers(); self.wfile.write(b'hello from the job')",
    "    def log_message(self, *args): pass",
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Hello).serve_forever()",
)


def test_exposed_ports_are_the_jobs_own_on_loopback(server: LocalJobsServer) -> None:
    port, other = free_port(), free_port()
    job = create(server, python(*SERVE), arguments=[str(port)], expose={"ports": [port], "portsPublic": []})
    try:
        assert job["expose"] == {"ports": [port], "portsPublic": []}
        (url,) = job["status"]["exposeUrls"]
        assert url == f"http://127.0.0.1:{port}"

        def answered() -> str | None:
            with contextlib.suppress(requests.ConnectionError):
                return requests.get(url, timeout=5).text
            return None

        assert wait_for("the job's own server", answered) == "hello from the job"

        taken = refused(server, 409, str(port), ["true"], expose={"ports": [port]})
        assert job["id"] in taken
        refused(server, 409, "own port", ["true"], expose={"ports": [server.port]})

        path = f"/api/jobs/{NS}/{job['id']}/expose"
        updated = call(server, "PUT", path, json={"ports": [port, other], "portsPublic": [other]}).json()
        assert updated["expose"] == {"ports": [port, other], "portsPublic": [other]}
        assert updated["status"]["exposeUrls"] == [f"http://127.0.0.1:{p}" for p in (port, other)]
        assert call(server, "PUT", path, json={"ports": [], "portsPublic": [9]}).status_code == 400
        assert call(server, "PUT", path, json={"ports": [1], "extra": 1}).status_code == 400
        cleared = call(server, "PUT", path, json={"ports": [], "portsPublic": []}).json()
        assert "expose" not in cleared and "exposeUrls" not in cleared["status"]
        assert "expose" not in inspect(server, job["id"])
    finally:
        call(server, "POST", f"/api/jobs/{NS}/{job['id']}/cancel")
    wait_terminal(server, job["id"])
    late = call(server, "PUT", f"/api/jobs/{NS}/{job['id']}/expose", json={"ports": [port]})
    assert late.status_code == 409 and "CANCELED" in late.json()["error"]


# ----------------------------------------------------------------------- ssh, network, resource group
def test_ssh_network_and_resource_group_are_kept_and_shown(server: LocalJobsServer) -> None:
    network = {"group": "train-1", "aliases": ["master"]}
    job = create(
        server, ["true"], ssh={"enabled": True}, network=network, resourceGroupId="6672e0bd5b1c3b4f3c1e2d3a"
    )
    final = wait_terminal(server, job["id"])
    for shown in (job, final, call(server, "GET", f"/api/jobs/{NS}").json()[0]):
        assert shown["ssh"] == {"enabled": True} and shown["network"] == network
        assert shown["resourceGroupId"] == "6672e0bd5b1c3b4f3c1e2d3a"
        assert "sshUrl" not in shown["status"]
    assert final["status"]["stage"] == "COMPLETED"
    assert "ssh is not available on the local Jobs server" in final["status"]["message"]
    plain = create(server, ["true"], ssh={"enabled": False})
    assert plain["ssh"] == {"enabled": False} and "ssh" not in (plain["status"]["message"] or "")


# ----------------------------------------------------------------------------------- rerun and labels
def test_rerun_copies_the_spec_and_names_the_original(server: LocalJobsServer) -> None:
    bucket = make_bucket(server, "rerun-out")
    spec = {
        "environment": {"GREETING": "hi"}, "labels": {"team": "ml", "name": "nightly"}, "attempts": 2,
        "timeoutSeconds": 120, "arguments": ["there"], "network": {"group": "g", "aliases": []},
        "ssh": {"enabled": True}, "resourceGroupId": "rg-1",
        "volumes": [{"type": "bucket", "source": f"{NS}/rerun-out", "mountPath": "/out"}],
    }  # fmt: skip
    command = python(
        "import os, sys", "print(os.environ['GREETING'], sys.argv[1])", "open(f'/out/{os.getpid()}', 'w')"
    )
    original = create(server, command, **spec)
    wait_terminal(server, original["id"])
    answer = call(server, "POST", f"/api/jobs/{NS}/{original['id']}/duplicate")
    assert answer.status_code == 200, answer.text
    rerun = answer.json()
    assert rerun["id"] != original["id"]
    assert rerun["initiator"] == {"type": "duplicated-job", "id": original["id"]}
    for key in ("command", "arguments", "environment", "labels", "flavor", "dockerImage", "attempts", "retry",
                "timeoutSeconds", "network", "ssh", "resourceGroupId", "volumes"):  # fmt: skip
        assert rerun[key] == original[key], key
    assert wait_terminal(server, rerun["id"])["status"]["stage"] == "COMPLETED"
    assert lines(server, rerun["id"]) == lines(server, original["id"]) == ["hi there"]
    assert len(list(bucket.iterdir())) == 2  # both wrote to the same bucket
    assert call(server, "POST", f"/api/jobs/{NS}/0123456789abcdef01234567/duplicate").status_code == 404


def test_a_rerun_needing_forgotten_secrets_is_refused(server: LocalJobsServer) -> None:
    job = create(server, ["true"], secrets={"HF_TOKEN": "hf_secret_value"})
    wait_terminal(server, job["id"])
    before = job_count(server)
    answer = call(server, "POST", f"/api/jobs/{NS}/{job['id']}/duplicate")
    assert answer.status_code == 422 and "HF_TOKEN" in answer.json()["error"]
    assert "hf_secret_value" not in answer.text and job_count(server) == before


def test_labels_are_replaced_whole(server: LocalJobsServer) -> None:
    job = create(server, ["true"], labels={"a": "1", "name": "first"})
    path = f"/api/jobs/{NS}/{job['id']}/labels"
    updated = call(server, "PUT", path, json={"labels": {"b": "2"}}).json()
    assert updated["labels"] == {"b": "2"} and inspect(server, job["id"])["labels"] == {"b": "2"}
    assert [j["id"] for j in call(server, "GET", f"/api/jobs/{NS}", params={"label": "b=2"}).json()] == [
        job["id"]
    ]
    for bad, fragment in [({}, "labels"), ({"labels": {"b": "2"}, "name": "x"}, "'name'"),
                          ({"labels": {"b": "two words"}}, "labels"), ([], "labels")]:  # fmt: skip
        answer = call(server, "PUT", path, json=bad)
        assert answer.status_code == 400 and fragment in answer.json()["error"], answer.text
    assert inspect(server, job["id"])["labels"] == {"b": "2"}


# ------------------------------------------------------------------------------------------- volumes
def test_two_jobs_share_a_bucket_through_a_volume(server: LocalJobsServer) -> None:
    directory = make_bucket(server, "checkpoints")
    volume = {"type": "bucket", "source": f"{NS}/checkpoints", "mountPath": "/checkpoints"}
    existed = Path("/checkpoints").exists()
    writer = create(
        server,
        python(
            "import os",
            "os.makedirs('/checkpoints/step-1')",
            "open('/checkpoints/step-1/weights', 'w').write('42')",
        ),
        volumes=[volume],
    )
    assert writer["volumes"] == [{**volume, "readOnly": False}]
    assert wait_terminal(server, writer["id"])["status"]["stage"] == "COMPLETED"
    assert (directory / "step-1" / "weights").read_text() == "42"
    assert Path("/checkpoints").exists() == existed  # the mount was the job's own

    reader = create(
        server,
        python("print(open('/resume/step-1/weights').read())"),
        volumes=[{**volume, "mountPath": "/resume"}],
    )
    assert wait_terminal(server, reader["id"])["status"]["stage"] == "COMPLETED"
    assert lines(server, reader["id"]) == ["42"]


def test_read_only_and_folder_of_a_bucket_volume(server: LocalJobsServer) -> None:
    directory = make_bucket(server, "runs")
    (directory / "run-a").mkdir()
    (directory / "run-a" / "metrics.txt").write_text("loss=0.1")
    (directory / "run-b").mkdir()
    volume = {
        "type": "bucket",
        "source": f"{NS}/runs",
        "mountPath": "/runs",
        "path": "run-a",
        "readOnly": True,
    }
    job = create(
        server,
        python(
            "import os",
            "print(sorted(os.listdir('/runs')), open('/runs/metrics.txt').read())",
            "try:\n    open('/runs/new', 'w')\nexcept OSError as exc:\n    print(exc.strerror)",
        ),
        volumes=[volume],
    )
    assert wait_terminal(server, job["id"])["status"]["stage"] == "COMPLETED"
    assert lines(server, job["id"]) == ["['metrics.txt'] loss=0.1", "Read-only file system"]
    assert sorted(p.name for p in (directory / "run-a").iterdir()) == ["metrics.txt"]

    missing = create(server, ["true"], volumes=[{**volume, "path": "run-z"}])
    final = wait_terminal(server, missing["id"])
    assert final["status"]["stage"] == "ERROR" and "run-z" in final["status"]["message"]


def test_repo_volumes_come_from_the_source_directory(server: LocalJobsServer, tmp_path: Path) -> None:
    existing = tmp_path / "model-here"
    existing.mkdir()
    (existing / "host-file").touch()
    job = create(
        server,
        python(
            "import os",
            "print(open('/data/train/part-0.txt').read().split())",
            f"print(sorted(os.listdir({str(existing)!r})))",
            "try:\n    open('/data/new', 'w')\nexcept OSError as exc:\n    print(exc.strerror)",
        ),
        volumes=[
            {"type": "dataset", "source": f"{NS}/data", "mountPath": "/data", "readOnly": False},
            {"type": "model", "source": f"{NS}/tiny", "mountPath": str(existing), "revision": "main"},
        ],
    )
    assert [v["readOnly"] for v in job["volumes"]] == [True, True]  # forced for repos, as on the Hub
    assert wait_terminal(server, job["id"])["status"]["stage"] == "COMPLETED"
    assert lines(server, job["id"]) == [
        "['row', '1', 'row', '2']",
        "['config.json']",
        "Read-only file system",
    ]
    assert sorted(p.name for p in existing.iterdir()) == ["host-file"]


def test_volumes_that_cannot_be_honoured_are_refused(server: LocalJobsServer) -> None:
    make_bucket(server, "refusals")
    bucket = {"type": "bucket", "source": f"{NS}/refusals", "mountPath": "/refusals"}
    refused(server, 404, f"{NS}/missing", ["true"], volumes=[{**bucket, "source": f"{NS}/missing"}])
    refused(server, 404, "datasets/alice/nothing", ["true"],
            volumes=[{"type": "dataset", "source": f"{NS}/nothing", "mountPath": "/d"}])  # fmt: skip
    refused(server, 422, "revision", ["true"],
            volumes=[{"type": "dataset", "source": f"{NS}/data", "mountPath": "/d", "revision": "v2"}])  # fmt: skip
    refused(server, 422, "top-level", ["true"], volumes=[{**bucket, "mountPath": "/opt/not/here"}])
    refused(server, 400, "system directory /usr", ["true"], volumes=[{**bucket, "mountPath": "/usr/share"}])
    refused(server, 400, "system directory /proc", ["true"], volumes=[{**bucket, "mountPath": "//proc"}])
    refused(
        server, 422, "would hide", ["true"], volumes=[{**bucket, "mountPath": str(Path(sys.prefix).parent)}]
    )
    refused(server, 422, "inside another", ["true"],
            volumes=[bucket, {**bucket, "mountPath": "/refusals/deeper"}])  # fmt: skip


def test_repo_volumes_need_a_source_directory() -> None:
    with LocalJobsServer(token=TOKEN, namespace=NS) as bare:
        message = refused(bare, 422, "--volume-source-dir", ["true"],
                          volumes=[{"type": "model", "source": f"{NS}/tiny", "mountPath": "/model"}])  # fmt: skip
        assert "model" in message


# ------------------------------------------------------------------------------------------- buckets
def test_bucket_routes(server: LocalJobsServer) -> None:
    created = call(
        server, "POST", f"/api/buckets/{NS}/routes", json={"visibility": "private", "region": "eu"}
    )
    assert created.status_code == 200, created.text
    assert created.json()["url"] == f"{server.url}/buckets/{NS}/routes"
    again = call(server, "POST", "/api/buckets/me/routes", json={})
    assert again.status_code == 409 and again.json()["url"] == f"{server.url}/buckets/{NS}/routes"
    directory = Path(server.state_dir) / "buckets" / NS / "routes"
    (directory / "sub").mkdir()
    (directory / "sub" / "file.bin").write_bytes(b"12345")
    info = call(server, "GET", f"/api/buckets/{NS}/routes").json()
    assert info["id"] == f"{NS}/routes" and info["private"] is True and info["region"] == "eu"
    assert (info["size"], info["totalFiles"]) == (5, 1) and info["createdAt"].endswith("Z")
    assert f"{NS}/routes" in [b["id"] for b in call(server, "GET", "/api/buckets/me").json()]
    assert call(server, "GET", f"/api/buckets/{NS}/nothing-here").status_code == 404
    assert call(server, "POST", "/api/buckets/someone-else/b", json={}).status_code == 403
    assert call(server, "POST", f"/api/buckets/{NS}/bad name", json={}).status_code == 400
    unknown = call(server, "POST", f"/api/buckets/{NS}/other", json={"public": True})
    assert unknown.status_code == 400 and "'public'" in unknown.json()["error"]
    token = call(server, "GET", f"/api/buckets/{NS}/routes/xet-write-token")
    assert token.status_code == 501
    for alternative in ("URL", "HfUvJobOperator", "bucket's directory"):
        assert alternative in token.json()["error"]
    assert call(server, "GET", f"/api/buckets/{NS}/routes/tree/sub").status_code == 501
    assert requests.get(f"{server.url}/api/buckets/me", timeout=10).status_code == 401


@pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(), reason="needs root and setpriv"
)
def test_the_mount_helper_works_for_a_user_who_is_not_root() -> None:
    """Not root: the helper maps the user to root in a user namespace; mounts and readOnly still hold."""
    from airflow_provider_hfjobs.local.volumes import MOUNTS_SCRIPT

    tmp_path = Path(tempfile.mkdtemp(prefix="hfjobs-nonroot-"))  # pytest's own tmp is root's alone

    for name in ("root", "work", "bucket"):
        (tmp_path / name).mkdir()
    (tmp_path / "bucket" / "weights").write_text("42")
    config = {
        "root": str(tmp_path / "root"), "workdir": str(tmp_path / "work"), "error_file": str(tmp_path / "err"),
        "mounts": [{"source": str(tmp_path / "bucket"), "target": "/ckpt-nonroot", "readOnly": True}],
    }  # fmt: skip
    (tmp_path / "mounts.json").write_text(json.dumps(config))
    os.chmod(tmp_path, 0o755)
    for path in tmp_path.rglob("*"):
        os.chown(path, 65534, 65534)
    script = "cat /ckpt-nonroot/weights; echo; touch /ckpt-nonroot/x 2>/dev/null || echo read-only"
    done = subprocess.run(
        ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-I", "-S",
         MOUNTS_SCRIPT, str(tmp_path / "mounts.json"), "--", "sh", "-c", script],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["42", "read-only"]
        assert not Path("/ckpt-nonroot").exists()
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_load_testing_mode_plays_attempts_and_serves_metrics() -> None:
    scenario = Scenario(duration=1.0, lines=2, stage="ERROR")
    with LocalJobsServer(token=TOKEN, namespace=NS, simulate=scenario) as simulated:
        job = create(simulated, ["true"], attempts=2)
        url = f"{simulated.url}/api/jobs/{NS}/{job['id']}/metrics"
        with requests.get(url, headers=AUTH, stream=True, timeout=15) as stream:
            data = next(line for line in stream.iter_lines() if line.startswith(b"data: "))
        assert set(json.loads(data[len(b"data: ") :])) == METRIC_KEYS
        final = wait_terminal(simulated, job["id"])
        assert (final["status"]["stage"], final["status"]["failureCount"]) == ("ERROR", 2)
        assert [event.startswith(MARKER) for event in events(simulated, job["id"])] == [
            True,
            False,
            False,
        ] * 2


def test_routes_without_a_body_refuse_one(server: LocalJobsServer) -> None:
    job = create(server, ["true"])
    wait_terminal(server, job["id"])
    before = job_count(server)
    for action in ("duplicate", "cancel"):
        answer = call(
            server, "POST", f"/api/jobs/{NS}/{job['id']}/{action}", json={"environment": {"A": "1"}}
        )
        assert answer.status_code == 400 and "no request body" in answer.json()["error"], answer.text
        assert call(server, "POST", f"/api/jobs/{NS}/{job['id']}/{action}", json={}).status_code == 200
    assert job_count(server) == before + 1  # the one rerun without a body
