"""What a new user tripped on (issue 22, item 6): a templated flavor's typo, a job's timeout, a metrics
line for a job too short to be sampled. Hooks are stand-ins (tests/unit/test_operators.py's)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_hfjobs.exceptions import HfJobsAPIError, HfJobsInputError
from airflow_provider_hfjobs.jobs import HardwareInfo
from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator, HfUvJobOperator
from tests.unit.test_operators import FakeTI, job, operator


def hardware(name: str) -> HardwareInfo:
    return HardwareInfo(name, name, "4 vCPU", "15 GB", None, 0.0166667, "minute")


# ------------------------------------------------------------------------------------ a templated flavor
@pytest.mark.parametrize("cls", [HfJobRunOperator, HfUvJobOperator])
def test_a_rendered_flavor_typo_gets_the_literals_did_you_mean_before_any_job(cls: Any) -> None:
    op, hook = operator(flavor="{{ params.flavor }}")
    if cls is HfUvJobOperator:
        op = HfUvJobOperator(task_id="t", script="https://e.x/s.py", flavor="{{ params.flavor }}")
        op.__dict__["hook"] = hook
    op.flavor = "a10g-smal"  # as rendered
    with pytest.raises(
        HfJobsInputError, match=r"^flavor 'a10g-smal' is unknown: did you mean 'a10g-small'\?"
    ):
        op.execute({"ti": FakeTI()})
    hook.run_job.assert_not_called()
    hook.run_uv_job.assert_not_called()
    hook.list_jobs.assert_not_called()  # before the re-attach lookup too


def test_a_rendered_fallback_list_is_checked_flavor_by_flavor() -> None:
    op, hook = operator(flavor="{{ params.flavors }}", max_scheduling_time="10m")
    op.flavor = ["a10g-small", "h20O"]
    with pytest.raises(HfJobsInputError, match=r"^flavor 'h20O' is unknown: did you mean 'h200'\?"):
        op.execute({"ti": FakeTI()})
    hook.run_job.assert_not_called()


def test_a_rendered_flavor_the_hub_lists_is_accepted_and_a_known_one_costs_no_request() -> None:
    op, hook = operator(flavor="{{ params.flavor }}", wait_for_completion=False)
    hook.run_job.return_value = job("SCHEDULING")
    op.flavor = "a10g-small"
    op.execute({"ti": FakeTI()})
    hook.list_jobs_hardware.assert_not_called()
    op, hook = operator(flavor="{{ params.flavor }}", wait_for_completion=False)
    hook.run_job.return_value = job("SCHEDULING")
    hook.list_jobs_hardware.return_value = [hardware("brand-new-gpu")]
    op.flavor = "brand-new-gpu"  # newer than this provider: the Hub's list names it
    op.execute({"ti": FakeTI()})
    assert hook.run_job.call_args.kwargs["flavor"] == "brand-new-gpu"


def test_an_unreadable_hardware_list_leaves_the_flavor_to_the_server() -> None:
    op, hook = operator(flavor="{{ params.flavor }}", wait_for_completion=False)
    hook.run_job.return_value = job("SCHEDULING")
    hook.list_jobs_hardware.side_effect = HfJobsAPIError("hardware is down", status_code=503)
    op.flavor = "brand-new-gpu"
    op.execute({"ti": FakeTI()})
    hook.run_job.assert_called_once()


def test_a_mapped_tasks_flavor_is_checked_when_it_runs() -> None:
    _, hook = operator()
    mapped = HfJobRunOperator.partial(task_id="m", image="python:3.12").expand(command=[["true"]])
    unmapped = mapped.unmap({"command": ["true"], "flavor": "t4-smal"})
    unmapped.__dict__["hook"] = hook
    with pytest.raises(HfJobsInputError, match="did you mean 't4-small'"):
        unmapped.execute({"ti": FakeTI()})
    hook.run_job.assert_not_called()


# --------------------------------------------------------------------------------------- a job's timeout
def timed_out(**extra: Any) -> Any:
    from airflow_provider_hfjobs.jobs import JobInfo

    return JobInfo.from_api(
        {"id": "j1", "owner": {"name": "alice"}, "flavor": "cpu-basic",
         "status": {"stage": "ERROR", "message": "Job timeout"}, **extra},
        "http://hub.test",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("45m", "It reached its timeout of 45m (timeout='45m'): raise it with the operator's timeout= "
         "argument, e.g. timeout='90m'."),
        (600, "It reached its timeout of 10m (timeout=600): raise it with the operator's timeout= "
         "argument, e.g. timeout='20m'."),
        (None, "It reached the Hub's default timeout of 30m, as no timeout= was given: pass the operator "
         "a longer one, e.g. timeout='1h'."),
        ("", "It reached the Hub's default timeout of 30m, as no timeout= was given"),
    ],
)  # fmt: skip
def test_a_job_ended_by_its_timeout_fails_saying_the_timeout_and_how_to_raise_it(
    given: Any, said: str
) -> None:
    from airflow_provider_hfjobs.exceptions import HfJobFailedError

    op, hook = operator(timeout=given, stream_logs=False, reattach=False)
    hook.run_job.return_value = job("SCHEDULING")
    hook.wait_for_job.return_value = timed_out()
    hook.fetch_job_logs.return_value = []
    with pytest.raises(HfJobFailedError) as failure:
        op.execute({"ti": FakeTI()})
    assert f"ended ERROR: Job timeout. {said}" in str(failure.value)


def test_a_sensor_says_a_watched_jobs_timeout_is_its_submitters_to_raise() -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_provider_hfjobs.sensors.hfjobs import HfJobSensor

    sensor = HfJobSensor(task_id="watch", job_id="j1")
    hook = sensor.__dict__["hook"] = __import__("unittest.mock").mock.MagicMock()
    hook.inspect_job.return_value = timed_out()
    with pytest.raises(
        AirflowFailException, match=r"It reached its timeout \(the Hub's default of 30m unless"
    ):
        sensor.poke({"ti": FakeTI()})


def test_any_other_failure_gets_no_timeout_advice() -> None:
    from airflow_provider_hfjobs.task_side import timeout_advice

    assert timeout_advice("exit code 1", given="1h") is None and timeout_advice(None) is None
    assert timeout_advice("Job timeout.", given="1h") is not None


# ------------------------------------------------------------------------- no metrics sample, short job
def gpu_job(**durations: Any) -> Any:
    from airflow_provider_hfjobs.jobs import JobInfo

    return JobInfo.from_api(
        {"id": "j1", "owner": {"name": "alice"}, "flavor": "a10g-small", "status": {"stage": "COMPLETED"},
         "durations": durations},
        "http://hub.test",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("durations", "said_at_info"),
    [({"runningSecs": 0}, False), ({}, False), ({"runningSecs": 3}, False), ({"runningSecs": 120}, True)],
)
def test_no_metrics_sample_is_said_only_of_a_job_that_ran_long_enough_for_one(
    mocker, durations: dict[str, int], said_at_info: bool
) -> None:
    from airflow_provider_hfjobs.metrics import MetricsAccumulator

    log = mocker.MagicMock()
    mocker.patch.object(HfJobRunOperator, "log", new=property(lambda self: log))
    op, _ = operator(flavor="a10g-small")
    op._report_metrics(gpu_job(**durations), MetricsAccumulator().summary(), None)
    said = " ".join(str(call.args) for call in log.method_calls)
    assert ("no metrics sample arrived" in said) is said_at_info
    assert [call[0] for call in log.method_calls] == (["info"] if said_at_info else [])
