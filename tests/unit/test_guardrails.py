"""The guardrails' rules, without I/O: arguments, each guard at its limit and not before, resets, stages,
idle GPU runs and their gaps, cost with and without the billed time, JSON, and when to look again."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.guardrails import (
    GUARDRAIL_ARGUMENTS,
    IDLE_GPU_MAX_GAP_SECONDS,
    Guardrails,
    GuardStop,
    GuardWatch,
    cap_warning,
    check_guardrail_arguments,
    flavor_fallback,
    format_duration,
    gpu_utilization,
    next_flavor,
    price_per_hour,
)
from airflow_provider_hfjobs.jobs import HardwareInfo, JobInfo, JobStage
from airflow_provider_hfjobs.metrics import MetricsAccumulator

DURATIONS = ("stall_timeout", "idle_gpu_timeout", "max_scheduling_time")


def job(
    stage: JobStage, job_id: str = "job1", flavor: str | None = "a10g-small", **durations: Any
) -> JobInfo:
    return JobInfo(id=job_id, stage=stage, message=None, owner_name="alice", flavor=flavor, **durations)


def watch(flavors: tuple[str, ...] = (), **arguments: Any) -> GuardWatch:
    return GuardWatch(Guardrails.from_arguments(**arguments), flavors=flavors)


def running(at: float = 0.0, **arguments: Any) -> GuardWatch:
    guard = watch(**arguments)
    guard.observe_job(job(JobStage.RUNNING), at)
    return guard


def gpus(*utilizations: float) -> dict[str, Any]:
    """A metrics sample with one GPU per utilization, in the Hub's shape."""
    return {
        "cpu_usage_pct": 50,
        "gpus": {
            f"gpu{index:05d}": {"utilization": value, "memory_used_bytes": 0, "memory_total_bytes": 24 << 30}
            for index, value in enumerate(utilizations)
        },
    }


def feed(guard: GuardWatch, moments: range | list[float], *utilizations: float) -> list[float]:
    """One sample at each moment (``check`` after each, as a caller does); the moments at which it fired."""
    fired = []
    for moment in moments:
        guard.observe_metrics(gpus(*utilizations), moment)
        if guard.check(moment) is not None:
            fired.append(moment)
    return fired


# ---------------------------------------------------------------------------------------------- arguments
def test_no_arguments_no_guardrails() -> None:
    rails = Guardrails.from_arguments()
    assert rails == Guardrails() and not rails.active and rails.describe() == "no guardrails"
    assert rails.to_dict() == {
        "stall_timeout": None, "max_cost_usd": None, "idle_gpu_timeout": None, "idle_gpu_threshold": 5.0,
        "max_scheduling_time": None,
    }  # fmt: skip
    assert not rails.needs_metrics and not rails.needs_price


@pytest.mark.parametrize("argument", DURATIONS)
@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (90, 90.0), (1.5, 1.5), ("90s", 90.0), ("30m", 1800.0), ("1.5h", 5400.0), ("2d", 172800.0),
        ("300", 300.0), (" 30m ", 1800.0), (timedelta(minutes=5), 300.0),
    ],
)  # fmt: skip
def test_durations_are_taken_as_the_job_timeout_takes_them(argument: str, given: Any, seconds: float) -> None:
    rails = Guardrails.from_arguments(**{argument: given})
    assert getattr(rails, argument) == seconds and type(getattr(rails, argument)) is float and rails.active


@pytest.mark.parametrize("argument", DURATIONS)
@pytest.mark.parametrize(
    ("given", "says"),
    [
        (0, "must be a positive duration"), (-5, "must be a positive duration"),
        (float("nan"), "must be a positive duration"), (float("inf"), "must be a positive duration"),
        ("0m", "must be a positive duration"), ("", "is empty"), ("  ", "is empty"),
        ("1.5", "is not a duration"), ("2H", "is not a duration"), ("soon", "is not a duration"),
        (True, "got the boolean"), ([], "is not a duration"), ("1e400s", "is not a usable duration"),
        (timedelta(0), "must be a positive duration"),
    ],
)  # fmt: skip
def test_a_bad_duration_names_the_argument_and_the_fix(argument: str, given: Any, says: str) -> None:
    with pytest.raises(HfJobsInputError) as error:
        Guardrails.from_arguments(**{argument: given})
    message = str(error.value)
    assert message.startswith(argument) and says in message, message
    assert "'30m'" in message or "'2d'" in message, message  # what to give instead


