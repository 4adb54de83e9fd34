"""Scheduled jobs on the local Jobs server, for real: ``/api/scheduled-jobs/...`` over real HTTP, runs
started by the scheduler on the real clock, ``concurrency``, ``suspend``, and a state directory that keeps
scheduled jobs and their secret values across a restart. Every wait is bounded and waits for a condition.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_hfjobs.local import LocalJobsServer
from tests.integration.waiting import wait_for

pytestmark = [
    pytest.mark.integration, pytest.mark.airflow_free, pytest.mark.usefixtures("no_job_left_behind")
]

TOKEN = "hf_local_scheduled_token"
NS = "sched"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
NEVER_SOON = "0 0 1 1 *"  # New Year's midnight: never due during a test


@pytest.fixture(scope="module")
def server() -> Iterator[LocalJobsServer]:
    with LocalJobsServer(token=TOKEN, namespace=NS, max_concurrency=6) as srv:
        yield srv


def call(server: LocalJobsServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{server.url}{path}", headers=AUTH, timeout=30, **kwargs)


def spec(code: str, **extra: Any) -> dict[str, Any]:
    return {"dockerImage": "python:3.12", "command": ["python", "-c", code], "flavor": "cpu-basic", **extra}


def create(server: LocalJobsServer, job_spec: dict[str, Any], schedule: str, **extra: Any) -> dict[str, Any]:
    answer = call(
        server, "POST", f"/api/scheduled-jobs/{NS}", json={"jobSpec": job_spec, "schedule": schedule, **extra}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def inspect(server: LocalJobsServer, scheduled_id: str) -> dict[str, Any]:
    answer = call(server, "GET", f"/api/scheduled-jobs/{NS}/{scheduled_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def job(server: LocalJobsServer, job_id: str) -> dict[str, Any]:
    answer = call(server, "GET", f"/api/jobs/{NS}/{job_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def finished(server: LocalJobsServer, job_id: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for(
        f"job {job_id} to end",
        lambda: (j := job(server, job_id))["status"]["stage"] in TERMINAL and j,
        timeout=timeout,
    )


def log_lines(server: LocalJobsServer, job_id: str) -> list[str]:
    """The finished job's log (the stream replays it and closes)."""
    answer = call(server, "GET", f"/api/jobs/{NS}/{job_id}/logs")
    lines = [json.loads(raw[6:])["data"] for raw in answer.text.splitlines() if raw.startswith("data: {")]
    return [line for line in lines if not line.startswith("===== Job started")]


def runs_of(server: LocalJobsServer, scheduled_id: str) -> list[dict[str, Any]]:
    jobs = call(server, "GET", f"/api/jobs/{NS}").json()
    return [
        j for j in jobs if j["initiator"]["type"] == "scheduled-job" and j["initiator"]["id"] == scheduled_id
    ]


def parse(timestamp: str) -> datetime:
    assert timestamp.endswith("Z"), timestamp
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def gated(gate: Path, *before: str) -> list[str]:
    code = "\n".join(
        ["import os, time", *before, f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)"]
    )
    return ["python", "-c", code]


