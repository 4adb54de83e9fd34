"""Resource limits of the local Jobs server: what a client without the token can cost it (issue 21).

- :class:`RequestCounter` keeps per-job counts for requests that carry the token only (a random path
  costs nothing that lasts), and at most :data:`MAX_COUNTED_JOBS` job ids;
- :func:`guarded_h11` caps the connections served at once and closes one that has not sent a complete
  request head within ``header_timeout`` seconds (slowloris), so idle sockets cannot eat the server's
  file descriptors;
- :func:`raise_file_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard one, leaving room for jobs'
  pipes and log files above the connection cap;
- :func:`make_undumpable` stops a same-user process (a job) from reading the server's
  ``/proc/<pid>/environ`` and memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import secrets
import sys
from collections import Counter
from typing import Any

import h11
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

#: Job ids whose requests are counted for ``/_local/stats?per_job=1`` (a benchmark has a few hundred).
MAX_COUNTED_JOBS = 10_000
#: Connections served at once by default; the file descriptors above it are the jobs' reserve.
DEFAULT_MAX_CONNECTIONS = 1000
#: File descriptors kept for jobs (pipes, logs, records) whatever the connections take.
FD_RESERVE = 256
#: Seconds a connection has to send a complete request head (first request or the next kept-alive one).
DEFAULT_HEADER_TIMEOUT = 30.0
PR_SET_DUMPABLE = 4


class RequestCounter:
    """ASGI middleware counting API requests by kind, and by job with the connections they came on
    (benchmarks read them from ``GET /_local/stats``). Per-job counts only for requests with the token:
    they are keyed by a path part, which anyone could make unique on every request."""

    def __init__(
        self,
        app: ASGIApp,
        counts: Counter[str],
        per_job: Counter[str],
        peers: dict[str, set[Any]],
        token: str,
        request_kind: Any,
        skip: Any,
    ) -> None:
        self.app = app
        self.counts = counts
        self.per_job = per_job
        self.peers = peers
        self.bearer = f"Bearer {token}".encode()
        self.request_kind = request_kind
        self.skip = skip

    def authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                return secrets.compare_digest(value, self.bearer)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.skip(scope["path"]):
            self.counts[self.request_kind(scope["method"], scope["path"])] += 1  # a fixed set of kinds
            parts = scope["path"].strip("/").split("/")
            if len(parts) >= 4 and parts[:2] == ["api", "jobs"] and self.authorized(scope):
                job_id = parts[3]
                if job_id in self.per_job or len(self.per_job) < MAX_COUNTED_JOBS:
                    self.per_job[job_id] += 1
                    self.peers.setdefault(job_id, set()).add(scope.get("client"))
        await self.app(scope, receive, send)


def guarded_h11(max_connections: int, header_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a connection cap (over it, a new connection is closed at once) and a
    request-head deadline (a connection still without a complete head is closed): half-open
    connections can neither pile up nor keep a descriptor for long."""

    class GuardedH11Protocol(H11Protocol):
        # uvicorn's own signature (asyncio.Transport, narrower than asyncio's BaseTransport), so its ignore too.
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._head_timer: asyncio.TimerHandle | None = None
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                self.connections.discard(self)
                transport.abort()  # refused: its descriptor is freed now
                return
            self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            self._head_cycle = self.cycle
            self._head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return  # a request is being served (the next one arms again)
            if self.cycle is not self._head_cycle:
                self._arm_head_timer()  # another request came meanwhile: the next head's own deadline
                return
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and self.conn.their_state is h11.IDLE:
                self._arm_head_timer()
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

    return GuardedH11Protocol


def raise_file_limit() -> int:
    """Lift the soft descriptor limit to the hard one (the usual 1,024 is what a few idle connections
    exhaust); returns the soft limit now in force (0: unknown, not a POSIX system)."""
    try:
        import resource
    except ImportError:
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    target = min(target, 1 << 20)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(requested: int | None, file_limit: int) -> int:
    """The connections served at once: ``requested`` (or the default), kept :data:`FD_RESERVE`
    descriptors below ``file_limit`` so that jobs always get theirs."""
    cap = DEFAULT_MAX_CONNECTIONS if requested is None else requested
    if file_limit > 0:
        cap = min(cap, max(16, file_limit - FD_RESERVE))
    return max(1, cap)


def make_undumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)``: a same-user process (a job) can no longer read this process's
    ``/proc/<pid>/environ`` or ``mem`` (its HF token, cloud keys), nor ptrace it. Linux only; children
    are dumpable again after exec. Returns whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
