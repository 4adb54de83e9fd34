"""A lean asyncio transport for one long-lived ``text/event-stream`` GET: the trigger's log stream.

A triggerer follows thousands of log streams at once, and every line arrives as its own small chunk.
Through ``httpx`` each chunk climbs httpx, httpcore, anyio and a timeout scope, about 0.3 ms of CPU; a
thousand lines a second then hold the event loop for a third of that second. Here a chunk goes from the
event loop's socket callback through ``h11`` (which httpx uses too) into a buffer, and one future wakes
the reader: a fraction of the cost. Everything else (requests with bodies, retries, redirects, proxies)
stays with ``httpx``: :func:`open_event_stream` returns ``None`` when a proxy applies, and the caller
uses httpx then.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ssl
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

import h11
import httpx

from airflow_provider_hfjobs.jobs import body_limit

#: Stop reading from the socket while this much body is waiting for the reader.
HIGH_WATER_BYTES = 1 << 20
_NO_CONTEXT = contextvars.Context()


class EventStreamError(OSError):
    """The connection failed or broke mid-stream (a cut: the caller reconnects)."""


class EventStreamTimeout(EventStreamError):
    """Nothing arrived for the read timeout (not even a keep-alive)."""


@functools.cache
def _environment_proxies() -> dict[str, str]:
    return urllib.request.getproxies()


def _proxied(scheme: str, host: str) -> bool:
    proxies = _environment_proxies()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(host)


class _StreamProtocol(asyncio.Protocol):
    """Feeds socket bytes through h11; collects the response head, then the body, for one reader. Bytes
    nobody asked for (on an idle connection, or after the response's end) close the connection."""

    def __init__(self) -> None:
        self.parser = h11.Connection(our_role=h11.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.requested = False  # a request is out: bytes may come
        self.head: h11.Response | None = None
        self.body: list[bytes] = []
        self.buffered = 0
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[bool | None] | None = None  # None: bytes came (or the end, an error)
        self.paused = False
        self.last_data = 0.0  # loop time of the last bytes received (or of the request sent)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.requested or self.ended or self.error is not None:
            self._discard()  # bytes nobody asked for: after the response's end (or a malformed one), or idle
            return
        self.last_data = asyncio.get_running_loop().time()
        try:
            self.parser.receive_data(data)
            while True:
                event = self.parser.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Data):
                    self.body.append(bytes(event.data))
                    self.buffered += len(event.data)
                elif isinstance(event, h11.Response):
                    self.head = event
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    self.ended = True
                    if self.parser.trailing_data[0]:
                        self._discard()  # more bytes came with the end: no answer to anything we sent
                    break
                elif event is h11.PAUSED:
                    self._discard()  # not reached (the end breaks first), but never spin on it
                    break
        except h11.RemoteProtocolError as exc:
            self.error = EventStreamError(f"malformed response: {exc}")
            self._discard()
        if self.buffered > HIGH_WATER_BYTES and self.transport is not None and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def eof_received(self) -> bool | None:
        try:
            self.parser.receive_data(b"")
            event = self.parser.next_event()
            while event not in (h11.NEED_DATA, h11.PAUSED) and not isinstance(event, h11.ConnectionClosed):
                if isinstance(event, h11.Data):
                    self.body.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    self.ended = True
                event = self.parser.next_event()
        except h11.RemoteProtocolError:
            pass
        if not self.ended and self.error is None:
            self.error = EventStreamError("the connection closed mid-stream")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended and self.error is None:
            self.error = EventStreamError(f"the connection was lost ({exc or 'closed'})")
        self._wake()

    def _discard(self) -> None:
        """Stop reading and close: what the server sent cannot be trusted as the start of another answer
        (a kept connection reused here could hand the next request a stale or forged one). The body read
        so far stays for the reader; :meth:`next_cycle` refuses the closed connection."""
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def next_cycle(self) -> bool:
        """Ready the connection for another request, if the last exchange left it reusable."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.error is not None or not self.ended:
            return False
        if self.parser.our_state is not h11.DONE or self.parser.their_state is not h11.DONE:
            return False
        self.parser.start_next_cycle()
        self.head, self.body, self.buffered, self.ended, self.requested = None, [], 0, False, False
        if self.paused:  # a reader that stopped early (read_all's limit) left the socket paused
            self.paused = False
            transport.resume_reading()
        return True


class EventStream:
    """An open event stream: ``status_code``, ``headers``, then :meth:`read` until it returns ``b""``."""

    def __init__(self, protocol: _StreamProtocol, read_timeout: float) -> None:
        self._protocol = protocol
        self._read_timeout = read_timeout
        head = protocol.head
        assert head is not None
        self.status_code = head.status_code
        self._done: Callable[[EventStream], None] | None = None  # set by a KeptConnection
        # One timer kept across reads, moved only when a wait needs it sooner (see read).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._waiter: asyncio.Future[bool | None] | None = None
        self._until = 0.0

    @property
    def headers(self) -> httpx.Headers:
        """Built on demand: a stream's headers are only read when it failed. From the raw bytes, which
        httpx decodes as it does its own (str values are encoded as ASCII, and a non-ASCII byte raised)."""
        head = self._protocol.head
        assert head is not None
        return httpx.Headers(list(head.headers))

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # (an empty context, not a copy of the caller's: one object less per timer; it only sets a result)
        self._timer, self._timer_at = loop.call_at(at, self._on_timer, context=_NO_CONTEXT), at

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody waits: the next wait arms it again
        if self._timer_at >= self._until:
            waiter.set_result(False)  # the wait's deadline
        else:
            self._arm(asyncio.get_running_loop(), self._until)  # bytes came since: a later deadline now

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def read(self, within: float | None = None) -> bytes | None:
        """The body bytes received since the last call; ``b""`` at the end of the stream; ``None`` if
        nothing came within ``within`` seconds (a follower's stage check is due: the stream reads on);
        :class:`EventStreamTimeout` once nothing arrived for the read timeout.

        The wait is inline (a stream waits for every chunk: one coroutine, not two) and its timer outlives
        it: one armed and cancelled for every chunk left a cancelled handle in the loop's heap until its
        original deadline (10 s and more), thousands in a busy triggerer, each one more object for every
        full collection. Kept, it fires at most once per deadline and re-arms itself if bytes came."""
        protocol = self._protocol
        while not protocol.body:
            if protocol.error is not None:
                raise protocol.error
            if protocol.ended:
                return b""
            if within is not None and within <= 0:
                return None
            loop = asyncio.get_running_loop()
            silent_until = protocol.last_data + self._read_timeout
            until = silent_until if within is None else min(silent_until, loop.time() + within)
            protocol.waiter = waiter = loop.create_future()  # its result: None, woken; False, the deadline
            self._waiter, self._until = waiter, until
            if self._timer is None or self._timer_at > until:
                self._arm(loop, until)
            try:
                arrived = await waiter
            finally:
                protocol.waiter = self._waiter = None
            if arrived is False:
                if until < silent_until:
                    return None
                raise EventStreamTimeout(f"nothing arrived for {self._read_timeout:g} s")
        data = b"".join(protocol.body) if len(protocol.body) > 1 else protocol.body[0]
        protocol.body.clear()
        protocol.buffered = 0
        if protocol.paused and protocol.transport is not None:
            protocol.paused = False
            protocol.last_data = asyncio.get_running_loop().time()  # silent only from now: it was paused
            protocol.transport.resume_reading()
        return data

    async def read_all(self, limit: int | None = None) -> bytes:
        """The rest of a (short) body, cut after ``limit + 1`` bytes (by default :func:`.jobs.body_limit`
        of the status), so that the caller can tell a body longer than ``limit``; a cut one leaves the
        connection closed, not kept."""
        return await read_capped(self.read, body_limit(self.status_code) if limit is None else limit)

    def close(self) -> None:
        self._disarm()
        if self._protocol.transport is not None:
            self._protocol.transport.close()

    async def aclose(self) -> None:
        """Done with the stream: back to its :class:`KeptConnection` if it came from one, else closed."""
        self._disarm()
        done, self._done = self._done, None
        if done is not None:
            done(self)
        else:
            self.close()


async def read_capped(read: Callable[[], Awaitable[bytes | None]], limit: int) -> bytes:
    """``read()`` until it gives ``b""`` or more than ``limit`` bytes are in; at most ``limit + 1`` bytes."""
    parts, size = [], 0
    while size <= limit and (chunk := await read()):
        parts.append(chunk)
        size += len(chunk)
    body = b"".join(parts)
    return body if size <= limit else body[: limit + 1]


class KeptConnection:
    """One kept-alive HTTP/1.1 connection for a trigger's GETs: its log streams and its stage checks, one
    after the other. A stage check through httpx costs about 1 ms of CPU, here a fraction; and the check
    that follows a stream's end reuses the stream's connection instead of opening (over TLS: handshaking)
    another. A failure on a connection that sat idle is retried once on a fresh one."""

    def __init__(self, ssl_context: ssl.SSLContext, timeout: float) -> None:
        self._ssl_context = ssl_context
        self._timeout = timeout
        self._protocol: _StreamProtocol | None = None
        self._origin: tuple[str, str | None, int | None] | None = None

    async def get(
        self, url: str, headers: Mapping[str, str], limit: int | None = None
    ) -> tuple[int, httpx.Headers, bytes] | None:
        """A short GET's ``(status, headers, body)``, the body read by :meth:`EventStream.read_all`;
        ``None`` when a proxy applies or the request failed in any way: the caller then asks through
        httpx, with its retries and errors."""
        try:
            stream = await self.open_stream(url, headers, self._timeout)
            if stream is None:
                return None
            try:
                return stream.status_code, stream.headers, await stream.read_all(limit)
            finally:
                await stream.aclose()
        except EventStreamError:
            return None

    async def open_stream(
        self, url: str, headers: Mapping[str, str], read_timeout: float
    ) -> EventStream | None:
        """An event stream over this connection (``None``: a proxy applies); raises
        :class:`EventStreamError` as :func:`open_event_stream` does. ``aclose`` it: one read to its end
        leaves the connection kept for the next request, any other closes it."""
        parts = urlsplit(url)  # (one coroutine, not two: thousands of triggers open their streams at once)
        origin = (parts.scheme, parts.hostname, parts.port)
        kept = self._protocol
        if self._origin != origin or (
            kept is not None
            and (kept.error is not None or kept.transport is None or kept.transport.is_closing())
        ):
            self.close()  # another server, or the server closed the idle connection meanwhile
        for reused in (self._protocol is not None, False):
            protocol, self._protocol = (self._protocol if reused else None), None
            try:
                stream = await open_event_stream(
                    url, headers, ssl_context=self._ssl_context, connect_timeout=self._timeout,
                    read_timeout=read_timeout, protocol=protocol,
                )  # fmt: skip
            except EventStreamError:
                if reused:
                    continue  # the server may have closed the idle connection: once more on a fresh one
                raise
            self._origin = origin
            if stream is not None:
                stream._done = self._release
            return stream
        return None  # not reached: the fresh attempt returns or raises

    def _release(self, stream: EventStream) -> None:
        if self._protocol is None and stream._protocol.next_cycle():
            self._protocol = stream._protocol
        else:  # not reusable, or another connection was kept meanwhile (a stage check while it streamed)
            stream.close()

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = self._origin = None


async def open_event_stream(
    url: str,
    headers: Mapping[str, str],
    *,
    ssl_context: ssl.SSLContext,
    connect_timeout: float,
    read_timeout: float,
    protocol: _StreamProtocol | None = None,
) -> EventStream | None:
    """GET ``url`` and return once the response head is in; ``None`` if a proxy applies (use httpx).
    ``protocol``: an open connection ready for its next request (see :class:`KeptConnection`).

    Raises :class:`EventStreamError` when the connection fails or breaks, :class:`EventStreamTimeout` when
    the head does not arrive within ``read_timeout``.
    """
    parts = urlsplit(url)
    scheme, host = parts.scheme, parts.hostname
    if scheme not in ("http", "https") or not host or _proxied(scheme, host):
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
        return None
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    if protocol is None:
        protocol = await _connect(scheme, host, port, ssl_context, connect_timeout)
    bracketed = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets in Host
    authority = bracketed if parts.port is None else f"{bracketed}:{parts.port}"
    fields = [("Host", authority), *headers.items()]
    if not any(name.lower() == "accept" for name, _ in fields):
        fields.append(("Accept", "text/event-stream"))
    transport = protocol.transport
    assert transport is not None
    try:  # every way out but the response head closes the connection: a cancelled caller's too
        try:
            request = h11.Request(method="GET", target=target, headers=fields)
            protocol.requested = True
            protocol.last_data = loop.time()
            transport.write(protocol.parser.send(request) + protocol.parser.send(h11.EndOfMessage()))
        except h11.ProtocolError as exc:
            raise EventStreamError(f"could not send the request ({exc})") from exc
        deadline = loop.time() + read_timeout
        while protocol.head is None:
            if protocol.error is not None:
                raise protocol.error
            protocol.waiter = waiter = loop.create_future()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the caller's
                # cancellation when the waiter completes in the same moment (a header byte arriving), and
                # the request deadline around this call was then lost (a trickled head ran on for minutes).
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await waiter
            except TimeoutError:
                raise EventStreamTimeout(f"no response from {host}:{port} for {read_timeout:g} s") from None
            finally:
                protocol.waiter = None
        return EventStream(protocol, read_timeout)
    except BaseException:
        transport.close()
        raise


async def _connect(
    scheme: str, host: str, port: int, ssl_context: ssl.SSLContext, timeout: float
) -> _StreamProtocol:
    protocol = _StreamProtocol()
    try:
        async with asyncio.timeout(timeout):  # (not wait_for: see _open's head wait)
            await asyncio.get_running_loop().create_connection(
                lambda: protocol,
                host,
                port,
                ssl=ssl_context if scheme == "https" else None,
                server_hostname=host if scheme == "https" else None,
            )
    except BaseException as exc:
        if protocol.transport is not None:
            protocol.transport.close()  # connected just as the timeout or a cancellation struck
        if isinstance(exc, (OSError, TimeoutError, ssl.SSLError)):
            raise EventStreamError(
                f"could not connect to {host}:{port} ({type(exc).__name__}: {exc})"
            ) from exc
        raise
    return protocol
