"""The local Jobs server is safe by default: every job runs a command as the developer, so nobody else
(another local user, a web page through the browser, the network) may start one, and a job finds none of
the developer's credentials by accident. Real HTTP on 127.0.0.1; no timing is asserted."""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.local import store as local_store
from airflow_provider_hfjobs.local.runner import DEFAULT_PASS_ENV
from tests.integration.waiting import wait_for

pytestmark = [
    pytest.mark.integration, pytest.mark.airflow_free, pytest.mark.usefixtures("no_job_left_behind")
]

TOKEN = "hf_security_token"
NS = "guarded"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")


def create(server: LocalJobsServer, command: list[str], **extra: Any) -> dict:
    body = {"command": command, "dockerImage": "python:3.12", "flavor": "cpu-basic", **extra}
    answer = requests.post(f"{server.url}/api/jobs/{NS}", json=body, headers=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def inspect(server: LocalJobsServer, job_id: str) -> dict:
    return requests.get(f"{server.url}/api/jobs/{NS}/{job_id}", headers=AUTH, timeout=10).json()


def wait_terminal(server: LocalJobsServer, job_id: str) -> dict:
    return wait_for(
        f"job {job_id} to end", lambda: (j := inspect(server, job_id))["status"]["stage"] in TERMINAL and j
    )


def log_lines(server: LocalJobsServer, job_id: str, tail: int | None = None) -> list[str]:
    """The job's whole log (or its tail) as served over SSE, without the ``===== Job started`` marker."""
    url = f"{server.url}/api/jobs/{NS}/{job_id}/logs" + ("" if tail is None else f"?tail={tail}")
    body = requests.get(url, headers=AUTH, timeout=60).text
    events = [
        json.loads(block[len("data: ") :])["data"]
        for block in body.split("\n\n")
        if block.startswith("data: ")
    ]
    assert events[0].startswith("===== Job started at "), events[:1]
    return events[1:]


def first_line(server: LocalJobsServer, job_id: str) -> str:
    """The first line a (running) job printed, read live from its log stream."""
    url = f"{server.url}/api/jobs/{NS}/{job_id}/logs"
    with requests.get(url, headers=AUTH, stream=True, timeout=30) as stream:
        events = (line for line in stream.iter_lines() if line.startswith(b"data: "))
        next(events)  # the ===== Job started marker
        return json.loads(next(events)[len(b"data: ") :])["data"]


def job_count(server: LocalJobsServer) -> int:
    return len(requests.get(f"{server.url}/api/jobs/{NS}", headers=AUTH, timeout=10).json())


def gated(gate: Path, *before: str) -> list[str]:
    """A job that runs ``before`` (Python statements), then waits for ``gate`` to exist."""
    code = "\n".join(
        ["import os, time", *before, f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)"]
    )
    return ["python", "-c", code]


@pytest.fixture
def server() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS) as srv:
        yield srv


# ------------------------------------------------------------------------------------------ the token
def test_each_server_makes_its_own_token_unless_given_one() -> None:
    """The old built-in ``hf_local_token`` was public: any local process or web page could use it."""
    with LocalJobsServer(namespace=NS) as first, LocalJobsServer(namespace=NS) as second:
        assert first.token != second.token and len(first.token) >= 32
        for server in (first, second):
            whoami = f"{server.url}/api/whoami-v2"
            assert (
                requests.get(
                    whoami, headers={"Authorization": "Bearer hf_local_token"}, timeout=10
                ).status_code
                == 401
            )
            answer = requests.get(whoami, headers={"Authorization": f"Bearer {server.token}"}, timeout=10)
            assert answer.status_code == 200 and answer.json()["name"] == NS
    with LocalJobsServer(token=TOKEN, namespace=NS) as chosen:
        assert chosen.token == TOKEN


