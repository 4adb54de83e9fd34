"""The local server's job pages: what the Airflow "Hugging Face Job" link (``JobInfo.url``) opens.

Plain HTTP first (the data-less shell, the JSON views a session opens, escaping, no secret ever served),
then a real headless Chromium driven by Playwright: log in through the form, follow a running job's log
live, cancel from the page, go from the list to a job, press the scheduled jobs' buttons. Sessions, the
``Origin`` rule and what a page of another local port can do: ``test_job_page_sessions.py``. The browser
is Debian's chromium (``make browser`` installs it as root; ``HFJOBS_CHROMIUM`` names another); without it
the browser tests skip, loudly. Every wait is bounded and waits for a condition (a signal file, a line on
the page, a stage), never for luck.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.local.faults import Fault
from tests.integration.browser import Received, log_in, page_context, tab_session
from tests.integration.conftest import NAMESPACE, TOKEN
from tests.integration.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_job_left_behind")]

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SESSION_HEADER = "X-HFJobs-Session"
CANARY = "s3cr3t-canary-7d1f0e"
XSS = "<script>alert(1)</script>"
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
HTTP_TIMEOUT = 30
SCRIPT = Path(__file__).parents[2] / "airflow_provider_hfjobs" / "local" / "static" / "job.js"


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


LIST = f"/jobs/{NAMESPACE}"


def view(path: str) -> str:
    """The JSON view of a page: what its script fetches, with the session header."""
    return f"/_local/view{path}"


def open_session(server: LocalJobsServer) -> str:
    """A page session, got as the page's script gets it (``POST /_local/login``, JSON, same origin)."""
    answer = requests.post(
        f"{server.url}/_local/login", json={"token": TOKEN}, headers={"Origin": server.url},
        timeout=HTTP_TIMEOUT,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()["session"]


def logged_in(server: LocalJobsServer) -> requests.Session:
    """A client sending a page session in its header, as the page's script does (and no cookie)."""
    session = requests.Session()
    session.headers[SESSION_HEADER] = open_session(server)
    return session


def is_login_shell(answer: requests.Response) -> bool:
    """The data-less page every job path answers a request without credentials (a browser's navigation)."""
    return (
        answer.status_code == 401
        and '<form id="login-form" method="post" action="/_local/login">' in answer.text
        and 'name="token"' in answer.text
        and "hfjobs-local serve" in answer.text
        and '<script src="/_local/static/job.js" defer></script>' in answer.text
    )


def elements(node: Any) -> Iterator[list[Any]]:
    """Every element of a JsonML node (``[tag, {attributes}, *children]``), depth first."""
    if isinstance(node, list):
        yield node
        for child in node[2:]:
            yield from elements(child)


def text(node: Any) -> str:
    return node if isinstance(node, str) else "".join(text(child) for child in node[2:])


def all_elements(page: dict[str, Any]) -> list[list[Any]]:
    return [element for root in page["body"] for element in elements(root)]


def by_id(page: dict[str, Any], ident: str) -> list[Any]:
    found = [element for element in all_elements(page) if element[1].get("id") == ident]
    assert len(found) == 1, (ident, found)
    return found[0]


def where(page: dict[str, Any], **attributes: str) -> list[list[Any]]:
    """The elements with these attributes (``class_`` for ``class``, ``data_action`` for ``data-action``)."""
    wanted = {key.rstrip("_").replace("_", "-"): value for key, value in attributes.items()}
    return [e for e in all_elements(page) if all(e[1].get(k) == v for k, v in wanted.items())]


def script_whitelist(name: str) -> set[str]:
    """A ``new Set([...])`` of the page's script: what it builds (tags) or sets (attributes)."""
    match = re.search(rf"const {name} = new Set\(\[(.*?)\]\);", SCRIPT.read_text(), re.S)
    assert match, name
    return set(re.findall(r'"([^"]+)"', match.group(1)))


def other_port(server: LocalJobsServer) -> int:
    return server.port + 1 if server.port < 65535 else server.port - 1


# ------------------------------------------------------------------------------------------- plain HTTP
def test_the_server_names_its_pages_and_the_root_leads_there(server: LocalJobsServer) -> None:
    assert server.pages_url == f"{server.url}/jobs/{NAMESPACE}"
    for path in ("/", "/jobs"):
        answer = requests.get(f"{server.url}{path}", allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 303 and answer.headers["location"] == f"/jobs/{NAMESPACE}"
    script = requests.get(f"{server.url}/_local/static/job.js", timeout=HTTP_TIMEOUT)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    # Text only, no HTML sink; no cookie ever; the session from this tab's origin-scoped storage.
    assert "textContent" in script.text and "createTextNode" in script.text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in script.text, sink
    assert "document.cookie" not in script.text and 'credentials: "omit"' in script.text
    assert "sessionStorage" in script.text and "localStorage" not in script.text
    style = requests.get(f"{server.url}/_local/static/pages.css", timeout=HTTP_TIMEOUT)
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert requests.get(f"{server.url}/favicon.ico", timeout=HTTP_TIMEOUT).status_code == 204
    for name in ("../pages.py", "..%2Fpages.py", "nope.js"):
        assert requests.get(f"{server.url}/_local/static/{name}", timeout=HTTP_TIMEOUT).status_code == 404


def test_without_a_session_every_page_is_a_shell_without_data(server: LocalJobsServer) -> None:
    job = create(server, ["python", "-c", "print('hi')"], labels={"shown": "never-logged-out"})
    for path in (LIST, job_path(job["id"])):
        answer = requests.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT)
        assert is_login_shell(answer), answer.text
        assert job["id"] not in answer.text and "never-logged-out" not in answer.text  # no data at all
        assert "set-cookie" not in answer.headers and "csrf" not in answer.text
        headers = answer.headers
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
        assert "require-trusted-types-for 'script'" in policy and "frame-ancestors 'none'" in policy
        assert (headers["x-frame-options"], headers["referrer-policy"], headers["cache-control"]) == (
            "DENY", "same-origin", "no-store",
        )  # fmt: skip
        assert headers["cross-origin-resource-policy"] == "same-origin"
    # The data is behind the session header (or the bearer token): without either, 401 and nothing else.
    for path in (view(LIST), view(job_path(job["id"])), job_path(job["id"], "/events"),
                 job_path(job["id"], "/status")):  # fmt: skip
        answer = requests.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT)
        assert answer.status_code == 401 and answer.json() == {"error": "Log in"}, path
    refused = requests.post(f"{server.url}{job_path(job['id'], '/cancel')}", timeout=HTTP_TIMEOUT)
    assert refused.status_code == 401 and refused.json() == {"error": "Log in"}
    # A wrong bearer token or session is no better than none; the right token opens everything (scripts).
    for wrong in ({"Authorization": "Bearer x"}, {SESSION_HEADER: "x" * 43}, {SESSION_HEADER: TOKEN}):
        assert is_login_shell(requests.get(f"{server.url}{job_path(job['id'])}", headers=wrong, timeout=30))
        assert (
            requests.get(f"{server.url}{view(job_path(job['id']))}", headers=wrong, timeout=30).status_code
            == 401
        )
    assert requests.get(f"{server.url}{job_path(job['id'])}", headers=AUTH, timeout=30).status_code == 200
    data = requests.get(f"{server.url}{view(job_path(job['id']))}", headers=AUTH, timeout=30)
    assert data.status_code == 200 and text(by_id(data.json(), "labels")) == "shown=never-logged-out"


