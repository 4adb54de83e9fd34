"""The sans-IO core (jobs.py, sse.py): differential against huggingface_hub 2.4 where it has the same
rule, and the edge cases of the log stream."""

from __future__ import annotations

import base64
import json
import random
import subprocess

import pytest
from huggingface_hub import _jobs_api as official

from airflow_provider_hfjobs.exceptions import (
    HfJobsAuthError,
    HfJobsBadRequestError,
    HfJobsInputError,
    HfJobsNotFoundError,
    HfJobsPermissionError,
    HfJobsRateLimitError,
    HfJobsServerError,
)
from airflow_provider_hfjobs.jobs import (
    MAX_INLINE_SCRIPT_ENCODED_BYTES,
    TERMINAL_STAGES,
    JobInfo,
    JobStage,
    RetryPolicy,
    build_job_spec,
    build_uv_command,
    error_for_response,
    list_jobs_params,
    next_page_url,
    parse_timeout,
    retry_after_seconds,
    task_instance_labels,
    validate_labels,
)
from airflow_provider_hfjobs.sse import MAX_LOG_LINE_CHARS, LogStreamParser, SSEDecoder, _split_canonical

# ---------------------------------------------------------------------------------------------- create
SPECS = [
    dict(image="python:3.12", command=["python", "-c", "print(1)"]),
    dict(
        image="hf.co/spaces/alice/duckdb",
        command=["duckdb"],
        env={"A": "1"},
        secrets={"S": "s"},
        timeout="1.5h",
    ),
    dict(image="https://huggingface.co/spaces/a/b", command=["x"], flavor="a10g-small", timeout=300),
    dict(image="https://hf.co/spaces/a/b", command=["x"], labels={"team": "ml"}, timeout="300"),
    dict(image="huggingface.co/spaces/a/b", command=["x"], timeout="90s"),
    dict(image="ghcr.io/astral-sh/uv:python3.12-bookworm", command=["uv", "run", "s.py"], timeout="2d"),
    dict(image="docker.io/library/python:3.12", command=["python"], timeout=1.5, labels={"k": "v"}),
    dict(image="pytorch/pytorch:2.6.0-cuda12.4-cudnn9-devel", command=["nvidia-smi"], timeout="30m"),
]


@pytest.mark.parametrize("spec", SPECS)
def test_create_body_equals_the_official_client(spec: dict) -> None:
    ours = build_job_spec(**spec)
    name = official._default_job_name_from_image(spec["image"], spec["command"])
    theirs = official._create_job_spec(
        image=spec["image"], command=spec["command"], env=spec.get("env"), secrets=spec.get("secrets"),
        flavor=spec.get("flavor"), timeout=spec.get("timeout"), labels=spec.get("labels"), name=name,
    )  # fmt: skip
    assert json.dumps(ours) == json.dumps(theirs)  # same keys, same order, same values


@pytest.mark.parametrize("value", [300, "300", "90s", "30m", "1.5h", "2d", 1.5, "0.5m", None, 0, ""])
def test_timeout_parsing_equals_the_official_client(value) -> None:
    theirs = official._create_job_spec(
        image="i", command=["c"], env=None, secrets=None, flavor=None, timeout=value
    )
    assert parse_timeout(value) == theirs.get("timeoutSeconds")


