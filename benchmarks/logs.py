"""Logs: how fast job log lines get from the wire into Python, ours against ``huggingface_hub``.

    .venv/bin/python benchmarks/logs.py                # 100,000 lines of 60 bytes

1. **Same stream, no network**: the exact bytes the Hub sends (``data: {"data":"…","timestamp":"…"}``),
   served by an in-memory transport, read by our async hook (``HfJobsAsyncHook.iter_job_log_batches``,
   the trigger's path) and by ``huggingface_hub``'s ``fetch_job_logs`` (its own httpx client, mocked
   transport). Also our parser alone (``LogStreamParser.feed``). CPU seconds of this process.
2. **Same stream over HTTP**: a finished simulated job replayed by the local server (another process),
   read by ``HfJobsHook.fetch_job_logs`` and by ``HfApi.fetch_job_logs``.
3. **Into a task logger**: ``HfJobTrigger.run()`` on that job, every line through a logger with a
   formatter (to a discarding stream), end to end, lines per second of wall time.

Each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CONN_ID, NAMESPACE, TOKEN, save, simulated_server, table
from benchmarks.scale import quiet_task_logger

JOB_ID = "687fb701029421ae5549d998"
COLUMNS = [
    "figure",
    "reader",
    "lines",
    "CPU s",
    "lines/s (CPU)",
    "wall s",
    "lines/s (wall)",
    "vs huggingface_hub",
]


def hub_stream(lines: int, width: int) -> bytes:
    """The Hub's wire format (compact JSON, data first), a marker and ``lines`` lines."""
    from airflow_provider_hfjobs.jobs import format_timestamp

    start = 1_764_000_000.0
    events = [("===== Job started at 2026-11-24 16:00:00 =====", start)]
    events += [
        (f"step {i}: loss=0.{i % 997:03d} lr=3e-4 ".ljust(width, "."), start + i / 1000) for i in range(lines)
    ]
    return b"".join(
        b"data: "
        + json.dumps({"data": text, "timestamp": format_timestamp(moment)}, separators=(",", ":")).encode()
        + b"\n\n"
        for text, moment in events
    )


def chunks_of(body: bytes, size: int = 65536) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def job_json() -> dict:
    return {
        "id": JOB_ID, "owner": {"id": "1", "name": NAMESPACE, "type": "user"},
        "status": {"stage": "COMPLETED", "message": None}, "createdAt": "2026-11-24T16:00:00.000Z",
    }  # fmt: skip


def best(repeat: int, measure) -> tuple[float, float, int]:
    """(CPU s, wall s, lines) of the fastest of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        count = measure()
        runs.append((time.process_time() - c0, time.perf_counter() - t0, count))
    return min(runs)


def ours_parser(chunks: list[bytes]) -> int:
    from airflow_provider_hfjobs.sse import LogStreamParser

    parser = LogStreamParser()
    parser.new_connection()
    return sum(len(parser.feed(chunk).texts) for chunk in chunks)


def ours_async_hook_mocked(chunks: list[bytes]) -> int:
    import httpx

    from airflow_provider_hfjobs.hooks import event_stream
    from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, HfJobsCredentials

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/logs"):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())
        return httpx.Response(200, json=job_json())

    async def read() -> int:
        # httpx with an in-memory transport, like huggingface_hub's side: our lean socket transport needs a
        # socket, so it is measured over HTTP below.
        event_stream._proxied = lambda scheme, host: True
        hook = HfJobsAsyncHook(CONN_ID, namespace=NAMESPACE)
        hook._credentials = HfJobsCredentials(endpoint="http://hub.test", token=TOKEN, namespace=NAMESPACE)
        hook._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        count = 0
        async with hook:
            async for batch in hook.iter_job_log_batches(JOB_ID, namespace=NAMESPACE):
                count += len(batch.texts)
        return count

    return asyncio.run(read())


def hub_mocked(chunks: list[bytes]) -> int:
    import httpx2
    from huggingface_hub import HfApi, hf_api

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/logs"):
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=iter(chunks))
        return httpx2.Response(200, json=job_json())

    client = httpx2.Client(transport=httpx2.MockTransport(handler))
    original = hf_api.get_session
    hf_api.get_session = lambda: client
    try:
        api = HfApi(endpoint="http://hub.test", token=TOKEN)
        return sum(1 for _ in api.fetch_job_logs(job_id=JOB_ID, namespace=NAMESPACE, follow=True))
    finally:
        hf_api.get_session = original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=60, help="characters per line")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    quiet_task_logger()
    chunks = chunks_of(hub_stream(args.lines, args.width))
    rows: list[dict] = []

    def add(
        figure: str, reader: str, cpu: float, wall: float, count: int, baseline: float | None = None
    ) -> None:
        rows.append({
            "figure": figure, "reader": reader, "lines": count, "CPU s": cpu, "lines/s (CPU)": count / cpu,
            "wall s": wall, "lines/s (wall)": count / wall,
            "vs huggingface_hub": f"{baseline / cpu:.1f}x" if baseline else "",
        })  # fmt: skip
        print(table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)

    hub_cpu, hub_wall, hub_count = best(args.repeat, lambda: hub_mocked(chunks))
    add("same stream, no network", "huggingface_hub fetch_job_logs", hub_cpu, hub_wall, hub_count)
    cpu, wall, count = best(args.repeat, lambda: ours_async_hook_mocked(chunks))
    add("same stream, no network", "ours: HfJobsAsyncHook (trigger path)", cpu, wall, count, hub_cpu)
    cpu, wall, count = best(args.repeat, lambda: ours_parser(chunks))
    add("same stream, no network", "ours: LogStreamParser alone", cpu, wall, count, hub_cpu)
    assert hub_count == count == args.lines, (hub_count, count)

    with simulated_server() as server:
        server.use_as_default_connection()
        (job_id,) = server.create_jobs(1, duration=0, lines=args.lines, line_bytes=args.width)
        while server.stats()["jobs"].get("COMPLETED") != 1:
            time.sleep(0.05)
        from huggingface_hub import HfApi

        from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
        from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger

        api = HfApi(endpoint=server.url, token=TOKEN)
        hub_cpu, hub_wall, hub_count = best(
            args.repeat, lambda: sum(1 for _ in api.fetch_job_logs(job_id=job_id, namespace=NAMESPACE))
        )
        add("over HTTP (local server)", "huggingface_hub fetch_job_logs", hub_cpu, hub_wall, hub_count)
        hook = HfJobsHook(CONN_ID)
        cpu, wall, count = best(args.repeat, lambda: sum(1 for _ in hook.fetch_job_logs(job_id)))
        add("over HTTP (local server)", "ours: HfJobsHook.fetch_job_logs", cpu, wall, count, hub_cpu)

        async def trigger_run() -> int:
            trigger = HfJobTrigger(job_id, NAMESPACE, CONN_ID)
            async for event in trigger.run():
                return event.payload["log_cursor"] - 1  # markers included in the cursor: one here
            return 0

        cpu, wall, count = best(args.repeat, lambda: asyncio.run(trigger_run()))
        add("into a task logger", "ours: HfJobTrigger.run, every line logged", cpu, wall, count)

    print()
    print(table(rows, COLUMNS))
    path = save("logs", {"command": " ".join(["benchmarks/logs.py", *(argv or sys.argv[1:])]),
                         "args": vars(args), "rows": rows})  # fmt: skip
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
