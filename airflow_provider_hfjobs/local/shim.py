"""The job shim: one small process per job that owns the job's command, for the local Jobs server.

It is what lets a server restart lose nothing. The shim detaches from the server (double fork, own
session), runs the command in its own process group, writes every output line with the moment it was
printed to ``log.jsonl`` and, at the end, the outcome to ``exit.json``, both in the job's directory. The
server only reads those files and signals the shim, so it can stop and start again while jobs run on.

Its files are private (0600, directories 0700) whatever the umask; the command itself runs with the
server's umask in ``work/``, with ``home/`` as its ``HOME``.

The shim enforces the job's timeout itself and, on SIGTERM (cancel), stops the command: SIGTERM to its
process group, SIGKILL after a grace period. With ``--watch-pid`` it also does that when the server
process disappears (a server without a state directory cannot pick its jobs up again). SIGTERM is blocked
from the shim's first instruction until its handler is in place, so a cancel sent while it starts is
never lost. And the command starts only once the server said so: after printing its pid, the shim reads
one line on stdin, ``go`` (the job is RUNNING now) or ``stop`` (it was cancelled while the shim started:
the command never starts, ``exit.json`` says ``canceled``); on end of file (the server died before
deciding) it leaves without a trace, and the job, still SCHEDULING in the record, starts afresh under
the next server.

Every process of a job ends with it, as every process of a container does. On Linux the shim makes itself
a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): a process the command detaches (``setsid``,
double fork, ``nohup ... &``) is re-parented to the shim instead of to init. When the command ends
(exit, cancel, timeout, server gone), the shim SIGKILLs every process still below it, found by walking
``/proc``, and reaps them; only then does it write ``exit.json``. Elsewhere (macOS, BSD: no subreaper, no
``/proc``) only the command's process group is stopped: a process that left the group (``setsid``)
outlives the job and must be stopped by hand. A process that escapes even on Linux: one whose shim was
itself SIGKILLed (its orphans go to init).

Standard library only, run as ``python -I -S shim.py``: it starts fast and a job's environment
(``PYTHONPATH``, ...) cannot break it.

    shim.py JOB_DIR TIMEOUT_SECONDS ATTEMPTS -- COMMAND [ARG ...]

It prints its own pid on stdout once detached, then waits for ``go WATCH_PID``/``stop WATCH_PID`` on
stdin; ``WATCH_PID`` 0 means "keep running if the server goes". The server's pid comes on stdin, never
in the arguments: a job can read its shim's command line, and the pid would point it at the server.
With ``ATTEMPTS`` above 1 a failed command (non-zero exit, timeout, start failure; never a cancel) runs
again, like a new container: fresh ``work/`` and ``home/``, the ``===== Job started`` marker in the log
again, its own timeout; ``attempt.json`` tells the server how many attempts failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time

#: Longest log line kept; the rest of a longer line is cut (production caps lines too).
MAX_LINE_BYTES = 64 * 1024
#: Seconds between SIGTERM and SIGKILL when a job is cancelled or times out.
KILL_GRACE_SECONDS = 2.0
#: How often the shim looks at its timeout and the server while the command is quiet.
TICK_SECONDS = 0.25

LOG_FILE = "log.jsonl"
EXIT_FILE = "exit.json"
#: Written when an attempt failed and the next one starts: ``{"failures": N, "reason": "exit code 1"}``.
ATTEMPT_FILE = "attempt.json"
WORK_DIR = "work"
HOME_DIR = "home"
#: ``prctl`` option: orphaned descendants are re-parented to this process instead of init (Linux 3.4+).
PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4
#: Rounds of "find what is left below the shim, SIGKILL it, reap it" before giving up on a fork storm.
KILL_ROUNDS = 200


def make_undumpable() -> None:
    """``prctl(PR_SET_DUMPABLE, 0)``: a job of the same user cannot read this shim's environment (its
    job's secrets) nor its ``/proc/<pid>/root`` (the machine's view, state directory included)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); ``False`` where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def process_table() -> dict[int, tuple[int, bool]] | None:
    """Every process as ``pid -> (parent pid, is a zombie)``, from ``/proc``; ``None`` without ``/proc``."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    table: dict[int, tuple[int, bool]] = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        table[int(name)] = (int(fields[1]), fields[0] in (b"Z", b"X"))
    return table


def descendants(root: int, table: dict[int, tuple[int, bool]]) -> list[int]:
    """The pids below ``root`` in ``table`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, pending = [], list(children.get(root, []))
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def reap_all() -> None:
    """Collect every exited child (orphans re-parented to the shim become its children)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def reap_orphans(command_pid: int) -> None:
    """While the command runs: collect exited orphans, never the command (``Popen`` waits for that one)."""
    if not hasattr(os, "waitid"):
        return
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == command_pid:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(info.si_pid, 0)


def kill_everything_below(pid: int) -> None:
    """SIGKILL and reap every process below ``pid`` (the shim, once its command was reaped), until none is
    left: a process forking while it is killed is caught in the next round."""
    for _ in range(KILL_ROUNDS):
        table = process_table()
        if table is None:
            return
        below = descendants(pid, table)
        for child in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)
        reap_all()
        if not below:
            return
        if all(table[child][1] for child in below):  # only zombies were left: reaped or being reaped
            time.sleep(0.001)
        else:
            time.sleep(0.01)


def open_private(path: str, flags: int) -> int:
    """A file descriptor on ``path``, created (or made) mode 0600 whatever the umask."""
    descriptor = os.open(path, flags | os.O_CREAT, 0o600)
    os.fchmod(descriptor, 0o600)
    return descriptor


def write_json_atomically(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def marker(moment: float) -> str:
    """The line that opens each attempt's log, as the Hub's (the first one the server sends itself)."""
    return f"===== Job started at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(moment))} ====="


def describe(code: int, reason: str | None) -> str:
    """How an attempt ended, in the words of the job's final ``status.message``."""
    if reason == "timeout":
        return "Job timeout"
    return reason or f"exit code {code}"


class Shim:
    def __init__(
        self, job_dir: str, timeout: float, watch_pid: int, command: list[str], attempts: int = 1
    ) -> None:
        self.job_dir = job_dir
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.deadline = time.monotonic() + timeout
        self.watch_pid = watch_pid
        self.command = command
        self.stop_reason: str | None = None  # "canceled", "timeout" or "server gone"
        self.kill_at: float | None = None
        #: Whether orphans of the command come back to the shim (Linux), so that it can stop them too.
        self.subreaper = become_subreaper()
        self.next_reap = 0.0
        descriptor = open_private(os.path.join(job_dir, LOG_FILE), os.O_WRONLY | os.O_APPEND)
        self.log = open(descriptor, "ab", buffering=0)  # noqa: SIM115

    def emit(self, lines: list[bytes]) -> None:
        now = time.time()
        records = [
            json.dumps({"t": now, "line": line[:MAX_LINE_BYTES].rstrip(b"\r").decode("utf-8", "replace")})
            for line in lines
        ]
        self.log.write(("\n".join(records) + "\n").encode())

    def finish(self, code: int, reason: str | None) -> None:
        write_json_atomically(os.path.join(self.job_dir, EXIT_FILE), {"code": code, "reason": reason})

    def run(self) -> int:
        # A handler, not SIG_IGN: the command must not inherit an ignored SIGTERM.
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop("canceled"))
        # A cancel (SIGTERM) wakes the loop at once instead of at the next tick.
        self.wakeup_read, wakeup_write = os.pipe()
        os.set_blocking(wakeup_write, False)
        signal.set_wakeup_fd(wakeup_write)
        # Blocked since main() began: a cancel sent meanwhile is delivered to the handler now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        code, reason = self.run_once()
        for attempt in range(2, self.attempts + 1):
            if (code == 0 and reason is None) or self.stopped_for_good():
                break
            # Like a new container: fresh directories, the start marker again, its own timeout.
            write_json_atomically(
                os.path.join(self.job_dir, ATTEMPT_FILE),
                {"failures": attempt - 1, "reason": describe(code, reason)},
            )
            self.fresh_directories()
            self.emit([marker(time.time()).encode()])
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # a cancel now is never lost
            if self.stop_reason == "timeout":
                self.stop_reason = None
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            if self.stopped_for_good():
                reason = self.stop_reason
                break
            self.kill_at = None
            self.deadline = time.monotonic() + self.timeout
            code, reason = self.run_once()
        self.finish(code, reason)
        return 0

    def stopped_for_good(self) -> bool:
        """Cancelled, or the server it watches is gone: no further attempt."""
        return self.stop_reason in ("canceled", "server gone")

    def fresh_directories(self) -> None:
        for name in (WORK_DIR, HOME_DIR):
            path = os.path.join(self.job_dir, name)
            shutil.rmtree(path, ignore_errors=True)
            os.makedirs(path, mode=0o700, exist_ok=True)

    def run_once(self) -> tuple[int, str | None]:
        """Run the command once: its exit code and why it was stopped (or could not start)."""
        if self.stopped_for_good():  # cancelled before the command started: it never starts
            return 143, self.stop_reason
        workdir = os.path.join(self.job_dir, WORK_DIR)
        os.makedirs(workdir, mode=0o700, exist_ok=True)
        try:
            process = subprocess.Popen(
                self.command,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,  # its own group: a cancel reaches the command's children too
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte (the server refuses those first)
            reason = f"Could not start {self.command[0]!r}: {getattr(exc, 'strerror', None) or exc}"
            self.emit([reason.encode()])
            return 127, reason
        assert process.stdout is not None
        fd = process.stdout.fileno()
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        selector.register(self.wakeup_read, selectors.EVENT_READ)
        pending = b""
        while process.poll() is None:
            self.check(process)
            if self.subreaper and time.monotonic() >= self.next_reap:  # no zombie piles up meanwhile
                self.next_reap = time.monotonic() + 1.0
                reap_orphans(process.pid)
            if fd not in selector.get_map():  # output closed: wait for the exit itself
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(TICK_SECONDS)
                continue
            ready = {key.fd for key, _ in selector.select(TICK_SECONDS)}
            if self.wakeup_read in ready:
                os.read(self.wakeup_read, 512)
            if fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(fd)
                pending = self.take_lines(pending + chunk)
        selector.close()
        # Like a container whose main process ended: the rest stops, what it already printed is logged;
        # detached processes too (they came back to the shim, a subreaper).
        self.signal_group(process, signal.SIGKILL)
        kill_everything_below(os.getpid())
        os.set_blocking(fd, False)
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(fd, 65536):
                pending = self.take_lines(pending + chunk)
        process.stdout.close()
        if pending:
            self.emit([pending])
        code = process.returncode
        return (code if code >= 0 else 128 - code), self.stop_reason

    def take_lines(self, data: bytes) -> bytes:
        """Log the complete lines in ``data`` (and an over-long partial one); return the rest."""
        *lines, pending = data.split(b"\n")
        if len(pending) > MAX_LINE_BYTES:
            lines.append(pending)
            pending = b""
        if lines:
            self.emit(lines)
        return pending

    def request_stop(self, reason: str) -> None:
        # A cancel during a timeout's grace period still counts: it decides whether another attempt runs.
        if self.stop_reason is None or (self.stop_reason == "timeout" and reason != "timeout"):
            self.stop_reason = reason

    def check(self, process: subprocess.Popen) -> None:
        """Timeout, server gone, cancel: SIGTERM the command's group once, SIGKILL it after the grace."""
        if self.stop_reason is None and time.monotonic() > self.deadline:
            self.request_stop("timeout")
        if self.stop_reason is None and self.watch_pid and not alive(self.watch_pid):
            self.request_stop("server gone")
        if self.stop_reason is None:
            return
        if self.kill_at is None:
            self.kill_at = time.monotonic() + KILL_GRACE_SECONDS
            self.signal_group(process, signal.SIGTERM)
        elif time.monotonic() > self.kill_at:
            self.signal_group(process, signal.SIGKILL)

    @staticmethod
    def signal_group(process: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


def detach() -> bytes:
    """Double fork into a new session (the server is never our parent, so it can go and come back), say
    our pid, and return the server's answer: ``b"go PID"``, ``b"stop PID"``, or ``b""`` if it never
    came."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    sys.stdout.write(f"{os.getpid()}\n")
    sys.stdout.flush()
    answer = b""
    while not answer.endswith(b"\n") and len(answer) < 64:
        try:
            chunk = os.read(0, 64)
        except OSError:
            break
        if not chunk:
            break
        answer += chunk
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return answer.strip() if answer.endswith(b"\n") else b""


def main(argv: list[str]) -> int:
    # Until run() has its handler: a SIGTERM (cancel) now waits instead of killing the shim unrecorded.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    make_undumpable()
    job_dir, timeout, attempts, separator, *command = argv
    if separator != "--" or not command:
        sys.stderr.write("usage: shim.py JOB_DIR TIMEOUT_SECONDS ATTEMPTS -- COMMAND [ARG ...]\n")
        return 2
    answer, _, watch_pid = detach().partition(b" ")
    if answer not in (b"go", b"stop") or not watch_pid.strip().isdigit():
        return 0  # the server went before it decided: nothing ran, nothing is written
    job = Shim(job_dir, float(timeout), int(watch_pid), command, int(attempts))
    if answer == b"stop":
        job.request_stop("canceled")  # cancelled while the shim started: the command never starts
    return job.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
