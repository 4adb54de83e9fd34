"""Log following and metrics of :class:`~airflow_provider_hfjobs.hooks.sync.HfJobsHook`: the job's
event streams over ``requests``, reconnected and deduplicated, left once the job has ended.

A base class of the hook, so that the hook's module keeps to the connection, the transport and the request
routes; it uses the hook's ``session``, ``endpoint``, ``request_deadline``, ``stage_check_interval``,
``inspect_job`` and ``_resolved`` (declared below for type checkers) and the base hook's ``retry_policy``
and ``log``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_hfjobs.deadlines import StageCheck, check_seconds
from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.hooks.credentials import _HfJobsHookBase, _raise_if_tls
from airflow_provider_hfjobs.hooks.sync_transport import (
    ChunkReader,
    Deadline,
    TooSlow,
    is_read_timeout,
    read_body,
)
from airflow_provider_hfjobs.jobs import (
    FOLLOW_READ_TIMEOUT,
    JobInfo,
    Route,
    body_limit,
    error_for_response,
    is_error_status,
    job_logs_route,
    job_metrics_route,
)
from airflow_provider_hfjobs.sse import (
    LogBatch,
    LogLine,
    LogReconnect,
    LogStreamParser,
    MetricsStreamParser,
    first_after,
    replay_end,
)

if TYPE_CHECKING:
    import requests  # imported where used, as in the hook's module

R = TypeVar("R", bound=Route)

#: Read timeout of a non-followed log read: the replay arrives at once, then the stream idles.
NO_FOLLOW_READ_TIMEOUT = 5.0
#: Seconds to wait for a stream's connection and response head.
STREAM_CONNECT_TIMEOUT = 10.0


class _SyncStreams(_HfJobsHookBase):
    """The hook's stream methods (see the module's docstring)."""

    if TYPE_CHECKING:  # what these methods use of the hook (HfJobsHook defines them)
        request_deadline: float
        stage_check_interval: float

        @property
        def endpoint(self) -> str: ...
        @property
        def session(self) -> requests.Session: ...
        @property
        def _verify(self) -> str | bool: ...
        def _auth(self) -> dict[str, str]: ...
        def _resolved(self, route: R) -> R: ...
        def inspect_job(self, job_id: str, *, namespace: str | None = None) -> JobInfo: ...

    # ------------------------------------------------------------------------------------------------ logs
    def fetch_job_logs(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        follow: bool = False,
        tail: int | None = None,
        stage_check_interval: float | None = None,
    ) -> Iterator[str]:
        """The job's output lines, as ``huggingface_hub.fetch_job_logs`` yields them, but each line exactly
        once even when the stream is cut: a cut is always followed by a reconnect and a deduplicated replay,
        even if the job has meanwhile finished (the official 2.4 client stops there and loses the rest).
        ``stage_check_interval``: see :meth:`iter_job_log_batches`."""
        for batch in self.iter_job_log_batches(
            job_id, namespace=namespace, follow=follow, tail=tail, stage_check_interval=stage_check_interval
        ):
            yield from batch.texts

    def iter_job_log_lines(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        follow: bool = True,
        tail: int | None = None,
        cursor: int = 0,
        stage_check_interval: float | None = None,
    ) -> Iterator[LogLine]:
        """Log lines with their replay position; start at ``cursor`` to resume where another reader stopped.
        See :meth:`iter_job_log_batches`."""
        for batch in self.iter_job_log_batches(
            job_id, namespace=namespace, follow=follow, tail=tail, cursor=cursor,
            stage_check_interval=stage_check_interval,
        ):  # fmt: skip
            yield from batch

    def iter_job_log_batches(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        follow: bool = True,
        tail: int | None = None,
        cursor: int = 0,
        stage_check_interval: float | None = None,
    ) -> Iterator[LogBatch]:
        """The log as it arrives, a batch of lines per chunk (the fast way to read a busy log).

        With ``follow``, reads until the job is terminal: a stream that ends cleanly while the job is not
        terminal is re-opened after a short pause; a stream that is cut is re-opened at once (within the
        retry policy), whatever the stage. And once no new line has arrived for ``stage_check_interval``
        seconds (default: the hook's :attr:`stage_check_interval`, 10 s), the job's stage is checked: a
        terminal job ends the stream, after what was already received, even if the server keeps it open.
        Without ``follow``, returns once the current log is drained (no new line for 5 s).
        """
        import requests

        route = job_logs_route(job_id, namespace)
        if tail is not None and (not isinstance(tail, int) or isinstance(tail, bool) or tail < 0):
            raise HfJobsInputError(f"tail must be a non-negative number of lines; got {tail!r}.")
        interval = self._stage_check_interval(stage_check_interval) if follow else NO_FOLLOW_READ_TIMEOUT
        route = self._resolved(route)
        ns, url = route.namespace, f"{self.endpoint}{route.path}"
        parser = LogStreamParser(cursor)
        reconnect = LogReconnect(self.retry_policy)
        check = StageCheck(interval, time.monotonic())
        use_tail = tail is not None
        read_timeout = FOLLOW_READ_TIMEOUT if follow else NO_FOLLOW_READ_TIMEOUT
        while True:
            parser.new_connection(tail=use_tail)
            params = {"tail": tail} if use_tail else None
            use_tail = False
            replay = False
            try:
                with self._open_stream(url, params, read_timeout) as response:
                    if is_error_status(response.status_code):
                        error = error_for_response(
                            response.status_code, self._error_body(response), response.headers,
                            action=route.action, namespace=ns, job_id=job_id,
                        )  # fmt: skip
                        time.sleep(reconnect.after_http_error(error))
                        continue
                    cutoff = replay_end(response.headers.get("Date")) if not follow else None
                    with ChunkReader(response) as reader:
                        while (chunk := reader.get(check.wait(time.monotonic()))) != b"":
                            batch = parser.feed(chunk) if chunk else None
                            check.saw(parser.events, time.monotonic())
                            if batch:
                                reconnect.progressed()
                                if cutoff:  # no-follow: stop at the first line logged after the replay
                                    late = first_after(batch.timestamps, cutoff)
                                    if late is not None:
                                        if late:
                                            yield LogBatch(
                                                batch.indexes[:late],
                                                batch.texts[:late],
                                                batch.timestamps[:late],
                                            )
                                        return
                                yield batch
                            elif check.due(time.monotonic()):
                                if not follow:
                                    return  # the replay is drained: nothing new, only keep-alives or silence
                                if self._ended(job_id, ns):
                                    for rest in reader.buffered():  # what already arrived
                                        if batch := parser.feed(rest):
                                            yield batch
                                    if check.leave_after_ended():
                                        return
                                    replay = True  # once: the rest of a stream running behind
                                    break
                                check.checked(time.monotonic())
                if replay:
                    continue
            except TooSlow:
                delay = reconnect.after_cut(job_id, "no answer within the request deadline")
                time.sleep(delay)
                continue
            except requests.RequestException as exc:
                _raise_if_tls(exc, route.action, self.endpoint)
                if is_read_timeout(exc):
                    if not follow:
                        return  # the replay is drained; the stream only idles now
                    # No byte, not even a keep-alive, for minutes: the connection is dead. Re-open it.
                    self.log.info("Log stream of job %s went silent; reconnecting.", job_id)
                    continue
                delay = reconnect.after_cut(job_id, type(exc).__name__)
                self.log.info("Log stream of job %s was cut; reconnecting in %.1fs.", job_id, delay)
                time.sleep(delay)
                continue
            if not follow or self._ended(job_id, ns):
                return
            check.checked(time.monotonic())
            time.sleep(reconnect.after_clean_end())

    def _stage_check_interval(self, given: float | None) -> float:
        return check_seconds(self.stage_check_interval if given is None else given, "stage_check_interval")

    def _ended(self, job_id: str, namespace: str | None) -> bool:
        """The stage check of a followed stream: one inspect."""
        return self.inspect_job(job_id, namespace=namespace).is_terminal

    @contextlib.contextmanager
    def _open_stream(self, url: str, params: Any, read_timeout: float) -> Iterator[requests.Response]:
        """A stream's response, its head read within :attr:`request_deadline` (else :class:`TooSlow`);
        closed on the way out."""
        deadline = check_seconds(self.request_deadline, "request_deadline")
        with Deadline(deadline) as watch:
            try:
                response = self.session.get(
                    url, params=params, headers={**self._auth(), "Accept": "text/event-stream"}, stream=True,
                    allow_redirects=False,
                    timeout=(min(STREAM_CONNECT_TIMEOUT, deadline), read_timeout), verify=self._verify,
                )  # fmt: skip
            except Exception:
                if watch.expired:
                    raise TooSlow from None
                raise
        with response:
            yield response

    def _error_body(self, response: requests.Response) -> bytes:
        """A stream's error answer, read whole within :func:`.jobs.body_limit` and :attr:`request_deadline`."""
        with Deadline(check_seconds(self.request_deadline, "request_deadline")) as watch:
            watch.attach_response(response)
            try:
                return read_body(response, body_limit(response.status_code))
            except Exception:
                if watch.expired:
                    raise TooSlow from None
                raise

    # --------------------------------------------------------------------------------------------- metrics
    def fetch_job_metrics(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        follow: bool = False,
        stage_check_interval: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The job's resource samples (CPU, memory, network, GPUs: the server's dicts, one a second), as
        ``huggingface_hub.fetch_job_metrics``: without ``follow`` the current one only; with it, every
        one until the job is terminal, reconnecting when the stream ends, goes silent or is cut (the
        stream has no history: nothing is replayed), and checking the stage once no sample came for
        ``stage_check_interval`` seconds (as for logs). A finished job answers 406 (formerly 500): the
        end, quietly."""
        import requests

        route = self._resolved(job_metrics_route(job_id, namespace))
        url = f"{self.endpoint}{route.path}"
        reconnect = LogReconnect(self.retry_policy, what="metrics")
        check = StageCheck(
            self._stage_check_interval(stage_check_interval) if follow else route.read_timeout,
            time.monotonic(),
        )
        seen = 0
        while True:
            parser = MetricsStreamParser()
            try:
                with self._open_stream(url, None, route.read_timeout) as response:
                    status = response.status_code
                    if is_error_status(status):
                        content = self._error_body(response)  # read whole: the connection is kept
                        if status not in route.ends_on:
                            error = error_for_response(
                                status, content, response.headers, action=route.action,
                                namespace=route.namespace, job_id=job_id,
                            )  # fmt: skip
                            time.sleep(reconnect.after_http_error(error))
                            continue
                    else:
                        with ChunkReader(response) as reader:
                            while (chunk := reader.get(check.wait(time.monotonic()))) != b"":
                                samples = parser.feed(chunk) if chunk else ()
                                seen += len(samples)
                                check.saw(seen, time.monotonic())
                                for sample in samples:
                                    reconnect.progressed()
                                    yield sample
                                    if not follow:
                                        return
                                if not samples and check.due(time.monotonic()):
                                    if not follow or self._ended(job_id, route.namespace):
                                        return  # no sample for a while: none (yet), or the job ended
                                    check.checked(time.monotonic())
            except TooSlow:
                time.sleep(reconnect.after_cut(job_id, "no answer within the request deadline"))
                continue
            except requests.RequestException as exc:
                _raise_if_tls(exc, route.action, self.endpoint)
                if not is_read_timeout(exc):  # a silent stream is left to the stage check below
                    time.sleep(reconnect.after_cut(job_id, type(exc).__name__))
                    continue
            if not follow or self._ended(job_id, route.namespace):
                return
            check.checked(time.monotonic())
            time.sleep(reconnect.after_clean_end())
