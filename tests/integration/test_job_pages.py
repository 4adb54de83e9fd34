"""The local server's job pages: what the Airflow "Hugging Face Job" link (``JobInfo.url``) opens.

Plain HTTP first (login, cookies, redirects, CSRF, escaping, no secret ever served), then a real
headless Chromium driven by Playwright: log in through the form, follow a running job's log live, cancel
from the page, go from the list to a job. The browser is Debian's chromium (``make browser`` installs it
as root; ``HFJOBS_CHROMIUM`` names another); without it the browser tests skip, loudly. Every wait is
bounded and waits for a condition (a signal file, a line on the page, a stage), never for luck.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.local.faults import Fault
from tests.integration.conftest import NAMESPACE, TOKEN
from tests.integration.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_job_left_behind")]

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CANARY = "s3cr3t-canary-7d1f0e"
XSS = "<script>alert(1)</script>"
ESCAPED_XSS = "&lt;script&gt;alert(1)&lt;/script&gt;"
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
HTTP_TIMEOUT = 30
#: Playwright's bound on anything that waits for a job (its process starts, prints, ends).
JOB_WAIT_MS = 30_000


# ---------------------------------------------------------------------------------------------- helpers


def create(server: LocalJobsServer, command: list[str], **extra: Any) -> dict[str, Any]:
    body = {"command": command, "arguments": [], "environment": {}, "flavor": "cpu-basic",
            "dockerImage": "python:3.12", **extra}  # fmt: skip
    answer = requests.post(
        f"{server.url}/api/jobs/{NAMESPACE}", headers=AUTH, json=body, timeout=HTTP_TIMEOUT
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def stage_of(server: LocalJobsServer, job_id: str) -> str:
    answer = requests.get(f"{server.url}/api/jobs/{NAMESPACE}/{job_id}", headers=AUTH, timeout=HTTP_TIMEOUT)
    return answer.json()["status"]["stage"]


def wait_stage(server: LocalJobsServer, job_id: str, stages: tuple[str, ...]) -> str:
    return wait_for(
        f"job {job_id} to reach {stages}", lambda: (s := stage_of(server, job_id)) in stages and s
    )


def python(code: str) -> list[str]:
    return ["python", "-c", textwrap.dedent(code)]


def gated(signal: Path, first: str = "first line", second: str = "second line") -> list[str]:
    """Print ``first``, wait (at most 60 s) for ``signal`` to exist, print ``second``."""
    return python(
        f"""
        import os, sys, time
        print({first!r}, flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists({str(signal)!r}):
            if time.monotonic() > deadline:
                sys.exit(3)
            time.sleep(0.05)
        print({second!r}, flush=True)
        """
    )


def job_path(job_id: str, suffix: str = "") -> str:
    return f"/jobs/{NAMESPACE}/{job_id}{suffix}"


def logged_in(server: LocalJobsServer) -> requests.Session:
    """A client holding a page session, got through the login form as a browser gets it."""
    session = requests.Session()
    answer = session.post(
        f"{server.url}/_local/login",
        data={"token": TOKEN, "next": "/"},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 303, answer.text
    return session


def csrf_field(page_html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page_html)
    assert match, "the job page has no CSRF field in its cancel form"
    return match.group(1)


def is_login_form(answer: requests.Response) -> bool:
    return (
        answer.status_code == 401
        and '<form method="post" action="/_local/login">' in answer.text
        and 'name="token"' in answer.text
        and "hfjobs-local serve" in answer.text
    )


# ------------------------------------------------------------------------------------------- plain HTTP
def test_the_server_names_its_pages_and_the_root_leads_there(server: LocalJobsServer) -> None:
    assert server.pages_url == f"{server.url}/jobs/{NAMESPACE}"
    for path in ("/", "/jobs"):
        answer = requests.get(f"{server.url}{path}", allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 303 and answer.headers["location"] == f"/jobs/{NAMESPACE}"
    script = requests.get(f"{server.url}/_local/static/job.js", timeout=HTTP_TIMEOUT)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "textContent" in script.text and "innerHTML" not in script.text
    style = requests.get(f"{server.url}/_local/static/pages.css", timeout=HTTP_TIMEOUT)
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert requests.get(f"{server.url}/favicon.ico", timeout=HTTP_TIMEOUT).status_code == 204
    for name in ("../pages.py", "..%2Fpages.py", "nope.js"):
        assert requests.get(f"{server.url}/_local/static/{name}", timeout=HTTP_TIMEOUT).status_code == 404


def test_without_a_session_every_page_asks_for_the_token(server: LocalJobsServer) -> None:
    job = create(server, ["python", "-c", "print('hi')"])
    for path in (f"/jobs/{NAMESPACE}", job_path(job["id"])):
        answer = requests.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT)
        assert is_login_form(answer), answer.text
        assert f'name="next" value="{path}"' in answer.text  # back here once logged in
        assert "set-cookie" not in answer.headers
        headers = answer.headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "'unsafe-inline'" not in headers["content-security-policy"]
        assert (headers["x-frame-options"], headers["referrer-policy"], headers["cache-control"]) == (
            "DENY", "same-origin", "no-store",
        )  # fmt: skip
    for suffix in ("/events", "/status"):
        answer = requests.get(f"{server.url}{job_path(job['id'], suffix)}", timeout=HTTP_TIMEOUT)
        assert answer.status_code == 401 and answer.json() == {"error": "Log in"}
    refused = requests.post(f"{server.url}{job_path(job['id'], '/cancel')}", timeout=HTTP_TIMEOUT)
    assert is_login_form(refused)
    # A wrong bearer token is no better than none; the right one opens the page (scripts, tests).
    wrong = requests.get(
        f"{server.url}{job_path(job['id'])}", headers={"Authorization": "Bearer x"}, timeout=30
    )
    assert is_login_form(wrong)
    assert requests.get(f"{server.url}{job_path(job['id'])}", headers=AUTH, timeout=30).status_code == 200


def test_a_wrong_token_gets_the_form_again_and_no_cookie(server: LocalJobsServer) -> None:
    for token in ("hf_wrong", "", TOKEN + "x", TOKEN[:-1]):
        answer = requests.post(
            f"{server.url}/_local/login", data={"token": token, "next": f"/jobs/{NAMESPACE}"},
            allow_redirects=False, timeout=HTTP_TIMEOUT,
        )  # fmt: skip
        assert is_login_form(answer), answer.text
        assert "not this server&#x27;s token" in answer.text
        assert "set-cookie" not in answer.headers
        assert token == "" or token not in answer.text


def test_the_right_token_opens_a_session_cookie_that_is_not_the_token(server: LocalJobsServer) -> None:
    answer = requests.post(
        f"{server.url}/_local/login", data={"token": TOKEN, "next": f"/jobs/{NAMESPACE}"},
        allow_redirects=False, timeout=HTTP_TIMEOUT,
    )  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == f"/jobs/{NAMESPACE}"
    cookie = answer.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    value = rest.split(";", 1)[0]
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert name == f"hfjobs_local_{server.port}"  # one per server: cookies ignore ports
    assert {"httponly", "samesite=strict", "path=/"} <= attributes, cookie
    assert len(value) >= 32 and TOKEN not in cookie and value not in TOKEN
    session = requests.Session()
    session.cookies.set(name, value)
    listing = session.get(f"{server.url}/jobs/{NAMESPACE}", timeout=HTTP_TIMEOUT)
    assert listing.status_code == 200 and f"Jobs of {NAMESPACE}" in listing.text
    # Logging out ends the session on the server: the old cookie no longer opens anything.
    out = requests.post(
        f"{server.url}/_local/logout", cookies={name: value}, allow_redirects=False, timeout=HTTP_TIMEOUT
    )
    assert out.status_code == 303 and f"{name}=" in out.headers["set-cookie"]
    assert is_login_form(session.get(f"{server.url}/jobs/{NAMESPACE}", timeout=HTTP_TIMEOUT))


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("//evil.example/jobs", "/"),
        ("http://evil.example/", "/"),
        ("https://evil.example/jobs/alice", "/"),
        ("/\\evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("jobs/alice", "/"),
        ("/jobs/alice\r\nSet-Cookie: x=1", "/"),
        ("", "/"),
        (f"/jobs/{NAMESPACE}?stage=RUNNING", f"/jobs/{NAMESPACE}?stage=RUNNING"),
        ("/", "/"),
    ],
)
def test_login_goes_back_to_local_paths_only(server: LocalJobsServer, target: str, expected: str) -> None:
    answer = requests.post(
        f"{server.url}/_local/login", data={"token": TOKEN, "next": target}, allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == expected


def test_a_cancel_needs_the_pages_csrf_field_and_this_sites_origin(
    server: LocalJobsServer, tmp_path: Path
) -> None:
    job = create(server, gated(tmp_path / "never"))
    wait_stage(server, job["id"], ("RUNNING",))
    session = logged_in(server)
    page = session.get(f"{server.url}{job_path(job['id'])}", timeout=HTTP_TIMEOUT)
    assert page.status_code == 200 and 'id="cancel"' in page.text
    token = csrf_field(page.text)
    url = f"{server.url}{job_path(job['id'], '/cancel')}"
    other = create(server, gated(tmp_path / "never-either"))
    other_page = session.get(f"{server.url}{job_path(other['id'])}", timeout=HTTP_TIMEOUT)
    refusals = [
        session.post(url, data={}, allow_redirects=False, timeout=HTTP_TIMEOUT),
        session.post(url, data={"csrf": "0" * 64}, allow_redirects=False, timeout=HTTP_TIMEOUT),
        # Another job's field is not this job's.
        session.post(url, data={"csrf": csrf_field(other_page.text)}, allow_redirects=False, timeout=30),
        # Another session's field is not this session's.
        session.post(url, data={"csrf": csrf_field(logged_in(server).get(page.url, timeout=30).text)},
                     allow_redirects=False, timeout=HTTP_TIMEOUT),
    ]  # fmt: skip
    assert [answer.status_code for answer in refusals] == [403] * 4
    assert "Cancel refused" in refusals[0].text
    # The right field from another site's page: the host guard refuses it before any route runs.
    foreign = session.post(
        url,
        data={"csrf": token},
        headers={"Origin": "http://evil.example"},
        allow_redirects=False,
        timeout=30,
    )
    assert foreign.status_code == 403 and "Cross-site request" in foreign.json()["error"]
    assert stage_of(server, job["id"]) == "RUNNING"
    answer = session.post(
        url, data={"csrf": token}, headers={"Origin": server.url}, allow_redirects=False, timeout=30
    )
    assert answer.status_code == 303 and answer.headers["location"] == job_path(job["id"])
    assert stage_of(server, job["id"]) == "CANCELED"
    assert stage_of(server, other["id"]) not in TERMINAL  # the other job is untouched
    # A script with the bearer token needs no page field (no browser sends that header by itself).
    bearer = requests.post(f"{server.url}{job_path(other['id'], '/cancel')}", headers=AUTH, allow_redirects=False,
                           timeout=HTTP_TIMEOUT)  # fmt: skip
    assert bearer.status_code == 303 and stage_of(server, other["id"]) == "CANCELED"
    after = session.get(f"{server.url}{job_path(job['id'])}", timeout=HTTP_TIMEOUT)
    assert 'id="cancel"' not in after.text and "CANCELED" in after.text


def test_the_pages_escape_the_job_and_never_show_a_secret_or_the_token(server: LocalJobsServer) -> None:
    job = create(
        server,
        ["python", "-c", f"import sys; print({XSS!r}); print(sys.argv[1], flush=True)"],
        arguments=[f"arg{XSS}"],
        environment={"NOTE": f"env{XSS}", "TOKEN_NAME_IS_FINE": "yes"},
        secrets={"API_KEY": CANARY, "HF_TOKEN": TOKEN},
        labels={"suite": "pages", "kind": "xss-check"},  # labels are [A-Za-z0-9_-]: no markup gets in
    )
    wait_stage(server, job["id"], TERMINAL)
    session = logged_in(server)
    bodies = {
        path: session.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT).text
        for path in (job_path(job["id"]), f"/jobs/{NAMESPACE}", job_path(job["id"], "/status"),
                     job_path(job["id"], "/events"))
    }  # fmt: skip
    for path, text in bodies.items():
        assert CANARY not in text and TOKEN not in text, path
    for path in (job_path(job["id"]), f"/jobs/{NAMESPACE}"):
        assert XSS not in bodies[path] and "<script>alert" not in bodies[path], path
        assert ESCAPED_XSS in bodies[path], path
    detail = bodies[job_path(job["id"])]
    assert f"NOTE=env{ESCAPED_XSS}" in detail  # environment values are shown (they are not secret)
    assert "API_KEY=***" in detail and "HF_TOKEN=***" in detail  # secret names only
    assert "suite=pages" in detail and "kind=xss-check" in detail
    # The log carries the line as the job printed it, in JSON: the page's script inserts it as text.
    events = [json.loads(line[len("data: "):]) for line in bodies[job_path(job["id"], "/events")].splitlines()
              if line.startswith("data: {\"data\"")]  # fmt: skip
    assert [event["data"] for event in events[1:]] == [XSS, f"arg{XSS}"]


def test_a_waiting_jobs_secret_values_are_in_the_store_but_not_on_its_page(tmp_path: Path) -> None:
    with LocalJobsServer(token=TOKEN, namespace=NAMESPACE, max_concurrency=1) as small:
        blocker = create(small, gated(tmp_path / "go"))
        wait_stage(small, blocker["id"], ("RUNNING",))
        waiting = create(small, ["python", "-c", "print('ok')"], secrets={"API_KEY": CANARY})
        assert stage_of(small, waiting["id"]) == "SCHEDULING"
        record = small.app.state.store.get(NAMESPACE, waiting["id"])
        assert record.secrets == {"API_KEY": CANARY}  # held until its process has them
        session = logged_in(small)
        for path in (job_path(waiting["id"]), job_path(waiting["id"], "/status"), f"/jobs/{NAMESPACE}"):
            text = session.get(f"{small.url}{path}", timeout=HTTP_TIMEOUT).text
            assert CANARY not in text and TOKEN not in text, path
        (tmp_path / "go").touch()
        wait_stage(small, waiting["id"], TERMINAL)


def test_unknown_jobs_and_other_namespaces_are_not_found(server: LocalJobsServer) -> None:
    job = create(server, ["python", "-c", "print('hi')"])
    session = logged_in(server)
    for path in ("/jobs/alice/0123456789abcdef01234567", f"/jobs/bob/{job['id']}", "/jobs/bob",
                 f"/jobs/bob/{job['id']}/status", f"/jobs/{NAMESPACE}/{XSS}"):  # fmt: skip
        answer = session.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT)
        assert answer.status_code == 404, path
        assert XSS not in answer.text
    assert "Not found" in session.get(f"{server.url}/jobs/bob", timeout=HTTP_TIMEOUT).text
    # Logged out, a page does not even say whether the job exists.
    assert is_login_form(requests.get(f"{server.url}/jobs/alice/0123456789abcdef01234567", timeout=30))


def test_the_page_and_the_api_stream_the_same_log(server: LocalJobsServer) -> None:
    job = create(server, ["python", "-c", "for i in range(5): print('line', i)"])
    wait_stage(server, job["id"], TERMINAL)
    api = requests.get(f"{server.url}/api/jobs/{NAMESPACE}/{job['id']}/logs", headers=AUTH, timeout=30).text
    page = logged_in(server).get(f"{server.url}{job_path(job['id'], '/events')}", timeout=HTTP_TIMEOUT).text
    assert page == api + 'retry: 3600000\nevent: end\ndata: {"stage": "COMPLETED"}\n\n'


def test_page_requests_are_neither_faulted_nor_counted(server: LocalJobsServer) -> None:
    job = create(server, ["python", "-c", "print('hi')"])
    requests.delete(f"{server.url}/_local/stats", headers=AUTH, timeout=HTTP_TIMEOUT)
    server.add_fault(Fault(kind="status", status=503, times=1))
    try:
        session = logged_in(server)
        for path in (f"/jobs/{NAMESPACE}", job_path(job["id"]), job_path(job["id"], "/status"), "/"):
            assert session.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT).status_code == 200, path
        assert [fault.times for fault in server.faults.list()] == [1]  # still there for the API
    finally:
        server.clear_faults()
    stats = requests.get(f"{server.url}/_local/stats", headers=AUTH, timeout=HTTP_TIMEOUT).json()
    assert stats["total"] == 0, stats


# ---------------------------------------------------------------------------------------------- browser
@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    from playwright.sync_api import expect

    expect.set_options(timeout=JOB_WAIT_MS)
    browser_context = browser.new_context(viewport={"width": 1280, "height": 900})
    browser_context.set_default_timeout(JOB_WAIT_MS)
    yield browser_context
    browser_context.close()


class Received:
    """The body of every answer the browser got, read the moment it is complete (a page navigated away
    from cannot be read later)."""

    def __init__(self, page: Any) -> None:
        self.bodies: list[tuple[str, str]] = []
        page.on("requestfinished", self.finished)

    def finished(self, request: Any) -> None:
        response = request.response()
        if response is not None and not 300 <= response.status < 400:  # redirects have no body
            self.bodies.append((response.url, response.body().decode("utf-8", "replace")))


def log_in(page: Any, url: str) -> None:
    """Open ``url``, get the login form (no session yet), send the token; lands back on ``url``."""
    from playwright.sync_api import expect

    answer = page.goto(url)
    assert answer is not None and answer.status == 401
    expect(page.get_by_role("heading")).to_have_text("Local Hugging Face Jobs server")
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(url)


def test_the_airflow_link_shows_the_job_and_follows_its_log_live(
    hook: Any, context: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    signal = tmp_path / "go"
    job = hook.run_job(
        image="python:3.12", command=gated(signal), secrets={"API_KEY": CANARY},
        labels={"suite": "pages"}, env={"GREETING": "hello"},
    )  # fmt: skip
    assert job.url == f"{hook.endpoint}/jobs/{NAMESPACE}/{job.id}"  # what the Airflow button opens
    page = context.new_page()
    received = Received(page)
    log_in(page, job.url)
    log = page.locator("#log")
    expect(log).to_contain_text("first line")
    expect(page.locator("#stage")).to_have_text("RUNNING")
    expect(log).not_to_contain_text("second line")
    expect(page.locator("#cancel")).to_be_visible()
    expect(page.locator("#image")).to_have_text("python:3.12")
    expect(page.locator("#secrets")).to_have_text("API_KEY=***")
    expect(page.locator("#environment")).to_have_text("GREETING=hello")
    expect(page.locator("#labels")).to_contain_text("suite=pages")
    signal.touch()
    expect(log).to_contain_text("second line")
    expect(page.locator("#stage")).to_have_text("COMPLETED")
    expect(page.locator("#cancel")).to_have_count(0)
    expect(page.locator("#log-state")).to_have_text("end of log")
    expect(page.locator("#cost")).to_contain_text("CPU Basic")
    expect(page.locator("#finished")).to_contain_text("UTC")
    texts = page.locator("#log .line .text").all_inner_texts()
    assert texts[1:] == ["first line", "second line"] and texts[0].startswith("===== Job started at ")
    page.screenshot(path=str(tmp_path / "job-page.png"), full_page=True)
    # Nothing the browser received holds the token or a secret value.
    served = {urlsplit(url).path for url, _ in received.bodies}
    assert {job_path(job.id), job_path(job.id, "/events"), job_path(job.id, "/status")} <= served
    assert {"/_local/static/job.js", "/_local/static/pages.css"} <= served
    for url, text in received.bodies:
        assert TOKEN not in text and CANARY not in text, url
    assert hook.inspect_job(job.id).stage.value == "COMPLETED"


def test_cancel_on_the_page_cancels_the_job(hook: Any, context: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    job = hook.run_job(image="python:3.12", command=gated(tmp_path / "never", first="waiting"))
    page = context.new_page()
    log_in(page, job.url)
    expect(page.locator("#log")).to_contain_text("waiting")
    expect(page.locator("#stage")).to_have_text("RUNNING")
    page.locator("#cancel").click()
    expect(page.locator("#stage")).to_have_text("CANCELED")
    expect(page).to_have_url(job.url)  # back on the job page after the form's 303
    expect(page.locator("#cancel")).to_have_count(0)
    assert hook.inspect_job(job.id).stage.value == "CANCELED"


def test_the_job_list_links_to_the_job_page(hook: Any, context: Any, server: LocalJobsServer) -> None:
    from playwright.sync_api import expect

    job = hook.run_job(
        image="python:3.12", command=["python", "-c", "print('listed')"], labels={"list": "yes"}
    )
    page = context.new_page()
    log_in(page, server.pages_url)
    link = page.locator(f'a.job-link[href="{job_path(job.id)}"]')
    expect(link).to_have_text(job.id)
    row = page.locator("tr", has=link)
    expect(row).to_contain_text("python:3.12")
    expect(row).to_contain_text("list=yes")
    link.click()
    expect(page).to_have_url(job.url)
    expect(page.locator("#log")).to_contain_text("listed")
    expect(page.locator("#stage")).to_have_text("COMPLETED")


def test_markup_from_a_job_stays_text_in_the_browser(hook: Any, context: Any) -> None:
    from playwright.sync_api import expect

    job = hook.run_job(
        image="python:3.12", command=["python", "-c", f"print({XSS!r}); print('<img src=x onerror=alert(2)>')"],
        env={"NOTE": XSS}, secrets={"API_KEY": CANARY},
    )  # fmt: skip
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    received = Received(page)
    log_in(page, job.url)
    expect(page.locator("#log")).to_contain_text(XSS)
    expect(page.locator("#log")).to_contain_text("<img src=x onerror=alert(2)>")
    expect(page.locator("#log-state")).to_have_text("end of log")
    expect(page.locator("#environment")).to_have_text(f"NOTE={XSS}")
    assert page.locator("#log script, #log img, #environment script").count() == 0
    assert dialogs == []
    assert received.bodies
    for url, text in received.bodies:
        assert TOKEN not in text and CANARY not in text, url


# -------------------------------------------------------------------------------- scheduled jobs (HTTP)
NEVER_SOON = "0 0 1 1 *"  # New Year's midnight: never due during a test


def create_scheduled(
    server: LocalJobsServer, command: list[str], schedule: str = NEVER_SOON, **extra: Any
) -> dict[str, Any]:
    spec = {"command": command, "dockerImage": "python:3.12", "flavor": "cpu-basic", **extra}
    answer = requests.post(
        f"{server.url}/api/scheduled-jobs/{NAMESPACE}", headers=AUTH,
        json={"jobSpec": spec, "schedule": schedule}, timeout=HTTP_TIMEOUT,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()


def scheduled(server: LocalJobsServer, scheduled_id: str) -> dict[str, Any]:
    answer = requests.get(
        f"{server.url}/api/scheduled-jobs/{NAMESPACE}/{scheduled_id}", headers=AUTH, timeout=HTTP_TIMEOUT
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def delete_scheduled(server: LocalJobsServer, scheduled_id: str) -> None:
    requests.delete(
        f"{server.url}/api/scheduled-jobs/{NAMESPACE}/{scheduled_id}", headers=AUTH, timeout=HTTP_TIMEOUT
    )


def runs_of(server: LocalJobsServer, scheduled_id: str) -> list[str]:
    """The ids of the jobs the scheduled job started."""
    jobs = requests.get(f"{server.url}/api/jobs/{NAMESPACE}", headers=AUTH, timeout=HTTP_TIMEOUT).json()
    return [job["id"] for job in jobs if (job.get("initiator") or {}).get("id") == scheduled_id]


def scheduled_action(scheduled_id: str, action: str) -> str:
    return f"/jobs/{NAMESPACE}/scheduled/{scheduled_id}/{action}"


def scheduled_csrf(list_html: str, scheduled_id: str, action: str) -> str:
    """The CSRF field of a scheduled job's button form on the list page."""
    match = re.search(
        rf'action="{re.escape(scheduled_action(scheduled_id, action))}"><input type="hidden" name="csrf" '
        r'value="([0-9a-f]+)"',
        list_html,
    )
    assert match, f"the list has no {action} form with a CSRF field for scheduled job {scheduled_id}"
    return match.group(1)


def test_the_list_shows_scheduled_jobs_escaped_and_without_secrets() -> None:
    with LocalJobsServer(token=TOKEN, namespace=NAMESPACE) as fresh:
        session = logged_in(fresh)
        empty = session.get(f"{fresh.url}/jobs/{NAMESPACE}", timeout=HTTP_TIMEOUT).text
        assert "Scheduled jobs" not in empty and 'class="scheduled"' not in empty  # none: no section
        created = create_scheduled(
            fresh, ["python", "-c", f"print({XSS!r})"], arguments=[f"arg{XSS}"],
            environment={"NOTE": f"env{XSS}"}, secrets={"API_KEY": CANARY, "HF_TOKEN": TOKEN},
            labels={"suite": "pages", "kind": "scheduled"},
        )  # fmt: skip
        sid = created["id"]
        job = create(fresh, ["python", "-c", "print('plain job')"])
        listing = session.get(f"{fresh.url}/jobs/{NAMESPACE}", timeout=HTTP_TIMEOUT)
        assert listing.status_code == 200
        text = listing.text
        assert "<h2>Scheduled jobs</h2>" in text
        assert text.index("Scheduled jobs") < text.index('<table class="jobs">')  # above the jobs
        row = text[text.index(f'<tr id="scheduled-{sid}"') :]
        row = row[: row.index("</tr>")]
        assert f"<code>{sid}</code>" in row and f"<code>{NEVER_SOON}</code>" in row
        assert ">active<" in row and "one at a time" in row and "none yet" in row
        next_run = created["status"]["nextJobRunAt"]  # e.g. 2027-01-01T00:00:00.000Z
        assert f"{next_run[:10]} {next_run[11:19]} UTC" in row
        assert "<code>python:3.12</code>" in row
        assert ESCAPED_XSS in row and XSS not in text and "<script>alert" not in text
        assert "suite=pages" in row and "kind=scheduled" in row
        assert ">Suspend</button>" in row and ">Run now</button>" in row and ">Resume</button>" not in row
        assert job["id"] in text  # the jobs table is still there
        assert CANARY not in text and TOKEN not in text
        for header in ("content-security-policy", "x-frame-options", "referrer-policy", "cache-control"):
            assert header in listing.headers
        # Logged out, the list (and so the scheduled jobs) asks for the token.
        assert is_login_form(requests.get(f"{fresh.url}/jobs/{NAMESPACE}", timeout=HTTP_TIMEOUT))


def test_suspend_resume_and_run_now_need_the_csrf_field_and_this_sites_origin(
    server: LocalJobsServer,
) -> None:
    created = create_scheduled(server, ["python", "-c", "print('scheduled run')"], labels={"page": "buttons"})
    sid = created["id"]
    other = create_scheduled(server, ["python", "-c", "print('other')"])["id"]
    try:
        session = logged_in(server)
        listing = session.get(f"{server.url}/jobs/{NAMESPACE}", timeout=HTTP_TIMEOUT).text
        token = scheduled_csrf(listing, sid, "suspend")
        assert scheduled_csrf(listing, sid, "run") == token  # bound to the scheduled job, not the button
        other_token = scheduled_csrf(listing, other, "suspend")
        stranger = logged_in(server).get(f"{server.url}/jobs/{NAMESPACE}", timeout=HTTP_TIMEOUT).text
        for action in ("suspend", "run"):
            url = f"{server.url}{scheduled_action(sid, action)}"
            refusals = [
                session.post(url, data={}, allow_redirects=False, timeout=HTTP_TIMEOUT),
                session.post(url, data={"csrf": "0" * 64}, allow_redirects=False, timeout=HTTP_TIMEOUT),
                session.post(url, data={"csrf": other_token}, allow_redirects=False, timeout=HTTP_TIMEOUT),
                session.post(url, data={"csrf": scheduled_csrf(stranger, sid, action)}, allow_redirects=False,
                             timeout=HTTP_TIMEOUT),
            ]  # fmt: skip
            assert [answer.status_code for answer in refusals] == [403] * 4, action
            assert "refused" in refusals[0].text and "CSRF" in refusals[0].text
            foreign = session.post(
                url, data={"csrf": token}, headers={"Origin": "http://evil.example"},
                allow_redirects=False, timeout=HTTP_TIMEOUT,
            )  # fmt: skip
            assert foreign.status_code == 403 and "Cross-site request" in foreign.json()["error"]
            assert is_login_form(requests.post(url, data={"csrf": token}, timeout=HTTP_TIMEOUT))
        unchanged = scheduled(server, sid)
        assert unchanged["suspend"] is False and unchanged["status"]["lastJob"] is None
        assert runs_of(server, sid) == []
        # Unknown scheduled jobs and buttons are not found (and never echoed unescaped).
        for path in (scheduled_action("0123456789abcdef01234567", "run"), scheduled_action(sid, "delete"),
                     f"/jobs/bob/scheduled/{sid}/run", scheduled_action(XSS, "run")):  # fmt: skip
            answer = session.post(f"{server.url}{path}", data={"csrf": token}, timeout=HTTP_TIMEOUT)
            assert answer.status_code == 404 and XSS not in answer.text, path
        assert scheduled(server, sid)["status"]["lastJob"] is None

        def press(action: str) -> str:
            answer = session.post(
                f"{server.url}{scheduled_action(sid, action)}", data={"csrf": token},
                headers={"Origin": server.url}, allow_redirects=False, timeout=HTTP_TIMEOUT,
            )  # fmt: skip
            assert answer.status_code == 303 and answer.headers["location"] == f"/jobs/{NAMESPACE}"
            return session.get(f"{server.url}/jobs/{NAMESPACE}", timeout=HTTP_TIMEOUT).text

        after = press("suspend")
        state = scheduled(server, sid)
        assert state["suspend"] is True and state["status"]["nextJobRunAt"] is None
        assert f"Scheduled job {sid} suspended" in after and 'class="notice"' in after
        row = after[after.index(f'<tr id="scheduled-{sid}"') :]
        row = row[: row.index("</tr>")]
        assert ">suspended<" in row and ">Resume</button>" in row and ">Suspend</button>" not in row
        assert scheduled(server, other)["suspend"] is False  # the other one is untouched
        after = press("resume")
        assert scheduled(server, sid)["suspend"] is False and f"Scheduled job {sid} resumed" in after
        assert "suspended:" not in after  # a message is shown once
        after = press("run")
        [run] = runs_of(server, sid)
        assert scheduled(server, sid)["status"]["lastJob"]["id"] == run
        assert f"run {run} started" in after
        assert f'<a class="last-run" href="{job_path(run)}"><code>{run}</code></a>' in after
        wait_stage(server, run, TERMINAL)
        page = session.get(f"{server.url}{job_path(run)}", timeout=HTTP_TIMEOUT).text
        assert ">Started by</th>" in page
        assert f'scheduled job <a href="/jobs/{NAMESPACE}#scheduled-{sid}"><code>{sid}</code></a>' in page
        # A plain job says who started it too.
        plain = create(server, ["python", "-c", "print('by hand')"])
        assert f"user {NAMESPACE}" in session.get(f"{server.url}{job_path(plain['id'])}", timeout=30).text
        # A script with the bearer token needs no page field, as for cancel.
        bearer = requests.post(
            f"{server.url}{scheduled_action(sid, 'suspend')}", headers=AUTH, allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )  # fmt: skip
        assert bearer.status_code == 303 and scheduled(server, sid)["suspend"] is True
    finally:
        delete_scheduled(server, sid)
        delete_scheduled(server, other)


def test_run_now_while_a_run_is_active_shows_the_409_and_starts_nothing(
    server: LocalJobsServer, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    sid = create_scheduled(server, gated(go, first="scheduled run waiting"))["id"]
    try:
        session = logged_in(server)
        token = scheduled_csrf(session.get(f"{server.url}/jobs/{NAMESPACE}", timeout=30).text, sid, "run")
        url = f"{server.url}{scheduled_action(sid, 'run')}"
        first = session.post(url, data={"csrf": token}, allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert first.status_code == 303
        [run] = runs_of(server, sid)
        wait_stage(server, run, ("RUNNING",))
        again = session.post(url, data={"csrf": token}, timeout=HTTP_TIMEOUT)  # follows the 303
        assert again.status_code == 200 and again.url == f"{server.url}/jobs/{NAMESPACE}"
        assert "Run now refused (409)" in again.text and 'role="alert"' in again.text
        assert f"its run {run} is still RUNNING" in again.text
        assert runs_of(server, sid) == [run]  # nothing started
        assert scheduled(server, sid)["status"]["lastJob"]["id"] == run
        assert "Run now refused" not in session.get(f"{server.url}/jobs/{NAMESPACE}", timeout=30).text
        # The API route answers the same refusal, from the same function.
        api = requests.post(
            f"{server.url}/api/scheduled-jobs/{NAMESPACE}/{sid}/run", headers=AUTH, timeout=HTTP_TIMEOUT
        )
        assert api.status_code == 409 and f"its run {run} is still RUNNING" in api.json()["error"]
        # Without a page session (the bearer token) the refusal is the answer itself.
        bearer = requests.post(url, headers=AUTH, allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert bearer.status_code == 409 and "Run now refused (409)" in bearer.text
        assert runs_of(server, sid) == [run]
        go.touch()
        assert wait_stage(server, run, TERMINAL) == "COMPLETED"
    finally:
        delete_scheduled(server, sid)


# ------------------------------------------------------------------------------ scheduled jobs (browser)
def test_run_now_on_the_list_starts_a_run_whose_page_names_the_scheduled_job(
    server: LocalJobsServer, context: Any
) -> None:
    from playwright.sync_api import expect

    sid = create_scheduled(
        server, ["python", "-c", "print('run from the page')"], labels={"browser": "scheduled"}
    )["id"]
    try:
        page = context.new_page()
        log_in(page, server.pages_url)
        row = page.locator(f"#scheduled-{sid}")
        expect(row).to_contain_text("active")
        expect(row).to_contain_text("none yet")
        expect(row).to_contain_text("browser=scheduled")
        row.get_by_role("button", name="Run now").click()
        expect(page).to_have_url(server.pages_url)
        expect(page.locator(".notice")).to_contain_text(f"Scheduled job {sid}: run ")
        link = row.locator("a.last-run")
        expect(link).to_have_count(1)
        [run] = runs_of(server, sid)
        expect(link).to_have_text(run)
        expect(row).to_contain_text("UTC")
        link.click()
        expect(page).to_have_url(f"{server.url}{job_path(run)}")
        expect(page.locator("#log")).to_contain_text("run from the page")
        expect(page.locator("#stage")).to_have_text("COMPLETED")
        started_by = page.locator("tr", has=page.locator("#initiator"))
        expect(started_by.locator("th")).to_have_text("Started by")
        expect(page.locator("#initiator")).to_have_text(f"scheduled job {sid}")
        # The scheduled job's link on the run's page goes back to its row on the list.
        page.locator("#initiator a").click()
        expect(page.locator(f"#scheduled-{sid}")).to_contain_text(run)
    finally:
        delete_scheduled(server, sid)
