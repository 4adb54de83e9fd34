"""Job-page sessions are bound to this server's origin: what another local web server (a dev server, a
notebook, a job's exposed port: another port of 127.0.0.1) can do with a logged-in browser.

No cookie is ever set, so nothing goes to other ports; the session lives in the tab's ``sessionStorage``
and travels in the ``X-HFJobs-Session`` header, which no other origin can send; a state change whose
``Origin`` is not this server's own is refused (403); logout is a POST with the header. Plain HTTP
first, then headless Chromium with a second local server started by the test (:class:`Bystander`),
whose page tries everything and whose server replays whatever the browser sent it. Every wait is
bounded and waits for a condition (a stage, a promise, a request's end), never for luck.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer
from tests.integration.browser import SESSION_KEY, Bystander, log_in, page_context, tab_session
from tests.integration.conftest import NAMESPACE, TOKEN
from tests.integration.test_job_pages import (
    AUTH,
    HTTP_TIMEOUT,
    LIST,
    SESSION_HEADER,
    by_id,
    create,
    create_scheduled,
    delete_scheduled,
    gated,
    is_login_shell,
    job_path,
    logged_in,
    open_session,
    other_port,
    runs_of,
    scheduled,
    scheduled_action,
    stage_of,
    text,
    view,
    wait_stage,
    where,
)

pytestmark = [
    pytest.mark.integration, pytest.mark.airflow_free, pytest.mark.usefixtures("no_job_left_behind")
]
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    yield from page_context(browser)


# ------------------------------------------------------------------------------------------- plain HTTP
def test_a_wrong_token_gets_no_session_and_no_cookie(server: LocalJobsServer) -> None:
    for token in ("hf_wrong", "", TOKEN + "x", TOKEN[:-1]):
        answer = requests.post(
            f"{server.url}/_local/login", json={"token": token}, allow_redirects=False, timeout=HTTP_TIMEOUT
        )
        assert answer.status_code == 401, answer.text
        assert "not this server's token" in answer.json()["error"] and "session" not in answer.json()
        assert "set-cookie" not in answer.headers
        assert token == "" or token not in answer.text
    # Only the page's script logs in (JSON): the old form post gets no session, and no cookie.
    for body in ({"token": TOKEN, "next": "/"}, f"token={TOKEN}"):
        answer = requests.post(f"{server.url}/_local/login", data=body, allow_redirects=False, timeout=30)
        assert answer.status_code == 400 and "set-cookie" not in answer.headers and TOKEN not in answer.text


def test_the_right_token_opens_a_session_that_is_neither_the_token_nor_a_cookie(
    server: LocalJobsServer,
) -> None:
    answer = requests.post(
        f"{server.url}/_local/login", json={"token": f"  {TOKEN}\n", "next": "//evil.example/"},
        headers={"Origin": server.url}, allow_redirects=False, timeout=HTTP_TIMEOUT,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert "set-cookie" not in answer.headers and "location" not in answer.headers  # no cookie, no redirect
    sid = answer.json()["session"]
    assert len(sid) >= 32 and TOKEN not in sid and sid not in TOKEN and TOKEN not in answer.text
    header = {SESSION_HEADER: sid}
    listing = requests.get(f"{server.url}{view(LIST)}", headers=header, timeout=HTTP_TIMEOUT)
    assert listing.status_code == 200 and text(listing.json()["body"][0]) == f"Jobs of {NAMESPACE}"
    assert listing.json()["namespace"] == NAMESPACE and "set-cookie" not in listing.headers
    assert open_session(server) != sid  # each login its own session
    # Logging out (POST, with the header) ends the session on the server: the id opens nothing any more.
    out = requests.post(
        f"{server.url}/_local/logout", headers={**header, "Origin": server.url}, timeout=HTTP_TIMEOUT
    )
    assert out.status_code == 200 and "set-cookie" not in out.headers
    assert requests.get(f"{server.url}{view(LIST)}", headers=header, timeout=HTTP_TIMEOUT).status_code == 401
    assert (
        requests.post(f"{server.url}/_local/logout", headers=header, timeout=HTTP_TIMEOUT).status_code == 401
    )


def test_get_logout_changes_nothing(server: LocalJobsServer) -> None:
    """Any page could make the browser GET a URL (an ``<img>``): a GET must not end a session. Nor may a
    POST without the session's header (all a form or a cookie-carrying request could send)."""
    sid = open_session(server)
    header = {SESSION_HEADER: sid}
    cookies = {f"hfjobs_local_{server.port}": sid, "hfjobs_local": sid}
    for answer in (
        requests.get(f"{server.url}/_local/logout", headers=header, allow_redirects=False, timeout=30),
        requests.get(
            f"{server.url}/_local/logout?next=/", cookies=cookies, allow_redirects=False, timeout=30
        ),
        requests.head(f"{server.url}/_local/logout", headers=header, allow_redirects=False, timeout=30),
    ):
        assert answer.status_code == 405, answer.text
        assert "set-cookie" not in answer.headers
    refused = requests.post(f"{server.url}/_local/logout", cookies=cookies, data={"x": "1"}, timeout=30)
    assert refused.status_code == 401
    other_origin = requests.post(
        f"{server.url}/_local/logout", headers={**header, "Origin": f"http://127.0.0.1:{other_port(server)}"},
        timeout=HTTP_TIMEOUT,
    )  # fmt: skip
    assert other_origin.status_code == 403
    assert requests.get(f"{server.url}{view(LIST)}", headers=header, timeout=HTTP_TIMEOUT).status_code == 200


