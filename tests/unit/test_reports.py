"""Reports from inside a job (airflow_provider_hfjobs.reports): the line format, the checks both sides make,
what the task log shows (paced progress with rate and ETA), what XCom keeps, and the helper in the job."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from airflow_provider_hfjobs import reports
from airflow_provider_hfjobs.jobs import build_uv_command
from airflow_provider_hfjobs.reports import (
    HELPER_ENV,
    HELPER_MODULE,
    MAX_ASSETS,
    MAX_CHECKS,
    MAX_METADATA_CHARS,
    MAX_METRICS,
    MAX_NAME_CHARS,
    MAX_SUMMARY_CHARS,
    MAX_UNIT_CHARS,
    MAX_URI_CHARS,
    REPORT_PREFIX,
    REPORTS_ENV,
    ReportLog,
    format_report_line,
    helper_encoded,
    helper_source,
    is_report_line,
    parse_report_line,
    progress_text,
    validate_report,
)
from airflow_provider_hfjobs.results import build_function_script, encode_result_lines

INFO, WARNING = logging.INFO, logging.WARNING


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def line(**report: Any) -> str:
    return REPORT_PREFIX + json.dumps(report)


# ------------------------------------------------------------------------------------------ the format
def test_the_documented_line_parses() -> None:
    text = '::hfjobs-report::{"kind":"progress","done":3,"total":10,"unit":"epoch"}'
    assert is_report_line(text) and not is_report_line("progress 3/10")
    assert parse_report_line(text) == {"kind": "progress", "done": 3, "total": 10, "unit": "epoch"}


@pytest.mark.parametrize(
    "report",
    [
        {"kind": "progress", "done": 2.5, "total": 10, "unit": "epoch", "t": 12.5},
        {"kind": "metric", "name": "loss", "value": 0.25, "step": 3},
        {"kind": "metric", "name": "rows", "value": 7},
        {"kind": "asset", "uri": "hf://buckets/alice/out/part-0.parquet", "metadata": {"rows": 10}},
        {"kind": "asset", "uri": "/data/out.csv"},
        {"kind": "check", "name": "no_empty_rows", "passed": False, "metadata": {"empty": 3}},
    ],
)
def test_format_and_parse_round_trip(report: dict[str, Any]) -> None:
    assert parse_report_line(format_report_line(report)) == report


def test_unknown_fields_are_dropped_and_numbers_normalized() -> None:
    assert validate_report({"kind": "metric", "name": "x", "value": 1, "future": "field"}) == {
        "kind": "metric", "name": "x", "value": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"kind": "progress", "done": 1, "total": 0, "unit": "step"}, "total must be above 0"),
        ({"kind": "progress", "done": 1, "total": -3, "unit": "step"}, "total must be above 0"),
        ({"kind": "progress", "done": 11, "total": 10, "unit": "step"}, "between 0 and total"),
        ({"kind": "progress", "done": -1, "total": 10, "unit": "step"}, "between 0 and total"),
        ({"kind": "progress", "done": 1, "total": float("inf"), "unit": "step"}, "finite"),
        ({"kind": "progress", "done": 1, "total": 10, "unit": ""}, "unit must be a non-empty string"),
        ({"kind": "progress", "done": 1, "total": 10, "unit": "u" * (MAX_UNIT_CHARS + 1)}, "over 40"),
        ({"kind": "metric", "name": "loss", "value": float("nan")}, "finite number"),
        ({"kind": "metric", "name": "loss", "value": True}, "must be a number"),
        ({"kind": "metric", "name": "loss", "value": "0.1"}, "must be a number"),
        ({"kind": "metric", "name": "loss", "value": 10**20}, "at most"),
        ({"kind": "metric", "name": "loss", "value": 1, "step": -1}, "step must be a whole number"),
        ({"kind": "metric", "name": "loss", "value": 1, "step": 1.5}, "step must be a whole number"),
        ({"kind": "metric", "name": "a\nb", "value": 1}, "printable"),
        ({"kind": "metric", "name": "n" * (MAX_NAME_CHARS + 1), "value": 1}, "over 100"),
        ({"kind": "metric", "name": "é" * 20, "value": 1}, "non-ASCII"),
        ({"kind": "asset", "uri": "u" * (MAX_URI_CHARS + 1)}, "over 500"),
        ({"kind": "asset", "uri": "x", "metadata": {"blob": "b" * MAX_METADATA_CHARS}}, "write the details"),
        ({"kind": "asset", "uri": "x", "metadata": {"when": object()}}, "JSON values"),
        ({"kind": "asset", "uri": "x", "metadata": [1, 2]}, "a dict"),
        ({"kind": "check", "name": "c", "passed": "yes"}, "True or False"),
        ({"kind": "check", "name": "c", "passed": 1}, "True or False"),
        ({"kind": "checks", "name": "c", "passed": True}, "kind must be one of"),
    ],
)
def test_bad_reports_are_refused_with_a_clear_message(report: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_report(report)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (REPORT_PREFIX + "{not json", "not JSON"),
        (REPORT_PREFIX + "[1, 2]", "a JSON object"),
        (REPORT_PREFIX + json.dumps({"kind": "metric", "name": "x", "value": "NaN"}), "must be a number"),
        (REPORT_PREFIX + "x" * 5000, "over 4096"),
    ],
)
def test_malformed_lines_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_report_line(text)


# ------------------------------------------------------------------------------------------- the task log
def test_progress_shows_rate_and_eta_at_most_every_ten_seconds_plus_first_and_last() -> None:
    clock = Clock()
    log = ReportLog("j1", clock=clock)
    shown: list[tuple[int, str]] = []
    for second in range(0, 68):  # one report a second: 0/100 ... 100/100 at 1.5 a second
        clock.now = 1000.0 + second
        shown += log.feed(line(kind="progress", done=min(100, round(second * 1.5)), total=100, unit="epoch"))
    shown += log.close()
    texts = [text for _, text in shown]
    assert texts[0] == "Progress: 0/100 epoch (0%)"
    assert texts[2] == "Progress: 30/100 epoch (30%), 1.5 epoch/s, ETA 47s"
    assert texts[-1] == "Progress: 100/100 epoch (100%), 1.49 epoch/s"
    assert len(texts) == 8  # 0, 10, 20, ... 60 seconds, and the last (100 at 67 s: done, shown at once)
    assert all(level == INFO for level, _ in shown)


def test_the_last_progress_is_shown_when_the_log_ends() -> None:
    clock = Clock()
    log = ReportLog("j1", clock=clock)
    assert log.feed(line(kind="progress", done=1, total=10, unit="file"))
    clock.now += 2
    assert log.feed(line(kind="progress", done=4, total=10, unit="file")) == []
    assert log.close() == [(INFO, "Progress: 4/10 file (40%), 1.5 file/s, ETA 4s")]
    assert log.close() == []


def test_the_rate_uses_the_jobs_own_time_when_given() -> None:
    """Lines that arrive together (a replay, a reconnect) still give the job's rate."""
    log = ReportLog("j1", clock=Clock())
    log.feed(line(kind="progress", done=0, total=1000, unit="row", t=50.0))
    [(_, text)] = log.feed(line(kind="progress", done=1000, total=1000, unit="row", t=550.0))
    assert text == "Progress: 1000/1000 row (100%), 2 row/s"
    assert log.progress == {
        "done": 1000,
        "total": 1000,
        "unit": "row",
        "percent": 100.0,
        "rate_per_second": 2.0,
    }


