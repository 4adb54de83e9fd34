"""Debian's Chromium driven by Playwright, for the tests of what a user looks at (the job pages). Where no
browser can be had the tests skip, and the run's summary says so in red even under ``-q``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

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


class LoudSkip:
    """A plugin registered when the browser tests skip: the summary says so even under ``-q``."""

    def __init__(self, message: str) -> None:
        self.message = message

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("!", self.message, red=True, bold=True)


def launch_browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A headless Chromium for the ``browser`` fixture (conftest), or a loud skip."""
    problem = browser_problem()
    if problem is not None:
        manager = request.config.pluginmanager
        if not manager.has_plugin("hfjobs-browser-skip"):
            manager.register(LoudSkip(problem), "hfjobs-browser-skip")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