@pytest.mark.parametrize("value", ["1.5", "2H", "abc", "m", -5, True, "-1m"])
def test_bad_timeouts_name_the_field(value) -> None:
    with pytest.raises(HfJobsInputError, match="timeout"):
        parse_timeout(value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(image="", command=["x"]), "image"),
        (dict(image="hf.co/spaces/onlyowner", command=["x"]), "Space"),
        (dict(image="i", command="python -c 1"), "command"),
        (dict(image="i", command=[]), "command"),
        (dict(image="i", command=["python", 3]), "command\\[1\\]"),
        (dict(image="i", command=["x"], env={"N": 1}), "env\\['N'\\]"),
        (dict(image="i", command=["x"], env={"1BAD": "x"}), "env key"),
        (dict(image="i", command=["x"], env={"K": "a"}, secrets={"K": "b"}), "both env and secrets"),
        (dict(image="i", command=["x"], labels={"a b": "x"}), "labels key"),
        (dict(image="i", command=["x"], labels={"k" * 101: "x"}), "labels key"),
        (dict(image="i", command=["x"], labels={"k": "a.b"}), "labels\\['k'\\]"),
        (dict(image="i", command=["x"], labels={"name": "x"}, name="y"), "name"),
        (dict(image="i", command=["x"], flavor=""), "flavor"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(HfJobsInputError, match=field):
        build_job_spec(**kwargs)


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(HfJobsInputError) as info:
        build_job_spec(image="i", command=["x"], secrets={"TOKEN": 12345678})
    assert "12345678" not in str(info.value) and "secrets['TOKEN']" in str(info.value)


# ---------------------------------------------------------------------------------------------- uv
def test_uv_url_command_is_the_official_shape() -> None:
    command, env = build_uv_command(
        script_url="https://example.com/s.py", script_args=["--x", "1"], dependencies=["trl"], python="3.11"
    )
    assert command == [
        "uv",
        "run",
        "--with",
        "trl",
        "--python",
        "3.11",
        "https://example.com/s.py",
        "--x",
        "1",
    ]
    assert env == {}


def test_uv_inline_script_is_decoded_into_the_working_directory(tmp_path) -> None:
    fake_uv = tmp_path / "bin" / "uv"
    fake_uv.parent.mkdir()
    fake_uv.write_text('#!/bin/bash\nprintf "%s|" "$@"; echo; cat "$4"\n')
    fake_uv.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    source = b"print('hello')\n"
    command, env = build_uv_command(
        script_source=source,
        script_name="my train.py",
        script_args=["a b", "$HOME", "it's"],
        dependencies=["x>=1"],
    )
    result = subprocess.run(
        command, env={"PATH": f"{fake_uv.parent}:/usr/bin:/bin", **env}, cwd=work, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["run|--with|x>=1|my_train.py|a b|$HOME|it's|", "print('hello')"]
    assert (work / "my_train.py").read_bytes() == source


def test_uv_inline_script_size_limit() -> None:
    fits = b"x" * (MAX_INLINE_SCRIPT_ENCODED_BYTES // 4 * 3)
    assert len(base64.b64encode(fits)) == MAX_INLINE_SCRIPT_ENCODED_BYTES
    build_uv_command(script_source=fits)
    with pytest.raises(HfJobsInputError, match="URL"):
        build_uv_command(script_source=fits + b"xyz")


# -------------------------------------------------------------------------------------------- job JSON
def test_stages_match_the_official_enum() -> None:
    assert {stage.value for stage in JobStage} == {stage.value for stage in official.JobStage}
    assert {stage.value for stage in TERMINAL_STAGES} == {
        stage.value for stage in official.TERMINAL_JOB_STAGES
    }
    assert [s.value for s in JobStage if s.is_success] == ["COMPLETED"]
    assert not JobStage.parse("UPDATING").is_terminal


@pytest.mark.parametrize(
    "data",
    [
        {"id": "467025238e0b43bf8d7c30ba", "createdAt": "2026-11-24T06:49:34.580Z", "dockerImage": None,
         "spaceId": "alice/duckdb", "command": ["python"], "secrets": ["S"], "flavor": "cpu-basic",
         "owner": {"id": "5e9e", "name": "alice", "type": "user"}, "status": {"stage": "SCHEDULING", "message": None}},
        {"id": "aa", "createdAt": "2026-11-24T06:49:34Z", "startedAt": "2026-11-24T06:49:40.1Z",
         "finishedAt": "2026-11-24T06:50:40.123456789Z", "owner": {"id": "1", "name": "org", "type": "org"},
         "status": {"stage": "ERROR", "message": "exit code 1"}, "durations": {"runningSecs": 60, "totalSecs": 66}},
    ],
)  # fmt: skip
def test_job_json_parses_like_the_official_client(data: dict) -> None:
    ours = JobInfo.from_api(data, "https://hub.test/")
    theirs = official.JobInfo(**data, endpoint="https://hub.test")
    assert (ours.id, ours.stage.value, ours.message, ours.owner_name) == (
        theirs.id, theirs.status.stage, theirs.status.message, theirs.owner.name,
    )  # fmt: skip
    assert ours.url == f"https://hub.test/jobs/{theirs.owner.name}/{theirs.id}"
    assert (ours.created_at, ours.started_at) == (theirs.created_at, theirs.started_at)
    assert json.loads(json.dumps(ours.to_dict())) == ours.to_dict()


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("status", "cls", "needle"),
    [
        (401, HfJobsAuthError, "invalid token"),
        (403, HfJobsPermissionError, "no access to namespace 'ns'"),
        (404, HfJobsNotFoundError, "job abc not found in namespace 'ns'"),
        (400, HfJobsBadRequestError, "rejected"),
        (422, HfJobsBadRequestError, "rejected"),
        (429, HfJobsRateLimitError, "rate limited"),
        (503, HfJobsServerError, "HTTP 503"),
    ],
)
def test_http_errors_become_one_clear_line(status: int, cls: type, needle: str) -> None:
    error = error_for_response(
        status,
        b'{"error": "server says no"}',
        {"X-Request-Id": "req-1"},
        action="do it",
        namespace="ns",
        job_id="abc",
    )
    assert isinstance(error, cls) and needle in str(error) and "\n" not in str(error)
    assert "server says no" in str(error) and "req-1" in str(error)


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b'{"error": ["a", "b"]}', {}, "a b"),
        (b'{"error": "code", "error_description": "d"}', {}, "code d"),
        (b'{"errors": [{"message": "m"}]}', {}, "m"),
        (b"plain text", {}, "plain text"),
        (b"<html>oops</html>", {"X-Error-Message": "header says"}, "header says"),
    ],
)
def test_server_error_text_shapes(body: bytes, headers: dict, expected: str) -> None:
    assert error_for_response(500, body, headers, action="x").server_message == expected


