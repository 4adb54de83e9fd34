"""Debian's Chromium driven by Playwright, for the tests of what a user looks at (the job pages). Where no
browser can be had the tests skip, and the run's summary says so in red even under ``-q``. Plus
:class:`Bystander`, another local web server, for the tests of what a page of another origin can do."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

#: Playwright's bound on anything that waits for a job (its process starts, prints, ends).
JOB_WAIT_MS = 30_000
#: Where the job pages' script keeps its session (sessionStorage: this origin, this tab).
SESSION_KEY = "hfjobs-local-session"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str:
    return os.environ.get("HFJOBS_CHROMIUM") or "/usr/bin/chromium"


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or ``None``."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return (
            "BROWSER TESTS SKIPPED: the playwright package is missing; install the test extra "
            "(pip install -e '.[test]'; make test does this)"
        )
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return (
            f"BROWSER TESTS SKIPPED: no Chromium at {path}; install Debian's chromium (make test does this "
            "as root) or point HFJOBS_CHROMIUM at one"
        )
    return None


#: What starts the reason of a skip the run's summary repeats in red (tests/conftest.py): a browser or a
#: service the run could not have. A skip report travels from an xdist worker to the controller, so the
#: summary says it whichever process ran the test.
LOUD_SKIP_MARK = "TESTS SKIPPED: "


def launch_browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A headless Chromium for the ``browser`` fixture (conftest), or a loud skip."""
    problem = browser_problem()
    if problem is not None:
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def page_context(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no storage, no cookies) whose waits are bounded by ``JOB_WAIT_MS``."""
    from playwright.sync_api import expect

    expect.set_options(timeout=JOB_WAIT_MS)
    browser_context = browser.new_context(viewport={"width": 1280, "height": 900})
    browser_context.set_default_timeout(JOB_WAIT_MS)
    yield browser_context
    browser_context.close()


class Received:
    """The body of every answer the browser got, read the moment it is complete (a page navigated away
    from cannot be read later), and the requests that ended otherwise."""

    def __init__(self, page: Any) -> None:
        self.bodies: list[tuple[str, str]] = []
        self.failed: list[str] = []
        page.on("requestfinished", self.finished)
        page.on("requestfailed", lambda request: self.failed.append(request.url))

    def finished(self, request: Any) -> None:
        response = request.response()
        if response is not None and not 300 <= response.status < 400:  # redirects have no body
            self.bodies.append((response.url, response.body().decode("utf-8", "replace")))

    def wait_for(self, page: Any, paths: set[str]) -> None:
        """Until the requests for all these paths have ended (Playwright delivers its events while the
        page is asked something). Chromium may report a log stream the page read to its end as aborted
        (``net::ERR_ABORTED``): its body is then not to be had here, but the page shows what it got."""
        deadline = time.monotonic() + JOB_WAIT_MS / 1000
        while not paths <= (
            ended := {urlsplit(url).path for url in [*self.failed, *(u for u, _ in self.bodies)]}
        ):
            assert time.monotonic() < deadline, f"no end for the requests of {paths - ended}"
            page.wait_for_timeout(50)


def log_in(page: Any, url: str, token: str) -> None:
    """Open ``url``, get the login form (no session in this tab yet), send the token; stays on ``url``."""
    from playwright.sync_api import expect

    answer = page.goto(url)
    assert answer is not None and answer.status == 401
    expect(page.get_by_role("heading")).to_have_text("Local Hugging Face Jobs server")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page).to_have_url(url)


def tab_session(page: Any) -> str:
    """The session id the page's script keeps for this tab."""
    sid = page.evaluate(f"() => window.sessionStorage.getItem({SESSION_KEY!r})")
    assert isinstance(sid, str) and len(sid) >= 32
    return sid


class Bystander:
    """Another web server on 127.0.0.1 (a dev server, a notebook, a job's exposed port), on a port of its
    own: it serves ``pages`` (path -> HTML) and keeps every request a browser sends it, headers and all,
    as a hostile server would (what it got, it can replay)."""

    def __init__(self, pages: dict[str, str]) -> None:
        self.pages = pages
        self.received: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self._lock = threading.Lock()
        bystander = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                with bystander._lock:
                    bystander.received.append((self.command, self.path, dict(self.headers.items())))
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                body = bystander.pages.get(self.path.split("?", 1)[0])
                payload = (body if body is not None else "not here").encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = handle_one

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="bystander", daemon=True)

    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        with self._lock:
            return list(self.received)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)
