"""outputs=, inputs=, checkpoint_dir=: the sans-IO rules (airflow_provider_hfjobs.outputs), the job-side
helper's manifest and checkpoint record (reports.py), and the operator's parse-time checks."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import pytest

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.outputs import (
    Layout,
    TryPlace,
    build_manifest,
    check_inputs,
    checkpoint_from_state,
    escape_part,
    prepare_command,
    should_resume,
)
from airflow_provider_hfjobs.reports import ReportLog, format_report_line, helper_source

PLACE = TryPlace("etl", "manual__2026-01-01T00:00:00+00:00", "export", -1, 2)


def manifest(**extra: object) -> dict[str, object]:
    return {**build_manifest("alice/artifacts", PLACE, [{"path": "a.txt", "size": 1}], job_id="j1"), **extra}


def test_the_try_prefix_is_path_safe_and_injective() -> None:
    assert PLACE.try_prefix == "etl/manual__2026-01-01T00%3A00%3A00%2B00%3A00/export/-1/2"
    assert PLACE.instance_prefix == "etl/manual__2026-01-01T00%3A00%3A00%2B00%3A00/export/-1"
    assert escape_part("..") == "%2E." and escape_part(".x") == "%2Ex" and escape_part("") == "%00"
    assert escape_part("a/b") == "a%2Fb" and escape_part("a%2Fb") == "a%252Fb"  # never the same folder
    assert escape_part("é") == "%C3%A9"


def test_the_layout_mounts_outputs_inputs_and_checkpoints_with_their_environment() -> None:
    layout = Layout.of("alice/artifacts", [manifest(), manifest()], "alice/ckpts", PLACE)
    mounts = [(v.source, v.mount_path, v.path, v.read_only) for v in layout.volumes()]
    assert mounts == [
        ("alice/artifacts", "/outputs", PLACE.try_prefix, False),
        ("alice/artifacts", "/inputs-0", PLACE.try_prefix, True),
        ("alice/artifacts", "/inputs-1", PLACE.try_prefix, True),
        ("alice/ckpts", "/checkpoints", PLACE.instance_prefix, False),
    ]
    assert layout.env({"path": "/checkpoints/e2", "step": 2}, resume=True) == {
        "HFJOBS_OUTPUTS_DIR": "/outputs", "HFJOBS_OUTPUTS_URI": f"hf://buckets/alice/artifacts/{PLACE.try_prefix}",
        "HFJOBS_INPUTS_DIR": "/inputs-0:/inputs-1", "HFJOBS_CHECKPOINT_DIR": "/checkpoints", "HFJOBS_RESUME": "1",
        "HFJOBS_LAST_CHECKPOINT": "/checkpoints/e2", "HFJOBS_LAST_CHECKPOINT_STEP": "2",
    }  # fmt: skip
    fresh = layout.env({"path": "/checkpoints/e2"}, resume=False)
    assert "HFJOBS_RESUME" not in fresh and "HFJOBS_LAST_CHECKPOINT" not in fresh
    assert Layout.of(None, manifest(), None, PLACE).env(None, False)["HFJOBS_INPUTS_DIR"] == "/inputs"
    assert should_resume(first_try_of_run=False) and not should_resume(first_try_of_run=True)


@pytest.mark.parametrize(
    ("outputs", "inputs", "checkpoint_dir", "says"),
    [
        ("artifacts", None, None, "outputs must be a bucket id 'namespace/name'"),
        (None, None, "a/b/c", "checkpoint_dir must be a bucket id"),
        (None, {"rows": 3}, None, "inputs must be the hf_job_outputs XCom"),
        (None, [manifest(), "x"], None, "inputs[1] must be the hf_job_outputs XCom"),
        (None, manifest(prefix="../up"), None, "inputs['prefix']"),
    ],
)
def test_bad_arguments_say_what_to_change(outputs, inputs, checkpoint_dir, says) -> None:
    with pytest.raises(HfJobsInputError, match=re.escape(says)):
        Layout.of(outputs, inputs, checkpoint_dir, PLACE)


def test_inputs_rendered_as_text_are_read_back() -> None:
    assert check_inputs(json.dumps(manifest()))[0]["prefix"] == PLACE.try_prefix
    assert check_inputs(repr(manifest()))[0]["bucket"] == "alice/artifacts"


def test_a_user_volume_on_a_reserved_mount_is_refused() -> None:
    from airflow_provider_hfjobs.jobs import Volume

    layout = Layout.of("alice/artifacts", None, None, PLACE)
    with pytest.raises(HfJobsInputError, match=r"volumes\[0\] is mounted at /outputs/x, which outputs= uses"):
        layout.check_free([Volume(type="bucket", source="a/b", mount_path="/outputs/x")])
    layout.check_free([Volume(type="bucket", source="a/b", mount_path="/outputs2")])


def test_the_prepare_job_makes_each_folder_and_resets_a_fresh_checkpoint(tmp_path) -> None:
    command, volumes = prepare_command([("a/b", "x/1"), ("c/d", "y")], reset=[("c/d", "y")])
    assert [v.mount_path for v in volumes] == ["/hfjobs-prepare-0", "/hfjobs-prepare-1"]
    root = tmp_path
    (root / "1" / "y").mkdir(parents=True)
    (root / "1" / "y" / ".hfjobs-checkpoint.json").write_text("{}")
    local = [arg.replace("/hfjobs-prepare-0", str(root / "0")).replace("/hfjobs-prepare-1", str(root / "1"))
             for arg in command]  # fmt: skip
    subprocess.run(local, check=True)
    assert (root / "0/x/1/.hfjobs-prefix").is_file() and (root / "1/y/.hfjobs-prefix").is_file()
    assert not (root / "1/y/.hfjobs-checkpoint.json").exists()


def test_the_helper_reports_the_manifest_and_the_last_checkpoint(tmp_path, monkeypatch) -> None:
    outputs, ckpts = tmp_path / "outputs", tmp_path / "ckpts"
    (outputs / "sub").mkdir(parents=True)
    ckpts.mkdir()
    (outputs / "sub" / "model.bin").write_bytes(b"weights")
    (outputs / ".hfjobs-prefix").write_bytes(b"")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import hfjobs_report as h\n"
        "print(h.output_entry('sub/model.bin'), h.output_entry('/etc/passwd'))\n"
        "h.report_outputs(); h.report_checkpoint(sys.argv[2] + '/e3', step=3); print(h.last_checkpoint())\n"
    )
    (tmp_path / "hfjobs_report.py").write_text(helper_source())
    env = {"HFJOBS_REPORTS": "1", "HFJOBS_OUTPUTS_DIR": str(outputs), "HFJOBS_CHECKPOINT_DIR": str(ckpts)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(ckpts)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    digest = hashlib.sha256(b"weights").hexdigest()
    lines = done.stdout.splitlines()
    assert lines[0] == f"{{'path': 'sub/model.bin', 'size': 7, 'sha256': '{digest}'}} None"
    log = ReportLog("j1")
    shown = list(log.lines(lines[1:3]))
    assert [text for _, text in shown] == [f"Output: sub/model.bin (7 bytes, sha256 {digest[:12]})",
                                           f"Checkpoint: {ckpts}/e3 (step 3)"]  # fmt: skip
    assert lines[3] == f"{{'path': '{ckpts}/e3', 'step': 3}}"
    summary = log.summary()
    assert summary is not None and summary["outputs"] == [
        {"path": "sub/model.bin", "size": 7, "sha256": digest}
    ]
    assert ReportLog.from_summary(summary, "j1").summary() == summary  # through a trigger event
    built = build_manifest("alice/artifacts", PLACE, summary["outputs"], job_id="j1")
    assert built["files"] == summary["outputs"] and built["source"] == "reports"
    assert checkpoint_from_state(json.dumps(summary["checkpoint"])) == {"path": f"{ckpts}/e3", "step": 3}
    assert checkpoint_from_state("not json") is None


@pytest.mark.parametrize(
    "report",
    [
        {"kind": "output", "path": "/abs", "size": 1},
        {"kind": "output", "path": "a/../b", "size": 1},
        {"kind": "output", "path": "a", "size": -1},
        {"kind": "output", "path": "a", "size": 1, "sha256": "XYZ"},
        {"kind": "checkpoint", "path": "a", "step": 1.5},
    ],
)
def test_bad_output_and_checkpoint_reports_are_refused(report) -> None:
    with pytest.raises(ValueError):
        format_report_line(report)


def test_the_operator_checks_literal_arguments_at_parse_time() -> None:
    from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

    with pytest.raises(HfJobsInputError, match="Task 't': outputs must be a bucket id"):
        HfJobRunOperator(task_id="t", image="python:3.12", command=["true"], outputs="nope")
    with pytest.raises(HfJobsInputError, match="which checkpoint_dir= uses"):
        HfJobRunOperator(
            task_id="t", image="python:3.12", command=["true"], checkpoint_dir="alice/ckpts",
            volumes=[{"type": "bucket", "source": "alice/x", "mount_path": "/checkpoints"}],
        )  # fmt: skip
    op = HfJobRunOperator(
        task_id="t",
        image="python:3.12",
        command=["true"],
        outputs="alice/artifacts",
        inputs="{{ ti.xcom_pull() }}",
    )
    assert {"outputs", "inputs", "checkpoint_dir"} <= set(op.template_fields)
    assert any(getattr(o, "uri", None) == "hf://buckets/alice/artifacts" for o in op.outlets)
    arguments = op._create_arguments({}, followed=False)
    assert not arguments["volumes"]  # a job no task follows (a schedule) gets none


def test_a_prepare_job_is_cancelled_when_its_wait_is_interrupted_and_made_once_per_try(mocker) -> None:
    """The prepare job is a job this task started: Ctrl-C (or SIGTERM, a lost API) while waiting for it
    cancels it, as for the task's own job; a resubmit in the same try (a fallback flavor) makes no second."""
    from airflow_provider_hfjobs.jobs import JobInfo
    from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator
    from airflow_provider_hfjobs.outputs import Layout, TryPlace

    op = HfJobRunOperator(task_id="t", image="python:3.12", command=["true"], outputs="alice/artifacts")
    hook = mocker.MagicMock()
    hook.run_job.return_value = JobInfo.from_api(
        {"id": "prep1", "owner": {"name": "alice"}, "status": {"stage": "RUNNING"}}
    )
    hook.wait_for_job.side_effect = KeyboardInterrupt
    mocker.patch.object(HfJobRunOperator, "hook", hook)
    cancelled = mocker.patch("airflow_provider_hfjobs.operators.outputs.cancel_and_confirm")
    mocker.patch("airflow_provider_hfjobs.operators.outputs.log_outcome")
    place = TryPlace("d", "r", "t", -1, 1)
    op._outputs_run = (Layout.of("alice/artifacts", None, None, place), False, None)
    ti = mocker.MagicMock(task_id="t")
    with pytest.raises(KeyboardInterrupt):
        op._prepare_folders({"ti": ti})
    cancelled.assert_called_once_with(hook, "prep1", namespace="alice", reason=mocker.ANY)
    hook.wait_for_job.side_effect = None
    hook.wait_for_job.return_value = JobInfo.from_api({"id": "prep2", "status": {"stage": "COMPLETED"}})
    op._prepare_folders({"ti": ti})
    op._prepare_folders({"ti": ti})  # the same try again: nothing to make
    assert hook.run_job.call_count == 2