def serve(*args: str) -> tuple[subprocess.Popen, list[str]]:
    """``hfjobs-local serve --port 0 ARGS``; its first two output lines (the URL, the export line)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_hfjobs.local", "serve", "--port", "0", "--namespace", NS, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    return process, [process.stdout.readline(), process.stdout.readline()]


def test_the_cli_never_prints_a_token_it_was_given(tmp_path: Path) -> None:
    """A token the user chose may be a real HF token: the start-up lines name it, never show it."""
    given = "hf_user_chosen_token_5d1e90a7c3"
    (tmp_path / "token").write_text(given + "\n")
    (tmp_path / "token").chmod(0o600)
    process, lines = serve("--token-file", str(tmp_path / "token"))
    try:
        url = lines[0].split()[6]
        assert given not in "".join(lines) and "HF_TOKEN=<the token you gave>" in lines[1], lines
        auth = {"Authorization": f"Bearer {given}"}
        assert requests.get(f"{url}/api/whoami-v2", headers=auth, timeout=10).status_code == 200
    finally:
        process.terminate()
        rest, errors = process.communicate(timeout=30)
    assert given not in rest + errors


def test_the_cli_prints_its_fresh_token_once_and_honours_allow_host() -> None:
    process, (first, second) = serve("--allow-host", "jobs.lan")
    try:
        url = first.split()[6]
        assert url.startswith("http://127.0.0.1:"), first
        token = second.split("HF_TOKEN=")[1].split()[0]
        assert token.startswith("hf_local_") and token != "hf_local_token", second
        whoami = f"{url}/api/whoami-v2"
        assert (
            requests.get(whoami, headers={"Authorization": "Bearer hf_local_token"}, timeout=10).status_code
            == 401
        )
        auth = {"Authorization": f"Bearer {token}"}
        assert requests.get(whoami, headers=auth, timeout=10).status_code == 200
        assert requests.get(whoami, headers={**auth, "Host": "jobs.lan:8910"}, timeout=10).status_code == 200
        assert requests.get(whoami, headers={**auth, "Host": "other.lan"}, timeout=10).status_code == 421
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_a_token_file_keeps_the_token_out_of_the_process_list(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("hf_from_a_file_5d2c\n")
    token_file.chmod(0o644)
    command = [sys.executable, "-m", "airflow_provider_hfjobs.local", "serve", "--port", "0"]
    refused = subprocess.run(
        [*command, "--token-file", str(token_file)], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and f"chmod 600 {token_file}" in refused.stderr, refused.stderr
    both = subprocess.run(
        [*command, "--token-file", str(token_file), "--token", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert both.returncode == 2 and "not both" in both.stderr
    token_file.chmod(0o600)
    process, (first, second) = serve("--token-file", str(token_file))
    try:
        whoami = f"{first.split()[6]}/api/whoami-v2"
        auth = {"Authorization": "Bearer hf_from_a_file_5d2c"}
        assert requests.get(whoami, headers=auth, timeout=10).status_code == 200
        assert "hf_from_a_file_5d2c" not in second  # a token the user chose is never printed
        assert "hf_from_a_file_5d2c" not in Path(f"/proc/{process.pid}/cmdline").read_text()
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


# --------------------------------------------------------------------------------- who may reach it
def test_only_requests_addressed_to_loopback_are_answered(server: LocalJobsServer) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends ``Host:
    evil.example``. Every route refuses it, the ``/_local`` control routes included; nothing runs."""
    evil = {**AUTH, "Host": "evil.example"}
    body = {"command": ["python", "-c", "print('pwned')"], "dockerImage": "python:3.12"}
    attempts = [
        requests.get(f"{server.url}/api/whoami-v2", headers=evil, timeout=10),
        requests.post(f"{server.url}/api/jobs/{NS}", json=body, headers=evil, timeout=10),
        requests.get(
            f"{server.url}/api/jobs/{NS}", headers={**evil, "Host": "evil.example:8910"}, timeout=10
        ),
        requests.post(f"{server.url}/_local/restart", json={"downtime": 5}, headers=evil, timeout=10),
        requests.post(
            f"{server.url}/_local/faults", json={"kind": "status", "status": 500}, headers=evil, timeout=10
        ),
        requests.get(f"{server.url}/_local/stats", headers=evil, timeout=10),
        requests.get(
            f"{server.url}/api/whoami-v2", headers={**AUTH, "Host": "127.0.0.1.evil.example"}, timeout=10
        ),
    ]
    for answer in attempts:
        assert answer.status_code == 421, (answer.request.method, answer.request.url, answer.status_code)
        assert "--allow-host" in answer.json()["error"]
    assert job_count(server) == 0
    assert requests.get(f"{server.url}/_local/faults", headers=AUTH, timeout=10).json() == []
    for host in (
        "localhost",
        f"localhost:{server.port}",
        "127.0.0.1",
        "127.0.0.2:80",
        f"[::1]:{server.port}",
        "LOCALHOST.",
    ):
        answer = requests.get(f"{server.url}/api/whoami-v2", headers={**AUTH, "Host": host}, timeout=10)
        assert answer.status_code == 200, (host, answer.text)


