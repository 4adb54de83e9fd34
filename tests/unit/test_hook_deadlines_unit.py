"""The sans-IO half of "never hang, never die silently" (issue 19, item 5), without a network: when a
follower checks the stage, the request deadline's error, JSON nesting, and the parsing of malformed answer
parts (Retry-After, Link, log events, error bodies, settings)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_hfjobs.deadlines import (
    REQUEST_DEADLINE,
    STAGE_CHECK_INTERVAL,
    StageCheck,
    check_seconds,
    too_slow,
)
from airflow_provider_hfjobs.exceptions import (
    HfJobsAPIError,
    HfJobsConnectionError,
    HfJobsInputError,
    HfJobsRateLimitError,
    HfJobsServerError,
)
from airflow_provider_hfjobs.jobs import (
    MAX_JSON_DEPTH,
    MAX_SERVER_TEXT_CHARS,
    JSONTooDeepError,
    RetryAttempts,
    RetryPolicy,
    check_http_credentials,
    error_for_response,
    json_answer,
    loads_json,
    next_page_url,
    retry_after_seconds,
    server_error_text,
)
from airflow_provider_hfjobs.sse import LogStreamParser, MetricsStreamParser


def nested(depth: int, leaf: str = '"x"') -> str:
    """A JSON list ``depth`` levels deep."""
    return "[" * depth + leaf + "]" * depth


# --------------------------------------------------------------------------------------- stage check
def test_a_stage_check_is_due_after_an_interval_without_progress() -> None:
    check = StageCheck(10.0, now=100.0)
    assert (check.wait(100.0), check.due(100.0)) == (10.0, False)
    assert (check.wait(104.0), check.due(109.9)) == (6.0, False)
    assert check.due(110.0) and check.wait(111.0) == 0.0


def test_events_restart_the_interval_and_keep_alives_do_not() -> None:
    check = StageCheck(10.0, now=0.0)
    check.saw(3, now=8.0)  # three events (new or replayed lines): progress
    assert not check.due(15.0) and check.wait(15.0) == 3.0
    check.saw(3, now=17.0)  # a keep-alive: the count did not move
    assert check.due(18.0)
    check.checked(18.0)  # the job was not terminal: a whole interval to the next check
    assert not check.due(27.9) and check.due(28.0)


def test_a_replay_that_brings_nothing_new_is_still_progress() -> None:
    """After a reconnect the server replays lines already delivered: no new line for a while, yet the
    stream moves, and leaving on a stage check then would lose the lines still to come."""
    parser = LogStreamParser(cursor=2)
    parser.new_connection()
    check = StageCheck(1.0, now=0.0)
    batch = parser.feed(b'data: {"data":"a","timestamp":null}\n\ndata: {"data":"b","timestamp":null}\n\n')
    check.saw(parser.events, now=5.0)
    assert not batch and parser.events == 2 and not check.due(5.5)


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "10", None])
def test_intervals_and_deadlines_are_positive_finite_seconds(value: object) -> None:
    with pytest.raises(HfJobsInputError, match="stage_check_interval must be a positive number of seconds"):
        StageCheck(value, now=0.0)  # type: ignore[arg-type]
    with pytest.raises(HfJobsInputError, match="request_deadline must be"):
        check_seconds(value, "request_deadline")


def test_the_defaults() -> None:
    assert (REQUEST_DEADLINE, STAGE_CHECK_INTERVAL) == (60.0, 10.0)
    assert check_seconds(2, "x") == 2.0


def test_a_request_past_its_deadline_is_a_retryable_transport_error() -> None:
    error = too_slow("inspect job j", 60.0)
    assert isinstance(error, HfJobsConnectionError) and not isinstance(error, HfJobsAPIError)
    assert str(error).startswith("Could not inspect job j: the answer took longer than 60 s")
    attempts = RetryAttempts(RetryPolicy(max_retries=1, base_delay=0.01))
    assert attempts.after(error) >= 0  # retried as a timeout is
    with pytest.raises(HfJobsConnectionError):
        attempts.after(error)


# ---------------------------------------------------------------------------------------- JSON depth
def test_json_up_to_the_depth_limit_is_read() -> None:
    assert loads_json(nested(MAX_JSON_DEPTH)) == json.loads(nested(MAX_JSON_DEPTH))
    assert loads_json(json.dumps({"a": "[" * 1000})) == {"a": "[" * 1000}  # brackets in a string: flat
    assert loads_json(b"[" + b"[1]," * 1000 + b"[2]]")[-1] == [2]  # many brackets, two levels


@pytest.mark.parametrize("text", [nested(MAX_JSON_DEPTH + 1), nested(900), "[" * 100_000, nested(100_000)])
def test_json_nested_deeper_is_refused_without_a_recursion_error(text: str) -> None:
    with pytest.raises(JSONTooDeepError) as info:
        loads_json(text)
    assert isinstance(info.value, ValueError)
    if text == nested(MAX_JSON_DEPTH + 1):
        assert info.value.parsed  # read, then refused; far deeper, the parser itself gives up
    if text.startswith("[" * 100_000):
        assert not info.value.parsed


def test_a_2xx_nested_too_deeply_is_an_api_error() -> None:
    with pytest.raises(HfJobsAPIError, match=r"HTTP 200 with JSON nested deeper than 64 levels") as info:
        json_answer(
            200, json.dumps({"id": "j", "status": {"message": json.loads(nested(100))}}).encode(), action="x"
        )
    assert info.value.status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"[" * 30_000 + b"]" * 30_000, b'{"error": ' * 5_000 + b'"x"' + b"}" * 5_000,
     b'{"error": ' * 900 + b'"x"' + b"}" * 900, b'{"error": ' + nested(500).encode() + b"}"],
)  # fmt: skip
def test_a_deeply_nested_error_body_is_an_ordinary_error(body: bytes) -> None:
    error = error_for_response(500, body, {"X-Request-Id": "r-1"}, action="inspect job j")
    assert isinstance(error, HfJobsServerError) and error.status_code == 500
    assert str(error).startswith("Could not inspect job j: the Hub failed (HTTP 500)")
    assert len(str(error)) < 200 and error.request_id == "r-1"


def test_server_text_keeps_what_reads_and_caps_each_piece() -> None:
    assert server_error_text(b'{"error": {"error": "deep"}}') == "{'error': 'deep'}"
    long = server_error_text(json.dumps({"error": "x" * 10_000}).encode(), {"X-Error-Message": "y" * 10_000})
    assert long == f"{'y' * MAX_SERVER_TEXT_CHARS} {'x' * MAX_SERVER_TEXT_CHARS}"
    assert server_error_text(b"[" * 30_000, {"X-Error-Message": "busy"}) == "busy"  # the body: not quoted
    assert server_error_text(b'{"errors": "no list"}') is None


# ------------------------------------------------------------------------------------ log and metrics
def test_a_deeply_nested_log_event_is_a_raw_line_still_counted() -> None:
    parser = LogStreamParser()
    deep = 'data: {"data": ' + nested(100_000) + "}\n\n"
    lines = list(parser.feed(deep.encode())) + list(
        parser.feed(b'data: {"data":"after","timestamp":null}\n\n')
    )
    assert [line.index for line in lines] == [0, 1]
    assert lines[0].text.startswith('{"data": [[[') and "line cut" in lines[0].text
    assert lines[1].text == "after"


def test_a_log_event_of_odd_types_is_a_line_with_no_timestamp() -> None:
    """A numeric timestamp was compared with the resume point's string after a ``tail`` reconnect: a
    TypeError out of the follower."""
    parser = LogStreamParser()
    parser.new_connection(tail=True)
    parser.feed(b'data: {"data":"last","timestamp":"2026-01-01T00:00:00Z"}\n\n')
    parser.new_connection()  # the full replay, resumed after "last"
    replay = b'data: {"data":["a", 1],"timestamp":5}\n\ndata: {"data":"last","timestamp":"2026-01-01T00:00:00Z"}\n\n'
    assert list(parser.feed(replay)) == []
    (line,) = parser.feed(b'data: {"data":{"k": [1]},"timestamp":[1]}\n\n')
    assert (line.text, line.timestamp) == ("{'k': [1]}", None)


def test_a_deeply_nested_metrics_sample_is_passed_over() -> None:
    parser = MetricsStreamParser()
    deep = b'event: metric\ndata: {"gpus": ' + nested(200).encode() + b"}\n\n"
    assert parser.feed(deep + b'event: metric\ndata: {"cpu_usage_pct": 3}\n\n') == [{"cpu_usage_pct": 3}]


# ------------------------------------------------------------------------------- headers and retries
@pytest.mark.parametrize("value", ["²", "١٢", " ", "1.5", "soon"])
def test_a_retry_after_that_is_no_ascii_number_or_date_is_ignored(value: str) -> None:
    assert retry_after_seconds({"Retry-After": value}) is None  # "²".isdigit(): float("²") raised


def test_a_retry_after_beyond_the_total_wait_gives_up_instead_of_sleeping() -> None:
    """A stream's HTTP error carries no headers to the policy: its retry_after was waited whatever the
    size (a 429 with Retry-After: 999999999 slept 31 years)."""
    error = error_for_response(429, b"", {"Retry-After": "999999999"}, action="read the logs of job j")
    assert isinstance(error, HfJobsRateLimitError) and error.retry_after == 999_999_999
    with pytest.raises(HfJobsRateLimitError):
        RetryAttempts(RetryPolicy()).after(error, status_code=429)
    small = error_for_response(429, b"", {"Retry-After": "2"}, action="read the logs of job j")
    assert RetryAttempts(RetryPolicy()).after(small, status_code=429) >= 2.0


@pytest.mark.parametrize("link", ['<http://[::1/x>; rel="next"', '<https://[v1.x]:80/x>; rel="next"'])
def test_a_next_page_that_is_no_url_is_an_api_error(link: str) -> None:
    with pytest.raises(HfJobsAPIError, match=r"next page .* (is not a valid URL|not on the endpoint)"):
        next_page_url(link, "https://hub.test/api/jobs/alice")


@pytest.mark.parametrize(
    ("endpoint", "token", "message"),
    [
        ("https://hub.test:99999", "hf_x", r"not a valid URL \(Port out of range"),
        ("http://[::1", "hf_x", r"not a valid URL \(Invalid IPv6 URL\)"),
        ("ftp://hub.test", "hf_x", "not an http\\(s\\) URL with a host"),
        ("https://", "hf_x", "not an http\\(s\\) URL with a host"),
        ("https://hub.test", "hf_tok€n", "token contains a character"),
        ("https://hub.test", "hf_tok\nen", "token contains a character"),
        (
            "https://hub.test",
            "hf_tokén",
            "token contains a character",
        ),  # latin-1: requests sends it, httpx not
    ],
)
def test_settings_no_request_can_carry_are_input_errors(endpoint: str, token: str, message: str) -> None:
    with pytest.raises(HfJobsInputError, match=message) as info:
        check_http_credentials(endpoint, token)
    assert token not in str(info.value)


def test_usable_settings_pass() -> None:
    for endpoint in (
        "https://huggingface.co",
        "http://127.0.0.1:8080",
        "https://[::1]:443/hub",
        "https://hub.test/",
    ):
        check_http_credentials(endpoint, "hf_AbC123_-.~")