@pytest.mark.parametrize(
    ("given", "dollars"), [(2, 2.0), (0.5, 0.5), ("2.5", 2.5), ("$3", 3.0), (" $ 4 ", 4.0)]
)
def test_the_cost_cap_is_dollars(given: Any, dollars: float) -> None:
    rails = Guardrails.from_arguments(max_cost_usd=given)
    assert rails.max_cost_usd == dollars and rails.active and rails.needs_price


@pytest.mark.parametrize("given", [0, -1, "", "ten", True, float("nan"), float("inf"), [2]])
def test_a_bad_cost_cap_says_what_to_give(given: Any) -> None:
    with pytest.raises(HfJobsInputError, match=r"^max_cost_usd=.* must be a positive amount of US dollars"):
        Guardrails.from_arguments(max_cost_usd=given)


@pytest.mark.parametrize(
    ("given", "percent"), [(None, 5.0), (10, 10.0), ("7.5%", 7.5), (100, 100.0), (0.5, 0.5)]
)
def test_the_idle_threshold_is_a_percentage(given: Any, percent: float) -> None:
    assert Guardrails.from_arguments(idle_gpu_threshold=given).idle_gpu_threshold == percent


@pytest.mark.parametrize("given", [0, -1, 100.5, "busy", True, float("nan")])
def test_a_bad_idle_threshold_says_its_range(given: Any) -> None:
    with pytest.raises(HfJobsInputError, match=r"^idle_gpu_threshold=.* above 0 and at most 100"):
        Guardrails.from_arguments(idle_gpu_threshold=given)


def test_the_threshold_alone_guards_nothing() -> None:
    assert not Guardrails.from_arguments(idle_gpu_threshold=20).active


@pytest.mark.parametrize(
    "argument", ["stall_timeout", "max_cost_usd", "idle_gpu_timeout", "max_scheduling_time"]
)
def test_each_guard_alone_makes_the_guardrails_active(argument: str) -> None:
    rails = Guardrails.from_arguments(**{argument: 60})
    assert rails.active and rails.needs_metrics is (argument == "idle_gpu_timeout")


def test_the_parse_time_check_converts_only_the_arguments_given() -> None:
    assert check_guardrail_arguments() == {}
    assert check_guardrail_arguments(stall_timeout="30m", idle_gpu_threshold=None) == {
        "stall_timeout": 1800.0,
        "idle_gpu_threshold": 5.0,
    }
    with pytest.raises(HfJobsInputError, match=r"^max_scheduling_time="):
        check_guardrail_arguments(stall_timeout="30m", max_scheduling_time=-1)
    with pytest.raises(TypeError, match="stall_timout"):
        check_guardrail_arguments(stall_timout="30m")
    assert set(GUARDRAIL_ARGUMENTS) == set(Guardrails().to_dict())


def test_guardrails_built_directly_are_checked_too() -> None:
    assert Guardrails(stall_timeout="1h").stall_timeout == 3600.0  # type: ignore[arg-type]
    with pytest.raises(HfJobsInputError, match=r"^stall_timeout=-1"):
        Guardrails(stall_timeout=-1)


def test_guardrails_travel_as_plain_json() -> None:
    rails = Guardrails.from_arguments(
        stall_timeout="30m",
        max_cost_usd="$2",
        idle_gpu_timeout="1h",
        idle_gpu_threshold=7,
        max_scheduling_time=600,
    )
    text = json.dumps(rails.to_dict())
    assert Guardrails.from_dict(json.loads(text)) == rails
    assert Guardrails.from_dict(None) == Guardrails() and Guardrails.from_dict({}) == Guardrails()
    assert rails.describe() == (
        "stall_timeout 30m, max_cost_usd $2.00, idle_gpu_timeout 1h (GPU under 7%), max_scheduling_time 10m"
    )


def test_guardrails_from_json_refuse_what_they_do_not_know() -> None:
    with pytest.raises(HfJobsInputError, match=r"unknown 'max_tokens'.*another provider version"):
        Guardrails.from_dict({"stall_timeout": 60, "max_tokens": 5})
    with pytest.raises(HfJobsInputError, match=r"^max_cost_usd="):
        Guardrails.from_dict({"max_cost_usd": -2})
    with pytest.raises(HfJobsInputError, match="must be a mapping"):
        Guardrails.from_dict([60])  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------- formatting
