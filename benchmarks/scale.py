"""Scale: N concurrent ``HfJobTrigger.run()`` coroutines in one event loop, as one triggerer runs them.

    .venv/bin/python benchmarks/scale.py                      # N = 100, 500, 1000, 2000, streaming and not
    .venv/bin/python benchmarks/scale.py --n 2000 --modes stream

Jobs are simulated by the local server (``--simulate``, another process): each runs ``--duration``
seconds and prints ``--lines`` lines. ``--ends spread``: each job's duration is drawn from ±50% of it, so
2,000 jobs of 20 s end at 100 a second, the steady rate of any 2,000 concurrent jobs of that mean length;
``--ends burst``: all end within the second or so it took to create them (a 2,000-way mapped task). Every line a trigger reads is logged as in a triggerer's trigger
runner: structlog, JSON, one unbuffered write per event (to a discarding file instead of the supervisor). Measured in this process only: CPU
seconds, peak RSS, the largest event-loop lag of a 50 ms ticker, API calls per job (counted by the
server), the connections they came on, and completion-detection latency (the server's ``finishedAt`` → the
trigger's event). "base full GC ms" is one full collection before any trigger: the process's heap is mostly
Airflow's, and every full collection during the run stops the loop at least that long.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    CONN_ID,
    NAMESPACE,
    GcPauses,
    LoopLag,
    SimulatedServer,
    Usage,
    percentile,
    rss_mb,
    save,
    simulated_server,
    table,
)

FROZEN_HEAP = Path(__file__).resolve().parent / "frozen_heap"
COLUMNS = [
    "triggers", "logs", "ends", "wall s", "CPU s", "avg cores", "peak RSS MB", "max loop lag ms",
    "max lag after start-up ms", "p99 loop lag ms", "max GC pause ms", "full GCs", "base full GC ms", "heap",
    "API calls/job", "max calls/job", "connections/job", "latency p50 s", "latency p99 s", "events ok",
    "server CPU s",
]  # fmt: skip


def quiet_task_logger() -> None:
    """Log as a triggerer's trigger runner does: structlog, every event as JSON written unbuffered to the
    supervisor's channel (here a discarding file), so each trigger log line costs what it costs there."""
    from airflow.sdk.log import configure_logging, reset_logging

    reset_logging()
    channel = open(os.devnull, "wb", buffering=0)  # noqa: SIM115 - open for the whole run
    configure_logging(json_output=True, output=channel, sending_to_supervisor=True)
    sys.excepthook = sys.__excepthook__  # a benchmark's own errors must still show


async def watch(
    job_ids: list[str], stream: bool, poll_interval: float
) -> tuple[dict[str, float], dict, LoopLag]:
    from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger

    moments: dict[str, float] = {}
    statuses: dict[str, str] = {}
    lag = LoopLag()
    lag.start()

    async def one(job_id: str) -> None:
        trigger = HfJobTrigger(job_id, NAMESPACE, CONN_ID, poll_interval=poll_interval, stream_logs=stream)
        async for event in trigger.run():
            moments[job_id] = time.time()
            statuses[job_id] = event.payload["status"]

    await asyncio.gather(*(one(job_id) for job_id in job_ids))
    lag.stop()
    return moments, statuses, lag


def base_full_gc_ms() -> float:
    gc.collect()
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1000


