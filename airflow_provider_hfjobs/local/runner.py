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

Run as root, each job gets a user of its own (:func:`pick_job_uid`, an unprivileged id no account
has): the command runs under :mod:`.mounts` as that user, which cannot read the server's or another
job's ``/proc/<pid>/environ`` and sees the state directory as holding only its own working and home
directories, while the rest of the machine looks as before (see :mod:`.mounts`). A plain user's server
has no other user to give; where user namespaces are allowed its jobs still get that view of the state
directory, as its user. Where neither can be done (no idmapped mounts, no user namespaces), jobs run as
before: the server says so once in its log.

The server's own interpreter directory leads ``PATH`` so that ``python`` and ``uv`` resolve on any
machine. The image is recorded, not pulled. Exit 0 → COMPLETED; anything else → ERROR ``exit code N``;
the job's timeout → ERROR ``Job timeout``; cancel → CANCELED. Jobs beyond ``max_concurrency`` wait in
SCHEDULING, as do jobs of a flavor whose ``flavor_capacity`` is reached (0: they never start). A job with
``attempts`` runs again after a failure (the shim does it, so a restart of the server loses no attempt);
one with ``volumes`` runs under :mod:`.mounts`, which mounts them for it.

Every job ends, and a cancel always wins. A job is *queued* (waiting for room), *spawning* (its shim
starting) or *running*; a cancel of a queued job ends it CANCELED at once; one of a spawning job is kept
until the shim asks whether to start the command, and the answer is no (the job goes from SCHEDULING to
CANCELED, never RUNNING, and the command never starts); one of a running job signals the shim. Whatever fails in the runner itself (``EMFILE``,
a command it cannot spawn) ends that job ERROR with the reason, stops its process, and leaves the other
jobs alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airflow_provider_hfjobs.jobs import JobStage
from airflow_provider_hfjobs.local import shim
from airflow_provider_hfjobs.local.hardware import FLAVORS
from airflow_provider_hfjobs.local.metrics import ProcessGroupSampler, gpu_environment
from airflow_provider_hfjobs.local.store import JobRecord
from airflow_provider_hfjobs.local.volumes import MOUNTS_SCRIPT, VolumeError, Volumes

logger = logging.getLogger(__name__)

#: Seconds between looks at a running job's log file; its lines reach clients at most this late.
POLL_SECONDS = 0.05
#: Seconds between checks that a job's shim is still alive (it writes ``exit.json`` unless killed).
LIVENESS_SECONDS = 1.0
#: In a job with volumes: the helper's settings, the empty directory its private root is built on, and
#: where it says why it could not start the command.
MOUNTS_FILE = "mounts.json"
ROOT_DIR = "root"
START_ERROR_FILE = "start-error"
#: Seconds a shim has to say it started (it detaches and prints its pid in milliseconds).
SPAWN_TIMEOUT_SECONDS = 30.0
#: What the runner is doing for a job (see the module docstring).
QUEUED, SPAWNING, RUNNING = "queued", "spawning", "running"
#: The user ids jobs of a root server run as: above any account's (no ``/etc/passwd`` entry), one each.
JOB_UID_BASE = 1 << 20
JOB_UID_SPAN = 1 << 20
#: In a job with a user of its own: the account files it sees (naming its user), beside its record.
PASSWD_FILE, GROUP_FILE = "passwd", "group"
JOB_USER_NAME = "hfjob"


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


def ids_in_use() -> set[int]:
    """The user ids of every process (``/proc/<pid>`` is owned by its process's user)."""
    used: set[int] = set()
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError):
                    used.add(os.stat(f"/proc/{name}").st_uid)
    return used


def pick_job_uid(taken: set[int]) -> int:
    """An unused id in the jobs' range: random (other servers on this machine pick from it too), not
    ``taken`` by this server's jobs nor owned by any process."""
    used = taken | ids_in_use()
    for _ in range(1000):
        candidate = JOB_UID_BASE + secrets.randbelow(JOB_UID_SPAN)
        if candidate not in used:
            return candidate
    raise OSError("no free user id for the job")  # a million jobs at once


