"""What ``HfScheduledJobOperator`` says of a scheduled job's next run (issue 22, item 6)."""

from __future__ import annotations

from airflow_provider_hfjobs.jobs import ScheduledJobInfo
from airflow_provider_hfjobs.operators.scheduled import _when


def scheduled(**extra: object) -> ScheduledJobInfo:
    return ScheduledJobInfo.from_api(
        {"id": "s1", "schedule": "@Daily", "status": {"nextJobRunAt": "2026-12-07T04:00:00.000Z"}, **extra}
    )


def test_a_sentence_capitalises_its_first_letter_only() -> None:
    """``str.capitalize`` lower-cased the rest: ``2026-12-07t04:00`` and the schedule as typed lost."""
    text = _when(scheduled(), sentence=True)
    assert text == "Schedule '@Daily', next run at 2026-12-07T04:00:00+00:00"
    assert _when(scheduled()) == "schedule '@Daily', next run at 2026-12-07T04:00:00+00:00"


def test_a_suspended_schedule_says_so() -> None:
    assert _when(scheduled(suspend=True), sentence=True) == "Schedule '@Daily', suspended"
