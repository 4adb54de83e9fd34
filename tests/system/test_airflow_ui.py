"""The Airflow 3 UI of a real deployment, in headless Chromium, as docs/airflow-ui.md tells a user to use it:
log in, open a finished ``HfJobRunOperator`` task, Details, Extra Links: the "Hugging Face Job" button points
at the job's page. ``HFJOBS_UPDATE_SCREENSHOTS=1`` saves what the browser shows to
docs/images/airflow-ui-extra-link.png (the page's screenshot)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer
from tests.integration.airflow_run import REPO
from tests.integration.browser import launch_browser, page_context
from tests.system.test_deployment import AIRFLOW_3, NS, TOKEN, Deployment, wait_for

pytestmark = [
    pytest.mark.system,
    pytest.mark.airflow_db,
    pytest.mark.skipif(
        not AIRFLOW_3,
        reason="the UI driven here is Airflow 3's (task -> Details -> Extra Links), the one docs/airflow-ui.md "
        "describes; Airflow 2.11 serves the older Flask webserver UI",
    ),
]

SCREENSHOT = REPO / "docs" / "images" / "airflow-ui-extra-link.png"
DAG, TASK = "hfjobs_quickstart", "hello"


@pytest.fixture(scope="module")
def jobs() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(jobs: LocalJobsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path_factory.mktemp("deployment"), jobs)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from launch_browser(request)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    for context in page_context(browser):
        yield context.new_page()


def test_the_hugging_face_job_button_is_under_details_extra_links(
    browser: Any, page: Any, deployment: Deployment, jobs: LocalJobsServer
) -> None:
    """The browser first: where none can be had the test skips before a deployment is started."""
    from playwright.sync_api import expect

    run_id = deployment.trigger(DAG)
    state = wait_for(
        "the quickstart run to finish",
        lambda: (s := deployment.run_state(DAG, run_id)) in ("success", "failed") and s,
        timeout=240,
    )
    assert state == "success", deployment.tail()
    xcom = deployment.api("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{TASK}/xcomEntries/job_url")
    assert xcom.status_code == 200, xcom.text
    job_url = xcom.json()["value"]
    assert job_url.startswith(f"{jobs.url}/jobs/{NS}/"), job_url

    # Log in as a user does: the UI sends an anonymous visitor to the login form.
    password = json.loads((deployment.home / "simple_auth_manager_passwords.json.generated").read_text())
    page.goto(f"{deployment.url}/")
    expect(page).to_have_url(f"{deployment.url}/auth/login?next=%2F")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password["admin"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{deployment.url}/")

    # The task instance (its log opens first), then its Details tab.
    page.goto(f"{deployment.url}/dags/{DAG}/runs/{quote(run_id, safe='')}/tasks/{TASK}")
    expect(page.get_by_text("Hello from the cloud!")).to_be_visible()
    page.get_by_role("link", name="Details", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/dags/{DAG}/runs/[^/]+/tasks/{TASK}/details$"))
    expect(page.get_by_role("heading", name="Extra Links")).to_be_visible()
    button = page.get_by_role("link", name="Hugging Face Job", exact=True)
    expect(button).to_be_visible()
    expect(button).to_have_attribute("href", job_url)
    if os.environ.get("HFJOBS_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))

    # Where it leads: the local server's page of that job (its login form first: no session in this tab).
    answer = requests.get(job_url, timeout=10)
    assert answer.status_code == 401 and "Local Hugging Face Jobs server" in answer.text, answer.text[:500]
