"""Each guardrail through ``airflow dags test`` against the local Jobs server, on a worker and deferred:
the task fails with the guard's reason in its log and ``stopped_by`` in its ``job`` XCom, and the job is
CANCELED (verified); with a flavor fallback list, a job stuck SCHEDULING on a flavor without capacity is
cancelled and the task succeeds on the next flavor, never with two live jobs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from airflow_provider_hfjobs.local import LocalJobsServer
from tests.integration.airflow_run import REPO, AirflowHome, make_airflow_home
from tests.integration.conftest import NAMESPACE, TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]


@pytest.fixture(scope="module")
def guarded_server() -> Iterator[LocalJobsServer]:
    """A server where ``h200`` never gets capacity (a flavor "sold out"), for the fallback."""
    with LocalJobsServer(
        token=TOKEN, namespace=NAMESPACE, max_concurrency=8, flavor_capacity={"h200": 0}
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def airflow_home(guarded_server: LocalJobsServer, tmp_path_factory) -> AirflowHome:
    return make_airflow_home(
        tmp_path_factory.mktemp("airflow-home"), guarded_server.url, TOKEN, REPO / "tests" / "dags"
    )


def guarded_job(text: str) -> dict:
    found = re.findall(r"GUARDED_JOB=(\{.*\})", text)
    assert found, text[-4000:]
    return json.loads(found[-1])


def jobs_of(server: LocalJobsServer, case: str, mode: str) -> list[dict]:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=server.url, token=TOKEN)
    return [
        {"id": job.id, "stage": job.status.stage, "flavor": job.flavor}
        for job in api.list_jobs(namespace=NAMESPACE, labels={"suite": f"guard-{case}-{mode}"})
    ]


GUARDS = {
    "stall": ("stall_timeout", r"stall_timeout: no log line from job \w+ for [\d.]+s while RUNNING"),
    "cost": ("max_cost_usd", r"max_cost_usd: job \w+ has cost about \$[\d.]+ \(h200x8 at \$40(\.00)?/h"),
    "idle_gpu": (
        "idle_gpu_timeout",
        r"idle_gpu_timeout: the GPU of job \w+ was under 5% for [\d.]+s \(limit 3s\); that idle time cost about \$",
    ),
}


@pytest.mark.parametrize("mode", ["worker", "deferred"])
@pytest.mark.parametrize("case", sorted(GUARDS))
def test_a_guardrail_cancels_the_job_and_fails_the_task_saying_why(
    case: str, mode: str, airflow_home: AirflowHome, guarded_server: LocalJobsServer
) -> None:
    guard, said = GUARDS[case]
    result = airflow_home.dags_test(f"hfjobs_guard_{case}_{mode}")
    text = result.stdout + result.stderr
    # The guarded task failed with the guard's reason (the run itself ends with the "show" task).
    assert re.search(r"HfJobFailedError: Stopped by its guardrail: " + said, text), text[-4000:]
    assert re.search(r"Stopped by its guardrail: .*\nHugging Face job \w+ ended CANCELED", text), text[-4000:]
    if mode == "worker":  # deferred, the trigger says it; Airflow 2's inline trigger may drop its last lines
        assert re.search(r"Cancelled Hugging Face job \w+ \(" + guard + r"\): CANCELED after", text), text[
            -4000:
        ]
    (job,) = jobs_of(guarded_server, case, mode)
    assert job["stage"] == "CANCELED"
    stopped = guarded_job(text)["stopped_by"]
    assert (
        stopped["guard"] == guard and stopped["job_id"] == job["id"] and re.search(said, stopped["message"])
    )
    if case == "cost":  # said at submit: the cap stops it long before its 1h timeout
        assert re.search(r"max_cost_usd \$0\.040? stops job \w+ after about [\d.]+s on h200x8", text), text[
            -4000:
        ]


@pytest.mark.parametrize("mode", ["worker", "deferred"])
def test_a_job_stuck_scheduling_is_resubmitted_on_the_next_flavor(
    mode: str, airflow_home: AirflowHome, guarded_server: LocalJobsServer
) -> None:
    result = airflow_home.dags_test(f"hfjobs_guard_fallback_{mode}")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    assert re.search(
        r"max_scheduling_time: job \w+ still SCHEDULING after [\d.]+s \(limit 3s\) on h200", text
    )
    assert "Resubmitting on cpu-basic, the next flavor of h200, cpu-basic" in text, text[-4000:]
    assert "ran on the fallback flavor" in text
    jobs = {job["flavor"]: job for job in jobs_of(guarded_server, "fallback", mode)}
    assert sorted(jobs) == ["cpu-basic", "h200"]
    assert jobs["h200"]["stage"] == "CANCELED" and jobs["cpu-basic"]["stage"] == "COMPLETED"
    final = guarded_job(text)
    assert final["id"] == jobs["cpu-basic"]["id"] and final["flavor"] == "cpu-basic"
    assert final["price_per_hour_usd"] is not None and "stopped_by" not in final
    assert re.search(r"COMPLETED on cpu-basic \(\$[\d.]+/h\)", text), text[-4000:]
