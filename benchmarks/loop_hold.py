"""Loop hold: the longest one trigger keeps the triggerer's event loop while it replays a long log.

    .venv/bin/python benchmarks/loop_hold.py                 # 1,000,000 lines of 60 bytes

A finished simulated job (the local server, its own process) with ``--lines`` lines; one ``HfJobTrigger``
replays it from the start, checkpoints off (every line logged as it comes) and on (a book on an in-memory
record store: lines handed to its entry, shown under its reservation). A ticker task in the same loop
sleeps 1 ms at a time and records the longest gap between its wake-ups beyond that sleep: the hold (and
the CPU time of the loop's thread between two wake-ups, which a busy machine inflates less). Every
line goes through the trigger runner's logging (structlog JSON to a discarding channel).

A wall-clock figure: run it on an idle machine. The suite asserts the structural bound instead (work per
slice of the loop, tests/integration/test_loop_hold.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CONN_ID, NAMESPACE, save, simulated_server, table
from benchmarks.scale import quiet_task_logger

COLUMNS = [
    "checkpoints",
    "lines",
    "wall s",
    "CPU s",
    "longest hold ms",
    "holds > 50 ms",
    "longest CPU hold ms",
]


class MemoryStore:
    """Variables in a dictionary (the record store's interface)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def keys(self, prefix: str, offset: int) -> tuple[list[str], int]:
        found = sorted(key for key in self.values if key.startswith(prefix))
        return found[offset:], len(found)

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str) -> None:
        self.values[key] = value

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)


class FakeTI:
    dag_id, task_id, run_id, map_index, try_number = "dag", "replay", "manual__1", -1, 1


async def replay(job_id: str, checkpoints: bool) -> dict[str, Any]:
    from airflow_provider_hfjobs.triggers import hfjobs as trigger_module
    from airflow_provider_hfjobs.triggers import log_checkpoint
    from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger

    trigger_module.START_COST_SECONDS = 0.0
    trigger = HfJobTrigger(job_id, NAMESPACE, CONN_ID)
    if checkpoints:
        book = log_checkpoint.CheckpointBook(MemoryStore(), 1000.0)  # type: ignore[arg-type]
        trigger_module.checkpoint_book = lambda ti: book  # type: ignore[assignment]
        trigger.task_instance = FakeTI()  # type: ignore[attr-defined]
    gaps: list[float] = []
    cpu_gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before, cpu_before = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.001)
            gaps.append(time.perf_counter() - before - 0.001)
            cpu_gaps.append(time.thread_time() - cpu_before)

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    c0, t0 = time.process_time(), time.perf_counter()
    async for event in trigger.run():
        payload = event.payload
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    done.set()
    await ticking
    return {
        "checkpoints": "on" if checkpoints else "off",
        "lines": payload["log_cursor"] - 1,  # the start marker counts in the cursor
        "wall s": wall,
        "CPU s": cpu,
        "longest hold ms": max(gaps) * 1000,
        "holds > 50 ms": sum(gap > 0.05 for gap in gaps),
        "longest CPU hold ms": max(cpu_gaps) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--width", type=int, default=60, help="characters per line")
    args = parser.parse_args(argv)
    quiet_task_logger()
    rows = []
    with simulated_server() as server:
        server.use_as_default_connection()
        (warm_up,) = server.create_jobs(1, duration=0, lines=10, line_bytes=args.width)
        (job_id,) = server.create_jobs(1, duration=0, lines=args.lines, line_bytes=args.width)
        while server.stats()["jobs"].get("COMPLETED") != 2:
            time.sleep(0.2)
        for checkpoints in (False, True):
            asyncio.run(replay(warm_up, checkpoints))  # a first trigger's imports are no replay's hold
            rows.append(asyncio.run(replay(job_id, checkpoints)))
            print(table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    print()
    print(table(rows, COLUMNS))
    path = save("loop-hold", {"command": " ".join(["benchmarks/loop_hold.py", *(argv or sys.argv[1:])]),
                              "args": vars(args), "rows": rows})  # fmt: skip
    print(f"\nwritten to {path}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
