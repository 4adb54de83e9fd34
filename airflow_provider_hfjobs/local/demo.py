"""``make demo``: the quickstart DAG end to end on the local Jobs server.

1. Starts the local Jobs server on 127.0.0.1.
2. Runs one job through ``HfJobsHook`` and prints its live log lines and final stage.
3. Makes an ``AIRFLOW_HOME`` under ``--home`` (``.demo/`` by default, kept until the next demo) whose
   ``hf_default`` connection points at the server, migrates its DB and runs ``airflow dags test
   hfjobs_quickstart``: one task waits on the worker, one defers, and both show the job's log lines in the
   task output.
4. Airflow's own messages go to a file; the console shows each task with its job's lines and cost, then
   where the full output is.

Exits non-zero if the job or the DAG run fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

QUICKSTART = textwrap.dedent(
    """
    import platform, time
    print("Hello from the cloud!", flush=True)
    for step in range(1, 4):
        print(f"step {step}/3 on {platform.machine()}", flush=True)
        time.sleep(0.3)
    print("done", flush=True)
    """
).strip()


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run_hook_job(server_url: str, token: str) -> bool:
    os.environ["AIRFLOW_CONN_HF_DEFAULT"] = json.dumps(
        {"conn_type": "hf_jobs", "host": server_url, "password": token}
    )
    from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook

    logging.getLogger("airflow").setLevel(logging.WARNING)  # "Retrieving connection ..." is Airflow's talk
    hook = HfJobsHook()
    job = hook.run_job(image="python:3.12", command=["python", "-c", QUICKSTART], flavor="cpu-basic")
    print(f"Hugging Face job {job.id}: {job.url}", flush=True)
    for line in hook.fetch_job_logs(job.id, follow=True):
        print(f"  | {line}", flush=True)
    final = hook.wait_for_job(job.id, timeout=120, poll_interval=0.5)
    print(f"Job {final.id} finished: {final.stage.value}" + (f" ({final.message})" if final.message else ""))
    hook.close()
    return final.stage.is_success


#: A line of ``airflow dags test`` output: structlog's console format on Airflow 3, logging's on 2.x.
STRUCTLOG_LINE = re.compile(r"^\S+ \[\s*(?P<level>\w+)\s*\] (?P<event>.*?)\s+\[(?P<logger>[\w.]+)\]")
# On 2.x each task line comes twice (two handlers); the ISO-timestamped copy names the source file.
LOGGING_LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\dT[^\]]+\] \{(?P<logger>[^}:]*)[^}]*\} (?P<level>\w+) - (?P<event>.*)$"
)
TASK_START = re.compile(
    r"\[DAG TEST\] (?:starting|running) task(?:_id=| <TaskInstance: [\w.]+\.)(?P<task>[\w.-]+)"
)
RUN_ID = re.compile(r"run_id=(manual__[^\s,>]+)")
#: What the provider says about a job (everything else it logs is the job's own output).
PROVIDER_MESSAGE = re.compile(r"^(Hugging Face job |Job [0-9a-f]+ |Deferring|Resuming|Watching)")


class DemoView:
    """Sorts ``airflow dags test`` output: all of it to the log file, the job's lines to the console."""

    def __init__(self) -> None:
        self.task: str | None = None
        self.run_id: str | None = None

    def lines_for_console(self, line: str) -> Iterable[str]:
        line = line.rstrip("\n")
        if self.run_id is None and (run := RUN_ID.search(line)):
            self.run_id = run[1]
        if (start := TASK_START.search(line)) and start["task"] != self.task:
            self.task = start["task"]
            yield ""
            yield f"--- task {self.task}"
            return
        match = STRUCTLOG_LINE.match(line) or LOGGING_LINE.match(line)
        if match is None:
            return
        logger = match["logger"]
        event = match["event"]
        ours = "airflow_provider_hfjobs" in logger or logger == "hfjobs.py"  # our operator or trigger
        if ours and PROVIDER_MESSAGE.match(event):
            yield f"    {event}"
        elif ours:
            yield f"    | {event}"
        elif match["level"].lower() in ("error", "critical"):
            yield f"    Airflow {match['level'].upper()}: {event}"


def run_dag(
    server_url: str, token: str, dags: Path, home: Path, dag_id: str, output: Path
) -> tuple[int, str | None]:
    """``airflow dags test`` in ``home``: its exit status and the run's id, if it got that far."""
    airflow = str(Path(sys.executable).parent / "airflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_HF_DEFAULT=json.dumps({"conn_type": "hf_jobs", "host": server_url, "password": token}),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONWARNINGS="ignore",
    )
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    if migrate.returncode != 0:
        print(migrate.stdout[-4000:], migrate.stderr[-4000:], sep="\n")
        return migrate.returncode, None
    say(f"airflow dags test {dag_id}  (Airflow's own messages: {output})")
    view = DemoView()
    with output.open("w") as log, subprocess.Popen(
        [airflow, "dags", "test", dag_id], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace",
    ) as process:  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            for shown in view.lines_for_console(line):
                print(shown, flush=True)
        status = process.wait(timeout=600)
    return status, view.run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags-folder", default="example_dags", help="folder holding the example DAGs")
    parser.add_argument("--dag-id", default="hfjobs_quickstart")
    parser.add_argument(
        "--home",
        default=".demo",
        help="the demo's AIRFLOW_HOME and output, emptied at the start of each demo",
    )
    args = parser.parse_args(argv)

    home = Path(args.home).resolve()
    marker = home / ".hfjobs-demo"
    if home.exists() and any(home.iterdir()) and not marker.exists():
        print(
            f"--home {home} is not empty and not a previous demo's (no {marker.name} in it), so the demo will not "
            "empty it: remove it yourself, or pass --home with another directory.",
            file=sys.stderr,
        )
        return 2
    shutil.rmtree(home, ignore_errors=True)  # the previous demo's, kept until now
    home.mkdir(parents=True)
    marker.touch()
    os.environ["AIRFLOW_HOME"] = str(home / "hook")
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    dags = Path(args.dags_folder).resolve()
    if not dags.is_dir():
        print(
            f"No DAGs folder at {dags}: run from the repository root or pass --dags-folder.", file=sys.stderr
        )
        return 2

    from airflow_provider_hfjobs.local import LocalJobsServer

    output = home / "dags-test.log"
    with LocalJobsServer(namespace="demo-user") as server:
        say(f"Local Hugging Face Jobs server at {server.url} (namespace {server.namespace})")
        say("A job through HfJobsHook")
        if not run_hook_job(server.url, server.token):
            return 1
        status, run_id = run_dag(server.url, server.token, dags, home / "airflow", args.dag_id, output)
    say(f"DAG {args.dag_id}: {'success' if status == 0 else 'FAILED'}")
    if status != 0:
        print(textwrap.indent("".join(output.read_text().splitlines(True)[-30:]), "  "), end="")
    print(
        f"\nWhere to look (kept until the next `make demo`):\n"
        f"  Full output of `airflow dags test`, Airflow's messages and both task logs: {output}\n"
        f"  AIRFLOW_HOME with the run in its metadata DB: {home / 'airflow'}\n"
        f"    AIRFLOW_HOME={home / 'airflow'} {Path(sys.executable).parent}/airflow tasks states-for-dag-run "
        f"{args.dag_id} '{run_id or '<run_id>'}'\n"
        "  (`airflow dags test` writes no task log files; a deployment keeps them under "
        "$AIRFLOW_HOME/logs/dag_id=.../)",
        flush=True,
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