def test_the_old_session_cookie_grants_nothing(server: LocalJobsServer, tmp_path: Path) -> None:
    """A browser may still hold the cookie of an older version (or another local server may have been
    sent one): the server never reads a cookie, whatever it holds."""
    job = create(server, gated(tmp_path / "never", first="cookie test line"))
    wait_stage(server, job["id"], ("RUNNING",))
    sid = create_scheduled(server, ["python", "-c", "print('never by a cookie')"])["id"]
    try:
        session_id = open_session(server)
        jar = {f"hfjobs_local_{server.port}": session_id, "hfjobs_local": session_id}
        for path in (LIST, job_path(job["id"])):
            answer = requests.get(f"{server.url}{path}", cookies=jar, timeout=HTTP_TIMEOUT)
            assert is_login_shell(answer) and job["id"] not in answer.text, path
        for path in (view(LIST), view(job_path(job["id"])), job_path(job["id"], "/status"),
                     job_path(job["id"], "/events")):  # fmt: skip
            answer = requests.get(f"{server.url}{path}", cookies=jar, timeout=HTTP_TIMEOUT)
            assert answer.status_code == 401 and "cookie test line" not in answer.text, path
        for path in (
            job_path(job["id"], "/cancel"),
            scheduled_action(sid, "run"),
            scheduled_action(sid, "suspend"),
        ):
            answer = requests.post(
                f"{server.url}{path}", cookies=jar, headers={"Origin": server.url}, timeout=HTTP_TIMEOUT
            )
            assert answer.status_code == 401, path
        assert stage_of(server, job["id"]) == "RUNNING"
        assert runs_of(server, sid) == [] and scheduled(server, sid)["suspend"] is False
    finally:
        delete_scheduled(server, sid)
        requests.post(f"{server.url}/api/jobs/{NAMESPACE}/{job['id']}/cancel", headers=AUTH, timeout=30)