def test_the_views_hold_only_text_and_never_a_secret_or_the_token(server: LocalJobsServer) -> None:
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
    paths = (
        view(job_path(job["id"])),
        view(LIST),
        job_path(job["id"], "/status"),
        job_path(job["id"], "/events"),
    )
    bodies = {path: session.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT).text for path in paths}
    for path, body in bodies.items():
        assert CANARY not in body and TOKEN not in body, path
    for path in (view(job_path(job["id"])), view(LIST)):
        assert "<" not in bodies[path] and ">" not in bodies[path], path  # JSON with \u003c: never markup
    detail = json.loads(bodies[view(job_path(job["id"]))])
    # Values are strings in the view, which the script inserts as text nodes: markup stays text.
    assert [text(chip) for chip in elements(by_id(detail, "environment")) if chip[0] == "span"] == [
        f"NOTE=env{XSS}", "TOKEN_NAME_IS_FINE=yes",
    ]  # fmt: skip
    assert text(by_id(detail, "secrets")) == "API_KEY=***HF_TOKEN=***"  # secret names only
    assert text(by_id(detail, "labels")) == "kind=xss-checksuite=pages"
    assert f"arg{XSS}" in text(by_id(detail, "command"))
    # Every element is one the script builds, and every link or button goes to this server's paths.
    tags, attributes = script_whitelist("TAGS"), script_whitelist("ATTRIBUTES")
    for page in (detail, json.loads(bodies[view(LIST)])):
        for element in all_elements(page):
            assert element[0] in tags and set(element[1]) <= attributes, element
            for key in ("href", "data-action"):
                assert key not in element[1] or re.match(r"^/(?![/\\])", element[1][key]), element
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
        for path in (view(job_path(waiting["id"])), job_path(waiting["id"], "/status"), view(LIST)):
            answer = session.get(f"{small.url}{path}", timeout=HTTP_TIMEOUT)
            assert answer.status_code == 200 and CANARY not in answer.text and TOKEN not in answer.text, path
        (tmp_path / "go").touch()
        wait_stage(small, waiting["id"], TERMINAL)