@pytest.mark.parametrize(
    ("seconds", "exact", "approximate"),
    [
        (0, "0s", "0s"), (2.5, "2.5s", "2s"), (45, "45s", "45s"), (60, "1m", "1m"), (1800, "30m", "30m"),
        (1805, "30m 5s", "30m 5s"), (3600, "1h", "1h"), (3633, "1h 0m 33s", "1h 1m"), (4233, "1h 10m 33s", "1h 11m"),
        (6857.14, "1h 54m 17s", "1h 54m"), (90061, "1d 1h 1m 1s", "1d 1h 1m"), (172800, "2d", "2d"), (-3, "0s", "0s"),
    ],
)  # fmt: skip
def test_durations_read_as_people_write_them(seconds: float, exact: str, approximate: str) -> None:
    assert format_duration(seconds) == exact
    assert format_duration(seconds, approximate=True) == approximate


def test_the_price_per_hour_of_a_flavor_priced_per_minute() -> None:
    hardware = HardwareInfo("a10g-small", "A10G", "4 vCPU", "15 GB", None, 0.0175, "minute")
    assert price_per_hour(hardware) == pytest.approx(1.05)


# ------------------------------------------------------------------------------------------- cap warning
def test_the_cap_warning_says_when_the_cap_stops_the_job_first() -> None:
    rails = Guardrails.from_arguments(max_cost_usd=2)
    assert cap_warning(rails, 3 * 3600, 1.05, job_id="X", flavor="a10g-small") == (
        "max_cost_usd $2.00 stops job X after about 1h 54m on a10g-small ($1.05/h), before its timeout of 3h."
    )
    assert cap_warning(rails, "3h", 1.05, flavor="a10g-small") == (
        "max_cost_usd $2.00 stops the job after about 1h 54m on a10g-small ($1.05/h), before its timeout of 3h."
    )


def test_no_cap_warning_when_the_timeout_comes_first_or_nothing_is_known() -> None:
    rails = Guardrails.from_arguments(max_cost_usd=2)
    assert cap_warning(rails, 3600, 1.05) is None  # the timeout stops it after 1h, the cap after 1h 54m
    assert cap_warning(rails, 7200, 1.0) is None  # both at 2h: the timeout says it
    assert cap_warning(rails, 7201, 1.0) is not None
    assert cap_warning(rails, 3 * 3600, None) is None and cap_warning(rails, 3 * 3600, 0) is None
    assert cap_warning(Guardrails.from_arguments(stall_timeout=60), 3 * 3600, 1.05) is None


def test_the_cap_warning_knows_the_servers_default_timeout() -> None:
    rails = Guardrails.from_arguments(max_cost_usd=0.2)  # 12 min at $1/h; the default timeout is 30 min
    assert cap_warning(rails, None, 1.0, job_id="X").endswith(
        "after about 12m on its flavor ($1.00/h), before its timeout of 30m."
    )  # type: ignore[union-attr]
    assert cap_warning(Guardrails.from_arguments(max_cost_usd=1), None, 1.0) is None


# ------------------------------------------------------------------------------------------------ flavors
def test_a_flavor_fallback_list_is_checked() -> None:
    assert flavor_fallback(None) == []
    assert flavor_fallback("a10g-small") == ["a10g-small"]
    assert flavor_fallback(["l4x1", "a10g-small"]) == ["l4x1", "a10g-small"]
    assert flavor_fallback(("l4x1",)) == ["l4x1"]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ([], "flavor is an empty list: give at least one flavor name, or None"),
        (["l4x1", "a10g-small", "l4x1"], "flavor[2] 'l4x1' repeats flavor[0]: list each flavor once"),
        (["l4x1", "L4X1"], "flavor[1] 'L4X1' repeats flavor[0]"),
        (["", "l4x1"], "flavor[0] must be a hardware name"),
        (["l4x1", 4], "flavor[1] must be a hardware name"),
        ("  ", "flavor must be a hardware name"),
        (4, "flavor must be a flavor name or a list of them"),
    ],
)
def test_a_bad_flavor_fallback_says_which_entry(given: Any, says: str) -> None:
    with pytest.raises(HfJobsInputError) as error:
        flavor_fallback(given)
    assert str(error.value).startswith(says), str(error.value)


