"""Transport hardening (issue 11, items 4 and 6) over real HTTP on 127.0.0.1: misbehaving servers, byte
for byte, against both hooks and the lean transport.

Every wait is bounded: a server that must notice a close waits for it with a timeout, and the one case
that used to spin the event loop forever runs its client in a subprocess that is killed if it hangs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import queue
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hfjobs import exceptions, jobs
from airflow_provider_hfjobs.exceptions import HfJobsAPIError, HfJobsInputError, HfJobsNotFoundError
from airflow_provider_hfjobs.hooks import event_stream, hfjobs
from airflow_provider_hfjobs.hooks.event_stream import KeptConnection, open_event_stream
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, HfJobsHook
from airflow_provider_hfjobs.jobs import RetryPolicy
from tests.integration.conftest import set_connection

pytestmark = pytest.mark.integration

TOKEN = "hf_transport_token_7d1e"
NS = "alice"
JOB_ID = "687fb701029421ae5549d998"
NO_RETRY = RetryPolicy(max_retries=0)
FAST = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05)
#: An "endless" body stops here: far more than any cap plus every socket buffer on the way (the kernel's
#: receive buffer may grow to 32 MiB), so a client that read it all is told apart from one that hung up.
ENDLESS_BYTES = 64 << 20
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


def job_json(job_id: str = JOB_ID, stage: str = "COMPLETED") -> dict[str, Any]:
    return {"id": job_id, "owner": {"id": "1", "name": NS, "type": "user"}, "status": {"stage": stage}}


# ---------------------------------------------------------------------------------- a scripted server
class Server(ThreadingHTTPServer):
    """A threaded HTTP(S) server on 127.0.0.1 answering every request with ``answer(handler)``; it records
    each request (method, path, headers) and what became of an endless body ("cut" or "finished")."""

    daemon_threads = True

    def __init__(self, answer: Callable[[Handler], None], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answer, self.tls = answer, tls
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.outcome: queue.Queue[str] = queue.Queue()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Server:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a refused handshake or a client hanging up is what these tests provoke


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def setup(self) -> None:
        if self.server.tls is not None:  # the handshake runs here, in the connection's own thread
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def do_GET(self) -> None:
        if length := int(self.headers.get("Content-Length") or 0):
            self.rfile.read(length)
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        self.server.answer(self)

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


def send(handler: Handler, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def send_json(handler: Handler, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> None:
    send(handler, 200, json.dumps(data).encode(), (("Content-Type", "application/json"), *headers))


def endless(status: int) -> Callable[[Handler], None]:
    """A chunked body that goes on until the client hangs up (or :data:`ENDLESS_BYTES`)."""

    def answer(handler: Handler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        piece = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        try:
            for _ in range(ENDLESS_BYTES // 0x10000):
                handler.wfile.write(piece)
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            handler.server.outcome.put("cut")
            handler.close_connection = True
        else:
            handler.server.outcome.put("finished")

    return answer


def api(handler: Handler) -> None:
    """Just enough of the Jobs API: whoami, a finished job, its one-line log, cancel."""
    path = handler.path.split("?", 1)[0]
    if path == "/api/whoami-v2":
        send_json(handler, {"name": NS})
    elif path.endswith("/logs"):
        event = b'data: {"data":"hello","timestamp":"2026-01-01T00:00:00.000Z"}\n\n'
        send(handler, 200, event, (("Content-Type", "text/event-stream"),))
    else:
        send_json(handler, job_json())


@pytest.fixture(autouse=True)
def fresh_credentials() -> Iterator[None]:
    """Async hooks keep a connection's credentials for 5 s: each test here sets its own."""
    hfjobs._recent_credentials.clear()
    yield
    hfjobs._recent_credentials.clear()


def sync_hook(
    monkeypatch: pytest.MonkeyPatch, url: str, retry: RetryPolicy = NO_RETRY, **extra: str
) -> HfJobsHook:
    set_connection(monkeypatch, "hf_transport", url, TOKEN, namespace=NS, **extra)
    return HfJobsHook("hf_transport", retry_policy=retry)


