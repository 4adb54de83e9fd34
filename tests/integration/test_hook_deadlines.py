"""Never hang, never die silently (issue 19, item 5, the hook half), over real HTTP on 127.0.0.1: small
hostile servers against both hooks.

1. a log (or metrics) stream kept open after the job ended, with keep-alives or nothing: followed, it is
   left once a stage check finds the job terminal;
2. an answer trickled a byte at a time: each request has an overall deadline;
3. deeply nested JSON: an ordinary API error, never a ``RecursionError``;
4. other malformed answers (a Retry-After of "²", a non-ASCII header, a bad gzip body, a broken Link, a
   Retry-After of years on a stream) and unusable settings: provider errors, never bare exceptions.

Every call under test runs under a generous bound (:func:`bounded`, ``asyncio.wait_for``): a hang fails the
test instead of hanging the run, and no test asserts a tight elapsed time. The servers stop writing when
the client hangs up or the test ends.
"""

from __future__ import annotations

import asyncio
import json
import select
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_hfjobs.exceptions import (
    HfJobsAPIError,
    HfJobsConnectionError,
    HfJobsError,
    HfJobsInputError,
    HfJobsRateLimitError,
    HfJobsServerError,
)
from airflow_provider_hfjobs.hooks import event_stream
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, HfJobsHook, _recent_credentials
from airflow_provider_hfjobs.jobs import RetryPolicy
from tests.integration.conftest import set_connection
from tests.integration.test_transport import pki  # noqa: F401 - the fixture: a CA and a server certificate

pytestmark = pytest.mark.integration

TOKEN = "hf_deadlines_token_3b9a"
NS = "alice"
JOB_ID = "687fb701029421ae5549d998"
NO_RETRY = RetryPolicy(max_retries=0)
ONE_RETRY = RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.05)
#: The bound on any one call under test: generous, since a fixed call takes well under a few seconds.
BOUND = 30.0
EVENT = b'data: {"data":"%s","timestamp":"2026-01-01T00:00:%02d.000Z"}\n\n'


def job_json(stage: str = "COMPLETED") -> dict[str, Any]:
    return {"id": JOB_ID, "owner": {"id": "1", "name": NS, "type": "user"}, "status": {"stage": stage}}


