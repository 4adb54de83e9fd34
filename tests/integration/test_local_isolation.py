"""Jobs of the local Jobs server are isolated from the server and from each other (issue 21, item 5).

Run as root (as in CI and containers), every job runs under a user id of its own and sees the state
directory as an empty one holding only its own working and home directories. Each test is a real job,
created over HTTP on 127.0.0.1, that tries to reach what it must not and prints what it got as JSON:

- the server's environment, through ``/proc/<pid>/environ`` of every process it can find by scanning
  ``/proc`` (not through any argument it was given);
- another job's files: its log, its record, its secrets not yet delivered, its working directory, the
  state directory's listing, and the other job's own environment through ``/proc``;
- a read-only bucket (or dataset) through its path on disk rather than its mount.

A plain user's server (run here as ``nobody``) runs its jobs as that user, there being no other user to
give them, but with the same view of the state directory where user namespaces are allowed; what remains
possible then is said in docs/security.md. Bounded waits on conditions, no elapsed-time assertion.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer
from tests.integration.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.airflow_free,
    pytest.mark.usefixtures("no_job_left_behind"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a job user of its own needs a server run as root"),
]

TOKEN = "hf_isolation_token_3b9a"
NS = "isolated"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
#: In the server's environment only: no job may find it anywhere.
SERVER_CANARY = "hf_server_canary_6e1d0c"
#: A secret of one job, which another job must not find.
SECRET_CANARY = "other_jobs_secret_9f2b7a"


# ---------------------------------------------------------------------------------------------- helpers
def create(url: str, command: list[str], **extra: Any) -> dict[str, Any]:
    body = {"command": command, "dockerImage": "python:3.12", "flavor": "cpu-basic", **extra}
    answer = requests.post(f"{url}/api/jobs/{NS}", json=body, headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def inspect(url: str, job_id: str) -> dict[str, Any]:
    return requests.get(f"{url}/api/jobs/{NS}/{job_id}", headers=AUTH, timeout=30).json()


def wait_terminal(url: str, job_id: str) -> dict[str, Any]:
    return wait_for(
        f"job {job_id} to end",
        lambda: (job := inspect(url, job_id))["status"]["stage"] in TERMINAL and job,
        timeout=120,
    )


def log_lines(url: str, job_id: str) -> list[str]:
    body = requests.get(f"{url}/api/jobs/{NS}/{job_id}/logs", headers=AUTH, timeout=60).text
    events = [json.loads(b[len("data: ") :])["data"] for b in body.split("\n\n") if b.startswith("data: ")]
    return events[1:]  # without the ===== Job started marker


def probe_result(url: str, command: list[str], **extra: Any) -> dict[str, Any]:
    """Run a probe job to its end: the JSON it printed last."""
    job = create(url, command, **extra)
    ended = wait_terminal(url, job["id"])
    lines = log_lines(url, job["id"])
    assert ended["status"]["stage"] == "COMPLETED", (ended, lines)
    return json.loads(lines[-1])


#: Reads every other process's environment it can open; prints which held the canaries.
SCAN_PROC = """
import json, os
found, readable = [], 0
mine = os.getpid()
for name in os.listdir("/proc"):
    if not name.isdigit() or int(name) == mine:
        continue
    try:
        with open(f"/proc/{name}/environ", "rb") as handle:
            environ = handle.read()
    except OSError:
        continue
    readable += 1
    for canary in CANARIES:
        if canary.encode() in environ:
            found.append([int(name), canary])
