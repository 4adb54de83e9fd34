"""``airflow`` commands forked from an interpreter that has already imported Airflow, one per environment.

An Airflow 3.3 ``airflow dags test`` costs about 12 CPU seconds here, of which about 5 are imports (Airflow,
the Task SDK, the execution API's FastAPI app); Airflow 2.11's about 3, mostly imports. The suite runs some
sixty of them per Airflow version, so most of its CPU time went to importing the same modules again. A
*zygote* (the name Android and Chromium give the pattern) imports them once for an AIRFLOW_HOME and its
environment, then forks one child per command: the child runs Airflow's own CLI entry point
(``airflow.__main__.main``) with the command's arguments, its stdin on /dev/null and its stdout and stderr
in files, in a process (and process group) of its own, as a fresh ``airflow`` process would; only the
imports are shared. Airflow itself runs tasks in forked processes (the Task SDK supervisor, LocalExecutor),
so a fork after its imports is a state it is built for.

The zygote never imports the provider or a DAG file (each child parses the DAGs it runs, so an import
error in them is the child's, as in a real run), opens no database connection and starts no thread before
forking (it checks, and refuses to fork otherwise). ``HFJOBS_TESTS_FORK=0`` runs every command as a fresh
``airflow`` process instead; the tests that are about a fresh process (the installed wheel, the README's
first hour, the deployments) start ``airflow`` themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

#: Modules an ``airflow dags test`` imports, imported by the zygote before it forks (each child would
#: import them anyway). Airflow 2.11 lacks the Task SDK ones: each is imported if it exists.
PRELOAD = (
    "airflow",
    "airflow.cli.cli_parser",
    "airflow.cli.commands.dag_command",
    "airflow.models.dag",
    "airflow.models.taskinstance",
    "airflow.dag_processing.dagbag",
    "airflow.sdk",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
    "airflow.api_fastapi.execution_api.app",
    "airflow.api_fastapi.execution_api.routes",
    "airflow.providers.common.compat.sdk",
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.decorators.python",
    "a2wsgi",
    "alembic.command",
    "alembic.runtime.migration",
    "argcomplete",
    "requests",
    "pygments.formatters.html",
    "pygments.lexers.python",
)

#: The zygote's side: preload, then one JSON request per line on stdin, answered on stdout with the
#: child's pid, then its exit status.
_ZYGOTE = r"""
import importlib, json, os, sys, threading
# The channel is the pipe on fd 1; what the imports print goes to fd 2 (the zygote's log) instead.
channel_in, channel_out = sys.stdin.buffer, os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
if hasattr(__import__("signal"), "SIGUSR1"):  # kill -USR1 <pid>: a child's Python stacks, in its stderr
    import faulthandler, signal
    faulthandler.register(signal.SIGUSR1, all_threads=True)
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
airflow_bin = sys.argv[2]


def child(request):
    # Become the command: as Airflow's `airflow` script does, sys.exit(main()), which unwinds out of the
    # zygote's loop into a normal interpreter exit (threads joined, executors shut down, atexit handlers
    # run, streams flushed) with main's status, or an uncaught exception's traceback and status 1.
    os.setpgid(0, 0)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    channel_out.close()  # the child holds no end of the zygote's channel (fd 0 is replaced)
    sys.argv = [airflow_bin, *request["args"]]
    from airflow.__main__ import main

    sys.exit(main())