def test_unknown_jobs_and_other_namespaces_are_not_found(server: LocalJobsServer) -> None:
    job = create(server, ["python", "-c", "print('hi')"])
    session = logged_in(server)
    markup = "<img src=x onerror=alert(1)>"  # one path segment (XSS has a slash: no route at all)
    for path in (view("/jobs/alice/0123456789abcdef01234567"), view(f"/jobs/bob/{job['id']}"), view("/jobs/bob"),
                 f"/jobs/bob/{job['id']}/status", view(f"/jobs/{NAMESPACE}/{markup}")):  # fmt: skip
        answer = session.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT)
        assert answer.status_code == 404, path
        assert "<" not in answer.text and text(answer.json()["body"][0]) == "Not found", path
    missing = session.get(f"{server.url}{view(f'/jobs/{NAMESPACE}/{markup}')}", timeout=HTTP_TIMEOUT).json()
    assert markup in text(missing["body"][1]) and missing["error"] == text(missing["body"][1])  # as text
    nowhere = session.get(f"{server.url}{view(f'/jobs/{NAMESPACE}/{XSS}')}", timeout=HTTP_TIMEOUT)
    assert nowhere.status_code == 404 and "<" not in nowhere.text
    # Without a session, nothing says whether the job exists.
    for path in (view("/jobs/alice/0123456789abcdef01234567"), view(job_path(job["id"]))):
        assert requests.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT).json() == {"error": "Log in"}


def test_the_page_and_the_api_stream_the_same_log(server: LocalJobsServer) -> None:
    job = create(server, ["python", "-c", "for i in range(5): print('line', i)"])
    wait_stage(server, job["id"], TERMINAL)
    api = requests.get(f"{server.url}/api/jobs/{NAMESPACE}/{job['id']}/logs", headers=AUTH, timeout=30).text
    page = logged_in(server).get(f"{server.url}{job_path(job['id'], '/events')}", timeout=HTTP_TIMEOUT).text
    assert page == api + 'event: end\ndata: {"stage": "COMPLETED"}\n\n'


def test_page_requests_are_neither_faulted_nor_counted(server: LocalJobsServer) -> None:
    job = create(server, ["python", "-c", "print('hi')"])
    requests.delete(f"{server.url}/_local/stats", headers=AUTH, timeout=HTTP_TIMEOUT)
    server.add_fault(Fault(kind="status", status=503, times=1))
    try:
        session = logged_in(server)
        for path in (LIST, job_path(job["id"]), view(LIST), view(job_path(job["id"])),
                     job_path(job["id"], "/status"), "/"):  # fmt: skip
            assert session.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT).status_code == 200, path
        assert [fault.times for fault in server.faults.active()] == [1]  # still there for the API
    finally:
        server.clear_faults()
    stats = requests.get(f"{server.url}/_local/stats", headers=AUTH, timeout=HTTP_TIMEOUT).json()
    assert stats["total"] == 0, stats


# ---------------------------------------------------------------------------------------------- browser
@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    yield from page_context(browser)


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
    log_in(page, job.url, TOKEN)
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
    # The session is in this tab's sessionStorage, never in a cookie.
    tab_session(page)
    assert context.cookies() == []
    # Nothing the browser received holds the token or a secret value.
    received.wait_for(page, {
        job_path(job.id), view(job_path(job.id)), job_path(job.id, "/events"), job_path(job.id, "/status"),
        "/_local/static/job.js", "/_local/static/pages.css", "/_local/login",
    })  # fmt: skip
    for url, body in [*received.bodies, (page.url, page.content())]:
        assert TOKEN not in body and CANARY not in body, url
    assert hook.inspect_job(job.id).stage.value == "COMPLETED"