def test_retry_policy() -> None:
    policy = RetryPolicy(max_retries=3, base_delay=1, max_delay=8, max_total_wait=100)
    rng = random.Random(7)
    for status in (400, 401, 403, 404):
        assert policy.delay(1, status_code=status, rng=rng) is None
    for status in (None, 408, 429, 500, 502, 503, 504):
        assert policy.delay(1, status_code=status, rng=rng) is not None
    assert policy.delay(4, rng=rng) is None
    assert policy.delay(1, status_code=429, headers={"Retry-After": "7"}, rng=rng) >= 7
    assert policy.delay(1, status_code=429, headers={"RateLimit": '"api";r=0;t=55'}, rng=rng) >= 55
    assert retry_after_seconds({"RateLimit": '"api";r=3;t=55'}) is None
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=0) > 0
    assert policy.delay(1, status_code=429, headers={"Retry-After": "7"}, waited=99, rng=rng) is None


def test_list_params_and_pages() -> None:
    assert list_jobs_params(["running", JobStage.SCHEDULING], {"a": "1"}) == [
        ("stage", "RUNNING"), ("stage", "SCHEDULING"), ("label", "a=1"),
    ]  # fmt: skip
    with pytest.raises(HfJobsInputError, match="status"):
        list_jobs_params("FINISHED")
    assert next_page_url('<https://h/api/jobs/ns?cursor=2>; rel="next"') == "https://h/api/jobs/ns?cursor=2"
    assert next_page_url(None) is None


def test_task_instance_labels_are_valid_and_stable() -> None:
    labels = task_instance_labels("my.dag", "group.task", "manual__2026-01-01T00:00:00+00:00", 3)
    assert validate_labels(labels) == labels
    assert labels == task_instance_labels("my.dag", "group.task", "manual__2026-01-01T00:00:00+00:00", 3)
    assert (
        labels["airflow-ti"] != task_instance_labels("my.dag", "group.task", "manual__other", 3)["airflow-ti"]
    )


# ------------------------------------------------------------------------------------------------ SSE
def stream(lines: list[str], marker: bool = True, compact: bool = False) -> bytes:
    """Log events as the Hub sends them (``compact``: its exact bytes, the parser's fast path) or spaced."""
    events = (["===== Job started at 2026-01-01 00:00:00 ====="] if marker else []) + lines
    separators = (",", ":") if compact else (", ", ": ")
    return b"".join(
        "data: {}\n\n".format(
            json.dumps(
                {"data": text, "timestamp": f"2026-01-01T00:00:{i:02d}.000Z"},
                separators=separators,
                ensure_ascii=not compact,
            )
        ).encode()
        for i, text in enumerate(events)
    )


def texts(*batches) -> list[str]:
    return [line.text for batch in batches for line in batch]


LINES = ["plain", "", "ünïcode ✓", 'quotes "and" \\ backslashes', "data: inside", ": not a comment"]


PLAIN = ["plain", "", "ünïcode ✓", "data: inside", ": not a comment", "=====  not a marker", "x" * 100]


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("lines", [LINES, PLAIN])
@pytest.mark.parametrize("keepalives", [0, 2])
def test_every_chunking_gives_the_same_lines(compact: bool, lines: list[str], keepalives: int) -> None:
    raw = stream(lines, compact=compact).replace(b"\n\n", b"\n\n: keep-alive\n\n", keepalives)
    for split in range(len(raw) + 1):
        parser = LogStreamParser()
        assert texts(parser.feed(raw[:split]), parser.feed(raw[split:])) == lines
    for third in range(0, len(raw), 7):
        parser = LogStreamParser()
        got = texts(
            parser.feed(raw[:third]), parser.feed(raw[third : 2 * third]), parser.feed(raw[2 * third :])
        )
        assert got == lines
    parser = LogStreamParser()
    assert [line.text for b in raw for line in parser.feed(bytes([b]))] == lines


