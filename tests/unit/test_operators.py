"""Operator and sensor edges: event validation, the execute_complete matrix, deferral, masking and
templating. Hooks are stand-ins here; tests/integration runs the same code against the local server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_hfjobs.exceptions import HfJobFailedError, HfJobsError, HfJobsInputError
from airflow_provider_hfjobs.jobs import HardwareInfo, JobInfo
from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator, HfUvJobOperator, validate_event
from airflow_provider_hfjobs.sensors.hfjobs import HfJobSensor
from airflow_provider_hfjobs.sse import LogBatch
from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger

JOB_ID = "687fb701029421ae5549d998"
URL = f"http://hub.test/jobs/alice/{JOB_ID}"


def job(stage: str, message: str | None = None, flavor: str = "a10g-small") -> JobInfo:
    return JobInfo.from_api(
        {
            "id": JOB_ID, "owner": {"id": "1", "name": "alice", "type": "user"}, "flavor": flavor,
            "status": {"stage": stage, "message": message}, "durations": {"runningSecs": 120},
        },
        "http://hub.test",
    )  # fmt: skip


class FakeTI:
    def __init__(self, try_number: int = 1, max_tries: int = 0) -> None:
        self.xcom: dict[str, Any] = {}
        self.start_date = None
        self.dag_id, self.task_id, self.run_id, self.map_index = "dag", "t", "manual__1", -1
        self.try_number, self.max_tries = try_number, max_tries

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def operator(**kwargs: Any) -> tuple[HfJobRunOperator, mock.MagicMock]:
    op = HfJobRunOperator(task_id="t", image="python:3.12", command=["python", "-c", "1"], **kwargs)
    hook = mock.MagicMock()
    hook.namespace = "alice"
    hook.list_jobs_hardware.return_value = [
        HardwareInfo("a10g-small", "A10G small", "4 vCPU", "15 GB", None, 0.0166667, "minute")
    ]
    hook.list_jobs.return_value = []
    hook.inspect_job.return_value = job("RUNNING")
    hook.wait_for_job.return_value = job("CANCELED")  # a verified cancel follows the job to its end
    op.__dict__["hook"] = hook
    return op, hook


def event(status: str, stage: str | None, **extra: Any) -> dict[str, Any]:
    return {"status": status, "job_id": JOB_ID, "stage": stage, "message": None, "job_url": URL,
            "log_cursor": 3, **extra}  # fmt: skip


@pytest.mark.parametrize(
    "bad", [None, {}, {"status": "weird", "job_id": JOB_ID}, {"status": "success"}, "success"]
)
def test_invalid_events_never_succeed(bad: Any) -> None:
    with pytest.raises(HfJobsError, match="outcome is unknown"):
        validate_event(bad)
    op, _ = operator()
    with pytest.raises(HfJobsError):
        op.execute_complete({"ti": FakeTI()}, bad)


def test_success_event_returns_job_id_and_pushes_job_with_cost() -> None:
    op, hook = operator()
    hook.inspect_job.return_value = job("COMPLETED")
    ti = FakeTI()
    assert op.execute_complete({"ti": ti}, event("success", "COMPLETED")) == JOB_ID
    assert ti.xcom["job"]["stage"] == "COMPLETED" and ti.xcom["job"]["billed_seconds"] == 120
    assert ti.xcom["job"]["cost_usd"] == pytest.approx(0.0333334, rel=1e-3)  # 2 min of A10G small at $1/h


@pytest.mark.parametrize(
    ("status", "stage"), [("error", "ERROR"), ("cancelled", "CANCELED"), ("cancelled", "DELETED")]
)
def test_failed_stage_fails_with_url_and_log_tail(status: str, stage: str) -> None:
    op, hook = operator()
    hook.inspect_job.return_value = job(stage, "exit code 1" if stage == "ERROR" else None)
    hook.fetch_job_logs.return_value = iter(["l1", "l2"])
    with pytest.raises(HfJobFailedError) as info:
        op.execute_complete({"ti": FakeTI()}, event(status, stage))
    text = str(info.value)
    assert stage in text and URL in text and "l1" in text and "l2" in text
    # The tail comes from the job, read once on the worker: events carry no log text.
    hook.fetch_job_logs.assert_called_once_with(JOB_ID, namespace="alice", tail=20)
    hook.cancel_job.assert_not_called()


@pytest.mark.parametrize("status", ["timeout", "error"])
def test_unwatched_job_is_cancelled(status: str) -> None:
    op, hook = operator()
    hook.endpoint = "http://127.0.0.1:8910"
    with pytest.raises(HfJobFailedError) as info:
        op.execute_complete({"ti": FakeTI()}, event(status, None, message="no token: set HF_TOKEN."))
    hook.cancel_job.assert_called_once_with(JOB_ID, namespace="alice")
    # The configured endpoint in the URL (the trigger may not have read it), and no doubled full stop.
    assert f"http://127.0.0.1:8910/jobs/alice/{JOB_ID}" in str(info.value) and ".." not in str(info.value)


def test_cancel_on_kill_false_leaves_job_alone() -> None:
    op, hook = operator(cancel_on_kill=False)
    with pytest.raises(HfJobFailedError):
        op.execute_complete({"ti": FakeTI()}, event("timeout", None))
    op.job_id = JOB_ID
    op.on_kill()
    hook.cancel_job.assert_not_called()


def test_on_kill_cancels_the_job() -> None:
    op, hook = operator()
    op.on_kill()
    hook.cancel_job.assert_not_called()  # nothing submitted yet
    op.job_id, op.job_namespace = JOB_ID, "alice"
    op.on_kill()
    hook.cancel_job.assert_called_once_with(JOB_ID, namespace="alice")


def test_deferrable_pushes_xcom_then_defers_with_padded_timeout() -> None:
    op, hook = operator(deferrable=True, poll_interval=7, execution_timeout=timedelta(minutes=10))
    hook.run_job.return_value = job("SCHEDULING")
    hook.inspect_job.return_value = job("RUNNING")
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as info:
        op.execute({"ti": ti})
    assert ti.xcom["job_id"] == JOB_ID and ti.xcom["job_url"] == URL
    trigger = info.value.trigger
    assert isinstance(trigger, HfJobTrigger) and trigger.job_id == JOB_ID and trigger.poll_interval == 7
    assert trigger.deadline is not None
    assert info.value.timeout > timedelta(minutes=10)  # padded past the trigger's own deadline


def test_the_job_link_asks_no_xcom_when_the_operator_that_ran_knows() -> None:
    """Airflow 3 asks each extra link when a task ends, on the worker, with the operator that ran: its
    own ``job_url`` answers (``""``: no job in this try, so no "XCom not found" ERROR in the task log). A
    deserialized operator (webserver) or a resumed one reads the XCom."""
    from airflow_provider_hfjobs.links import hfjobs as links

    op, hook = operator(deferrable=True)
    hook.run_job.return_value = job("SCHEDULING")
    hook.inspect_job.return_value = job("RUNNING")
    link = links.HfJobLink()
    with mock.patch.object(links.XCom, "get_value", return_value=URL) as get_value:
        assert link.get_link(op, ti_key=None) == URL  # not run here: the XCom
        get_value.assert_called_once()
        get_value.reset_mock()
        with pytest.raises(TaskDeferred):
            op.execute({"ti": FakeTI()})
        assert link.get_link(op, ti_key=None) == URL and op.job_url == URL
        failing, failing_hook = operator(labels={"team": "{{ params.team }}"})
        failing.labels = {"team": "m l"}  # as rendered
        with pytest.raises(HfJobsInputError, match="labels"):
            failing.execute({"ti": FakeTI()})
        assert link.get_link(failing, ti_key=None) == ""
        get_value.assert_not_called()
        failing_hook.list_jobs.assert_not_called()


def test_deferrable_finishes_inline_when_already_terminal() -> None:
    op, hook = operator(deferrable=True)
    hook.run_job.return_value = job("SCHEDULING")
    hook.inspect_job.return_value = job("COMPLETED")
    hook.iter_job_log_batches.return_value = iter([LogBatch([1], ["done"], [None])])
    ti = FakeTI()
    assert op.execute({"ti": ti}) == JOB_ID
    hook.iter_job_log_batches.assert_called_once()


def test_fire_and_forget_returns_after_submit() -> None:
    op, hook = operator(wait_for_completion=False)
    hook.run_job.return_value = job("SCHEDULING")
    assert op.execute({"ti": FakeTI()}) == JOB_ID
    hook.inspect_job.assert_not_called()


def test_poll_interval_is_validated_at_parse_time() -> None:
    for bad in (0, -1, True, "5"):
        with pytest.raises(HfJobsInputError, match="poll_interval"):
            HfJobRunOperator(task_id="t", image="python:3.12", command=["true"], poll_interval=bad)


def test_secrets_are_masked_when_rendered(monkeypatch) -> None:
    masked: list[str] = []
    monkeypatch.setattr("airflow_provider_hfjobs.operators.hfjobs.mask_secret", masked.append)
    op, _ = operator(secrets={"API_KEY": "{{ params.key }}"})
    op.render_template_fields({"params": {"key": "s3cr3t-value"}})
    assert op.secrets == {"API_KEY": "s3cr3t-value"} and "s3cr3t-value" in masked


def test_rendered_secrets_field_is_redacted_by_airflow() -> None:
    from airflow.providers.common.compat.sdk import redact

    assert "s3cr3t-value" not in str(redact({"API_KEY": "s3cr3t-value"}, name="secrets"))


def test_all_user_inputs_are_templated() -> None:
    assert set(HfJobRunOperator.template_fields) >= {
        "image", "command", "flavor", "env", "secrets", "timeout", "labels", "namespace", "hf_conn_id"
    }  # fmt: skip
    assert set(HfUvJobOperator.template_fields) >= {
        "script",
        "script_args",
        "dependencies",
        "python",
        "secrets",
    }


def test_every_create_argument_reaches_the_hook_and_volumes_are_templated() -> None:
    """huggingface_hub's run_job arguments, on the operator; a volume list may come from params or XCom."""
    op, hook = operator(
        wait_for_completion=False, attempts=2, name="nightly", expose=[8000], expose_public=[8000], ssh=True,
        network_group="team-net", network_aliases=["trainer"], resource_group_id="rg-1",
        volumes=[{"type": "bucket", "source": "{{ params.bucket }}", "mount_path": "/checkpoints"}],
    )  # fmt: skip
    hook.run_job.return_value = job("SCHEDULING")
    op.render_template_fields({"params": {"bucket": "alice/ckpts"}})
    op.execute({"ti": FakeTI()})
    kwargs = hook.run_job.call_args.kwargs
    assert kwargs["volumes"] == [{"type": "bucket", "source": "alice/ckpts", "mount_path": "/checkpoints"}]
    expected = {"attempts": 2, "name": "nightly", "expose": [8000], "expose_public": [8000], "ssh": True,
                "network_group": "team-net", "network_aliases": ["trainer"], "resource_group_id": "rg-1"}  # fmt: skip
    assert {key: kwargs[key] for key in expected} == expected
    uv = HfUvJobOperator(task_id="u", script="print(1)\n", attempts=3, volumes=kwargs["volumes"])
    uv.__dict__["hook"] = hook
    hook.run_uv_job.return_value = job("SCHEDULING")
    uv.submit_job({"dag": None}, {})
    assert hook.run_uv_job.call_args.kwargs["attempts"] == 3
    assert hook.run_uv_job.call_args.kwargs["volumes"] == kwargs["volumes"]