def test_slow_rates_read_per_minute_or_hour_and_a_new_phase_starts_over() -> None:
    clock = Clock()
    log = ReportLog("j1", clock=clock)
    log.feed(line(kind="progress", done=0, total=10, unit="epoch"))
    clock.now += 600
    assert log.feed(line(kind="progress", done=2, total=10, unit="epoch")) == [
        (INFO, "Progress: 2/10 epoch (20%), 0.2 epoch/min, ETA 40m")
    ]
    clock.now += 1  # another total: a new phase, shown at once, its rate from its own start
    assert log.feed(line(kind="progress", done=0, total=5, unit="shard")) == [
        (INFO, "Progress: 0/5 shard (0%)")
    ]
    assert progress_text({"done": 1, "total": 4, "unit": "h", "rate_per_second": 1 / 36000}) == (
        "Progress: 1/4 h (25%), 0.1 h/h, ETA 1d 6h"
    )


def test_metrics_assets_and_checks_get_a_line_each_and_a_failed_check_a_warning() -> None:
    log = ReportLog("j1")
    assert log.feed(line(kind="metric", name="loss", value=0.123456789, step=30)) == [
        (INFO, "Metric loss = 0.123457 (step 30)")
    ]
    assert log.feed(line(kind="asset", uri="/out/a.parquet", metadata={"rows": 3})) == [
        (INFO, 'Asset: /out/a.parquet {"rows": 3}')
    ]
    assert log.feed(line(kind="check", name="schema", passed=True)) == [(INFO, "Check schema: passed")]
    assert log.feed(line(kind="check", name="rows", passed=False, metadata={"empty": 2})) == [
        (WARNING, 'Check rows: FAILED {"empty": 2}')
    ]