def test_the_next_flavor() -> None:
    flavors = ["l4x1", "a10g-small", "a100-large"]
    assert next_flavor(flavors, "l4x1") == "a10g-small"
    assert next_flavor(flavors, "a10g-small") == "a100-large"
    assert next_flavor(flavors, "a100-large") is None
    assert (
        next_flavor(flavors, "h200") is None
        and next_flavor(flavors, None) is None
        and next_flavor([], None) is None
    )


# ------------------------------------------------------------------------------------------ stall_timeout
def test_the_stall_guard_fires_at_its_limit_and_not_before() -> None:
    guard = running(at=100, stall_timeout=60)
    assert guard.check(159.999) is None
    stop = guard.check(160)
    assert stop is not None and (stop.guard, stop.limit, stop.value, stop.job_id) == (
        "stall_timeout",
        60,
        60,
        "job1",
    )
    assert stop.message == (
        "stall_timeout: no log line from job job1 for 1m while RUNNING (limit 1m), none since it started; "
        "cancelling it."
    )


def test_each_log_line_starts_the_stall_clock_over() -> None:
    guard = running(at=0, stall_timeout="30m")
    for moment in (600, 1500, 3000):
        guard.observe_life(moment)
        assert guard.check(moment + 1799) is None
    guard.observe_life(2000)  # a late report of an older line moves nothing back
    stop = guard.check(4800)
    assert stop is not None and stop.value == 1800
    assert (
        stop.message
        == "stall_timeout: no log line from job job1 for 30m while RUNNING (limit 30m); cancelling it."
    )


def test_a_job_still_scheduling_is_not_stalled() -> None:
    guard = watch(stall_timeout=60)
    guard.observe_job(job(JobStage.SCHEDULING), 0)
    guard.observe_life(10)  # a line before the poll saw it RUNNING: the clock still starts at RUNNING
    assert guard.check(1000) is None and guard.next_check_in(1000) is None
    guard.observe_job(job(JobStage.RUNNING), 1000)
    assert guard.check(1059) is None
    assert guard.check(1060) is not None


def test_a_job_back_in_scheduling_restarts_the_stall_clock_when_it_runs_again() -> None:
    guard = running(at=0, stall_timeout=60)
    guard.observe_job(job(JobStage.SCHEDULING), 30)  # a retry waits for hardware again
    assert guard.check(500) is None
    guard.observe_job(job(JobStage.RUNNING), 500)
    guard.observe_job(job(JobStage.RUNNING), 530)  # still running: nothing restarts
    assert guard.check(559) is None and guard.check(560) is not None


def test_no_guard_fires_for_a_job_not_seen_yet_or_ended() -> None:
    guard = watch(stall_timeout=60, max_scheduling_time=60, max_cost_usd=0.01)
    assert guard.check(10_000, price_per_hour_usd=100) is None and guard.next_check_in(10_000) is None
    guard.observe_job(job(JobStage.RUNNING), 0)
    guard.observe_job(job(JobStage.COMPLETED), 30)
    assert guard.check(10_000, price_per_hour_usd=100, billed_seconds=10_000) is None
    assert guard.next_check_in(10_000) is None and guard.stopped is None


def test_no_guardrails_never_stop() -> None:
    guard = running(at=0)
    guard.observe_metrics(gpus(0), 1)
    assert guard.check(10**9, price_per_hour_usd=100, billed_seconds=10**9) is None
    assert guard.next_check_in(10**9) is None


def test_a_stop_is_said_again_until_the_cancel_shows() -> None:
    guard = running(at=0, stall_timeout=60)
    stop = guard.check(60)
    assert stop is not None and guard.stopped is stop
    guard.observe_life(61)
    assert guard.check(62) is stop and guard.next_check_in(62) == 0
    guard.observe_job(job(JobStage.CANCELED), 63)
    assert guard.check(64) is stop  # what stopped it, for the task's XCom


# ------------------------------------------------------------------------------------ max_scheduling_time
def test_the_scheduling_guard_fires_at_its_limit_and_names_the_next_flavor() -> None:
    guard = watch(flavors=("a10g-small", "l4x1"), max_scheduling_time="10m")
    guard.observe_job(job(JobStage.SCHEDULING), 0)
    guard.observe_job(job(JobStage.SCHEDULING), 300)  # still waiting: the clock keeps running
    assert guard.check(599.999) is None
    stop = guard.check(600)
    assert stop is not None and (stop.guard, stop.value, stop.next_flavor) == (
        "max_scheduling_time",
        600,
        "l4x1",
    )
    assert stop.message == (
        "max_scheduling_time: job job1 still SCHEDULING after 10m (limit 10m) on a10g-small; cancelling it to "
        "try l4x1 next."
    )


