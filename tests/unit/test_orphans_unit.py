"""Orphan finding without a network or a metadata DB: labels read back to task instances through a fake
task states reader, the sorting of jobs, the input rules, and the operator's checks before any request.
tests/integration/test_orphans.py runs the same code against the local server and real Airflow DBs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_hfjobs.cancellation import manual_cancel_command
from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.jobs import JobInfo, format_timestamp, task_instance_labels
from airflow_provider_hfjobs.operators.maintenance import HfOrphanJobsOperator
from airflow_provider_hfjobs.orphans import (
    DEFAULT_MIN_AGE,
    JobOwner,
    TaskInstanceResolver,
    TaskInstanceRow,
    find_orphans,
    format_age,
    name_candidates,
    parse_flag,
    parse_min_age,
    rows_from_task_states,
    scan_orphan_jobs,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class FakeAirflow:
    """A task states reader over ``{dag_id: [(run_id, task_id, map_index, state), ...]}``, counting calls."""

    def __init__(self, dags: dict[str, list[tuple[str, str, int, str | None]]]) -> None:
        self.dags = dags
        self.calls: list[tuple[str, tuple[str, ...] | None]] = []

    def __call__(self, dag_id: str, task_ids: Sequence[str] | None) -> list[TaskInstanceRow]:
        self.calls.append((dag_id, tuple(task_ids) if task_ids is not None else None))
        return [
            TaskInstanceRow(run, task, index, state)
            for run, task, index, state in self.dags.get(dag_id, [])
            if task_ids is None or task in task_ids
        ]


def owner_of(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> JobOwner:
    owner = JobOwner.from_labels(task_instance_labels(dag_id, task_id, run_id, map_index))
    assert owner is not None
    return owner


def job(
    labels: dict[str, str],
    stage: str = "RUNNING",
    age: timedelta = timedelta(hours=1),
    job_id: str = "a" * 24,
) -> JobInfo:
    return JobInfo.from_api(
        {
            "id": job_id, "owner": {"name": "alice"}, "flavor": "cpu-basic", "labels": labels,
            "status": {"stage": stage}, "createdAt": format_timestamp(NOW - age),
            "environment": {"PLAIN": "x"}, "secrets": ["API_KEY"],
        },
        "http://hub.test",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------- reading labels
def test_only_jobs_with_all_three_well_formed_labels_are_ours() -> None:
    labels = task_instance_labels("d", "t", "r")
    assert JobOwner.from_labels(labels) == JobOwner(labels["airflow-ti"], "d", "t")
    assert JobOwner.from_labels({}) is None and JobOwner.from_labels(None) is None
    for missing in labels:
        assert JobOwner.from_labels({k: v for k, v in labels.items() if k != missing}) is None
    assert JobOwner.from_labels({**labels, "airflow-ti": "not-a-hash"}) is None
    # What a scheduled job's runs carry: dag and task, no task instance.
    assert (
        JobOwner.from_labels({"airflow-scheduled-task": "f" * 32, "airflow-dag": "d", "airflow-task": "t"})
        is None
    )


def test_name_candidates_try_each_dash_as_a_dot_and_know_when_they_are_not_all() -> None:
    assert name_candidates("plain_dag", 32) == name_candidates("plain_dag", 1)
    assert (
        name_candidates("plain_dag", 32).names == ("plain_dag",) and name_candidates("plain_dag", 32).complete
    )
    two = name_candidates("a-b-c", 32)
    assert two.complete and set(two.names) == {"a-b-c", "a-b.c", "a.b-c", "a.b.c"} and two.names[0] == "a-b-c"
    assert name_candidates("a-b-c-d-e-f", 32).complete  # 32 variants
    assert not name_candidates("a-b-c-d-e-f-g", 32).complete  # 64 variants > 32
    assert name_candidates("x" * 100, 32) == name_candidates("x" * 100, 32)
    assert not name_candidates("x" * 100, 32).complete  # maybe cut at 100 characters


# --------------------------------------------------------------------------------------- the resolver
def test_a_dotted_dag_and_a_task_group_task_are_found_by_their_hash() -> None:
    airflow = FakeAirflow({
        "team.nightly": [("manual__1", "grp.train", -1, "success"), ("manual__2", "grp.train", -1, "running")],
        "team-nightly": [("manual__1", "grp-train", -1, "failed")],  # another DAG with the same labels
    })  # fmt: skip
    resolver = TaskInstanceResolver(airflow)
    found = resolver.resolve(owner_of("team.nightly", "grp.train", "manual__1"))
    assert (found.status, found.dag_id, found.task_id, found.run_id, found.state) == (
        "found", "team.nightly", "grp.train", "manual__1", "success",
    )  # fmt: skip
    assert not found.live
    assert resolver.resolve(owner_of("team.nightly", "grp.train", "manual__2")).live
    other = resolver.resolve(owner_of("team-nightly", "grp-train", "manual__1"))
    assert (other.dag_id, other.state) == ("team-nightly", "failed")
    # One request per DAG id the label may stand for, all task ids in it; then from the cache.
    assert sorted(dag for dag, _ in airflow.calls) == ["team-nightly", "team.nightly"]
    assert {tasks for _, tasks in airflow.calls} == {("grp-train", "grp.train")}


def test_every_live_state_keeps_the_job_and_every_other_state_does_not() -> None:
    states = ["running", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "deferred", "restarting",
              "success", "failed", "skipped", "upstream_failed", "removed", None]  # fmt: skip
    airflow = FakeAirflow({"d": [(f"run{i}", "t", -1, state) for i, state in enumerate(states)]})
    resolver = TaskInstanceResolver(airflow)
    live = [resolver.resolve(owner_of("d", "t", f"run{i}")).live for i in range(len(states))]
    assert live == [True] * 7 + [False] * 6


def test_mapped_instances_match_by_map_index_and_index_zero_as_the_operator_labels_it() -> None:
    airflow = FakeAirflow(
        {"d": [("r", "t", 0, "success"), ("r", "t", 1, "running"), ("r", "t", 2, "failed")]}
    )
    resolver = TaskInstanceResolver(airflow)
    # HfJobRunOperator labels map index 0 as -1 (ti.map_index or -1): both read back to index 0.
    for labelled_as in (0, -1):
        zero = resolver.resolve(owner_of("d", "t", "r", labelled_as))
        assert (zero.map_index, zero.state) == (0, "success")
    assert resolver.resolve(owner_of("d", "t", "r", 1)).live
    assert resolver.resolve(owner_of("d", "t", "r", 2)).state == "failed"


def test_a_deleted_run_is_missing_but_an_unknown_dag_or_task_is_unknown() -> None:
    resolver = TaskInstanceResolver(FakeAirflow({"d": [("kept", "t", -1, "success")]}))
    gone = resolver.resolve(owner_of("d", "t", "deleted"))
    assert (gone.status, gone.dag_id, gone.task_id, gone.run_id) == ("missing", "d", "t", None)
    assert resolver.resolve(owner_of("elsewhere", "t", "kept")).status == "unknown"
    assert resolver.resolve(owner_of("d", "other_task", "kept")).status == "unknown"


def test_a_task_label_cut_at_100_characters_is_matched_over_the_whole_dag() -> None:
    long_task = "group." + "t" * 120
    airflow = FakeAirflow({"d": [("r", long_task, -1, "success"), ("r", "short", -1, "running")]})
    found = TaskInstanceResolver(airflow).resolve(owner_of("d", long_task, "r"))
    assert (found.status, found.task_id) == ("found", long_task)
    assert airflow.calls == [("d", None)]  # every task of the DAG, matched by label and hash


def test_a_dag_label_whose_variants_are_not_all_tried_is_never_missing() -> None:
    """Six dashes are 64 DAG ids: only the label itself is asked, so a run not found there proves nothing."""
    dag = "a-b-c-d-e-f-g"
    resolver = TaskInstanceResolver(FakeAirflow({dag: [("kept", "t", -1, "success")]}))
    assert resolver.resolve(owner_of(dag, "t", "kept")).status == "found"
    assert resolver.resolve(owner_of(dag, "t", "deleted")).status == "unknown"


def test_get_task_states_answers_read_as_rows_both_ways_when_ambiguous() -> None:
    states = {"r1": {"t": "success", "t_3": "running"}, "r2": {"a_1": "failed"}}
    rows = set(rows_from_task_states(states, ["t"]))
    assert rows == {TaskInstanceRow("r1", "t", -1, "success"), TaskInstanceRow("r1", "t", 3, "running")}
    every = set(rows_from_task_states(states, None))
    assert (
        TaskInstanceRow("r2", "a_1", -1, "failed") in every
        and TaskInstanceRow("r2", "a", 1, "failed") in every
    )
    assert set(rows_from_task_states({"r": {"a_1": "failed"}}, ["a_1"])) == {
        TaskInstanceRow("r", "a_1", -1, "failed")
    }


# -------------------------------------------------------------------------------------- sorting jobs
def test_find_orphans_sorts_every_live_job() -> None:
    airflow = FakeAirflow({"d": [("done", "t", -1, "success"), ("live", "t", -1, "running")]})
    jobs = [
        job(task_instance_labels("d", "t", "done"), job_id="1" * 24),
        job(task_instance_labels("d", "t", "live"), job_id="2" * 24),
        job(task_instance_labels("d", "t", "done"), age=timedelta(minutes=1), job_id="3" * 24),
        job(task_instance_labels("d", "t", "done"), stage="COMPLETED", job_id="4" * 24),
        job({"team": "ml"}, job_id="5" * 24),
        job(task_instance_labels("unknown", "t", "r"), job_id="6" * 24),
        job(task_instance_labels("d", "t", "deleted"), job_id="7" * 24),
    ]
    scan = find_orphans(jobs, airflow, now=NOW)
    assert [o.job.id for o in scan.orphans] == ["1" * 24, "7" * 24]
    assert [j.id for j, _ in scan.watched] == ["2" * 24]
    assert [j.id for j in scan.too_young] == ["3" * 24]
    assert [j.id for j in scan.not_ours] == ["5" * 24]
    assert [j.id for j in scan.unmatched] == ["6" * 24]
    assert scan.looked_at == 6  # the COMPLETED one is not live
    first, deleted = scan.orphans
    assert (
        "1" * 24 in first.describe()
        and "d/t run=done" in first.describe()
        and "is success" in first.describe()
    )
    assert "1 h 0 min old" in first.describe()
    assert deleted.to_dict()["task_state"] == "missing" and "no longer exists" in deleted.describe()
    entry = first.to_dict()
    assert entry == {
        "job_id": "1" * 24, "url": f"http://hub.test/jobs/alice/{'1' * 24}", "namespace": "alice",
        "stage": "RUNNING", "flavor": "cpu-basic", "created_at": format_timestamp(NOW - timedelta(hours=1)),
        "age_seconds": 3600.0, "dag_id": "d", "task_id": "t", "run_id": "done", "map_index": -1,
        "task_state": "success", "reason": "its task instance is success",
    }  # fmt: skip
    # Only labels: no environment, secret names or command in what goes to XCom.
    assert "PLAIN" not in str(entry) and "API_KEY" not in str(entry)


def test_min_age_zero_and_a_label_filter() -> None:
    airflow = FakeAirflow({"d": [("done", "t", -1, "success")]})
    young = job({**task_instance_labels("d", "t", "done"), "env": "prod"}, age=timedelta(seconds=5))
    assert not find_orphans([young], airflow, now=NOW).orphans
    assert find_orphans([young], airflow, now=NOW, min_age=timedelta(0)).orphans
    assert not find_orphans(
        [young], airflow, now=NOW, min_age=timedelta(0), labels={"env": "staging"}
    ).orphans
    assert find_orphans([young], airflow, now=NOW, min_age=timedelta(0), labels={"env": "prod"}).orphans


def test_the_reader_is_asked_only_for_old_jobs_with_our_labels() -> None:
    airflow = FakeAirflow({})
    find_orphans(
        [job({"team": "ml"}), job(task_instance_labels("d", "t", "r"), age=timedelta(0))], airflow, now=NOW
    )
    assert airflow.calls == []


# ----------------------------------------------------------------------------------------------- input
@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0), (600, 600), (1.5, 1.5), ("0", 0), ("90s", 90), ("10m", 600), ("1.5h", 5400), ("2d", 172800),
     (timedelta(minutes=3), 180)],
)  # fmt: skip
def test_min_age_forms(value: Any, seconds: float) -> None:
    assert parse_min_age(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "value", [-1, "-5m", "10 minutes", "", None, True, float("nan"), float("inf"), [], "5w"]
)
def test_bad_min_age_is_a_clear_error(value: Any) -> None:
    with pytest.raises(HfJobsInputError, match="min_age"):
        parse_min_age(value)


def test_flags() -> None:
    assert parse_flag(True, field_name="cancel") and not parse_flag("False", field_name="cancel")
    assert parse_flag(" true ", field_name="cancel")
    for bad in ("yes", 1, None, "{{ params.cancel }}"):
        with pytest.raises(HfJobsInputError, match="cancel must be True or False"):
            parse_flag(bad, field_name="cancel")


def test_format_age() -> None:
    assert [format_age(s) for s in (5, 61, 3599, 3660, 90000)] == [
        "5 s",
        "1 min",
        "59 min",
        "1 h 1 min",
        "1 d 1 h",
    ]


def test_bad_input_to_the_hook_fails_before_any_request(hook: Any) -> None:
    for kwargs, match in (
        ({"min_age": "soon"}, "min_age"),
        ({"labels": {"bad key": "x"}}, "labels key"),
        ({"namespace": "../etc"}, "namespace"),
        ({"task_states": "running"}, "task_states must be a callable"),
    ):
        with pytest.raises(HfJobsInputError, match=match):
            hook.list_orphan_jobs(**kwargs)
        with pytest.raises(HfJobsInputError, match=match):
            scan_orphan_jobs(hook, **kwargs)


# -------------------------------------------------------------------------------------------- operator
def test_operator_rejects_bad_arguments_when_the_dag_is_parsed() -> None:
    for kwargs, match in (
        ({"min_age": "-1m"}, "min_age"),
        ({"cancel": "maybe"}, "cancel must be True or False"),
        ({"labels": {"bad key": "x"}}, "labels key"),
        ({"labels": "team=ml"}, "render_template_as_native_obj"),
        ({"cancel_wait": 0}, "cancel_wait"),
        ({"poll_interval": True}, "poll_interval"),
    ):
        with pytest.raises(HfJobsInputError, match=match) as raised:
            HfOrphanJobsOperator(task_id="orphans", **kwargs)
        assert "Task 'orphans'" in str(raised.value)
    # Templates are checked once rendered.
    op = HfOrphanJobsOperator(
        task_id="ok", cancel="{{ params.cancel }}", min_age="{{ params.min_age }}", labels={"team": "{{ x }}"}
    )
    assert op.min_age == "{{ params.min_age }}" and op.cancel == "{{ params.cancel }}"
    assert HfOrphanJobsOperator(task_id="default").min_age == DEFAULT_MIN_AGE


def test_operator_rejects_a_bad_rendered_value_before_any_request(hook: Any) -> None:
    op = HfOrphanJobsOperator(task_id="orphans", hf_conn_id="hf_offline", min_age="{{ params.min_age }}")
    op.min_age = "ten minutes"  # as rendered
    with pytest.raises(HfJobsInputError, match="min_age"):
        op.execute({})


def test_manual_cancel_command() -> None:
    assert (
        manual_cancel_command("abc", "alice", "https://huggingface.co")
        == "hf jobs cancel abc --namespace alice"
    )
    assert (
        manual_cancel_command("abc", None, "http://127.0.0.1:5")
        == "HF_ENDPOINT=http://127.0.0.1:5 hf jobs cancel abc"
    )
