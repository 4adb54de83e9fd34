"""Shared by the benchmarks: a simulated local Jobs server in its own process, job creation, server-side
request counts, resource measurement, tables and JSON results.

The server runs in a separate process so that its CPU time never counts against the client measured.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

TOKEN = "hf_bench_token"
NAMESPACE = "bench"
CONN_ID = "hf_bench"
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class SimulatedServer:
    url: str
    process: subprocess.Popen[str]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def stats(self, per_job: bool = False) -> dict[str, Any]:
        params = {"per_job": "1"} if per_job else None
        return httpx.get(f"{self.url}/_local/stats", headers=self.headers, params=params, timeout=60).json()

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (it shares the machine with the client)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset_stats(self) -> None:
        httpx.delete(f"{self.url}/_local/stats", headers=self.headers, timeout=60).raise_for_status()

    def use_as_default_connection(self) -> None:
        """Point an Airflow connection (by environment, as a deployment would) at this server."""
        conn = {
            "conn_type": "hf_jobs",
            "host": self.url,
            "password": TOKEN,
            "extra": {"namespace": NAMESPACE},
        }
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)

    def create_jobs(
        self,
        count: int,
        *,
        duration: float,
        lines: int,
        line_bytes: int = 60,
        phase: str = "random",
        jitter: float = 0.0,
        start_after: Path | None = None,
    ) -> list[str]:
        """``count`` simulated jobs, created concurrently; returns their ids. ``start_after``: a file that
        does not exist yet; the jobs are RUNNING at once but begin to print (and to count their duration)
        only once it does, all in the same moment however long creating them took."""
        env = {
            "HFJOBS_SIM_DURATION": str(duration),
            "HFJOBS_SIM_LINES": str(lines),
            "HFJOBS_SIM_LINE_BYTES": str(line_bytes),
            "HFJOBS_SIM_PHASE": phase,
            "HFJOBS_SIM_JITTER": str(jitter),
        }
        if start_after is not None:
            env["HFJOBS_SIM_START_AFTER"] = str(start_after)
        body = {"dockerImage": "python:3.12", "command": ["python", "train.py"], "environment": env}

        payload = json.dumps(body).encode()
        headers = {**self.headers, "Content-Type": "application/json"}
        address = urlsplit(self.url)
        local = threading.local()

        def one(_: int) -> str:
            # http.client over kept-alive connections, a few threads: a tenth of httpx's client CPU per
            # request, so thousands of jobs are created in seconds and start (and end) close together.
            if not hasattr(local, "connection"):
                local.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
                local.connection.connect()
                # headers and body leave in two writes: without this, Nagle waits for a delayed ACK (40 ms)
                local.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local.connection.request("POST", f"/api/jobs/{NAMESPACE}", payload, headers)
            response = local.connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"creating a simulated job failed: {response.status} {answer[:200]!r}")
            return json.loads(answer)["id"]

        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(one, range(count)))

    def finished_at(self, job_ids: list[str]) -> dict[str, float]:
        """Server-side terminal moment of each job (epoch seconds, ms resolution), from the job list."""
        from airflow_provider_hfjobs.jobs import parse_timestamp

        wanted, found = set(job_ids), {}
        url: str | None = f"{self.url}/api/jobs/{NAMESPACE}"
        with httpx.Client(headers=self.headers, timeout=120) as client:
            while url:
                response = client.get(url)
                for job in response.json():
                    if job["id"] in wanted and job.get("finishedAt"):
                        found[job["id"]] = parse_timestamp(job["finishedAt"]).timestamp()
                url = response.links.get("next", {}).get("url")
        return found


@contextmanager
def simulated_server(scenario: str = "duration=5,lines=10") -> Iterator[SimulatedServer]:
    """``hfjobs-local serve --simulate`` on a free port, in its own process; stopped at the end."""
    raise_fd_limit()
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_hfjobs.local", "serve", "--port", "0", "--token", TOKEN,
         "--namespace", NAMESPACE, "--simulate", scenario],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if not first.startswith("Local Hugging Face Jobs server on "):
            raise RuntimeError(f"the simulated server did not start: {first!r}")
        yield SimulatedServer(first.split()[6], process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def raise_fd_limit() -> None:
    """Thousands of concurrent streams need thousands of sockets (inherited by the server process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Usage:
    """CPU seconds and wall time of this process between ``start()`` and ``stop()``, and its peak RSS."""

    wall: float = 0.0
    cpu: float = 0.0
    peak_rss_mb: float = 0.0
    _t0: float = field(default=0.0, repr=False)
    _c0: float = field(default=0.0, repr=False)

    def start(self) -> Usage:
        self._t0, self._c0 = time.perf_counter(), _cpu()
        return self

    def stop(self) -> Usage:
        self.wall = time.perf_counter() - self._t0
        self.cpu = _cpu() - self._c0
        self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return self


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class LoopLag:
    """Largest delay of a 50 ms ticker on the running event loop: how long the loop was blocked."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self.moments: list[float] = []  # seconds from start() to each lag's tick
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.lags.append(loop.time() - before - self.interval)
            self.moments.append(before - started)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    @property
    def max(self) -> float:
        return max(self.lags, default=0.0)

    @property
    def p99(self) -> float:
        return percentile(self.lags, 0.99)

    def max_after(self, seconds: float) -> float:
        """The largest lag of the ticks that began ``seconds`` or more after start()."""
        return max(
            (lag for lag, at in zip(self.lags, self.moments, strict=True) if at >= seconds), default=0.0
        )


class GcPauses:
    """How long CPython's cyclic garbage collector stopped the process, per collection (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.full: list[tuple[float, float]] = []  # (seconds into the run, pause) of each full collection
        self.cpu = 0.0  # CPU seconds the collections took (a pause on a busy machine is also a wait)
        self._started = self._entered = self._cpu_started = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._cpu_started = time.process_time()
        else:
            pause = time.perf_counter() - self._started
            self.cpu += time.process_time() - self._cpu_started
            self.pauses.append(pause)
            if info["generation"] == 2:
                self.full.append((self._started - self._entered, pause))

    def __enter__(self) -> GcPauses:
        self._entered = time.perf_counter()
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def machine() -> dict[str, Any]:
    import airflow

    return {
        "python": platform.python_version(),
        "airflow": airflow.__version__,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain Markdown table (what docs/benchmarks.md shows)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path
