"""``LocalJobsServer``: the local Jobs server in a background thread, for tests, demos and notebooks.

with LocalJobsServer(token="t", namespace="alice") as server:
    HfApi(endpoint=server.url, token=server.token).run_job(...)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from typing import Any

import uvicorn

from airflow_provider_hfjobs.local.app import create_app
from airflow_provider_hfjobs.local.faults import Fault, FaultInjector
from airflow_provider_hfjobs.local.runner import ProcessRunner, default_work_root

DEFAULT_TOKEN = "hf_local_token"
DEFAULT_NAMESPACE = "local-user"


class LocalJobsServer:
    """An HF-Jobs-compatible server on ``host:port`` (port 0: a free one), running jobs as local processes."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = DEFAULT_TOKEN,
        namespace: str = DEFAULT_NAMESPACE,
        max_concurrency: int = 4,
        keepalive_interval: float = 30.0,
        work_dir: str | None = None,
        start_timeout: float = 15.0,
        faults: list[Fault] | None = None,
    ) -> None:
        self.host = host
        self.token = token
        self.namespace = namespace
        self.keepalive_interval = keepalive_interval
        self.start_timeout = start_timeout
        self._owns_work_dir = work_dir is None
        self.work_dir = work_dir or default_work_root()
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        self._max_concurrency = max_concurrency
        self.faults = FaultInjector()
        for fault in faults or []:
            self.faults.add(fault)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> LocalJobsServer:
        os.makedirs(self.work_dir, exist_ok=True)
        self._runner_args = (self.work_dir, self._max_concurrency)
        app = _LazyApp(self)
        config = uvicorn.Config(
            app, log_level="warning", loop="asyncio", http="h11", lifespan="on", date_header=False,
            server_header=False, timeout_graceful_shutdown=3, access_log=False,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="hfjobs-local-server",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the local Jobs server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        self._socket.close()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def add_fault(self, fault: Fault) -> Fault:
        """Inject a fault (see :mod:`airflow_provider_hfjobs.local.faults`); safe from any thread."""
        return self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def __enter__(self) -> LocalJobsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _LazyApp:
    """Builds the app inside the server's event loop (its runner owns loop-bound primitives)."""

    def __init__(self, owner: LocalJobsServer) -> None:
        self._owner = owner
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            owner = self._owner
            runner = ProcessRunner(*owner._runner_args)
            self._app = create_app(
                token=owner.token, namespace=owner.namespace, runner=runner,
                keepalive_interval=owner.keepalive_interval, faults=owner.faults,
            )  # fmt: skip
            owner.app = self._app
            owner.loop = asyncio.get_running_loop()
        await self._app(scope, receive, send)
