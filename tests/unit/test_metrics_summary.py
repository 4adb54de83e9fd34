"""Metrics in the task: the summary math and what is said about it (pure), then the operator's and the
trigger's wiring with stand-in hooks. The real HTTP path is tests/integration/test_task_metrics.py."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_hfjobs.exceptions import HfJobFailedError, HfJobsAPIError
from airflow_provider_hfjobs.metrics import (
    MAX_GPUS_PER_SAMPLE,
    SUMMARY_KEYS,
    MetricsAccumulator,
    flavor_has_gpu,
    idle_gpu_warning,
    summary_from,
    summary_line,
)
from airflow_provider_hfjobs.operators import followers
from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator, HfUvJobOperator
from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger
from tests.unit.test_operators import JOB_ID, FakeTI, event, job, operator
from tests.unit.test_trigger import FakeHook, RecordingLog, events, recorded
from tests.unit.test_trigger import job as trigger_job

GB = 1_000_000_000


def sample(
    cpu: float = 35, memory: float = 3.1 * GB, gpus: dict[str, Any] | None = None, rx: float = 1.2e6
) -> dict[str, Any]:
    """One sample as the Hub sends it (the reference's §6)."""
    return {
        "cpu_usage_pct": cpu, "cpu_millicores": 4000, "memory_used_bytes": memory,
        "memory_total_bytes": 16 * GB, "rx_bps": rx, "tx_bps": 1e5, "gpus": gpus if gpus is not None else {},
        "replica": "j6qz9",
    }  # fmt: skip


def gpu(utilization: float, used: float = 14.2 * GB, total: float = 22.8 * GB) -> dict[str, Any]:
    return {"utilization": utilization, "memory_used_bytes": used, "memory_total_bytes": total}


def summarize(*samples: Any) -> dict[str, Any]:
    accumulator = MetricsAccumulator()
    for one in samples:
        accumulator.add(one)
    return accumulator.summary()


# ------------------------------------------------------------------------------------------- the math
@pytest.mark.parametrize(
    ("flavor", "expected"),
    [("cpu-basic", False), ("CPU-XL", False), (None, False), ("", False), ("a10g-small", True),
     ("t4-small", True), ("h200", True), ("rtx-pro-6000x8", True)],
)  # fmt: skip
def test_a_gpu_flavor_is_known_by_its_name(flavor: str | None, expected: bool) -> None:
    assert flavor_has_gpu(flavor) is expected


def test_means_peaks_and_gpu_memory_summed_over_the_gpus_of_a_sample() -> None:
    summary = summarize(
        sample(cpu=20, memory=2 * GB, gpus={"a": gpu(80, 10 * GB, 24 * GB), "b": gpu(100, 12 * GB, 24 * GB)}),
        sample(cpu=50, memory=3 * GB, gpus={"a": gpu(60, 11 * GB, 24 * GB), "b": gpu(0, 1 * GB, 24 * GB)}),
    )
    assert summary == {
        "samples": 2, "gpu_samples": 2, "gpu_count": 2,
        "gpu_utilization_mean_pct": 60.0, "gpu_utilization_peak_pct": 100.0,
        "gpu_memory_used_peak_bytes": 22 * GB, "gpu_memory_total_bytes": 48 * GB,
        "cpu_usage_mean_pct": 35.0, "cpu_usage_peak_pct": 50.0,
        "memory_used_peak_bytes": 3 * GB, "memory_total_bytes": 16 * GB,
        "rx_bps_mean": 1.2e6, "tx_bps_mean": 1e5,
    }  # fmt: skip


def test_the_summary_is_small_plain_numbers_whatever_the_samples() -> None:
    junk = [
        None, "text", [1, 2], {"cpu_usage_pct": "90", "memory_used_bytes": True, "rx_bps": math.nan,
         "tx_bps": -5, "gpus": "all of them"},
        {"gpus": {"x": "busy", "y": {"utilization": math.inf, "memory_used_bytes": "lots"}}},
        {"cpu_usage_pct": 12, "gpus": {f"g{i}": gpu(50) for i in range(MAX_GPUS_PER_SAMPLE + 10)}},
    ]  # fmt: skip
    summary = summarize(*junk)
    assert set(summary) == set(SUMMARY_KEYS)
    assert all(value is None or type(value) in (int, float) for value in summary.values())
    assert json.loads(json.dumps(summary)) == summary
    # Not-a-dict samples are no samples; a field that is not a finite, non-negative number is unmeasured.
    assert summary["samples"] == 3 and summary["cpu_usage_mean_pct"] == 12.0
    assert summary["memory_used_peak_bytes"] is None and summary["rx_bps_mean"] is None
    assert summary["gpu_count"] == MAX_GPUS_PER_SAMPLE and summary["gpu_utilization_mean_pct"] == 50.0


def test_no_sample_means_nothing_measured() -> None:
    summary = summarize()
    assert summary["samples"] == 0 and summary["gpu_samples"] == 0
    assert all(
        summary[key] is None for key in SUMMARY_KEYS if key not in ("samples", "gpu_samples", "gpu_count")
    )


def test_a_summary_from_an_event_keeps_only_known_numbers() -> None:
    sent = {**summarize(sample(gpus={"a": gpu(87)})), "note": "a log line", "cpu_usage_mean_pct": "35"}
    got = summary_from(sent)
    assert got is not None and set(got) == set(SUMMARY_KEYS)
    assert got["gpu_utilization_mean_pct"] == 87.0 and got["cpu_usage_mean_pct"] is None
    for bad in (None, "samples=3", [1], {"cpu_usage_mean_pct": 3}):  # no sample count: not a summary
        assert summary_from(bad) is None


# ----------------------------------------------------------------------------------- what is said
def test_the_summary_line_says_everything_measured() -> None:
    summary = summarize(
        *[sample(cpu=35, memory=3.1 * GB, gpus={"a": gpu(100 if n % 2 else 74)}) for n in range(812)]
    )
    assert summary_line("J", summary, gpu_flavor=True) == (
        "Hugging Face job J used: GPU 87% mean / 100% peak, GPU memory 14.2/22.8 GB peak, CPU 35% mean / 35% "
        "peak, memory 3.1/16.0 GB peak, network 1.2 Mbps in / 100.0 kbps out over 812 samples."
    )


def test_several_gpus_are_named_so() -> None:
    summary = summarize(sample(gpus={"a": gpu(50), "b": gpu(70)}))
    assert summary_line("J", summary, gpu_flavor=True).startswith("Hugging Face job J used: 2 GPUs 60% mean")


def test_without_gpu_readings_the_line_says_what_was_measured() -> None:
    summary = summarize(sample(cpu=4, rx=0), sample(cpu=6, rx=0))
    line = summary_line("J", summary, gpu_flavor=True)
    assert line == (
        "Hugging Face job J used: CPU 5% mean / 6% peak, memory 3.1/16.0 GB peak, network 0 bps in / "
        "100.0 kbps out over 2 samples (no GPU reading in them)."
    )
    assert "no GPU" not in summary_line("J", summary, gpu_flavor=False)
    assert idle_gpu_warning("J", "a10g-small", summary, 0.23) is None  # nothing says the GPU was idle


def test_no_sample_at_all_is_said_plainly() -> None:
    line = summary_line("J", summarize(), gpu_flavor=True)
    assert line.startswith("Hugging Face job J: no metrics sample arrived")


def test_an_idle_gpu_warning_says_what_the_idle_time_cost() -> None:
    summary = summarize(sample(gpus={"a": gpu(8)}))
    assert idle_gpu_warning("J", "a10g-small", summary, 0.23) == (
        "Hugging Face job J barely used its GPU (8% mean utilization): the a10g-small was idle 92% of the "
        "time: about $0.21 of $0.23 paid for nothing. A smaller flavor, or a cpu-* one, may do as well; or "
        "check that the job uses the GPU."
    )
    cheap = idle_gpu_warning("J", "a10g-small", summary, 0.004)
    assert cheap is not None and "about $0.0037 of $0.0040" in cheap  # small amounts stay readable
    unpriced = idle_gpu_warning("J", "a10g-small", summary, None)
    assert unpriced is not None and "idle 92% of the time." in unpriced and "$" not in unpriced


@pytest.mark.parametrize(
    ("flavor", "utilization"), [("a10g-small", 10), ("a10g-small", 55), ("cpu-basic", 0), (None, 0)]
)
def test_no_idle_warning_for_a_busy_gpu_or_a_cpu_flavor(flavor: str | None, utilization: float) -> None:
    assert idle_gpu_warning("J", flavor, summarize(sample(gpus={"a": gpu(utilization)})), 1.0) is None


# ----------------------------------------------------------------------------- the operator, sync mode
class Recording(RecordingLog):
    def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._record("debug", message, *args, **kwargs)


@pytest.fixture
def task_log(mocker) -> Recording:
    log = Recording()
    mocker.patch.object(HfJobRunOperator, "log", new=property(lambda self: log))
    return log


def sync_operator(mocker, samples: Any, **kwargs: Any) -> tuple[HfJobRunOperator, Any, threading.Event]:
    """An operator whose stand-in hook streams ``samples`` (a list, an exception, or a callable making the
    iterator); the job ends only once they are all read (no race with the metrics thread)."""
    op, hook = operator(**kwargs)
    read = threading.Event()

    def metrics(job_id: str, *, namespace: str | None, follow: bool) -> Iterator[dict[str, Any]]:
        assert (job_id, namespace, follow) == (JOB_ID, "alice", True)
        try:
            if isinstance(samples, Exception):
                raise samples
            yield from samples() if callable(samples) else samples
        finally:
            read.set()

    hook.fetch_job_metrics.side_effect = metrics
    hook.run_job.return_value = job("SCHEDULING", flavor=kwargs.get("flavor") or "a10g-small")
    hook.iter_job_log_batches.return_value = iter([])

    def wait_for_job(*_: Any, **__: Any) -> Any:
        if op._wants_metrics(hook.run_job.return_value):
            read.wait(10)
        return job("COMPLETED", flavor=kwargs.get("flavor") or "a10g-small")

    hook.wait_for_job.side_effect = wait_for_job
    mocker.patch.object(op, "_metrics_hook", return_value=hook)
    return op, hook, read


def test_sync_task_ends_with_the_summary_line_the_xcom_and_the_idle_gpu_warning(mocker, task_log) -> None:
    op, _, _ = sync_operator(mocker, [sample(gpus={"a": gpu(5)})] * 3, flavor="a10g-small")
    ti = FakeTI()
    assert op.execute({"ti": ti}) == JOB_ID
    metrics = ti.xcom["job"]["metrics"]
    assert metrics["samples"] == 3 and metrics["gpu_utilization_mean_pct"] == 5.0
    infos = task_log.texts("info")
    assert infos[-1].startswith(f"Hugging Face job {JOB_ID} used: GPU 5% mean / 5% peak")
    assert infos[-2].startswith(f"Hugging Face job {JOB_ID} COMPLETED on a10g-small")  # the cost line first
    (warning,) = [text for text in task_log.texts("warning") if "Hugging Face job" in text]
    # 2 min of A10G small at $1/h: $0.0333, 95% of it idle.
    assert "idle 95% of the time: about $0.032 of $0.033 paid for nothing" in warning


def test_a_cpu_flavor_makes_no_metrics_request_by_default(mocker, task_log) -> None:
    op, hook, _ = sync_operator(mocker, [sample()], flavor="cpu-basic")
    ti = FakeTI()
    op.execute({"ti": ti})
    hook.fetch_job_metrics.assert_not_called()
    assert "metrics" not in ti.xcom["job"] and not any("used:" in text for text in task_log.texts())


@pytest.mark.parametrize(("flavor", "log_metrics", "wanted"), [
    ("cpu-basic", None, False), (None, None, False), ("a10g-small", None, True), ("cpu-basic", True, True),
    ("h200", False, False),
])  # fmt: skip
def test_log_metrics_none_means_the_flavor_decides(
    mocker, task_log, flavor: str | None, log_metrics: bool | None, wanted: bool
) -> None:
    op, hook, _ = sync_operator(mocker, [sample()], flavor=flavor, log_metrics=log_metrics)
    hook.run_job.return_value = job("SCHEDULING", flavor=flavor or "cpu-basic")  # the server's default
    ti = FakeTI()
    op.execute({"ti": ti})
    assert hook.fetch_job_metrics.called is wanted and ("metrics" in ti.xcom["job"]) is wanted


def test_a_failing_metrics_stream_never_fails_the_task(mocker, task_log) -> None:
    op, _, _ = sync_operator(mocker, HfJobsAPIError("metrics are down", status_code=503), flavor="a10g-small")
    ti = FakeTI()
    assert op.execute({"ti": ti}) == JOB_ID
    assert ti.xcom["job"]["metrics"]["samples"] == 0
    assert any(
        "Stopped reading the metrics" in text and "metrics are down" in text for text in task_log.texts()
    )
    assert task_log.texts("info")[-1].startswith(f"Hugging Face job {JOB_ID}: no metrics sample arrived")
    assert not [text for text in task_log.texts("warning") if "Hugging Face job" in text]


def test_a_silent_metrics_stream_holds_the_task_a_bounded_time(mocker, monkeypatch, task_log) -> None:
    """The Hub's stream does not end with the job: the task takes its summary and goes, after at most
    METRICS_STOP_WAIT, leaving the daemon thread to its read timeout."""
    monkeypatch.setattr(followers, "METRICS_STOP_WAIT", 0.1)
    release, first_read = threading.Event(), threading.Event()

    def stalls() -> Iterator[dict[str, Any]]:
        yield sample(gpus={"a": gpu(90)})
        first_read.set()
        release.wait(30)  # a read that blocks
        yield sample(gpus={"a": gpu(0)})  # arrives after the job ended: not counted

    op, hook, _ = sync_operator(mocker, stalls, flavor="a10g-small")
    hook.wait_for_job.side_effect = lambda *_, **__: (first_read.wait(10), job("COMPLETED"))[1]
    ti = FakeTI()
    began = time.monotonic()
    try:
        assert op.execute({"ti": ti}) == JOB_ID
        assert time.monotonic() - began < 10  # not the 30 s the read blocks
    finally:
        release.set()
    assert (
        ti.xcom["job"]["metrics"]["samples"] == 1
        and ti.xcom["job"]["metrics"]["gpu_utilization_mean_pct"] == 90
    )


def test_a_failed_job_still_reports_its_metrics(mocker, task_log) -> None:
    op, hook, read = sync_operator(mocker, [sample(gpus={"a": gpu(40)})], flavor="a10g-small")
    hook.wait_for_job.side_effect = lambda *_, **__: (read.wait(10), job("ERROR", "exit code 1"))[1]
    hook.fetch_job_logs.return_value = iter(["oom"])
    with pytest.raises(HfJobFailedError, match="oom"):
        op.execute({"ti": FakeTI()})
    assert task_log.texts("info")[-1].startswith(f"Hugging Face job {JOB_ID} used: GPU 40% mean")


def test_the_metrics_thread_gets_its_own_session_and_the_credentials_already_read(monkeypatch) -> None:
    conn = {"conn_type": "hf_jobs", "host": "http://127.0.0.1:9", "password": "hf_unit_x",
            "extra": {"namespace": "alice"}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_HF_UNIT_METRICS", json.dumps(conn))
    op = HfJobRunOperator(task_id="t", image="python:3.12", command=["true"], hf_conn_id="hf_unit_metrics")
    main_session = op.hook.session
    copy = op._metrics_hook()
    monkeypatch.delenv("AIRFLOW_CONN_HF_UNIT_METRICS")  # no second lookup: it would fail now
    assert copy is not op.hook and copy.credentials is op.hook.credentials and copy.namespace == "alice"
    assert copy.session is not main_session and op.hook.session is main_session
    copy.close()


def test_the_uv_operator_takes_log_metrics() -> None:
    op = HfUvJobOperator(task_id="t", script="print(1)", log_metrics=True)
    assert op.log_metrics is True


# -------------------------------------------------------------------------- the operator, deferred
@pytest.mark.parametrize(
    ("flavor", "log_metrics", "wanted"),
    [("a10g-small", None, True), ("cpu-basic", None, False), ("a10g-small", False, False),
     ("cpu-upgrade", True, True)],
)  # fmt: skip
def test_the_trigger_is_told_whether_to_sample(flavor: str, log_metrics: bool | None, wanted: bool) -> None:
    op, hook = operator(deferrable=True, log_metrics=log_metrics)
    hook.run_job.return_value = job("SCHEDULING", flavor=flavor)
    hook.inspect_job.return_value = job("RUNNING", flavor=flavor)
    with pytest.raises(TaskDeferred) as info:
        op.execute({"ti": FakeTI()})
    trigger = info.value.trigger
    assert trigger.log_metrics is wanted and trigger.serialize()[1]["log_metrics"] is wanted
    hook.fetch_job_metrics.assert_not_called()  # the worker never reads them in deferred mode


def test_resumed_task_reports_the_triggers_summary(task_log) -> None:
    op, hook = operator()
    hook.inspect_job.return_value = job("COMPLETED")
    summary = summarize(*[sample(gpus={"a": gpu(8)})] * 4)
    ti = FakeTI()
    op.execute_complete({"ti": ti}, event("success", "COMPLETED", metrics={**summary, "junk": "text"}))
    assert ti.xcom["job"]["metrics"] == summary  # the junk is dropped
    assert task_log.texts("info")[-1].startswith(f"Hugging Face job {JOB_ID} used: GPU 8% mean")
    (warning,) = [text for text in task_log.texts("warning") if "Hugging Face job" in text]
    assert "idle 92% of the time: about $0.031 of $0.033 paid for nothing" in warning


def test_resumed_task_without_metrics_says_nothing_of_them(task_log) -> None:
    op, hook = operator()
    hook.inspect_job.return_value = job("COMPLETED")
    ti = FakeTI()
    op.execute_complete({"ti": ti}, event("success", "COMPLETED"))
    assert "metrics" not in ti.xcom["job"] and not any("used:" in text for text in task_log.texts())


# ------------------------------------------------------------------------------------------ the trigger
class MetricsHook(FakeHook):
    """A stand-in async hook that also streams metric samples: the log waits until they were all sent, so
    the trigger's two tasks meet deterministically; after them the stream stays open, as the Hub's does."""

    def __init__(self, samples: list[Any] | Exception, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.samples = samples
        self.metrics_calls: list[tuple[str, str, bool]] = []
        self.sent = asyncio.Event()
        self.metrics_closed = False

    async def fetch_job_metrics(self, job_id: str, *, namespace: str, follow: bool):
        self.metrics_calls.append((job_id, namespace, follow))
        try:
            if isinstance(self.samples, Exception):
                raise self.samples
            for one in self.samples:
                yield one
            self.sent.set()
            await asyncio.Event().wait()  # never ends by itself: the trigger cancels it
        finally:
            self.sent.set()
            self.metrics_closed = True

    async def iter_job_log_batches(self, job_id: str, *, namespace: str, cursor: int, **_: Any):
        async with asyncio.timeout(10):
            await self.sent.wait()
        async for batch in super().iter_job_log_batches(job_id, namespace=namespace, cursor=cursor):
            yield batch


async def test_trigger_samples_beside_the_log_and_sends_only_the_summary(monkeypatch) -> None:
    hook = MetricsHook(
        [sample(gpus={"a": gpu(87)})] * 5, lines=["a", "b"], inspections=[trigger_job("COMPLETED")]
    )
    trigger = HfJobTrigger(JOB_ID, "alice", log_metrics=True)
    log = recorded(trigger)
    (payload,) = await events(trigger, hook, monkeypatch)
    assert payload["status"] == "success" and payload["log_cursor"] == 3
    assert payload["metrics"] == summarize(*[sample(gpus={"a": gpu(87)})] * 5)
    assert hook.metrics_calls == [(JOB_ID, "alice", True)] and hook.metrics_closed  # cancelled at the end
    # No text in the metrics: numbers only, and the whole event is plain JSON.
    assert all(value is None or type(value) in (int, float) for value in payload["metrics"].values())
    assert json.loads(json.dumps(payload)) == payload
    assert [text for text in log.texts("info") if text in ("a", "b")] == ["a", "b"]


async def test_trigger_without_metrics_never_asks_for_them(monkeypatch) -> None:
    hook = MetricsHook([sample()], lines=["a"], inspections=[trigger_job("COMPLETED")])
    hook.sent.set()
    (payload,) = await events(HfJobTrigger(JOB_ID, "alice"), hook, monkeypatch)
    assert hook.metrics_calls == [] and "metrics" not in payload
    assert HfJobTrigger(JOB_ID, "alice").serialize()[1]["log_metrics"] is False


async def test_trigger_metrics_failure_changes_nothing_of_the_outcome(monkeypatch) -> None:
    hook = MetricsHook(
        HfJobsAPIError("no metrics here", status_code=404), lines=["a"], inspections=[trigger_job("ERROR")]
    )
    trigger = HfJobTrigger(JOB_ID, "alice", log_metrics=True)
    log = recorded(trigger)
    (payload,) = await events(trigger, hook, monkeypatch)
    assert payload["status"] == "error" and payload["metrics"]["samples"] == 0
    assert any("Stopped reading the metrics" in text for text in log.texts("info"))


async def test_a_deadline_in_polling_mode_cancels_the_sampler_and_keeps_its_summary(monkeypatch) -> None:
    hook = MetricsHook([sample(gpus={"a": gpu(3)})], inspections=[trigger_job("RUNNING")] * 1000)
    trigger = HfJobTrigger(
        JOB_ID, "alice", poll_interval=0.05, stream_logs=False, deadline=time.time() + 1.0, log_metrics=True
    )
    recorded(trigger)
    (payload,) = await events(trigger, hook, monkeypatch)
    assert payload["status"] == "timeout" and payload["metrics"]["samples"] == 1
    assert hook.metrics_closed