def test_uv_relative_script_resolves_next_to_dag_file(tmp_path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "train.py").write_text("print(1)\n")
    op = HfUvJobOperator(task_id="t", script="scripts/train.py")
    dag = mock.MagicMock(fileloc=str(tmp_path / "dag.py"))
    assert op._script_path({"dag": dag}) == str(tmp_path / "scripts" / "train.py")
    op.script = "https://example.com/s.py"
    assert op._script_path({"dag": dag}) == "https://example.com/s.py"
    op.script = "lighteval"  # a command, as huggingface_hub runs it: uv run lighteval
    assert op._script_path({"dag": dag}) == "lighteval"
    (tmp_path / "lighteval").write_text("print(1)\n")  # unless such a file lies beside the DAG
    assert op._script_path({"dag": dag}) == str(tmp_path / "lighteval")
    op.script = "scripts/missing.py"
    with pytest.raises(HfJobsInputError, match="does not exist"):
        op._script_path({"dag": dag})


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_uv_script_outside_the_dag_folder_is_refused(kind: str, tmp_path) -> None:
    """A templated ``script`` must not ship any file of the worker (``../../airflow.cfg``) into the job."""
    dags, outside = tmp_path / "dags", tmp_path / "home"
    dags.mkdir(), outside.mkdir()
    secret = outside / "airflow.cfg"
    secret.write_text("[core]\nfernet_key = not-for-jobs\n")
    (dags / "link.py").symlink_to(secret)
    script = {"dotdot": "../home/airflow.cfg", "absolute": str(secret), "symlink": "link.py"}[kind]
    op = HfUvJobOperator(task_id="t", script=script)
    dag = mock.MagicMock(fileloc=str(dags / "dag.py"))
    with pytest.raises(HfJobsInputError, match="outside the DAG folder") as info:
        op._script_path({"dag": dag})
    assert "not-for-jobs" not in str(info.value)
    op.allow_script_outside_dags_folder = True  # the explicit opt-in
    assert op._script_path({"dag": dag}) == str(secret)