def test_create_inspect_list_suspend_resume_reschedule_labels_delete(server: LocalJobsServer) -> None:
    created = create(
        server, spec("print(1)", labels={"team": "ml", "name": "nightly"}, timeoutSeconds=300), "@daily"
    )
    sid = created["id"]
    assert len(sid) == 24 and int(sid, 16) >= 0
    assert created["schedule"] == "@daily" and created["suspend"] is False and created["concurrency"] is False
    assert created["owner"] == {"id": created["owner"]["id"], "name": NS, "type": "user"}
    assert created["jobSpec"]["labels"] == {"team": "ml", "name": "nightly"}
    assert created["jobSpec"]["timeoutSeconds"] == 300 and created["jobSpec"]["secrets"] == []
    assert created["status"]["lastJob"] is None
    next_run = parse(created["status"]["nextJobRunAt"])
    assert next_run > datetime.now(UTC) and (next_run.hour, next_run.minute, next_run.second) == (0, 0, 0)
    parse(created["createdAt"]), parse(created["updatedAt"])
    assert inspect(server, sid) == created

    other = create(server, spec("print(2)", labels={"team": "web"}), NEVER_SOON)
    listed = call(server, "GET", f"/api/scheduled-jobs/{NS}").json()
    assert {sid, other["id"]} <= {item["id"] for item in listed}
    filtered = call(server, "GET", f"/api/scheduled-jobs/{NS}", params={"label": "team=ml"}).json()
    assert [item["id"] for item in filtered] == [sid]

    suspended = call(server, "POST", f"/api/scheduled-jobs/{NS}/{sid}/suspend")
    assert suspended.status_code == 200, suspended.text
    body = inspect(server, sid)
    assert body["suspend"] is True and body["status"]["nextJobRunAt"] is None
    assert parse(body["updatedAt"]) >= parse(created["updatedAt"])
    resumed = call(server, "POST", f"/api/scheduled-jobs/{NS}/{sid}/resume")
    assert resumed.status_code == 200 and inspect(server, sid)["status"]["nextJobRunAt"] is not None

    rescheduled = call(
        server, "POST", f"/api/scheduled-jobs/{NS}/{sid}/schedule", json={"schedule": "30 9 * * 1"}
    )
    assert rescheduled.status_code == 200, rescheduled.text
    next_run = parse(rescheduled.json()["status"]["nextJobRunAt"])
    assert rescheduled.json()["schedule"] == "30 9 * * 1"
    assert (next_run.weekday(), next_run.hour, next_run.minute) == (0, 9, 30)

    relabeled = call(
        server, "PUT", f"/api/scheduled-jobs/{NS}/{sid}/labels", json={"labels": {"team": "infra"}}
    )
    assert relabeled.status_code == 200 and relabeled.json()["jobSpec"]["labels"] == {"team": "infra"}
    run = call(server, "POST", f"/api/scheduled-jobs/{NS}/{sid}/run")  # a run after the update
    assert run.status_code == 200, run.text
    assert run.json()["labels"] == {"team": "infra"} and run.json()["timeoutSeconds"] == 300
    assert inspect(server, sid)["status"]["lastJob"]["id"] == run.json()["id"]
    assert finished(server, run.json()["id"])["status"]["stage"] == "COMPLETED"

    for scheduled_id in (sid, other["id"]):
        assert call(server, "DELETE", f"/api/scheduled-jobs/{NS}/{scheduled_id}").status_code == 200
        gone = call(server, "GET", f"/api/scheduled-jobs/{NS}/{scheduled_id}")
        assert gone.status_code == 404 and "error" in gone.json()
    assert call(server, "POST", f"/api/scheduled-jobs/{NS}/{sid}/run").status_code == 404
    assert job(server, run.json()["id"])["status"]["stage"] == "COMPLETED"  # its run stays


