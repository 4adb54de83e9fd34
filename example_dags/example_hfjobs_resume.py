"""Resume instead of restart: a training loop that checkpoints each epoch carries on after a crash.

``train`` (``@task.hf_job`` with ``checkpoint_dir=``) gets a folder of the bucket that every try of the task
instance shares, mounted at ``/checkpoints`` (``HFJOBS_CHECKPOINT_DIR``). After each epoch it saves its state
there and reports it (``report_checkpoint``). Its first try stops after epoch 2 (a simulated crash: exit 3);
Airflow retries it (``retries=1``), the retry gets ``HFJOBS_RESUME=1``, ``last_checkpoint()`` gives the epoch
2 checkpoint, and the loop goes on from epoch 3 (its task log says "resuming from epoch 3").

The bucket is read from ``HFJOBS_EXAMPLE_CHECKPOINTS`` (default ``my-org/checkpoints``; it must exist:
``hf buckets create my-org/checkpoints``).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

CHECKPOINTS = os.environ.get("HFJOBS_EXAMPLE_CHECKPOINTS", "my-org/checkpoints")

with DAG(
    dag_id="hfjobs_resume",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["huggingface", "checkpoints"],
):

    @task.hf_job(checkpoint_dir=CHECKPOINTS, retries=1, retry_delay=timedelta(seconds=1))
    def train(epochs: int = 5) -> dict:
        import json
        import os
        import sys

        from hfjobs_report import last_checkpoint, report_checkpoint, report_progress

        folder = os.environ["HFJOBS_CHECKPOINT_DIR"]
        resuming = os.environ.get("HFJOBS_RESUME") == "1"
        state, start = {"loss": 1.0}, 1
        last = last_checkpoint() if resuming else None
        if last is not None:
            with open(last["path"]) as handle:
                state = json.load(handle)
            start = last["step"] + 1
            print(f"resuming from epoch {start} (checkpoint {last['path']})", flush=True)
        else:
            print("starting from epoch 1", flush=True)
        for epoch in range(start, epochs + 1):
            state = {"epoch": epoch, "loss": round(state["loss"] * 0.5, 4)}  # one epoch of "training"
            path = os.path.join(folder, f"epoch-{epoch}.json")
            with open(path, "w") as handle:
                json.dump(state, handle)
            report_checkpoint(path, step=epoch)
            report_progress(epoch, epochs, "epoch")
            print(f"epoch {epoch} done: loss {state['loss']}", flush=True)
            if epoch == 2 and not resuming:
                print("simulated crash after epoch 2 (first try only)", flush=True)
                sys.exit(3)
        return state

    train()
