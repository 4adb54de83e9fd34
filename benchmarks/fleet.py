"""Fleet: N deferred chatty jobs in a real Airflow deployment, with log checkpoints at their defaults and
turned off: how late each job line reaches the task log, and how late each job's end reaches its event.

    .venv/bin/python benchmarks/fleet.py                       # 60 jobs, a line a second for 150 s (~10 min)
    .venv/bin/python benchmarks/fleet.py --n 20 --seconds 60   # quicker

Each configuration is a fresh deployment, as tests/system runs it: ``airflow standalone`` (scheduler,
LocalExecutor, triggerer, API server, DAG processor; SQLite) in its own process group with a throwaway
AIRFLOW_HOME, and the local Jobs server (real jobs: each a Python process) beside it. One run of a mapped
``HfJobRunOperator(deferrable=True)``: N jobs, each printing ``fleet line <i> printed <epoch>`` every second.
The defaults row has no ``[hfjobs]`` setting; the other sets ``log_checkpoint_steps_per_second = 0``.

Before the measured run, a one-job deferred warm-up run (``--no-warm-up`` skips it): a triggerer's first
request to its supervisor starts Airflow's in-process Execution API, seconds during which the supervisor
serves nothing (no trigger is started, no event forwarded). With checkpoints the first trigger makes that
request (its look-up); without them, and with the connection in an environment variable, no trigger ever
does. A long-running triggerer has long paid it; ``--no-warm-up`` measures a fresh one.

Read afterwards from the task logs on disk (the files the REST API merges), for every job line: *line ->
task log* is the log record's time stamp minus the moment the job printed the line, whether the trigger
wrote it (``attempt=1.log.trigger.*.log``) or the resumed task did (``attempt=1.log``); every line must be
there exactly once. *End -> event* is the job's ``finishedAt`` (the Jobs server's) to the trigger's
"Trigger fired event" record. *Triggerer CPU* is the CPU time of the triggerer's two processes (its
supervisor, which also serves the checkpoint writes, and its trigger runner) from the run's start to its end.

Airflow 3 only (the log formats read here are Airflow 3's); Airflow 2.11's checkpoints are benchmarked by
checkpoint_cost.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import percentile, save, table

DAG_ID, TASK_ID = "hfjobs_fleet", "chatty"
COLUMNS = [
    "checkpoints", "jobs", "lines", "each line once", "by the trigger", "by the task", "line p50 s",
    "line p90 s", "line p99 s", "line max s", "end->event p50 s", "end->event p99 s", "end->event max s",
    "triggerer CPU s", "triggerer cores", "run s",
]  # fmt: skip
FLEET_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

CODE = (
    "import time\\n"
    "for i in range({seconds}):\\n"
    "    print(f'fleet line {{i}} printed {{time.time():.3f}}', flush=True)\\n"
    "    time.sleep(1)\\n"
)
with DAG(
    dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), max_active_tasks={n},
):
    HfJobRunOperator.partial(
        task_id="{task_id}", image="python:3.12", deferrable=True, poll_interval=5, retries=0,
    ).expand(command=[["python", "-c", CODE]] * {n})

with DAG(dag_id="{dag_id}_warmup", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    HfJobRunOperator(
        task_id="warmup", image="python:3.12", deferrable=True, poll_interval=5, retries=0,
        command=["python", "-c", "import time\\nfor i in range(3):\\n    print(i, flush=True)\\n    time.sleep(1)"],
    )
"""
LINE = re.compile(r"^fleet line (\d+) printed (\d+\.\d+)$")
JOB = re.compile(r"^Hugging Face job ([0-9a-f]{24}): ")


