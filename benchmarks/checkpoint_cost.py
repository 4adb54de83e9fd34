"""Checkpoint cost: what keeping deferred jobs' log positions costs, and where it is paid.

    .venv/bin/python benchmarks/checkpoint_cost.py         # Airflow 3: supervisor side and runner side
    .venv-af2/bin/python benchmarks/checkpoint_cost.py     # Airflow 2: the triggerer's own DB queries

A throwaway ``AIRFLOW_HOME`` (SQLite, ``airflow db migrate``) and one DAG run made by ``airflow dags test``
give the task instance the earlier design's checkpoint belonged to. Then, one at a time:

- the design in use (``triggers/log_checkpoint.py``): one record per trigger-runner process, an Airflow
  Variable holding every trigger's ``[shown, showing]``, written at most twice a second whatever the number
  of triggers. Its writes and reads are timed with the record of 1, 1,000 and 10,000 triggers (``--n`` of
  each, fewer for the big ones), and the listing a starting trigger makes;
- the earlier design, for comparison: an XCom of each task instance, two writes per trigger and step
  (``SetXCom``) and one read at each start (``GetXCom``).

Where:

- Airflow 3, *supervisor*: the triggerer's ``TriggerRunnerSupervisor``, built as the triggerer builds it
  (its in-process Execution API client), is handed each request frame as its socket reader would hand it:
  msgpack decode, ``handle_requests`` (validate, the handler through the in-process API, the DB commit), the
  reply frame. One supervisor serves these one after another in its loop (the loop that also forwards
  events, trigger log lines and heartbeats), so 1 / mean is the most it can serve a second.
- Airflow 3, *runner*: the trigger runner's CPU per write: the record built from the triggers' places and
  encoded as a ``PutVariable`` frame.
- Airflow 2: ``DatabaseRecordStore`` as the book calls it (each query in a thread of the loop's executor),
  and the earlier ``XCom.set``/``XCom.get_one``.

SQLite on a local disk: a production metadata DB (Postgres, MySQL) adds a network round trip per commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import percentile, save, table

DAG_ID, TASK_ID = "checkpoint_cost", "watch"
DAG_FILE = '''
try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

with DAG("checkpoint_cost", schedule=None):

    @task
    def watch() -> None:
        """Stands in for the deferred task whose trigger keeps the checkpoint."""

    watch()
'''
COLUMNS = [
    "side", "design", "operation", "triggers in the record", "value KB", "n", "mean ms", "p50 ms", "p99 ms",
    "CPU ms/op", "per s, one at a time",
]  # fmt: skip
#: Triggers in the timed records, and how many writes and reads of each (the big ones take longer).
RECORD_SIZES = ((1, 1.0), (1000, 0.5), (10000, 0.1))
#: The earlier design's XCom key (one per task instance).
EARLIER_XCOM_KEY = "hf_job_log_checkpoint"


def prepare_home(home: Path) -> None:
    """A fresh SQLite metadata DB with one finished DAG run; this process then uses it (env set before
    Airflow is imported)."""
    dags = home / "dags"
    dags.mkdir(parents=True)
    (dags / "checkpoint_cost.py").write_text(DAG_FILE)
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
    )
    for command in (["db", "migrate"], ["dags", "test", DAG_ID]):
        subprocess.run(
            [sys.executable, "-m", "airflow", *command], check=True, capture_output=True, env=os.environ
        )


def task_instance() -> SimpleNamespace:
    """The key of the DAG run's one task instance (all a checkpoint store reads of it)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=DAG_ID, task_id=TASK_ID).one()
        return SimpleNamespace(
            dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, map_index=ti.map_index, try_number=1
        )


def checkpoint_value(i: int) -> dict[str, Any]:
    """The earlier design's per-task record, alternating intent (``showing`` ahead) and confirmation."""
    shown = i // 2 * 3
    return {"job_id": "69a3f0c2e4b5d6a7b8c9d0e1#1", "shown": shown, "showing": shown + 3 * (i % 2 == 0)}


def book_with(triggers: int) -> Any:
    """A process's book holding ``triggers`` places (as many triggers mid-stream), its record not written."""
    from airflow_provider_hfjobs.triggers.log_checkpoint import CheckpointBook, Entry, RecordStore

    book = CheckpointBook(RecordStore(), 2.0)
    for k in range(triggers):
        key = f"{k:020x}"
        book._entries[key] = Entry(book, key, 1000 + k, lambda texts, end: None, lambda exc: None)
    return book


def record_of(triggers: int, i: int = 0) -> str:
    """The record the book writes with ``triggers`` places (built by ``CheckpointBook.record``)."""
    book = book_with(triggers)
    book._seq = i
    now = time.monotonic()
    return book.record({key: entry.wanted(now) for key, entry in book._entries.items()})


def timed(side: str, operation: str, n: int, step: Callable[[int], None], warmup: int = 50) -> dict[str, Any]:
    """``step(i)`` ``n`` times, one at a time: wall time of each, and the process's CPU (all threads)."""
    for i in range(warmup):
        step(i)
    times = []
    cpu0 = time.process_time()
    for i in range(n):
        started = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu0
    return row(side, operation, times, cpu)