def test_a_cancel_needs_this_sessions_header_and_this_servers_origin(
    server: LocalJobsServer, tmp_path: Path
) -> None:
    job = create(server, gated(tmp_path / "never"))
    wait_stage(server, job["id"], ("RUNNING",))
    session = logged_in(server)
    page = session.get(f"{server.url}{view(job_path(job['id']))}", timeout=HTTP_TIMEOUT).json()
    [button] = where(page, id="cancel")
    assert button[1]["data-action"] == job_path(job["id"], "/cancel") and text(button) == "Cancel job"
    url = f"{server.url}{job_path(job['id'], '/cancel')}"
    other = create(server, gated(tmp_path / "never-either"))
    wait_stage(server, other["id"], ("RUNNING",))
    sid = session.headers[SESSION_HEADER]
    refusals = [
        requests.post(url, timeout=HTTP_TIMEOUT),  # no session
        requests.post(url, headers={SESSION_HEADER: "0" * 43}, timeout=HTTP_TIMEOUT),  # not a session
        requests.post(url, cookies={f"hfjobs_local_{server.port}": str(sid)}, timeout=HTTP_TIMEOUT),
        requests.post(url, data={"csrf": "0" * 64}, timeout=HTTP_TIMEOUT),  # what a form could send
    ]
    assert [answer.status_code for answer in refusals] == [401] * 4
    # The right session from a page of another origin: the host guard refuses it before any route runs.
    for origin in ("http://evil.example", f"http://127.0.0.1:{other_port(server)}",
                   f"http://localhost:{other_port(server)}", f"https://127.0.0.1:{server.port}", "null"):  # fmt: skip
        foreign = session.post(url, headers={"Origin": origin}, allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert foreign.status_code == 403 and "Cross-site request" in foreign.json()["error"], origin
    assert stage_of(server, job["id"]) == "RUNNING"
    answer = session.post(url, headers={"Origin": server.url}, allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text
    if answer.json()["stage"] == "CANCELED":  # the cancel waits for it (unless the grace period ran out)
        assert answer.json()["notice"] == f"Job {job['id']} cancelled."
    wait_stage(server, job["id"], ("CANCELED",))
    assert stage_of(server, other["id"]) == "RUNNING"  # the other job is untouched
    # A script with the bearer token may cancel too (no browser sends that header by itself).
    bearer = requests.post(
        f"{server.url}{job_path(other['id'], '/cancel')}", headers=AUTH, timeout=HTTP_TIMEOUT
    )
    assert bearer.status_code == 200 and wait_stage(server, other["id"], TERMINAL) == "CANCELED"
    after = session.get(f"{server.url}{view(job_path(job['id']))}", timeout=HTTP_TIMEOUT).json()
    assert where(after, id="cancel") == [] and text(by_id(after, "stage")) == "CANCELED"


def test_every_state_change_from_another_origin_of_this_host_is_refused(
    server: LocalJobsServer, tmp_path: Path
) -> None:
    """Every route that is not GET/HEAD (the API's, the pages', ``/_local/*``), with valid credentials, sent
    from a page of another port of 127.0.0.1, localhost or [::1], another loopback address at this
    port, or https: 403 before any route runs, nothing changed. This server's own origin (and localhost
    at its port) still may."""
    job = create(server, gated(tmp_path / "never", first="origin test"))
    wait_stage(server, job["id"], ("RUNNING",))
    sid = create_scheduled(server, ["python", "-c", "print('never from another port')"])["id"]
    try:
        session_id = open_session(server)
        credentials = {**AUTH, SESSION_HEADER: session_id}
        values = {"namespace": NAMESPACE, "job_id": job["id"], "scheduled_job_id": sid, "action": "run",
                  "name": "origin-bucket", "rest": "origin-bucket/tree"}  # fmt: skip
        changes = sorted(
            (method, re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m[1]], route.path))
            for route in server.app.routes
            for method in (getattr(route, "methods", None) or ())
            if method not in ("GET", "HEAD", "OPTIONS")
        )
        paths = {path for _, path in changes}
        assert {job_path(job["id"], "/cancel"), scheduled_action(sid, "run"), "/_local/logout", "/_local/login",
                f"/api/jobs/{NAMESPACE}", "/_local/restart"} <= paths, paths  # fmt: skip
        jobs_before = len(requests.get(f"{server.url}/api/jobs/{NAMESPACE}", headers=AUTH, timeout=30).json())
        port = other_port(server)
        for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}",
                       f"http://127.0.0.2:{server.port}", f"https://127.0.0.1:{server.port}"):  # fmt: skip
            for method, path in changes:
                answer = requests.request(
                    method, f"{server.url}{path}", headers={**credentials, "Origin": origin},
                    json={"token": TOKEN}, timeout=HTTP_TIMEOUT,
                )  # fmt: skip
                assert answer.status_code == 403, (origin, method, path, answer.text)
                assert "Cross-site request" in answer.json()["error"] and origin in answer.json()["error"]
        assert stage_of(server, job["id"]) == "RUNNING"
        assert runs_of(server, sid) == [] and scheduled(server, sid)["suspend"] is False
        assert (
            len(requests.get(f"{server.url}/api/jobs/{NAMESPACE}", headers=AUTH, timeout=30).json())
            == jobs_before
        )
        assert requests.get(f"{server.url}{view(LIST)}", headers={SESSION_HEADER: session_id}, timeout=30).ok
        # This server's own origin, under the name the request used or as localhost at its port.
        for origin in (server.url, f"http://localhost:{server.port}"):
            for action in ("suspend", "resume"):
                answer = requests.post(
                    f"{server.url}{scheduled_action(sid, action)}",
                    headers={SESSION_HEADER: session_id, "Origin": origin}, timeout=HTTP_TIMEOUT,
                )  # fmt: skip
                assert answer.status_code == 200, (origin, answer.text)
    finally:
        delete_scheduled(server, sid)
        requests.post(f"{server.url}/api/jobs/{NAMESPACE}/{job['id']}/cancel", headers=AUTH, timeout=30)


