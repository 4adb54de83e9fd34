"""Every local job ends, a cancel always wins, and nothing of a job outlives it (issue 19, item 4).

Real HTTP on 127.0.0.1 against :class:`LocalJobsServer` (and ``hfjobs-local serve`` as a process);
pytest-mock only to inject a runner failure (``EMFILE``) or a spawn error once. Every wait polls a
condition with a deadline, never a fixed sleep: the suite passes with both cores busy.

What "no process left" means here: no process whose command line holds the test's unique marker (the
job's command and whatever it detached) or the server's state directory (the jobs' shims), looked up in
``/proc`` while the server still runs, so a leak is not hidden by the server's own clean-up at stop.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.local import runner as runner_module
from airflow_provider_hfjobs.local.store import SECRETS_FILE, JobRecord
from tests.integration.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("no_job_left_behind"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc"),
]

TOKEN = "hf_lifecycle_token_7d1e"
NS = "lifecycle"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")


# ---------------------------------------------------------------------------------------------- helpers
def call(server: LocalJobsServer | str, method: str, path: str, **kwargs: Any) -> requests.Response:
    base = server if isinstance(server, str) else server.url
    return requests.request(method, f"{base}{path}", headers=AUTH, timeout=60, **kwargs)


def body(command: list[str], **extra: Any) -> dict[str, Any]:
    return {"command": command, "arguments": [], "environment": {}, "flavor": "cpu-basic",
            "dockerImage": "python:3.12", **extra}  # fmt: skip


def create(server: LocalJobsServer | str, command: list[str], **extra: Any) -> dict[str, Any]:
    answer = call(server, "POST", f"/api/jobs/{NS}", json=body(command, **extra))
    assert answer.status_code == 200, answer.text
    return answer.json()


def stage(server: LocalJobsServer | str, job_id: str) -> str:
    return call(server, "GET", f"/api/jobs/{NS}/{job_id}").json()["status"]["stage"]


def inspect(server: LocalJobsServer | str, job_id: str) -> dict[str, Any]:
    return call(server, "GET", f"/api/jobs/{NS}/{job_id}").json()


def wait_stage(server: LocalJobsServer | str, job_id: str, wanted: str, timeout: float = 60.0) -> dict:
    return wait_for(
        f"job {job_id} to be {wanted}",
        lambda: (job := inspect(server, job_id))["status"]["stage"] == wanted and job,
        timeout,
    )


def wait_terminal(server: LocalJobsServer | str, job_id: str, timeout: float = 60.0) -> dict:
    return wait_for(
        f"job {job_id} to end",
        lambda: (job := inspect(server, job_id))["status"]["stage"] in TERMINAL and job,
        timeout,
    )


def log_lines(server: LocalJobsServer | str, job_id: str) -> list[str]:
    text = call(server, "GET", f"/api/jobs/{NS}/{job_id}/logs").text
    events = [json.loads(b[len("data: ") :])["data"] for b in text.split("\n\n") if b.startswith("data: ")]
    return [event for event in events if not event.startswith("===== Job started")]


def processes_with(*fragments: str) -> list[int]:
    """Live processes (zombies have no command line) whose command line holds one of ``fragments``."""
    wanted = [fragment.encode() for fragment in fragments]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if any(fragment in cmdline for fragment in wanted):
            found.append(int(entry.name))
    return found


def wait_none_left(*fragments: str, timeout: float = 15.0) -> None:
    wait_for(f"no process with {fragments} left", lambda: not processes_with(*fragments), timeout)


def unique_marker() -> str:
    return f"hfjobs-marker-{uuid.uuid4().hex}"


def detaching(marker: str, ready: Path, then: str) -> list[str]:
    """A command that detaches a long sleeper the classic daemon way (fork, ``setsid``, fork again) with
    ``marker`` in its command line, waits until it runs (``ready`` exists), then ``then`` (Python)."""
    sleeper = "import pathlib, sys, time; pathlib.Path(sys.argv[2]).touch(); time.sleep(600)"
    code = (
        "import os, pathlib, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execvp('python', ['python', '-c', {sleeper!r}, sys.argv[1], sys.argv[2]])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "deadline = time.monotonic() + 60\n"
        "while not pathlib.Path(sys.argv[2]).exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "print('detached', flush=True)\n"
        f"{then}\n"
    )
    return ["python", "-c", code, marker, str(ready)]


def gated(gate: Path, text: str) -> list[str]:
    """Prints ``waiting``, touches ``<gate>.ready``, prints ``text`` once ``gate`` exists (the test decides
    when the job ends; a running job's log stream stays open, so the test waits for the file)."""
    code = (
        "import os, pathlib, sys, time\n"
        "print('waiting', flush=True)\n"
        "pathlib.Path(sys.argv[1] + '.ready').touch()\n"
        "while not os.path.exists(sys.argv[1]):\n"
        "    time.sleep(0.02)\n"
        "print(sys.argv[2], flush=True)\n"
    )
    return ["python", "-c", code, str(gate), text]


@pytest.fixture(scope="module")
def server() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=8) as srv:
        yield srv