# ---------------------------------------------------------------------------------- a hostile server
class Server(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 answering with ``answer(handler)``. It records each request
    (method, path); :attr:`stop` ends every endless answer (set when the test ends)."""

    daemon_threads = True

    def __init__(self, answer: Callable[[Handler], None], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answer, self.tls = answer, tls
        self.requests: list[tuple[str, str]] = []
        self.stop = threading.Event()
        self.stage = "COMPLETED"  # what an inspect answers
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server_address[1]}"

    def count(self, method: str, suffix: str) -> int:
        return sum(1 for m, path in self.requests if m == method and path.split("?")[0].endswith(suffix))

    def __enter__(self) -> Server:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-answer is what these tests provoke


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
        self.server.requests.append((self.command, self.path))
        self.server.answer(self)

    do_POST = do_PUT = do_GET

    def log_message(self, *args: Any) -> None:
        pass

    # the pieces of an answer
    def send(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_job(self) -> None:
        self.send(
            200, json.dumps(job_json(self.server.stage)).encode(), (("Content-Type", "application/json"),)
        )

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> bool:
        """One chunk; ``False`` once the client has hung up."""
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError:
            return False
        return True

    def hold(self, keep_alive: float | None) -> None:
        """Keep the stream open until the client hangs up or the test ends: a keep-alive comment every
        ``keep_alive`` seconds, or (``None``) nothing at all."""
        while not self.server.stop.is_set():
            if keep_alive is not None:
                if not self.chunk(b": keep-alive\n\n"):
                    return
                self.server.stop.wait(keep_alive)
            else:  # silent: only watch for the client's hang-up
                readable, _, _ = select.select([self.connection], [], [], 0.1)
                try:
                    if readable and not self.connection.recv(1):
                        return
                except OSError:  # over TLS, a client gone mid-record
                    return

    def trickle(self, data: bytes, every: float = 0.5) -> None:
        """``data`` a byte at a time, one every ``every`` seconds."""
        for byte in data:
            if self.server.stop.wait(every):
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return


def sync_hook(
    monkeypatch: pytest.MonkeyPatch, url: str, retry: RetryPolicy = NO_RETRY, **extra: Any
) -> HfJobsHook:
    # allow_insecure_http: some tests reach http://hub.invalid through a proxy (plain HTTP to another host)
    set_connection(monkeypatch, "hf_deadlines", url, TOKEN, namespace=NS, allow_insecure_http="true")
    hook = HfJobsHook("hf_deadlines", retry_policy=retry)
    for name, value in extra.items():
        setattr(hook, name, value)
    return hook


def async_hook(
    monkeypatch: pytest.MonkeyPatch, url: str, retry: RetryPolicy = NO_RETRY, **extra: Any
) -> HfJobsAsyncHook:
    set_connection(monkeypatch, "hf_deadlines", url, TOKEN, namespace=NS, allow_insecure_http="true")
    _recent_credentials.clear()  # an async hook keeps a connection's credentials for 5 s: a new server
    hook = HfJobsAsyncHook("hf_deadlines", retry_policy=retry)
    for name, value in extra.items():
        setattr(hook, name, value)
    return hook


def bounded(call: Callable[[], Any], seconds: float = BOUND) -> Any:
    """``call()`` in a thread, failing the test if it has not returned after ``seconds``: a hang shows
    as a failure (the hung thread ends when the test's server stops)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still waiting after {seconds:g} s: the call hangs")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def abounded(awaitable: Any, seconds: float = BOUND) -> Any:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        pytest.fail(f"still waiting after {seconds:g} s: the call hangs")


async def follow_logs(hook: HfJobsAsyncHook, **kwargs: Any) -> list[str]:
    return [
        text
        async for batch in hook.iter_job_log_batches(JOB_ID, namespace=NS, **kwargs)
        for text in batch.texts
    ]


# ------------------------------------------------------------ 1. a stream kept open after the job ended
def kept_open(keep_alive: float | None) -> Callable[[Handler], None]:
    """The job is COMPLETED; its log stream sends one line, then stays open."""

    def answer(handler: Handler) -> None:
        if handler.path.split("?")[0].endswith("/logs"):
            handler.start_stream()
            if handler.chunk(EVENT % (b"hello", 0)):
                handler.hold(keep_alive)
        else:
            handler.send_job()

    return answer


HOLDS = pytest.mark.parametrize("keep_alive", [0.2, None], ids=["keep-alives", "silent"])


@HOLDS
def test_sync_follow_leaves_a_stream_kept_open_after_the_job_ended(keep_alive, monkeypatch) -> None:
    """The stream never ends and (silent) never times out within minutes: without a stage check,
    ``fetch_job_logs(follow=True)`` waited for good. Now the stage is checked after half a second without
    a line, and the finished job ends the read, its line delivered."""
    with Server(kept_open(keep_alive)) as server:
        hook = sync_hook(monkeypatch, server.url, stage_check_interval=0.5)
        assert bounded(lambda: list(hook.fetch_job_logs(JOB_ID, follow=True))) == ["hello"]
        assert server.count("GET", f"/{JOB_ID}") >= 1  # the stage check
        # Re-read once after the stage check (a stream left open may be one running behind): its line once.
        assert server.count("GET", "/logs") == 2


@pytest.fixture
def behind_a_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """``use(server_url)``: the server plays an HTTP proxy in the environment (the async hook then reads
    its streams through httpx, not the lean transport); the endpoint to give the hook."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    event_stream._environment_proxies.cache_clear()

    def use(server_url: str) -> str:
        monkeypatch.setenv("HTTP_PROXY", server_url)
        event_stream._environment_proxies.cache_clear()
        return "http://hub.invalid"

    yield use
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    event_stream._environment_proxies.cache_clear()


@HOLDS
@pytest.mark.parametrize("transport", ["lean", "httpx"])
async def test_async_follow_leaves_a_stream_kept_open_after_the_job_ended(
    transport, keep_alive, behind_a_proxy, monkeypatch
) -> None:
    """The same for the trigger's reader, over the lean transport and (behind a proxy) httpx: it
    returns, and keeps the terminal job."""
    with Server(kept_open(keep_alive)) as server:
        endpoint = behind_a_proxy(server.url) if transport == "httpx" else server.url
        async with async_hook(monkeypatch, endpoint, stage_check_interval=0.5) as hook:
            assert await abounded(follow_logs(hook)) == ["hello"]
            assert hook.last_terminal_job is not None and hook.last_terminal_job.stage.value == "COMPLETED"
        assert server.count("GET", "/logs") == 2  # the one re-read after the job was found ended
        if transport == "httpx":
            assert all(path.startswith("http://hub.invalid/") for _, path in server.requests)


def test_sync_no_follow_leaves_a_stream_that_only_sends_keep_alives(monkeypatch) -> None:
    """Without ``follow`` the read ended on a 5 s read timeout, which keep-alives reset forever: now it
    ends once no new line came for that long."""
    with Server(kept_open(0.2)) as server:
        hook = sync_hook(monkeypatch, server.url)
        assert bounded(lambda: list(hook.fetch_job_logs(JOB_ID))) == ["hello"]
        assert server.count("GET", f"/{JOB_ID}") == 0  # no-follow never asks for the stage


def running_then_done(handler: Handler) -> None:
    """A RUNNING job: one line, keep-alives; once it has been asked for its stage, a second line, and a
    second later (the real server's lag) the job is COMPLETED, the stream still open."""
    server = handler.server
    if not handler.path.split("?")[0].endswith("/logs"):
        handler.send_job()
        return
    handler.start_stream()
    if not handler.chunk(EVENT % (b"one", 0)):
        return
    while server.count("GET", f"/{JOB_ID}") == 0 and not server.stop.is_set():
        if not handler.chunk(b": keep-alive\n\n"):
            return
        server.stop.wait(0.1)
    if handler.chunk(EVENT % (b"two", 1)):
        server.stop.wait(1.0)
        server.stage = "COMPLETED"
        handler.hold(0.2)


@pytest.mark.parametrize("side", ["sync", "async"])
async def test_a_running_job_is_checked_and_followed_on_until_it_ends(side: str, monkeypatch) -> None:
    """A check that finds the job running goes on reading the same stream (the line that follows is
    delivered, nothing is re-opened); a later check finds it done and ends the read, after one re-read
    that repeats nothing."""
    with Server(running_then_done) as server:
        server.stage = "RUNNING"
        if side == "sync":
            hook = sync_hook(monkeypatch, server.url)
            lines = await asyncio.to_thread(
                bounded, lambda: list(hook.fetch_job_logs(JOB_ID, follow=True, stage_check_interval=0.5))
            )
        else:
            async with async_hook(monkeypatch, server.url) as ahook:
                lines = await abounded(follow_logs(ahook, stage_check_interval=0.5))
        assert lines == ["one", "two"]
        assert server.count("GET", f"/{JOB_ID}") >= 2  # found RUNNING, then COMPLETED
        assert server.count("GET", "/logs") == 2  # the same stream all along, then the one re-read


def metrics_kept_open(handler: Handler) -> None:
    """The job is COMPLETED; its metrics stream sends two samples, then only keep-alives."""
    if handler.path.split("?")[0].endswith("/metrics"):
        handler.start_stream()
        for n in range(2):
            if not handler.chunk(b'event: metric\ndata: {"cpu_usage_pct": %d}\n\n' % n):
                return
        handler.hold(0.2)
    else:
        handler.send_job()


def test_sync_followed_metrics_leave_a_stream_kept_open_after_the_job_ended(monkeypatch) -> None:
    with Server(metrics_kept_open) as server:
        hook = sync_hook(monkeypatch, server.url, stage_check_interval=0.5)
        samples = bounded(lambda: list(hook.fetch_job_metrics(JOB_ID, follow=True)))
    assert samples == [{"cpu_usage_pct": 0}, {"cpu_usage_pct": 1}]


async def test_async_followed_metrics_leave_a_stream_kept_open_after_the_job_ended(monkeypatch) -> None:
    async def read(hook: HfJobsAsyncHook) -> list[dict[str, Any]]:
        return [sample async for sample in hook.fetch_job_metrics(JOB_ID, namespace=NS, follow=True)]

    with Server(metrics_kept_open) as server:
        async with async_hook(monkeypatch, server.url, stage_check_interval=0.5) as hook:
            assert await abounded(read(hook)) == [{"cpu_usage_pct": 0}, {"cpu_usage_pct": 1}]


def test_the_stage_check_interval_must_be_positive_seconds(monkeypatch) -> None:
    with Server(kept_open(0.2)) as server:
        hook = sync_hook(monkeypatch, server.url)
        with pytest.raises(HfJobsInputError, match="stage_check_interval must be a positive number"):
            list(hook.fetch_job_logs(JOB_ID, follow=True, stage_check_interval=0))
    assert server.requests == []


# ------------------------------------------------------------------------- 2. an answer trickled
def trickled_body(handler: Handler) -> None:
    """Headers at once, then the body a byte every half second (1,000 bytes: 500 s in all)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.flush()
    handler.trickle(b" " * 1000)


def trickled_head(handler: Handler) -> None:
    """The status line, then a header a byte every half second."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    handler.wfile.flush()
    handler.trickle(b"a" * 1000)


SLOW = r"the answer took longer than 2 s .*so it was abandoned"
TRICKLES = pytest.mark.parametrize("answer", [trickled_body, trickled_head], ids=["body", "head"])


@TRICKLES
def test_sync_a_trickled_answer_fails_at_the_deadline(answer, monkeypatch) -> None:
    """Each read is quick, so the 60 s read timeout never fires: the call took the 500 s the server
    wanted. Now it fails at the 2 s deadline, as a transport error saying so."""
    with Server(answer) as server:
        hook = sync_hook(monkeypatch, server.url, request_deadline=2.0)
        with pytest.raises(HfJobsConnectionError, match=rf"^Could not inspect job {JOB_ID}: {SLOW}"):
            bounded(lambda: hook.inspect_job(JOB_ID))


def test_sync_a_trickled_answer_is_retried_as_a_timeout(monkeypatch) -> None:
    with Server(trickled_body) as server:
        hook = sync_hook(monkeypatch, server.url, retry=ONE_RETRY, request_deadline=2.0)
        with pytest.raises(HfJobsConnectionError, match=SLOW):
            bounded(lambda: list(hook.list_jobs()))
        assert server.count("GET", f"/api/jobs/{NS}") == 2  # the first try and one retry


def test_sync_a_trickled_create_answer_fails_at_the_deadline(monkeypatch) -> None:
    with Server(trickled_body) as server:
        hook = sync_hook(monkeypatch, server.url, request_deadline=2.0)
        with pytest.raises(HfJobsConnectionError, match=rf"^Could not create a job .*: {SLOW}"):
            bounded(lambda: hook.run_job(image="python:3.12", command=["true"]))


@TRICKLES
async def test_async_a_trickled_answer_fails_at_the_deadline(answer, monkeypatch) -> None:
    """The same for the async hook: an inspect (the lean transport) and a cancel (httpx)."""
    with Server(answer) as server:
        async with async_hook(monkeypatch, server.url, request_deadline=2.0) as hook:
            with pytest.raises(HfJobsConnectionError, match=rf"^Could not inspect job {JOB_ID}: {SLOW}"):
                await abounded(hook.inspect_job(JOB_ID, namespace=NS))
            with pytest.raises(HfJobsConnectionError, match=rf"^Could not cancel job {JOB_ID}: {SLOW}"):
                await abounded(hook.cancel_job(JOB_ID, namespace=NS))


def test_the_request_deadline_is_a_hook_attribute_defaulting_to_a_minute() -> None:
    assert HfJobsHook.request_deadline == HfJobsAsyncHook.request_deadline == 60.0
    assert HfJobsHook.stage_check_interval == HfJobsAsyncHook.stage_check_interval == 10.0


# --------------------------------------------------------------------------- 3. deeply nested JSON
DEEP = {
    "500-list": (500, b"[" * 30_000 + b"]" * 30_000),
    "500-error-of-error": (500, b'{"error": ' * 5_000 + b'"x"' + b"}" * 5_000),
    "500-parseable-900": (500, b'{"error": ' * 900 + b'"x"' + b"}" * 900),
    "200-list": (200, b"[" * 100_000 + b"]" * 100_000),
    "200-job-nested-message": (
        200,
        b'{"id": "%s", "status": {"stage": "ERROR", "message": %s%s}}'
        % (JOB_ID.encode(), b"[" * 500, b"]" * 500),
    ),
}


def deep(status: int, body: bytes) -> Callable[[Handler], None]:
    return lambda handler: handler.send(status, body, (("Content-Type", "application/json"),))


@pytest.mark.parametrize(("status", "body"), DEEP.values(), ids=DEEP.keys())
def test_sync_a_deeply_nested_answer_is_an_api_error(status: int, body: bytes, monkeypatch) -> None:
    """Such a body raised RecursionError out of the hook (json.loads, or the message built from it)."""
    with Server(deep(status, body)) as server:
        hook = sync_hook(monkeypatch, server.url)
        with pytest.raises(HfJobsAPIError) as info:
            hook.inspect_job(JOB_ID)
    assert info.value.status_code == status
    assert len(str(info.value)) < 600 and "[[[[" not in str(info.value)


@pytest.mark.parametrize(("status", "body"), DEEP.values(), ids=DEEP.keys())
async def test_async_a_deeply_nested_answer_is_an_api_error(status: int, body: bytes, monkeypatch) -> None:
    with Server(deep(status, body)) as server:
        async with async_hook(monkeypatch, server.url) as hook:
            with pytest.raises(HfJobsAPIError) as info:
                await hook.inspect_job(JOB_ID, namespace=NS)  # the lean transport
            assert info.value.status_code == status and len(str(info.value)) < 600
            if status >= 400:
                with pytest.raises(HfJobsServerError):
                    await hook.cancel_job(JOB_ID, namespace=NS)  # httpx


def deep_log_event(handler: Handler) -> None:
    """A finished job's log: an event nested 100,000 deep, then an ordinary line; the stream ends."""
    if handler.path.split("?")[0].endswith("/logs"):
        nested = b'data: {"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n\n"
        handler.send(200, nested + EVENT % (b"after", 1), (("Content-Type", "text/event-stream"),))
    else:
        handler.send_job()


def test_sync_a_deeply_nested_log_event_is_a_line_not_a_crash(monkeypatch) -> None:
    with Server(deep_log_event) as server:
        lines = bounded(lambda: list(sync_hook(monkeypatch, server.url).fetch_job_logs(JOB_ID, follow=True)))
    assert len(lines) == 2 and lines[0].startswith('{"data": [[[') and "line cut" in lines[0]
    assert lines[1] == "after"


async def test_async_a_deeply_nested_log_event_is_a_line_not_a_crash(monkeypatch) -> None:
    with Server(deep_log_event) as server:
        async with async_hook(monkeypatch, server.url) as hook:
            lines = await abounded(follow_logs(hook))
    assert len(lines) == 2 and lines[1] == "after"


# --------------------------------------------------------------------- 4. other malformed answers
def retry_after_superscript(handler: Handler) -> None:
    handler.send(503, b'{"error": "busy"}', (("Retry-After", "²"),))  # "²".isdigit(), float("²") raises


def test_sync_a_retry_after_that_is_no_number_is_ignored(monkeypatch) -> None:
    """``Retry-After: ²`` (sent as latin-1) raised ValueError out of the hook."""
    with Server(retry_after_superscript) as server, pytest.raises(HfJobsServerError, match="HTTP 503"):
        sync_hook(monkeypatch, server.url).inspect_job(JOB_ID)


async def test_async_a_retry_after_that_is_no_number_is_ignored(monkeypatch) -> None:
    """The async hook raised UnicodeEncodeError (the lean transport's headers) or ValueError (httpx)."""
    with Server(retry_after_superscript) as server:
        async with async_hook(monkeypatch, server.url) as hook:
            with pytest.raises(HfJobsServerError, match="HTTP 503"):
                await hook.inspect_job(JOB_ID, namespace=NS)
            with pytest.raises(HfJobsServerError, match="HTTP 503"):
                await hook.cancel_job(JOB_ID, namespace=NS)


async def test_async_a_non_ascii_header_does_not_break_the_lean_transport(monkeypatch) -> None:
    def answer(handler: Handler) -> None:
        handler.send(200, json.dumps(job_json()).encode(), (("X-Served-By", "café-é"),))

    with Server(answer) as server:
        async with async_hook(monkeypatch, server.url) as hook:
            assert (await hook.inspect_job(JOB_ID, namespace=NS)).stage.value == "COMPLETED"


async def test_async_a_body_that_is_no_gzip_is_a_provider_error(monkeypatch) -> None:
    """httpx's DecodingError is no TransportError: it escaped the async hook's cancel."""
    with Server(lambda handler: handler.send(200, b"not gzip", (("Content-Encoding", "gzip"),))) as server:
        async with async_hook(monkeypatch, server.url) as hook:
            with pytest.raises(HfJobsConnectionError, match=r"sent a malformed answer \(DecodingError\)"):
                await hook.cancel_job(JOB_ID, namespace=NS)


def test_sync_a_next_page_that_is_no_url_is_an_api_error(monkeypatch) -> None:
    """``Link: <http://[::1/x>; rel="next"`` raised ValueError ("Invalid IPv6 URL") out of list_jobs."""
    link = (("Link", '<http://[::1/x>; rel="next"'), ("Content-Type", "application/json"))
    with (
        Server(lambda handler: handler.send(200, b"[]", link)) as server,
        pytest.raises(HfJobsAPIError, match=r"next page .* is not a valid URL"),
    ):
        list(sync_hook(monkeypatch, server.url).list_jobs())


def test_sync_a_log_timestamp_that_is_no_string_is_ignored(monkeypatch) -> None:
    """A number as an event's timestamp raised AttributeError out of a no-follow read (its cutoff parsed
    it; after a ``tail`` reconnect it was a TypeError, see the unit tests)."""
    events = b'data: {"data":"a","timestamp":5}\n\ndata: {"data":"b","timestamp":[1]}\n\n'

    def answer(handler: Handler) -> None:
        if handler.path.split("?")[0].endswith("/logs"):
            handler.send(200, events, (("Content-Type", "text/event-stream"),))
        else:
            handler.send_job()

    with Server(answer) as server:
        hook = sync_hook(monkeypatch, server.url)
        assert bounded(lambda: list(hook.fetch_job_logs(JOB_ID))) == ["a", "b"]
        assert bounded(lambda: list(hook.fetch_job_logs(JOB_ID, follow=True))) == ["a", "b"]


def rate_limited_for_years(handler: Handler) -> None:
    handler.send(429, b'{"error": "slow down"}', (("Retry-After", "999999999"),))


def test_sync_a_log_stream_told_to_wait_for_years_gives_up(monkeypatch) -> None:
    """A stream's 429 took its ``Retry-After`` over the policy's total wait: the reader slept 31 years."""
    with Server(rate_limited_for_years) as server:
        hook = sync_hook(monkeypatch, server.url, retry=ONE_RETRY)
        with pytest.raises(HfJobsRateLimitError):
            bounded(lambda: list(hook.fetch_job_logs(JOB_ID, follow=True)))


async def test_async_a_log_stream_told_to_wait_for_years_gives_up(monkeypatch) -> None:
    with Server(rate_limited_for_years) as server:
        async with async_hook(monkeypatch, server.url, retry=ONE_RETRY) as hook:
            with pytest.raises(HfJobsRateLimitError):
                await abounded(follow_logs(hook))


BAD_SETTINGS = {
    "port-out-of-range": (
        "http://127.0.0.1:99999",
        TOKEN,
        r"endpoint 'http://127\.0\.0\.1:99999' is not a valid URL",
    ),
    "unclosed-ipv6": ("http://[::1", TOKEN, r"endpoint 'http://\[::1' is not a valid URL"),
    "token-non-ascii": (None, "hf_tok€n_secret", "token contains a character an HTTP header cannot carry"),
    "token-control": (None, "hf_tok\x01n_secret", "token contains a character an HTTP header cannot carry"),
}


@pytest.fixture
def idle_server() -> Iterator[Server]:
    with Server(lambda handler: handler.send_job()) as server:
        yield server


@pytest.mark.parametrize(("endpoint", "token", "message"), BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
async def test_settings_no_request_can_carry_are_input_errors(
    endpoint, token, message, idle_server, monkeypatch
) -> None:
    """They raised ValueError, UnicodeEncodeError, httpx.InvalidURL or an ExceptionGroup from deep in a
    transport; now an input error before any request, never quoting the token."""
    set_connection(monkeypatch, "hf_bad", endpoint or idle_server.url, token, namespace=NS)
    errors: list[HfJobsError] = []
    with pytest.raises(HfJobsInputError, match=message) as info:
        HfJobsHook("hf_bad").inspect_job(JOB_ID)
    errors.append(info.value)
    with pytest.raises(HfJobsInputError, match=message) as info:
        list(HfJobsHook("hf_bad").fetch_job_logs(JOB_ID))
    errors.append(info.value)
    async with HfJobsAsyncHook("hf_bad") as hook:
        with pytest.raises(HfJobsInputError, match=message) as info:
            await hook.inspect_job(JOB_ID, namespace=NS)
        errors.append(info.value)
    async with HfJobsAsyncHook("hf_bad") as hook:
        with pytest.raises(HfJobsInputError, match=message) as info:
            await hook.cancel_job(JOB_ID, namespace=NS)
        errors.append(info.value)
    assert idle_server.requests == []
    assert all("secret" not in str(error) for error in errors)


# ------------------------------------------------------------------------------------------ over TLS
@pytest.fixture
def no_ca_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


def tls_hook(kind: type, monkeypatch: pytest.MonkeyPatch, url: str, ca: Any, **extra: Any) -> Any:
    set_connection(monkeypatch, "hf_deadlines_tls", url, TOKEN, namespace=NS, ca_bundle=str(ca))
    _recent_credentials.clear()  # an async hook keeps a connection's credentials for 5 s: a new server
    hook = kind("hf_deadlines_tls", retry_policy=NO_RETRY)
    for name, value in extra.items():
        setattr(hook, name, value)
    return hook


@pytest.mark.usefixtures("no_ca_environment")
def test_sync_over_tls_the_deadline_and_the_stage_check_end_the_reads(pki, monkeypatch) -> None:  # noqa: F811
    """Over TLS the blocked read is woken by shutting the TCP socket under the TLS one down (what
    ``SSLSocket.shutdown`` does to a concurrent read is not to be relied on)."""
    ca, context = pki
    with Server(kept_open(None), tls=context) as server:
        hook = tls_hook(HfJobsHook, monkeypatch, server.url, ca, stage_check_interval=0.5)
        assert bounded(lambda: list(hook.fetch_job_logs(JOB_ID, follow=True))) == ["hello"]
    with Server(trickled_body, tls=context) as server:
        hook = tls_hook(HfJobsHook, monkeypatch, server.url, ca, request_deadline=2.0)
        with pytest.raises(HfJobsConnectionError, match=SLOW):
            bounded(lambda: hook.inspect_job(JOB_ID))


@pytest.mark.usefixtures("no_ca_environment")
async def test_async_over_tls_the_deadline_and_the_stage_check_end_the_reads(pki, monkeypatch) -> None:  # noqa: F811
    ca, context = pki
    with Server(kept_open(None), tls=context) as server:
        async with tls_hook(HfJobsAsyncHook, monkeypatch, server.url, ca, stage_check_interval=0.5) as hook:
            assert await abounded(follow_logs(hook)) == ["hello"]
    with Server(trickled_body, tls=context) as server:
        async with tls_hook(HfJobsAsyncHook, monkeypatch, server.url, ca, request_deadline=2.0) as hook:
            with pytest.raises(HfJobsConnectionError, match=SLOW):
                await abounded(hook.inspect_job(JOB_ID, namespace=NS))


# ------------------------------------------------------------------ the kept connection after a check
async def test_a_stage_check_during_a_stream_leaves_one_connection_kept_not_two() -> None:
    """A stage check while the stream holds the kept connection opens a second one, which is kept; the
    stream's, ending cleanly afterwards, used to replace it without closing it (a leaked socket per
    check). Now the one kept stays, and the other is closed."""
    from airflow_provider_hfjobs.hooks.event_stream import KeptConnection
    from airflow_provider_hfjobs.hooks.hfjobs import shared_ssl_context

    closed: list[int] = []
    ended = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(closed)
        closed.append(0)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            if b"/logs" in head.split(b"\r\n")[0]:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                await writer.drain()
                await ended.wait()
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
        closed[number] = 1
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/jobs/{NS}/{JOB_ID}"
    kept = KeptConnection(shared_ssl_context(), timeout=10)
    async with server:
        async with asyncio.timeout(BOUND):
            stream = await kept.open_stream(f"{base}/logs", {}, read_timeout=10)
            assert stream is not None and await stream.read() == b"hello"
            assert (await kept.get(base, {}))[2] == b"{}"  # the check, on a second connection
            ended.set()
            assert await stream.read() == b""
            await stream.aclose()
            while closed != [1, 0]:  # the stream's connection closed, the check's kept
                await asyncio.sleep(0.01)
            assert (await kept.get(base, {}))[2] == b"{}" and len(closed) == 2  # and reused
        kept.close()
