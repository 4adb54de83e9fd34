"""Integration fixtures: the local Jobs server on 127.0.0.1 and hooks whose connection points at it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hfjobs.local import LocalJobsServer
from tests.integration.browser import launch_browser
from tests.integration.faultproxy import FaultProxy

TOKEN = "hf_integration_token_5f2c"
NAMESPACE = "alice"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalJobsServer]:
    # Dataset and model volumes come from a local directory: one small dataset for the example DAGs.
    sources = tmp_path_factory.mktemp("volume-sources")
    corpus = sources / "datasets" / NAMESPACE / "corpus"
    corpus.mkdir(parents=True)
    for part in range(3):
        (corpus / f"part-{part}.txt").write_text(f"row {part}\n")
    with LocalJobsServer(
        token=TOKEN, namespace=NAMESPACE, max_concurrency=8, volume_source_dir=str(sources)
    ) as srv:
        yield srv


@pytest.fixture
def proxy(server: LocalJobsServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as fault_proxy:
        yield fault_proxy


def set_connection(
    monkeypatch: pytest.MonkeyPatch, conn_id: str, host: str, token: str, **extra: str
) -> None:
    """An Airflow connection from an environment variable: no metadata DB needed."""
    conn = {"conn_type": "hf_jobs", "host": host, "password": token, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def hook(server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch):
    from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook

    set_connection(monkeypatch, "hf_local", server.url, TOKEN, namespace=NAMESPACE)
    hook = HfJobsHook("hf_local")
    yield hook
    hook.close()


@pytest.fixture
def proxied_hook(proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch):
    """A hook that talks to the server through the fault proxy, with fast retries."""
    from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
    from airflow_provider_hfjobs.jobs import RetryPolicy

    set_connection(monkeypatch, "hf_proxied", proxy.url, TOKEN, namespace=NAMESPACE)
    hook = HfJobsHook("hf_proxied", retry_policy=RetryPolicy(max_retries=4, base_delay=0.05, max_delay=0.2))
    yield hook
    hook.close()


@pytest.fixture
def no_job_left_behind(tmp_path: Path) -> Iterator[None]:
    """A kept state directory keeps jobs running after its server stops; whatever a test (even a failed
    one) leaves running under its tmp_path is stopped here: the shims, which stop their commands. Modules
    that keep state directories opt in (``pytestmark`` ``usefixtures``)."""
    yield
    marker = str(tmp_path).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if marker in cmdline and b"shim.py" in cmdline:
                    os.kill(int(entry.name), signal.SIGTERM)


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Headless Chromium (Debian's, driven by Playwright), or a skip the run's summary shouts about."""
    yield from launch_browser(request)
