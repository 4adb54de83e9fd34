"""Runs each job's command as a local process, for the local Jobs server.

Each job gets a shim (:mod:`.shim`): a detached process that runs the command in the job's own working
directory and process group, with a small base environment plus the job's ``environment`` and
``secrets``, and writes its output lines and outcome to files in the job's directory. Nothing of the
server's environment reaches the job but the variables it passes on (``pass_env``: by default how the
developer's shell reaches the network, proxies and CA files), and its ``HOME`` is a fresh directory of its
own: no saved Hugging Face token, git or cloud credentials of the developer's are found by accident. It is still a process of
the developer, not a sandbox: it can read whatever they can. The runner starts
shims, follows those files into the job record, and signals a shim to cancel. Because it only reads
files, a restarted server resumes following jobs that kept running while it was down.

The server's own interpreter directory leads ``PATH`` so that ``python`` and ``uv`` resolve on any
machine. The image is recorded, not pulled. Exit 0 → COMPLETED; anything else → ERROR ``exit code N``;
the job's timeout → ERROR ``Job timeout``; cancel → CANCELED. Jobs beyond ``max_concurrency`` wait in
SCHEDULING. A job with ``attempts`` runs again after a failure (the shim does it, so a restart of the
server loses no attempt); one with ``volumes`` runs under :mod:`.mounts`, which mounts them for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from airflow_provider_hfjobs.jobs import JobStage
from airflow_provider_hfjobs.local import shim
from airflow_provider_hfjobs.local.metrics import ProcessGroupSampler
from airflow_provider_hfjobs.local.store import JobRecord
from airflow_provider_hfjobs.local.volumes import MOUNTS_SCRIPT, VolumeError, Volumes

#: Seconds between looks at a running job's log file; its lines reach clients at most this late.
POLL_SECONDS = 0.05
#: Seconds between checks that a job's shim is still alive (it writes ``exit.json`` unless killed).
LIVENESS_SECONDS = 1.0
#: In a job with volumes: the helper's settings, the empty directory its private root is built on, and
#: where it says why it could not start the command.
MOUNTS_FILE = "mounts.json"
ROOT_DIR = "root"
START_ERROR_FILE = "start-error"


#: Passed from the server's environment to every job unless told otherwise: how the developer's shell
#: reaches the network (proxies, custom CA files), so ``uv`` or ``pip`` in a job works behind a corporate
#: proxy. Nothing else of the server's environment reaches a job (``--pass-env NAME`` adds a name).
DEFAULT_PASS_ENV = (
    *(f"{scheme}_PROXY" for scheme in ("HTTP", "HTTPS", "ALL", "NO")),
    *(f"{scheme}_proxy" for scheme in ("http", "https", "all", "no")),
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "UV_NATIVE_TLS",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def passed_environment(names: Iterable[str], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables of ``environ`` named in ``names`` that are set (``ValueError`` for a bad name)."""
    passed: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ValueError(
                f"pass_env: {name!r} is not an environment variable name (letters, digits and _, not "
                "starting with a digit), e.g. --pass-env HTTPS_PROXY"
            )
        if name in environ:
            passed[name] = environ[name]
    return passed


