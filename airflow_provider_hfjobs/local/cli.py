"""``hfjobs-local``: run the local Hugging Face Jobs server.

hfjobs-local serve --port 8910 --token hf_local --namespace local-user
export HF_ENDPOINT=http://127.0.0.1:8910 HF_TOKEN=hf_local
hf jobs run python:3.12 python -c "print('hello')"
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from airflow_provider_hfjobs.local.faults import Fault
from airflow_provider_hfjobs.local.server import DEFAULT_NAMESPACE, DEFAULT_TOKEN, LocalJobsServer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfjobs-local", description="A local Hugging Face Jobs server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the Jobs API; each job runs as a local process")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8910, help="port (default 8910; 0 for any free port)")
    serve.add_argument(
        "--token", default=DEFAULT_TOKEN, help=f"the one accepted token (default {DEFAULT_TOKEN})"
    )
    serve.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the user the token belongs to")
    serve.add_argument(
        "--max-concurrency", type=int, default=4, help="jobs running at once; more wait in SCHEDULING"
    )
    serve.add_argument(
        "--keepalive-interval", type=float, default=30.0, help="seconds between SSE keep-alives"
    )
    serve.add_argument(
        "--work-dir", default=None, help="where job working directories go (default: a temp dir)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_concurrency < 1:
        print("hfjobs-local: --max-concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        faults = [Fault.parse(spec) for spec in args.fault]
    except ValueError as exc:
        print(f"hfjobs-local: --fault: {exc}", file=sys.stderr)
        return 2
    server = LocalJobsServer(
        host=args.host, port=args.port, token=args.token, namespace=args.namespace,
        max_concurrency=args.max_concurrency, keepalive_interval=args.keepalive_interval, work_dir=args.work_dir,
        faults=faults,
    )  # fmt: skip
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    with server:
        print(f"Local Hugging Face Jobs server on {server.url} (namespace {server.namespace})", flush=True)
        print(f"  export HF_ENDPOINT={server.url} HF_TOKEN={server.token}", flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
