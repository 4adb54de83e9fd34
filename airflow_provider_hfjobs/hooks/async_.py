"""``HfJobsAsyncHook``: the HF Jobs REST API for triggers, without a blocking call.

GETs (stage checks, log and metrics streams) go over one kept-alive lean connection
(:mod:`.event_stream`: asyncio + h11); anything else, and everything behind a proxy, through httpx. The
requests themselves are :mod:`airflow_provider_hfjobs.jobs`'s route descriptions, the same the sync hook
sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

import httpx
from airflow.providers.common.compat.sdk import AirflowNotFoundException

from airflow_provider_hfjobs.deadlines import (
    REQUEST_DEADLINE,
    STAGE_CHECK_INTERVAL,
    StageCheck,
    check_seconds,
    too_slow,
)
from airflow_provider_hfjobs.exceptions import HfJobsConnectionError, HfJobsError
from airflow_provider_hfjobs.hooks.credentials import (
    HfJobsCredentials,
    _first_sentence,
    _HfJobsHookBase,
    _raise_if_tls,
    _recent_credentials,
    shared_ssl_context,
    user_agent,
)
from airflow_provider_hfjobs.hooks.event_stream import (
    EventStream,
    EventStreamError,
    EventStreamTimeout,
    KeptConnection,
    read_capped,
)
from airflow_provider_hfjobs.jobs import (
    CREATE_NOT_APPLIED_STATUS,
    FOLLOW_READ_TIMEOUT,
    ApiCall,
    JobInfo,
    JobStage,
    JobWait,
    RetryAttempts,
    Route,
    ScheduledJobInfo,
    body_limit,
    cancel_job_call,
    check_http_credentials,
    error_for_response,
    inspect_job_call,
    inspect_scheduled_job_call,
    is_error_status,
    job_logs_route,
    job_metrics_route,
    namespace_from_whoami,
    outcome_unknown,
    rerun_job_call,
    update_job_expose_call,
    update_job_labels_call,
    whoami_call,
)
from airflow_provider_hfjobs.sse import LogBatch, LogLine, LogReconnect, LogStreamParser, MetricsStreamParser

R = TypeVar("R", bound=Route)
T = TypeVar("T")


class HfJobsAsyncHook(_HfJobsHookBase):
    """The async twin of :class:`HfJobsHook` for triggers: ``httpx.AsyncClient``, no blocking call.

    The connection is read with the async connection helper (a sync ``get_connection`` inside the
    triggerer's event loop blocks it or fails). Use it as an async context manager so that one client,
    and its connection pool, serves the whole trigger.
    """

    hook_name = "Hugging Face Jobs (async)"
    _credentials: HfJobsCredentials | None = None
    _client: httpx.AsyncClient | None = None
    #: The terminal job a followed log stream ended on (saves the caller asking for it again).
    last_terminal_job: JobInfo | None = None
    _kept: KeptConnection | None = None
    #: As :attr:`HfJobsHook.request_deadline`: seconds one non-streaming request may take in all.
    request_deadline: float = REQUEST_DEADLINE
    #: As :attr:`HfJobsHook.stage_check_interval`: seconds a followed stream may bring nothing before
    #: the job's stage is checked (a trigger's log stream the server keeps open after the job ended).
    stage_check_interval: float = STAGE_CHECK_INTERVAL

    async def get_credentials(self) -> HfJobsCredentials:
        if self._credentials is None:
            creds = await _recent_credentials.shared(self.hf_conn_id, self._look_up_credentials)
            check_http_credentials(creds.endpoint, creds.token)
            self._credentials = creds
        return self._credentials

    async def _look_up_credentials(self) -> HfJobsCredentials:
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        try:
            conn = await get_async_connection(self.hf_conn_id)
        except AirflowNotFoundException:
            # Under `airflow dags test` the trigger runs in-process and the async lookup cannot reach the
            # metadata DB (its supervisor channel answers only synchronous requests): ask the sync way, in a
            # thread, before falling back to the environment. A real triggerer found it above already.
            conn = await asyncio.to_thread(self._sync_connection_or_none)
            if conn is None:
                credentials = self._credentials_from(None, None)
            else:
                credentials = self._credentials_from(conn, conn.extra_dejson)
        else:
            credentials = self._credentials_from(conn, await get_async_extra_dejson(conn))
        _recent_credentials.put(self.hf_conn_id, credentials)
        return credentials

    def _sync_connection_or_none(self) -> Any:
        try:
            return self.get_connection(self.hf_conn_id)
        except AirflowNotFoundException:
            return None

    async def __aenter__(self) -> HfJobsAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._kept is not None:
            self._kept.close()
            self._kept = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _http(self) -> tuple[httpx.AsyncClient, HfJobsCredentials]:
        creds = await self.get_credentials()
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers={"User-Agent": user_agent(), "Authorization": f"Bearer {creds.token}"},
                timeout=self.request_timeout,
                verify=shared_ssl_context(self._tls_verify(creds)),
            )
        return self._client, creds

    async def get_namespace(self) -> str:
        if self._namespace is None:
            creds = await self.get_credentials()
            self._namespace = creds.namespace or namespace_from_whoami(await self._request(whoami_call()))
        return self._namespace

    async def _resolved(self, route: R) -> R:
        """``route`` in the hook's namespace if it names none (it was checked before any I/O)."""
        return route.in_namespace(await self.get_namespace()) if route.needs_namespace else route

    async def _request(self, call: ApiCall[T]) -> T:
        """Send one described request and parse its answer (the route says how)."""
        call = await self._resolved(call)
        status, _, content = await self._call(
            call.method, call.path, action=call.action, namespace=call.namespace, job_id=call.job_id,
            body=call.body, idempotent=call.idempotent,
        )  # fmt: skip
        return call.result(status, content, (await self.get_credentials()).endpoint)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        action: str,
        namespace: str | None = None,
        job_id: str | None = None,
        body: Any = None,
        idempotent: bool = True,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request with the retry policy: a 2xx answer's ``(status, headers, body)``; an HTTP error
        becomes one provider exception. Not ``idempotent``: retried only when it certainly was not done."""
        creds = await self.get_credentials()
        url = f"{creds.endpoint}{path}"
        attempts = RetryAttempts(self.retry_policy)
        deadline = check_seconds(self.request_deadline, "request_deadline")
        while True:
            try:
                async with asyncio.timeout(deadline):
                    status, headers, content = await self._send(method, url, creds, body)
            except TimeoutError:  # the deadline (the transports raise their own timeouts, never this)
                failure: HfJobsError = too_slow(action, deadline)
                if not idempotent:
                    raise outcome_unknown(failure) from None
                delay = attempts.after(failure)
            except (httpx.TransportError, httpx.DecodingError) as exc:  # a bad gzip body: DecodingError
                _raise_if_tls(exc, action, creds.endpoint)
                malformed = isinstance(exc, (httpx.RemoteProtocolError, httpx.DecodingError))
                failure = HfJobsConnectionError(
                    f"Could not {action}: {creds.endpoint} "
                    f"{'sent a malformed answer' if malformed else 'is unreachable'} ({type(exc).__name__})."
                )
                if not idempotent and not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                    raise outcome_unknown(failure) from None
                delay = attempts.after(failure)
            else:
                if not is_error_status(status):
                    return status, headers, content
                retryable = idempotent or status in CREATE_NOT_APPLIED_STATUS
                failure = error_for_response(
                    status,
                    content,
                    headers,
                    action=action,
                    namespace=namespace,
                    job_id=job_id,
                    retried=retryable,
                )
                if not retryable:
                    raise outcome_unknown(failure) if status >= 500 else failure
                delay = attempts.after(failure, status_code=status, headers=headers)
            self.log.warning("%s; retry %d in %.1fs", _first_sentence(failure), attempts.failures, delay)
            await asyncio.sleep(delay)

    async def _send(
        self, method: str, url: str, creds: HfJobsCredentials, body: Any = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request's ``(status, headers, body)``, the body read within :func:`.jobs.body_limit`: a GET
        over the kept lean connection when it can, else (a proxy, a failed connection, any other method)
        through httpx, which raises its TransportError."""
        if method == "GET" and (answer := await self._kept_get(url, creds)) is not None:
            return answer
        client, _ = await self._http()
        stream = await _HttpxEventStream.open(client.stream(method, url, json=body))
        try:
            return stream.status_code, stream.headers, await stream.read_all()
        finally:
            await stream.aclose()

    async def inspect_job(self, job_id: str, *, namespace: str | None = None) -> JobInfo:
        """``GET /api/jobs/{namespace}/{id}``."""
        return await self._request(inspect_job_call(job_id, namespace))

    async def inspect_scheduled_job(
        self, scheduled_job_id: str, *, namespace: str | None = None
    ) -> ScheduledJobInfo:
        """``GET /api/scheduled-jobs/{namespace}/{id}``: for a trigger waiting on a scheduled job's runs
        (``status.lastJob``, ``status.nextJobRunAt``)."""
        return await self._request(inspect_scheduled_job_call(scheduled_job_id, namespace))

    async def cancel_job(self, job_id: str, *, namespace: str | None = None) -> JobInfo | None:
        """``POST /api/jobs/{namespace}/{id}/cancel``; the job if the server sent it back."""
        return await self._request(cancel_job_call(job_id, namespace))

    async def rerun_job(self, job_id: str, *, namespace: str | None = None) -> JobInfo:
        """As :meth:`HfJobsHook.rerun_job`: a new job with the same spec, sent at most once."""
        return await self._request(rerun_job_call(job_id, namespace))

    async def update_job_labels(
        self, job_id: str, *, labels: Mapping[str, str], namespace: str | None = None
    ) -> JobInfo:
        """As :meth:`HfJobsHook.update_job_labels`: replaces all the job's labels."""
        return await self._request(update_job_labels_call(job_id, labels, namespace))

    async def update_job_expose(
        self,
        job_id: str,
        *,
        expose: Sequence[int] | None = None,
        expose_public: Sequence[int] | None = None,
        namespace: str | None = None,
    ) -> JobInfo:
        """As :meth:`HfJobsHook.update_job_expose`: the whole new port configuration."""
        return await self._request(update_job_expose_call(job_id, expose, expose_public, namespace))

    @overload
    async def wait_for_job(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        timeout: float | None = None,
        poll_interval: float = 5.0,
        stages: Iterable[str | JobStage] | None = None,
    ) -> JobInfo: ...

    @overload
    async def wait_for_job(
        self,
        job_id: list[str],
        *,
        namespace: str | None = None,
        timeout: float | None = None,
        poll_interval: float = 5.0,
        stages: Iterable[str | JobStage] | None = None,
    ) -> list[JobInfo]: ...

    async def wait_for_job(
        self,
        job_id: str | list[str],
        *,
        namespace: str | None = None,
        timeout: float | None = None,
        poll_interval: float = 5.0,
        stages: Iterable[str | JobStage] | None = None,
    ) -> JobInfo | list[JobInfo]:
        """As :meth:`HfJobsHook.wait_for_job`, sleeping without holding the event loop."""
        wait = JobWait(
            job_id, timeout=timeout, poll_interval=poll_interval, stages=stages, now=time.monotonic()
        )
        jobs = []
        for one in wait.job_ids:
            while not wait.reached(job := await self.inspect_job(one, namespace=namespace)):
                await asyncio.sleep(wait.pause(job, time.monotonic()))
            jobs.append(job)
        return wait.result(jobs)

    async def fetch_job_metrics(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        follow: bool = False,
        stage_check_interval: float | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """As :meth:`HfJobsHook.fetch_job_metrics`, over the hook's kept lean connection: the current
        sample, or (``follow``) every one until the job is terminal, the stage checked once no sample came
        for ``stage_check_interval`` seconds; a finished job's 406 (or 500) ends it quietly."""
        route = await self._resolved(job_metrics_route(job_id, namespace))
        creds = await self.get_credentials()
        url = f"{creds.endpoint}{route.path}"
        reconnect = LogReconnect(self.retry_policy, what="metrics")
        loop = asyncio.get_running_loop()
        interval = self._stage_check_interval(stage_check_interval) if follow else route.read_timeout
        check, seen = StageCheck(interval, loop.time()), 0
        while True:
            parser = MetricsStreamParser()
            error = None
            try:
                stream = await self._open_stream(url, creds, route.read_timeout)
                try:
                    status = stream.status_code
                    if is_error_status(status):
                        content = await self._error_body(stream)  # read to its end: the connection stays kept
                        if status not in route.ends_on:
                            error = error_for_response(
                                status, content, stream.headers, action=route.action, namespace=route.namespace,
                                job_id=job_id,
                            )  # fmt: skip
                    else:
                        while (chunk := await stream.read(check.wait(loop.time()))) != b"":
                            samples = parser.feed(chunk) if chunk else ()
                            seen += len(samples)
                            check.saw(seen, loop.time())
                            for sample in samples:
                                reconnect.progressed()
                                yield sample
                                if not follow:
                                    return
                            if not samples and check.due(loop.time()):
                                if not follow or await self._ended(job_id, route.namespace):
                                    return  # no sample for a while: none (yet), or the job ended
                                check.checked(loop.time())
                finally:
                    await stream.aclose()
            except (httpx.ReadTimeout, EventStreamTimeout):
                pass  # a silent stream: the stage check below says whether to go on
            except (httpx.TransportError, httpx.DecodingError, EventStreamError) as exc:
                _raise_if_tls(exc, route.action, creds.endpoint)
                await asyncio.sleep(reconnect.after_cut(job_id, type(exc).__name__))
                continue
            if error is not None:
                await asyncio.sleep(reconnect.after_http_error(error))
                continue
            if not follow or await self._ended(job_id, route.namespace):
                return
            check.checked(loop.time())
            await asyncio.sleep(reconnect.after_clean_end())

    async def iter_job_log_lines(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        cursor: int = 0,
        stage_check_interval: float | None = None,
    ) -> AsyncIterator[LogLine]:
        """Follow the job's log until it is terminal, each line once, starting after ``cursor`` events."""
        async for batch in self.iter_job_log_batches(
            job_id, namespace=namespace, cursor=cursor, stage_check_interval=stage_check_interval
        ):
            for line in batch:
                yield line

    async def iter_job_log_batches(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        cursor: int = 0,
        stage_check_interval: float | None = None,
    ) -> AsyncIterator[LogBatch]:
        """Follow the job's log until it is terminal, a batch of lines per chunk, each line once, starting
        after ``cursor`` events. Same rules as :meth:`HfJobsHook.iter_job_log_batches` (they share
        :class:`LogReconnect` and :class:`.deadlines.StageCheck`): once the stream brought nothing for
        ``stage_check_interval`` seconds (default: the hook's, 10 s), the stage is checked, and a terminal
        job ends the stream even if the server keeps it open."""
        route = await self._resolved(job_logs_route(job_id, namespace))
        ns = route.namespace
        creds = await self.get_credentials()  # the httpx client is only built if a request needs it
        url = f"{creds.endpoint}{route.path}"
        parser = LogStreamParser(cursor)
        reconnect = LogReconnect(self.retry_policy)
        loop = asyncio.get_running_loop()
        check = StageCheck(self._stage_check_interval(stage_check_interval), loop.time())
        while True:
            parser.new_connection()
            replay = False
            try:
                stream = await self._open_stream(url, creds, route.read_timeout)
                body: bytes | None
                headers: httpx.Headers | None
                try:
                    if is_error_status(stream.status_code):
                        body, headers = await self._error_body(stream), stream.headers
                    else:
                        body = headers = None
                        batch: LogBatch | None = None
                        while (chunk := await stream.read(check.wait(loop.time()))) != b"":
                            lines = False
                            async for batch in _steps(parser, chunk or b""):
                                check.saw(parser.events, loop.time())
                                if batch:
                                    lines = True
                                    reconnect.progressed()
                                    yield batch
                            # Not held while the next chunk is awaited (a second or more): objects alive
                            # that long reach the collector's oldest generation, and with thousands of
                            # streams they were among what made it walk the whole heap every few seconds.
                            batch = None
                            if not lines and check.due(loop.time()):
                                if await self._ended(job_id, ns):
                                    while chunk := await stream.read(0):  # what already arrived
                                        async for batch in _steps(parser, chunk):
                                            if batch:
                                                yield batch
                                    if check.leave_after_ended():
                                        return
                                    replay = True  # once: the rest of a stream running behind
                                    break
                                check.checked(loop.time())
                finally:
                    await stream.aclose()
                if replay:
                    continue
                if body is not None:
                    error = error_for_response(
                        stream.status_code, body, headers, action=route.action, namespace=ns, job_id=job_id
                    )
                    await asyncio.sleep(reconnect.after_http_error(error))
                    continue
            except (httpx.ReadTimeout, EventStreamTimeout):
                self.log.info("Log stream of job %s went silent; reconnecting.", job_id)
                continue
            except (httpx.TransportError, httpx.DecodingError, EventStreamError) as exc:
                _raise_if_tls(exc, route.action, creds.endpoint)
                delay = reconnect.after_cut(job_id, type(exc).__name__)
                self.log.info("Log stream of job %s was cut; reconnecting in %.1fs.", job_id, delay)
                await asyncio.sleep(delay)
                continue
            if await self._ended(job_id, ns):
                return
            check.checked(loop.time())
            await asyncio.sleep(reconnect.after_clean_end())

    def _stage_check_interval(self, given: float | None) -> float:
        return check_seconds(self.stage_check_interval if given is None else given, "stage_check_interval")

    async def _ended(self, job_id: str, namespace: str | None) -> bool:
        """The stage check of a followed stream: one inspect (a terminal job is kept for the caller)."""
        job = await self.inspect_job(job_id, namespace=namespace)
        if job.is_terminal:
            self.last_terminal_job = job
        return job.is_terminal

    async def _open_stream(
        self, url: str, creds: HfJobsCredentials, read_timeout: float
    ) -> EventStream | _HttpxEventStream:
        """:meth:`_open_event_stream`, its response head within :attr:`request_deadline` (past it, an
        :class:`EventStreamError`: a cut, retried within the policy)."""
        deadline = check_seconds(self.request_deadline, "request_deadline")
        try:
            async with asyncio.timeout(deadline):
                return await self._open_event_stream(url, creds, read_timeout)
        except TimeoutError:
            raise EventStreamError(f"no answer within the request deadline ({deadline:g} s)") from None

    async def _error_body(self, stream: EventStream | _HttpxEventStream) -> bytes:
        """A stream's error answer, within :attr:`request_deadline` (past it, an :class:`EventStreamError`)."""
        deadline = check_seconds(self.request_deadline, "request_deadline")
        try:
            async with asyncio.timeout(deadline):
                return await stream.read_all()
        except TimeoutError:
            raise EventStreamError(f"no whole answer within the request deadline ({deadline:g} s)") from None

    def _kept_connection(self, creds: HfJobsCredentials) -> KeptConnection:
        if self._kept is None:
            self._kept = KeptConnection(shared_ssl_context(self._tls_verify(creds)), self.request_timeout)
        return self._kept

    async def _kept_get(
        self, url: str, creds: HfJobsCredentials
    ) -> tuple[int, Mapping[str, str], bytes] | None:
        """A GET over the hook's kept-alive lean connection (stage polls: a fraction of httpx's CPU each;
        the check after a log stream reuses its connection); ``None``: a proxy applies or the connection
        failed, and httpx asks instead."""
        headers = {
            "User-Agent": user_agent(),
            "Authorization": f"Bearer {creds.token}",
            "Accept": "application/json",
        }
        return await self._kept_connection(creds).get(url, headers)

    async def _open_event_stream(
        self, url: str, creds: HfJobsCredentials, read_timeout: float = FOLLOW_READ_TIMEOUT
    ) -> EventStream | _HttpxEventStream:
        """One stream connection (logs, metrics): the lean transport of :mod:`.event_stream` over the hook's
        kept connection (a fraction of httpx's CPU per chunk), or httpx when a proxy applies. Read it, then
        ``aclose`` it."""
        headers = {"User-Agent": user_agent(), "Authorization": f"Bearer {creds.token}"}
        stream = await self._kept_connection(creds).open_stream(url, headers, read_timeout)
        if stream is not None:
            return stream
        client, _ = await self._http()
        timeout = httpx.Timeout(self.request_timeout, read=read_timeout)
        return await _HttpxEventStream.open(
            client.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=timeout)
        )


async def _steps(parser: LogStreamParser, chunk: bytes) -> AsyncIterator[LogBatch]:
    """The batches of ``chunk`` (:meth:`LogStreamParser.feed_steps`), the event loop let run between two and
    after the last of several: one read of a replay brings thousands of lines (256 KB and more), and the
    consumer shows each batch before asking for the next, so a step holds the loop for one bounded batch.
    One step (a live stream's usual chunk) costs no extra turn of the loop."""
    steps = 0
    for batch in parser.feed_steps(chunk):
        if steps:
            await asyncio.sleep(0)
        steps += 1
        yield batch
    if steps > 1:
        await asyncio.sleep(0)  # the loop read on meanwhile: the next read may return at once


class _HttpxEventStream:
    """An httpx streamed response with :class:`.EventStream`'s interface (used when a proxy applies)."""

    def __init__(
        self, opened: contextlib.AbstractAsyncContextManager[httpx.Response], response: httpx.Response
    ):
        self._opened = opened
        self.status_code = response.status_code
        self.headers = response.headers
        self._chunks = response.aiter_bytes()
        self._next: asyncio.Future[bytes] | None = None  # a read still waiting, kept across calls

    @classmethod
    async def open(cls, opened: contextlib.AbstractAsyncContextManager[httpx.Response]) -> _HttpxEventStream:
        return cls(opened, await opened.__aenter__())

    async def _read_next(self) -> bytes:
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            return b""

    async def read(self, within: float | None = None) -> bytes | None:
        """The next body bytes; ``b""`` at the end; ``None`` if none came within ``within`` seconds. The
        read goes on meanwhile (cancelling it would end httpx's stream) and the next call takes it up."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._read_next())
        if within is not None:
            await asyncio.wait((self._next,), timeout=within)
            if not self._next.done():
                return None
        next_read, self._next = self._next, None
        return await next_read

    async def read_all(self, limit: int | None = None) -> bytes:
        """As :meth:`.EventStream.read_all`: cut after ``limit + 1`` bytes (by default the status's
        :func:`.jobs.body_limit`)."""
        return await read_capped(self.read, body_limit(self.status_code) if limit is None else limit)

    async def aclose(self) -> None:
        if self._next is not None:
            self._next.cancel()
            with contextlib.suppress(BaseException):
                await self._next
            self._next = None
        await self._opened.__aexit__(None, None, None)