def async_hook(monkeypatch: pytest.MonkeyPatch, url: str, **extra: str) -> HfJobsAsyncHook:
    set_connection(monkeypatch, "hf_transport", url, TOKEN, namespace=NS, **extra)
    return HfJobsAsyncHook("hf_transport", retry_policy=FAST)


async def drain_logs(hook: HfJobsAsyncHook) -> list[str]:
    return [text async for batch in hook.iter_job_log_batches(JOB_ID, namespace=NS) for text in batch.texts]


# ------------------------------------------------------------------ 1. bytes after a response's end
SPIN_CLIENT = """
import asyncio, ssl, sys
from airflow_provider_hfjobs.hooks.event_stream import open_event_stream

async def main(url):
    stream = await open_event_stream(
        url, {}, ssl_context=ssl.create_default_context(), connect_timeout=5, read_timeout=5
    )
    body = b""
    while chunk := await stream.read():
        body += chunk
    assert body == b"{}", body
    print("READ", flush=True)
    transport = stream._protocol.transport
    async with asyncio.timeout(10):
        while not transport.is_closing():  # the client must drop the connection itself
            await asyncio.sleep(0.01)
    print("CLOSED", stream._protocol.next_cycle(), flush=True)

asyncio.run(main(sys.argv[1]))
"""


async def test_bytes_after_a_responses_end_neither_spin_the_loop_nor_keep_the_connection() -> None:
    """A server sends a whole answer, then (once the client has read it) a second, unasked-for one. h11
    reports PAUSED for those bytes; the transport looped on it forever, holding the event loop. Now it
    stops reading and closes that connection, which is never reused. The client runs in a subprocess, so
    that the old spin is killed after a bound instead of hanging the test run."""
    go = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        await go.wait()
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{"n":666}')
        await writer.drain()
        await reader.read()  # the server keeps the connection: only the client may end it
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/jobs/{NS}/{JOB_ID}"
    async with server:
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SPIN_CLIENT, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )  # fmt: skip
        try:
            async with asyncio.timeout(60):
                assert await client.stdout.readline() == b"READ\n"
                go.set()
                out, err = await client.communicate()
        except TimeoutError:
            pytest.fail("the client hung on the bytes after the response (the h11.PAUSED spin)")
        finally:
            if client.returncode is None:
                client.kill()
                await client.wait()
    assert client.returncode == 0, err.decode()
    assert out == b"CLOSED False\n"


@pytest.mark.parametrize("late", [False, True], ids=["with-the-end", "while-idle"])
async def test_a_kept_connection_that_got_bytes_after_its_answer_is_not_reused(late: bool) -> None:
    """The same extra bytes, arriving with the end of the answer or later, on the idle kept connection:
    reusing it handed the next GET the server's stale (or forged) second answer. Now the next GET goes
    out on a fresh connection."""
    connections: list[int] = []
    forged = b'HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{"forged": 1}'
    released = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number, served = len(connections), 0
        connections.append(number)
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            body = b'{"connection": %d, "answer": %d}' % (number, served)
            extra = forged if number == 0 and served == 0 and not late else b""
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s%s" % (len(body), body, extra))
            await writer.drain()
            if number == 0 and served == 0 and late:
                await released.wait()
                writer.write(forged)
                await writer.drain()
            served += 1
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/jobs/{NS}/{JOB_ID}"
    kept = KeptConnection(hfjobs.shared_ssl_context(), timeout=5)
    async with server:
        async with asyncio.timeout(20):
            answers = [await kept.get(url, {"Accept": "application/json"})]
            if late:  # wait until the late bytes have reached the idle connection: read, or refused
                protocol = kept._protocol
                assert protocol is not None and protocol.transport is not None
                released.set()
                while protocol.head is None and not protocol.transport.is_closing():
                    await asyncio.sleep(0.01)
            answers += [await kept.get(url, {"Accept": "application/json"}) for _ in range(2)]
        kept.close()
    assert [json.loads(answer[2]) for answer in answers if answer] == [
        {"connection": 0, "answer": 0},
        {"connection": 1, "answer": 0},
        {"connection": 1, "answer": 1},  # a clean connection is still kept
    ]


