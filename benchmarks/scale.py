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

``--jobs-begin with-triggers`` (the default): the simulated jobs are created first (10,000 take seconds),
then begin together, their lines and durations counted from the moment the triggers are started, as a
task's job begins moments before its trigger does; ``at-creation``: each begins when it is created (the
earlier runs), so at 10,000 the first jobs have run for seconds before any trigger exists. Either way
"ended before their stream" counts the jobs that ended before their trigger asked for its log stream
(their latency is its start-up), and every job counts in the latency.

``--checkpoints supervisor``: each trigger has a stand-in task instance, so it keeps its log position as on
Airflow 3: the real ``CheckpointBook`` (one record for the process, trailing the lines shown) and the
real ``SupervisorRecordStore`` and ``TriggerCommsDecoder`` build, send and decode every frame in this
process; the supervisor answering them is a single simulated server (another process in a triggerer, on the
other core) keeping the Variables: requests queue and are served one at a time, each taking the time
``benchmarks/checkpoint_cost.py`` measured for its kind and size (``results/checkpoint-cost.json``: a fixed
part plus a part per KB of the value). Display steps come at ``[hfjobs] log_checkpoint_steps_per_second``
(its default unless ``--steps-per-second`` says otherwise). ``--log-delay``: also time each log line from
the server's timestamp to its write into the task log, both for every line and split into *live* lines
(printed once the trigger had asked for its stream) and *backlog* ones (printed before: replayed at its
start); and each trigger's start-up (*stream asked*: from the triggers' start to its stream request;
*stream answered*: to the response head). Such rows go to ``results/scale-checkpoints.json``.