def test_sensor_fails_on_failed_job_and_soft_fail_skips() -> None:
    sensor = HfJobSensor(task_id="s", job_id=JOB_ID)
    hook = mock.MagicMock()
    hook.inspect_job.return_value = job("ERROR", "exit code 2")
    sensor.__dict__["hook"] = hook
    with pytest.raises(AirflowFailException, match="exit code 2"):
        sensor.poke({"ti": FakeTI()})
    hook.inspect_job.return_value = job("RUNNING")
    assert sensor.poke({"ti": FakeTI()}) is False
    hook.inspect_job.return_value = job("COMPLETED")
    assert sensor.poke({"ti": FakeTI()}) is True


def test_sensor_execute_complete_matrix() -> None:
    sensor = HfJobSensor(task_id="s", job_id=JOB_ID)
    assert sensor.execute_complete({}, event("success", "COMPLETED")) is None
    for bad in (None, event("error", "ERROR"), event("timeout", None)):
        with pytest.raises(AirflowFailException):
            sensor.execute_complete({}, bad)


def previous(stage: str, created: str) -> JobInfo:
    info = job(stage)
    info.created_at = JobInfo.from_api({"id": "x", "createdAt": created}).created_at
    return info


def test_submitted_job_carries_the_task_instance_labels() -> None:
    op, hook = operator(labels={"team": "ml"}, wait_for_completion=False)
    hook.run_job.return_value = job("SCHEDULING")
    op.execute({"ti": FakeTI()})
    labels = hook.run_job.call_args.kwargs["labels"]
    assert labels["team"] == "ml" and labels["airflow-dag"] == "dag" and labels["airflow-task"] == "t"
    assert len(labels["airflow-ti"]) == 32