def test_report_and_result_lines_are_never_shown_raw() -> None:
    log = ReportLog("j1")
    texts = [
        "training",
        line(kind="metric", name="acc", value=0.9),
        *encode_result_lines("value", "1"),
        "done",
    ]
    shown = [text for _, text in log.lines(texts)]
    assert shown == ["training", "Metric acc = 0.9", "done"]
    assert not any(REPORT_PREFIX in text or "hfjobs-result" in text for text in shown)


def test_a_malformed_line_is_one_warning_never_an_error() -> None:
    log = ReportLog("j1")
    [(level, text)] = log.feed(REPORT_PREFIX + '{"kind":"progress","done":5,"total":0,"unit":"x"}')
    assert level == WARNING and "malformed report line of job j1: progress total must be above 0" in text
    assert log.feed(REPORT_PREFIX + "garbage") == [] and log.feed(REPORT_PREFIX) == []
    assert log.summary() == {"metrics": {}, "assets": [], "checks": {}, "malformed": 3}


# ------------------------------------------------------------------------------------------------ XCom
def test_the_summary_keeps_the_last_of_each_kind() -> None:
    log = ReportLog("j1")
    for text in [
        line(kind="progress", done=1, total=4, unit="epoch"),
        line(kind="progress", done=3, total=4, unit="epoch"),
        line(kind="metric", name="loss", value=0.9, step=1),
        line(kind="metric", name="loss", value=0.4, step=3),
        line(kind="metric", name="acc", value=0.7),
        line(kind="asset", uri="/out/a", metadata={"rows": 1}),
        line(kind="asset", uri="/out/b"),
        line(kind="asset", uri="/out/a", metadata={"rows": 2}),
        line(kind="check", name="rows", passed=False),
        line(kind="check", name="rows", passed=True, metadata={"n": 5}),
    ]:
        log.feed(text)
    summary = log.summary()
    assert summary is not None
    assert summary["progress"]["done"] == 3 and summary["progress"]["total"] == 4
    assert summary["metrics"] == {"loss": {"value": 0.4, "step": 3}, "acc": {"value": 0.7}}
    assert summary["assets"] == [{"uri": "/out/b"}, {"uri": "/out/a", "metadata": {"rows": 2}}]
    assert summary["checks"] == {"rows": {"passed": True, "metadata": {"n": 5}}}
    json.dumps(summary)
    assert ReportLog("j2").summary() is None


def test_the_summary_is_masked_like_the_rest() -> None:
    """With Airflow's redact: a registered secret anywhere in a text, and metadata under a sensitive key."""
    from airflow.providers.common.compat.sdk import mask_secret, redact

    mask_secret("hunter2-secret-value")
    log = ReportLog("j1")
    log.feed(
        line(kind="asset", uri="s3://x/hunter2-secret-value/out", metadata={"api_key": "abc", "rows": 3})
    )
    log.feed(line(kind="check", name="hunter2-secret-value", passed=True))
    log.feed(line(kind="metric", name="tokens_per_second", value=12.5))
    summary = log.summary(redact)
    assert summary is not None
    assert "hunter2-secret-value" not in json.dumps(summary)
    assert (
        summary["assets"][0]["metadata"]["api_key"] == "***" and summary["assets"][0]["metadata"]["rows"] == 3
    )
    assert summary["metrics"] == {"tokens_per_second": {"value": 12.5}}


def test_what_is_kept_is_bounded_even_in_the_worst_case() -> None:
    """A trigger event carries the summary: its size is capped, whatever the job prints."""
    log = ReportLog("j1")
    fat = {f"k{i}": "é" for i in range(30)}
    while len(json.dumps(fat)) > MAX_METADATA_CHARS:
        fat.popitem()
    worst = [line(kind="progress", done=2**53 - 1, total=2**53, unit="u" * MAX_UNIT_CHARS)]
    for i in range(MAX_METRICS + 10):
        worst.append(
            line(
                kind="metric",
                name=f"{i:03}" + "m" * (MAX_NAME_CHARS - 3),
                value=-1.2345678901234567e300,
                step=2**53,
            )
        )
    for i in range(MAX_ASSETS + 10):
        worst.append(line(kind="asset", uri=f"{i:03}" + "a" * (MAX_URI_CHARS - 3), metadata=fat))
    for i in range(MAX_CHECKS + 10):
        worst.append(
            line(kind="check", name=f"{i:03}" + "c" * (MAX_NAME_CHARS - 3), passed=False, metadata=fat)
        )
    shown = [shown for text in worst for shown in log.feed(text)]
    summary = log.summary()
    assert summary is not None
    assert len(summary["metrics"]) == MAX_METRICS and len(summary["assets"]) == MAX_ASSETS
    assert len(summary["checks"]) == MAX_CHECKS and summary["dropped"] == 30
    assert len(json.dumps(summary)) <= MAX_SUMMARY_CHARS
    assert sum("further new ones are shown, not kept" in text for _, text in shown) == 1


