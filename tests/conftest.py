"""Test-wide set-up: a throwaway AIRFLOW_HOME before anything imports Airflow."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Any

import pytest

_HOME = tempfile.mkdtemp(prefix="hfjobs-airflow-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = _HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(_HOME, "dags"))
# The official client reads these at import time; tests pass endpoint and token explicitly instead.
for _name in ("HF_TOKEN", "HF_ENDPOINT", "HF_JOBS_NAMESPACE"):
    os.environ.pop(_name, None)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_UPDATE_CHECK"] = "1"
os.environ["HF_HUB_DISABLE_EXPERIMENTAL_WARNING"] = "1"
os.environ["HF_HOME"] = os.path.join(_HOME, "hf-home")


@pytest.fixture(autouse=True)
def _fresh_async_credentials() -> None:
    """Tests point one connection id at different servers in one process: no test may see the async
    hook's recent credentials from another."""
    from airflow_provider_hfjobs.hooks.hfjobs import _recent_credentials

    _recent_credentials.clear()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Skips for want of a browser or a service (their reason says "TESTS SKIPPED: ") are repeated in red at
    the end, even under ``-q``: a run that skipped a leg must not look like a full pass. The skip reports
    reach the controller from xdist workers too, so this works with ``-n``."""
    from tests.integration.browser import LOUD_SKIP_MARK

    seen: set[str] = set()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        if LOUD_SKIP_MARK in reason:
            message = reason.split("Skipped: ", 1)[-1]
            if message not in seen:
                seen.add(message)
                terminalreporter.write_sep("!", message, red=True, bold=True)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """A module's Airflow homes are its own: once its last test has run, the interpreters pre-imported for
    them (tests/integration/forked_airflow.py, ~200 MB each) go, and the CPU of what they ran is counted."""
    if nextitem is None or getattr(nextitem, "module", None) is not getattr(item, "module", None):
        from tests.integration import forked_airflow

        forked_airflow.close_all()