def test_allowed_hosts_widen_the_guard() -> None:
    with LocalJobsServer(token=TOKEN, namespace=NS, allowed_hosts=["jobs.lan"]) as server:
        whoami = f"{server.url}/api/whoami-v2"
        assert requests.get(whoami, headers={**AUTH, "Host": "jobs.lan"}, timeout=10).status_code == 200
        assert requests.get(whoami, headers={**AUTH, "Host": "JOBS.LAN:80"}, timeout=10).status_code == 200
        assert requests.get(whoami, headers={**AUTH, "Host": "evil.example"}, timeout=10).status_code == 421


def test_other_sites_pages_cannot_change_anything(server: LocalJobsServer) -> None:
    """A page on another site may make the browser post to 127.0.0.1 (it cannot read the answer): the
    browser's ``Origin`` header names the page, and state changes from pages not on an allowed host are
    refused. Clients that are not browsers send no ``Origin``."""
    body = {"command": ["python", "-c", "print('pwned')"], "dockerImage": "python:3.12"}
    for origin in ("http://evil.example", "https://127.0.0.1.evil.example:8443", "null"):
        answer = requests.post(
            f"{server.url}/api/jobs/{NS}", json=body, headers={**AUTH, "Origin": origin}, timeout=10
        )
        assert answer.status_code == 403 and "Origin" in answer.json()["error"], (origin, answer.text)
        restart = requests.post(
            f"{server.url}/_local/restart",
            json={"downtime": 5},
            headers={**AUTH, "Origin": origin},
            timeout=10,
        )
        assert restart.status_code == 403
    assert job_count(server) == 0
    local_page = {**AUTH, "Origin": f"http://localhost:{server.port}"}
    assert requests.post(
        f"{server.url}/api/jobs/{NS}", json=body | {"command": ["true"]}, headers=local_page, timeout=10
    ).ok
    reading = requests.get(
        f"{server.url}/api/jobs/{NS}", headers={**AUTH, "Origin": "http://evil.example"}, timeout=10
    )
    assert reading.status_code == 200 and "access-control-allow-origin" not in reading.headers


def test_listening_beyond_loopback_needs_a_token_of_your_own() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_hfjobs.local", "serve", "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("hfjobs-local served 0.0.0.0 without a token")
    assert process.returncode == 2, stderr
    assert "0.0.0.0" in stderr and "--token" in stderr and "127.0.0.1" in stderr, stderr
    with pytest.raises(ValueError, match="without a token of your own"):
        LocalJobsServer(host="0.0.0.0", namespace=NS)
    LocalJobsServer(
        host="0.0.0.0", token=TOKEN, namespace=NS
    ).stop()  # a chosen token: allowed (never started)
    LocalJobsServer(host="localhost", namespace=NS).stop()


