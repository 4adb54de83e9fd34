"""Wire details the official clients rely on but do not check loudly, read with plain ``requests``."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer

pytestmark = [pytest.mark.conformance, pytest.mark.airflow_free]

TOKEN = "hf_wire_token"
NS = "wire-user"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS, keepalive_interval=0.2) as srv:
        yield srv


def create(server: LocalJobsServer, command: list[str], **extra) -> dict:
    body = {
        "command": command,
        "arguments": [],
        "environment": {},
        "flavor": "cpu-basic",
        "dockerImage": "python:3.12",
    }
    response = requests.post(f"{server.url}/api/jobs/{NS}", json={**body, **extra}, headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_terminal(server: LocalJobsServer, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = requests.get(f"{server.url}/api/jobs/{NS}/{job_id}", headers=AUTH, timeout=10).json()
        if job["status"]["stage"] in ("COMPLETED", "ERROR", "CANCELED", "DELETED"):
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_logs_stream_has_one_date_header_and_sse_framing(server: LocalJobsServer) -> None:
    job = create(server, ["python", "-c", "print('one'); print('two')"])
    wait_terminal(server, job["id"])
    response = requests.get(f"{server.url}/api/jobs/{NS}/{job['id']}/logs", headers=AUTH, timeout=10)
    assert response.headers["content-type"].startswith("text/event-stream")
    dates = [value for key, value in response.raw.headers.items() if key.lower() == "date"]
    assert len(dates) == 1 and dates[0].endswith("GMT")
    blocks = response.text.split("\n\n")
    events = [json.loads(block[len("data: ") :]) for block in blocks if block.startswith("data: ")]
    assert events[0]["data"].startswith("===== Job started at ")
    assert [event["data"] for event in events[1:]] == ["one", "two"]
    assert all(event["timestamp"].endswith("Z") for event in events)


def test_keep_alive_comments_while_the_job_is_quiet(server: LocalJobsServer) -> None:
    job = create(server, ["sleep", "30"])
    try:
        with requests.get(
            f"{server.url}/api/jobs/{NS}/{job['id']}/logs", headers=AUTH, stream=True, timeout=10
        ) as response:
            lines = response.iter_lines()
            seen = [next(lines) for _ in range(4)]
        assert b": keep-alive" in seen
    finally:
        requests.post(f"{server.url}/api/jobs/{NS}/{job['id']}/cancel", headers=AUTH, timeout=10)


def test_errors_are_json_with_a_request_id(server: LocalJobsServer) -> None:
    unauthorized = requests.get(
        f"{server.url}/api/whoami-v2", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert unauthorized.status_code == 401
    assert unauthorized.json() == {"error": "Invalid credentials in Authorization header"}
    missing = requests.get(f"{server.url}/api/jobs/{NS}/0123456789abcdef01234567", headers=AUTH, timeout=10)
    assert missing.status_code == 404 and missing.json() == {"error": "Job not found"}
    assert missing.headers["x-request-id"]
    bad = requests.post(f"{server.url}/api/jobs/{NS}", json={"command": ["true"]}, headers=AUTH, timeout=10)
    assert bad.status_code == 400 and "dockerImage" in bad.json()["error"]


def test_hardware_is_routed_before_namespaces(server: LocalJobsServer) -> None:
    response = requests.get(f"{server.url}/api/jobs/hardware", headers=AUTH, timeout=10)
    assert response.status_code == 200 and response.json()[0]["name"] == "cpu-basic"


def test_secret_values_never_leave_the_server(server: LocalJobsServer) -> None:
    job = create(server, ["python", "-c", "print('ran')"], secrets={"API_KEY": "canary-9f8e7d"})
    wait_terminal(server, job["id"])
    bodies = [
        requests.get(f"{server.url}/api/jobs/{NS}/{job['id']}", headers=AUTH, timeout=10).text,
        requests.get(f"{server.url}/api/jobs/{NS}", headers=AUTH, timeout=10).text,
        requests.get(f"{server.url}/api/jobs/{NS}/{job['id']}/logs", headers=AUTH, timeout=10).text,
    ]
    assert all("canary-9f8e7d" not in body for body in bodies)
    assert '"API_KEY"' in bodies[0]


def test_list_pagination_follows_link_headers(server: LocalJobsServer) -> None:
    ids = {create(server, ["true"], labels={"page": "yes"})["id"] for _ in range(55)}
    url, seen, pages = f"{server.url}/api/jobs/{NS}?label=page=yes", [], 0
    while url:
        response = requests.get(url, headers=AUTH, timeout=10)
        seen += [job["id"] for job in response.json()]
        url = response.links.get("next", {}).get("url")
        pages += 1
    assert pages == 2 and set(seen) == ids and len(seen) == len(ids)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads the server's sockets through /proc")
def test_answers_leave_without_waiting_for_delayed_acks(server: LocalJobsServer) -> None:
    """A kept-alive client (requests, the official client, our stage polls) must not wait ~40 ms per
    request: the server's side of every connection has TCP_NODELAY (else Nagle holds the body until the
    client's delayed ACK of the headers). Checked on the accepted socket itself, in this process."""
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as client:
        client.sendall(
            f"GET /api/whoami-v2 HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        assert client.recv(65536).startswith(b"HTTP/1.1 200")  # the server has accepted and answered
        accepted = []
        for name in os.listdir("/proc/self/fd"):
            try:
                candidate = socket.socket(fileno=os.dup(int(name)))
            except OSError:
                continue  # not a socket
            with candidate:
                try:
                    if candidate.getpeername() == client.getsockname():
                        accepted.append(candidate.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                except OSError:
                    continue  # not a connected TCP socket
    assert accepted and all(accepted), accepted
