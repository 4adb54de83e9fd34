"""Runs each job's command as a local process, for the local Jobs server.

One process per job, in its own working directory and process group, with a small base environment plus
the job's ``environment`` and ``secrets``. The server's own interpreter directory leads ``PATH`` so that
``python`` and ``uv`` resolve on any machine. The image is recorded, not pulled. stdout and stderr become
timestamped log lines. Exit 0 → COMPLETED; anything else → ERROR ``exit code N``; the job's timeout →
ERROR ``Job timeout``; cancel → CANCELED. Jobs beyond ``max_concurrency`` wait in SCHEDULING.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path

from airflow_provider_hfjobs.jobs import JobStage
from airflow_provider_hfjobs.local.store import JobRecord

#: Longest log line kept; the rest of a longer line is cut (production caps lines too).
MAX_LINE_BYTES = 64 * 1024
#: Seconds between SIGTERM and SIGKILL when a job is cancelled or times out.
KILL_GRACE_SECONDS = 2.0


def base_environment(workdir: str) -> dict[str, str]:
    """What every job starts from: enough to run ``python``/``uv``, nothing of the server's own secrets."""
    python_dir = os.path.dirname(sys.executable)
    return {
        "PATH": os.pathsep.join([python_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": os.environ.get("HOME", workdir),
        "LANG": "C.UTF-8",
        "TMPDIR": workdir,
        "PYTHONUNBUFFERED": "1",  # live logs from print() without flush=True
        "UV_PYTHON_DOWNLOADS": "never",  # use the local interpreter, never fetch one
        "UV_NO_PROGRESS": "1",
    }


class ProcessRunner:
    """Starts, watches and stops job processes. All methods run on the server's event loop."""

    def __init__(self, work_root: str, max_concurrency: int = 4) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.work_root = work_root
        self._slots = asyncio.Semaphore(max_concurrency)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._processes: dict[str, asyncio.subprocess.Process] = {}

    def start(self, job: JobRecord) -> None:
        self._tasks[job.id] = asyncio.get_running_loop().create_task(self._run(job), name=f"job-{job.id}")

    async def cancel(self, job: JobRecord, wait: float = KILL_GRACE_SECONDS + 3) -> None:
        """Stop the job; returns once it is CANCELED (or after ``wait`` seconds)."""
        if job.stage.is_terminal:
            return
        job.cancel_requested = True
        process = self._processes.get(job.id)
        if process is None:
            job.finish(JobStage.CANCELED)  # still scheduling: it never starts
            return
        await self._kill(process)
        task = self._tasks.get(job.id)
        if task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), wait)

    async def shutdown(self) -> None:
        """Kill every running job's process group (server stop)."""
        for job_id, process in list(self._processes.items()):
            await self._kill(process, grace=0.5)
            self._processes.pop(job_id, None)
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, job: JobRecord) -> None:
        try:
            async with self._slots:
                if job.stage.is_terminal:
                    return
                await self._execute(job)
        finally:
            self._tasks.pop(job.id, None)

    async def _execute(self, job: JobRecord) -> None:
        workdir = tempfile.mkdtemp(prefix=f"{job.id}-", dir=self.work_root)
        env = {**base_environment(workdir), **(job.spec.get("environment") or {}), **job.secrets}
        command = [*job.spec["command"], *(job.spec.get("arguments") or [])]
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group, so cancel kills its children too
            )
        except OSError as exc:
            reason = f"Could not start {command[0]!r}: {exc.strerror or exc}"
            job.mark_running()
            job.add_line(reason)
            job.finish(JobStage.ERROR, reason)
            return
        self._processes[job.id] = process
        job.mark_running()
        try:
            await asyncio.wait_for(self._pump(job, process), job.timeout_seconds)
            code = await process.wait()
        except TimeoutError:
            await self._kill(process)
            job.finish(JobStage.ERROR, "Job timeout")
            return
        finally:
            self._processes.pop(job.id, None)
        if job.cancel_requested:
            job.finish(JobStage.CANCELED)
        elif code == 0:
            job.finish(JobStage.COMPLETED)
        else:
            job.finish(JobStage.ERROR, f"exit code {code if code > 0 else 128 - code}")

    @staticmethod
    async def _pump(job: JobRecord, process: asyncio.subprocess.Process) -> None:
        """Copy output into the job's log, line by line, until the process closes its output."""
        assert process.stdout is not None
        pending = b""
        while chunk := await process.stdout.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                job.add_line(line[:MAX_LINE_BYTES].rstrip(b"\r").decode("utf-8", "replace"))
            if len(pending) > MAX_LINE_BYTES:
                job.add_line(pending[:MAX_LINE_BYTES].decode("utf-8", "replace"))
                pending = b""
        if pending:
            job.add_line(pending.rstrip(b"\r").decode("utf-8", "replace"))

    @staticmethod
    async def _kill(process: asyncio.subprocess.Process, grace: float = KILL_GRACE_SECONDS) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after ``grace`` seconds."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), grace)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)  # stragglers that left the leader behind
                return
            except TimeoutError:
                continue


def default_work_root() -> str:
    return str(Path(tempfile.mkdtemp(prefix="hfjobs-local-")))
