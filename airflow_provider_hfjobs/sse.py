"""The job event streams (``GET /api/jobs/{ns}/{id}/logs`` and ``/metrics``), free of I/O.

Bytes in and lines (or metric samples) out, so that any transport can drive them (requests, httpx, a
test):

- :class:`SSEDecoder` — Server-Sent Events per the WHATWG rules the HF server uses: ``data:`` fields,
  ``:`` comments (the 30 s keep-alive), LF/CR/CRLF line ends split anywhere across chunks, an event
  dispatched at the blank line. An event cut off by a dropped connection is never dispatched.
- :class:`LogStreamParser` — job log lines from those events, each exactly once across reconnects. The
  server replays the whole log on every connection, so the parser counts every log event (the
  ``===== Job started`` marker included, as ``huggingface_hub`` does) and skips that many on the next one.
  The count is the *log cursor*: a plain int that can travel in trigger kwargs to resume elsewhere.
- :class:`MetricsStreamParser` — the samples of the metrics stream (``event: metric`` + ``data: {...}``,
  one a second, no history), as the dicts ``huggingface_hub`` yields.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, overload

from airflow_provider_hfjobs.exceptions import HfJobsAPIError, HfJobsConnectionError
from airflow_provider_hfjobs.jobs import (
    JOB_STARTED_MARKER,
    RetryAttempts,
    RetryPolicy,
    loads_json,
    parse_timestamp,
)

#: Longest log line handed on; longer lines are cut (Airflow 3 drops multi-MB lines: apache/airflow#66158).
MAX_LOG_LINE_CHARS = 16_384
#: Longest raw SSE line kept in memory; the rest of a longer line is discarded as it arrives (a server
#: sending a line that never ends costs at most this).
MAX_SSE_LINE_BYTES = 1 << 20
#: Most ``data:`` bytes kept for one event, over all its lines; the rest of a longer event is discarded as
#: it arrives (a server sending ``data:`` lines and never the blank line that ends the event costs at most
#: this). A cut event is still dispatched and counted: the cut JSON becomes a (cut) line of raw text.
MAX_SSE_EVENT_BYTES = 1 << 20
#: A reader yielding to its event loop between :meth:`LogStreamParser.feed_steps` holds it, per step, for
#: the parse of at most this many bytes and the display of at most :data:`STEP_LINES` lines (about 10 ms in a
#: trigger runner: its logging costs some 20 us a line). A replay arrives in reads of 256 KB and more.
STEP_BYTES = 32 * 1024
STEP_LINES = 500
_EOL = re.compile(rb"\r\n|\r|\n")
# The Hub's own event shape, ``data: {"data":"…","timestamp":"…"}`` then a blank line (compact JSON, data
# first), is split by a handful of C-level scans per chunk instead of a decode and a json.loads per line.
_CANONICAL_PREFIX = b'data: {"data":"'
_CANONICAL_NEXT = '"}\n\ndata: {"data":"'
_CANONICAL_MID = '","timestamp":"'


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched Server-Sent Event."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Incremental SSE decoder: ``feed(bytes)`` returns the events completed by that chunk."""

    __slots__ = ("_buffer", "_data", "_event", "_id", "_overflow", "_size", "_skip_lf")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._size = 0  # data bytes of the pending event, kept or not
        self._event = ""
        self._id: str | None = None
        self._skip_lf = False
        self._overflow = False

    @property
    def idle(self) -> bool:
        """Between events: nothing pending but, at most, the start of a line."""
        return not (self._data or self._event or self._skip_lf or self._overflow)

    def take_buffer(self) -> bytes:
        """Hand over the unfinished line (only when :attr:`idle`)."""
        buffer, self._buffer = self._buffer, b""
        return buffer

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        if not chunk:
            return events
        if self._skip_lf:
            # The previous chunk ended in CR: a LF opening this one belongs to that same CRLF.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._overflow:
            # Inside an over-long line: drop bytes until it ends, then handle the kept prefix.
            end = _EOL.search(chunk)
            if end is None:
                return events
            self._overflow = False
            if (event := self._line(self._buffer)) is not None:
                events.append(event)
            self._buffer = b""
            if end.group() == b"\r" and end.end() == len(chunk):
                self._skip_lf = True
            chunk = chunk[end.end() :]
        buffer = self._buffer + chunk if self._buffer else chunk
        lines = buffer.splitlines(keepends=True)
        tail = lines[-1] if lines else b""
        if tail and tail[-1:] not in (b"\n", b"\r"):
            lines.pop()
            if len(tail) > MAX_SSE_LINE_BYTES:
                tail = tail[:MAX_SSE_LINE_BYTES]
                self._overflow = True
            self._buffer = tail
        else:
            self._buffer = b""
            if tail.endswith(b"\r"):
                self._skip_lf = True
        for raw in lines:
            if (event := self._line(raw.rstrip(b"\r\n"))) is not None:
                events.append(event)
        return events

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent("\n".join(self._data), self._event or "message", self._id)
            self._data = []
            self._size = 0
            self._event = ""
            return event
        if line[:1] == b":":
            return None  # a comment: the server's keep-alive
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            room = MAX_SSE_EVENT_BYTES - self._size
            self._size += len(value) + 1
            if room > 0:
                self._data.append((value if len(value) <= room else value[:room]).decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\x00" not in value:
            self._id = value.decode("utf-8", "replace")
        return None


class LogLine(NamedTuple):
    """One line of the job's output. ``index`` is its position in the server's replay (markers included)."""

    index: int  # type: ignore[assignment]  # the field shadows tuple.index, as it always has
    text: str
    timestamp: str | None


class LogBatch(Sequence[LogLine]):
    """The lines one chunk completed, column-wise: no object per line unless one is asked for.

    Hot readers use :attr:`texts` and :attr:`next_cursor`; iterating gives :class:`LogLine` objects.
    """

    __slots__ = ("indexes", "texts", "timestamps")

    def __init__(
        self,
        indexes: Sequence[int] = (),
        texts: list[str] | None = None,
        timestamps: Sequence[str | None] = (),
    ) -> None:
        self.indexes = indexes
        self.texts = texts if texts is not None else []
        self.timestamps = timestamps

    @property
    def next_cursor(self) -> int | None:
        """The cursor after this batch's last line (``None`` for an empty batch)."""
        return self.indexes[-1] + 1 if self.texts else None

    def __len__(self) -> int:
        return len(self.texts)

    @overload
    def __getitem__(self, item: int) -> LogLine: ...
    @overload
    def __getitem__(self, item: slice) -> list[LogLine]: ...
    def __getitem__(self, item: int | slice) -> LogLine | list[LogLine]:
        if isinstance(item, slice):
            return list(self)[item]
        return LogLine(self.indexes[item], self.texts[item], self.timestamps[item])

    def __iter__(self) -> Iterator[LogLine]:
        return map(LogLine, self.indexes, self.texts, self.timestamps)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LogBatch | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LogBatch({list(self)!r})"

    def split(self, size: int) -> list[LogBatch]:
        """Consecutive batches of at most ``size`` lines (this one alone if it has no more)."""
        if len(self.texts) <= size:
            return [self]
        return [
            LogBatch(self.indexes[i : i + size], self.texts[i : i + size], self.timestamps[i : i + size])
            for i in range(0, len(self.texts), size)
        ]


def _split_canonical(block: bytes) -> tuple[list[str], list[str], bool] | None:
    """Texts and timestamps of a run of events in the Hub's shape (no escapes, no CR, no other fields),
    found with a few C-level scans, and whether a ``Job started`` marker may be among them; ``None`` if the
    run is anything else (then the full decoder reads it)."""
    if (
        not (block.startswith(_CANONICAL_PREFIX) and block.endswith(b'"}'))
        or b"\\" in block
        or b"\r" in block
    ):
        return None
    events = block.count(b"\n\n") + 1
    # Eight quotes per event and one LF pair between events: nothing else can hide in the run.
    if block.count(b'"') != 8 * events or block.count(b"\n") != 2 * (events - 1):
        return None
    decoded = block[15:-2].decode("utf-8", "replace")
    parts = decoded.replace(_CANONICAL_NEXT, _CANONICAL_MID).split(_CANONICAL_MID)
    if len(parts) != 2 * events:
        return None
    return parts[0::2], parts[1::2], JOB_STARTED_MARKER in decoded


def _truncate(text: str) -> str:
    if len(text) <= MAX_LOG_LINE_CHARS:
        return text
    return f"{text[:MAX_LOG_LINE_CHARS]} … [line cut: {len(text) - MAX_LOG_LINE_CHARS} more characters]"


class LogStreamParser:
    """Job log lines from successive ``/logs`` connections, each line exactly once.

    ``cursor`` is how many log events (markers included) have been consumed from the full replay. Start a
    parser with a cursor from an earlier one to resume. Call :meth:`new_connection` before feeding each
    connection's bytes; ``tail=True`` says that connection asked ``?tail=N`` (whose start in the full log
    is unknown), after which the next full replay is resumed at the last event seen, as the official
    client does.
    """

    def __init__(self, cursor: int = 0) -> None:
        if cursor < 0:
            raise ValueError("cursor must be >= 0")
        self.cursor: int | None = cursor
        self._decoder = SSEDecoder()
        self._seen = 0
        #: Log events read over all connections, replayed ones and markers included: a follower's sign
        #: that the stream still moves, even while a replay brings nothing new.
        self.events = 0
        self._last: tuple[str, str | None] | None = None
        self._resume_after: tuple[str, str | None] | None = None

    def new_connection(self, *, tail: bool = False) -> None:
        """Start over on a fresh connection (the server replays from the start, or from ``tail``)."""
        self._decoder = SSEDecoder()
        self._seen = 0
        if tail:
            self.cursor = None
        elif self.cursor is None:
            self._resume_after = self._last

    def feed(self, chunk: bytes) -> LogBatch:
        """New job lines completed by ``chunk`` (replayed ones skipped, markers dropped)."""
        if self.cursor is not None and self._decoder.idle:
            data = self._decoder.take_buffer() + chunk
            end = data.rfind(b"\n\n")
            split = _split_canonical(data[:end]) if end > 0 else None
            if split is not None:
                batch = self._canonical(*split)
                rest = self._decoder.feed(data[end + 2 :])  # a partial event; CR line ends may complete one
                return self._decoded(rest, batch) if rest else batch
            chunk = data
        return self._decoded(self._decoder.feed(chunk), LogBatch([], [], []))

    def feed_steps(
        self, chunk: bytes, max_bytes: int = STEP_BYTES, max_lines: int = STEP_LINES
    ) -> Iterator[LogBatch]:
        """:meth:`feed` in bounded steps, for a reader that yields to its event loop between two: ``chunk``
        is parsed at most ``max_bytes`` at a time (cut after an event's end when one is in the piece), and
        its lines come in batches of at most ``max_lines``. A piece that completes no new line (a replay
        being skipped, keep-alives) still gives one empty batch: every step is a batch."""
        start, size = 0, len(chunk)
        while start < size:
            end = size
            if size - start > max_bytes:
                end = start + max_bytes
                boundary = chunk.rfind(b"\n\n", start, end)
                if boundary > start:
                    end = boundary + 2  # whole events: the next piece can take the fast path
            batch = self.feed(chunk[start:end] if start or end < size else chunk)
            start = end
            yield from batch.split(max_lines)

    def _canonical(self, texts: list[str], stamps: list[str], has_marker: bool) -> LogBatch:
        """Cursor bookkeeping for a whole run at once: skip what was delivered, drop markers, cut long lines."""
        assert self.cursor is not None
        start, count = self._seen, len(texts)
        self._seen += count
        self.events += count
        skip = max(0, self.cursor - start)
        if skip >= count:
            return LogBatch([], [], [])
        self._last = (texts[-1], stamps[-1])
        self.cursor = start + count
        indexes: Sequence[int] = range(start + skip, start + count)
        texts, stamps = texts[skip:], stamps[skip:]
        if has_marker:
            keep = [i for i, text in enumerate(texts) if not text.startswith(JOB_STARTED_MARKER)]
            indexes = [indexes[i] for i in keep]
            texts, stamps = [texts[i] for i in keep], [stamps[i] for i in keep]
        if texts and max(map(len, texts)) > MAX_LOG_LINE_CHARS:
            texts = [_truncate(text) for text in texts]
        return LogBatch(indexes, texts, stamps)

    def _decoded(self, events: list[SSEEvent], batch: LogBatch) -> LogBatch:
        """Append the lines of fully decoded events (the general path) to ``batch``."""
        indexes, texts, stamps = list(batch.indexes), batch.texts, list(batch.timestamps)
        for event in events:
            line = self._event(event)
            if line is not None:
                indexes.append(line.index)
                texts.append(line.text)
                stamps.append(line.timestamp)
        return LogBatch(indexes, texts, stamps)

    def _event(self, event: SSEEvent) -> LogLine | None:
        data = event.data
        if event.event != "message" or not data.startswith("{"):
            return None
        try:
            payload = loads_json(data)
        except ValueError:  # cut by the decoder's bound, or nested too deeply: a raw line, still counted
            payload = {"data": data, "timestamp": None}
        if not isinstance(payload, dict):
            return None
        text = payload.get("data")
        text = "" if text is None else str(text)
        timestamp = payload.get("timestamp")
        if not isinstance(timestamp, str):
            timestamp = None  # compared with other timestamps on a resume: never a number or a list
        position = self._seen
        self._seen += 1
        self.events += 1
        if self.cursor is not None:
            if position < self.cursor:
                return None  # already delivered on an earlier connection
            self.cursor = position + 1
        elif self._resume_after is not None:
            if (text, timestamp) == self._resume_after:
                self._resume_after = None
                self.cursor = position + 1
                return None
            if timestamp is None or self._resume_after[1] is None or timestamp <= self._resume_after[1]:
                return None
            # The last tail event is not in this replay: resume at the first later one.
            self._resume_after = None
            self.cursor = position + 1
        self._last = (text, timestamp)
        if text.startswith(JOB_STARTED_MARKER):
            return None
        return LogLine(position, _truncate(text), timestamp)


class MetricsStreamParser:
    """Samples from one ``/metrics`` connection: each ``data:`` JSON object of an ``event: metric`` (or
    unnamed) event, as the raw dict the server sent (snake_case keys: ``cpu_usage_pct``, ``gpus`` ...).

    The stream has no history, so there is nothing to skip after a reconnect; an event that is not a JSON
    object (or another named event) is passed over, never raised: a sample is informational."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = SSEDecoder()

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        samples = []
        for event in self._decoder.feed(chunk):
            if event.event not in ("metric", "message") or not event.data.startswith("{"):
                continue
            try:
                sample = loads_json(event.data)
            except ValueError:  # not JSON, or nested too deeply to hand on safely
                continue
            if isinstance(sample, dict):
                samples.append(sample)
        return samples


def replay_end(date_header: str | None) -> Any:
    """No-follow cutoff, as the official client: events later than the response ``Date`` + 1 s are new."""
    if not date_header:
        return None
    try:
        moment = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return moment + timedelta(seconds=1)


def _after(timestamp: str | None, moment: Any) -> bool:
    if not timestamp:
        return False
    try:
        parsed = parse_timestamp(timestamp)
    except ValueError:
        return False
    return parsed is not None and parsed > moment


def first_after(timestamps: Sequence[str | None], moment: Any) -> int | None:
    """Position of the first timestamp later than ``moment``, or ``None``."""
    return next((i for i, stamp in enumerate(timestamps) if _after(stamp, moment)), None)


class LogReconnect:
    """When to re-open a followed stream (logs, or ``what="metrics"``) and how long to wait first: one rule
    for sync and async readers.

    - lines arrived: the failure count resets;
    - the stream was cut (connection reset, incomplete body): re-open within the retry policy, whatever
      the job's stage, since only a replay can deliver what the cut lost;
    - an HTTP error: retry it if the policy allows, else raise it;
    - the stream ended cleanly: ask for the job's stage; if it is not terminal, re-open after a pause
      that grows from ``min_pause`` to ``max_pause`` (the stage lags the last line by about a second).
    """

    def __init__(
        self,
        retry_policy: RetryPolicy,
        *,
        min_pause: float = 1.0,
        max_pause: float = 10.0,
        what: str = "logs",
    ) -> None:
        self.attempts = RetryAttempts(retry_policy)
        self.what = what
        self.min_pause = min_pause
        self.max_pause = max_pause
        self._pause = min_pause

    def progressed(self) -> None:
        self.attempts.reset()
        self._pause = self.min_pause

    def after_cut(self, job_id: str, problem: str) -> float:
        """Seconds to wait before re-opening a cut stream; raises once the policy gives up."""
        failure = HfJobsConnectionError(
            f"Could not read the {self.what} of job {job_id}: the stream kept failing ({problem})."
        )
        return self.attempts.after(failure)

    def after_http_error(self, error: HfJobsAPIError) -> float:
        """Seconds to wait before retrying a refused stream request; raises ``error`` if not retryable."""
        return self.attempts.after(error, status_code=error.status_code)

    def after_clean_end(self) -> float:
        """Pause before re-opening a stream that ended while the job was not terminal."""
        pause = self._pause
        self._pause = min(self.max_pause, self._pause * 2)
        return pause