# ------------------------------------------------------------------ 2. every way out of an open closes
async def silent_server(tls: bool = False) -> tuple[asyncio.Server, str, asyncio.Event, asyncio.Event]:
    """A server that takes the request (or, for TLS, the ClientHello) and never answers; it records when
    the client's side of the connection closes."""
    arrived, closed = asyncio.Event(), asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(1)
            arrived.set()
            await reader.read()  # until the client closes
        except ConnectionError:
            pass
        closed.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    scheme = "https" if tls else "http"
    return (
        server,
        f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/jobs/{NS}/{JOB_ID}",
        arrived,
        closed,
    )


async def open_stream(url: str) -> Any:
    return await open_event_stream(
        url, {}, ssl_context=ssl.create_default_context(), connect_timeout=30, read_timeout=60
    )


async def kept_get(url: str) -> Any:
    return await KeptConnection(ssl.create_default_context(), timeout=60).get(url, {})


@pytest.mark.parametrize("tls", [False, True], ids=["waiting-for-the-head", "waiting-for-the-tls-handshake"])
@pytest.mark.parametrize("opener", [open_stream, kept_get], ids=["open_event_stream", "KeptConnection.get"])
async def test_a_cancelled_open_closes_its_connection(opener: Callable[[str], Any], tls: bool) -> None:
    """A trigger cancelled (its task cleared, its triggerer stopping) while its request waits for an
    answer left the socket open for good. (While connecting, asyncio itself closes it: kept as a check.)"""
    server, url, arrived, closed = await silent_server(tls)
    async with server:
        await cancel_midway(opener(url), arrived, closed)


