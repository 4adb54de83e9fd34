"""The trigger's lean log-stream transport against small scripted HTTP servers on 127.0.0.1: chunked and
fixed-length bodies, cuts, silence, refusal, back-pressure, and the proxy fallback to httpx."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from airflow_provider_hfjobs.hooks import event_stream
from airflow_provider_hfjobs.hooks.event_stream import EventStreamError, EventStreamTimeout, open_event_stream
from airflow_provider_hfjobs.hooks.hfjobs import shared_ssl_context

pytestmark = pytest.mark.integration

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nX-Request-Id: r-1\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def serve(script: Script) -> tuple[asyncio.Server, str, list[bytes]]:
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        try:
            await script(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/api/jobs/ns/abc/logs?tail=3", requests


async def read_everything(url: str, read_timeout: float = 5.0) -> tuple[int, bytes]:
    stream = await open_event_stream(
        url, {"Authorization": "Bearer t"}, ssl_context=shared_ssl_context(), connect_timeout=5,
        read_timeout=read_timeout,
    )  # fmt: skip
    assert stream is not None
    try:
        body = b""
        while data := await stream.read():
            body += data
        return stream.status_code, body
    finally:
        stream.close()


async def test_a_chunked_stream_arrives_whole_and_the_request_is_well_formed() -> None:
    async def script(reader, writer):
        writer.write(HEAD)
        for part in (b"data: a\n\n", b"data: b\n", b"\n"):
            writer.write(chunk(part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")

    server, url, requests = await serve(script)
    async with server:
        assert await read_everything(url) == (200, b"data: a\n\ndata: b\n\n")
    (request,) = requests
    assert request.startswith(b"GET /api/jobs/ns/abc/logs?tail=3 HTTP/1.1\r\n")
    assert b"authorization: bearer t" in request.lower()
    assert b"accept: text/event-stream" in request.lower()


async def test_an_error_answer_gives_its_status_headers_and_body() -> None:
    async def script(reader, writer):
        body = b'{"error": "Job not found"}'
        writer.write(
            b"HTTP/1.1 404 Not Found\r\nX-Request-Id: r-404\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )

    server, url, _ = await serve(script)
    async with server:
        stream = await open_event_stream(
            url, {}, ssl_context=shared_ssl_context(), connect_timeout=5, read_timeout=5
        )
        assert stream is not None and stream.status_code == 404 and stream.headers["x-request-id"] == "r-404"
        assert await stream.read_all() == b'{"error": "Job not found"}'
        stream.close()


async def test_a_cut_mid_body_is_an_error_not_an_end() -> None:
    async def script(reader, writer):
        writer.write(HEAD + chunk(b"data: a\n\n") + b"40\r\npartial")  # then the connection drops

    server, url, _ = await serve(script)
    async with server:
        with pytest.raises(EventStreamError, match=r"mid-stream|lost"):
            await read_everything(url)


async def test_silence_is_a_timeout() -> None:
    async def script(reader, writer):
        writer.write(HEAD + chunk(b": keep-alive\n\n"))
        await writer.drain()
        await asyncio.sleep(5)

    server, url, _ = await serve(script)
    async with server:
        with pytest.raises(EventStreamTimeout):
            await read_everything(url, read_timeout=0.3)


async def test_no_answer_at_all_is_a_timeout() -> None:
    async def script(reader, writer):
        await asyncio.sleep(5)

    server, url, _ = await serve(script)
    async with server:
        with pytest.raises(EventStreamTimeout):
            await read_everything(url, read_timeout=0.3)


async def test_a_refused_connection_is_an_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(EventStreamError, match="could not connect"):
            await read_everything(f"http://127.0.0.1:{port}/logs")


async def test_a_slow_reader_pauses_the_socket_and_loses_nothing(monkeypatch) -> None:
    monkeypatch.setattr(event_stream, "HIGH_WATER_BYTES", 10_000)
    payload = [b"data: %06d %s\n\n" % (i, b"x" * 1000) for i in range(300)]

    async def script(reader, writer):
        writer.write(HEAD)
        for part in payload:
            writer.write(chunk(part))
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server, url, _ = await serve(script)
    async with server:
        stream = await open_event_stream(
            url, {}, ssl_context=shared_ssl_context(), connect_timeout=5, read_timeout=5
        )
        assert stream is not None
        await asyncio.sleep(0.3)  # let the sender fill the buffer: reading must have paused
        assert stream._protocol.paused
        body = b""
        while data := await stream.read():
            body += data
        stream.close()
    assert body == b"".join(payload)


def test_a_proxy_in_the_environment_leaves_the_stream_to_httpx(monkeypatch) -> None:
    event_stream._environment_proxies.cache_clear()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        assert event_stream._proxied("https", "hub.example") is True
        assert event_stream._proxied("https", "127.0.0.1") is False  # NO_PROXY
        assert event_stream._proxied("http", "hub.example") is False  # no HTTP_PROXY
        opened = asyncio.run(
            open_event_stream(
                "https://hub.example/api/jobs/ns/abc/logs",
                {},
                ssl_context=shared_ssl_context(),
                connect_timeout=1,
                read_timeout=1,
            )
        )
        assert opened is None
    finally:
        event_stream._environment_proxies.cache_clear()


async def test_a_kept_connection_serves_successive_gets_and_recovers_when_the_server_closes_it() -> None:
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        served = 0
        while served < 2:  # two answers per connection, then the server closes it (as idle servers do)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            assert head.lower().count(b"accept:") == 1 and b"accept: application/json" in head.lower()
            body = b'{"n": %d}' % served
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
            served += 1
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/jobs/ns/abc"
    kept = event_stream.KeptConnection(shared_ssl_context(), timeout=5)
    async with server:
        bodies = []
        for _ in range(5):
            answer = await kept.get(url, {"Accept": "application/json"})
            assert answer is not None and answer[0] == 200
            bodies.append(answer[2])
            await asyncio.sleep(0.05)  # let a closing server's FIN arrive, as between two polls
        kept.close()
    assert bodies == [b'{"n": 0}', b'{"n": 1}', b'{"n": 0}', b'{"n": 1}', b'{"n": 0}']
    assert len(connections) == 3  # two GETs per connection: it was kept, and replaced once closed
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}/x"
        assert await event_stream.KeptConnection(shared_ssl_context(), timeout=1).get(refused, {}) is None