def test_invalid_requests_are_refused_naming_the_field(server: LocalJobsServer) -> None:
    before = call(server, "GET", f"/api/scheduled-jobs/{NS}").json()
    cases = [
        ({"jobSpec": spec("print(1)"), "schedule": "every day"}, "schedule"),
        ({"jobSpec": spec("print(1)"), "schedule": "@dayly"}, "@daily"),
        ({"jobSpec": spec("print(1)"), "schedule": "* * * *"}, "5 fields"),
        ({"jobSpec": spec("print(1)"), "schedule": "@daily", "timezone": "UTC"}, "timezone"),
        ({"jobSpec": spec("print(1)", gpu=True), "schedule": "@daily"}, "gpu"),
        ({"jobSpec": spec("print(1)", flavor="cpu-huge"), "schedule": "@daily"}, "flavor"),
        ({"jobSpec": spec("print(1)", timeoutSeconds="1h"), "schedule": "@daily"}, "timeoutSeconds"),
        ({"jobSpec": spec("print(1)", labels={"bad key": "x"}), "schedule": "@daily"}, "labels"),
        ({"jobSpec": spec("print(1)"), "schedule": "@daily", "concurrency": "yes"}, "concurrency"),
        ({"jobSpec": spec("print(1)"), "schedule": "@daily", "suspend": 1}, "suspend"),
        ({"schedule": "@daily"}, "jobSpec"),
        ({"jobSpec": spec("print(1)")}, "schedule"),
    ]
    for body, named in cases:
        answer = call(server, "POST", f"/api/scheduled-jobs/{NS}", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert named in answer.json()["error"], (body, answer.json())
    assert call(server, "GET", f"/api/scheduled-jobs/{NS}").json() == before  # nothing was created

    sid = create(server, spec("print(1)"), NEVER_SOON)["id"]
    try:
        bad = call(
            server, "POST", f"/api/scheduled-jobs/{NS}/{sid}/schedule", json={"schedule": "61 * * * *"}
        )
        assert bad.status_code == 400 and "61 * * * *" in bad.json()["error"]
        bad = call(server, "PUT", f"/api/scheduled-jobs/{NS}/{sid}/labels", json={"labels": {"a": 1}})
        assert bad.status_code == 400 and "labels" in bad.json()["error"]
        bad = call(server, "POST", f"/api/scheduled-jobs/{NS}/{sid}/run", json={"now": True})
        assert bad.status_code == 400 and "trigger" in bad.json()["error"].lower()
        assert inspect(server, sid)["schedule"] == NEVER_SOON
        assert call(server, "GET", "/api/scheduled-jobs/other-ns").status_code == 403
        unauthorized = requests.get(f"{server.url}/api/scheduled-jobs/{NS}/{sid}", timeout=10)
        assert unauthorized.status_code == 401
    finally:
        call(server, "DELETE", f"/api/scheduled-jobs/{NS}/{sid}")


def test_an_every_minute_schedule_really_runs(server: LocalJobsServer) -> None:
    """The real clock: the scheduler starts the run at the next minute (bounded wait, ≤ 75 s)."""
    created = create(
        server,
        spec("print('scheduled run says hi')", labels={"kind": "every-minute"}, environment={"A": "1"}),
        "* * * * *",
    )
    sid = created["id"]
    due = parse(created["status"]["nextJobRunAt"])
    assert due.second == 0 and 0 < (due - datetime.now(UTC)).total_seconds() <= 61
    try:
        last = wait_for(
            "the first scheduled run", lambda: inspect(server, sid)["status"]["lastJob"], timeout=75
        )
        assert parse(last["at"]) >= due
        run = finished(server, last["id"])
        assert run["status"]["stage"] == "COMPLETED", run["status"]
        assert run["initiator"]["type"] == "scheduled-job" and run["initiator"]["id"] == sid
        assert run["labels"] == {"kind": "every-minute"} and run["environment"] == {"A": "1"}
        assert "scheduled run says hi" in log_lines(server, last["id"])
        after = inspect(server, sid)["status"]
        assert parse(after["nextJobRunAt"]) > due  # the next minute, not the one just run
        assert [r["id"] for r in runs_of(server, sid)] == [last["id"]]  # one run, no burst
    finally:
        call(server, "DELETE", f"/api/scheduled-jobs/{NS}/{sid}")


def test_suspended_jobs_have_no_next_run_and_resume_from_now(server: LocalJobsServer) -> None:
    created = create(server, spec("print(1)"), "* * * * *", suspend=True)
    try:
        assert created["suspend"] is True and created["status"]["nextJobRunAt"] is None
        listed = call(server, "GET", f"/api/scheduled-jobs/{NS}").json()
        assert next(i for i in listed if i["id"] == created["id"])["status"]["nextJobRunAt"] is None
        call(server, "POST", f"/api/scheduled-jobs/{NS}/{created['id']}/resume")
        call(server, "POST", f"/api/scheduled-jobs/{NS}/{created['id']}/suspend")  # before the minute ends
        assert inspect(server, created["id"])["status"]["nextJobRunAt"] is None
    finally:
        call(server, "DELETE", f"/api/scheduled-jobs/{NS}/{created['id']}")


def test_trigger_answers_409_while_a_run_is_active_unless_concurrency(
    server: LocalJobsServer, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    waiting = spec("", command=gated(gate, "print('started', flush=True)"))
    single = create(server, waiting, NEVER_SOON)["id"]
    multi = create(server, waiting, NEVER_SOON, concurrency=True)["id"]
    try:
        first = call(server, "POST", f"/api/scheduled-jobs/{NS}/{single}/run")
        assert first.status_code == 200 and first.json()["initiator"]["id"] == single
        refused = call(server, "POST", f"/api/scheduled-jobs/{NS}/{single}/run")
        assert refused.status_code == 409, refused.text
        assert first.json()["id"] in refused.json()["error"] and "concurrency" in refused.json()["error"]
        assert len(runs_of(server, single)) == 1

        one = call(server, "POST", f"/api/scheduled-jobs/{NS}/{multi}/run")
        two = call(server, "POST", f"/api/scheduled-jobs/{NS}/{multi}/run")
        assert one.status_code == two.status_code == 200, two.text
        assert one.json()["id"] != two.json()["id"] and len(runs_of(server, multi)) == 2
        assert inspect(server, multi)["status"]["lastJob"]["id"] == two.json()["id"]
    finally:
        gate.touch()
    for run in runs_of(server, single) + runs_of(server, multi):
        assert finished(server, run["id"])["status"]["stage"] == "COMPLETED"
    again = call(server, "POST", f"/api/scheduled-jobs/{NS}/{single}/run")  # the run ended: allowed again
    assert again.status_code == 200, again.text
    finished(server, again.json()["id"])
    for sid in (single, multi):
        call(server, "DELETE", f"/api/scheduled-jobs/{NS}/{sid}")


def test_stats_count_scheduled_requests_by_kind(server: LocalJobsServer) -> None:
    call(server, "DELETE", "/_local/stats")
    sid = create(server, spec("print(1)"), NEVER_SOON)["id"]
    inspect(server, sid)
    call(server, "GET", f"/api/scheduled-jobs/{NS}")
    call(server, "POST", f"/api/scheduled-jobs/{NS}/{sid}/suspend")
    call(server, "DELETE", f"/api/scheduled-jobs/{NS}/{sid}")
    counts = call(server, "GET", "/_local/stats").json()["requests"]
    assert counts == {
        "scheduled-create": 1, "scheduled-inspect": 1, "scheduled-list": 1, "scheduled-suspend": 1,
        "scheduled-delete": 1,
    }  # fmt: skip


def test_a_kept_state_dir_keeps_scheduled_jobs_and_their_secrets(tmp_path: Path) -> None:
    state = tmp_path / "state"
    code = "import os; print('secret length', len(os.environ['API_KEY']))"
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=str(state)) as local:
        created = create(local, spec(code, secrets={"API_KEY": "s3cr3t-value"}), "15 4 * * *")
        sid = created["id"]
        assert created["jobSpec"]["secrets"] == ["API_KEY"]
        directory = state / "scheduled-jobs" / sid
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for name in ("scheduled-job.json", "secrets.json"):
            assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
        assert "s3cr3t-value" not in (directory / "scheduled-job.json").read_text()
        local.restart(downtime=0.1)
        kept = inspect(local, sid)
        assert (kept["id"], kept["schedule"], kept["createdAt"]) == (sid, "15 4 * * *", created["createdAt"])
        assert kept["status"]["nextJobRunAt"] == created["status"]["nextJobRunAt"]
        run = call(local, "POST", f"/api/scheduled-jobs/{NS}/{sid}/run")
        assert run.status_code == 200, run.text
        assert "s3cr3t-value" not in run.text and run.json()["secrets"] == ["API_KEY"]
        assert finished(local, run.json()["id"])["status"]["stage"] == "COMPLETED"
        assert "secret length 12" in log_lines(local, run.json()["id"])
        assert "s3cr3t-value" not in json.dumps(inspect(local, sid))
        assert call(local, "DELETE", f"/api/scheduled-jobs/{NS}/{sid}").status_code == 200
        assert not directory.exists()  # its secret values went with it


def test_a_run_missed_while_the_server_was_down_runs_once_on_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=str(state)) as local:
        sid = create(local, spec("print('catching up')", labels={"k": "v"}), "*/5 * * * *")["id"]
        paused = create(local, spec("print('never')"), "*/5 * * * *", suspend=True)["id"]
    # While the server is down, the runs' due times pass (an hour: twelve runs of */5 missed).
    for scheduled_id in (sid, paused):
        record_file = state / "scheduled-jobs" / scheduled_id / "scheduled-job.json"
        record = json.loads(record_file.read_text())
        record["next_run_at"] = time.time() - 3600
        record_file.write_text(json.dumps(record))
    started = datetime.now(UTC)
    with LocalJobsServer(token=TOKEN, namespace=NS, state_dir=str(state)) as local:
        last = wait_for("the missed run", lambda: inspect(local, sid)["status"]["lastJob"], timeout=30)
        assert finished(local, last["id"])["status"]["stage"] == "COMPLETED"
        assert "catching up" in log_lines(local, last["id"])
        assert [r["id"] for r in runs_of(local, sid)] == [last["id"]]  # once, not twelve times
        assert parse(inspect(local, sid)["status"]["nextJobRunAt"]) > started
        assert inspect(local, paused)["status"]["lastJob"] is None and runs_of(local, paused) == []
        for scheduled_id in (sid, paused):
            call(local, "DELETE", f"/api/scheduled-jobs/{NS}/{scheduled_id}")