for line in channel_in:
    request = json.loads(line)
    if threading.active_count() != 1:  # a fork would copy a thread's locks without the thread
        channel_out.write(json.dumps({"error": f"{threading.active_count()} threads in the zygote"}) + "\n")
        continue
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        child(request)
    channel_out.write(json.dumps({"pid": pid}) + "\n")
    _, status, usage = os.wait4(pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    channel_out.write(json.dumps({"status": os.waitstatus_to_exitcode(status), "cpu": cpu}) + "\n")
"""


class CannotFork(RuntimeError):
    """The zygote refused to fork (a thread appeared in it): the command runs as a fresh process."""


class Zygote:
    """One pre-imported Airflow interpreter for one environment and working directory."""

    def __init__(self, airflow: str, env: dict[str, str], cwd: Path) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - the zygote's own output, for a failure message
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, json.dumps(PRELOAD), airflow], env=env, cwd=cwd,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, start_new_session=True,
        )  # fmt: skip
        self.airflow = airflow

    def run(self, args: tuple[str, ...], timeout: float) -> subprocess.CompletedProcess[str]:
        """Like ``subprocess.run([airflow, *args], capture_output=True, text=True, timeout=timeout)``."""
        deadline = time.monotonic() + timeout
        with tempfile.TemporaryDirectory(prefix="hfjobs-forked-airflow-") as scratch:
            out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
            request = {"args": list(args), "stdout": str(out), "stderr": str(err)}
            assert self.process.stdin is not None
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
            started = self._answer(deadline + 60)  # the zygote may still be importing
            if "pid" not in started:
                raise CannotFork(started.get("error", str(started)))
            try:
                ended = self._answer(deadline)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(started["pid"], signal.SIGKILL)
                self._answer(time.monotonic() + 30)
                raise subprocess.TimeoutExpired(
                    [self.airflow, *args], timeout, _read(out), _read(err)
                ) from None
            if log := os.environ.get("HFJOBS_AIRFLOW_CPU_LOG"):  # what each command cost, for measuring
                with open(log, "a") as lines:
                    lines.write(json.dumps({"args": list(args), "cpu_s": round(ended["cpu"], 2)}) + "\n")
            return subprocess.CompletedProcess([self.airflow, *args], ended["status"], _read(out), _read(err))

    def _answer(self, deadline: float) -> dict:
        assert self.process.stdout is not None
        while True:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                line = self.process.stdout.readline()
                if not line:
                    self.log.seek(0)
                    tail = self.log.read()[-4000:].decode(errors="replace")
                    raise RuntimeError(f"the Airflow zygote exited ({self.process.wait()}):\n{tail}")
                return json.loads(line)
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.airflow, 0)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(OSError):
            assert self.process.stdout is not None
            self.process.stdout.close()
        self.log.close()


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


#: A test process keeps the zygotes of its two most recent environments (each holds ~200 MB): a module's
#: home is used by its tests in a row, and one test may run a command in a changed environment meanwhile.
_ZYGOTES: OrderedDict[tuple, Zygote] = OrderedDict()
_KEEP = 2


def config_file(env: dict[str, str]) -> Path:
    return Path(env.get("AIRFLOW_CONFIG") or Path(env["AIRFLOW_HOME"]) / "airflow.cfg")


def run_forked(
    airflow: str, args: tuple[str, ...], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str] | None:
    """The command's result, or None when it must run as a fresh process: a home's first command, which
    writes its ``airflow.cfg`` (generating its Fernet key and secrets) as Airflow's CLI does at start (a
    zygote that read its configuration before the file existed would lack them), or a zygote that cannot
    fork safely. A changed file is a new zygote (its state is part of the key)."""
    config = config_file(env)
    if not config.exists():
        return None
    stat = config.stat()
    key = (airflow, str(cwd), tuple(sorted(env.items())), stat.st_mtime_ns, stat.st_size)
    zygote = _ZYGOTES.pop(key, None) or Zygote(airflow, env, cwd)
    _ZYGOTES[key] = zygote
    while len(_ZYGOTES) > _KEEP:
        _ZYGOTES.popitem(last=False)[1].close()
    try:
        return zygote.run(args, timeout)
    except CannotFork:
        _ZYGOTES.pop(key).close()
        return None
    except RuntimeError:  # the zygote died: the next command gets a new one
        _ZYGOTES.pop(key).close()
        raise


def close_all() -> None:
    while _ZYGOTES:
        _ZYGOTES.popitem()[1].close()


def enabled() -> bool:
    return os.environ.get("HFJOBS_TESTS_FORK", "1") != "0"