@pytest.mark.parametrize(
    ("flavors", "ending"),
    [(("l4x1", "a10g-small"), "; cancelling it (no other flavor to try)."), ((), "; cancelling it.")],
)
def test_the_scheduling_guard_on_the_last_flavor(flavors: tuple[str, ...], ending: str) -> None:
    guard = watch(flavors=flavors, max_scheduling_time=60)
    guard.observe_job(job(JobStage.SCHEDULING), 0)
    stop = guard.check(60)
    assert stop is not None and stop.next_flavor is None and stop.message.endswith(ending), stop


def test_the_scheduling_wait_counts_from_creation_when_the_server_says() -> None:
    guard = watch(max_scheduling_time=600)
    guard.observe_job(job(JobStage.SCHEDULING, scheduling_secs=500), 1000)  # created at 500 on our clock
    assert guard.check(1099.9) is None
    stop = guard.check(1100)
    assert stop is not None and stop.value == 600


def test_a_running_job_is_no_longer_scheduling() -> None:
    guard = watch(max_scheduling_time=60)
    guard.observe_job(job(JobStage.SCHEDULING), 0)
    guard.observe_job(job(JobStage.RUNNING), 59)
    assert guard.check(10_000) is None and guard.next_check_in(10_000) is None


def test_a_resubmitted_job_starts_every_clock_over() -> None:
    guard = watch(flavors=("a10g-small", "l4x1"), max_scheduling_time=600)
    guard.observe_job(job(JobStage.SCHEDULING), 0)
    first = guard.check(600)
    assert first is not None and first.next_flavor == "l4x1"
    guard.observe_job(job(JobStage.SCHEDULING, job_id="job2", flavor="l4x1"), 610)
    assert guard.stopped is None and guard.check(1209) is None
    second = guard.check(1210)
    assert second is not None and (second.job_id, second.flavor, second.next_flavor) == ("job2", "l4x1", None)


# ------------------------------------------------------------------------------------------- max_cost_usd
def test_the_cost_cap_fires_at_its_limit_with_the_billed_time_given() -> None:
    guard = running(at=0, max_cost_usd=1.2)
    assert guard.check(10, price_per_hour_usd=1.2, billed_seconds=3599.99) is None
    stop = guard.check(11, price_per_hour_usd=1.2, billed_seconds=3600)
    assert stop is not None and stop.guard == "max_cost_usd" and stop.value == pytest.approx(1.2)
    assert stop.cost_usd == pytest.approx(1.2) and stop.limit == 1.2


def test_the_cost_message_gives_the_figures() -> None:
    stop = running(at=0, max_cost_usd="1.20").check(1, price_per_hour_usd=1.05, billed_seconds=4233)
    assert stop is not None and stop.message == (
        "max_cost_usd: job job1 has cost about $1.2346 (a10g-small at $1.05/h for 1h 10m 33s), the limit is "
        "$1.20; cancelling it."
    )


def test_without_the_billed_time_the_cost_runs_from_the_start_seen() -> None:
    guard = running(at=100, max_cost_usd=1.2)
    assert guard.check(3699, price_per_hour_usd=1.2) is None
    stop = guard.check(3700, price_per_hour_usd=1.2)
    assert stop is not None and stop.value == pytest.approx(1.2)
    assert "for 1h)" in stop.message


def test_the_servers_running_time_moves_the_start_earlier() -> None:
    guard = watch(max_cost_usd=1.2)
    guard.observe_job(job(JobStage.RUNNING, running_secs=600), 1000)  # it started at 400 on our clock
    assert guard.check(3999, price_per_hour_usd=1.2) is None
    assert guard.check(4000, price_per_hour_usd=1.2) is not None


def test_a_billed_time_given_once_goes_on_growing_while_running() -> None:
    guard = running(at=0, max_cost_usd=1.2)
    assert guard.check(1000, price_per_hour_usd=1.2, billed_seconds=3000) is None
    assert guard.check(1599) is None  # 3000 + 599 s, at the price remembered
    stop = guard.check(1600)
    assert stop is not None and stop.value == pytest.approx(1.2)