async def atimed(
    side: str, operation: str, n: int, step: Callable[[int], Awaitable[Any]], warmup: int = 50
) -> dict[str, Any]:
    for i in range(warmup):
        await step(i)
    times = []
    cpu0 = time.process_time()
    for i in range(n):
        started = time.perf_counter()
        await step(i)
        times.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu0
    return row(side, operation, times, cpu)


def row(side: str, operation: str, times: list[float], cpu: float) -> dict[str, Any]:
    mean = sum(times) / len(times)
    return {
        "side": side,
        "operation": operation,
        "n": len(times),
        "mean ms": mean * 1000,
        "p50 ms": percentile(times, 0.5) * 1000,
        "p99 ms": percentile(times, 0.99) * 1000,
        "max ms": max(times) * 1000,
        "CPU ms/op": cpu / len(times) * 1000,
        "per s, one at a time": 1 / mean,
    }


class DiscardingChannel:
    """The supervisor's socket to its trigger runner: keeps the last reply frame instead of sending it."""

    last = b""

    def sendall(self, data: bytes | bytearray) -> None:
        self.last = bytes(data)


def airflow3_supervisor(ti: SimpleNamespace, n: int) -> list[dict[str, Any]]:
    """SetXCom/GetXCom frames through ``TriggerRunnerSupervisor.handle_requests``, as its socket reader
    (``length_prefixed_frame_reader``) passes them."""
    import msgspec
    import structlog
    from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor
    from airflow.sdk.execution_time.comms import GetXCom, SetXCom, _RequestFrame

    channel = DiscardingChannel()
    supervisor = TriggerRunnerSupervisor(
        id=uuid.uuid4(), pid=os.getpid(), stdin=channel, process=None,
        process_log=structlog.get_logger(), capacity=n,
    )  # fmt: skip
    requests = supervisor.handle_requests(structlog.get_logger())
    next(requests)
    frame_decoder = msgspec.msgpack.Decoder(_RequestFrame)
    key = {"key": EARLIER_XCOM_KEY, "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
           "map_index": ti.map_index}  # fmt: skip
    sets = [_RequestFrame(id=i, body=SetXCom(value=checkpoint_value(i), **key).model_dump()).as_bytes()
            for i in range(n + 50)]  # fmt: skip
    get = _RequestFrame(id=0, body=GetXCom(**key).model_dump()).as_bytes()

    def serve(frame: bytearray) -> None:
        requests.send(frame_decoder.decode(memoryview(frame)[4:]))

    from airflow.sdk.execution_time.comms import DeleteVariable, GetVariable, GetVariableKeys, PutVariable

    from airflow_provider_hfjobs.triggers.log_checkpoint import RECORD_DESCRIPTION, RECORD_PREFIX

    rows = []
    record_key = f"{RECORD_PREFIX}0123456789abcdef"
    for triggers, share in RECORD_SIZES:
        count = max(20, int(n * share))
        values = [record_of(triggers, i) for i in range(2)]
        puts = [
            _RequestFrame(
                id=i, body=PutVariable(key=record_key, value=values[i % 2], description=RECORD_DESCRIPTION).model_dump()
            ).as_bytes()
            for i in range(count + 50)
        ]  # fmt: skip
        read = _RequestFrame(id=0, body=GetVariable(key=record_key).model_dump()).as_bytes()
        size = {
            "design": "process record",
            "triggers in the record": triggers,
            "value KB": len(values[0]) / 1024,
        }
        rows.append({**timed("supervisor", "PutVariable: decode, in-process API, DB commit, reply", count,
                             lambda i, puts=puts: serve(puts[i])), **size})  # fmt: skip
        rows.append({**timed("supervisor", "GetVariable: decode, in-process API, DB read, reply", count,
                             lambda i, read=read: serve(read)), **size})  # fmt: skip
        assert b"VariableResult" in channel.last, channel.last[:200]
    listing = _RequestFrame(id=0, body=GetVariableKeys(prefix=RECORD_PREFIX).model_dump()).as_bytes()
    rows.append({**timed("supervisor", "GetVariableKeys (by prefix): decode, in-process API, DB, reply", n,
                         lambda i: serve(listing)), "design": "process record"})  # fmt: skip
    missing = _RequestFrame(id=0, body=GetVariable(key=f"{RECORD_PREFIX}missing").model_dump()).as_bytes()
    rows.append({**timed("supervisor", "GetVariable of a missing record (no error logged)", n,
                         lambda i: serve(missing)), "design": "process record"})  # fmt: skip
    serve(_RequestFrame(id=0, body=DeleteVariable(key=record_key).model_dump()).as_bytes())

    earlier = {"design": "earlier: XCom per task", "triggers in the record": 1}
    rows.append({**timed("supervisor", "SetXCom: decode, in-process API, DB commit, reply", n,
                         lambda i: serve(sets[i])), **earlier})  # fmt: skip
    rows.append({**timed("supervisor", "GetXCom: decode, in-process API, DB read, reply", n,
                         lambda i: serve(get)), **earlier})  # fmt: skip
    assert b"XComResult" in channel.last, channel.last  # the read found the checkpoint written above

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    def direct(i: int) -> None:
        with create_session() as session:
            XComModel.set(value=checkpoint_value(i), serialize=False, session=session, **key)

    rows.append({**timed("(for scale)", "XComModel.set + commit, no API", n, direct), **earlier})
    return rows


