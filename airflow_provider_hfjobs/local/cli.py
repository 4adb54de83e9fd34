"""``hfjobs-local``: run the local Hugging Face Jobs server.

hfjobs-local serve --port 8910 --namespace local-user   # prints the export line with a fresh token
export HF_ENDPOINT=http://127.0.0.1:8910 HF_TOKEN=hf_local_...
hf jobs run python:3.12 python -c "print('hello')"
"""

from __future__ import annotations

import argparse
import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path

from airflow_provider_hfjobs.local.faults import Fault
from airflow_provider_hfjobs.local.limits import DEFAULT_HEADER_TIMEOUT
from airflow_provider_hfjobs.local.runner import DEFAULT_PASS_ENV, check_flavor_capacity
from airflow_provider_hfjobs.local.server import DEFAULT_NAMESPACE, LocalJobsServer, UnsafeBindError
from airflow_provider_hfjobs.local.simulated import Scenario

#: Longest a stop may take once signalled: jobs get SIGTERM, then SIGKILL, well within it.
STOP_DEADLINE_SECONDS = 20.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfjobs-local", description="A local Hugging Face Jobs server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the Jobs API; each job runs as a local process")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other needs --token: jobs run commands as you)",
    )
    serve.add_argument("--port", type=int, default=8910, help="port (default 8910; 0 for any free port)")
    serve.add_argument(
        "--token",
        default=None,
        help="the one accepted token (default: a random one, printed at start); visible to other local users "
        "in the process list: prefer --token-file",
    )
    serve.add_argument(
        "--token-file",
        default=None,
        metavar="PATH",
        help="read the one accepted token from this file (its first line; not readable by other users)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to NAME (repeatable; default: only 127.0.0.0/8, localhost, "
        "[::1] and the --host address, against DNS rebinding; '*' allows any)",
    )
    serve.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the user the token belongs to")
    serve.add_argument(
        "--max-concurrency", type=int, default=4, help="jobs running at once; more wait in SCHEDULING"
    )
    serve.add_argument(
        "--flavor-capacity",
        action="append",
        default=[],
        metavar="FLAVOR=N",
        help="at most N jobs of FLAVOR run at once (repeatable, e.g. --flavor-capacity a10g-small=0 "
        "--flavor-capacity t4-small=1); the others wait in SCHEDULING and can be cancelled; 0: that flavor "
        "never starts, as when the Hub has no such machine free (a test of a job that waits). Flavors not "
        "listed: only --max-concurrency applies",
    )
    serve.add_argument(
        "--keepalive-interval", type=float, default=30.0, help="seconds between SSE keep-alives"
    )
    serve.add_argument(
        "--state-dir",
        default=None,
        help="keep jobs, their logs and working directories here; a server started again on it picks up "
        "every job, and jobs run on while it is down (default: a temporary directory, removed at exit, "
        "and running jobs are cancelled)",
    )
    serve.add_argument(
        "--volume-source-dir",
        default=None,
        metavar="DIR",
        help="where model, dataset and space volumes come from: DIR/models/<ns>/<name>, "
        "DIR/datasets/<ns>/<name>, DIR/spaces/<ns>/<name> (default: such volumes are refused; bucket "
        "volumes are directories under the state directory)",
    )
    serve.add_argument(
        "--pass-env",
        action="append",
        default=[],
        metavar="NAME",
        help="give every job the variable NAME of this shell's environment (repeatable). Jobs get none of "
        "it otherwise, except the proxy and CA variables, passed by default so that uv and pip in a job "
        f"reach what this shell reaches: {', '.join(DEFAULT_PASS_ENV)}",
    )
    serve.add_argument(
        "--no-default-pass-env",
        action="store_true",
        help="do not pass the proxy and CA variables by default (only the --pass-env names)",
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. status,status=429,retry_after=1,times=3 or cut,path=/logs,after_events=5 "
        "(repeatable; also POST /_local/faults)",
    )
    serve.add_argument(
        "--simulate",
        nargs="?",
        const="",
        default=None,
        metavar="SCENARIO",
        help="LOAD-TESTING MODE: run no process; each job plays a script in memory (e.g. "
        "duration=5,lines=10,stage=COMPLETED; a job's HFJOBS_SIM_* variables override it)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="connections served at once; a new one over it is closed (default 1000, kept 256 below the "
        "file-descriptor limit, so that idle connections cannot starve the jobs)",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT,
        help=f"seconds a connection has to send a complete request head (default {DEFAULT_HEADER_TIMEOUT:g})",
    )
    return parser


def parse_flavor_capacity(items: list[str]) -> dict[str, int]:
    """``["a10g-small=0", "t4-small=1"]`` as ``{"a10g-small": 0, "t4-small": 1}`` (``ValueError`` if bad)."""
    capacity: dict[str, int] = {}
    for item in items:
        flavor, sep, count = item.partition("=")
        if not sep or not count.strip().isdigit():
            raise ValueError(f"{item!r} must be FLAVOR=N with N a whole number, e.g. a10g-small=0")
        capacity[flavor.strip()] = int(count)
    return check_flavor_capacity(capacity)


def read_token(token: str | None, token_file: str | None) -> str | None:
    """The token of ``--token`` or ``--token-file`` (``ValueError`` for both, an unreadable or empty file,
    or a file other users may read: the token runs commands as you)."""
    if token_file is None:
        return token
    if token is not None:
        raise ValueError("give --token or --token-file, not both")
    path = Path(token_file).expanduser()
    try:
        mode = path.stat().st_mode
        first = path.read_text().splitlines()[:1]
    except OSError as exc:
        raise ValueError(f"--token-file {token_file}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ValueError(
            f"--token-file {token_file} may be read by other users (mode {stat.S_IMODE(mode):o}): "
            f"chmod 600 {token_file}"
        )
    if not first or not first[0].strip():
        raise ValueError(f"--token-file {token_file} is empty: put the token on its first line")
    return first[0].strip()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_concurrency < 1:
        print("hfjobs-local: --max-concurrency must be at least 1, e.g. --max-concurrency 4", file=sys.stderr)
        return 2
    try:
        faults = [Fault.parse(spec) for spec in args.fault]
    except ValueError as exc:
        print(f"hfjobs-local: --fault: {exc}", file=sys.stderr)
        return 2
    try:
        simulate = None if args.simulate is None else Scenario.parse(args.simulate)
    except ValueError as exc:
        print(f"hfjobs-local: --simulate: {exc}", file=sys.stderr)
        return 2
    try:
        flavor_capacity = parse_flavor_capacity(args.flavor_capacity)
    except ValueError as exc:
        print(f"hfjobs-local: --flavor-capacity: {exc}", file=sys.stderr)
        return 2
    try:
        token = read_token(args.token, args.token_file)
    except ValueError as exc:
        print(f"hfjobs-local: {exc}", file=sys.stderr)
        return 2
    try:
        server = LocalJobsServer(
            host=args.host, port=args.port, token=token, namespace=args.namespace,
            max_concurrency=args.max_concurrency, keepalive_interval=args.keepalive_interval,
            state_dir=args.state_dir, faults=faults, simulate=simulate, allowed_hosts=args.allow_host,
            volume_source_dir=args.volume_source_dir,
            pass_env=[*(() if args.no_default_pass_env else DEFAULT_PASS_ENV), *args.pass_env],
            flavor_capacity=flavor_capacity, max_connections=args.max_connections,
            header_timeout=args.header_timeout,
        )  # fmt: skip
    except (UnsafeBindError, ValueError) as exc:  # a --volume-source-dir that is no directory, a bad name
        print(f"hfjobs-local: {exc}", file=sys.stderr)
        return 2
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: on_stop_signal(stopped))
    signal.signal(signal.SIGINT, lambda *_: on_stop_signal(stopped))
    with server:
        print(f"Local Hugging Face Jobs server on {server.url} (namespace {server.namespace})", flush=True)
        # A token made here is shown once, to its user; one the user chose may be a real HF token, never echoed.
        token = server.token if server.token_generated else "<the token you gave>"
        print(f"  export HF_ENDPOINT={server.url} HF_TOKEN={token}", flush=True)
        print(f"  job pages: {server.pages_url} (log in with the token)", flush=True)
        print(
            f"  buckets: directories under {server.state_dir}/buckets (hf buckets create NS/NAME)", flush=True
        )
        # Names only: a proxy URL may hold a password.
        passed = ", ".join(server.pass_env) or "none (see --pass-env)"
        print(f"  passed to jobs from this environment: {passed}", flush=True)
        if unset := [name for name in args.pass_env if name not in server.pass_env]:
            print(f"  --pass-env {', '.join(unset)}: not set here, so not passed", flush=True)
        if simulate is not None:
            print(f"  load-testing mode: jobs are simulated ({simulate}), no process runs", flush=True)
        stopped.wait()
        # Whatever a job or a stuck thread does, the server is gone within STOP_DEADLINE_SECONDS.
        threading.Thread(target=exit_after, args=(STOP_DEADLINE_SECONDS,), daemon=True).start()
    return 0


def on_stop_signal(stopped: threading.Event) -> None:
    """The first SIGTERM/SIGINT stops the server (jobs cancelled, unless kept); a second one exits now."""
    if stopped.is_set():
        os._exit(1)
    stopped.set()


def exit_after(seconds: float) -> None:
    """Exit the process if it is still here after ``seconds`` (a thread that will not stop holds it)."""
    time.sleep(seconds)
    print(f"hfjobs-local: still stopping after {seconds:g} s: exiting now", file=sys.stderr, flush=True)
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