Diagnostics (one ``--n``): ``--profile PATH`` (cProfile, CPU time), ``--census S ...`` (the heap's
objects by type, and what reached the collector's oldest generation since the last census), ``--dump
PATH`` (each job's end, event and stream request, as JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from array import array
from collections import Counter, deque
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    CONN_ID,
    NAMESPACE,
    RESULTS,
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
CHECKPOINT_COST = Path(__file__).resolve().parent / "results" / "checkpoint-cost.json"
COLUMNS = [
    "triggers", "logs", "ends", "wall s", "CPU s", "avg cores", "peak RSS MB", "max loop lag ms",
    "max lag after start-up ms", "p99 loop lag ms", "max GC pause ms", "full GCs", "base full GC ms", "heap",
    "API calls/job", "max calls/job", "connections/job", "latency p50 s", "latency p99 s", "events ok",
    "server CPU s",
]  # fmt: skip
CHECKPOINT_COLUMNS = [
    "triggers", "logs", "checkpoints", "wall s", "CPU s", "avg cores", "peak RSS MB",
    "max lag after start-up ms", "API calls/job", "connections/job", "display steps", "shows/job",
    "record writes", "record KB max", "look-ups", "supervisor requests/job", "supervisor busy %",
    "supervisor wait p50 ms", "supervisor wait p99 ms", "supervisor wait max s", "checkpoints given up",
    "log delay p50 s", "log delay p99 s", "log delay max s", "live delay p50 s", "live delay p99 s",
    "backlog lines", "backlog delay p99 s", "stream asked p99 s", "stream answered p99 s", "full GCs",
    "GC CPU s", "lines shown by the task", "jobs begin",
    "ended before their stream", "latency p50 s", "latency p99 s", "events ok", "job creation s",
]  # fmt: skip


def quiet_task_logger() -> None:
    """Log as a triggerer's trigger runner does: structlog, every event as JSON written unbuffered to the
    supervisor's channel (here a discarding file), so each trigger log line costs what it costs there."""
    from airflow.sdk.log import configure_logging, reset_logging

    reset_logging()
    channel = open(os.devnull, "wb", buffering=0)  # noqa: SIM115 - open for the whole run
    configure_logging(json_output=True, output=channel, sending_to_supervisor=True)
    sys.excepthook = sys.__excepthook__  # a benchmark's own errors must still show


class SimulatedSupervisor:
    """The triggerer's supervisor, answering the record store's requests: one server, first come first
    served, each request taking the service time measured for its kind and size (``model``: kind -> (fixed
    ms, ms per KB of the value)). It runs in another process in a triggerer, so only its timing is
    simulated, on its own clock (a late wake-up of this loop does not push later requests back); the
    frames it reads and the replies it sends are the real ones, and it keeps the Variables."""

    def __init__(self, model: dict[str, tuple[float, float]]) -> None:
        import msgspec
        from airflow.sdk.execution_time.comms import _RequestFrame

        self.model = model
        self.requests: Counter[str] = Counter()
        self.busy = 0.0
        self.largest = 0  # bytes of the largest value written
        self.waits = array("d")  # seconds from a request's frame written to its reply readable
        self.variables: dict[str, str] = {}
        self._decoder = msgspec.msgpack.Decoder(_RequestFrame)

    async def start(self) -> Any:
        """The trigger runner's channel to this supervisor: a real ``TriggerCommsDecoder``."""
        from airflow.jobs.triggerer_job_runner import TriggerCommsDecoder

        self._queue: asyncio.Queue[tuple[float, int, str, dict[str, Any]]] = asyncio.Queue()
        self._reader = asyncio.StreamReader()
        comms = TriggerCommsDecoder(async_writer=self, async_reader=self._reader, socket=None)  # type: ignore[arg-type]
        await comms.start_reader()
        self._task = asyncio.create_task(self._serve())
        return comms

    def write(self, data: bytes | bytearray) -> None:
        """The runner's socket writer: a request frame arrives."""
        frame = self._decoder.decode(memoryview(data)[4:])
        kind = frame.body["type"]
        if kind not in self.model:
            raise RuntimeError(
                f"the simulated supervisor answers only the record store's requests, not {kind}"
            )
        self._queue.put_nowait((asyncio.get_running_loop().time(), frame.id, kind, frame.body))

    def _answer(self, kind: str, body: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
        """The reply's body, and the value's size (what the service time grows with)."""
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse, VariableKeysResult, VariableResult

        if kind == "PutVariable":
            self.variables[body["key"]] = body["value"]
            self.largest = max(self.largest, len(body["value"]))
            return None, len(body["value"])
        if kind == "DeleteVariable":
            self.variables.pop(body["key"], None)
            return None, 0
        if kind == "GetVariableKeys":
            keys = sorted(k for k in self.variables if k.startswith(body.get("prefix") or ""))
            page = keys[body.get("offset", 0) : body.get("offset", 0) + body.get("limit", 1000)]
            found = VariableKeysResult(keys=page, total_entries=len(keys), type="VariableKeysResult")
            return found.model_dump(exclude_unset=True), 0
        value = self.variables.get(body["key"])
        if value is None:
            missing = ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": body["key"]})
            return missing.model_dump(), 0
        return VariableResult(key=body["key"], value=value, type="VariableResult").model_dump(), len(value)

    async def _serve(self) -> None:
        from airflow.sdk.execution_time.comms import _ResponseFrame

        loop = asyncio.get_running_loop()
        free_at = 0.0
        while True:
            arrived, request_id, kind, body = await self._queue.get()
            reply, size = self._answer(kind, body)
            fixed_ms, per_kb_ms = self.model[kind]
            service = (fixed_ms + per_kb_ms * size / 1024) / 1000
            free_at = max(arrived, free_at) + service
            self.busy += service
            self.requests[kind] += 1
            if (delay := free_at - loop.time()) > 0:
                await asyncio.sleep(delay)
            self._reader.feed_data(_ResponseFrame(id=request_id, body=reply).as_bytes())
            self.waits.append(loop.time() - arrived)

    def stop(self) -> None:
        self._task.cancel()


def use_supervisor(comms: Any) -> None:
    """Make the real ``checkpoint_book()`` (its task-instance and rate checks included) build Airflow 3's
    ``SupervisorRecordStore`` as it is (its methods build the messages), over ``comms`` instead of the
    process-wide ``SUPERVISOR_COMMS``."""
    from airflow_provider_hfjobs.triggers import log_checkpoint

    async def send(self: Any, message: Any) -> Any:
        return await comms.asend(message)

    log_checkpoint.SupervisorRecordStore._send = send  # type: ignore[method-assign]


class LineDelays:
    """Each log line's seconds from the server's timestamp to its write into the task log, in two kinds:
    ``backlog``, lines the job printed before its trigger asked for the stream (a trigger that starts late
    replays them at once: how late it started, not how fast it streams), and ``live``, the others."""

    def __init__(self) -> None:
        self.backlog, self.live = array("d"), array("d")
        self.opened = array("d")  # seconds from the triggers' start to each one's stream request
        self.answered = array("d")  # ... to the server's first answer to it (the response head)

    def add(self, stamp: str, now: float, opened_at: float) -> None:
        printed = datetime.fromisoformat(stamp).timestamp()
        (self.backlog if printed < opened_at else self.live).append(now - printed)

    def __len__(self) -> int:
        return len(self.backlog) + len(self.live)


class TimedLog:
    """A trigger's logger that, for each log line it writes (``info("%s", text)``, as both of the trigger's
    paths write them), records the seconds since the server's timestamp of that line."""

    def __init__(self, log: Any, stamps: deque[str], delays: LineDelays, opened: list[float]) -> None:
        self._log, self._stamps, self._delays, self._opened = log, stamps, delays, opened

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log.info(msg, *args, **kwargs)
        if msg == "%s" and self._stamps:  # lines are written in the order they were read
            self._delays.add(self._stamps.popleft(), time.time(), self._opened[0])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def measured_trigger(delays: LineDelays | None, started: float = 0.0) -> type:
    """``HfJobTrigger`` counting the display steps that showed its lines and, with ``delays``, timing every
    log line from the server's timestamp to its write into the task log (the moment the trigger's
    ``log.info`` returns), and the moment it asked for its log stream (after its start-up: the random
    spread, the connection and its place looked up), ``started`` being when all the triggers were started.
    Lines the trigger leaves to the resumed task (its job ended first) are timed when the event goes out,
    the earliest moment the task could show them (``lines shown by the task``)."""
    from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger

    class MeasuredTrigger(HfJobTrigger):
        steps = 0

        def _hook(self) -> Any:
            hook = super()._hook()
            if delays is None:
                return hook
            batches = hook.iter_job_log_batches
            stamps: deque[str] = deque()  # of the lines read and not yet written, in order
            self._opened = opened = [float("inf")]  # when it asked for the stream (the first time)
            self._timed_log = TimedLog(super().log, stamps, delays, opened)

            async def recorded(*args: Any, **kwargs: Any) -> Any:
                if opened[0] == float("inf"):
                    opened[0] = time.time()
                    delays.opened.append(opened[0] - started)
                async for batch in batches(*args, **kwargs):
                    stamps.extend(batch.timestamps)
                    yield batch
                    del batch  # as the trigger does: not held while the next one is awaited

            open_stream = hook._open_stream

            async def answered(*args: Any, **kwargs: Any) -> Any:
                stream = await open_stream(*args, **kwargs)
                if len(opened) == 1:  # its first answer: the stream's head is in
                    opened.append(time.time())
                    delays.answered.append(opened[1] - started)
                return stream

            hook.iter_job_log_batches = recorded
            hook._open_stream = answered
            self._stamps = stamps
            return hook

        @property
        def log(self) -> Any:
            return getattr(self, "_timed_log", None) or super().log

        def _show(self, texts: Any, end: int) -> None:
            self.steps += 1
            super()._show(texts, end)

    return MeasuredTrigger


async def watch(
    job_ids: list[str],
    stream: bool,
    poll_interval: float,
    supervisor: SimulatedSupervisor | None = None,
    log_delays: LineDelays | None = None,
    log_metrics: bool = False,
    census: list[float] | None = None,
) -> tuple[dict[str, float], dict, LoopLag, dict[str, Any]]:
    from airflow_provider_hfjobs.triggers import hfjobs, log_checkpoint

    moments: dict[str, float] = {}
    statuses: dict[str, str] = {}
    measured = supervisor is not None or log_delays is not None
    trigger_class = measured_trigger(log_delays, time.time()) if measured else hfjobs.HfJobTrigger
    # Only what is counted is kept of an ended trigger: a triggerer drops it, and every object kept alive
    # here would lengthen the run's full collections.
    kept: dict[str, Any] = {"given_up": 0, "shows": 0, "left": 0, "opened": {}}
    if supervisor is not None:
        use_supervisor(await supervisor.start())
    lag = LoopLag()
    lag.start()
    if census:
        census_task = asyncio.ensure_future(heap_census(census))

    async def one(index: int, job_id: str) -> None:
        trigger = trigger_class(
            job_id,
            NAMESPACE,
            CONN_ID,
            poll_interval=poll_interval,
            stream_logs=stream,
            log_metrics=log_metrics,
        )
        if supervisor is not None:  # what the triggerer gives each trigger (a mapped task's instance each)
            trigger.task_instance = SimpleNamespace(
                dag_id="hfjobs_bench", run_id="manual__2026-01-01T00:00:00+00:00", task_id="watch",
                map_index=index, try_number=1,
            )  # fmt: skip
        async for event in trigger.run():
            moments[job_id] = now = time.time()
            statuses[job_id] = event.payload["status"]
            # Lines read and not shown: the resumed task shows them, a task start after this at the earliest.
            stamps = getattr(trigger, "_stamps", None) or ()
            kept["left"] += len(stamps)
            if log_delays is not None:
                for stamp in stamps:
                    log_delays.add(stamp, now, trigger._opened[0])
        kept["given_up"] += trigger._book is None  # went on without checkpoints (it logged why)
        kept["shows"] += getattr(trigger, "steps", 0)
        if log_delays is not None:
            kept["opened"][job_id] = trigger._opened

    await asyncio.gather(*(one(index, job_id) for index, job_id in enumerate(job_ids)))
    lag.stop()
    if census:
        census_task.cancel()
    if supervisor is not None:
        supervisor.stop()
    kept["book"] = book = log_checkpoint._book[0][1] if log_checkpoint._book else None
    if not (supervisor and book):  # none kept any with checkpoints off
        kept["given_up"] = 0
    return moments, statuses, lag, kept


async def heap_census(at: list[float], top: int = 25) -> None:
    """At each of ``at`` seconds into the run, the objects the collector tracks, by type, to stderr: what
    every full collection walks."""
    started = time.monotonic()
    old: dict[int, str] = {}
    for moment in at:
        await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
        # What reached the oldest generation since the last census (and is still alive): what makes the
        # collector run its next full collection (after a quarter of the heap's size has).
        oldest = {id(o): type(o).__qualname__ for o in gc.get_objects(2)}
        if old:
            new = Counter(name for key, name in oldest.items() if key not in old)
            print(f"oldest generation at {moment:g} s: {len(oldest)}, {new.total()} new", file=sys.stderr)
            for name, count in new.most_common(top):
                print(f"  {count:9d} {name}", file=sys.stderr)
        old = oldest
        counts = Counter(type(o).__qualname__ for o in gc.get_objects())
        print(f"heap at {moment:g} s: {sum(counts.values())} objects", file=sys.stderr)
        for name, count in counts.most_common(top):
            print(f"  {count:9d} {name}", file=sys.stderr)
        named: Counter[str] = Counter()
        for o in gc.get_objects():
            if isinstance(o, types.FunctionType):
                named[f"function {o.__qualname__}"] += 1
            elif isinstance(o, types.MethodType):
                named[f"method {getattr(o.__func__, '__qualname__', '?')}"] += 1
            elif isinstance(o, types.CoroutineType | types.AsyncGeneratorType):
                named[f"{type(o).__name__} {o.__qualname__}"] += 1
            elif isinstance(o, asyncio.Task):
                named[f"Task of {getattr(o.get_coro(), '__qualname__', '?')}"] += 1
            elif isinstance(o, asyncio.TimerHandle | asyncio.Handle):
                named[f"{type(o).__name__} {getattr(o._callback, '__qualname__', o._callback)}"] += 1
        for name, count in named.most_common(top * 2):
            print(f"  {count:9d} {name}", file=sys.stderr)


def base_full_gc_ms() -> float:
    gc.collect()
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1000


def run(
    n: int,
    stream: bool,
    duration: float,
    lines: int,
    poll_interval: float,
    server: SimulatedServer,
    phase: str,
    ends: str,
    supervisor: SimulatedSupervisor | None = None,
    log_delay: bool = False,
    log_metrics: bool = False,
    jobs_begin: str = "with-triggers",
    profile: str | None = None,
    census: list[float] | None = None,
    dump: str | None = None,
) -> dict:
    from airflow_provider_hfjobs.triggers.hfjobs import START_COST_SECONDS

    jitter = duration / 2 if ends == "spread" else 0.0
    start_dir = Path(tempfile.mkdtemp(prefix="hfjobs-scale-"))
    start_file = start_dir / "start" if jobs_begin == "with-triggers" else None
    creating = time.perf_counter()
    job_ids = server.create_jobs(
        n, duration=duration, lines=lines, phase=phase, jitter=jitter, start_after=start_file
    )
    creating = time.perf_counter() - creating
    server.reset_stats()
    delays = LineDelays() if log_delay else None
    usage, server_cpu, started_at = Usage().start(), server.cpu_seconds(), time.time()
    if start_file is not None:
        # The jobs begin now, together, as the triggers do: however long creating them took (the local
        # server's create grows with the jobs it holds), none has run before its trigger was started.
        start_file.touch()
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU: the machine may be busy
    with GcPauses() as gc_pauses, profiler or contextlib.nullcontext():
        moments, statuses, lag, kept = asyncio.run(
            watch(job_ids, stream, poll_interval, supervisor, delays, log_metrics, census)
        )
    usage.stop()
    shutil.rmtree(start_dir, ignore_errors=True)
    if profiler is not None:
        profiler.dump_stats(profile)
    server_cpu = server.cpu_seconds() - server_cpu
    stats = server.stats(per_job=True)
    calls = [stats.get("per_job", {}).get(job_id, 0) for job_id in job_ids]
    connections = [stats.get("per_job_connections", {}).get(job_id, 0) for job_id in job_ids]
    ends = server.finished_at(job_ids)
    latency = [moments[j] - ends[j] for j in job_ids if j in ends and j in moments]
    # Jobs that ended before their trigger asked for the log stream: their latency is their trigger's
    # start-up, not how fast a running trigger notices an end (counted here, never left out of the latency).
    opened = kept["opened"]
    ended_first = sum(ends[j] < opened[j][0] for j in job_ids if j in ends and j in opened)
    if dump:  # per job, seconds from the triggers' start: its end, its event, its stream request, answer
        Path(dump).write_text(json.dumps([
            [t - started_at for t in (ends.get(j, 0), moments.get(j, 0), *opened.get(j, ()))] for j in job_ids
        ]))  # fmt: skip
    return {
        "triggers": n,
        "logs": (f"streamed, {lines} lines ({phase})" if stream else f"poll {poll_interval:g}s")
        + (", metrics" if log_metrics else ""),
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
        "GC pauses s": sum(gc_pauses.pauses),
        "GC CPU s": gc_pauses.cpu,
        "full GCs at s (ms)": ", ".join(f"{at:.1f} ({pause * 1000:.0f})" for at, pause in gc_pauses.full),
        "API calls/job": sum(calls) / n,
        "max calls/job": max(calls),
        "connections/job": sum(connections) / n,
        "latency p50 s": percentile(latency, 0.5),
        "latency p99 s": percentile(latency, 0.99),
        "events ok": f"{sum(s == 'success' for s in statuses.values())}/{n}",
        "jobs begin": jobs_begin,
        "job creation s": creating,
        "ended before their stream": ended_first if opened else None,
        "server CPU s": server_cpu,
        "requests by kind": stats["requests"],
        **checkpoint_stats(n, usage.wall, supervisor, kept),
        **({} if delays is None else log_delay_stats(delays, n * lines if stream else 0)),
    }


def checkpoint_stats(
    n: int, wall: float, supervisor: SimulatedSupervisor | None, kept: dict[str, Any]
) -> dict[str, Any]:
    """What keeping the log positions asked of the supervisor (requests it served, not API calls: none reach
    the Hub), and what it did to the lines."""
    book = kept["book"]
    if supervisor is None:
        return {"checkpoints": "none", "display steps": 0, "record writes": 0}
    waits = list(supervisor.waits)
    requests = supervisor.requests
    return {
        "checkpoints": "supervisor (measured service times), "
        + (f"{book.per_second:g} steps/s" if book else "off"),
        "steps per second": book.per_second if book else 0.0,
        "display steps": book.steps if book else 0,
        "shows/job": kept["shows"] / n,
        "record writes": requests["PutVariable"],
        "record KB max": supervisor.largest / 1024,
        "look-ups": requests["GetVariableKeys"],
        "supervisor requests by kind": dict(requests),
        "supervisor requests/job": sum(requests.values()) / n,
        "supervisor busy s": supervisor.busy,
        "supervisor busy %": supervisor.busy / wall * 100,
        "supervisor wait p50 ms": percentile(waits, 0.5) * 1000,
        "supervisor wait p99 ms": percentile(waits, 0.99) * 1000,
        "supervisor wait max s": max(waits, default=0.0),
        "checkpoints given up": kept["given_up"],
        "lines shown by the task": kept["left"],
    }


def log_delay_stats(delays: LineDelays, expected: int) -> dict[str, Any]:
    every, live, backlog, opened = (
        [*delays.backlog, *delays.live],
        list(delays.live),
        list(delays.backlog),
        list(delays.opened),
    )
    return {
        "log lines timed": f"{len(delays)}/{expected}",
        "log delay p50 s": percentile(every, 0.5),
        "log delay p99 s": percentile(every, 0.99),
        "log delay max s": max(every, default=float("nan")),
        # Lines printed once the trigger had asked for its stream: how fast it streams.
        "live lines": len(live),
        "live delay p50 s": percentile(live, 0.5),
        "live delay p99 s": percentile(live, 0.99),
        "live delay max s": max(live, default=float("nan")),
        # Lines printed before: replayed when it started, as late as its start.
        "backlog lines": len(backlog),
        "backlog delay p50 s": percentile(backlog, 0.5),
        "backlog delay p99 s": percentile(backlog, 0.99),
        # Seconds from all the triggers' start to each one asking for its stream (the start-up spread).
        "stream asked p50 s": percentile(opened, 0.5),
        "stream asked p99 s": percentile(opened, 0.99),
        "stream asked max s": max(opened, default=float("nan")),
        "stream answered p50 s": percentile(list(delays.answered), 0.5),
        "stream answered p99 s": percentile(list(delays.answered), 0.99),
    }


def service_model(path: Path = CHECKPOINT_COST) -> dict[str, tuple[float, float]]:
    """The supervisor's time per request kind, from ``checkpoint_cost.py``'s rows: (fixed ms, ms per KB),
    a least-squares line through the sizes it timed."""
    try:
        rows = json.loads(path.read_text())["rows"]
    except FileNotFoundError:
        raise SystemExit(f"{path} is missing: run benchmarks/checkpoint_cost.py first") from None

    def fit(operation: str) -> tuple[float, float]:
        points = [(row.get("value KB") or 0.0, row["mean ms"]) for row in rows
                  if row["side"] == "supervisor" and row["operation"].startswith(operation)]  # fmt: skip
        if len(points) == 1:
            return points[0][1], 0.0
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum(
            (x - mean_x) ** 2 for x, _ in points
        )
        return max(0.0, mean_y - slope * mean_x), max(0.0, slope)

    put = fit("PutVariable:")
    return {
        "PutVariable": put, "GetVariable": fit("GetVariable:"), "GetVariableKeys": fit("GetVariableKeys"),
        "DeleteVariable": (put[0], 0.0),
    }  # fmt: skip


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
        "--checkpoints", nargs="+", choices=["none", "supervisor"], default=["none"],
        help="supervisor: each trigger keeps its log checkpoint through a simulated Airflow 3 supervisor",
    )  # fmt: skip
    parser.add_argument("--supervisor-model", help=argparse.SUPPRESS)  # JSON, from service_model()
    parser.add_argument(
        "--steps-per-second", type=float,
        help="the process's display-step budget (default: [hfjobs] log_checkpoint_steps_per_second, else "
        "DEFAULT_STEPS_PER_SECOND; 0: no checkpoints)",
    )  # fmt: skip
    parser.add_argument("--log-delay", action="store_true", help="time each log line, server to task log")
    parser.add_argument(
        "--metrics", action="store_true", help="triggers with log_metrics (a metrics stream beside the log)"
    )
    parser.add_argument(
        "--jobs-begin", choices=["with-triggers", "at-creation"], default="with-triggers",
        help="with-triggers: the simulated jobs begin when the triggers are started, however long creating "
        "them took (as a task's job begins moments before its trigger); at-creation: each as it is created",
    )  # fmt: skip
    parser.add_argument("--profile", metavar="PATH", help="cProfile the triggers' run into PATH (one --n)")
    parser.add_argument(
        "--census", type=float, nargs="+", metavar="S", help="print the heap's objects by type at S seconds"
    )
    parser.add_argument("--dump", metavar="PATH", help="each job's end, event and stream request, as JSON")
    parser.add_argument("--save-as", help="results file name (default: scale, or scale-checkpoints)")
    parser.add_argument("--append", action="store_true", help="add the rows to the results file's")
    parser.add_argument(
        "--child", nargs=5, metavar=("URL", "PID", "N", "MODE", "ENDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    checkpointing = args.checkpoints != ["none"] or args.log_delay

    if args.child:  # one measurement in a fresh interpreter: no heap or GC history from earlier rows
        url, pid, n, mode, ends = args.child
        quiet_task_logger()
        import airflow_provider_hfjobs.triggers.hfjobs  # noqa: F401 - counted in the baseline

        if checkpointing:  # a trigger runner has its supervisor channel's module (big) imported already
            import airflow.jobs.triggerer_job_runner  # noqa: F401
        if args.steps_per_second is not None:  # as if configured: the rate is read once per process
            from airflow_provider_hfjobs.triggers import log_checkpoint

            log_checkpoint._rate[:] = [max(0.0, args.steps_per_second)]

        baseline, base_gc = rss_mb(), base_full_gc_ms()
        server = SimulatedServer(url, SimpleNamespace(pid=int(pid)))  # type: ignore[arg-type]
        server.use_as_default_connection()
        supervisor = None
        if args.checkpoints == ["supervisor"]:
            model = {kind: tuple(cost) for kind, cost in json.loads(args.supervisor_model).items()}
            supervisor = SimulatedSupervisor(model)  # type: ignore[arg-type]
        row = run(
            int(n), mode == "stream", args.duration, args.lines, args.poll_interval, server, args.phase, ends,
            supervisor, args.log_delay, args.metrics, args.jobs_begin, args.profile, args.census, args.dump,
        )  # fmt: skip
        heap = "frozen on import" if gc.get_freeze_count() else "as imported"
        print(json.dumps({"rss_before_mb": baseline, "base full GC ms": base_gc, "heap": heap, **row}))
        return 0

    rows = []
    options = ["--duration", str(args.duration), "--lines", str(args.lines), "--poll-interval",
               str(args.poll_interval), "--phase", args.phase, "--jobs-begin", args.jobs_begin]  # fmt: skip
    if args.profile:
        options += ["--profile", args.profile]
    if args.census:
        options += ["--census", *map(str, args.census)]
    if args.dump:
        options += ["--dump", args.dump]
    if "supervisor" in args.checkpoints:
        options += ["--supervisor-model", json.dumps(service_model())]
    if args.log_delay:
        options.append("--log-delay")
    if args.metrics:
        options.append("--metrics")
    if args.steps_per_second is not None:
        options += ["--steps-per-second", str(args.steps_per_second)]
    columns = CHECKPOINT_COLUMNS if checkpointing else COLUMNS
    env = dict(os.environ)
    if args.freeze:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FROZEN_HEAP), env.get("PYTHONPATH")]))
    with simulated_server() as server:
        for n in args.n:
            for ends in args.ends:
                for mode in args.modes:
                    for checkpoints in args.checkpoints:
                        child = subprocess.run(
                            [sys.executable, __file__, *options, "--checkpoints", checkpoints, "--child",
                             server.url, str(server.process.pid), str(n), mode, ends],
                            capture_output=True, text=True, check=True, env=env,
                        )  # fmt: skip
                        if args.census:
                            print(child.stderr, file=sys.stderr)
                        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
                        print(table(rows[-1:], columns).splitlines()[-1], flush=True)
    print()
    print(table(rows, columns))
    command = " ".join(["benchmarks/scale.py", *(argv or sys.argv[1:])])
    if checkpointing:  # such rows come from several commands (--append)
        for row in rows:
            row["command"] = command
    name = args.save_as or (
        "scale-frozen-heap" if args.freeze else "scale-checkpoints" if checkpointing else "scale"
    )
    payload: dict[str, Any] = {"command": command, "args": vars(args), "rows": rows}
    earlier = RESULTS / f"{name}.json"
    if args.append and earlier.exists():
        before = json.loads(earlier.read_text())
        payload = {"commands": [*(before.get("commands") or [before["command"]]), command],
                   "rows": before["rows"] + rows}  # fmt: skip
        if checkpointing:
            print("\nAll rows in the file:\n" + table(payload["rows"], columns))
    path = save(name, payload)
    print(
        f"\nRSS before any trigger: {rows[0]['rss_before_mb']:.0f} MB (the interpreter, Airflow and the provider)"
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
