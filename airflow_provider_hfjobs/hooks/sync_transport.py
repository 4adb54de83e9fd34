"""The blocking transport under :class:`~.sync.HfJobsHook`: ``requests`` made to keep the hook's
promises, never to hang.

- :func:`read_body`: an answer's body, never more than its cap;
- :class:`Deadline` and :func:`deadline_adapter`: a whole request (status line to last body byte) within a
  deadline, which a read timeout (one read) cannot give: a timer shuts the request's socket down;
- :class:`ChunkReader`: a stream read by a thread of its own, so that the follower can wait for its next
  chunk for a bounded time (a stage check due) and then read on.

``requests`` is imported where used: it costs a DAG file parse 35 ms, and only the sync hook needs it.
"""

from __future__ import annotations

import functools
import queue
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_hfjobs.hooks.credentials import _connection_refused

if TYPE_CHECKING:
    import requests


def read_body(response: requests.Response, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of a ``stream=True`` response's (decoded) body, then the response is
    closed: a longer body is never read whole. A body read to its end leaves the connection pooled."""
    parts, size = [], 0
    with response:
        for chunk in response.iter_content(chunk_size=64 << 10):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                break
    body = b"".join(parts)
    return body if size <= limit else body[: limit + 1]


# ------------------------------------------------------------------------------------------- deadlines
class TooSlow(Exception):
    """A request outlived its deadline (see :class:`Deadline`)."""


_watching = threading.local()  # .deadline: the Deadline of the request this thread is sending


class Deadline:
    """Ends a request that outlives ``seconds``. A read timeout bounds one read only, and a blocking read
    can be stopped from another thread by one thing alone: shutting its socket down. So a timer does that
    to the sockets of the request (attached as it sends, see :func:`deadline_adapter`); the read then
    fails at once, and :attr:`expired` tells the caller why."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[Any] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._outer: Deadline | None = None

    def __enter__(self) -> Deadline:
        self._outer, _watching.deadline = getattr(_watching, "deadline", None), self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _watching.deadline = self._outer

    def attach(self, sock: Any) -> None:
        with self._lock:
            if not self.expired:
                self._sockets.append(sock)
                return
        shutdown_socket(sock)

    def attach_response(self, response: requests.Response) -> None:
        """The response's socket too: covers a transport the watched connections are not (SOCKS)."""
        sock = getattr(getattr(response.raw, "connection", None), "sock", None)
        if sock is not None:
            self.attach(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            shutdown_socket(sock)


def shutdown_socket(sock: Any) -> None:
    """Shut a socket down (a read blocked on it returns at once); for TLS, the TCP socket under it, since
    ``SSLSocket.shutdown`` also drops the TLS object a concurrent read is using."""
    try:
        if isinstance(sock, socket.socket):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError, ValueError):
        pass  # already closed


@functools.cache
def deadline_adapter() -> type[Any]:
    """A requests adapter whose connections attach their socket to the sending thread's
    :class:`Deadline` when they wait for the answer (built on first use: requests is imported lazily)."""
    import requests.adapters
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def watched(connection: HTTPConnection) -> None:
        deadline, sock = getattr(_watching, "deadline", None), getattr(connection, "sock", None)
        if deadline is not None and sock is not None:
            deadline.attach(sock)

    class WatchedHTTPConnection(HTTPConnection):
        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            watched(self)
            return super().getresponse(*args, **kwargs)

    class WatchedHTTPSConnection(HTTPSConnection):
        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            watched(self)
            return super().getresponse(*args, **kwargs)

    class WatchedHTTPPool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class WatchedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    swaps: dict[type, type] = {HTTPConnectionPool: WatchedHTTPPool, HTTPSConnectionPool: WatchedHTTPSPool}

    def watch(manager: Any) -> Any:
        classes = getattr(manager, "pool_classes_by_scheme", None)
        if isinstance(classes, dict):  # other pools (SOCKS) are left alone: attach_response covers them
            manager.pool_classes_by_scheme = {scheme: swaps.get(cls, cls) for scheme, cls in classes.items()}
        return manager

    class DeadlineAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            watch(self.poolmanager)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            return watch(super().proxy_manager_for(proxy, **kwargs))

    return DeadlineAdapter


# --------------------------------------------------------------------------------------- stream reader
_END = object()


class ChunkReader:
    """A streamed response's chunks, read by a thread of its own, so that the follower can wait for the
    next one for a bounded time (a stage check due) and then go on reading the same stream: a socket
    timeout cannot serve, as it ends the stream. Leaving shuts the socket down, which ends the thread."""

    def __init__(self, response: requests.Response, max_chunks: int = 64) -> None:
        self._response = response
        self._chunks: queue.Queue[Any] = queue.Queue(max_chunks)  # back-pressure for a slow consumer
        self._stop = threading.Event()
        self._finished = threading.Event()  # the read is over (the stream ended or failed)
        self._thread = threading.Thread(target=self._read, name="hfjobs-stream-reader", daemon=True)

    def __enter__(self) -> ChunkReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # Still reading: wake the blocked read. (A read that finished handed its connection back to the
        # pool, and urllib3 then forgets it: a pooled connection is never shut.)
        sock = getattr(getattr(self._response.raw, "connection", None), "sock", None)
        if sock is not None and not self._finished.is_set():
            shutdown_socket(sock)
        self._thread.join(timeout=10)

    def _read(self) -> None:
        try:
            for chunk in self._response.iter_content(chunk_size=None):
                if chunk and not self._put(chunk):
                    return
            item: Any = _END
        except BaseException as exc:  # handed to the follower, which raises it
            item = exc
        self._finished.set()
        self._put(item)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, timeout: float) -> bytes | None:
        """The next chunk; ``None`` if none came within ``timeout`` s; ``b""`` at the end of the stream.
        Raises what the read raised."""
        try:
            item = self._chunks.get(timeout=timeout) if timeout > 0 else self._chunks.get_nowait()
        except queue.Empty:
            return None
        if item is _END:
            return b""
        if isinstance(item, BaseException):
            raise item
        return item

    def buffered(self) -> Iterator[bytes]:
        """What already arrived, without waiting (an error or the end stops it)."""
        while True:
            try:
                item = self._chunks.get_nowait()
            except queue.Empty:
                return
            if item is _END or isinstance(item, BaseException):
                return
            yield item


def is_read_timeout(exc: requests.RequestException) -> bool:
    """A read timeout, however ``requests`` reports it: mid-body it arrives as a ``ConnectionError``
    wrapping urllib3's ``ReadTimeoutError``, not as ``requests.ReadTimeout``."""
    import requests
    import urllib3

    return isinstance(exc, requests.exceptions.ReadTimeout) or any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args
    )


def not_sent(exc: requests.RequestException) -> bool:
    """A request that certainly never reached the server: no connection was made."""
    import requests

    return isinstance(exc, (requests.ConnectTimeout, requests.exceptions.InvalidURL)) or (
        isinstance(exc, requests.ConnectionError) and _connection_refused(exc)
    )
