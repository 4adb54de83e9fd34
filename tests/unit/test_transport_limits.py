"""Transport rules without a network: body and buffer caps, answers of the wrong shape, pagination origins,
https-only script URLs and the CA setting (issue 11, items 4 and 6)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_hfjobs import jobs
from airflow_provider_hfjobs.exceptions import HfJobsAPIError, HfJobsInputError
from airflow_provider_hfjobs.hooks.hfjobs import (
    CA_ENVIRONMENT,
    credentials_from_connection,
    shared_ssl_context,
    tls_verify_setting,
)
from airflow_provider_hfjobs.jobs import (
    MAX_ERROR_BODY_BYTES,
    MAX_JSON_BODY_BYTES,
    MAX_LIST_PAGE_BYTES,
    HardwareInfo,
    JobInfo,
    body_limit,
    classify_uv_script,
    json_answer,
    next_page_url,
)
from airflow_provider_hfjobs.sse import MAX_SSE_EVENT_BYTES, MAX_SSE_LINE_BYTES, LogStreamParser, SSEDecoder

ENDPOINT = "https://hub.test"


# ------------------------------------------------------------------------------------------- SSE buffers
def test_an_event_that_never_ends_keeps_at_most_its_cap() -> None:
    """``data:`` lines without the blank line that ends an event: 8 MiB arrive, at most 1 MiB is kept, and
    the event is still dispatched (and counted) once it ends."""
    decoder = SSEDecoder()
    line = b"data: " + b"z" * 1000 + b"\n"
    for _ in range(8 * 1024):
        assert decoder.feed(line) == []
        assert len("\n".join(decoder._data)) <= MAX_SSE_EVENT_BYTES
    (event,) = decoder.feed(b"\n")
    assert len(event.data) <= MAX_SSE_EVENT_BYTES
    assert decoder.feed(b'data: {"data":"after","timestamp":null}\n\n')[0].data.endswith(
        '"after","timestamp":null}'
    )


def test_a_cut_event_is_one_cut_line_and_the_cursor_stays_right() -> None:
    parser = LogStreamParser()
    huge = b'data: {"data": "' + b"\ndata: ".join([b"q" * 4096] * 512) + b'"}\n\n'
    ok = b'data: {"data":"next","timestamp":"2026-01-01T00:00:00Z"}\n\n'
    lines = [line for i in range(0, len(huge), 65536) for line in parser.feed(huge[i : i + 65536])]
    lines += parser.feed(ok)
    assert [line.index for line in lines] == [0, 1] and lines[1].text == "next"
    assert "line cut" in lines[0].text and len(lines[0].text) < 20_000


def test_a_line_that_never_ends_keeps_at_most_its_cap() -> None:
    """The partial-line buffer: 16 MiB without a line end keep at most 1 MiB (already so before issue 11)."""
    decoder = SSEDecoder()
    for _ in range(256):
        decoder.feed(b"data: " + b"y" * 65536)
        assert len(decoder._buffer) <= MAX_SSE_LINE_BYTES
    (event,) = decoder.feed(b"\n\n")
    assert len(event.data) <= MAX_SSE_LINE_BYTES


# ------------------------------------------------------------------------------------------- body caps
def test_body_limits_are_named_and_ordered() -> None:
    assert MAX_ERROR_BODY_BYTES < MAX_JSON_BODY_BYTES < MAX_LIST_PAGE_BYTES
    assert body_limit(404) == body_limit(500) == MAX_ERROR_BODY_BYTES
    assert body_limit(200) == MAX_JSON_BODY_BYTES
    assert body_limit(200, listing=True) == MAX_LIST_PAGE_BYTES
    assert body_limit(503, listing=True) == MAX_ERROR_BODY_BYTES


def test_a_body_over_its_cap_is_an_api_error(monkeypatch) -> None:
    monkeypatch.setattr(jobs.errors, "MAX_JSON_BODY_BYTES", 10)
    assert json_answer(200, b'{"a": 123}', action="x") == {"a": 123}  # 10 bytes: at the cap, not over
    with pytest.raises(
        HfJobsAPIError,
        match=r"^Could not inspect job j: the server answered HTTP 200 with more than 10 bytes",
    ):
        json_answer(200, b'{"a": 1234}', action="inspect job j")
    monkeypatch.undo()
    with pytest.raises(HfJobsAPIError, match=r"with more than 8 MiB"):
        json_answer(200, b" " * (MAX_JSON_BODY_BYTES + 1), action="inspect job j")


@pytest.mark.parametrize("body", [b"<html>Sign in to the proxy</html>", b"", b"\xff\xfe\x00", b"[" * 100_000])
def test_a_2xx_without_json_is_an_api_error(body: bytes) -> None:
    with pytest.raises(
        HfJobsAPIError,
        match=r"^Could not check the token \(whoami\): the server answered HTTP 200 without JSON\.$",
    ) as info:
        json_answer(200, body, action="check the token (whoami)")
    assert info.value.status_code == 200


# ---------------------------------------------------------------------------------------- answer shapes
@pytest.mark.parametrize(
    "data",
    [
        None,
        "<html>",
        [{"id": "a"}],
        {},
        {"status": {"stage": "RUNNING"}},
        {"id": ""},
        {"id": {"$oid": "x"}},
        {"id": True},
        {"id": "a", "status": "RUNNING"},
        {"id": "a", "status": {"stage": ["RUNNING"]}},
        {"id": "a", "owner": ["alice"]},
        {"id": "a", "durations": 12},
        {"id": "a", "createdAt": "yesterday"},
        {"id": "a", "command": 7},
        {"id": "a", "labels": ["x"]},
    ],
)
def test_a_2xx_that_is_not_a_job_is_an_api_error(data: object) -> None:
    with pytest.raises(HfJobsAPIError, match=r"not a job"):
        JobInfo.from_api(data, ENDPOINT)


def test_a_minimal_job_still_parses() -> None:
    job = JobInfo.from_api({"id": "a", "status": {"stage": "running"}}, ENDPOINT)
    assert (job.id, job.stage.value, job.url) == ("a", "RUNNING", f"{ENDPOINT}/jobs//a")
    assert JobInfo.from_api({"id": 12}, ENDPOINT).stage.value == "SCHEDULING"  # no status: never finished


@pytest.mark.parametrize("data", [None, [], {"cpu": "2"}, "cpu-basic"])
def test_a_hardware_entry_of_the_wrong_shape_is_an_api_error(data: object) -> None:
    with pytest.raises(HfJobsAPIError, match="not a hardware flavor"):
        HardwareInfo.from_api(data)


# ------------------------------------------------------------------------------------------- pagination
PAGE = "https://hub.test/api/jobs/alice?label=a=b"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ('<https://hub.test/api/jobs/alice?offset=50>; rel="next"', "https://hub.test/api/jobs/alice?offset=50"),
        ('</api/jobs/alice?offset=50>; rel="next"', "https://hub.test/api/jobs/alice?offset=50"),
        ('<https://HUB.test:443/api/jobs/alice?offset=50>; rel="next"', "https://HUB.test:443/api/jobs/alice?offset=50"),
        ('<https://hub.test/a>; rel="prev", <https://hub.test/b>; rel="next"', "https://hub.test/b"),
        ('<https://hub.test/a>; rel="prev"', None),
        (None, None),
    ],
)  # fmt: skip
def test_next_page_on_the_same_origin_is_followed(link: str | None, expected: str | None) -> None:
    assert next_page_url(link, PAGE) == expected


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.test/api/jobs/alice?offset=50",
        "http://hub.test/api/jobs/alice?offset=50",  # a downgrade to plain http
        "https://hub.test:8443/api/jobs/alice?offset=50",
        "//evil.test/api/jobs/alice",
        "https://hub.test.evil.test/api/jobs/alice",
        "https://hub.test:99999/api/jobs/alice",
    ],
)
def test_next_page_on_another_origin_is_refused(target: str) -> None:
    with pytest.raises(HfJobsAPIError, match=r"not followed, so that the token is not sent there"):
        next_page_url(f'<{target}>; rel="next"', PAGE)


# -------------------------------------------------------------------------------------------- script URLs
@pytest.mark.parametrize("script", ["http://example.com/train.py", "HTTP://example.com/train.py"])
def test_plain_http_script_urls_are_refused(script: str) -> None:
    with pytest.raises(HfJobsInputError, match=r"plain http: the job runs it with its secrets.*https"):
        classify_uv_script(script)


def test_script_kinds() -> None:
    assert classify_uv_script("https://example.com/train.py") == "url"
    assert classify_uv_script("HTTPS://example.com/train.py") == "url"
    assert classify_uv_script("train.py") == "file"
    assert classify_uv_script("print('http://x')\n") == "inline"


# ----------------------------------------------------------------------------------------------- TLS
def test_the_ca_setting_follows_requests_then_openssl(tmp_path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("extra", *CA_ENVIRONMENT)}
    for path in files.values():
        path.write_text("")
    environ = {name: str(files[name]) for name in CA_ENVIRONMENT}
    assert tls_verify_setting(str(files["extra"]), True, environ) == str(files["extra"])
    for name in CA_ENVIRONMENT:
        assert tls_verify_setting(None, True, environ) == str(files[name])
        del environ[name]
    assert tls_verify_setting(None, True, environ) is True
    assert tls_verify_setting(str(files["extra"]), False, {"REQUESTS_CA_BUNDLE": "x"}) is False
    with pytest.raises(HfJobsInputError, match=r"REQUESTS_CA_BUNDLE is '/no/such.pem', which does not exist"):
        tls_verify_setting(None, True, {"REQUESTS_CA_BUNDLE": "/no/such.pem"})


def test_the_connection_carries_its_ca_setting_and_never_shows_the_token() -> None:
    creds = credentials_from_connection(
        "hub.test", None, "hf_secret_token", {"ca_bundle": "/etc/ca.pem", "verify": "true"}
    )
    assert (creds.ca_bundle, creds.verify) == ("/etc/ca.pem", True)
    assert "hf_secret_token" not in repr(creds) and "/etc/ca.pem" in repr(creds)
    assert credentials_from_connection("h", None, "t", {"verify": False}).verify is False
    assert credentials_from_connection("h", None, "t", {"verify": "false"}).verify is False
    assert credentials_from_connection("h", None, "t", {"extra__hf_jobs__ca_bundle": "/x"}).ca_bundle == "/x"
    with pytest.raises(HfJobsInputError, match="verify extra must be true or false"):
        credentials_from_connection("h", None, "t", {"verify": "maybe"})
    with pytest.raises(HfJobsInputError, match="ca_bundle extra must be the path"):
        credentials_from_connection("h", None, "t", {"ca_bundle": ["a"]})


def test_one_ssl_context_per_distinct_ca_setting(tmp_path) -> None:
    import shutil

    import certifi

    bundle = tmp_path / "ca.pem"
    shutil.copy(certifi.where(), bundle)
    assert shared_ssl_context(True) is shared_ssl_context(True)
    assert shared_ssl_context(str(bundle)) is shared_ssl_context(str(bundle))
    assert shared_ssl_context(str(bundle)) is not shared_ssl_context(True)
    assert shared_ssl_context(False).verify_mode.name == "CERT_NONE"
    assert shared_ssl_context(True).verify_mode.name == "CERT_REQUIRED"
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(HfJobsInputError, match="cannot be loaded"):
        shared_ssl_context(str(tmp_path / "bad.pem"))


def test_json_answer_is_the_one_json_rule() -> None:
    assert json_answer(201, json.dumps({"id": "a"}).encode(), action="create a job") == {"id": "a"}


@pytest.mark.parametrize(
    ("host", "extra", "refused"),
    [
        ("http://jobs.example.com", {}, True),
        ("http://10.1.2.3:8910", {}, True),
        ("http://jobs.example.com", {"allow_insecure_http": True}, False),
        ("http://jobs.example.com", {"allow_insecure_http": "true"}, False),
        ("http://127.0.0.1:8910", {}, False),
        ("http://localhost:8910", {}, False),
        ("http://[::1]:8910", {}, False),
        ("https://jobs.example.com", {}, False),
    ],
)
def test_plain_http_beyond_this_machine_needs_allow_insecure_http(
    host: str, extra: dict, refused: bool
) -> None:
    """The token (and a create's secret values) would travel in clear (issue 21, item 6)."""
    from airflow_provider_hfjobs.hooks.credentials import (
        credentials_from_connection,
        credentials_from_environment,
    )

    if refused:
        with pytest.raises(
            HfJobsInputError, match=r"plain HTTP to another machine.*allow_insecure_http"
        ) as info:
            credentials_from_connection(host, None, "hf_secret_token_value", extra)
        assert "hf_secret_token_value" not in str(info.value)
        with pytest.raises(HfJobsInputError, match="HFJOBS_ALLOW_INSECURE_HTTP=1"):
            credentials_from_environment({"HF_TOKEN": "hf_x", "HF_ENDPOINT": host}, "hf_default")
        credentials_from_environment(
            {"HF_TOKEN": "hf_x", "HF_ENDPOINT": host, "HFJOBS_ALLOW_INSECURE_HTTP": "1"}, "hf_default"
        )
    else:
        assert credentials_from_connection(host, None, "hf_x", extra).endpoint.startswith(host.split("//")[0])
