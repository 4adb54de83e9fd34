"""Orphaned jobs: jobs this provider's operators started that nobody watches any more, still billed.

A job started with ``wait_for_completion=False``, or whose task was marked success or failed, cleared, or
whose DAG run was deleted, runs on (and is billed) until its own timeout. Each job an operator creates
carries the labels of its task instance (:func:`~airflow_provider_hfjobs.jobs.task_instance_labels`):

- ``airflow-ti``: a uuid5 of dag id, task id, run id and map index: a hash, it cannot be read back;
- ``airflow-dag`` / ``airflow-task``: the ids with each character outside ``[A-Za-z0-9_-]`` made ``-``
  (the ``.`` of a task group), cut at 100 characters.

So the task instance is found the other way round: the DAG ids and task ids the readable labels can stand
for (each ``-`` a ``-`` or a ``.``) are asked for their task instances, and the one whose own labels hash to
the job's ``airflow-ti`` is the job's. Its state decides: running, queued, scheduled, up for retry or
reschedule, deferred or restarting is a task still watching (or about to watch) its job; anything else
(success, failed, skipped, no state after a clear...) is an orphan. So is a job whose task instance is
gone although its DAG and task are known here (the DAG run was deleted). A job without these labels is
not ours and is never listed; nor is one whose labels name a DAG or task this Airflow does not know (or
cannot be read back with certainty: ids cut at 100 characters, non-ASCII letters): it may belong to
another Airflow that shares the namespace, so it is reported apart, never cancelled.

The states come from a *task states reader* (:data:`TaskStatesReader`), so that the logic here needs no
metadata DB: :func:`supervisor_task_states` (Airflow 3, from inside a task, through the Task SDK's
``GetTaskStates``: tasks cannot reach the DB there) and :func:`metadata_db_task_states` (Airflow 2, or any
process with DB access). :func:`default_task_states` picks one.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_hfjobs.exceptions import HfJobsError, HfJobsInputError
from airflow_provider_hfjobs.jobs import (
    MAX_LABEL_LENGTH,
    TASK_INSTANCE_LABEL,
    JobInfo,
    JobStage,
    format_timestamp,
    task_instance_labels,
    validate_labels,
    validate_namespace,
)

if TYPE_CHECKING:
    from airflow_provider_hfjobs.hooks.sync import HfJobsHook

#: Task instance states of a task that is, or will soon be, watching its job.
LIVE_TASK_STATES = frozenset(
    {"running", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "deferred", "restarting"}
)
#: A job younger than this is left alone: its task's state may not have been written yet.
DEFAULT_MIN_AGE = timedelta(minutes=10)
#: Most DAG ids one ``airflow-dag`` label is read back to (one states request each; 2**5: five ``-``).
MAX_DAG_CANDIDATES = 32
#: Most task ids one ``airflow-task`` label is read back to (all in one request); more: the whole DAG.
MAX_TASK_CANDIDATES = 64
DAG_LABEL, TASK_LABEL = "airflow-dag", "airflow-task"
_TI_KEY_RE = re.compile(r"^[0-9a-f]{32}\Z")
_MAPPED_KEY_RE = re.compile(r"^(.+)_(\d+)\Z")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*\Z")
_DURATION_FACTORS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class TaskInstanceRow:
    """One task instance as a reader returns it (``map_index`` -1: not mapped)."""

    run_id: str
    task_id: str
    map_index: int
    state: str | None


#: ``reader(dag_id, task_ids)``: the task instances of ``dag_id`` (every run), of these tasks only, or of
#: every task for ``None``. An unknown DAG has none. It raises rather than answer partly.
TaskStatesReader = Callable[[str, Sequence[str] | None], Iterable[TaskInstanceRow]]


# ------------------------------------------------------------------------------------------------ input
def parse_min_age(value: Any, *, field_name: str = "min_age") -> timedelta:
    """``min_age`` as a timedelta: a timedelta, seconds (``600``), or ``"90s"``/``"10m"``/``"1.5h"``/``"2d"``;
    zero is allowed (every job, however young), a negative or unreadable value is an error."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or value is None:
        raise HfJobsInputError(f"{field_name} must be a duration such as '10m' or 600; got {value!r}.")
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _DURATION_FACTORS[match.group(2)]
    else:
        raise HfJobsInputError(
            f"{field_name}={value!r} is not a duration: use seconds (600), a timedelta, or a number with one "
            "of the units s, m, h, d ('90s', '10m', '1.5h', '2d')."
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise HfJobsInputError(f"{field_name}={value!r} must be zero or a positive duration, such as '10m'.")
    return timedelta(seconds=seconds)


def parse_flag(value: Any, *, field_name: str) -> bool:
    """A bool, or its rendering by a non-native template (``"True"``, ``"false"``): nothing else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise HfJobsInputError(f"{field_name} must be True or False; got {value!r}.")


# ------------------------------------------------------------------------------------- reading labels
@dataclass(frozen=True)
class JobOwner:
    """What a job's labels say of the task instance that created it."""

    ti_key: str
    dag_label: str
    task_label: str

    @classmethod
    def from_labels(cls, labels: Mapping[str, str] | None) -> JobOwner | None:
        """``None`` unless all three labels of :func:`task_instance_labels` are there and well formed: a job
        without them (made by hand, by a scheduled job, by another tool) is not one of ours."""
        labels = labels or {}
        key, dag, task = labels.get(TASK_INSTANCE_LABEL), labels.get(DAG_LABEL), labels.get(TASK_LABEL)
        if not (
            isinstance(key, str) and _TI_KEY_RE.match(key) and isinstance(dag, str) and isinstance(task, str)
        ):
            return None
        return cls(key, dag, task) if dag and task else None


@dataclass(frozen=True)
class NameCandidates:
    """The ids a label may stand for; ``complete`` when they are all of them (ASCII ids)."""

    names: tuple[str, ...]
    complete: bool


def name_candidates(label: str, limit: int) -> NameCandidates:
    """The ids whose label is ``label``: each ``-`` was a ``-`` or a ``.`` (the label itself first). A label
    of 100 characters may have been cut, and more than ``limit`` variants are not all tried: incomplete."""
    if len(label) >= MAX_LABEL_LENGTH:
        return NameCandidates((label,), complete=False)
    dashes = [position for position, char in enumerate(label) if char == "-"]
    if 2 ** len(dashes) > limit:
        return NameCandidates((label,), complete=False)
    names = []
    for choice in itertools.product("-.", repeat=len(dashes)):
        chars = list(label)
        for position, char in zip(dashes, choice, strict=True):
            chars[position] = char
        names.append("".join(chars))
    return NameCandidates(tuple(names), complete=True)


def ti_keys(dag_id: str, task_id: str, run_id: str, map_index: int) -> set[str]:
    """The ``airflow-ti`` values a job of this task instance carries. The operator labels map index 0 as -1
    (``ti.map_index or -1``): both are accepted for index 0 (no run has both an unmapped and a mapped
    instance of one task)."""
    keys = {task_instance_labels(dag_id, task_id, run_id, map_index)[TASK_INSTANCE_LABEL]}
    if map_index == 0:
        keys.add(task_instance_labels(dag_id, task_id, run_id, -1)[TASK_INSTANCE_LABEL])
    return keys


def task_label_of(task_id: str) -> str:
    return task_instance_labels("d", task_id, "r")[TASK_LABEL]


# ----------------------------------------------------------------------------------- finding the owner
@dataclass(frozen=True)
class Ownership:
    """A job's task instance: ``found`` (with its state), ``missing`` (DAG and task known here, that run or
    map index gone) or ``unknown`` (labels this Airflow cannot read back: never an orphan)."""

    status: Literal["found", "missing", "unknown"]
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int | None = None
    state: str | None = None

    @property
    def live(self) -> bool:
        return self.status == "found" and (self.state or "") in LIVE_TASK_STATES


class TaskInstanceResolver:
    """Reads job labels back to task instances, asking the reader once per DAG id and task ids."""

    def __init__(self, reader: TaskStatesReader) -> None:
        self._reader = reader
        self._rows: dict[tuple[str, tuple[str, ...] | None], list[TaskInstanceRow]] = {}

    def _rows_of(self, dag_id: str, task_ids: tuple[str, ...] | None) -> list[TaskInstanceRow]:
        if (dag_id, task_ids) not in self._rows:
            self._rows[dag_id, task_ids] = list(self._reader(dag_id, list(task_ids) if task_ids else None))
        return self._rows[dag_id, task_ids]

    def resolve(self, owner: JobOwner) -> Ownership:
        dags = name_candidates(owner.dag_label, MAX_DAG_CANDIDATES)
        tasks = name_candidates(owner.task_label, MAX_TASK_CANDIDATES)
        task_ids = tasks.names if tasks.complete else None  # else every task of the DAG, matched by label
        known: tuple[str, str] | None = None
        for dag_id in dags.names:
            for row in self._rows_of(dag_id, task_ids):
                asked = (
                    row.task_id in task_ids if task_ids else task_label_of(row.task_id) == owner.task_label
                )
                if not asked:
                    continue
                known = known or (dag_id, row.task_id)
                if owner.ti_key in ti_keys(dag_id, row.task_id, row.run_id, row.map_index):
                    state = str(getattr(row.state, "value", row.state)).lower() if row.state else None
                    return Ownership("found", dag_id, row.task_id, row.run_id, row.map_index, state)
        if known is not None and dags.complete:
            return Ownership("missing", *known)
        return Ownership("unknown")


# -------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class OrphanJob:
    """A live job of ours whose task instance no longer watches it."""

    job: JobInfo
    age_seconds: float | None
    owner: Ownership

    @property
    def reason(self) -> str:
        if self.owner.status == "missing":
            return "its task instance no longer exists (its DAG run was deleted?)"
        if self.owner.state is None:
            return "its task instance has no state (cleared?)"
        return f"its task instance is {self.owner.state}"

    @property
    def task_instance(self) -> str:
        """``dag/task run=... map=...``, readable in a log line."""
        owner = self.owner
        text = f"{owner.dag_id}/{owner.task_id}"
        if owner.run_id is None:
            return f"{text} (its run is not known here)"
        text += f" run={owner.run_id}"
        if owner.map_index is not None and owner.map_index >= 0:
            text += f" map_index={owner.map_index}"
        return text

    def describe(self) -> str:
        """One log line: what the job is, what it costs by the clock, whose it was and why it is orphaned."""
        age = format_age(self.age_seconds) if self.age_seconds is not None else "age unknown"
        return (
            f"Orphan Hugging Face job {self.job.id} ({self.job.stage.value}, {self.job.flavor or 'flavor unknown'}, "
            f"{age} old) {self.job.url}: task instance {self.task_instance}; {self.reason}."
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for XCom: no environment, secret names, command or token."""
        owner = self.owner
        return {
            "job_id": self.job.id, "url": self.job.url, "namespace": self.job.owner_name or None,
            "stage": self.job.stage.value, "flavor": self.job.flavor,
            "created_at": format_timestamp(self.job.created_at) if self.job.created_at else None,
            "age_seconds": round(self.age_seconds, 1) if self.age_seconds is not None else None,
            "dag_id": owner.dag_id, "task_id": owner.task_id, "run_id": owner.run_id,
            "map_index": owner.map_index, "task_state": owner.state if owner.status == "found" else "missing",
            "reason": self.reason,
        }  # fmt: skip


@dataclass
class OrphanScan:
    """Every live job looked at, sorted: ``orphans`` (to cancel), ``watched`` (a live task watches it),
    ``unmatched`` (our labels, but no DAG or task this Airflow knows), ``too_young`` (under ``min_age``) and
    ``not_ours`` (no task instance labels)."""

    orphans: list[OrphanJob] = field(default_factory=list)
    watched: list[tuple[JobInfo, Ownership]] = field(default_factory=list)
    unmatched: list[JobInfo] = field(default_factory=list)
    too_young: list[JobInfo] = field(default_factory=list)
    not_ours: list[JobInfo] = field(default_factory=list)

    @property
    def looked_at(self) -> int:
        groups = (self.orphans, self.watched, self.unmatched, self.too_young, self.not_ours)
        return sum(len(group) for group in groups)

    def summary(self, namespace: str) -> str:
        return (
            f"Looked at {self.looked_at} live Hugging Face jobs in {namespace!r}: {len(self.orphans)} orphaned, "
            f"{len(self.watched)} watched by a live task, {len(self.too_young)} younger than min_age, "
            f"{len(self.unmatched)} with task labels this Airflow cannot match, {len(self.not_ours)} not "
            "started by this provider's operators."
        )


def format_age(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 3 h``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def find_orphans(
    jobs: Iterable[JobInfo],
    task_states: TaskStatesReader,
    *,
    min_age: timedelta = DEFAULT_MIN_AGE,
    labels: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> OrphanScan:
    """Sort ``jobs`` (no I/O but the reader's). Terminal jobs and those without ``labels`` are skipped; a job
    of unknown age counts as young unless ``min_age`` is zero."""
    now = now or datetime.now(UTC)
    wanted = dict(labels or {})
    resolver = TaskInstanceResolver(task_states)
    scan = OrphanScan()
    for job in jobs:
        if job.is_terminal or any(job.labels.get(key) != value for key, value in wanted.items()):
            continue
        owner = JobOwner.from_labels(job.labels)
        if owner is None:
            scan.not_ours.append(job)
            continue
        age = (now - job.created_at).total_seconds() if job.created_at else None
        if min_age and (age is None or age < min_age.total_seconds()):
            scan.too_young.append(job)
            continue
        ownership = resolver.resolve(owner)
        if ownership.status == "unknown":
            scan.unmatched.append(job)
        elif ownership.live:
            scan.watched.append((job, ownership))
        else:
            scan.orphans.append(OrphanJob(job, age, ownership))
    return scan


def scan_orphan_jobs(
    hook: HfJobsHook,
    task_states: TaskStatesReader | None = None,
    *,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    min_age: timedelta | float | str = DEFAULT_MIN_AGE,
    now: datetime | None = None,
) -> OrphanScan:
    """List the namespace's live jobs (SCHEDULING, RUNNING; ``labels`` filtered on the server too) and sort
    them with :func:`find_orphans`. Arguments are checked before any request."""
    age = parse_min_age(min_age)
    wanted = validate_labels(labels)
    if namespace:
        validate_namespace(namespace)
    if task_states is not None and not callable(task_states):
        raise HfJobsInputError(
            f"task_states must be a callable (dag_id, task_ids) -> task instances; got {task_states!r}."
        )
    reader = task_states or default_task_states()
    jobs = hook.list_jobs(
        status=[JobStage.SCHEDULING, JobStage.RUNNING], labels=wanted or None, namespace=namespace or None
    )
    return find_orphans(jobs, reader, min_age=age, labels=wanted, now=now)


# ----------------------------------------------------------------------------------------- the readers
def rows_from_task_states(
    states: Mapping[str, Mapping[str, Any]], task_ids: Sequence[str] | None
) -> Iterator[TaskInstanceRow]:
    """Rows of a ``GetTaskStates`` answer, ``{run_id: {key: state}}`` with the key ``task_id`` (unmapped) or
    ``task_id_<map index>``. Asked for ``task_ids``, a key is read against them; asked for every task, a key
    that reads both ways (``a_1``: task ``a_1``, or task ``a`` index 1) yields both, and the label hash
    tells which one made the job."""
    wanted = set(task_ids) if task_ids else None
    for run_id, by_key in states.items():
        for key, state in (by_key or {}).items():
            if wanted is None or key in wanted:
                yield TaskInstanceRow(run_id, key, -1, state)
            mapped = _MAPPED_KEY_RE.match(key)
            if mapped and (wanted is None or mapped.group(1) in wanted):
                yield TaskInstanceRow(run_id, mapped.group(1), int(mapped.group(2)), state)


def supervisor_task_states() -> TaskStatesReader:
    """Airflow 3, inside a running task: the Task SDK's ``RuntimeTaskInstance.get_task_states`` (the
    supervisor's ``GetTaskStates``, answered by the Execution API), the one way a task reads other task
    instances' states there."""

    def read(dag_id: str, task_ids: Sequence[str] | None) -> list[TaskInstanceRow]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        try:
            states = RuntimeTaskInstance.get_task_states(
                dag_id=dag_id, task_ids=list(task_ids) if task_ids else None
            )
        except (NameError, AttributeError) as exc:  # no SUPERVISOR_COMMS: not in a task
            raise HfJobsError(
                "Reading task instance states on Airflow 3 needs a running task (the Task SDK's supervisor): "
                "run this in a task (HfOrphanJobsOperator), or pass task_states=metadata_db_task_states() "
                f"where the metadata DB is reachable ({type(exc).__name__}: {exc})."
            ) from exc
        return list(rows_from_task_states(states or {}, task_ids))

    return read


def metadata_db_task_states() -> TaskStatesReader:
    """Airflow 2 (any process), or Airflow 3 outside a task with DB access: one ORM query per call."""

    def read(dag_id: str, task_ids: Sequence[str] | None) -> list[TaskInstanceRow]:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            query = session.query(
                TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state
            ).filter(TaskInstance.dag_id == dag_id)
            if task_ids:
                query = query.filter(TaskInstance.task_id.in_(list(task_ids)))
            return [
                TaskInstanceRow(
                    run_id, task_id, int(map_index), str(getattr(state, "value", state)) if state else None
                )
                for run_id, task_id, map_index, state in query.all()
            ]

    return read


def default_task_states() -> TaskStatesReader:
    """The reader for this Airflow: the supervisor on Airflow 3, the metadata DB on Airflow 2."""
    from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_PLUS

    return supervisor_task_states() if AIRFLOW_V_3_PLUS else metadata_db_task_states()