@pytest.fixture
def own_server() -> Iterator[LocalJobsServer]:
    """A server of the test's own (a test that patches the runner, or stops the server itself)."""
    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=4) as srv:
        yield srv


# ----------------------------------------------------------------------------- 1. a cancel always wins
def test_200_jobs_cancelled_right_after_their_create_all_end_canceled(own_server: LocalJobsServer) -> None:
    """Each job is cancelled the moment its create is answered, from 8 clients at once: some are queued
    (4 run at a time), some have their shim being spawned, some run, some are between two attempts of
    a command that fails at once. Every one ends CANCELED, and no process of any is left."""
    marker = unique_marker()
    commands = [
        ({}, ["python", "-c", "import time; time.sleep(600)", marker]),
        ({"attempts": 1000}, ["sh", "-c", "exit 1", marker]),  # cancelled between two attempts
        ({}, ["sh", "-c", "sleep 600", marker]),
    ]

    def create_and_cancel(index: int) -> str:
        extra, command = commands[index % len(commands)]
        job = create(own_server, command, **extra)
        answer = call(own_server, "POST", f"/api/jobs/{NS}/{job['id']}/cancel")
        assert answer.status_code == 200, answer.text
        return job["id"]

    with ThreadPoolExecutor(8) as pool:
        job_ids = list(pool.map(create_and_cancel, range(200)))

    pending = set(job_ids)

    def all_canceled() -> bool:
        pending.difference_update([job_id for job_id in pending if stage(own_server, job_id) == "CANCELED"])
        return not pending

    try:
        wait_for("every job to be CANCELED", all_canceled, 120)
    except AssertionError:
        raise AssertionError({job_id: stage(own_server, job_id) for job_id in pending}) from None
    wait_none_left(marker, own_server.state_dir)


def test_a_cancel_during_the_shims_spawn_never_shows_running(
    own_server: LocalJobsServer, mocker: Any
) -> None:
    """A cancel that lands while the shim is being started: the job goes SCHEDULING → CANCELED (never
    RUNNING), its command never starts, and its secret values are gone."""
    marker = unique_marker()
    real_exec = runner_module.asyncio.create_subprocess_exec
    store = own_server.app.state.store

    async def exec_once_cancelled(*args: Any, **kwargs: Any) -> Any:
        """The spawn goes on only once the cancel has reached the job (30 s at most)."""
        for _ in range(3000):
            if any(job.cancel_requested for job in store.all()):
                break
            await runner_module.asyncio.sleep(0.01)
        return await real_exec(*args, **kwargs)

    mocker.patch.object(runner_module.asyncio, "create_subprocess_exec", side_effect=exec_once_cancelled)
    job = create(own_server, ["sh", "-c", "echo started; sleep 600", marker], secrets={"TOKEN": "s3cret"})
    answer = call(own_server, "POST", f"/api/jobs/{NS}/{job['id']}/cancel")
    assert answer.status_code == 200
    done = wait_terminal(own_server, job["id"], 30)
    assert done["status"]["stage"] == "CANCELED" and done["startedAt"] is None, done
    assert log_lines(own_server, job["id"]) == []  # the command never started
    assert not (Path(own_server.state_dir) / "jobs" / job["id"] / SECRETS_FILE).exists()
    wait_none_left(marker, own_server.state_dir)