def airflow3_runner(n: int) -> list[dict[str, Any]]:
    """The trigger runner's CPU per write: the record built from every place and encoded as a frame."""
    from airflow.sdk.execution_time.comms import PutVariable, SetXCom, _RequestFrame

    from airflow_provider_hfjobs.triggers.log_checkpoint import RECORD_DESCRIPTION, RECORD_PREFIX

    rows = []
    for triggers, share in RECORD_SIZES:
        book = book_with(triggers)

        def encode(i: int, book: Any = book) -> None:
            message = PutVariable(
                key=f"{RECORD_PREFIX}x", value=book.record(), description=RECORD_DESCRIPTION
            )
            _RequestFrame(id=i, body=message.model_dump()).as_bytes()

        size = {"design": "process record", "triggers in the record": triggers,
                "value KB": len(book.record()) / 1024}  # fmt: skip
        rows.append({**timed("runner", "build the record + encode a PutVariable frame",
                             max(20, int(n * share)), encode, warmup=5), **size})  # fmt: skip
    key = {"key": EARLIER_XCOM_KEY, "dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1}

    def encode_xcom(i: int) -> None:
        _RequestFrame(id=i, body=SetXCom(value=checkpoint_value(i), **key).model_dump()).as_bytes()

    rows.append({**timed("runner", "build + encode a SetXCom frame", n, encode_xcom, warmup=50),
                 "design": "earlier: XCom per task", "triggers in the record": 1})  # fmt: skip
    return rows


async def airflow2(ti: SimpleNamespace, n: int) -> list[dict[str, Any]]:
    """The triggerer's own queries, as the book runs them (each in a thread), then the earlier design's."""
    from airflow.models.xcom import XCom

    from airflow_provider_hfjobs.triggers.log_checkpoint import RECORD_PREFIX, DatabaseRecordStore

    store = DatabaseRecordStore()
    record_key = f"{RECORD_PREFIX}0123456789abcdef"
    rows = []
    for triggers, share in RECORD_SIZES:
        count = max(20, int(n * share))
        values = [record_of(triggers, i) for i in range(2)]
        size = {
            "design": "process record",
            "triggers in the record": triggers,
            "value KB": len(values[0]) / 1024,
        }
        rows.append({**await atimed("triggerer", "DatabaseRecordStore.put (Variable.set, in a thread)", count,
                                    lambda i, values=values: store.put(record_key, values[i % 2])), **size})  # fmt: skip
        rows.append({**await atimed("triggerer", "DatabaseRecordStore.get (in a thread)", count,
                                    lambda i: store.get(record_key)), **size})  # fmt: skip
    rows.append({**await atimed("triggerer", "DatabaseRecordStore.keys (by prefix, in a thread)", n,
                                lambda i: store.keys(RECORD_PREFIX, 0)), "design": "process record"})  # fmt: skip
    assert await store.get(record_key) is not None
    await store.delete(record_key)

    earlier = {"design": "earlier: XCom per task", "triggers in the record": 1}
    where = {"key": EARLIER_XCOM_KEY, "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
             "map_index": ti.map_index}  # fmt: skip
    rows.append({**timed("triggerer", "XCom.set (this thread)", n,
                         lambda i: XCom.set(value=checkpoint_value(i), **where)), **earlier})  # fmt: skip
    rows.append({**timed("triggerer", "XCom.get_one (this thread)", n, lambda _: XCom.get_one(**where)),
                 **earlier})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="writes and reads timed (runner side: 10x)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="hfjobs-checkpoint-cost-") as home:
        started = time.perf_counter()
        prepare_home(Path(home))
        print(
            f"AIRFLOW_HOME ready in {time.perf_counter() - started:.0f} s (db migrate, dags test)", flush=True
        )

        from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_PLUS

        ti = task_instance()
        load_before = os.getloadavg()
        if AIRFLOW_V_3_PLUS:
            rows = airflow3_supervisor(ti, args.n) + airflow3_runner(args.n)
        else:
            rows = asyncio.run(airflow2(ti, args.n))
        load_after = os.getloadavg()

    print()
    print(table(rows, COLUMNS))
    path = save(
        "checkpoint-cost" if AIRFLOW_V_3_PLUS else "checkpoint-cost-af2",
        {
            "command": " ".join(["benchmarks/checkpoint_cost.py", *(argv or sys.argv[1:])]),
            "args": vars(args),
            "database": "sqlite (local disk)",
            "load average (1 min) before, after": [load_before[0], load_after[0]],
            "rows": rows,
        },
    )
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f}\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