# ------------------------------------------------------------------------------------ what a job gets
def test_a_job_gets_a_fresh_home_and_none_of_the_servers_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    developer = tmp_path / "developer"
    (developer / ".cache" / "huggingface").mkdir(parents=True)
    (developer / ".cache" / "huggingface" / "token").write_text("hf_saved_by_the_developer")
    (developer / ".netrc").write_text("machine huggingface.co login me password hf_in_netrc\n")
    monkeypatch.setenv("HOME", str(developer))
    for name, value in {
        "HF_TOKEN": "hf_server_env_token", "HUGGING_FACE_HUB_TOKEN": "hf_old_name", "HF_HOME": str(developer),
        "AWS_SECRET_ACCESS_KEY": "aws-canary", "GITHUB_TOKEN": "gh-canary",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    probe = (
        "import json, os\n"
        "from huggingface_hub import get_token\n"
        "home = os.environ['HOME']\n"
        "names = ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HOME', 'AWS_SECRET_ACCESS_KEY', 'GITHUB_TOKEN']\n"
        "print(json.dumps({'home': home, 'listing': os.listdir(home), 'token': get_token(),\n"
        "    'env': {n: os.environ.get(n) for n in names}, 'path': os.environ['PATH']}))\n"
    )
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=str(tmp_path / "state")) as server:
        first, second = (create(server, ["python", "-c", probe]) for _ in range(2))
        seen = []
        for job in (first, second):
            assert wait_terminal(server, job["id"])["status"]["stage"] == "COMPLETED", log_lines(
                server, job["id"]
            )
            seen.append(json.loads(log_lines(server, job["id"])[-1]))
    homes = [Path(report["home"]) for report in seen]
    assert homes[0] != homes[1], "each job has its own HOME"
    for home, report in zip(homes, seen, strict=True):
        assert home.is_relative_to(tmp_path / "state") and home != developer, home
        assert report["listing"] == [] and report["token"] is None
        assert report["env"] == dict.fromkeys(report["env"])
        assert report["path"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700


@pytest.fixture
def recording_proxy() -> Iterator[tuple[str, list[str]]]:
    """A forward HTTP proxy on 127.0.0.1 that answers every request itself and records its URL."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)  # a proxied request names the whole URL
            body = b"answered by the developer's proxy"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}", seen
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_jobs_reach_the_network_through_the_developers_proxy_and_get_only_the_passed_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recording_proxy: tuple[str, list[str]]
) -> None:
    proxy_url, seen = recording_proxy
    for name in ("no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)  # passed by default, as the shell's proxy settings are
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # this test's own requests go direct
    monkeypatch.setenv("MY_SETTING", "asked-for")
    monkeypatch.setenv("NOT_ASKED_FOR", "server-only-canary")
    probe = (
        "import os, urllib.request\n"
        "print(urllib.request.urlopen('http://files.example.invalid/data.txt', timeout=20).read().decode())\n"
        "print(os.environ.get('MY_SETTING'), os.environ.get('NOT_ASKED_FOR'), os.environ.get('HTTP_PROXY'))\n"
    )
    server = LocalJobsServer(token=TOKEN, namespace=NS, pass_env=[*DEFAULT_PASS_ENV, "MY_SETTING"])
    with server:
        job = create(server, ["python", "-c", probe])
        assert wait_terminal(server, job["id"])["status"]["stage"] == "COMPLETED", log_lines(
            server, job["id"]
        )
        lines = log_lines(server, job["id"])
    assert lines == ["answered by the developer's proxy", f"asked-for None {proxy_url}"]
    assert seen == ["http://files.example.invalid/data.txt"]
    assert "MY_SETTING" in server.pass_env and "NOT_ASKED_FOR" not in server.pass_env


def test_serve_says_which_variables_it_passes_never_their_values_and_refuses_a_bad_name() -> None:
    env = {**os.environ, "HTTPS_PROXY": "http://user:proxy-password@proxy.example:3128"}
    command = [sys.executable, "-m", "airflow_provider_hfjobs.local", "serve", "--port", "0"]
    refused = subprocess.run(
        [*command, "--pass-env", "NOT A NAME"], capture_output=True, text=True, timeout=60, env=env
    )
    assert refused.returncode == 2
    assert "'NOT A NAME' is not an environment variable name" in refused.stderr
    serving = subprocess.Popen(
        [*command, "--pass-env", "UNSET_HERE_1234"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert serving.stdout is not None
        lines: list[str] = []
        while len(lines) < 12 and not (lines and "not set here" in lines[-1]):
            lines.append(serving.stdout.readline())
    finally:
        serving.terminate()
        serving.wait(timeout=30)
    passed = next(line for line in lines if "passed to jobs" in line)
    assert "HTTPS_PROXY" in passed and "proxy-password" not in "".join(lines)
    assert any("--pass-env UNSET_HERE_1234: not set here" in line for line in lines), lines


# ------------------------------------------------------------------------------------------- its files
def assert_private(state: Path) -> list[Path]:
    """Every directory 0700 and every file unreadable by others, besides what the jobs wrote themselves."""
    checked = []
    for directory, subdirs, files in os.walk(state):
        here = Path(directory)
        assert stat.S_IMODE(here.stat().st_mode) == 0o700, here
        if here.name in ("work", "home") and here.parent.parent.name == "jobs":
            subdirs.clear()  # the job's own files: its umask, inside this 0700 directory
            continue
        for name in files:
            mode = stat.S_IMODE((here / name).stat().st_mode)
            assert mode & 0o077 == 0, (here / name, oct(mode))
            checked.append(here / name)
    return checked


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: the server's files must be private by themselves."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_state_directory_is_private_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    state, gate = tmp_path / "state", tmp_path / "gate"
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=str(state), max_concurrency=1) as server:
        running = create(server, gated(gate, "print('first', flush=True)"))
        waiting = create(server, ["python", "-c", "print('second')"], secrets={"API_KEY": "s3cr3t"})
        wait_for("the first job's line", lambda: (state / "jobs" / running["id"] / "log.jsonl").exists())
        files = assert_private(state)
        assert state / "jobs" / waiting["id"] / "secrets.json" in files  # a waiting job's secrets: 0600
        gate.touch()
        for job in (running, waiting):
            assert wait_terminal(server, job["id"])["status"]["stage"] == "COMPLETED"
        names = {path.name for path in assert_private(state)}
    assert {"job.json", "log.jsonl", "exit.json"} <= names


def test_secret_values_leave_the_disk_once_the_job_has_them(tmp_path: Path) -> None:
    """``secrets.json`` lives only while a job waits to start; gone when it runs, ends, is cancelled
    while waiting, and when a new server finds one a job no longer needs. The names stay visible."""
    state, gate = tmp_path / "state", tmp_path / "gate"
    secret_file = lambda job: state / "jobs" / job["id"] / "secrets.json"  # noqa: E731
    show = "print(len(os.environ['API_KEY']), flush=True)"
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=str(state), max_concurrency=1) as server:
        running = create(server, gated(gate, show), secrets={"API_KEY": "s3cr3t-value"})
        queued = create(server, ["python", "-c", "print('never')"], secrets={"API_KEY": "other"})
        assert first_line(server, running["id"]) == "12"  # the job got its secret
        assert not secret_file(running).exists()  # its process has the value: none on disk
        assert secret_file(queued).exists()
        requests.post(f"{server.url}/api/jobs/{NS}/{queued['id']}/cancel", headers=AUTH, timeout=10)
        assert wait_terminal(server, queued["id"])["status"]["stage"] == "CANCELED"
        assert not secret_file(queued).exists()
    # The server is gone, the job runs on and ends; a file left behind (by an older version, or a server
    # killed before it could remove it) is removed by the next server that takes the job over.
    gate.touch()
    wait_for("the job to end unwatched", lambda: (state / "jobs" / running["id"] / "exit.json").exists())
    secret_file(running).write_text(json.dumps({"API_KEY": "s3cr3t-value"}))
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=str(state)) as server:
        final = wait_terminal(server, running["id"])
        assert final["status"]["stage"] == "COMPLETED" and final["secrets"] == ["API_KEY"]
        assert wait_for("secrets.json to go", lambda: not secret_file(running).exists())
        assert inspect(server, queued["id"])["secrets"] == ["API_KEY"]
    assert not list(state.rglob("secrets.json"))
    assert not any(b"s3cr3t-value" in path.read_bytes() for path in state.rglob("*") if path.is_file())


# ------------------------------------------------------------------------------------------------ sizes
def test_a_create_body_over_1_mib_is_refused_with_413(server: LocalJobsServer) -> None:
    huge = {"command": ["true"], "dockerImage": "python:3.12", "environment": {"BLOB": "x" * (2 << 20)}}
    answer = requests.post(f"{server.url}/api/jobs/{NS}", json=huge, headers=AUTH, timeout=60)
    assert answer.status_code == 413, answer.text[:200]
    assert "1 MiB" in answer.json()["error"]
    labels = requests.put(
        f"{server.url}/api/jobs/{NS}/{'0' * 24}/labels",
        data=b"{" + b" " * (2 << 20) + b"}",
        headers=AUTH,
        timeout=60,
    )
    assert labels.status_code in (404, 413)  # no such job, or too large: never read whole
    assert job_count(server) == 0
    assert create(server, ["true"], environment={"SMALL": "x" * 1000})["id"]  # the server is still fine


def test_a_huge_log_is_kept_on_disk_not_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory holds the newest lines of a job (here a 64 KiB budget for 20,000 lines, about 1.2 MB of
    text); a client replaying the log still gets every line once, in order, from ``log.jsonl``, while the
    job runs, after it ended, as a tail, and after a restart."""
    monkeypatch.setattr(local_store, "LOG_MEMORY_BUDGET", 64 << 10, raising=False)
    count = 20_000
    expected = [f"line {i:05d} " + "x" * 50 for i in range(count)]
    code = f"import sys\nfor i in range({count}): sys.stdout.write(f'line {{i:05d}} ' + 'x' * 50 + '\\n')\n"
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=str(tmp_path / "state")) as server:
        job = create(server, ["python", "-c", code])
        with requests.get(
            f"{server.url}/api/jobs/{NS}/{job['id']}/logs", headers=AUTH, stream=True, timeout=60
        ) as live:
            followed = [
                json.loads(line[len(b"data: ") :])["data"]
                for line in live.iter_lines()
                if line.startswith(b"data: ")
            ][1:]
        assert followed == expected
        assert wait_terminal(server, job["id"])["status"]["stage"] == "COMPLETED"
        record = server.app.state.store.get(NS, job["id"])
        in_memory = sum(len(text) + getattr(local_store, "LINE_OVERHEAD", 64) for _, text in record.log)
        assert len(record.log) < count and in_memory <= 64 << 10, (len(record.log), in_memory)
        assert log_lines(server, job["id"]) == expected
        assert log_lines(server, job["id"], tail=5000) == expected[-5000:]
        server.restart()
        assert log_lines(server, job["id"]) == expected
        assert log_lines(server, job["id"], tail=3) == expected[-3:]
        reloaded = server.app.state.store.get(NS, job["id"])
        assert len(reloaded.log) < count