# ------------------------------------------------------------------ 2. nothing a job detaches survives
@pytest.mark.parametrize("ending", ["cancel", "own end", "timeout"])
def test_processes_a_job_detaches_end_with_it(server: LocalJobsServer, tmp_path: Path, ending: str) -> None:
    marker, ready = unique_marker(), tmp_path / "sleeper-ready"
    then = "import time; time.sleep(600)" if ending != "own end" else "pass"
    extra = {"timeoutSeconds": 8} if ending == "timeout" else {}
    job = create(server, detaching(marker, ready, then), **extra)
    wait_for("the detached sleeper to run", ready.exists, 30)
    assert processes_with(marker), "the detached sleeper should be running while its job runs"
    if ending == "cancel":
        assert call(server, "POST", f"/api/jobs/{NS}/{job['id']}/cancel").status_code == 200
    done = wait_terminal(server, job["id"], 60)
    expected = {
        "cancel": ("CANCELED", None), "own end": ("COMPLETED", None), "timeout": ("ERROR", "Job timeout"),
    }  # fmt: skip
    assert (done["status"]["stage"], done["status"]["message"]) == expected[ending], done
    wait_none_left(marker)


def test_processes_a_job_detaches_end_when_its_server_stops(tmp_path: Path) -> None:
    """A server without a state directory stops its jobs when it stops: detached processes too."""
    marker, ready = unique_marker(), tmp_path / "sleeper-ready"
    with LocalJobsServer(token=TOKEN, namespace=NS) as srv:
        state_dir = srv.state_dir
        create(srv, detaching(marker, ready, "import time; time.sleep(600)"))
        wait_for("the detached sleeper to run", ready.exists, 30)
        assert processes_with(marker)
    wait_none_left(marker, state_dir)


# ------------------------------------------------------------------- 3. a runner failure ends the job
def test_a_runner_failure_ends_that_job_in_error_and_spares_the_others(
    own_server: LocalJobsServer, tmp_path: Path, mocker: Any
) -> None:
    """One ``EMFILE`` while following a job: that job ends ERROR saying so (its process stopped), the
    other job runs on to its end."""
    marker = unique_marker()
    victim = create(own_server, [*gated(tmp_path / "never", "unreachable"), marker])
    other = create(own_server, gated(tmp_path / "other-gate", "other done"))
    for gate in ("never", "other-gate"):
        wait_for(f"the job gated by {gate} to run", (tmp_path / f"{gate}.ready").exists)
    original, failed = JobRecord.read_log, []

    def read_log(record: JobRecord) -> None:
        if record.id == victim["id"] and not failed:
            failed.append(True)
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        original(record)

    mocker.patch.object(JobRecord, "read_log", autospec=True, side_effect=read_log)
    done = wait_terminal(own_server, victim["id"], 30)
    assert done["status"]["stage"] == "ERROR", done
    assert "Too many open files" in done["status"]["message"], done
    wait_none_left(marker)
    assert stage(own_server, other["id"]) == "RUNNING"
    (tmp_path / "other-gate").touch()
    assert wait_terminal(own_server, other["id"])["status"]["stage"] == "COMPLETED"
    assert log_lines(own_server, other["id"]) == ["waiting", "other done"]