def base_environment(workdir: str, home: str) -> dict[str, str]:
    """What every job starts from: enough to run ``python``/``uv``, nothing of the server's environment
    (``HF_TOKEN``, ``HF_HOME``, cloud keys) and a ``HOME`` of its own, as a cloud job starts."""
    python_dir = os.path.dirname(sys.executable)
    return {
        "PATH": os.pathsep.join([python_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": home,
        "LANG": "C.UTF-8",
        "TMPDIR": workdir,
        "PYTHONUNBUFFERED": "1",  # live logs from print() without flush=True
        "UV_PYTHON_DOWNLOADS": "never",  # use the local interpreter, never fetch one
        "UV_CACHE_DIR": uv_cache_dir(),  # packages only, no credentials: uv jobs start as fast as before
        "UV_NO_PROGRESS": "1",
    }


def uv_cache_dir() -> str:
    """The developer's uv cache, where uv itself would look (``UV_CACHE_DIR``, XDG, ``~/.cache/uv``)."""
    if configured := os.environ.get("UV_CACHE_DIR"):
        return configured
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "uv")


def process_started(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), ``None`` if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    return None if fields[0] in (b"Z", b"X") else int(fields[19])


class Slots:
    """At most ``size`` jobs running; a job resumed after a restart takes its slot without waiting."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.size = size
        self.used = 0
        self._freed = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._freed:
            await self._freed.wait_for(lambda: self.used < self.size)
            self.used += 1

    def take(self) -> None:
        self.used += 1

    async def release(self) -> None:
        async with self._freed:
            self.used -= 1
            self._freed.notify()


class ProcessRunner:
    """Starts jobs' shims and follows them. All methods run on the server's event loop.

    ``keep_jobs``: when the server stops, leave running jobs running (a state directory lets the next
    server pick them up); otherwise cancel them, and their shims also stop if the server process dies.
    """

    def __init__(
        self, max_concurrency: int = 4, keep_jobs: bool = False, pass_env: Mapping[str, str] | None = None
    ) -> None:
        self._slots = Slots(max_concurrency)
        self.keep_jobs = keep_jobs
        #: Variables of the server's environment every job gets (a job's own env and secrets win).
        self.pass_env = dict(pass_env or {})
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._jobs: dict[str, JobRecord] = {}
        self._stopping = False
        #: Where jobs' volumes come from (set by the server; ``None``: a job with volumes fails).
        self.volumes: Volumes | None = None

    def start(self, job: JobRecord) -> None:
        """Queue a new (SCHEDULING) job."""
        self._launch(job, resumed=False)

    def resume(self, job: JobRecord) -> None:
        """Follow a job loaded from the state directory: start it if it still waits, else watch it."""
        self._launch(job, resumed=job.stage is JobStage.RUNNING)

    def _launch(self, job: JobRecord, resumed: bool) -> None:
        if job.directory is None:
            raise ValueError("the process runner keeps each job's files: give the store a root directory")
        self._jobs[job.id] = job
        task = asyncio.get_running_loop().create_task(self._run(job, resumed), name=f"job-{job.id}")
        self._tasks[job.id] = task

    async def cancel(self, job: JobRecord, wait: float = shim.KILL_GRACE_SECONDS + 3) -> None:
        """Stop the job; returns once it is CANCELED (or after ``wait`` seconds)."""
        if job.stage.is_terminal:
            return
        job.request_cancel()
        if job.pid is None:
            job.finish(JobStage.CANCELED)  # still scheduling: it never starts
            return
        self._signal(job, signal.SIGTERM)
        task = self._tasks.get(job.id)
        if task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), wait)

    async def shutdown(self) -> None:
        """Server stop: stop following jobs; unless ``keep_jobs``, cancel them first."""
        self._stopping = True
        if not self.keep_jobs:
            for job in list(self._jobs.values()):
                if job.pid is not None:
                    self._signal(job, signal.SIGTERM)
                else:
                    job.finish(JobStage.CANCELED, "Server stopped")
            tasks = list(self._tasks.values())
            if tasks:
                await asyncio.wait(tasks, timeout=shim.KILL_GRACE_SECONDS + 1)
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, job: JobRecord, resumed: bool) -> None:
        try:
            if resumed:
                self._slots.take()
            else:
                await self._slots.acquire()
            try:
                if job.stage.is_terminal:
                    return
                if resumed or await self._spawn(job):
                    await self._follow(job)
            finally:
                await self._slots.release()
        finally:
            self._tasks.pop(job.id, None)
            self._jobs.pop(job.id, None)

    async def _spawn(self, job: JobRecord) -> bool:
        """Start the job's shim; ``False`` (and the job in ERROR) if that fails."""
        assert job.directory is not None
        workdir, home = job.directory / shim.WORK_DIR, job.directory / shim.HOME_DIR
        workdir.mkdir(mode=0o700, exist_ok=True)
        home.mkdir(mode=0o700, exist_ok=True)
        env = {
            **base_environment(str(workdir), str(home)),
            **self.pass_env,
            **(job.spec.get("environment") or {}),
            **job.secrets,
        }
        command = [*job.spec["command"], *(job.spec.get("arguments") or [])]
        if job.spec.get("volumes"):
            try:
                command = self._with_volumes(job, command)
            except VolumeError as exc:
                job.mark_running()
                job.finish(JobStage.ERROR, str(exc))
                return False
        watch_pid = 0 if self.keep_jobs else os.getpid()
        launcher = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", shim.__file__, str(job.directory), str(job.timeout_seconds),
            str(watch_pid), str(job.attempts), "--", *command,
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert launcher.stdout is not None
        announced = await launcher.stdout.readline()
        await launcher.wait()
        if not announced.strip().isdigit():
            job.mark_running()
            job.finish(JobStage.ERROR, "Could not start the job's process")
            return False
        pid = int(announced)
        job.mark_running(pid=pid, pid_started=process_started(pid))
        return True

    def _with_volumes(self, job: JobRecord, command: list[str]) -> list[str]:
        """The command wrapped in :mod:`.mounts`, which mounts the job's volumes for its process only."""
        assert job.directory is not None
        if self.volumes is None:
            raise VolumeError("This server was started without volume support")
        mounts = self.volumes.resolve(job.spec["volumes"])
        root = job.directory / ROOT_DIR
        root.mkdir(mode=0o700, exist_ok=True)
        config = {
            "root": str(root),
            "workdir": str(job.directory / shim.WORK_DIR),
            "error_file": str(job.directory / START_ERROR_FILE),
            "mounts": [mount.to_json() for mount in mounts],
        }
        shim.write_json_atomically(str(job.directory / MOUNTS_FILE), config)
        return [sys.executable, "-I", "-S", MOUNTS_SCRIPT, str(job.directory / MOUNTS_FILE), "--", *command]

    @staticmethod
    def _start_error(job: JobRecord) -> str | None:
        """Why the volumes helper could not start the command, if it said so."""
        assert job.directory is not None
        try:
            return (job.directory / START_ERROR_FILE).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    async def _follow(self, job: JobRecord) -> None:
        """Copy the shim's log lines into the job until it reports (or is found dead); then finish it."""
        assert job.directory is not None
        exit_file = job.directory / shim.EXIT_FILE
        attempt_file = job.directory / shim.ATTEMPT_FILE
        attempt_seen: float | None = None
        loop = asyncio.get_running_loop()
        next_liveness = loop.time() + LIVENESS_SECONDS
        while True:
            exited = exit_file.exists()  # before the read: a shim writes its last lines, then exit.json
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                if (changed := attempt_file.stat().st_mtime) != attempt_seen:
                    attempt_seen = changed
                    attempt = json.loads(attempt_file.read_text(encoding="utf-8"))
                    job.record_failure(int(attempt["failures"]), attempt.get("reason"))
            job.read_log()
            if exited:
                outcome = json.loads(exit_file.read_text(encoding="utf-8"))
                break
            if loop.time() >= next_liveness:
                next_liveness = loop.time() + LIVENESS_SECONDS
                if not self._alive(job) and not exit_file.exists():
                    job.read_log()
                    outcome = {"code": None, "reason": "lost"}
                    break
            await asyncio.sleep(POLL_SECONDS)
        self._finish(job, outcome.get("code"), outcome.get("reason"))

    def _finish(self, job: JobRecord, code: int | None, reason: str | None) -> None:
        if job.cancel_requested:
            job.finish(JobStage.CANCELED)
        elif reason in ("canceled", "server gone"):
            job.finish(
                JobStage.CANCELED, "Server stopped" if self._stopping or reason == "server gone" else None
            )
        elif reason == "timeout":
            job.finish(JobStage.ERROR, "Job timeout")
        elif reason == "lost":
            job.finish(JobStage.ERROR, "The job's process disappeared")
        elif reason:
            job.finish(JobStage.ERROR, reason)
        elif code == 0:
            job.finish(JobStage.COMPLETED)
        else:
            job.finish(JobStage.ERROR, self._start_error(job) or f"exit code {code}")

    def metrics_sampler(self, job: JobRecord) -> ProcessGroupSampler:
        """What ``GET .../metrics`` reads each second: the job's process group."""
        return ProcessGroupSampler(job)

    @staticmethod
    def _alive(job: JobRecord) -> bool:
        started = None if job.pid is None else process_started(job.pid)
        return started is not None and started == job.pid_started

    def _signal(self, job: JobRecord, sig: int) -> None:
        if job.pid is not None and self._alive(job):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(job.pid, sig)