async def cancel_midway(request: Any, arrived: asyncio.Event, closed: asyncio.Event) -> None:
    """Cancel ``request`` once the server has its connection; the server must then see it closed."""
    task = asyncio.create_task(request)
    await asyncio.wait_for(arrived.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    try:
        await asyncio.wait_for(closed.wait(), 10)
    except TimeoutError:
        pytest.fail("the cancelled request left its connection open")


async def test_a_cancelled_hook_request_closes_its_connection(monkeypatch) -> None:
    server, url, arrived, closed = await silent_server()
    async with server, async_hook(monkeypatch, url.split("/api/")[0]) as hook:
        await cancel_midway(hook.inspect_job(JOB_ID, namespace=NS), arrived, closed)


# ------------------------------------------------------------------ 3. 2xx answers that are not JSON jobs
NOT_A_JOB = {
    "html": b"<html><body>Sign in to the proxy</body></html>",
    "empty": b"",
    "a-list": json.dumps([job_json()]).encode(),
    "no-id": json.dumps({"status": {"stage": "COMPLETED"}}).encode(),
    "status-a-string": json.dumps({"id": JOB_ID, "status": "COMPLETED"}).encode(),
}


@pytest.mark.parametrize("body", NOT_A_JOB.values(), ids=NOT_A_JOB.keys())
async def test_async_a_2xx_that_is_not_a_job_is_an_api_error(body: bytes, monkeypatch) -> None:
    """The trigger's stage check: a bare ValueError from ``JobInfo.from_api(None)`` crashed the trigger."""
    with Server(lambda handler: send(handler, 200, body)) as server:
        async with async_hook(monkeypatch, server.url) as hook:
            with pytest.raises(HfJobsAPIError, match=r"without JSON|not a job") as info:
                await hook.inspect_job(JOB_ID, namespace=NS)
    assert info.value.status_code == 200


@pytest.mark.parametrize("body", NOT_A_JOB.values(), ids=NOT_A_JOB.keys())
def test_sync_a_2xx_that_is_not_a_job_is_an_api_error(body: bytes, monkeypatch) -> None:
    with Server(lambda handler: send(handler, 200, body)) as server:
        hook = sync_hook(monkeypatch, server.url)
        with pytest.raises(HfJobsAPIError, match=r"without JSON|not a job"):
            hook.inspect_job(JOB_ID)


def test_sync_a_list_page_that_is_not_a_list_is_an_api_error(monkeypatch) -> None:
    with Server(lambda handler: send_json(handler, {"jobs": []})) as server:
        hook = sync_hook(monkeypatch, server.url)
        with pytest.raises(HfJobsAPIError, match="not a list of jobs"):
            list(hook.list_jobs())


# ------------------------------------------------------------------ 4. Link pagination stays on the endpoint
def test_a_next_page_on_another_origin_is_not_followed_and_gets_no_token(monkeypatch) -> None:
    with Server(lambda handler: send_json(handler, [])) as foreign:
        link = f'<{foreign.url}/api/jobs/{NS}?offset=1>; rel="next"'
        with Server(lambda handler: send_json(handler, [job_json()], (("Link", link),))) as home:
            hook = sync_hook(monkeypatch, home.url)
            with pytest.raises(HfJobsAPIError, match=r"not on the endpoint's origin .*not followed"):
                list(hook.list_jobs())
    assert foreign.requests == []  # not asked at all, so never shown the token
    assert home.requests[0][2]["Authorization"] == f"Bearer {TOKEN}"


def test_a_relative_next_page_on_the_endpoint_is_followed(monkeypatch) -> None:
    def answer(handler: Handler) -> None:
        if "offset=1" in handler.path:
            send_json(handler, [job_json("b")])
        else:
            send_json(handler, [job_json("a")], (("Link", f'</api/jobs/{NS}?offset=1>; rel="next"'),))

    with Server(answer) as server:
        assert [job.id for job in sync_hook(monkeypatch, server.url).list_jobs()] == ["a", "b"]
    assert all(headers["Authorization"] == f"Bearer {TOKEN}" for _, _, headers in server.requests)


# ------------------------------------------------------------------ 5. CA settings and certificate errors
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA and a certificate it signed for 127.0.0.1: the CA's PEM file and a server context."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hfjobs test CA")])

    def builder(subject: x509.Name, public_key: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
        )  # fmt: skip

    ca = (
        builder(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), key.public_key())
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return folder / "ca.pem", context


@pytest.fixture
def tls_api(pki: tuple[Path, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """The Jobs API over TLS with a certificate from :func:`pki`, and no CA setting in the environment."""
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with Server(api, tls=pki[1]) as server:
        yield server


TLS_FAILED = (
    r"TLS certificate verification failed for 127\.0\.0\.1: .+ set REQUESTS_CA_BUNDLE or the connection's "
    r"ca_bundle extra"
)


def ca_setting(how: str, ca: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point ``how`` (an environment variable, or ``extra``) at the CA; the connection extras to use."""
    if how == "SSL_CERT_DIR":  # a directory of CA files named by their subject hash, as OpenSSL reads it
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("needs the openssl command to name the CA file by its hash")
        digest = subprocess.run(
            [openssl, "x509", "-hash", "-noout", "-in", ca], capture_output=True, check=True
        )
        folder = ca.parent / "certs"
        folder.mkdir(exist_ok=True)
        shutil.copy(ca, folder / f"{digest.stdout.decode().strip()}.0")
        ca = folder
    if how == "extra":
        return {"ca_bundle": str(ca)}
    monkeypatch.setenv(how, str(ca))
    return {}


def test_sync_a_certificate_that_does_not_verify_says_so(tls_api: Server, monkeypatch) -> None:
    hook = sync_hook(monkeypatch, tls_api.url, retry=FAST)
    with pytest.raises(
        exceptions.HfJobsConnectionError, match=rf"^Could not check the token \(whoami\): {TLS_FAILED}"
    ):
        hook.whoami()
    with pytest.raises(
        exceptions.HfJobsConnectionError, match=rf"^Could not read the logs of job {JOB_ID}: {TLS_FAILED}"
    ):
        list(hook.fetch_job_logs(JOB_ID))
    with pytest.raises(exceptions.HfJobsConnectionError, match=rf"^Could not create a job .*: {TLS_FAILED}"):
        hook.run_job(image="python:3.12", command=["true"])
    assert tls_api.requests == []  # no request ever went out unverified


@pytest.mark.parametrize("how", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "extra"])
def test_sync_the_ca_setting_makes_it_verify(how: str, tls_api: Server, pki, monkeypatch) -> None:
    hook = sync_hook(monkeypatch, tls_api.url, **ca_setting(how, pki[0], monkeypatch))
    assert hook.whoami() == {"name": NS}
    assert hook.inspect_job(JOB_ID).stage.value == "COMPLETED"
    assert list(hook.fetch_job_logs(JOB_ID)) == ["hello"]


async def test_async_a_certificate_that_does_not_verify_says_so(tls_api: Server, monkeypatch) -> None:
    async with async_hook(monkeypatch, tls_api.url) as hook:
        with pytest.raises(
            exceptions.HfJobsConnectionError, match=rf"^Could not inspect job {JOB_ID}: {TLS_FAILED}"
        ):
            await hook.inspect_job(JOB_ID, namespace=NS)  # the lean GET fails, then httpx says why
        with pytest.raises(
            exceptions.HfJobsConnectionError, match=rf"^Could not cancel job {JOB_ID}: {TLS_FAILED}"
        ):
            await hook.cancel_job(JOB_ID, namespace=NS)  # httpx only
        with pytest.raises(
            exceptions.HfJobsConnectionError, match=rf"^Could not read the logs of job {JOB_ID}: {TLS_FAILED}"
        ):
            await drain_logs(hook)  # the lean transport only
    assert tls_api.requests == []


@pytest.mark.parametrize("how", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "extra"])
async def test_async_the_ca_setting_makes_it_verify(how: str, tls_api: Server, pki, monkeypatch) -> None:
    async with async_hook(monkeypatch, tls_api.url, **ca_setting(how, pki[0], monkeypatch)) as hook:
        assert (await hook.inspect_job(JOB_ID, namespace=NS)).stage.value == "COMPLETED"
        await hook.cancel_job(JOB_ID, namespace=NS)
        assert await drain_logs(hook) == ["hello"]


def test_tls_errors_are_their_own_class() -> None:
    assert issubclass(exceptions.HfJobsTLSError, exceptions.HfJobsConnectionError)


async def test_verify_false_works_and_says_so_loudly(tls_api: Server, monkeypatch) -> None:
    warnings: list[str] = []

    class Log:
        def warning(self, message: str, *args: Any) -> None:
            warnings.append(message % args)

        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: None

    monkeypatch.setattr(HfJobsAsyncHook, "log", property(lambda self: Log()))
    monkeypatch.setattr(HfJobsHook, "log", property(lambda self: Log()))
    async with async_hook(monkeypatch, tls_api.url, verify="false") as hook:
        assert (await hook.inspect_job(JOB_ID, namespace=NS)).stage.value == "COMPLETED"
    with pytest.warns(Warning, match="Unverified HTTPS request"):  # and urllib3 warns on every request
        assert sync_hook(monkeypatch, tls_api.url, verify="false").whoami() == {"name": NS}
    assert len(warnings) >= 2
    assert all("TLS certificate verification is OFF for https://127.0.0.1" in warning for warning in warnings)
    assert all(TOKEN not in warning for warning in warnings)


# ------------------------------------------------------------------ 6. size caps on every body
def cut(server: Server) -> str:
    """What became of the endless body: "cut" (the client hung up) or "finished" (it read it all)."""
    return server.outcome.get(timeout=60)


async def async_cut(server: Server) -> str:
    """:func:`cut`, waited for in a thread: the event loop must run on to close the client's socket."""
    return await asyncio.to_thread(cut, server)


def test_sync_a_json_answer_over_its_cap_is_refused_unread(monkeypatch) -> None:
    with Server(endless(200)) as server:
        with pytest.raises(HfJobsAPIError, match=r"^Could not check the token \(whoami\): .*more than 8 MiB"):
            sync_hook(monkeypatch, server.url).whoami()
        assert cut(server) == "cut"


def test_sync_an_error_body_is_read_only_up_to_its_cap(monkeypatch) -> None:
    with Server(endless(404)) as server:
        hook = sync_hook(monkeypatch, server.url)
        with pytest.raises(HfJobsNotFoundError):
            hook.inspect_job(JOB_ID)
        assert cut(server) == "cut"
        with pytest.raises(HfJobsNotFoundError):
            list(hook.fetch_job_logs(JOB_ID))
        assert cut(server) == "cut"


def test_sync_a_list_page_over_its_cap_is_refused_unread(monkeypatch) -> None:
    monkeypatch.setattr(jobs.errors, "MAX_LIST_PAGE_BYTES", 1 << 20, raising=False)
    with Server(endless(200)) as server:
        with pytest.raises(HfJobsAPIError, match=r"more than 1 MiB"):
            list(sync_hook(monkeypatch, server.url).list_jobs())
        assert cut(server) == "cut"


async def test_async_a_json_answer_over_its_cap_is_refused_unread(monkeypatch) -> None:
    with Server(endless(200)) as server:
        async with async_hook(monkeypatch, server.url) as hook:
            with pytest.raises(HfJobsAPIError, match=rf"^Could not inspect job {JOB_ID}: .*more than 8 MiB"):
                await hook.inspect_job(JOB_ID, namespace=NS)  # the lean transport
        assert await async_cut(server) == "cut"


async def test_async_an_answer_through_httpx_is_read_only_up_to_its_cap(monkeypatch) -> None:
    with Server(endless(200)) as server:
        async with async_hook(monkeypatch, server.url) as hook:
            await hook.cancel_job(JOB_ID, namespace=NS)  # a POST: through httpx; its answer is not needed
        assert await async_cut(server) == "cut"


async def test_async_an_error_body_is_read_only_up_to_its_cap(monkeypatch) -> None:
    with Server(endless(404)) as server:
        async with async_hook(monkeypatch, server.url) as hook:
            with pytest.raises(HfJobsNotFoundError):
                await drain_logs(hook)  # the lean transport
        assert await async_cut(server) == "cut"
        async with async_hook(monkeypatch, server.url) as hook:
            with pytest.raises(HfJobsNotFoundError):
                await hook.cancel_job(JOB_ID, namespace=NS)  # httpx
        assert await async_cut(server) == "cut"


async def test_async_a_proxied_log_error_body_is_read_only_up_to_its_cap(monkeypatch) -> None:
    """Behind a proxy the log stream goes through httpx (``_HttpxEventStream``): this server plays the
    proxy, answering the absolute-form request for the endpoint behind it."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with Server(endless(404)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        event_stream._environment_proxies.cache_clear()
        try:
            # plain HTTP to another machine (through the proxy): allowed in so many words
            async with async_hook(monkeypatch, "http://hub.invalid", allow_insecure_http="true") as hook:
                with pytest.raises(HfJobsNotFoundError):
                    await drain_logs(hook)
        finally:
            event_stream._environment_proxies.cache_clear()
        assert proxy.requests[0][1] == f"http://hub.invalid/api/jobs/{NS}/{JOB_ID}/logs"
        assert await async_cut(proxy) == "cut"


# ------------------------------------------------------------------ 7. https-only script URLs
def test_a_plain_http_script_url_is_refused_before_any_request(monkeypatch) -> None:
    with Server(lambda handler: send_json(handler, job_json(stage="SCHEDULING"))) as server:
        hook = sync_hook(monkeypatch, server.url)
        with pytest.raises(HfJobsInputError, match=r"plain http: the job runs it with its secrets"):
            hook.run_uv_job(f"{server.url}/train.py", secrets={"HF_TOKEN": "hf_secret"})
        assert hook.run_uv_job("https://example.com/train.py").id == JOB_ID  # https is fine
    assert [method for method, _, _ in server.requests] == ["POST"]  # only the https one was sent
