"""``make demo``: the quickstart DAG end to end on the local Jobs server.

1. Starts the local Jobs server on 127.0.0.1.
2. Runs one job through ``HfJobsHook`` and prints its live log lines and final stage.
3. Makes a throwaway ``AIRFLOW_HOME`` whose ``hf_default`` connection points at the server, migrates its
   DB and runs ``airflow dags test hfjobs_quickstart``: one task waits on the worker, one defers, and both
   show the job's log lines in the task output.

Exits non-zero if the job or the DAG run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
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

    hook = HfJobsHook()
    job = hook.run_job(image="python:3.12", command=["python", "-c", QUICKSTART], flavor="cpu-basic")
    print(f"Hugging Face job {job.id}: {job.url}", flush=True)
    for line in hook.fetch_job_logs(job.id, follow=True):
        print(f"  | {line}", flush=True)
    final = hook.wait_for_job(job.id, timeout=120, poll_interval=0.5)
    print(f"Job {final.id} finished: {final.stage.value}" + (f" ({final.message})" if final.message else ""))
    hook.close()
    return final.stage.is_success


def run_dag(server_url: str, token: str, dags: Path, home: Path, dag_id: str) -> int:
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
        return migrate.returncode
    print(f"AIRFLOW_HOME={home}; metadata DB migrated.", flush=True)
    say(f"airflow dags test {dag_id}")
    return subprocess.run([airflow, "dags", "test", dag_id], env=env, timeout=600).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags-folder", default="example_dags", help="folder holding the example DAGs")
    parser.add_argument("--dag-id", default="hfjobs_quickstart")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="hfjobs-demo-"))
    os.environ["AIRFLOW_HOME"] = str(home / "hook")
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    dags = Path(args.dags_folder).resolve()
    if not dags.is_dir():
        print(
            f"No DAGs folder at {dags}: run from the repository root or pass --dags-folder.", file=sys.stderr
        )
        return 2

    from airflow_provider_hfjobs.local import LocalJobsServer

    try:
        with LocalJobsServer(namespace="demo-user") as server:
            say(f"Local Hugging Face Jobs server at {server.url} (namespace {server.namespace})")
            say("A job through HfJobsHook")
            if not run_hook_job(server.url, server.token):
                return 1
            status = run_dag(server.url, server.token, dags, home / "airflow", args.dag_id)
            say(f"DAG {args.dag_id}: {'success' if status == 0 else 'FAILED'}")
            return status
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
