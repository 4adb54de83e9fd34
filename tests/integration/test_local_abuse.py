"""What a client without the token, or a job, can cost the local Jobs server (issue 21, items 4 and 5):
no lasting memory per unauthenticated request, no descriptor exhaustion by half-open connections, no
reading the server's environment from a job. Real HTTP on 127.0.0.1; bounded loops, resource bounds,
no elapsed-time assertion."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer
from tests.integration.waiting import wait_for

pytestmark = [
    pytest.mark.integration, pytest.mark.airflow_free, pytest.mark.usefixtures("no_job_left_behind")
]

TOKEN = "hf_abuse_token"
NS = "abused"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
#: The server's own secret, which no job may read.
SERVER_SECRET = "hf_servers_own_secret_token"

#: A server in a process of its own (its RSS is its alone), printing its URL and pid; stops on stdin EOF.
SERVE = f"""
import sys
import tempfile
from airflow_provider_hfjobs.local import LocalJobsServer
with LocalJobsServer(token={TOKEN!r}, namespace={NS!r}, state_dir=sys.argv[1]) as server:
    print(server.url, flush=True)
    sys.stdin.read()
"""


SYSTEM_PYTHON = "/usr/bin/python3"


def unprivileged_python() -> tuple[str, int | None, int | None]:
    """The interpreter and user to run the server as. Root reads any process's /proc files whatever its
    dumpable flag (as the threat model's same-user job never can): run as root, the server runs as
    ``nobody``, with a system interpreter of the same version (``sys.executable`` may sit under a
    private home) and this environment's packages on ``PYTHONPATH``."""
    if os.geteuid() != 0:
        return sys.executable, None, None
    try:
        nobody = pwd.getpwnam("nobody")
        version = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
    except (KeyError, OSError, subprocess.SubprocessError):
        pytest.skip("run as root without a nobody user or a system python: cannot run as a plain user")
    if version != str(sys.version_info[:2]):
        pytest.skip(f"run as root and {SYSTEM_PYTHON} is not this Python's version")
    return SYSTEM_PYTHON, nobody.pw_uid, nobody.pw_gid


@pytest.fixture
def served() -> Iterator[tuple[str, psutil.Process, str]]:
    """A server in its own process (as the CLI runs it), as a plain user, with a secret in its
    environment: its URL, process and interpreter."""
    python, uid, gid = unprivileged_python()
    state = tempfile.mkdtemp(prefix="hfjobs-abuse-")
    if uid is not None:
        os.chown(state, uid, gid or 0)
    paths = [str(Path(__file__).parents[2]), *(p for p in sys.path if p.endswith("site-packages"))]
    env = {**os.environ, "HF_TOKEN": SERVER_SECRET, "PYTHONPATH": os.pathsep.join(paths)}
    process = subprocess.Popen(
        [python, "-c", SERVE, os.path.join(state, "state")], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, env=env, user=uid, group=gid, cwd=state,
    )  # fmt: skip
    assert process.stdout is not None and process.stdin is not None
    try:
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url, psutil.Process(process.pid), python
    finally:
        process.stdin.close()
        process.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)


