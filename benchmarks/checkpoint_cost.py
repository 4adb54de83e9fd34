"""Checkpoint cost: what one log checkpoint (an XCom of the task instance) costs, where it is paid.

    .venv/bin/python benchmarks/checkpoint_cost.py         # Airflow 3: supervisor side and runner side
    .venv-af2/bin/python benchmarks/checkpoint_cost.py     # Airflow 2: the triggerer's own DB queries

A throwaway ``AIRFLOW_HOME`` (SQLite, ``airflow db migrate``) and one DAG run made by ``airflow dags test``
give the task instance the checkpoint belongs to. Then ``--n`` writes and ``--n`` reads, one at a time:

- Airflow 3, *supervisor*: the triggerer's ``TriggerRunnerSupervisor``, built as the triggerer builds it
  (its in-process Execution API client), is handed each request frame as its socket reader would hand it:
  msgpack decode, ``handle_requests`` (validate, ``handle_set_xcom``/``handle_get_xcom`` through the
  in-process API, the DB commit), the reply frame. One supervisor serves these one after another in its
  loop, so 1 / mean is the most it can serve a second, with nothing else to do.
- Airflow 3, *runner*: ``SupervisorCheckpointStore.save``/``load`` in an event loop, through a real
  ``TriggerCommsDecoder`` whose socket is a loopback answering at once: building and encoding the frame,
  the reader task decoding the reply. This is the trigger runner's CPU per checkpoint.
- Airflow 2: ``XCom.set``/``XCom.get_one`` in this thread, then ``DatabaseCheckpointStore`` as a trigger
  calls it (each query in a thread of the loop's executor).

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
COLUMNS = ["side", "operation", "n", "mean ms", "p50 ms", "p99 ms", "CPU ms/op", "per s, one at a time"]


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
    """The record a trigger writes, alternating intent (``showing`` ahead) and confirmation."""
    shown = i // 2 * 3
    return {"job_id": "69a3f0c2e4b5d6a7b8c9d0e1#1", "shown": shown, "showing": shown + 3 * (i % 2 == 0)}


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

    from airflow_provider_hfjobs.triggers.log_checkpoint import CHECKPOINT_XCOM_KEY

    channel = DiscardingChannel()
    supervisor = TriggerRunnerSupervisor(
        id=uuid.uuid4(), pid=os.getpid(), stdin=channel, process=None,
        process_log=structlog.get_logger(), capacity=n,
    )  # fmt: skip
    requests = supervisor.handle_requests(structlog.get_logger())
    next(requests)
    frame_decoder = msgspec.msgpack.Decoder(_RequestFrame)
    key = {"key": CHECKPOINT_XCOM_KEY, "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
           "map_index": ti.map_index}  # fmt: skip
    sets = [_RequestFrame(id=i, body=SetXCom(value=checkpoint_value(i), **key).model_dump()).as_bytes()
            for i in range(n + 50)]  # fmt: skip
    get = _RequestFrame(id=0, body=GetXCom(**key).model_dump()).as_bytes()

    def serve(frame: bytearray) -> None:
        requests.send(frame_decoder.decode(memoryview(frame)[4:]))

    rows = [
        timed("supervisor", "SetXCom: decode, in-process API, DB commit, reply", n, lambda i: serve(sets[i])),
        timed("supervisor", "GetXCom: decode, in-process API, DB read, reply", n, lambda i: serve(get)),
    ]
    assert b"XComResult" in channel.last, channel.last  # the read found the checkpoint written above

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    def direct(i: int) -> None:
        with create_session() as session:
            XComModel.set(value=checkpoint_value(i), serialize=False, session=session, **key)

    rows.append(timed("(for scale)", "XComModel.set + commit, no API", n, direct))
    return rows


class Loopback:
    """The runner's socket writer, answering each frame at once with the reply its supervisor sends."""

    def __init__(self, reader: asyncio.StreamReader, replies: dict[str, bytes]) -> None:
        import msgspec
        from airflow.sdk.execution_time.comms import _RequestFrame

        self.reader, self.replies = reader, replies
        self.decoder = msgspec.msgpack.Decoder(_RequestFrame)

    def write(self, data: bytes | bytearray) -> None:
        frame = self.decoder.decode(memoryview(data)[4:])
        reply = bytearray(self.replies[frame.body["type"]])
        reply[5] = frame.id  # ids stay below 128 here (see airflow3_runner): one msgpack byte
        self.reader.feed_data(reply)