def test_live_job_of_an_earlier_try_is_reattached_not_resubmitted() -> None:
    op, hook = operator(wait_for_completion=False, retries=2)
    hook.list_jobs.return_value = [
        previous("ERROR", "2026-01-01T00:00:00Z"),
        previous("RUNNING", "2026-01-01T01:00:00Z"),
    ]
    assert op.execute({"ti": FakeTI(try_number=2, max_tries=2)}) == JOB_ID
    hook.run_job.assert_not_called()
    assert hook.list_jobs.call_args.kwargs["labels"].keys() == {"airflow-ti"}


@pytest.mark.parametrize(
    ("try_number", "max_tries", "reuse", "resubmits"),
    [
        (2, 2, True, False),  # a retry: the earlier try's job already COMPLETED, keep its result
        (2, 2, False, True),  # reuse_completed=False
        (1, 2, True, True),  # first try of the run (retries=2 → max_tries=2)
        (4, 5, True, True),  # first try after a clear (max_tries = 3 + retries)
    ],
)
def test_completed_job_is_reused_only_on_a_retry(
    try_number: int, max_tries: int, reuse: bool, resubmits: bool
) -> None:
    op, hook = operator(wait_for_completion=False, retries=2, reuse_completed=reuse)
    hook.list_jobs.return_value = [previous("COMPLETED", "2026-01-01T00:00:00Z")]
    hook.run_job.return_value = job("SCHEDULING")
    op.execute({"ti": FakeTI(try_number=try_number, max_tries=max_tries)})
    assert hook.run_job.called is resubmits