def test_log_out_on_the_page_ends_the_session_on_the_server(context: Any, server: LocalJobsServer) -> None:
    from playwright.sync_api import expect

    page = context.new_page()
    log_in(page, server.pages_url, TOKEN)
    sid = tab_session(page)
    assert requests.get(f"{server.url}{view(LIST)}", headers={SESSION_HEADER: sid}, timeout=30).ok
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("Token")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_hidden()
    assert page.evaluate(f"() => window.sessionStorage.getItem({SESSION_KEY!r})") is None
    assert (
        requests.get(f"{server.url}{view(LIST)}", headers={SESSION_HEADER: sid}, timeout=30).status_code
        == 401
    )
    # Reloaded, the tab asks for the token again; a session the server forgot does the same.
    log_in(page, server.pages_url, TOKEN)
    requests.post(
        f"{server.url}/_local/logout", headers={SESSION_HEADER: tab_session(page)}, timeout=HTTP_TIMEOUT
    )
    page.reload()
    expect(page.get_by_role("alert")).to_contain_text("Your session has ended")
    expect(page.get_by_label("Token")).to_be_visible()


# ------------------------------------------------------------------------- another local server's page
ATTACK = """<!doctype html><html><body><p>an innocent dev server</p><script>
"use strict";
const T = %(target)s, JOB = %(job)s, LIST = %(list)s, SCHEDULED = %(scheduled)s;
const results = [];
function bounded(promise) {  // each attempt ends, whatever the browser does: the test never hangs
  return Promise.race([promise, new Promise(resolve => setTimeout(() => resolve("timeout"), 20000))]);
}
async function attempt(name, run) {
  try { results.push([name, String(await bounded(run()))]); }
  catch (error) { results.push([name, "blocked: " + error.name]); }
}
function loaded(element) {
  return new Promise(resolve => { element.onload = () => resolve("load"); element.onerror = () => resolve("error"); });
}
async function frame(src, name) {  // an iframe that has loaded its first page
  const element = document.createElement("iframe");
  element.name = name || "";
  const ready = loaded(element);
  element.src = src;
  document.body.append(element);
  await bounded(ready);
  return element;
}
async function read(url, init) {
  const response = await fetch(url, init);
  return "read " + response.type + " " + response.status + " " + (await response.text()).slice(0, 4000);
}
window.attack = (async () => {
  const reads = {view: T + "/_local/view" + JOB, list: T + "/_local/view" + LIST, page: T + JOB,
                 status: T + JOB + "/status", events: T + JOB + "/events", listpage: T + LIST};
  for (const [name, url] of Object.entries(reads)) {
    await attempt("fetch " + name, () => read(url, {credentials: "include"}));
    await attempt("fetch with a header " + name,
                  () => read(url, {credentials: "include", headers: {"X-HFJobs-Session": "guess"}}));
    await attempt("no-cors fetch " + name, () => read(url, {credentials: "include", mode: "no-cors"}));
  }
  const posts = {cancel: T + JOB + "/cancel", run: T + SCHEDULED + "/run", suspend: T + SCHEDULED + "/suspend",
                 logout: T + "/_local/logout"};
  for (const [name, url] of Object.entries(posts)) {
    await attempt("no-cors post " + name, () => read(url, {method: "POST", mode: "no-cors", credentials: "include",
                                                          body: new URLSearchParams({csrf: "x"})}));
    await attempt("form post " + name, async () => {
      const sink = await frame("/blank", "sink-" + name);
      const form = document.createElement("form");
      form.method = "post"; form.action = url; form.target = sink.name;
      document.body.append(form);
      const done = loaded(sink);
      form.submit();
      return await done;
    });
  }
  await attempt("img events", () => { const img = new Image(); const done = loaded(img); img.src = reads.events; return done; });
  await attempt("img logout", () => { const img = new Image(); const done = loaded(img); img.src = T + "/_local/logout"; return done; });
  await attempt("iframe job page", async () => {
    const element = await frame(reads.page);
    try { return "read " + element.contentDocument.body.innerText; } catch (error) { return "unreadable"; }
  });
  results.push(["storage", JSON.stringify({session: sessionStorage.length, local: localStorage.length,
                                           cookie: document.cookie})]);
  return results;
})();
</script></body></html>"""