def create(url: str, command: list[str]) -> dict:
    body = {"command": command, "dockerImage": "python:3.12", "flavor": "cpu-basic"}
    answer = requests.post(f"{url}/api/jobs/{NS}", json=body, headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_terminal(url: str, job_id: str) -> dict:
    def ended() -> dict | None:
        job = requests.get(f"{url}/api/jobs/{NS}/{job_id}", headers=AUTH, timeout=30).json()
        return job if job["status"]["stage"] in TERMINAL else None

    return wait_for(f"job {job_id} to end", ended, timeout=120)


def log_lines(url: str, job_id: str) -> list[str]:
    body = requests.get(f"{url}/api/jobs/{NS}/{job_id}/logs", headers=AUTH, timeout=60).text
    events = [json.loads(b[len("data: ") :])["data"] for b in body.split("\n\n") if b.startswith("data: ")]
    return events[1:]  # without the ===== Job started marker


# --------------------------------------------------------------------------- requests without the token
def hammer(port: int, count: int, deadline: float) -> int:
    """``count`` unauthenticated GETs of random 8 KB paths on one kept-alive connection, pipelined by 50;
    returns how many were answered 401 (bounded by ``deadline``)."""
    answered = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        while answered < count and time.monotonic() < deadline:
            batch = min(50, count - answered)
            sock.sendall(
                b"".join(
                    f"GET /api/jobs/{NS}/{secrets.token_hex(4096)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
                    for _ in range(batch)
                )
            )
            received, seen = b"", 0
            while seen < batch:
                chunk = sock.recv(1 << 16)
                assert chunk, "the server closed a kept-alive connection"
                received += chunk
                seen = received.count(b"HTTP/1.1 401")
            answered += batch
    return answered


def test_requests_without_the_token_leave_no_lasting_memory(
    served: tuple[str, psutil.Process, str],
) -> None:
    url, process, _ = served
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 400
    hammer(port, 2_000, deadline)  # warm-up: allocator pools, code paths
    before = process.memory_info().rss
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(hammer(port, 7_500, deadline))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 30_000
    growth = process.memory_info().rss - before
    assert growth < 30 << 20, f"the server grew by {growth >> 20} MB over 30,000 unauthenticated requests"
    stats = requests.get(f"{url}/_local/stats?per_job=1", headers=AUTH, timeout=30).json()
    assert stats["per_job"] == {}  # no per-path state for requests without the token


def test_per_job_counts_still_count_requests_with_the_token() -> None:
    with LocalJobsServer(token=TOKEN, namespace=NS) as server:
        requests.get(f"{server.url}/api/jobs/{NS}/nosuchjob", headers=AUTH, timeout=30)
        requests.get(f"{server.url}/api/jobs/{NS}/unseen", timeout=30)
        stats = requests.get(f"{server.url}/_local/stats?per_job=1", headers=AUTH, timeout=30).json()
        assert stats["per_job"] == {"nosuchjob": 1}
        assert stats["requests"]["inspect"] == 2


# ----------------------------------------------------------------------------- half-open connections
def test_half_open_connections_are_capped_and_timed_out_and_jobs_run_on(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    code = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)\nprint('done')"
    with LocalJobsServer(token=TOKEN, namespace=NS, max_connections=100, header_timeout=2.0) as server:
        job = create(server.url, [sys.executable, "-c", code])
        job_url = f"{server.url}/api/jobs/{NS}/{job['id']}"
        wait_for(
            "the job to run",
            lambda: requests.get(job_url, headers=AUTH, timeout=30).json()["status"]["stage"] == "RUNNING",
        )
        idle: list[socket.socket] = []
        try:
            for _ in range(600):  # a slowloris: a request head that never ends, six times the cap
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                with contextlib.suppress(OSError):  # refused over the cap already
                    sock.sendall(b"GET /api/whoami-v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                idle.append(sock)

            def answers() -> bool:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                    conn.request("GET", "/api/whoami-v2", headers=AUTH)
                    return conn.getresponse().status == 200
                except OSError:
                    return False

            wait_for("an authenticated request to be answered", answers, timeout=60)
            for sock in idle:  # every idle one was refused or timed out: the server closed it
                sock.settimeout(30)
                with contextlib.suppress(ConnectionResetError):  # refused over the cap: aborted
                    assert sock.recv(1024) == b""
        finally:
            for sock in idle:
                sock.close()
        gate.touch()
        ended = wait_terminal(server.url, job["id"])
        assert ended["status"]["stage"] == "COMPLETED", ended


def test_an_idle_connection_is_closed_after_the_header_timeout() -> None:
    with LocalJobsServer(token=TOKEN, namespace=NS, header_timeout=1.0) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        with sock:
            sock.sendall(b"GET /api/whoami-v2 HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            assert sock.recv(1024) == b""  # closed by the server (within the 60 s socket timeout)


# ----------------------------------------------------------------------------- the server's environment
PROBE = """
import json, os
server_pid = int(os.environ["PROBE_SERVER_PID"])
result = {"token": os.environ.get("HF_TOKEN")}
try:
    with open(f"/proc/{server_pid}/environ", "rb") as handle:
        result["environ"] = handle.read().decode(errors="replace")
except PermissionError:
    result["environ"] = "PermissionError"
chain, pid = [], os.getppid()
while pid > 1 and len(chain) < 20:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        chain.append(handle.read().split(b"\\0"))
    with open(f"/proc/{pid}/stat") as handle:
        pid = int(handle.read().rsplit(")", 1)[1].split()[1])
result["pid_in_cmdline"] = any(str(server_pid).encode() in args for args in chain)
result["shim_seen"] = any(any(a.endswith(b"shim.py") for a in args) for args in chain)
print(json.dumps(result))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_DUMPABLE and /proc are Linux's")
def test_a_job_cannot_read_the_servers_environment(served: tuple[str, psutil.Process, str]) -> None:
    url, process, python = served
    command = ["/usr/bin/env", f"PROBE_SERVER_PID={process.pid}", python, "-c", PROBE]
    job = create(url, command)
    ended = wait_terminal(url, job["id"])
    assert ended["status"]["stage"] == "COMPLETED", ended
    result: dict[str, Any] = json.loads(log_lines(url, job["id"])[-1])
    assert result["environ"] == "PermissionError", "a job read the server's /proc/<pid>/environ"
    assert SERVER_SECRET not in json.dumps(result)
    assert result["token"] is None  # the job's own environment has none of the server's token
    assert result["shim_seen"], result  # the probe walked through its shim ...
    assert not result["pid_in_cmdline"], "the server's pid is on its shim's command line"
