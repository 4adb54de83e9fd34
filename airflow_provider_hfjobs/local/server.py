"""``LocalJobsServer``: the local Jobs server in a background thread, for tests, demos and notebooks.

with LocalJobsServer(namespace="alice") as server:  # a random token, in server.token
    HfApi(endpoint=server.url, token=server.token).run_job(...)
    server.restart(downtime=1.0)  # clients see the API go away and come back; jobs run on
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import uvicorn

from airflow_provider_hfjobs.local.app import create_app
from airflow_provider_hfjobs.local.faults import Fault, FaultInjector
from airflow_provider_hfjobs.local.limits import (
    DEFAULT_HEADER_TIMEOUT,
    connection_cap,
    guarded_h11,
    make_undumpable,
    raise_file_limit,
)
from airflow_provider_hfjobs.local.runner import (
    DEFAULT_PASS_ENV,
    ProcessRunner,
    check_flavor_capacity,
    passed_environment,
)
from airflow_provider_hfjobs.local.scheduled_store import ScheduledJobStore
from airflow_provider_hfjobs.local.simulated import Scenario, SimulatedRunner
from airflow_provider_hfjobs.local.store import JobStore, private_directory
from airflow_provider_hfjobs.local.volumes import BucketStore, Volumes

DEFAULT_NAMESPACE = "local-user"


def generate_token() -> str:
    """A fresh token for one server: whoever can send it runs commands as the developer."""
    return f"hf_local_{secrets.token_urlsafe(24)}"


def is_loopback_address(host: str) -> bool:
    """Whether listening on ``host`` is reachable from this machine only (a name: all its addresses)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


class UnsafeBindError(ValueError):
    """Listening beyond loopback with a token nobody chose: anyone on the network could run commands."""