class FakeStateStore:
    """``context["task_state_store"]`` of Airflow >= 3.3 (get/set, JSON values)."""

    def __init__(self, values: dict[str, Any] | None = None, broken: bool = False) -> None:
        self.values = dict(values or {})
        self.broken = broken

    def get(self, key: str, default: Any = None) -> Any:
        if self.broken:
            raise RuntimeError("no supervisor")
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if self.broken:
            raise RuntimeError("no supervisor")
        self.values[key] = value


def test_a_new_job_is_remembered_in_task_state_store() -> None:
    op, hook = operator(wait_for_completion=False)
    hook.run_job.return_value = job("SCHEDULING")
    store = FakeStateStore()
    op.execute({"ti": FakeTI(), "task_state_store": store})
    assert store.values == {"hf_job_id": JOB_ID}


def test_a_remembered_live_job_is_reattached_without_a_list() -> None:
    op, hook = operator(wait_for_completion=False, retries=2)
    hook.inspect_job.return_value = job("RUNNING")
    store = FakeStateStore({"hf_job_id": JOB_ID})
    assert op.execute({"ti": FakeTI(try_number=2, max_tries=2), "task_state_store": store}) == JOB_ID
    hook.inspect_job.assert_called_once_with(JOB_ID, namespace=None)
    hook.list_jobs.assert_not_called()
    hook.run_job.assert_not_called()


def test_a_remembered_job_that_failed_falls_back_to_the_label_then_submits() -> None:
    op, hook = operator(wait_for_completion=False, retries=2)
    hook.inspect_job.return_value = job("ERROR", "exit code 1")
    hook.list_jobs.return_value = [previous("ERROR", "2026-01-01T00:00:00Z")]
    hook.run_job.return_value = job("SCHEDULING")
    op.execute(
        {"ti": FakeTI(try_number=2, max_tries=2), "task_state_store": FakeStateStore({"hf_job_id": JOB_ID})}
    )
    hook.list_jobs.assert_called_once()
    hook.run_job.assert_called_once()


def test_a_broken_task_state_store_never_fails_the_task() -> None:
    op, hook = operator(wait_for_completion=False)
    hook.run_job.return_value = job("SCHEDULING")
    assert op.execute({"ti": FakeTI(), "task_state_store": FakeStateStore(broken=True)}) == JOB_ID
    hook.list_jobs.assert_called_once()  # the label lookup still ran


def test_reattach_false_never_looks() -> None:
    op, hook = operator(wait_for_completion=False, reattach=False)
    hook.run_job.return_value = job("SCHEDULING")
    op.execute({"ti": FakeTI()})
    hook.list_jobs.assert_not_called()


def test_failure_without_followed_logs_still_shows_the_log_tail() -> None:
    op, hook = operator(stream_logs=False)
    hook.inspect_job.return_value = job("ERROR", "exit code 1")
    hook.fetch_job_logs.return_value = iter(["last words"])
    with pytest.raises(HfJobFailedError, match="last words"):
        op.execute_complete({"ti": FakeTI()}, event("error", "ERROR"))


