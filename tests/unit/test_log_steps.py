"""A replay's big reads parsed in bounded steps (:meth:`LogStreamParser.feed_steps`): the same lines, cursor
and counts as one :meth:`~LogStreamParser.feed` of the whole, each step from at most ``max_bytes`` of input
and with at most ``max_lines`` lines; and the async hook lets its event loop run between two steps."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from airflow_provider_hfjobs.hooks.async_ import _steps
from airflow_provider_hfjobs.jobs import JOB_STARTED_MARKER
from airflow_provider_hfjobs.sse import MAX_LOG_LINE_CHARS, LogBatch, LogStreamParser


def hub(text: str, stamp: str = "2026-11-24T16:00:00.000Z") -> bytes:
    return (
        b"data: " + json.dumps({"data": text, "timestamp": stamp}, separators=(",", ":")).encode() + b"\n\n"
    )


def stream(kind: str, lines: int = 3000) -> bytes:
    body = [hub(f"{JOB_STARTED_MARKER} at 2026-11-24 16:00:00 =====")]
    for i in range(lines):
        if kind == "canonical":
            body.append(hub(f"line {i}"))
        elif kind == "mixed":  # escapes, CRLF line ends, comments, a long line, a second marker
            text = f'line {i} "quoted"' if i % 7 == 0 else f"line {i}"
            event = hub("x" * (MAX_LOG_LINE_CHARS + 10) if i == 1500 else text)
            if i % 11 == 0:
                event = event.replace(b"\n", b"\r\n")
            if i % 13 == 0:
                event = b": keep-alive\n\n" + event
            if i == 2000:
                event += hub(f"{JOB_STARTED_MARKER} again =====")
            body.append(event)
    return b"".join(body)


def whole(data: bytes, cursor: int = 0) -> tuple[list, int | None, int]:
    parser = LogStreamParser(cursor)
    parser.new_connection()
    return list(parser.feed(data)), parser.cursor, parser.events


@pytest.mark.parametrize("kind", ["canonical", "mixed"])
@pytest.mark.parametrize("cursor", [0, 1234])
def test_steps_give_what_one_feed_gives_each_step_bounded(kind: str, cursor: int) -> None:
    data = stream(kind)
    expected = whole(data, cursor)
    draw = random.Random(f"{kind}{cursor}")
    for max_bytes, max_lines in ((17, 1), (100, 3), (4096, 50), (32 * 1024, 500), (10**9, 10**9)):
        parser = LogStreamParser(cursor)
        parser.new_connection()
        got: list = []
        start = 0
        while start < len(data):  # the reads split anywhere, each read in steps
            end = min(len(data), start + draw.randint(1, 60_000))
            for batch in parser.feed_steps(data[start:end], max_bytes, max_lines):
                assert isinstance(batch, LogBatch) and len(batch) <= max_lines
                got += batch
            start = end
        assert (got, parser.cursor, parser.events) == expected, (max_bytes, max_lines)


def test_a_step_reads_at_most_max_bytes_cut_after_an_event_when_it_can() -> None:
    data = stream("canonical", 1000)
    parser = LogStreamParser()
    parser.new_connection()
    fed: list[bytes] = []
    feed = parser.feed
    parser.feed = lambda chunk: fed.append(chunk) or feed(chunk)  # type: ignore[method-assign]
    batches = list(parser.feed_steps(data, 1000, 10**9))
    assert b"".join(fed) == data and all(len(piece) <= 1000 for piece in fed)
    assert all(piece.endswith(b"\n\n") for piece in fed)  # whole events: the fast path for each
    assert len(batches) == len(fed) and sum(map(len, batches)) == 1000


def test_a_skipped_replay_still_comes_in_steps() -> None:
    """Lines before the cursor give no line, but one (empty) batch per step: the reader can yield."""
    data = stream("canonical", 1000)
    parser = LogStreamParser(cursor=5000)
    parser.new_connection()
    batches = list(parser.feed_steps(data, 2000))
    assert len(batches) >= len(data) // 2000 and not any(batches)


def test_split_keeps_the_lines_and_their_positions() -> None:
    batch = LogBatch(range(3, 10), [f"t{i}" for i in range(7)], [None] * 7)
    parts = batch.split(3)
    assert [len(part) for part in parts] == [3, 3, 1]
    assert [line for part in parts for line in part] == list(batch)
    assert [part.next_cursor for part in parts] == [6, 9, 10]
    assert batch.split(7) == [batch] and batch.split(7)[0] is batch


async def test_the_hook_lets_the_loop_run_between_two_steps_and_after_the_last() -> None:
    turns = [0]
    loop = asyncio.get_running_loop()
    running = [True]

    def tick() -> None:
        turns[0] += 1
        if running[0]:
            loop.call_soon(tick)

    loop.call_soon(tick)
    await asyncio.sleep(0)
    parser = LogStreamParser()
    parser.new_connection()
    seen = []
    async for batch in _steps(parser, stream("canonical", 2000)):  # 2001 events, more than 4 steps
        seen.append((turns[0], len(batch)))
    after = turns[0]
    small = [batch async for batch in _steps(parser, hub("one more"))]
    running[0] = False
    assert len(seen) > 4 and sum(count for _, count in seen) == 2000
    assert len({turn for turn, _ in seen}) == len(seen)  # a turn of the loop between any two
    assert after > seen[-1][0]  # and after the last of several
    assert [len(batch) for batch in small] == [1] and turns[0] == after  # one step: no extra turn
