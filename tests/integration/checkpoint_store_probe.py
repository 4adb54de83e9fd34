"""Run by tests/integration/test_checkpoint_store.py in a fresh interpreter whose AIRFLOW_HOME holds a
migrated metadata DB: the process's record through this Airflow's real store (Airflow 3: Variables through a
real ``TriggerRunnerSupervisor`` and its in-process Execution API, over a real ``TriggerCommsDecoder``;
Airflow 2: the metadata DB). Airflow logs to this process's output, which the test reads: everything before
the :data:`CONTRAST` line is this store's doing. Prints the result as the last JSON line."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sys
import threading
import uuid
from typing import Any

#: Printed before the earlier design's read (a ``GetXCom`` of a key not written yet), for contrast.
CONTRAST = "--- GetXCom of a key not written yet ---"


def supervised_comms(loop: asyncio.AbstractEventLoop) -> Any:
    """The trigger runner's channel to a real supervisor in this process: each request frame goes through
    ``TriggerRunnerSupervisor.handle_requests`` (as its socket reader hands it over), each reply back into
    the runner's reader."""
    import msgspec
    import structlog
    from airflow.jobs.triggerer_job_runner import TriggerCommsDecoder, TriggerRunnerSupervisor
    from airflow.sdk.execution_time.comms import _RequestFrame

    reader = asyncio.StreamReader()
    inbox: queue.Queue[bytes] = queue.Queue()

    class ToRunner:
        def sendall(self, data: bytes) -> None:
            loop.call_soon_threadsafe(reader.feed_data, bytes(data))

    supervisor = TriggerRunnerSupervisor(
        id=uuid.uuid4(), pid=os.getpid(), stdin=ToRunner(), process=None, process_log=structlog.get_logger(),
        capacity=10,
    )  # fmt: skip
    requests = supervisor.handle_requests(structlog.get_logger())
    next(requests)
    frames = msgspec.msgpack.Decoder(_RequestFrame)

    def serve() -> None:  # the supervisor's own thread, as it is its own process in a triggerer
        while True:
            requests.send(frames.decode(memoryview(inbox.get())[4:]))

    threading.Thread(target=serve, daemon=True).start()

    class ToSupervisor:
        def write(self, data: bytes) -> None:
            inbox.put(bytes(data))

    return TriggerCommsDecoder(async_writer=ToSupervisor(), async_reader=reader, socket=None)


async def main() -> dict[str, Any]:
    from airflow_provider_hfjobs.triggers.log_checkpoint import RECORD_PREFIX, CheckpointBook, record_store
    from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_PLUS

    comms = store = None
    if AIRFLOW_V_3_PLUS:
        from airflow_provider_hfjobs.triggers.log_checkpoint import SupervisorRecordStore

        comms = supervised_comms(asyncio.get_running_loop())
        await comms.start_reader()

        class Store(SupervisorRecordStore):
            """The real store's messages over this channel (not set as the process's ``SUPERVISOR_COMMS``: the
            in-process API server beside it would take itself for a task then)."""

            async def _send(self, message: Any) -> Any:
                return await comms.asend(message)

        assert type(record_store()) is SupervisorRecordStore
        store = Store()
    store = store or record_store()
    result: dict[str, Any] = {"store": "SupervisorRecordStore" if comms else type(store).__name__}

    first = CheckpointBook(store, 100.0)  # a process
    result["missing"] = await first.find("k1")
    shown: list[str] = []
    entry = first.open("k1", 0, lambda texts, end: shown.extend(texts), lambda exc: None)
    entry.add([1, 2, 3], ["a", "b", "c"])
    while len(shown) < 3 or first.writes < 2:
        await asyncio.sleep(0.01)
    entry.close()
    while first.writes < 3:  # a closed place is written exact
        await asyncio.sleep(0.01)
    result["shown"], result["writes"] = shown, first.writes
    result["keys"] = (await store.keys(RECORD_PREFIX, 0))[0]
    second = CheckpointBook(store, 100.0)  # the next process, after a restart
    found = await second.find("k1")
    result["found"] = None if found is None else [found.shown, found.showing]
    await store.delete(first.record_key)
    result["keys after delete"] = (await store.keys(RECORD_PREFIX, 0))[0]
    if comms is not None:  # what the earlier design did at each start
        from airflow.sdk.execution_time.comms import GetXCom

        print(CONTRAST, flush=True)
        await comms.asend(
            GetXCom(key="hf_job_log_checkpoint", dag_id="d", run_id="r", task_id="t", map_index=-1)
        )
    return result


if __name__ == "__main__":
    found = asyncio.run(main())
    print(json.dumps(found), flush=True)
    sys.stderr.flush()
    os._exit(0)  # the in-process API server's worker threads would keep the interpreter waiting