@pytest.mark.parametrize(
    ("interrupt", "reason"),
    [
        (KeyboardInterrupt(), "the task was interrupted (Ctrl-C)"),
        (SystemExit(1), "the task was stopped"),
        (HfJobsError("the API went away"), "the task stopped watching it on HfJobsError"),
    ],
)
def test_whatever_stops_the_worker_watch_cancels_the_job_once(interrupt: BaseException, reason: str) -> None:
    """Ctrl-C (``airflow dags test``), SIGTERM's exit or a lost API while the worker follows its job: the job
    is cancelled and the cancel followed to its end, once, even when ``on_kill`` comes after."""
    op, hook = operator()
    hook.run_job.return_value = job("RUNNING")
    with mock.patch.object(op, "_show_logs", side_effect=interrupt), pytest.raises(type(interrupt)):
        op.execute({"ti": FakeTI()})
    hook.cancel_job.assert_called_once_with(JOB_ID, namespace="alice")
    assert op._cancel_outcome is not None and op._cancel_outcome.stage == "CANCELED"
    assert reason in op._cancel_outcome.message
    op.on_kill()  # Airflow's SIGTERM handler after the interrupt: no second cancel
    hook.cancel_job.assert_called_once()


def test_a_cancel_not_seen_ending_says_how_to_cancel_by_hand() -> None:
    op, hook = operator()
    op.job_id, op.job_namespace = JOB_ID, "alice"
    hook.endpoint = "http://127.0.0.1:8910"
    hook.wait_for_job.side_effect = TimeoutError("still RUNNING")
    op.on_kill()
    assert op._cancel_outcome is not None and not op._cancel_outcome.confirmed
    message = op._cancel_outcome.message
    assert "still RUNNING" in message and "may still be running" in message
    assert f"HF_ENDPOINT=http://127.0.0.1:8910 hf jobs cancel {JOB_ID} --namespace alice" in message


def test_a_deferring_task_does_not_cancel_its_job() -> None:
    op, hook = operator(deferrable=True)
    hook.run_job.return_value = job("SCHEDULING")
    with pytest.raises(TaskDeferred):
        op.execute({"ti": FakeTI()})
    hook.cancel_job.assert_not_called()


@pytest.mark.parametrize("cancel_on_kill", [None, False, True])
def test_a_sensor_cancels_the_job_it_watches_only_when_told_it_owns_it(cancel_on_kill: bool | None) -> None:
    kwargs = {} if cancel_on_kill is None else {"cancel_on_kill": cancel_on_kill}
    sensor = HfJobSensor(task_id="watch", job_id=JOB_ID, deferrable=True, **kwargs)
    hook = mock.MagicMock()
    hook.namespace = "alice"
    hook.inspect_job.return_value = job("RUNNING")
    hook.wait_for_job.return_value = job("CANCELED")
    sensor.__dict__["hook"] = hook
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": FakeTI()})
    assert deferred.value.trigger.cancel_on_kill is bool(cancel_on_kill)
    sensor.on_kill()
    assert hook.cancel_job.call_count == (1 if cancel_on_kill else 0)


def test_an_error_with_a_retry_to_come_leaves_the_job_for_the_retry_but_an_interrupt_never_does() -> None:
    """The retry re-attaches to a live job (as after a SIGKILLed worker): an ordinary error with a try left
    keeps the job; Ctrl-C or the last try cancels it."""
    op, hook = operator(retries=1)
    hook.run_job.return_value = job("RUNNING")
    with (
        mock.patch.object(op, "_show_logs", side_effect=HfJobsError("the API went away")),
        pytest.raises(HfJobsError),
    ):
        op.execute({"ti": FakeTI(try_number=1, max_tries=1)})
    hook.cancel_job.assert_not_called()
    op, hook = operator(retries=1)
    hook.run_job.return_value = job("RUNNING")
    with (
        mock.patch.object(op, "_show_logs", side_effect=KeyboardInterrupt()),
        pytest.raises(KeyboardInterrupt),
    ):
        op.execute({"ti": FakeTI(try_number=1, max_tries=1)})
    hook.cancel_job.assert_called_once()