def ids_mapped(first: int, count: int, map_file: str = "/proc/self/uid_map") -> bool:
    """Whether ids ``first`` .. ``first + count - 1`` exist in this process's user namespace."""
    try:
        lines = Path(map_file).read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        inside, _, length = (int(part) for part in line.split())
        if inside <= first and first + count <= inside + length:
            return True
    return False


def isolation_problems(state_dir: Path) -> tuple[str, str]:
    """Why jobs cannot have a user of their own here, and why not their own view of the state directory
    (``""``: they can). Blocking: run it in a thread."""
    user = job_user_problem(state_dir) or ""
    if not user or os.geteuid() == 0:  # root without idmapped mounts: no view either (it would be root)
        return user, user
    probe_dir = state_dir / "mount-probe"
    probe_dir.mkdir(mode=0o700, exist_ok=True)
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", MOUNTS_SCRIPT, "--probe", str(probe_dir)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return user, str(exc)
    return user, "" if done.returncode == 0 else (done.stderr.strip() or "unknown error")


def job_user_problem(state_dir: Path) -> str | None:
    """Why jobs cannot have a user of their own here (``None``: they can). Blocking: run it in a thread."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if os.geteuid() != 0:
        return "the server does not run as root, so there is no other user to give them"
    for map_file in ("/proc/self/uid_map", "/proc/self/gid_map"):
        if not ids_mapped(JOB_UID_BASE, JOB_UID_SPAN, map_file):
            return f"this machine's user namespace does not map the ids {JOB_UID_BASE} and up ({map_file})"
    probe_dir = state_dir / "user-probe"
    probe_dir.mkdir(mode=0o700, exist_ok=True)
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", MOUNTS_SCRIPT, "--probe-user", str(probe_dir)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or "unknown error")


def account_files(job_dir: Path, uid: int, home: Path) -> tuple[str, str]:
    """``/etc/passwd`` and ``/etc/group`` as the job sees them: the machine's, plus its user."""
    written = []
    for name, line in (
        (PASSWD_FILE, f"{JOB_USER_NAME}:x:{uid}:{uid}:Hugging Face job:{home}:/bin/sh"),
        (GROUP_FILE, f"{JOB_USER_NAME}:x:{uid}:"),
    ):
        try:
            machine = Path(f"/etc/{name}").read_text(encoding="utf-8")
        except OSError:
            machine = ""
        path = str(job_dir / name)  # 0600 like every file of the state directory: idmapped for the job
        with open(shim.open_private(path, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as handle:
            handle.write(f"{machine.rstrip()}\n{line}\n".lstrip())
        written.append(path)
    return written[0], written[1]


def check_flavor_capacity(capacity: Mapping[str, int] | None) -> dict[str, int]:
    """``{flavor: N}`` with known flavors and N >= 0 (``ValueError`` naming the bad entry)."""
    checked: dict[str, int] = {}
    for flavor, count in (capacity or {}).items():
        if flavor not in FLAVORS:
            raise ValueError(
                f"flavor_capacity: unknown flavor {flavor!r}; use one of {', '.join(sorted(FLAVORS))}"
            )
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"flavor_capacity: {flavor}={count!r} must be a whole number, 0 or more")
        checked[flavor] = count
    return checked


class Capacity:
    """At most ``size`` jobs running, and at most ``per_flavor[f]`` of flavor ``f`` (0: none ever); a
    job resumed after a restart takes its place without waiting.

    Waiters are served first come, first served among those that fit: a job of a full flavor never holds
    up another flavor's. Everything is synchronous but :meth:`acquire`, so a slot is never lost to a
    cancel landing between two steps.
    """

    def __init__(self, size: int, per_flavor: Mapping[str, int] | None = None) -> None:
        if size < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.size = size
        self.per_flavor = check_flavor_capacity(per_flavor)
        self.used = 0
        self.by_flavor: Counter[str] = Counter()
        self._waiting: list[tuple[JobRecord, asyncio.Future[bool]]] = []

    def fits(self, flavor: str) -> bool:
        limit = self.per_flavor.get(flavor)
        return self.used < self.size and (limit is None or self.by_flavor[flavor] < limit)

    def take(self, flavor: str) -> None:
        self.used += 1
        self.by_flavor[flavor] += 1

    async def acquire(self, job: JobRecord) -> bool:
        """Wait for room for ``job``: ``True`` once it holds a slot, ``False`` if it ended (a cancel)
        while it waited, holding none."""
        if job.stage.is_terminal:
            return False
        if self.fits(job.flavor):
            self.take(job.flavor)
            return True
        entry = (job, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        try:
            return await entry[1]
        except asyncio.CancelledError:
            if entry in self._waiting:
                self._waiting.remove(entry)
            elif entry[1].done() and not entry[1].cancelled() and entry[1].result():
                self.release(job.flavor)  # granted, but its task is going: give the slot on
            raise

    def release(self, flavor: str) -> None:
        self.used -= 1
        self.by_flavor[flavor] -= 1
        self.wake()

    def wake(self) -> None:
        """Serve the waiters that fit now, and let go of those that ended meanwhile."""
        for entry in list(self._waiting):
            job, future = entry
            if future.done():
                self._waiting.remove(entry)
            elif job.stage.is_terminal:
                self._waiting.remove(entry)
                future.set_result(False)
            elif self.fits(job.flavor):
                self._waiting.remove(entry)
                self.take(job.flavor)
                future.set_result(True)


class ProcessRunner:
    """Starts jobs' shims and follows them. All methods run on the server's event loop.

    ``keep_jobs``: when the server stops, leave running jobs running (a state directory lets the next
    server pick them up); otherwise cancel them, and their shims also stop if the server process dies.
    """

    def __init__(
        self,
        max_concurrency: int = 4,
        keep_jobs: bool = False,
        pass_env: Mapping[str, str] | None = None,
        flavor_capacity: Mapping[str, int] | None = None,
        isolate_jobs: bool = True,
    ) -> None:
        self._capacity = Capacity(max_concurrency, flavor_capacity)
        self.keep_jobs = keep_jobs
        #: Variables of the server's environment every job gets (a job's own env and secrets win).
        self.pass_env = dict(pass_env or {})
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._jobs: dict[str, JobRecord] = {}
        self._phase: dict[str, str] = {}
        self._stopping = False
        #: Where jobs' volumes come from (set by the server; ``None``: a job with volumes fails).
        self.volumes: Volumes | None = None
        #: Why jobs get no user of their own, and why not even their own view of the state directory:
        #: ``None`` until the first spawn finds out, ``""`` when they do. ``isolate_jobs=False``: neither.
        off = None if isolate_jobs else "turned off (isolate_jobs=False)"
        self.user_problem: str | None = off
        self.view_problem: str | None = off
        self._uids: dict[str, int] = {}

    def start(self, job: JobRecord) -> None:
        """Queue a new (SCHEDULING) job."""
        self._launch(job, resumed=False)

    def resume(self, job: JobRecord) -> None:
        """Follow a job loaded from the state directory: start it if it still waits, else watch it. One
        cancelled while its shim started (the server stopped before the shim reported) is never started
        again: its shim, if any, is watched until it says CANCELED."""
        if job.cancel_requested and job.stage is JobStage.SCHEDULING and job.pid is None:
            job.finish(JobStage.CANCELED)
            return
        self._launch(job, resumed=job.stage is JobStage.RUNNING or job.pid is not None)

    def _launch(self, job: JobRecord, resumed: bool) -> None:
        if job.directory is None:
            raise ValueError("the process runner keeps each job's files: give the store a root directory")
        self._jobs[job.id] = job
        self._phase[job.id] = RUNNING if resumed else QUEUED
        task = asyncio.get_running_loop().create_task(self._run(job, resumed), name=f"job-{job.id}")
        self._tasks[job.id] = task

    async def cancel(self, job: JobRecord, wait: float = shim.KILL_GRACE_SECONDS + 3) -> None:
        """Stop the job; returns once it is CANCELED (or after ``wait`` seconds). Always wins: a queued
        job never starts, nor does the command of one whose shim is starting."""
        if job.stage.is_terminal:
            return
        job.request_cancel()
        task, phase = self._tasks.get(job.id), self._phase.get(job.id)
        if task is None or phase == QUEUED:
            job.finish(JobStage.CANCELED)  # still waiting for room: it never starts
            self._capacity.wake()  # its waiter lets go
            return
        if phase == RUNNING:
            self._signal(job, signal.SIGTERM)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), wait)

    async def shutdown(self) -> None:
        """Server stop: stop following jobs; unless ``keep_jobs``, cancel them first."""
        self._stopping = True
        if not self.keep_jobs:
            for job in list(self._jobs.values()):
                phase = self._phase.get(job.id)
                if phase == RUNNING:
                    self._signal(job, signal.SIGTERM)
                elif phase == QUEUED:
                    job.finish(JobStage.CANCELED, "Server stopped")
                # SPAWNING: its shim is told not to start the command (_spawn)
            self._capacity.wake()
            tasks = list(self._tasks.values())
            if tasks:
                await asyncio.wait(tasks, timeout=shim.KILL_GRACE_SECONDS + 2)
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _stops_new_shims(self, job: JobRecord) -> bool:
        """Whether a shim that just started must stop at once: its job was cancelled meanwhile, or the
        server is stopping its jobs."""
        return job.cancel_requested or (self._stopping and not self.keep_jobs)

    async def _run(self, job: JobRecord, resumed: bool) -> None:
        holds = False
        try:
            if resumed:
                self._capacity.take(job.flavor)
                holds = True
            else:
                holds = await self._capacity.acquire(job)
                if not holds:
                    return
            await self._start_and_follow(job, resumed)
        except Exception as exc:  # an EMFILE, a bug: this job ends, the others go on
            self._runner_failed(job, exc)
        finally:
            self._tasks.pop(job.id, None)
            self._jobs.pop(job.id, None)
            self._phase.pop(job.id, None)
            self._uids.pop(job.id, None)
            if holds:
                self._capacity.release(job.flavor)

    async def _start_and_follow(self, job: JobRecord, resumed: bool) -> None:
        if not resumed:
            self._phase[job.id] = SPAWNING
            if not await self._spawn(job):
                return
            self._phase[job.id] = RUNNING
        await self._follow(job)

    def _runner_failed(self, job: JobRecord, exc: Exception) -> None:
        """The runner could not start or follow the job: it ends ERROR, with its process stopped."""
        spawning = self._phase.get(job.id) == SPAWNING
        logger.error("job %s: the local runner failed: %s", job.id, exc, exc_info=exc)
        self._signal(job, signal.SIGTERM)  # no process of a job may run on unwatched
        if spawning:
            self._fail(job, f"Could not start the job's process: {exc}")
        else:
            self._fail(job, f"The local Jobs server stopped following the job after an error: {exc}")

    def _fail(self, job: JobRecord, message: str) -> None:
        """End a job that could not run: CANCELED if a cancel came first, else ERROR with ``message``."""
        if job.cancel_requested:
            job.finish(JobStage.CANCELED)
            return
        job.mark_running()
        job.finish(JobStage.ERROR, message)

    async def _spawn(self, job: JobRecord) -> bool:
        """Start the job's shim, and tell it to run the command (the job is RUNNING) or, if the job was
        cancelled meanwhile, not to (the job stays SCHEDULING until the shim says it is CANCELED);
        ``False`` (and the job ended) if it cannot start."""
        assert job.directory is not None
        workdir, home = job.directory / shim.WORK_DIR, job.directory / shim.HOME_DIR
        workdir.mkdir(mode=0o700, exist_ok=True)
        home.mkdir(mode=0o700, exist_ok=True)
        env = {
            **base_environment(str(workdir), str(home)),
            **self.pass_env,
            **(job.spec.get("environment") or {}),
            **job.secrets,
            **gpu_environment(job),  # a GPU flavor's simulated-GPU file (local/metrics.py), the server's path
        }
        command = [*job.spec["command"], *(job.spec.get("arguments") or [])]
        user = await self._job_user(job)
        if job.spec.get("volumes") or user is not None:
            try:
                command = self._wrapped(job, command, user)
            except VolumeError as exc:
                self._fail(job, str(exc))
                return False
        watch_pid = 0 if self.keep_jobs else os.getpid()
        launcher = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", shim.__file__, str(job.directory), str(job.timeout_seconds),
            str(job.attempts), "--", *command,  # the server's pid goes on stdin: not in any job's sight
            env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert launcher.stdin is not None and launcher.stdout is not None
        announced = b""
        try:  # the shim waits for our answer on its stdin; closing it unanswered means "never start"
            with contextlib.suppress(TimeoutError):
                announced = await asyncio.wait_for(launcher.stdout.readline(), SPAWN_TIMEOUT_SECONDS)
            if announced.strip().isdigit():
                pid = int(announced)
                if self._stops_new_shims(job):
                    job.attach(pid, process_started(pid))  # never RUNNING: SCHEDULING, then CANCELED
                    launcher.stdin.write(f"stop {watch_pid}\n".encode())
                else:
                    job.mark_running(pid=pid, pid_started=process_started(pid))
                    launcher.stdin.write(f"go {watch_pid}\n".encode())
                with contextlib.suppress(ConnectionError):
                    await launcher.stdin.drain()
            else:
                with contextlib.suppress(ProcessLookupError):
                    launcher.kill()
        finally:
            launcher.stdin.close()
        # Only now: asyncio's wait() also waits for the pipes, which the shim closes once answered.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(launcher.wait(), SPAWN_TIMEOUT_SECONDS)
        if not announced.strip().isdigit():
            self._fail(job, "Could not start the job's process")
            return False
        return True

    async def _job_user(self, job: JobRecord) -> dict[str, Any] | None:
        """How :mod:`.mounts` isolates the job: a user of its own (``uid``) with its own view of the state
        directory, or (a plain user's server) that view only; ``None``: neither, as before."""
        assert job.directory is not None
        state_dir = job.directory.parent.parent
        if self.user_problem is None:
            self.user_problem, self.view_problem = await asyncio.to_thread(isolation_problems, state_dir)
            if self.user_problem:
                logger.warning(
                    "local jobs run as this server's user (%s), so a job can read other running jobs' "
                    "environments and working directories through /proc, and signal them%s",
                    self.user_problem,
                    f"; nor are they kept from the state directory (other jobs' logs, secrets not yet "
                    f"delivered): {self.view_problem}" if self.view_problem else "",
                )  # fmt: skip
        home = job.directory / shim.HOME_DIR
        view = {
            "hide": str(state_dir.resolve()),
            "keep": [str((job.directory / shim.WORK_DIR).resolve()), str(home.resolve())],
        }
        if not self.user_problem:
            uid = pick_job_uid(set(self._uids.values()))
            self._uids[job.id] = uid
            passwd, group = account_files(job.directory, uid, home)
            return {"uid": uid, "gid": uid, **view, "passwd": passwd, "group": group}
        return None if self.view_problem else view

    def _wrapped(self, job: JobRecord, command: list[str], user: dict[str, Any] | None) -> list[str]:
        """The command wrapped in :mod:`.mounts`, which mounts the job's volumes for its process only
        and, given a ``user``, runs it as that user with its own view of the state directory."""
        assert job.directory is not None
        mounts: list[Any] = []
        if job.spec.get("volumes"):
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
            **({"user": user} if user is not None else {}),
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