def test_a_resumed_task_goes_on_from_the_triggers_summary() -> None:
    trigger_side = ReportLog("j1")
    trigger_side.feed(line(kind="progress", done=2, total=4, unit="epoch", t=1.0))
    trigger_side.feed(line(kind="progress", done=3, total=4, unit="epoch", t=2.0))
    trigger_side.feed(line(kind="metric", name="loss", value=0.5))
    trigger_side.feed(line(kind="asset", uri="/a"))
    trigger_side.feed(line(kind="check", name="c", passed=True))
    trigger_side.close()
    carried = json.loads(json.dumps(trigger_side.summary()))  # through the metadata DB
    task_side = ReportLog.from_summary(carried, "j1")
    assert task_side.summary() == carried
    assert task_side.close() == []  # the trigger showed it
    task_side.feed(line(kind="metric", name="loss", value=0.25))
    assert task_side.summary()["metrics"] == {"loss": {"value": 0.25}}  # type: ignore[index]
    # Whatever came through is checked again; junk is left out, never an error.
    junk = {"progress": {"done": "x"}, "metrics": {"m": {"value": float("nan")}, "ok": {"value": 1}},
            "assets": [None, {"uri": 3}], "checks": [], "malformed": "many"}  # fmt: skip
    assert ReportLog.from_summary(junk).summary() == {
        "metrics": {"ok": {"value": 1}},
        "assets": [],
        "checks": {},
    }
    assert ReportLog.from_summary(None).summary() is None


# -------------------------------------------------------------------------------------- in the job itself
def run_python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != REPORTS_ENV}
    return subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_helper_prints_only_in_a_job_and_refuses_bad_input_everywhere(tmp_path: Path) -> None:
    (tmp_path / f"{HELPER_MODULE}.py").write_text(helper_source())
    code = (
        "from hfjobs_report import report_progress, report_metric, report_asset, report_check\n"
        "report_progress(3, 10, 'epoch'); report_metric('loss', 0.25, step=3)\n"
        "report_asset('/out/a', {'rows': 3}); report_check('rows', False)\n"
        "for bad in (lambda: report_progress(1, 0), lambda: report_metric('loss', float('nan'))):\n"
        "    try:\n        bad()\n    except ValueError as error:\n        print('refused:', error)\n"
    )
    outside = run_python(code, {}, tmp_path)
    assert outside.returncode == 0, outside.stderr
    assert outside.stdout.splitlines() == [
        "refused: progress total must be above 0; got 0",
        "refused: metric value must be a finite number; got nan",
    ]
    inside = run_python(code, {REPORTS_ENV: "1"}, tmp_path)
    assert inside.returncode == 0, inside.stderr
    parsed = [parse_report_line(text) for text in inside.stdout.splitlines() if is_report_line(text)]
    assert [report["kind"] for report in parsed] == ["progress", "metric", "asset", "check"]
    assert parsed[0]["done"] == 3 and isinstance(parsed[0]["t"], float)
    assert parsed[1:] == [
        {"kind": "metric", "name": "loss", "value": 0.25, "step": 3},
        {"kind": "asset", "uri": "/out/a", "metadata": {"rows": 3}},
        {"kind": "check", "name": "rows", "passed": False},
    ]


def test_the_helper_is_importable_from_the_provider_and_generated_from_its_constants() -> None:
    source = helper_source()
    assert repr(REPORT_PREFIX) in source and repr(REPORTS_ENV) in source and "@@" not in source
    with mock.patch.dict(os.environ, {REPORTS_ENV: "0"}):
        reports.report_progress(1, 2)  # a no-op outside a job
        with pytest.raises(ValueError, match="total must be above 0"):
            reports.report_progress(1, 0)