# ------------------------------------------------------- 4. what no process can get is refused up front
@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"environment": {"A=B": "1"}}, "environment"),
        ({"environment": {"": "1"}}, "environment"),
        ({"environment": {"A\0B": "1"}}, "environment"),
        ({"environment": {"A": "x\0y"}}, "environment['A']"),
        ({"secrets": {"S=T": "hunter2"}}, "secrets"),
        ({"secrets": {"S\0": "hunter2"}}, "secrets"),
        ({"secrets": {"S": "hunter2\0"}}, "secrets['S']"),
        ({"command": ["sh", "-c", "echo a\0b"]}, "command[2]"),
        ({"arguments": ["ok", "a\0b"]}, "arguments[1]"),
    ],
)
def test_names_and_nul_bytes_no_process_can_get_are_refused(
    server: LocalJobsServer, extra: dict[str, Any], field: str
) -> None:
    before = len(call(server, "GET", f"/api/jobs/{NS}").json())
    answer = call(server, "POST", f"/api/jobs/{NS}", json={**body(["true"]), **extra})
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]
    assert field in message and "hunter2" not in message, message
    assert len(call(server, "GET", f"/api/jobs/{NS}").json()) == before


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"env": {"A=B": "1"}}, "env key 'A=B'"),
        ({"env": {"": "1"}}, "env key ''"),
        ({"env": {"A": "x\0y"}}, "env['A']"),
        ({"secrets": {"S": "hunter2\0"}}, "secrets['S']"),
        ({"command": ["sh", "-c", "echo a\0b"]}, "command[2]"),
    ],
)
def test_the_hook_refuses_them_before_any_request(
    server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], field: str
) -> None:
    conn = {"conn_type": "hf_jobs", "host": server.url, "password": TOKEN, "extra": {"namespace": NS}}
    monkeypatch.setenv("AIRFLOW_CONN_HF_LIFECYCLE", json.dumps(conn))
    hook = HfJobsHook("hf_lifecycle")
    creates = call(server, "GET", "/_local/stats").json()["requests"].get("create", 0)
    arguments = {"image": "python:3.12", "command": ["true"], **kwargs}
    with pytest.raises(HfJobsInputError) as info:
        hook.run_job(**arguments)
    assert field in str(info.value) and "hunter2" not in str(info.value), info.value
    hook.close()
    assert call(server, "GET", "/_local/stats").json()["requests"].get("create", 0) == creates


def test_a_job_whose_process_cannot_be_spawned_ends_in_error_without_its_secrets(
    own_server: LocalJobsServer, mocker: Any
) -> None:
    mocker.patch.object(
        runner_module.asyncio, "create_subprocess_exec", side_effect=OSError(errno.EAGAIN, "Resource busy")
    )
    job = create(own_server, ["true"], secrets={"TOKEN": "s3cret"})
    done = wait_terminal(own_server, job["id"], 30)
    assert done["status"]["stage"] == "ERROR", done
    assert done["status"]["message"] == "Could not start the job's process: [Errno 11] Resource busy"
    assert not (Path(own_server.state_dir) / "jobs" / job["id"] / SECRETS_FILE).exists()
    mocker.stopall()
    assert wait_terminal(own_server, create(own_server, ["true"])["id"])["status"]["stage"] == "COMPLETED"


# ------------------------------------------------------------ 5. volumes never cover a system directory
@pytest.mark.parametrize(
    "mount_path",
    ["//proc", "//etc", "//usr/lib", "/./proc", "/proc/", "///sys/fs", "/dev/shm", "/var/tmp/x", "/run/x",
     "/boot", "/bin", "/sbin/x", "/lib", "/lib64", "/libx32/y", "/usr", "//", "/."],
)  # fmt: skip
def test_a_volume_on_a_system_directory_is_refused_however_it_is_spelled(
    server: LocalJobsServer, mount_path: str
) -> None:
    call(server, "POST", f"/api/buckets/{NS}/sysdirs", json={})
    volume = {"type": "bucket", "source": f"{NS}/sysdirs", "mountPath": mount_path}
    before = len(call(server, "GET", f"/api/jobs/{NS}").json())
    answer = call(server, "POST", f"/api/jobs/{NS}", json=body(["true"], volumes=[volume]))
    assert answer.status_code == 400, answer.text
    assert "volumes[0].mountPath" in answer.json()["error"]
    assert len(call(server, "GET", f"/api/jobs/{NS}").json()) == before