def test_no_price_no_cost_stop_and_nothing_is_billed_while_scheduling() -> None:
    guard = running(at=0, max_cost_usd=1)
    assert guard.check(10**6, billed_seconds=10**6) is None
    assert (
        guard.check(10**6, price_per_hour_usd=-1) is None
        and guard.check(10**6, price_per_hour_usd=float("nan")) is None
    )
    waiting = watch(max_cost_usd=1)
    waiting.observe_job(job(JobStage.SCHEDULING), 0)
    assert waiting.check(10**6, price_per_hour_usd=100) is None


def test_money_comes_first_when_several_guards_are_due() -> None:
    guard = running(at=0, max_cost_usd=1, stall_timeout=60)
    stop = guard.check(7200, price_per_hour_usd=1)
    assert stop is not None and stop.guard == "max_cost_usd"


# --------------------------------------------------------------------------------------- idle_gpu_timeout
def test_gpu_utilization_is_read_as_the_metrics_summary_reads_it() -> None:
    sample = gpus(10, 30)
    accumulator = MetricsAccumulator()
    accumulator.add(sample)
    assert gpu_utilization(sample) == (accumulator.summary()["gpu_utilization_mean_pct"], 2) == (20.0, 2)
    for no_reading in (
        {"gpus": {}},
        {"cpu_usage_pct": 3},
        {"gpus": [1, 2]},
        {"gpus": {"a": {"utilization": "x"}}},
        "x",
    ):
        assert gpu_utilization(no_reading) is None


def test_the_idle_gpu_guard_fires_after_its_limit_of_idle_samples() -> None:
    guard = running(at=0, idle_gpu_timeout=60)
    guard.check(0, price_per_hour_usd=1.2)
    assert feed(guard, range(0, 60), 2) == []
    assert feed(guard, [60], 2) == [60]
    stop = guard.stopped
    assert stop is not None and (stop.guard, stop.value, stop.limit) == ("idle_gpu_timeout", 60, 60)
    assert stop.message == (
        "idle_gpu_timeout: the GPU of job job1 was under 5% for 1m (limit 1m); that idle time cost about "
        "$0.020; cancelling it."
    )


def test_a_busy_sample_ends_the_idle_run() -> None:
    guard = running(at=0, idle_gpu_timeout=60)
    assert feed(guard, range(0, 51), 1) == []
    assert feed(guard, [51], 80) == []
    assert feed(guard, range(52, 112), 1) == []
    assert feed(guard, [112], 1) == [112]


def test_the_threshold_itself_is_not_idle() -> None:
    guard = running(at=0, idle_gpu_timeout=10, idle_gpu_threshold=5)
    assert feed(guard, range(0, 100), 5) == []
    assert feed(guard, range(100, 111), 4.9)[:1] == [110]


def test_samples_without_a_gpu_reading_are_a_gap_not_a_verdict() -> None:
    guard = running(at=0, idle_gpu_timeout=60)
    assert feed(guard, range(0, 31), 0) == []
    for moment in range(31, 45):
        guard.observe_metrics({"cpu_usage_pct": 1, "gpus": {}}, moment)
        assert guard.check(moment) is None
    assert feed(guard, range(45, 60), 0) == []
    assert feed(guard, [60], 0) == [60]


def test_a_long_silence_starts_the_idle_run_over() -> None:
    guard = running(at=0, idle_gpu_timeout=60)
    assert feed(guard, range(0, 11), 0) == []
    back = 10 + IDLE_GPU_MAX_GAP_SECONDS + 1  # nothing says the GPU idled meanwhile
    assert feed(guard, [back, back + 59], 0) == []
    assert feed(guard, [back + 60], 0) == [back + 60]


def test_a_gap_up_to_the_limit_keeps_the_run() -> None:
    guard = running(at=0, idle_gpu_timeout=100)
    assert feed(guard, [0, IDLE_GPU_MAX_GAP_SECONDS, 99], 0) == []
    assert feed(guard, [100], 0) == [100]


def test_idle_time_is_what_samples_showed_not_the_clock() -> None:
    guard = running(at=0, idle_gpu_timeout=60)
    assert feed(guard, range(0, 31), 0) == []
    assert guard.check(10_000) is None  # the stream went quiet: no evidence of 60 s idle