def run(
    n: int, stream: bool, duration: float, lines: int, poll_interval: float, server, phase: str, ends: str
) -> dict:
    from airflow_provider_hfjobs.triggers.hfjobs import START_COST_SECONDS

    jitter = duration / 2 if ends == "spread" else 0.0
    job_ids = server.create_jobs(n, duration=duration, lines=lines, phase=phase, jitter=jitter)
    server.reset_stats()
    usage, server_cpu = Usage().start(), server.cpu_seconds()
    with GcPauses() as gc_pauses:
        moments, statuses, lag = asyncio.run(watch(job_ids, stream, poll_interval))
    usage.stop()
    server_cpu = server.cpu_seconds() - server_cpu
    stats = server.stats(per_job=True)
    calls = [stats.get("per_job", {}).get(job_id, 0) for job_id in job_ids]
    connections = [stats.get("per_job_connections", {}).get(job_id, 0) for job_id in job_ids]
    ends = server.finished_at(job_ids)
    latency = [moments[j] - ends[j] for j in job_ids if j in ends and j in moments]
    return {
        "triggers": n,
        "logs": f"streamed, {lines} lines ({phase})" if stream else f"poll {poll_interval:g}s",
        "ends": f"spread {duration - jitter:g}-{duration + jitter:g} s" if jitter else "burst",
        "wall s": usage.wall,
        "CPU s": usage.cpu,
        "avg cores": usage.cpu / usage.wall,
        "peak RSS MB": usage.peak_rss_mb,
        "max loop lag ms": lag.max * 1000,
        # Triggers start over min(2 ms x N, poll interval) (START_COST_SECONDS); a second more to open.
        "max lag after start-up ms": lag.max_after(min(2 * START_COST_SECONDS * n, poll_interval) + 1.0)
        * 1000,
        "p99 loop lag ms": lag.p99 * 1000,
        "max GC pause ms": max(gc_pauses.pauses, default=0.0) * 1000,
        "full GCs": len(gc_pauses.full),
        "full GCs at s (ms)": ", ".join(f"{at:.1f} ({pause * 1000:.0f})" for at, pause in gc_pauses.full),
        "API calls/job": sum(calls) / n,
        "max calls/job": max(calls),
        "connections/job": sum(connections) / n,
        "latency p50 s": percentile(latency, 0.5),
        "latency p99 s": percentile(latency, 0.99),
        "events ok": f"{sum(s == 'success' for s in statuses.values())}/{n}",
        "server CPU s": server_cpu,
        "requests by kind": stats["requests"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500, 1000, 2000])
    parser.add_argument("--modes", nargs="+", choices=["stream", "poll"], default=["stream", "poll"])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds each simulated job runs")
    parser.add_argument("--lines", type=int, default=10, help="log lines each job prints")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="stage poll interval without logs")
    parser.add_argument(
        "--phase", choices=["random", "aligned"], default="random",
        help="random: each job prints at its own moments; aligned: all print together (worst case)",
    )  # fmt: skip
    parser.add_argument(
        "--ends", nargs="+", choices=["spread", "burst"], default=["spread"],
        help="spread: durations ±50%% (steady state); burst: all jobs end within about a second",
    )  # fmt: skip
    parser.add_argument(
        "--freeze", action="store_true",
        help="run each row with benchmarks/frozen_heap/airflow_local_settings.py (gc.freeze() on import)",
    )  # fmt: skip
    parser.add_argument(
        "--child", nargs=5, metavar=("URL", "PID", "N", "MODE", "ENDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    if args.child:  # one measurement in a fresh interpreter: no heap or GC history from earlier rows
        url, pid, n, mode, ends = args.child
        quiet_task_logger()
        import airflow_provider_hfjobs.triggers.hfjobs  # noqa: F401 - counted in the baseline

        baseline, base_gc = rss_mb(), base_full_gc_ms()
        server = SimulatedServer(url, SimpleNamespace(pid=int(pid)))  # type: ignore[arg-type]
        server.use_as_default_connection()
        row = run(
            int(n), mode == "stream", args.duration, args.lines, args.poll_interval, server, args.phase, ends
        )  # fmt: skip
        heap = "frozen on import" if gc.get_freeze_count() else "as imported"
        print(json.dumps({"rss_before_mb": baseline, "base full GC ms": base_gc, "heap": heap, **row}))
        return 0

    rows = []
    options = ["--duration", str(args.duration), "--lines", str(args.lines), "--poll-interval",
               str(args.poll_interval), "--phase", args.phase]  # fmt: skip
    env = dict(os.environ)
    if args.freeze:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FROZEN_HEAP), env.get("PYTHONPATH")]))
    with simulated_server() as server:
        for n in args.n:
            for ends in args.ends:
                for mode in args.modes:
                    child = subprocess.run(
                        [sys.executable, __file__, *options, "--child", server.url, str(server.process.pid),
                         str(n), mode, ends],
                        capture_output=True, text=True, check=True, env=env,
                    )  # fmt: skip
                    rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
                    print(table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    print()
    print(table(rows, COLUMNS))
    path = save(
        "scale-frozen-heap" if args.freeze else "scale",
        {"command": " ".join(["benchmarks/scale.py", *(argv or sys.argv[1:])]), "args": vars(args), "rows": rows},
    )  # fmt: skip
    print(
        f"\nRSS before any trigger: {rows[0]['rss_before_mb']:.0f} MB (the interpreter, Airflow and the provider)"
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
