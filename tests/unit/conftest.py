"""Unit fixtures: a hook that can make no request, to get its own message for a mistake."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> HfJobsHook:
    """A hook whose every request fails the test: bad input must be rejected before any request."""

    def no_http(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("bad input must be rejected before any request")

    monkeypatch.setattr(requests.Session, "request", no_http)
    monkeypatch.setenv(
        "AIRFLOW_CONN_HF_OFFLINE",
        '{"conn_type": "hf_jobs", "host": "http://127.0.0.1:9", "password": "hf_x", "extra": {"namespace": "alice"}}',
    )
    return HfJobsHook("hf_offline")
