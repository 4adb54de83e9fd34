"""Against the alternative, same run: the same kind of jobs watched our way and the ``huggingface_hub`` way.

    .venv/bin/python benchmarks/alternative.py                # N = 100 and 500 jobs of 10 s, 10 lines each

- **ours**: ``HfJobTrigger.run()`` coroutines in one event loop (a deferred ``HfJobRunOperator``: the
  worker slot is released once the job is submitted).
- **huggingface_hub**: what a PythonOperator would do, one thread per job: ``fetch_job_logs(follow=True)``
  into a logger, then ``wait_for_job()``; the thread (the worker slot) is held until the job ends.
- **wait_for_job only**: the same without logs (``wait_for_job`` polls once a second).

Both sides run against one simulated server (another process), one after the other, on fresh jobs of
the same shape. Counted by the server: API calls per job. Measured here: CPU seconds, peak RSS (this
process), worker-slot seconds per job, and completion-detection latency (server ``finishedAt`` → noticed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import NAMESPACE, TOKEN, Usage, percentile, save, simulated_server, table
from benchmarks.scale import quiet_task_logger, watch

COLUMNS = [
    "approach", "jobs", "worker-slot s/job", "API calls/job", "CPU s", "CPU ms/job", "threads",
    "latency p50 s", "latency p99 s", "lines/job seen",
]  # fmt: skip


def hub_way(server, job_ids: list[str], follow_logs: bool) -> tuple[dict[str, float], dict[str, float], int]:
    """One thread per job, as N PythonOperators would run: returns (noticed moments, slot seconds, lines)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=server.url, token=TOKEN)
    log = logging.getLogger("airflow.task")
    moments: dict[str, float] = {}
    slots: dict[str, float] = {}
    lines = [0]
    lock = threading.Lock()

    def one(job_id: str) -> None:
        start = time.perf_counter()
        seen = 0
        if follow_logs:
            for line in api.fetch_job_logs(job_id=job_id, namespace=NAMESPACE, follow=True):
                log.info("%s", line)
                seen += 1
        api.wait_for_job(job_id=job_id, namespace=NAMESPACE)
        moments[job_id] = time.time()
        slots[job_id] = time.perf_counter() - start
        with lock:
            lines[0] += seen

    threads = [threading.Thread(target=one, args=(job_id,)) for job_id in job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return moments, slots, lines[0]


def row(
    approach: str, server, job_ids, moments, usage: Usage, slots: float, threads: int, lines: int
) -> dict:
    stats = server.stats(per_job=True)
    calls = [stats.get("per_job", {}).get(job_id, 0) for job_id in job_ids]
    ends = server.finished_at(job_ids)
    latency = [moments[j] - ends[j] for j in job_ids if j in ends and j in moments]
    n = len(job_ids)
    return {
        "approach": approach,
        "jobs": n,
        "worker-slot s/job": slots,
        "API calls/job": sum(calls) / n,
        "CPU s": usage.cpu,
        "CPU ms/job": usage.cpu / n * 1000,
        "threads": threads,
        "latency p50 s": percentile(latency, 0.5),
        "latency p99 s": percentile(latency, 0.99),
        "lines/job seen": lines / n,
        "peak RSS MB": usage.peak_rss_mb,
        "requests by kind": stats["requests"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--lines", type=int, default=10)
    args = parser.parse_args(argv)
    quiet_task_logger()
    rows = []
    with simulated_server() as server:
        server.use_as_default_connection()
        for n in args.n:
            job_ids = server.create_jobs(n, duration=args.duration, lines=args.lines)
            server.reset_stats()
            usage = Usage().start()
            moments, statuses, _ = asyncio.run(watch(job_ids, True, 5.0))
            usage.stop()
            lines_seen = args.lines * sum(s == "success" for s in statuses.values())
            rows.append(row("ours: deferred trigger", server, job_ids, moments, usage, 0.0, 0, lines_seen))
            print(table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)

            for follow, name in (
                (True, "huggingface_hub: logs + wait"),
                (False, "huggingface_hub: wait_for_job"),
            ):
                job_ids = server.create_jobs(n, duration=args.duration, lines=args.lines)
                server.reset_stats()
                usage = Usage().start()
                moments, slots, lines = hub_way(server, job_ids, follow)
                usage.stop()
                slot = sum(slots.values()) / n
                rows.append(row(name, server, job_ids, moments, usage, slot, n, lines))
                print(table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    print()
    print(table(rows, COLUMNS))
    path = save("alternative", {"command": " ".join(["benchmarks/alternative.py", *(argv or sys.argv[1:])]),
                                "args": vars(args), "rows": rows})  # fmt: skip
    print(
        "\nworker-slot s/job: ours holds no worker slot while the job runs (the submit only, not measured here)"
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
