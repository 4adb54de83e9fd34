"""When a hook stops waiting, free of I/O: one rule for the sync and async hooks.

A read timeout bounds one read, never a whole answer or a whole stream, so two waits had no end:

- an answer trickled a byte at a time: each read is quick, the answer never done. Every non-streaming
  request (inspect, create, cancel, list ...) therefore has an overall :data:`REQUEST_DEADLINE`, from
  sending it to the last byte of its body; past it the attempt fails as a transport error
  (:func:`too_slow`), and the retry policy applies as for a timeout;
- a log (or metrics) stream that stays open after the job ended, sending keep-alives or nothing: the
  follower would wait for a line that never comes. :class:`StageCheck` says when a follower that got no
  new line for a while asks for the job's stage, so that a finished job ends the stream within that bound.
"""

from __future__ import annotations

import math

from airflow_provider_hfjobs.exceptions import HfJobsConnectionError, HfJobsInputError

#: Seconds one non-streaming request may take, from sending it to the last byte of its answer (a hook's
#: ``request_deadline``): a healthy Jobs API answers in well under a second.
REQUEST_DEADLINE = 60.0
#: Seconds a followed stream may go without a new line (or metrics sample) before the job's stage is
#: checked (a hook's ``stage_check_interval``): as often as a trigger polls a job it does not stream.
STAGE_CHECK_INTERVAL = 10.0


def check_seconds(value: object, name: str) -> float:
    """A positive, finite number of seconds, else :class:`HfJobsInputError` naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise HfJobsInputError(f"{name} must be a positive number of seconds; got {value!r}.")
    return float(value)


def too_slow(action: str, deadline: float) -> HfJobsConnectionError:
    """The failure of an attempt that outlived its deadline: retryable, like any transport error."""
    return HfJobsConnectionError(
        f"Could not {action}: the answer took longer than {deadline:g} s (the server, or a proxy on the way, "
        "sends it too slowly), so it was abandoned."
    )


class StageCheck:
    """When a follower that sees the stream bring nothing should ask for the job's stage.

    The follower waits for the stream's next bytes at most :meth:`wait` seconds, and tells :meth:`saw`
    the running count of events (log lines, replayed ones included, or samples) it has read. Once that
    count has not moved for ``interval`` seconds (nor since the last check), :meth:`due` says so and the
    follower checks the stage (one inspect): a terminal job ends the stream, after what was already
    received. Keep-alives and partial events are no progress. Times are any monotonic clock's.
    """

    __slots__ = ("_count", "_replayed", "_since", "interval")

    def __init__(self, interval: float, now: float) -> None:
        self.interval = check_seconds(interval, "stage_check_interval")
        self._since = now
        self._count = 0
        self._replayed = False

    def wait(self, now: float) -> float:
        """Seconds the next read may wait for bytes before a check is due (0: due now)."""
        return max(0.0, self._since + self.interval - now)

    def saw(self, count: int, now: float) -> None:
        """The stream's running event count: a change restarts the interval."""
        if count != self._count:
            self._count, self._since = count, now

    def due(self, now: float) -> bool:
        return now - self._since >= self.interval

    def leave_after_ended(self) -> bool:
        """The check found the job terminal while its stream stayed open: leave now (``True``), or first
        (once) read the log again from where this reader is (``False``). A stream left open can also be a
        stream running behind, with lines still on their way: the server replays a finished job's whole
        log and the reader's parser skips what it has shown, so nothing is lost and nothing repeated."""
        if self._replayed:
            return True
        self._replayed = True
        return False

    def checked(self, now: float) -> None:
        """The stage was checked and the job is not terminal: the next check is an interval away."""
        self._since = now