print(json.dumps({"found": found, "readable": readable, "uid": os.getuid()}))
"""


def scan_proc(*canaries: str) -> str:
    return f"CANARIES = {list(canaries)!r}\n{SCAN_PROC}"


# ------------------------------------------------------------------------------- the server's environment
SERVE = f"""
import sys
from airflow_provider_hfjobs.local import LocalJobsServer
with LocalJobsServer(token={TOKEN!r}, namespace={NS!r}, state_dir=sys.argv[1]) as server:
    print(server.url, flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A server in a process of its own (as the CLI runs it), as root, with a secret in its environment."""
    env = {**os.environ, "HF_TOKEN": SERVER_CANARY, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(tmp_path / "state")], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdout is not None and process.stdin is not None
    try:
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        process.stdin.close()
        process.wait(timeout=60)


def test_a_job_cannot_read_the_servers_environment_found_by_scanning_proc(served: str) -> None:
    result = probe_result(served, [sys.executable, "-c", scan_proc(SERVER_CANARY)])
    assert result["found"] == [], f"a job read the server's environment: {result}"
    assert result["uid"] != 0  # a user of its own: root reads every process's environ, dumpable or not


# ------------------------------------------------------------------------------------ other jobs' files
def gated(gate: Path) -> list[str]:
    """A job that writes a file in its working directory, prints a line, and waits for ``gate``."""
    code = (
        "import os, time\n"
        "open('own-file', 'w').write('work canary')\n"
        "print('log canary', flush=True)\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
    )
    return [sys.executable, "-c", code]


#: Given the other jobs' ids, tries each of their files and the state directory.
SNOOP = """
import json, os, sys
work = os.getcwd()  # <state>/jobs/<own id>/work
state = os.path.dirname(os.path.dirname(os.path.dirname(work)))
result = {"state": state}
def attempt(key, action):
    try:
        result[key] = action()
    except OSError as exc:
        result[key] = f"denied: {type(exc).__name__}"
def read(path):
    with open(path, "rb") as handle:
        return handle.read().decode(errors="replace")
attempt("state listing", lambda: sorted(os.listdir(state)))
attempt("jobs listing", lambda: sorted(os.listdir(os.path.join(state, "jobs"))))
for label, job_id in (("running", sys.argv[1]), ("waiting", sys.argv[2])):
    directory = os.path.join(state, "jobs", job_id)
    for name in ("log.jsonl", "job.json", "secrets.json", "work/own-file"):
        attempt(f"{label} {name}", lambda: read(os.path.join(directory, name)))
    attempt(f"{label} work listing", lambda: os.listdir(os.path.join(directory, "work")))
# Through another process's root (its shim's sees the machine as it is): which ones show other jobs?
seen = []
for pid in (name for name in os.listdir("/proc") if name.isdigit()):
    try:
        listed = os.listdir(f"/proc/{pid}/root{state}/jobs")
    except OSError:
        continue
    if set(sys.argv[1:3]) & set(listed):
        seen.append(int(pid))
result["through /proc/<pid>/root"] = f"seen by {seen}" if seen else "denied: none"
print(json.dumps(result))
"""


def test_a_job_cannot_read_other_jobs_files_nor_the_state_directory(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with LocalJobsServer(
        token=TOKEN,
        namespace=NS,
        state_dir=str(tmp_path / "state"),
        flavor_capacity={"t4-small": 0},
        keepalive_interval=1.0,
    ) as server:
        running = create(server.url, gated(gate), secrets={"OTHER_SECRET": SECRET_CANARY})
        # A job that never starts: its secrets wait on disk for its process.
        waiting = create(server.url, ["true"], flavor="t4-small", secrets={"WAITING_SECRET": SECRET_CANARY})
        wait_for("the other job's line", lambda: "log canary" in log_lines_so_far(server.url, running["id"]))
        assert (Path(server.state_dir) / "jobs" / waiting["id"] / "secrets.json").exists()
        try:
            result = probe_result(server.url, [sys.executable, "-c", SNOOP, running["id"], waiting["id"]])
            scan = probe_result(server.url, [sys.executable, "-c", scan_proc(SECRET_CANARY)])
        finally:
            gate.touch()
        assert wait_terminal(server.url, running["id"])["status"]["stage"] == "COMPLETED"
        listing = result.pop("state listing")
        assert listing == ["jobs"] or str(listing).startswith("denied"), listing  # nothing else of it
        jobs = result.pop("jobs listing")
        assert running["id"] not in str(jobs) and waiting["id"] not in str(jobs), jobs
        leaked = {key: got for key, got in result.items() if key != "state" and not got.startswith("denied")}
        assert leaked == {}, f"a job read another job's files: {leaked}"
        assert SECRET_CANARY not in json.dumps(result)
        assert scan["found"] == [], f"a job read another job's environment (its secret): {scan}"


def log_lines_so_far(url: str, job_id: str) -> list[str]:
    """The lines of a running job printed so far: its log stream up to ``log canary`` or the first
    keep-alive (the server sends one after a second without lines)."""
    with requests.get(f"{url}/api/jobs/{NS}/{job_id}/logs", headers=AUTH, timeout=30, stream=True) as answer:
        lines: list[str] = []
        for raw in answer.iter_lines():
            if raw.startswith(b"data: "):
                lines.append(json.loads(raw[len(b"data: ") :])["data"])
                if lines[-1] == "log canary":
                    return lines
            elif raw.startswith(b": keep-alive"):
                return lines
    return lines


# ------------------------------------------------------------------------------------- read-only volumes
#: Writes through the mount and through the directory's path on disk; reads through the mount.
WRITE_THROUGH = """
import json, os, sys
result = {}
for key, path in (("mount", sys.argv[1]), ("disk", sys.argv[2])):
    try:
        with open(os.path.join(path, "written-by-job"), "w") as handle:
            handle.write("x")
        result[key] = "written"
    except OSError as exc:
        result[key] = f"denied: {type(exc).__name__}"
result["read"] = open(os.path.join(sys.argv[1], "weights.txt")).read()
print(json.dumps(result))
"""


def test_a_read_only_volume_cannot_be_written_through_its_path_on_disk(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    dataset = sources / "datasets" / NS / "rows"
    dataset.mkdir(parents=True)
    (dataset / "weights.txt").write_text("rows")
    with LocalJobsServer(
        token=TOKEN, namespace=NS, state_dir=str(tmp_path / "state"), volume_source_dir=str(sources)
    ) as server:
        answer = requests.post(f"{server.url}/api/buckets/{NS}/frozen", json={}, headers=AUTH, timeout=30)
        assert answer.status_code == 200, answer.text
        bucket = Path(server.state_dir) / "buckets" / NS / "frozen"
        (bucket / "weights.txt").write_text("frozen")
        cases = [
            ({"type": "bucket", "source": f"{NS}/frozen", "mountPath": "/frozen", "readOnly": True}, bucket),
            ({"type": "dataset", "source": f"{NS}/rows", "mountPath": "/rows"}, dataset),
        ]
        for volume, on_disk in cases:
            command = [sys.executable, "-c", WRITE_THROUGH, volume["mountPath"], str(on_disk)]
            result = probe_result(server.url, command, volumes=[volume])
            assert result["read"] == on_disk.joinpath("weights.txt").read_text(), result
            assert result["mount"].startswith("denied"), result
            assert result["disk"].startswith("denied"), f"{volume['type']} written through its path: {result}"
            assert not (on_disk / "written-by-job").exists()


# --------------------------------------------------------------------------- what jobs still share
SHARE = """
import json, os, sys
step = sys.argv[1]
if step == "first":
    os.makedirs("/shared/run/deeper")
    open("/shared/run/deeper/state.txt", "w").write("one")
else:
    with open("/shared/run/deeper/state.txt", "a") as handle:  # another job's file, appended in place
        handle.write(" two")
    open("/shared/run/deeper/more.txt", "w").write("more")  # in another job's directory
print(json.dumps({"uid": os.getuid(), "user": __import__("getpass").getuser()}))
"""


def test_jobs_of_their_own_users_still_share_a_bucket_and_its_files_stay_the_servers(tmp_path: Path) -> None:
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=str(tmp_path / "state")) as server:
        answer = requests.post(f"{server.url}/api/buckets/{NS}/shared", json={}, headers=AUTH, timeout=30)
        assert answer.status_code == 200, answer.text
        volume = {"type": "bucket", "source": f"{NS}/shared", "mountPath": "/shared"}
        first = probe_result(server.url, [sys.executable, "-c", SHARE, "first"], volumes=[volume])
        second = probe_result(server.url, [sys.executable, "-c", SHARE, "second"], volumes=[volume])
        assert first["uid"] != second["uid"] and 0 not in (first["uid"], second["uid"])
        assert first["user"] and second["user"]  # a name for its user id: getpass and pwd work
        deeper = Path(server.state_dir) / "buckets" / NS / "shared" / "run" / "deeper"
        assert (deeper / "state.txt").read_text() == "one two"
        assert {path.stat().st_uid for path in deeper.parent.rglob("*")} == {os.geteuid()}  # the server's


# ------------------------------------------------------------------------------- a plain user's server
SERVE_AS_USER = f"""
import sys
from airflow_provider_hfjobs.local import LocalJobsServer
with LocalJobsServer(
    token={TOKEN!r}, namespace={NS!r}, state_dir=sys.argv[1], flavor_capacity={{"t4-small": 0}}
) as server:
    print(server.url, flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def served_as_user() -> Iterator[tuple[str, str]]:
    """A server run as ``nobody`` (its jobs are ``nobody`` too), where user namespaces are allowed: its
    URL and the interpreter its jobs can run."""
    from tests.integration.test_local_abuse import unprivileged_python

    python, uid, gid = unprivileged_python()
    probe = subprocess.run(
        ["unshare", "-Urm", "true"], user=uid, group=gid, capture_output=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"this machine allows no user namespace to a plain user: {probe.stderr!r}")
    state = Path(tempfile.mkdtemp(prefix="hfjobs-isolation-"))  # pytest's own tmp is root's alone
    os.chown(state, uid or 0, gid or 0)
    paths = [str(Path(__file__).parents[2]), *(p for p in sys.path if p.endswith("site-packages"))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    process = subprocess.Popen(
        [python, "-c", SERVE_AS_USER, str(state / "state")], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, env=env, user=uid, group=gid, cwd=state,
    )  # fmt: skip
    assert process.stdout is not None and process.stdin is not None
    try:
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url, python
    finally:
        process.stdin.close()
        process.wait(timeout=60)
        shutil.rmtree(state, ignore_errors=True)


def test_a_plain_users_job_cannot_see_the_state_directory(
    served_as_user: tuple[str, str],
) -> None:
    url, python = served_as_user
    waiting = create(url, ["true"], flavor="t4-small", secrets={"WAITING_SECRET": SECRET_CANARY})
    finished = create(url, ["sh", "-c", "echo log canary"])
    wait_terminal(url, finished["id"])
    result = probe_result(url, [python, "-c", SNOOP, finished["id"], waiting["id"]])
    assert result.pop("state listing") == ["jobs"], result
    assert finished["id"] not in str(result.pop("jobs listing"))
    leaked = {key: got for key, got in result.items() if key != "state" and not got.startswith("denied")}
    assert leaked == {}, f"a job read another job's files: {leaked}"