def test_a_hf_job_function_imports_the_helper_without_installing_anything(tmp_path: Path) -> None:
    source = (
        "def train(n):\n"
        "    from hfjobs_report import report_progress, report_metric\n"
        "    for i in range(n + 1):\n"
        "        report_progress(i, n, 'epoch')\n"
        "    report_metric('loss', 0.5)\n"
        "    return n\n"
    )
    (tmp_path / "job.py").write_text(build_function_script(source, "train", args=[2]))
    done = run_python(
        "import runpy; runpy.run_path('job.py', run_name='__main__')", {REPORTS_ENV: "1"}, tmp_path
    )
    assert done.returncode == 0, done.stderr
    kinds = [parse_report_line(text)["kind"] for text in done.stdout.splitlines() if is_report_line(text)]
    assert kinds == ["progress"] * 3 + ["metric"]
    quiet = run_python("import runpy; runpy.run_path('job.py', run_name='__main__')", {}, tmp_path)
    assert quiet.returncode == 0 and REPORT_PREFIX not in quiet.stdout


def test_a_uv_job_gets_the_helper_beside_its_script(tmp_path: Path) -> None:
    """The command writes hfjobs_report.py next to the script when the job's environment carries it (the
    operator's jobs), and nothing more without it (the hook's own)."""
    fake_uv = tmp_path / "bin" / "uv"
    fake_uv.parent.mkdir()
    fake_uv.write_text('#!/bin/bash\nshift\nexec python3 "$@"\n')
    fake_uv.chmod(0o755)
    script = b"from hfjobs_report import report_metric\nreport_metric('rows', 7)\n"
    command, env = build_uv_command(script_source=script, script_name="train.py")
    path = f"{fake_uv.parent}:{os.environ['PATH']}"
    outputs = []
    for extra, expected in (({HELPER_ENV: helper_encoded(), REPORTS_ENV: "1"}, 0), ({}, 1)):
        work = tmp_path / f"work{expected}"
        work.mkdir()
        done = subprocess.run(
            command, env={"PATH": path, **env, **extra}, cwd=work, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == expected, done.stderr
        assert (work / f"{HELPER_MODULE}.py").exists() is (expected == 0)
        outputs.append(done)
    assert parse_report_line(outputs[0].stdout.strip()) == {"kind": "metric", "name": "rows", "value": 7}
    assert "No module named 'hfjobs_report'" in outputs[1].stderr


def test_the_trigger_shows_reports_paced_and_never_raw() -> None:
    import asyncio

    from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger

    trigger = HfJobTrigger(job_id="j1", namespace="alice")
    log = mock.Mock()
    with mock.patch.object(HfJobTrigger, "log", new_callable=mock.PropertyMock, return_value=log):
        texts = [
            "one",
            line(kind="progress", done=1, total=2, unit="step"),
            line(kind="check", name="c", passed=False),
        ]
        asyncio.run(trigger._step(texts, end=3))
    assert [c.args for c in log.info.call_args_list] == [("%s", "one"), ("%s", "Progress: 1/2 step (50%)")]
    assert [c.args for c in log.warning.call_args_list] == [("%s", "Check c: FAILED")]
    assert trigger.log_cursor == 3 and trigger._reports.summary()["checks"] == {"c": {"passed": False}}  # type: ignore[index]


def test_only_jobs_a_task_follows_get_the_report_switch() -> None:
    """The task reads the reports of the job it follows; a scheduled job's runs are followed by none, so its
    spec stays as written (else every schedule made before reports existed would be updated once)."""
    from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator
    from airflow_provider_hfjobs.operators.scheduled import HfScheduledJobOperator

    run = HfJobRunOperator(task_id="run", image="python:3.12", command=["true"], env={"A": "1"})
    assert run._create_arguments({})["env"] == {REPORTS_ENV: "1", "A": "1"}
    quiet = HfJobRunOperator(task_id="quiet", image="python:3.12", command=["true"], env={REPORTS_ENV: "0"})
    assert quiet._create_arguments({})["env"] == {REPORTS_ENV: "0"}  # the user's word wins
    scheduled = HfScheduledJobOperator(
        task_id="nightly", image="python:3.12", command=["true"], schedule="@daily", env={"A": "1"}
    )
    assert scheduled._create_arguments({}, followed=False)["env"] == {"A": "1"}  # as its execute asks


def test_a_failure_message_shows_no_raw_report_line() -> None:
    from airflow_provider_hfjobs.task_side import failure_message

    text = failure_message(
        "j1", "ERROR", "exit code 3", "https://hf.co/jobs/a/j1",
        ["epoch 2 done", REPORT_PREFIX + '{"kind":"metric","name":"loss","value":0.5}', "preempted"],
    )  # fmt: skip
    assert REPORT_PREFIX not in text and "Last 2 log lines:\n  epoch 2 done\n  preempted" in text