def replay(server: LocalJobsServer, headers: dict[str, str], job_id: str, sid: str) -> list[str]:
    """What a server that got these request headers from the browser could do with them, as an attacker
    would (``curl``, no browser rules): read the pages, views and log, scrape any CSRF field, press
    Cancel and Run now, with and without an ``Origin``. Returns what worked."""
    kept = {key: value for key, value in headers.items()
            if key.lower() not in ("host", "content-length", "connection", "accept-encoding", "content-type")}  # fmt: skip
    worked: list[str] = []
    fields: set[str] = set()
    for path in (job_path(job_id), LIST, view(job_path(job_id)), view(LIST), job_path(job_id, "/status")):
        answer = requests.get(f"{server.url}{path}", headers=kept, timeout=HTTP_TIMEOUT)
        fields |= set(re.findall(r'name="csrf" value="([0-9a-f]+)"', answer.text))
        if answer.status_code == 200 and (job_id in answer.text or "RUNNING" in answer.text):
            worked.append(f"read {path}")
    with requests.get(
        f"{server.url}{job_path(job_id, '/events')}", headers=kept, stream=True, timeout=HTTP_TIMEOUT
    ) as stream:
        if stream.status_code == 200 and b"attack test line" in next(stream.iter_content(65536), b""):
            worked.append("read the log")
    for path in (job_path(job_id, "/cancel"), scheduled_action(sid, "run")):
        for origin in (
            {},
            {"Origin": headers.get("Origin") or headers.get("origin") or "http://127.0.0.1:1"},
        ):
            for data in [{}, *({"csrf": field} for field in fields)]:
                answer = requests.post(
                    f"{server.url}{path}", headers={**kept, **origin}, data=data, allow_redirects=False,
                    timeout=HTTP_TIMEOUT,
                )  # fmt: skip
                if answer.status_code in (200, 303):
                    worked.append(f"POST {path} {origin}")
    return worked


def assert_nothing_leaked(
    server: LocalJobsServer, bystander: Bystander, session_id: str, job_id: str, sid: str
) -> None:
    """The other server never got the session, the token or any cookie of this server; and what it got,
    replayed as an attacker would, opens nothing and changes nothing."""
    received = bystander.requests()
    for method, path, headers in received:
        for key, value in headers.items():
            assert session_id not in value and TOKEN not in value, (method, path, key)
        assert "cookie" not in {key.lower() for key in headers}, (method, path, headers)
    for _, _, headers in received:
        assert replay(server, headers, job_id, sid) == []