def test_several_gpus_are_idle_on_average() -> None:
    guard = running(at=0, idle_gpu_timeout=10)
    assert feed(guard, range(0, 20), 0, 20) == []  # mean 10%: busy enough for 5%
    loose = running(at=0, idle_gpu_timeout=10, idle_gpu_threshold=15)
    assert feed(loose, range(0, 11), 0, 20) == [10]
    assert loose.stopped is not None
    assert loose.stopped.message.startswith(
        "idle_gpu_timeout: the 2 GPUs of job job1 were on average under 15% for 10s"
    )


def test_the_idle_message_without_a_price() -> None:
    guard = running(at=0, idle_gpu_timeout="1h")
    feed(guard, range(0, 3601, 10), 0)
    assert guard.stopped is not None and guard.stopped.message == (
        "idle_gpu_timeout: the GPU of job job1 was under 5% for 1h (limit 1h); cancelling it."
    )
    assert guard.stopped.cost_usd is None


# ----------------------------------------------------------------------------------------- next_check_in
def test_next_check_in_is_the_earliest_guard() -> None:
    guard = watch(max_scheduling_time=600, stall_timeout=60, idle_gpu_timeout=300, max_cost_usd=1.2)
    guard.observe_job(job(JobStage.SCHEDULING), 0)
    assert guard.next_check_in(100) == 500
    guard.observe_job(job(JobStage.RUNNING), 200)
    assert guard.next_check_in(230) == 30  # the stall clock
    guard.observe_life(250)
    assert guard.next_check_in(260) == 50
    stall_only = running(at=0, stall_timeout=60)
    assert stall_only.next_check_in(100) == 0  # overdue: check now


def test_next_check_in_for_the_cost_cap_uses_the_price() -> None:
    guard = running(at=0, max_cost_usd=1.2)
    assert guard.next_check_in(600) is None  # no price known: nothing to wait for
    assert guard.next_check_in(600, price_per_hour_usd=1.2) == pytest.approx(3000)
    assert guard.check(600, price_per_hour_usd=1.2) is None
    assert guard.next_check_in(1600) == pytest.approx(2000)  # the price remembered
    assert guard.next_check_in(1600, billed_seconds=3500) == pytest.approx(100)


def test_next_check_in_for_an_idle_gpu() -> None:
    guard = running(at=0, idle_gpu_timeout=60)
    assert guard.next_check_in(5) == 60  # no idle run yet: one must start and last 60 s
    feed(guard, [10], 0)
    assert guard.next_check_in(20) == 50


@pytest.mark.parametrize(
    ("arguments", "stage"),
    [
        ({"stall_timeout": 90}, JobStage.RUNNING),
        ({"max_scheduling_time": 90}, JobStage.SCHEDULING),
        ({"max_cost_usd": 0.5}, JobStage.RUNNING),
    ],
)
def test_sleeping_next_check_in_lands_on_the_stop(arguments: dict[str, Any], stage: JobStage) -> None:
    guard = watch(**arguments)
    guard.observe_job(job(stage), 1000.25)
    now = 1010.5
    assert guard.check(now, price_per_hour_usd=0.75) is None
    wait = guard.next_check_in(now)
    assert wait is not None and wait > 0
    assert guard.check(now + wait * 0.999) is None
    assert guard.check(now + wait) is not None


# -------------------------------------------------------------------------------------------- GuardStop
def test_a_stop_travels_as_plain_json() -> None:
    guard = watch(flavors=("a10g-small", "l4x1"), max_scheduling_time=60)
    guard.observe_job(job(JobStage.SCHEDULING), 0)
    stop = guard.check(60, price_per_hour_usd=1.05)
    assert stop is not None
    data = json.loads(json.dumps(stop.to_dict()))
    assert data == {
        "guard": "max_scheduling_time", "message": stop.message, "job_id": "job1", "flavor": "a10g-small",
        "limit": 60.0, "value": 60.0, "cost_usd": 0.0, "next_flavor": "l4x1",
    }  # fmt: skip
    assert GuardStop.from_dict(data) == stop


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"guard": "max_tokens"},
        {"guard": "stall_timeout", "message": "m", "limit": 1},
        None,
        "stall_timeout",
    ],
)
def test_a_stop_from_json_is_checked(data: Any) -> None:
    with pytest.raises(HfJobsInputError, match="not a guard stop"):
        GuardStop.from_dict(data)