async def airflow3_runner(ti: SimpleNamespace, n: int) -> list[dict[str, Any]]:
    """The trigger runner's side of ``SupervisorCheckpointStore``: frame out, reply in."""
    import itertools

    from airflow.jobs.triggerer_job_runner import TriggerCommsDecoder
    from airflow.sdk.execution_time.comms import SetXCom, XComResult, _RequestFrame, _ResponseFrame

    from airflow_provider_hfjobs.triggers.log_checkpoint import (
        CHECKPOINT_XCOM_KEY,
        Checkpoint,
        SupervisorCheckpointStore,
    )

    value = checkpoint_value(1)
    replies = {
        "SetXCom": bytes(_ResponseFrame(id=0).as_bytes()),  # send_msg(None): an empty reply
        "GetXCom": bytes(_ResponseFrame(
            id=0, body=XComResult(key=CHECKPOINT_XCOM_KEY, value=value, type="XComResult").model_dump(exclude_unset=True)
        ).as_bytes()),
    }  # fmt: skip
    reader = asyncio.StreamReader()
    comms = TriggerCommsDecoder(
        async_writer=Loopback(reader, replies), async_reader=reader, socket=None,  # type: ignore[arg-type]
        id_counter=itertools.cycle(range(128)),
    )  # fmt: skip
    await comms.start_reader()

    class Store(SupervisorCheckpointStore):
        async def _send(self, message: Any) -> Any:
            return await comms.asend(message)

    store = Store(ti)
    found = await store.load(value["job_id"])
    assert found == Checkpoint.from_value(value, value["job_id"]), found
    key = store._key()

    def encode(i: int) -> None:
        _RequestFrame(id=i, body=SetXCom(value=checkpoint_value(i), **key).model_dump()).as_bytes()

    def save(i: int) -> Awaitable[None]:
        return store.save(Checkpoint.from_value(checkpoint_value(i), value["job_id"]))  # type: ignore[arg-type]

    runs = n * 10  # microseconds each: more of them
    return [
        timed("runner", "build + encode a SetXCom frame", runs, encode, warmup=500),
        await atimed("runner", "SupervisorCheckpointStore.save, reply at once", runs, save, warmup=500),
        await atimed("runner", "SupervisorCheckpointStore.load, reply at once", runs,
                     lambda _: store.load(value["job_id"]), warmup=500),
    ]  # fmt: skip


async def airflow2(ti: SimpleNamespace, n: int) -> list[dict[str, Any]]:
    """The triggerer's own queries: the DB work alone, then as ``DatabaseCheckpointStore`` runs it."""
    from airflow.models.xcom import XCom

    from airflow_provider_hfjobs.triggers.log_checkpoint import Checkpoint, DatabaseCheckpointStore

    store = DatabaseCheckpointStore(ti)
    where = store._key()
    job_id = checkpoint_value(0)["job_id"]
    rows = [
        timed(
            "triggerer", "XCom.set (this thread)", n, lambda i: XCom.set(value=checkpoint_value(i), **where)
        ),
        timed("triggerer", "XCom.get_one (this thread)", n, lambda _: XCom.get_one(**where)),
    ]

    def save(i: int) -> Awaitable[None]:
        return store.save(Checkpoint.from_value(checkpoint_value(i), job_id))  # type: ignore[arg-type]

    rows.append(await atimed("triggerer", "DatabaseCheckpointStore.save (in a thread)", n, save))
    rows.append(await atimed("triggerer", "DatabaseCheckpointStore.load (in a thread)", n,
                             lambda _: store.load(job_id)))  # fmt: skip
    assert await store.load(job_id) is not None
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
            rows = airflow3_supervisor(ti, args.n) + asyncio.run(airflow3_runner(ti, args.n))
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