def test_cancel_on_the_page_cancels_the_job(hook: Any, context: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    job = hook.run_job(image="python:3.12", command=gated(tmp_path / "never", first="waiting"))
    page = context.new_page()
    log_in(page, job.url, TOKEN)
    expect(page.locator("#log")).to_contain_text("waiting")
    expect(page.locator("#stage")).to_have_text("RUNNING")
    page.locator("#cancel").click()
    expect(page.locator("#stage")).to_have_text("CANCELED")
    expect(page.locator(".notice")).to_contain_text(f"Job {job.id}")
    expect(page).to_have_url(job.url)
    expect(page.locator("#cancel")).to_have_count(0)
    expect(page.locator("#log-state")).to_have_text("end of log")
    assert hook.inspect_job(job.id).stage.value == "CANCELED"


def test_the_job_list_links_to_the_job_page(hook: Any, context: Any, server: LocalJobsServer) -> None:
    from playwright.sync_api import expect

    job = hook.run_job(
        image="python:3.12", command=["python", "-c", "print('listed')"], labels={"list": "yes"}
    )
    page = context.new_page()
    log_in(page, server.pages_url, TOKEN)
    link = page.locator(f'a.job-link[href="{job_path(job.id)}"]')
    expect(link).to_have_text(job.id)
    row = page.locator("tr", has=link)
    expect(row).to_contain_text("python:3.12")
    expect(row).to_contain_text("list=yes")
    link.click()  # a new page load: the tab's session goes along (no second login)
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
    log_in(page, job.url, TOKEN)
    expect(page.locator("#log")).to_contain_text(XSS)
    expect(page.locator("#log")).to_contain_text("<img src=x onerror=alert(2)>")
    expect(page.locator("#log-state")).to_have_text("end of log")
    expect(page.locator("#environment")).to_have_text(f"NOTE={XSS}")
    expect(page.locator("#command")).to_contain_text("<img src=x onerror=alert(2)>")
    assert page.locator("#content script, #content img, #log script, #log img").count() == 0
    assert dialogs == []
    assert received.bodies
    for url, body in [*received.bodies, (page.url, page.content())]:
        assert TOKEN not in body and CANARY not in body, url


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


def scheduled_row(listing: dict[str, Any], scheduled_id: str) -> list[Any]:
    return by_id(listing, f"scheduled-{scheduled_id}")


def buttons(row: list[Any]) -> dict[str, str]:
    """A row's buttons: label -> the path it posts to."""
    return {text(element): element[1]["data-action"] for element in elements(row) if element[0] == "button"}


def test_the_list_shows_scheduled_jobs_as_text_and_without_secrets() -> None:
    with LocalJobsServer(token=TOKEN, namespace=NAMESPACE) as fresh:
        session = logged_in(fresh)
        empty = session.get(f"{fresh.url}{view(LIST)}", timeout=HTTP_TIMEOUT).json()
        assert where(empty, id="scheduled") == [] and "Scheduled jobs" not in json.dumps(empty)
        created = create_scheduled(
            fresh, ["python", "-c", f"print({XSS!r})"], arguments=[f"arg{XSS}"],
            environment={"NOTE": f"env{XSS}"}, secrets={"API_KEY": CANARY, "HF_TOKEN": TOKEN},
            labels={"suite": "pages", "kind": "scheduled"},
        )  # fmt: skip
        sid = created["id"]
        job = create(fresh, ["python", "-c", "print('plain job')"])
        answer = session.get(f"{fresh.url}{view(LIST)}", timeout=HTTP_TIMEOUT)
        assert answer.status_code == 200
        assert "<" not in answer.text and CANARY not in answer.text and TOKEN not in answer.text
        listing = answer.json()
        [section] = where(listing, id="scheduled")
        assert text(section[2]) == "Scheduled jobs"
        body = listing["body"]
        assert body.index(section) < body.index(where(listing, class_="jobs")[0])  # above the jobs
        row = scheduled_row(listing, sid)
        cells = [text(cell) for cell in row[2:]]
        next_run = created["status"]["nextJobRunAt"]  # e.g. 2027-01-01T00:00:00.000Z
        assert cells[:6] == [sid, NEVER_SOON, "active", "one at a time", f"{next_run[:10]} {next_run[11:19]} UTC",
                             "none yet"]  # fmt: skip
        assert cells[6] == "python:3.12" and XSS in cells[7] and cells[8] == "kind=scheduledsuite=pages"
        assert buttons(row) == {
            "Suspend": scheduled_action(sid, "suspend"),
            "Run now": scheduled_action(sid, "run"),
        }
        assert any(
            job["id"] == text(link) for link in where(listing, class_="job-link")
        )  # the jobs are there
        for header in ("content-security-policy", "x-frame-options", "referrer-policy", "cache-control"):
            assert header in answer.headers
        # Logged out, the list (and so the scheduled jobs) is a shell, its view a 401.
        assert is_login_shell(requests.get(f"{fresh.url}{LIST}", timeout=HTTP_TIMEOUT))
        assert requests.get(f"{fresh.url}{view(LIST)}", timeout=HTTP_TIMEOUT).status_code == 401


def test_suspend_resume_and_run_now_need_the_session_header_and_this_servers_origin(
    server: LocalJobsServer,
) -> None:
    created = create_scheduled(server, ["python", "-c", "print('scheduled run')"], labels={"page": "buttons"})
    sid = created["id"]
    other = create_scheduled(server, ["python", "-c", "print('other')"])["id"]
    try:
        session = logged_in(server)
        session_id = str(session.headers[SESSION_HEADER])
        for action in ("suspend", "run"):
            url = f"{server.url}{scheduled_action(sid, action)}"
            refusals = [
                requests.post(url, timeout=HTTP_TIMEOUT),
                requests.post(url, headers={SESSION_HEADER: "0" * 43}, timeout=HTTP_TIMEOUT),
                requests.post(url, cookies={f"hfjobs_local_{server.port}": session_id}, timeout=HTTP_TIMEOUT),
                requests.post(url, data={"csrf": "0" * 64}, timeout=HTTP_TIMEOUT),
            ]
            assert [answer.status_code for answer in refusals] == [401] * 4, action
            for origin in ("http://evil.example", f"http://127.0.0.1:{other_port(server)}"):
                foreign = session.post(url, headers={"Origin": origin}, timeout=HTTP_TIMEOUT)
                assert foreign.status_code == 403 and "Cross-site request" in foreign.json()["error"], origin
        unchanged = scheduled(server, sid)
        assert unchanged["suspend"] is False and unchanged["status"]["lastJob"] is None
        assert runs_of(server, sid) == []
        # Unknown scheduled jobs and buttons are not found (and never echoed as markup).
        for path in (scheduled_action("0123456789abcdef01234567", "run"), scheduled_action(sid, "delete"),
                     f"/jobs/bob/scheduled/{sid}/run", scheduled_action(XSS, "run")):  # fmt: skip
            answer = session.post(f"{server.url}{path}", timeout=HTTP_TIMEOUT)
            assert answer.status_code == 404 and "<" not in answer.text, path
        assert scheduled(server, sid)["status"]["lastJob"] is None

        def press(action: str) -> tuple[str, dict[str, Any]]:
            answer = session.post(
                f"{server.url}{scheduled_action(sid, action)}", headers={"Origin": server.url},
                allow_redirects=False, timeout=HTTP_TIMEOUT,
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            return answer.json()["notice"], session.get(f"{server.url}{view(LIST)}", timeout=30).json()

        notice, listing = press("suspend")
        state = scheduled(server, sid)
        assert state["suspend"] is True and state["status"]["nextJobRunAt"] is None
        assert notice == f"Scheduled job {sid} suspended: no runs until it is resumed."
        row = scheduled_row(listing, sid)
        assert text(row[4]) == "suspended" and set(buttons(row)) == {"Resume", "Run now"}
        assert scheduled(server, other)["suspend"] is False  # the other one is untouched
        notice, listing = press("resume")
        assert scheduled(server, sid)["suspend"] is False and notice == f"Scheduled job {sid} resumed."
        notice, listing = press("run")
        [run] = runs_of(server, sid)
        assert scheduled(server, sid)["status"]["lastJob"]["id"] == run
        assert notice == f"Scheduled job {sid}: run {run} started."
        [last] = where(listing, class_="last-run")
        assert last[1]["href"] == job_path(run) and text(last) == run
        wait_stage(server, run, TERMINAL)
        page = session.get(f"{server.url}{view(job_path(run))}", timeout=HTTP_TIMEOUT).json()
        started_by = by_id(page, "initiator")
        assert text(started_by) == f"scheduled job {sid}"
        assert [e[1]["href"] for e in elements(started_by) if e[0] == "a"] == [
            f"/jobs/{NAMESPACE}#scheduled-{sid}"
        ]
        assert any(text(e) == "Started by" for e in where(page, scope="row"))
        # A plain job says who started it too.
        plain = create(server, ["python", "-c", "print('by hand')"])
        plain_page = session.get(f"{server.url}{view(job_path(plain['id']))}", timeout=HTTP_TIMEOUT).json()
        assert text(by_id(plain_page, "initiator")) == f"user {NAMESPACE}"
        # A script with the bearer token may press the buttons too.
        bearer = requests.post(
            f"{server.url}{scheduled_action(sid, 'suspend')}", headers=AUTH, timeout=HTTP_TIMEOUT
        )
        assert bearer.status_code == 200 and scheduled(server, sid)["suspend"] is True
    finally:
        delete_scheduled(server, sid)
        delete_scheduled(server, other)


def test_run_now_while_a_run_is_active_answers_the_409_and_starts_nothing(
    server: LocalJobsServer, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    sid = create_scheduled(server, gated(go, first="scheduled run waiting"))["id"]
    try:
        session = logged_in(server)
        url = f"{server.url}{scheduled_action(sid, 'run')}"
        first = session.post(url, timeout=HTTP_TIMEOUT)
        assert first.status_code == 200
        [run] = runs_of(server, sid)
        wait_stage(server, run, ("RUNNING",))
        again = session.post(url, timeout=HTTP_TIMEOUT)
        assert again.status_code == 409
        refusal = again.json()["error"]
        assert refusal.startswith("Run now refused (409): ") and f"its run {run} is still RUNNING" in refusal
        assert runs_of(server, sid) == [run]  # nothing started
        assert scheduled(server, sid)["status"]["lastJob"]["id"] == run
        # The API route answers the same refusal, from the same function.
        api = requests.post(
            f"{server.url}/api/scheduled-jobs/{NAMESPACE}/{sid}/run", headers=AUTH, timeout=HTTP_TIMEOUT
        )
        assert api.status_code == 409 and f"its run {run} is still RUNNING" in api.json()["error"]
        bearer = requests.post(url, headers=AUTH, timeout=HTTP_TIMEOUT)
        assert bearer.status_code == 409 and bearer.json()["error"] == refusal
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
        log_in(page, server.pages_url, TOKEN)
        row = page.locator(f"#scheduled-{sid}")
        expect(row).to_contain_text("active")
        expect(row).to_contain_text("none yet")
        expect(row).to_contain_text("browser=scheduled")
        row.get_by_role("button", name="Suspend").click()
        expect(page.locator(".notice")).to_have_text(
            f"Scheduled job {sid} suspended: no runs until it is resumed."
        )
        expect(row).to_contain_text("suspended")
        row.get_by_role("button", name="Resume").click()
        expect(page.locator(".notice")).to_have_text(f"Scheduled job {sid} resumed.")
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


def test_a_refused_run_now_shows_the_409_on_the_list(
    server: LocalJobsServer, context: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    go = tmp_path / "go"
    sid = create_scheduled(server, gated(go, first="busy"))["id"]
    try:
        first = requests.post(
            f"{server.url}/api/scheduled-jobs/{NAMESPACE}/{sid}/run", headers=AUTH, timeout=30
        )
        run = first.json()["id"]
        wait_stage(server, run, ("RUNNING",))
        page = context.new_page()
        log_in(page, server.pages_url, TOKEN)
        page.locator(f"#scheduled-{sid}").get_by_role("button", name="Run now").click()
        expect(page.get_by_role("alert")).to_contain_text("Run now refused (409): ")
        expect(page.get_by_role("alert")).to_contain_text(f"its run {run} is still RUNNING")
        assert runs_of(server, sid) == [run]
        go.touch()
        assert wait_stage(server, run, TERMINAL) == "COMPLETED"
    finally:
        delete_scheduled(server, sid)