def test_the_hubs_own_event_shape_takes_the_fast_path() -> None:
    raw = stream(PLAIN, compact=True)
    found = _split_canonical(raw[: raw.rfind(b"\n\n")])
    assert found is not None and found[0][1:] == PLAIN and found[2] is True
    batch = LogStreamParser().feed(raw)
    assert batch.texts == PLAIN and list(batch.indexes) == list(range(1, len(PLAIN) + 1))
    assert batch.next_cursor == len(PLAIN) + 1


@pytest.mark.parametrize(
    "event",
    [
        b'data: {"data":"a \\"quoted\\" word","timestamp":"2026-01-01T00:00:00Z"}',  # escapes
        b'data: {"data":"x","timestamp":"t","extra":"y"}',  # another field
        b'data: {"timestamp":"t","data":"x"}',  # other key order
        b'data: {"data":"x","timestamp":"t"}\n: keep-alive',  # a comment inside the run
        b'data: {"data":"x","timestamp":"t"}\ndata: {"data":"y","timestamp":"u"}',  # a two-line event
        b'data:{"data":"x","timestamp":"t"}',  # no space after the colon
    ],
)
def test_anything_but_the_hubs_exact_shape_is_left_to_the_full_decoder(event: bytes) -> None:
    assert _split_canonical(event) is None
    fast, full = LogStreamParser(), LogStreamParser()
    fast_lines = texts(fast.feed(event + b"\n\n"))
    # The same events with CRLF line ends never take the fast path: both readings must agree.
    slow_lines = texts(full.feed(event.replace(b"\n", b"\r\n") + b"\r\n\r\n"))
    assert fast_lines == slow_lines


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_ends(newline: bytes) -> None:
    raw = stream(LINES).replace(b"\n", newline)
    for split in range(len(raw) + 1):
        parser = LogStreamParser()
        assert texts(parser.feed(raw[:split]), parser.feed(raw[split:])) == LINES


@pytest.mark.parametrize("compact", [False, True])
def test_cut_then_replay_delivers_each_line_once(compact: bool) -> None:
    raw = stream(LINES + PLAIN, compact=compact)
    for cut in range(len(raw) + 1):
        parser = LogStreamParser()
        first = parser.feed(raw[:cut])  # the connection drops here; an unfinished event is not dispatched
        parser.new_connection()
        second = parser.feed(raw[: len(raw) // 2])
        third = parser.feed(raw[len(raw) // 2 :])
        assert texts(first, second, third) == LINES + PLAIN
        resumed = LogStreamParser(parser.cursor)
        assert resumed.feed(raw) == []


@pytest.mark.parametrize("compact", [False, True])
def test_repeated_markers_are_dropped_but_counted(compact: bool) -> None:
    raw = stream(["a"], compact=compact) + stream(["b"], compact=compact)  # a retried job sends it again
    parser = LogStreamParser()
    assert texts(parser.feed(raw)) == ["a", "b"] and parser.cursor == 4


def test_metric_events_and_non_json_data_are_ignored() -> None:
    raw = b'event: metric\ndata: {"cpu": 1}\n\ndata: not json\n\n' + stream(["x"], marker=False)
    assert [line.text for line in LogStreamParser().feed(raw)] == ["x"]


def test_tail_then_full_replay_resumes_after_the_last_event() -> None:
    full = stream(["a", "b", "c", "d"])
    events = full.split(b"\n\n")
    parser = LogStreamParser()
    parser.new_connection(tail=True)  # ?tail=1: the marker, then "c"
    assert [line.text for line in parser.feed(events[0] + b"\n\n" + events[3] + b"\n\n")] == ["c"]
    parser.new_connection()  # a reconnect replays everything: resume after "c"
    assert [line.text for line in parser.feed(full)] == ["d"]
    assert parser.cursor == 5


@pytest.mark.parametrize("compact", [False, True])
def test_long_lines_are_bounded(compact: bool) -> None:
    parser = LogStreamParser()
    (line,) = parser.feed(stream(["x" * (MAX_LOG_LINE_CHARS + 10)], marker=False, compact=compact))
    assert len(line.text) < MAX_LOG_LINE_CHARS + 100 and line.text.endswith("10 more characters]")
    decoder = SSEDecoder()
    huge = b"data: " + b"y" * (3 << 20)
    events = [event for i in range(0, len(huge), 65536) for event in decoder.feed(huge[i : i + 65536])]
    events += decoder.feed(b"\n\n" + stream(["after"], marker=False))
    assert len(events) == 2 and len(events[0].data) <= (1 << 20) and "after" in events[1].data