class LocalJobsServer:
    """An HF-Jobs-compatible server on ``host:port`` (port 0: a free one), running jobs as local processes.

    ``state_dir`` keeps job records, logs and working directories, and the scheduled jobs (with their
    secret values, for their future runs: :mod:`.scheduled_store`); a server started on it again picks
    up every job, including those that ran on meanwhile, and jobs keep running when it stops. Without
    one, a temporary directory is used and removed at ``stop()``, and running jobs are cancelled.
    ``restart()`` stops serving and serves again from the same state, with jobs running on.

    ``simulate``: load-testing mode (:mod:`.simulated`): jobs play a script in memory, no process starts.

    Buckets are directories under ``state_dir/buckets``; ``volume_source_dir`` is where model, dataset and
    space volumes come from (``DIR/datasets/<namespace>/<name>``, ...): see :mod:`.volumes`.

    Jobs get none of this process's environment but the variables named in ``pass_env`` (default
    :data:`~.runner.DEFAULT_PASS_ENV`: proxies and CA files), read when the server is made.

    ``flavor_capacity``: ``{flavor: N}``, at most N jobs of that flavor run at once (0: none ever), the
    others wait in SCHEDULING and can be cancelled; a test makes a flavor unavailable this way. Unlisted
    flavors are bound by ``max_concurrency`` only. Not with ``simulate`` (simulated jobs start at once).

    ``max_connections`` (default 1,000, kept 256 below the descriptor limit, which ``start()`` raises to
    the hard one): connections served at once, a new one over it is closed; ``header_timeout``: seconds a
    connection has to send a complete request head. Idle or half-open connections cannot starve the jobs
    of file descriptors. ``start()`` also makes the process non-dumpable (Linux), so that a job cannot
    read its ``/proc/<pid>/environ`` (its HF token, cloud keys). Run as root, each job also runs as a user
    of its own that sees the state directory as holding only its own files (:mod:`.runner`, :mod:`.mounts`).

    Safe by default, since every job runs a command as the developer: without ``token`` a random one is
    made (``server.token``); only requests addressed to a loopback name are answered, plus the names in
    ``allowed_hosts`` (``"*"``: any) and the address listened on; listening on a non-loopback address
    needs a ``token`` of your own (:class:`UnsafeBindError` otherwise).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        max_concurrency: int = 4,
        keepalive_interval: float = 30.0,
        state_dir: str | None = None,
        start_timeout: float = 15.0,
        faults: list[Fault] | None = None,
        simulate: Scenario | None = None,
        allowed_hosts: Iterable[str] = (),
        volume_source_dir: str | None = None,
        pass_env: Iterable[str] | None = None,
        flavor_capacity: Mapping[str, int] | None = None,
        max_connections: int | None = None,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if (max_connections is not None and max_connections < 1) or not header_timeout > 0:
            raise ValueError("max_connections must be at least 1 and header_timeout positive")
        self.flavor_capacity = check_flavor_capacity(flavor_capacity)
        if self.flavor_capacity and simulate is not None:
            raise ValueError(
                "flavor_capacity does not apply to load-testing mode (simulated jobs start at once)"
            )
        if token is None and not is_loopback_address(host):
            raise UnsafeBindError(
                f"refusing to listen on {host} without a token of your own: every job runs a command as "
                "you, and anyone who can reach that address could start one. Pass --token SECRET (token= "
                "in LocalJobsServer), and --allow-host NAME for the name clients use; or listen on "
                "127.0.0.1."
            )
        self.host = host
        #: Whether the token was made here (and may be shown): one the user chose may be a real HF token.
        self.token_generated = token is None
        self.token: str = generate_token() if token is None else token
        wildcard = host in ("", "0.0.0.0", "::")
        self.allowed_hosts = [*allowed_hosts, *([] if wildcard else [host])]
        self.namespace = namespace
        self.keepalive_interval = keepalive_interval
        self.start_timeout = start_timeout
        self.max_concurrency = max_concurrency
        self.simulate = simulate
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        if volume_source_dir is not None and not Path(volume_source_dir).is_dir():
            raise ValueError(f"volume_source_dir {volume_source_dir!r} is not a directory")
        self.volume_source_dir = volume_source_dir
        #: What of this process's environment every job gets, read now (``None``: ``DEFAULT_PASS_ENV``).
        self.pass_env = passed_environment(DEFAULT_PASS_ENV if pass_env is None else pass_env)
        self._owns_state_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="hfjobs-local-")
        self.faults = FaultInjector()
        for fault in faults or []:
            self.faults.add(fault)
        self._socket = self._bind(port)
        self.port: int = self._socket.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._restart_lock = threading.Lock()
        self.app: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: ProcessRunner | SimulatedRunner | None = None

    def _bind(self, port: int) -> socket.socket:
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP. Without it a
        # response's headers and body wait on the client's delayed ACK: 40 ms per kept-alive request.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        return sock

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pages_url(self) -> str:
        """The job list in a browser (``JobInfo.url`` opens one job under it); asks for the token once."""
        return f"{self.url}/jobs/{quote(self.namespace, safe='')}"

    def start(self) -> LocalJobsServer:
        private_directory(Path(self.state_dir))  # job records, logs, secrets of waiting jobs
        make_undumpable()  # jobs run as this user: no reading this process's environ or memory
        cap = connection_cap(self.max_connections, raise_file_limit())
        protocol: Any = "auto" if self.simulate else guarded_h11(cap, self.header_timeout)
        config = uvicorn.Config(
            _LazyApp(self), log_level="warning", loop="auto" if self.simulate else "asyncio", lifespan="on",
            http=protocol,  # load tests: uvloop, httptools when installed
            date_header=False, server_header=False, timeout_graceful_shutdown=3, access_log=False,
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

    def _stop_serving(self, keep_jobs: bool) -> None:
        if self.runner is not None:
            self.runner.keep_jobs = keep_jobs
        if self.loop is not None and self.app is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may just have stopped
                self.loop.call_soon_threadsafe(self.app.state.begin_close)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        self._socket.close()
        self.app = self.loop = self.runner = None

    def stop(self) -> None:
        self._stop_serving(keep_jobs=not self._owns_state_dir)
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def restart(self, downtime: float = 0.0) -> None:
        """Stop serving (connections drop, jobs run on), wait ``downtime`` seconds, serve again."""
        with self._restart_lock:
            self._stop_serving(keep_jobs=True)
            time.sleep(downtime)
            self._socket = self._bind(self.port)
            self.start()

    def restart_in_background(self, downtime: float) -> None:
        """What ``POST /_local/restart`` calls: the restart cannot run on the loop it stops."""
        threading.Thread(target=self.restart, args=(downtime,), name="hfjobs-local-restart").start()

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
            volumes = Volumes(
                BucketStore(owner.state_dir), owner.volume_source_dir, owner.state_dir,
                mount_namespaces=owner.simulate is None,
            )  # fmt: skip
            if owner.simulate is not None:
                owner.runner, store = SimulatedRunner(owner.simulate), JobStore()
                schedules = ScheduledJobStore()
            else:
                owner.runner = ProcessRunner(
                    owner.max_concurrency, keep_jobs=not owner._owns_state_dir, pass_env=owner.pass_env,
                    flavor_capacity=owner.flavor_capacity,
                )  # fmt: skip
                owner.runner.volumes = volumes
                store = JobStore(owner.state_dir)
                schedules = ScheduledJobStore(owner.state_dir)  # with their secret values, 0600
            self._app = create_app(
                token=owner.token, namespace=owner.namespace, runner=owner.runner, store=store,
                keepalive_interval=owner.keepalive_interval, faults=owner.faults,
                on_restart=owner.restart_in_background, allowed_hosts=owner.allowed_hosts, volumes=volumes,
                scheduled_store=schedules,
            )  # fmt: skip
            owner.app = self._app
            owner.loop = asyncio.get_running_loop()
        await self._app(scope, receive, send)
