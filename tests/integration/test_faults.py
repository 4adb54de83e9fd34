"""The fault matrix: injected server faults against the sync hook, the async trigger and a real DAG run.

Every combination must end in the right state, show each log line exactly once, and create no extra job.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Iterator

import pytest
import requests

from airflow_provider_hfjobs.hooks import event_stream
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, HfJobsHook
from airflow_provider_hfjobs.jobs import JobStage, RetryPolicy
from airflow_provider_hfjobs.local import LocalJobsServer
from airflow_provider_hfjobs.local.faults import Fault
from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger
from tests.integration.airflow_run import count, make_airflow_home
from tests.unit.test_trigger import recorded

pytestmark = pytest.mark.integration

TOKEN = "hf_fault_token"
NS = "faulty"
FAST = RetryPolicy(max_retries=6, base_delay=0.05, max_delay=0.3)


def printer(count: int, delay: float = 0.05) -> list[str]:
    code = f"import time\nfor i in range({count}):\n    print(f'line {{i}}', flush=True)\n    time.sleep({delay})"
    return ["python", "-c", code]


def expected(count: int) -> list[str]:
    return [f"line {i}" for i in range(count)]


@pytest.fixture(scope="module")
def server() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=8) as srv:
        yield srv


@pytest.fixture
def hook(server: LocalJobsServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HfJobsHook]:
    conn = {"conn_type": "hf_jobs", "host": server.url, "password": TOKEN, "extra": {"namespace": NS}}
    monkeypatch.setenv("AIRFLOW_CONN_HF_FAULTS", json.dumps(conn))
    hook = HfJobsHook("hf_faults", retry_policy=FAST)
    yield hook
    server.clear_faults()
    hook.close()


FAULTS = {
    "cut-logs-twice": [Fault("cut", path=r"/logs$", after_events=3, times=2)],
    "429-burst": [Fault("status", status=429, retry_after=0, times=3, path=r"/api/jobs/")],
    "5xx-burst": [
        Fault("status", status=500, times=1, path=r"/api/jobs/"),
        Fault("status", status=502, times=1, path=r"/api/jobs/"),
        Fault("status", status=503, times=1, path=r"/api/jobs/"),
    ],
    "slow": [Fault("delay", seconds=0.3, times=5, path=r"/api/jobs/")],
    "everything": [
        Fault("cut", path=r"/logs$", after_events=2, times=2),
        Fault("status", status=503, times=2, path=r"/api/jobs/[^/]+/[^/]+$"),
        Fault("status", status=429, retry_after=0, times=2, path=r"/logs$"),
    ],
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_sync_hook_survives(case: str, server: LocalJobsServer, hook: HfJobsHook) -> None:
    job = hook.run_job(image="python:3.12", command=printer(8), labels={"fault": case})
    for fault in FAULTS[case]:
        server.add_fault(Fault(**fault.to_json()))
    assert list(hook.fetch_job_logs(job.id, follow=True)) == expected(8)
    assert hook.wait_for_job(job.id, poll_interval=0.1, timeout=60).stage is JobStage.COMPLETED
    server.clear_faults()
    assert [j.id for j in hook.list_jobs(labels={"fault": case})] == [job.id]


@pytest.mark.parametrize("transport", ["lean", "httpx"])
@pytest.mark.parametrize("case", list(FAULTS))
def test_trigger_survives(
    case: str, transport: str, server: LocalJobsServer, hook: HfJobsHook, monkeypatch
) -> None:
    if transport == "httpx":  # as when a proxy applies: streams and stage checks go through httpx
        monkeypatch.setattr(event_stream, "_proxied", lambda scheme, host: True)
    job = hook.run_job(
        image="python:3.12", command=printer(8), labels={"trigger-fault": f"{case}-{transport}"}
    )
    for fault in FAULTS[case]:
        server.add_fault(Fault(**fault.to_json()))
    trigger = HfJobTrigger(job.id, NS, "hf_faults", poll_interval=0.1)
    log = recorded(trigger)
    monkeypatch.setattr(
        trigger, "_hook", lambda: HfJobsAsyncHook("hf_faults", namespace=NS, retry_policy=FAST)
    )

    async def collect():
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(asyncio.wait_for(collect(), 120))
    assert event["status"] == "success", event
    assert [text for text in log.texts("info") if text.startswith("line ")] == expected(8)
    assert event["log_cursor"] == 9
    server.clear_faults()
    assert [j.id for j in hook.list_jobs(labels={"trigger-fault": f"{case}-{transport}"})] == [job.id]


def test_create_whose_answer_is_lost_is_not_repeated(server: LocalJobsServer, hook: HfJobsHook) -> None:
    server.add_fault(Fault("status", method="POST", path=rf"^/api/jobs/{NS}$", status=500, forward=True))
    job = hook.run_job(image="python:3.12", command=printer(1), labels={"lost": "answer"})
    assert [j.id for j in hook.list_jobs(labels={"lost": "answer"})] == [job.id]


def test_faults_can_be_set_over_http(server: LocalJobsServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{server.url}/_local/faults"
    assert (
        requests.post(url, json={"kind": "status", "status": 418, "path": "hardware"}, timeout=10).status_code
        == 401
    )
    added = requests.post(
        url, json={"kind": "status", "status": 418, "path": "hardware"}, headers=auth, timeout=10
    )
    assert added.status_code == 200 and added.json()[0]["status"] == 418
    assert requests.get(f"{server.url}/api/jobs/hardware", headers=auth, timeout=10).status_code == 418
    assert requests.get(f"{server.url}/api/jobs/hardware", headers=auth, timeout=10).status_code == 200
    assert requests.post(url, json={"kind": "explode"}, headers=auth, timeout=10).status_code == 400
    assert requests.delete(url, headers=auth, timeout=10).json() == []


def test_cli_fault_specs_parse() -> None:
    fault = Fault.parse("status,status=429,retry_after=1.5,times=3,path=/api/jobs/,forward=true")
    assert (fault.kind, fault.status, fault.retry_after, fault.times, fault.forward) == (
        "status",
        429,
        1.5,
        3,
        True,
    )
    assert Fault.parse("cut,after_events=5").after_events == 5
    with pytest.raises(ValueError, match="kind"):
        Fault.parse("explode")
    with pytest.raises(ValueError, match="key=value"):
        Fault.parse("delay,secs=3")


@pytest.mark.airflow_db
def test_dag_run_under_faults_shows_each_line_once(server: LocalJobsServer, tmp_path) -> None:
    """A real ``airflow dags test`` of a sync and a deferred task while the server cuts log streams and
    answers 503 and 429: the run succeeds, each job line appears once per task, one job per task."""
    home = make_airflow_home(tmp_path, server.url, TOKEN)
    dag = textwrap.dedent(
        f"""
        import pendulum
        from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator
        from airflow.providers.common.compat.sdk import DAG

        CODE = {printer(6, 0.3)[2]!r}
        with DAG(dag_id="hfjobs_faults", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
            HfJobRunOperator(task_id="sync", image="python:3.12", command=["python", "-c", CODE],
                             labels={{"dag": "faults"}}) >> HfJobRunOperator(
                task_id="deferred", image="python:3.12", command=["python", "-c", CODE], deferrable=True,
                poll_interval=1, labels={{"dag": "faults"}})
        """
    )
    (tmp_path / "dags" / "hfjobs_faults.py").write_text(dag)
    server.add_fault(Fault("cut", path=r"/logs$", after_events=3, times=4))
    server.add_fault(Fault("status", status=503, times=3, path=rf"/api/jobs/{NS}/[0-9a-f]+$"))
    server.add_fault(Fault("status", status=429, retry_after=0, times=2, path=r"/logs$"))
    try:
        result = home.dags_test("hfjobs_faults")
    finally:
        server.clear_faults()
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-5000:]
    for line in expected(6):
        assert count(text, line) == 2, (line, text[-5000:])
    hook_jobs = requests.get(
        f"{server.url}/api/jobs/{NS}?label=dag=faults",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    ).json()
    assert len(hook_jobs) == 2