def test_a_volume_in_the_state_directory_or_through_a_link_to_etc_is_refused(
    server: LocalJobsServer, tmp_path: Path
) -> None:
    call(server, "POST", f"/api/buckets/{NS}/sysdirs", json={})
    link = tmp_path / "etc-link"
    link.symlink_to("/etc")
    for mount_path, fragment in ((f"{server.state_dir}/jobs", "state directory"), (str(link), "/etc")):
        volume = {"type": "bucket", "source": f"{NS}/sysdirs", "mountPath": mount_path}
        answer = call(server, "POST", f"/api/jobs/{NS}", json=body(["true"], volumes=[volume]))
        assert answer.status_code == 400, answer.text
        assert "volumes[0]" in answer.json()["error"] and fragment in answer.json()["error"]


def serve(*arguments: str) -> tuple[subprocess.Popen[str], str]:
    """``hfjobs-local serve`` on a free port: the process and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_hfjobs.local", "serve", "--port", "0", "--token", TOKEN,
         "--namespace", NS, *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline()
    assert " on http://" in first, first
    return process, first.split(" on ", 1)[1].split()[0]


def test_serve_stops_on_sigterm_whatever_its_jobs_do(tmp_path: Path) -> None:
    """A job that ignores SIGTERM and detached a sleeper, another waiting for a flavor that never
    comes: one SIGTERM and the server is gone, with every process of its jobs."""
    marker, ready = unique_marker(), tmp_path / "sleeper-ready"
    process, url = serve("--flavor-capacity", "a10g-small=0")
    try:
        stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
        running = create(url, detaching(marker, ready, stubborn))
        waiting = create(url, ["sh", "-c", "sleep 600", marker], flavor="a10g-small")
        wait_for("the detached sleeper to run", ready.exists, 30)
        wait_stage(url, running["id"], "RUNNING")
        assert stage(url, waiting["id"]) == "SCHEDULING"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    wait_none_left(marker)


# ----------------------------------------------------------------------------- 6. per-flavor capacity
def test_a_flavor_at_capacity_waits_and_can_still_be_cancelled(tmp_path: Path) -> None:
    with LocalJobsServer(token=TOKEN, namespace=NS, flavor_capacity={"a10g-small": 0, "t4-small": 1}) as srv:
        never = create(srv, ["python", "-c", "print('ran')"], flavor="a10g-small")
        other = create(srv, ["python", "-c", "print('cpu')"])
        assert wait_terminal(srv, other["id"])["status"]["stage"] == "COMPLETED"
        assert stage(srv, never["id"]) == "SCHEDULING"  # created first, still waiting
        answer = call(srv, "POST", f"/api/jobs/{NS}/{never['id']}/cancel")
        assert answer.json()["status"]["stage"] == "CANCELED"  # at once, in the cancel's answer
        assert log_lines(srv, never["id"]) == []

        gate = tmp_path / "gate"
        first = create(srv, gated(gate, "first done"), flavor="t4-small")
        second = create(srv, ["python", "-c", "print('second ran')"], flavor="t4-small")
        wait_for("the first t4 job to run", Path(f"{gate}.ready").exists)
        later = create(srv, ["python", "-c", "print('cpu again')"])
        assert wait_terminal(srv, later["id"])["status"]["stage"] == "COMPLETED"
        assert stage(srv, second["id"]) == "SCHEDULING"  # the one t4-small slot is taken
        gate.touch()
        assert wait_terminal(srv, first["id"])["status"]["stage"] == "COMPLETED"
        assert wait_terminal(srv, second["id"])["status"]["stage"] == "COMPLETED"
        assert log_lines(srv, second["id"]) == ["second ran"]


def test_serve_documents_and_checks_flavor_capacity() -> None:
    usage = subprocess.run(
        [sys.executable, "-m", "airflow_provider_hfjobs.local", "serve", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "--flavor-capacity FLAVOR=N" in usage
    for bad, fragment in (("a10g-small=x", "FLAVOR=N"), ("a100-huge=1", "unknown flavor")):
        refused = subprocess.run(
            [sys.executable, "-m", "airflow_provider_hfjobs.local", "serve", "--port", "0",
             "--flavor-capacity", bad],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode == 2 and fragment in refused.stderr, refused.stderr
    with pytest.raises(ValueError, match="a10g-small"):
        LocalJobsServer(flavor_capacity={"a10g-small": -1})