def test_a_page_of_another_local_port_gets_nothing_from_a_logged_in_browser(
    server: LocalJobsServer, context: Any, tmp_path: Path
) -> None:
    """Logged in on a job page, the browser opens a page of another web server on 127.0.0.1 (another
    port): in the same tab, then in another. The page tries to read the job's log and views and to press
    Cancel, Run now, Suspend and Log out with the browser's credentials (fetch with credentials, no-cors
    posts, form posts, an img, an iframe), and its server keeps every header the browser sent it and
    replays them. Nothing works: no data, no state change, no session sent anywhere; back on the right
    origin, the same tab is still logged in, its log live, and its buttons work."""
    from playwright.sync_api import expect

    job = create(server, gated(tmp_path / "never", first="attack test line"))
    sid = create_scheduled(server, ["python", "-c", "print('run from the right origin')"])["id"]
    job_url = f"{server.url}{job_path(job['id'])}"
    page = context.new_page()
    try:
        log_in(page, job_url, TOKEN)
        expect(page.locator("#log")).to_contain_text("attack test line")
        expect(page.locator("#stage")).to_have_text("RUNNING")
        session_id = page.evaluate(f"() => window.sessionStorage.getItem({SESSION_KEY!r})") or "no session"
        attack = ATTACK % {
            "target": json.dumps(server.url), "job": json.dumps(job_path(job["id"])), "list": json.dumps(LIST),
            "scheduled": json.dumps(f"{LIST}/scheduled/{sid}"),
        }  # fmt: skip
        pages = {
            "/attack": attack,
            "/blank": "<!doctype html><p>blank</p>",
            "/": "<!doctype html><p>hello</p>",
        }
        with Bystander(pages) as bystander:
            outcomes: list[list[str]] = []
            for tab in (page, context.new_page()):  # the logged-in tab itself, and a new one
                # A plain visit first: what its server got, replayed before the page's own attempts
                # (which try to log the browser out) could spoil a stolen session.
                tab.goto(f"{bystander.url}/")
                assert_nothing_leaked(server, bystander, session_id, job["id"], sid)
                tab.goto(f"{bystander.url}/attack")
                outcomes += tab.evaluate("() => window.attack")
            assert {path for _, path, _ in bystander.requests()} >= {"/", "/attack", "/blank"}
            assert_nothing_leaked(server, bystander, session_id, job["id"], sid)
        # In the browser: nothing was read, every attempt ended (none hung), nothing was stored there.
        assert len(outcomes) == 2 * 30, outcomes
        for name, outcome in outcomes:
            assert outcome != "timeout", name
            assert "attack test line" not in outcome and session_id not in outcome, (name, outcome)
            if name.startswith(("fetch ", "fetch with a header")):
                assert outcome.startswith("blocked: TypeError"), (name, outcome)  # CORS: nothing to read
            if name.startswith("no-cors"):  # unreadable: opaque, or blocked outright (CORP: same-origin)
                assert outcome in ("read opaque 0 ", "blocked: TypeError"), (name, outcome)
            if name == "iframe job page":
                assert outcome == "unreadable", outcome
        assert [outcome for name, outcome in outcomes if name == "storage"] == [
            '{"session":0,"local":0,"cookie":""}'
        ] * 2
        assert stage_of(server, job["id"]) == "RUNNING"
        assert runs_of(server, sid) == [] and scheduled(server, sid)["suspend"] is False
        # The right origin still works, in the same tab and with the same session: nothing logged it out.
        page.goto(job_url)
        expect(page.locator("#log")).to_contain_text("attack test line")
        expect(page.get_by_role("button", name="Log out")).to_be_visible()
        assert tab_session(page) == session_id
        page.locator("#cancel").click()
        expect(page.locator("#stage")).to_have_text("CANCELED")
        page.goto(server.pages_url)
        page.locator(f"#scheduled-{sid}").get_by_role("button", name="Run now").click()
        expect(page.locator(".notice")).to_contain_text(f"Scheduled job {sid}: run ")
        assert len(runs_of(server, sid)) == 1
    finally:
        delete_scheduled(server, sid)
        requests.post(f"{server.url}/api/jobs/{NAMESPACE}/{job['id']}/cancel", headers=AUTH, timeout=30)
    [run] = runs_of(server, sid)
    wait_stage(server, run, TERMINAL)