def stamp(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()


def records(path: Path) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "timestamp" in record:
                found.append(record)
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def triggerer_pids(deployment: Any) -> list[int]:
    """The triggerer's processes (supervisor and trigger runner) among the deployment's."""
    pids = []
    for pid in deployment.processes():
        with contextlib.suppress(OSError):
            if b"triggerer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return pids


def finished_at(jobs_url: str, token: str, namespace: str) -> dict[str, float]:
    import httpx

    from airflow_provider_hfjobs.jobs import parse_timestamp

    found: dict[str, float] = {}
    url: str | None = f"{jobs_url}/api/jobs/{namespace}"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        while url:
            response = client.get(url)
            for job in response.json():
                if job.get("finishedAt"):
                    found[job["id"]] = parse_timestamp(job["finishedAt"]).timestamp()
            url = response.links.get("next", {}).get("url")
    return found


def measure(home: Path, run_id: str, n: int, seconds: int, ends: dict[str, float]) -> dict[str, Any]:
    """Lines and ends, from the task logs on disk."""
    delays: list[float] = []
    late: list[tuple[float, int, int, str]] = []  # (delay, map index, line, where) of the latest lines
    wrong: list[str] = []  # lines not there exactly once
    end_delays: list[float] = []
    by_trigger = by_task = once = 0
    for index in range(n):
        folder = (
            home
            / "logs"
            / f"dag_id={DAG_ID}"
            / f"run_id={run_id}"
            / f"task_id={TASK_ID}"
            / f"map_index={index}"
        )
        seen: dict[int, int] = {}
        job_id, fired = None, None
        for path in sorted(folder.glob("attempt=1.log*")):
            from_trigger = ".trigger." in path.name
            for record in records(path):
                event = str(record.get("event", ""))
                if (line := LINE.match(event)) is not None:
                    seen[int(line[1])] = seen.get(int(line[1]), 0) + 1
                    delays.append(stamp(record) - float(line[2]))
                    late.append((delays[-1], index, int(line[1]), "trigger" if from_trigger else "task"))
                    by_trigger += from_trigger
                    by_task += not from_trigger
                elif (job := JOB.match(event)) is not None:
                    job_id = job[1]
                elif from_trigger and event == "Trigger fired event":
                    fired = stamp(record)
        once += sum(seen.get(i) == 1 for i in range(seconds))
        wrong += [f"map {index} line {i}: {seen.get(i, 0)}x" for i in range(seconds) if seen.get(i) != 1]
        if job_id in ends and fired is not None:
            end_delays.append(fired - ends[job_id])
    return {
        "jobs": n,
        "lines": n * seconds,
        "each line once": f"{once}/{n * seconds}",
        "by the trigger": by_trigger,
        "by the task": by_task,
        "line p50 s": percentile(delays, 0.5),
        "line p90 s": percentile(delays, 0.9),
        "line p99 s": percentile(delays, 0.99),
        "line max s": max(delays, default=float("nan")),
        "end->event p50 s": percentile(end_delays, 0.5),
        "end->event p99 s": percentile(end_delays, 0.99),
        "end->event max s": max(end_delays, default=float("nan")),
        "ends timed": f"{len(end_delays)}/{n}",
        "not once": wrong[:50],
        "latest lines (s, map index, line, by)": sorted(late, reverse=True)[:20],
    }


@contextlib.contextmanager
def kept(keep: bool) -> Any:
    """A throwaway AIRFLOW_HOME, left on disk with ``keep`` (its path printed) for a look at the logs."""
    if not keep:
        with tempfile.TemporaryDirectory(prefix="hfjobs-fleet-") as tmp:
            yield tmp
        return
    tmp = tempfile.mkdtemp(prefix="hfjobs-fleet-")
    print(f"AIRFLOW_HOME kept: {tmp}", flush=True)
    yield tmp


def run(
    label: str, steps: str | None, n: int, seconds: int, parallelism: int, warm_up: bool, keep: bool = False
) -> dict[str, Any]:
    from airflow_provider_hfjobs.local import LocalJobsServer
    from tests.system.test_deployment import NS, TOKEN, Deployment, wait_for

    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=n + 4) as jobs, kept(keep) as tmp:
        home = Path(tmp)
        deployment = Deployment(home, jobs)
        (home / "dags" / "hfjobs_fleet.py").write_text(
            FLEET_DAG.format(dag_id=DAG_ID, task_id=TASK_ID, n=n, seconds=seconds)
        )
        deployment.env.update(
            AIRFLOW__CORE__PARALLELISM=str(parallelism),
            AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=str(n),
            AIRFLOW__CORE__MAX_MAP_LENGTH=str(max(n, 1024)),
        )
        if steps is not None:
            deployment.env["AIRFLOW__HFJOBS__LOG_CHECKPOINT_STEPS_PER_SECOND"] = steps
        try:
            started = time.monotonic()
            deployment.start()
            print(f"[{label}] deployment up in {time.monotonic() - started:.0f} s", flush=True)
            if warm_up:
                warm = deployment.trigger(f"{DAG_ID}_warmup")
                wait_for(
                    "the warm-up run",
                    lambda: deployment.run_state(f"{DAG_ID}_warmup", warm) == "success",
                    300,
                )
            pids = triggerer_pids(deployment)
            cpu_before = cpu_seconds(pids)
            began = time.monotonic()
            run_id = deployment.trigger(DAG_ID)
            state = wait_for(
                f"the {DAG_ID} run", lambda: (s := deployment.run_state(DAG_ID, run_id)) in ("success", "failed") and s,
                timeout=seconds + 60 * max(10, n // 6), interval=2,
            )  # fmt: skip
            took = time.monotonic() - began
            cpu = cpu_seconds(pids) - cpu_before
            if state != "success":
                raise SystemExit(f"[{label}] the run ended {state}:\n{deployment.tail()}")
            time.sleep(3)  # the triggerer's last records reach the files
            row = measure(home, run_id, n, seconds, finished_at(jobs.url, TOKEN, NS))
        finally:
            deployment.stop()
    label += "" if warm_up else ", fresh triggerer (no warm-up)"
    return {"checkpoints": label, **row, "triggerer CPU s": cpu, "triggerer cores": cpu / took, "run s": took}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60, help="deferred jobs (one mapped task each)")
    parser.add_argument("--seconds", type=int, default=150, help="lines each job prints, one a second")
    parser.add_argument(
        "--parallelism", type=int, default=8, help="[core] parallelism (LocalExecutor workers)"
    )
    parser.add_argument("--only", choices=["defaults", "off"], help="one configuration only")
    parser.add_argument("--no-warm-up", action="store_true", help="measure a fresh triggerer (see above)")
    parser.add_argument("--keep", action="store_true", help="leave each AIRFLOW_HOME on disk (logs)")
    args = parser.parse_args(argv)
    import airflow

    if int(airflow.__version__.split(".")[0]) < 3:
        raise SystemExit("fleet.py reads Airflow 3's log formats; run it with .venv (Airflow 3)")
    configurations = [("defaults", None), ("off (steps_per_second = 0)", "0")]
    if args.only:
        configurations = [c for c in configurations if c[0].startswith(args.only)]
    rows = []
    for label, steps in configurations:
        rows.append(run(label, steps, args.n, args.seconds, args.parallelism, not args.no_warm_up, args.keep))
        print(table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    print()
    print(table(rows, COLUMNS))
    path = save("fleet-fresh" if args.no_warm_up else "fleet", {"command": " ".join(["benchmarks/fleet.py", *(argv or sys.argv[1:])]),
                          "args": vars(args), "rows": rows})  # fmt: skip
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
