"""Guardrails that stop a Hugging Face job burning money: the rules once, free of I/O.

A job bills by the second while it runs, whether it trains or hangs. Four guards end it early, each with a
log line that gives the figures:

- ``stall_timeout``: no log line (or other sign of life the caller reports) for that long while RUNNING;
- ``max_cost_usd``: the flavor's price times the time billed reached the cap;
- ``idle_gpu_timeout``: the GPU utilization (mean over the job's GPUs, from the metrics stream) stayed
  under ``idle_gpu_threshold`` percent for that long;
- ``max_scheduling_time``: still SCHEDULING that long, so that the caller can cancel and resubmit on the
  next flavor of a fallback list (:func:`flavor_fallback`, :func:`next_flavor`).

The operators (worker, sync) and the deferrable trigger (triggerer, async) both feed a :class:`GuardWatch`
with what they see and the clock, and cancel the job when :meth:`GuardWatch.check` returns a
:class:`GuardStop`: one implementation, so both stop a job for the same reasons at the same moments.
Nothing here reads a clock, a file or a socket; every moment is the caller's ``now`` (seconds as a float,
monotonic or wall, but one clock per watch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from typing import Any, Literal

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.jobs import (
    DEFAULT_JOB_TIMEOUT_SECONDS,
    HardwareInfo,
    JobInfo,
    JobStage,
    parse_timeout,
    validate_flavor,
)
from airflow_provider_hfjobs.metrics import MetricsAccumulator, _usd

GuardName = Literal["stall_timeout", "max_cost_usd", "idle_gpu_timeout", "max_scheduling_time"]
#: The guards, in the order :meth:`GuardWatch.check` tries them when several are due at once: money first.
GUARDS: tuple[GuardName, ...] = ("max_cost_usd", "idle_gpu_timeout", "stall_timeout", "max_scheduling_time")
#: The operator arguments that configure the guards (the keyword arguments of :meth:`Guardrails.from_arguments`).
GUARDRAIL_ARGUMENTS = (
    "stall_timeout", "max_cost_usd", "idle_gpu_timeout", "idle_gpu_threshold", "max_scheduling_time",
)  # fmt: skip
#: Percent of GPU utilization under which the GPU counts as idle, unless told otherwise. Lower than
#: :data:`~airflow_provider_hfjobs.metrics.IDLE_GPU_THRESHOLD_PCT` (a warning): this one cancels the job.
DEFAULT_IDLE_GPU_THRESHOLD = 5.0
#: Longest time between two GPU readings of one idle run: after a longer gap (a metrics stream that went
#: silent, then came back) nothing says the GPU stayed idle meanwhile, so the run starts over. The stream
#: sends one sample a second; a client reconnects after 10 s of silence.
IDLE_GPU_MAX_GAP_SECONDS = 60.0
#: Slack for float arithmetic on clocks and prices: a guard is due once its figure is within this of its
#: limit (a microsecond, a billionth of a dollar), so ``now - since`` rounding never delays it by a check.
_TIME_SLACK = 1e-6
_COST_SLACK = 1e-9


# ---------------------------------------------------------------------------------------------- arguments
def _finite(value: Any) -> float | None:
    """A real number (no bool, NaN or infinity) as a float, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _duration(value: Any, name: str) -> float | None:
    """A guard's duration in seconds: a number (or a ``timedelta``) as given (fractions kept: a guard is timed here, not by the
    server), a string by the job ``timeout``'s own rules (:func:`~airflow_provider_hfjobs.jobs.parse_timeout`),
    ``None`` for no guard. Zero, a negative or an empty value is an error, never a silent "off"."""
    if value is None:
        return None
    off = "; None turns the guard off."
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = _finite(value)
        if seconds is None or seconds <= 0:
            raise HfJobsInputError(
                f"{name}={value!r} must be a positive duration, such as '30m' or 1800 (seconds){off}"
            )
        return seconds
    if isinstance(value, timedelta):
        return _duration(value.total_seconds(), name)
    if isinstance(value, str):
        if not value.strip():
            raise HfJobsInputError(f"{name}={value!r} is empty: give a duration such as '30m' or 1800{off}")
        value = value.strip()
    try:
        seconds = parse_timeout(value, field_name=name)
    except OverflowError:  # "1e400s", "infd": a float too large for int()
        raise HfJobsInputError(
            f"{name}={value!r} is not a usable duration: use one such as '2d'{off}"
        ) from None
    if seconds is None:  # another falsy value ([] or {}): not a duration
        raise HfJobsInputError(f"{name}={value!r} is not a duration: use seconds (1800) or '30m'{off}")
    return float(seconds)


def _number(value: Any, mark: str) -> float | None:
    """A number, or a string of one (templates render to strings) with an optional ``mark`` ($, %)."""
    number = _finite(value)
    if number is None and isinstance(value, str):
        text = value.strip().removeprefix(mark).removesuffix(mark).strip()
        try:
            number = _finite(float(text))
        except ValueError:
            return None
    return number


def _cost(value: Any, name: str = "max_cost_usd") -> float | None:
    if value is None:
        return None
    amount = _number(value, "$")
    if amount is None or amount <= 0:
        raise HfJobsInputError(
            f"{name}={value!r} must be a positive amount of US dollars, such as 5 or 12.5; None turns the "
            "guard off."
        )
    return amount


def _threshold(value: Any, name: str = "idle_gpu_threshold") -> float:
    if value is None:
        return DEFAULT_IDLE_GPU_THRESHOLD
    percent = _number(value, "%")
    if percent is None or not 0 < percent <= 100:
        raise HfJobsInputError(
            f"{name}={value!r} must be a GPU utilization in percent, above 0 and at most 100, such as 5 or "
            f"10 (no GPU is ever under 0%); leave it out for {DEFAULT_IDLE_GPU_THRESHOLD:g}."
        )
    return percent


_RULES = {
    "stall_timeout": lambda value: _duration(value, "stall_timeout"),
    "max_cost_usd": _cost,
    "idle_gpu_timeout": lambda value: _duration(value, "idle_gpu_timeout"),
    "idle_gpu_threshold": _threshold,
    "max_scheduling_time": lambda value: _duration(value, "max_scheduling_time"),
}


def check_guardrail_arguments(**known: Any) -> dict[str, float | None]:
    """Check the guardrail arguments given, and only those (an operator at DAG parse time leaves out the
    ones holding a template), as :func:`~airflow_provider_hfjobs.jobs.check_create_arguments` does for the
    create arguments. Returns each one converted: seconds, US dollars, percent (``None``: that guard off)."""
    if unknown := sorted(set(known) - set(GUARDRAIL_ARGUMENTS)):
        raise TypeError(f"check_guardrail_arguments() got unexpected arguments: {', '.join(unknown)}")
    return {name: _RULES[name](known[name]) for name in GUARDRAIL_ARGUMENTS if name in known}


# --------------------------------------------------------------------------------------------- formatting
def format_duration(seconds: float, *, approximate: bool = False) -> str:
    """``"45s"``, ``"30m"``, ``"1h 10m 33s"``, ``"2d 3h"``: from the largest unit to the smallest one not
    zero (under 10 s, to a tenth: ``"2.5s"``). ``approximate`` drops the seconds from an hour on."""
    seconds = max(0.0, float(seconds))
    if seconds < 10 and not approximate:
        return f"{round(seconds, 1):g}s"
    whole = round(seconds / 60) * 60 if approximate and seconds >= 3600 else round(seconds)
    parts = [
        (whole // 86400, "d"),
        (whole % 86400 // 3600, "h"),
        (whole % 3600 // 60, "m"),
        (whole % 60, "s"),
    ]
    shown = [index for index, (amount, _) in enumerate(parts) if amount]
    if not shown:
        return "0s"
    return " ".join(f"{amount}{unit}" for amount, unit in parts[shown[0] : shown[-1] + 1])


def price_per_hour(hardware: HardwareInfo) -> float:
    """A flavor's pay-as-you-go price per hour, whatever unit the hardware table prices it in."""
    return hardware.cost_usd(3600)


def _non_negative(value: Any) -> float | None:
    """A usable price or duration (finite, not negative) from the caller or the server, else ``None``."""
    number = _finite(value)
    return number if number is not None and number >= 0 else None


# --------------------------------------------------------------------------------------------- guardrails
@dataclass(frozen=True)
class Guardrails:
    """The limits of one job's run (``None``: that guard off). Durations in seconds, cost in US dollars,
    the threshold in percent. Build it from operator arguments with :meth:`from_arguments`; it travels in
    trigger kwargs as :meth:`to_dict`."""

    stall_timeout: float | None = None
    max_cost_usd: float | None = None
    idle_gpu_timeout: float | None = None
    idle_gpu_threshold: float = DEFAULT_IDLE_GPU_THRESHOLD
    max_scheduling_time: float | None = None

    def __post_init__(self) -> None:
        # Built directly or from arguments, a Guardrails holds only checked floats.
        for name, value in check_guardrail_arguments(**asdict(self)).items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_arguments(
        cls,
        *,
        stall_timeout: float | str | timedelta | None = None,
        max_cost_usd: float | str | None = None,
        idle_gpu_timeout: float | str | timedelta | None = None,
        idle_gpu_threshold: float | str | None = None,
        max_scheduling_time: float | str | timedelta | None = None,
    ) -> Guardrails:
        """The guardrails an operator was given: durations as the job ``timeout`` takes them (seconds, or
        ``"90s"``/``"30m"``/``"1.5h"``/``"2d"``; a ``timedelta`` too), a cost in dollars (``2.5``,
        ``"$2.5"``), a threshold in percent (``None``: 5). A bad value is an :class:`HfJobsInputError`
        naming the argument and what to give instead."""
        return cls(
            stall_timeout=_duration(stall_timeout, "stall_timeout"),
            max_cost_usd=_cost(max_cost_usd),
            idle_gpu_timeout=_duration(idle_gpu_timeout, "idle_gpu_timeout"),
            idle_gpu_threshold=_threshold(idle_gpu_threshold),
            max_scheduling_time=_duration(max_scheduling_time, "max_scheduling_time"),
        )

    @property
    def active(self) -> bool:
        """Is any guard on (the threshold alone guards nothing)."""
        return any(getattr(self, name) is not None for name in GUARDS)

    @property
    def needs_metrics(self) -> bool:
        """The idle-GPU guard reads the metrics stream: a caller must follow it even with metrics off."""
        return self.idle_gpu_timeout is not None

    @property
    def needs_price(self) -> bool:
        """The cost cap needs the flavor's price (from the hardware table)."""
        return self.max_cost_usd is not None

    def to_dict(self) -> dict[str, float | None]:
        """Plain JSON numbers, for trigger kwargs."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Guardrails:
        """Back from :meth:`to_dict` (``None``: no guardrails). An unknown key is an error, not ignored: a
        guard that a newer provider set must not be dropped silently while the job burns money."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise HfJobsInputError(
                f"guardrails must be a mapping of {', '.join(GUARDRAIL_ARGUMENTS)}; got {data!r}."
            )
        if unknown := sorted(set(data) - {field.name for field in fields(cls)}):
            raise HfJobsInputError(
                f"guardrails: unknown {', '.join(map(repr, unknown))} (written by another provider version?); "
                f"known: {', '.join(GUARDRAIL_ARGUMENTS)}."
            )
        return cls(**data)

    def describe(self) -> str:
        """One phrase for a log line: ``"stall_timeout 30m, max_cost_usd $2.00"`` or ``"no guardrails"``."""
        parts = []
        if self.stall_timeout is not None:
            parts.append(f"stall_timeout {format_duration(self.stall_timeout)}")
        if self.max_cost_usd is not None:
            parts.append(f"max_cost_usd {_usd(self.max_cost_usd)}")
        if self.idle_gpu_timeout is not None:
            parts.append(
                f"idle_gpu_timeout {format_duration(self.idle_gpu_timeout)} (GPU under {self.idle_gpu_threshold:g}%)"
            )
        if self.max_scheduling_time is not None:
            parts.append(f"max_scheduling_time {format_duration(self.max_scheduling_time)}")
        return ", ".join(parts) or "no guardrails"


def cap_warning(
    guardrails: Guardrails,
    timeout_seconds: float | str | None,
    price_per_hour_usd: float | None,
    *,
    job_id: str | None = None,
    flavor: str | None = None,
) -> str | None:
    """The line to log at submit when ``max_cost_usd`` will stop the job before its timeout does (a
    ``None`` timeout is the server's default, 30 min); ``None`` when the timeout comes first or the price
    is unknown (nothing to say)."""
    limit, price = guardrails.max_cost_usd, _non_negative(price_per_hour_usd)
    if limit is None or not price:
        return None
    if isinstance(timeout_seconds, str):
        timeout_seconds = parse_timeout(timeout_seconds)
    timeout = DEFAULT_JOB_TIMEOUT_SECONDS if not timeout_seconds else float(timeout_seconds)
    capped = limit / price * 3600
    if capped >= timeout:
        return None
    job = f"job {job_id}" if job_id else "the job"
    return (
        f"max_cost_usd {_usd(limit)} stops {job} after about {format_duration(capped, approximate=True)} on "
        f"{flavor or 'its flavor'} ({_usd(price)}/h), before its timeout of {format_duration(timeout)}."
    )


# ------------------------------------------------------------------------------------------ flavor fallback
def flavor_fallback(flavor: str | Sequence[str] | None) -> list[str]:
    """The flavors to try in order: one name, or a list tried one after the other when a job stays
    SCHEDULING past ``max_scheduling_time``. ``None`` is the server's default flavor: ``[]``, nothing to
    fall back to. Names are not checked against the known flavors here (the operator does that for a
    DAG's literal, with its ``extra_flavors``)."""
    if flavor is None:
        return []
    if isinstance(flavor, str):
        return [validate_flavor(flavor)]
    if not isinstance(flavor, Sequence):
        raise HfJobsInputError(
            f"flavor must be a flavor name or a list of them to try in order, such as ['l4x1', 'a10g-small']; "
            f"got {type(flavor).__name__}."
        )
    if not flavor:
        raise HfJobsInputError(
            "flavor is an empty list: give at least one flavor name, or None for the server's default."
        )
    seen: dict[str, int] = {}
    for index, name in enumerate(flavor):
        if not isinstance(name, str) or not name.strip():
            raise HfJobsInputError(
                f"flavor[{index}] must be a hardware name such as 'cpu-basic' or 'a10g-small'; got {name!r}."
            )
        if (key := name.strip().lower()) in seen:
            raise HfJobsInputError(
                f"flavor[{index}] {name!r} repeats flavor[{seen[key]}]: list each flavor once (a job that waited "
                "too long on it would only wait again)."
            )
        seen[key] = index
    return list(flavor)


def next_flavor(flavors: Sequence[str], current: str | None) -> str | None:
    """The flavor after ``current`` in the fallback list; ``None`` when it is the last one, or not in the
    list (nothing says where to go on)."""
    if current is None:
        return None
    try:
        position = list(flavors).index(current)
    except ValueError:
        return None
    return flavors[position + 1] if position + 1 < len(flavors) else None


# ------------------------------------------------------------------------------------------------ watching
def gpu_utilization(sample: Any) -> tuple[float, int] | None:
    """The mean GPU utilization (percent) of one metrics sample and how many GPUs it read, exactly as the
    task's metrics summary reads them (:class:`~airflow_provider_hfjobs.metrics.MetricsAccumulator`);
    ``None`` when the sample has no GPU reading (``gpus: {}``, malformed)."""
    accumulator = MetricsAccumulator()
    accumulator.add(sample)
    summary = accumulator.summary()
    mean = summary["gpu_utilization_mean_pct"]
    return None if mean is None else (float(mean), int(summary["gpu_count"] or 1))


@dataclass(frozen=True)
class GuardStop:
    """Why a guard stopped a job: ``message`` is the log line, with the figures. ``limit`` and ``value``
    are in the guard's unit: US dollars for ``max_cost_usd``, seconds for the others. ``cost_usd`` is what
    the job had cost when stopped (an estimate, ``None`` without a price); ``next_flavor`` the flavor to
    resubmit on after ``max_scheduling_time`` (``None``: none left, or no fallback list)."""

    guard: GuardName
    message: str
    job_id: str | None
    flavor: str | None
    limit: float
    value: float
    cost_usd: float | None = None
    next_flavor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, for a trigger event and the ``job.stopped_by`` XCom."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GuardStop:
        """Back from :meth:`to_dict` (after a trigger event): only the known keys, checked."""
        if not isinstance(data, Mapping) or data.get("guard") not in GUARDS:
            raise HfJobsInputError(f"not a guard stop: {str(data)[:200]!r}.")
        limit, value = _finite(data.get("limit")), _finite(data.get("value"))
        if limit is None or value is None or not isinstance(data.get("message"), str):
            raise HfJobsInputError(
                f"not a guard stop (limit, value or message missing): {str(data)[:200]!r}."
            )
        text = {
            key: data.get(key) if isinstance(data.get(key), str) else None
            for key in ("job_id", "flavor", "next_flavor")
        }
        return cls(
            guard=data["guard"], message=data["message"], limit=limit, value=value,
            cost_usd=_finite(data.get("cost_usd")), **text,
        )  # fmt: skip


class GuardWatch:
    """The guards' state machine for one run: fed observations and the clock, it says when to stop.

    Call :meth:`observe_job` with each job status seen (first of all: until then no guard knows the
    stage), :meth:`observe_life` on each log line or progress report, :meth:`observe_metrics` on each
    metrics sample, and :meth:`check` after any of them (or when :meth:`next_check_in` says). A job with
    another id (resubmitted on the next flavor) starts every clock over.

    The clocks: the scheduling wait runs from the first moment the job was seen SCHEDULING, moved earlier
    by the server's ``durations.schedulingSecs`` (it counts from creation); the stall clock from the last
    sign of life, but never before the job was seen entering RUNNING (a job still SCHEDULING is not
    stalled: that is ``max_scheduling_time``'s business); an idle-GPU run from its first sample under the
    threshold to its latest one (evidence only: a sample without a GPU reading neither ends nor extends it;
    a gap over :data:`IDLE_GPU_MAX_GAP_SECONDS` starts it over). Metrics are not a sign of life: a hung
    process still has them.

    The time billed, when :meth:`check` is not given ``billed_seconds``: the last ``billed_seconds`` given,
    plus the time since while RUNNING; without any, the time since the job was first seen RUNNING, moved
    earlier by the server's ``durations.runningSecs`` (which count from its start), and zero before it ran.
    A caller that restarts (a new worker, a restarted triggerer) starts a new watch: its clocks start at its
    first observation, so a guard can only fire later than it would have, never earlier; the cost cap
    stays exact when the caller passes the job's own billed time.
    """

    def __init__(
        self,
        guardrails: Guardrails,
        *,
        job_id: str | None = None,
        flavor: str | None = None,
        flavors: Sequence[str] = (),
    ) -> None:
        self.guardrails = guardrails
        #: The fallback list (:func:`flavor_fallback`): names the next flavor in a scheduling stop.
        self.flavors = flavor_fallback(list(flavors)) if flavors else []
        self._reset(job_id, flavor)

    def _reset(self, job_id: str | None, flavor: str | None) -> None:
        self.job_id, self.flavor = job_id, flavor
        self.stage: JobStage | None = None
        #: The stop once a guard fired: :meth:`check` returns it again until the caller's cancel shows.
        self.stopped: GuardStop | None = None
        self._scheduling_since: float | None = None
        self._running_since: float | None = None  # the latest entry into RUNNING: the stall clock's floor
        self._billed_since: float | None = None  # the earliest estimate of when it started running
        self._life_at: float | None = None
        self._idle_since: float | None = None
        self._idle_last: float | None = None
        self._gpu_last: float | None = None
        self._gpu_count = 1
        self._price: float | None = None
        self._billed: tuple[float, float] | None = None  # (billed seconds the caller gave, when)

    # ------------------------------------------------------------------------------------ observations
    def observe_job(self, job: JobInfo, now: float) -> None:
        """A job status (create answer, inspect, poll): the stage and the server's durations."""
        if self.job_id is not None and job.id != self.job_id:
            self._reset(job.id, job.flavor)
        self.job_id, self.flavor = job.id, job.flavor or self.flavor
        previous, self.stage = self.stage, job.stage
        if job.stage is JobStage.SCHEDULING:
            if previous is not JobStage.SCHEDULING:
                self._scheduling_since = now
            # The server's wait counts from creation; once the job ran, a new wait is a retry of its own.
            waited = _non_negative(job.scheduling_secs) if self._billed_since is None else None
            if waited is not None and self._scheduling_since is not None:
                self._scheduling_since = min(self._scheduling_since, now - waited)
        elif job.stage is JobStage.RUNNING:
            if previous is not JobStage.RUNNING:
                self._running_since = now
            ran = _non_negative(job.running_secs)
            started = now - (ran or 0.0)
            self._billed_since = started if self._billed_since is None else min(self._billed_since, started)

    def observe_life(self, now: float) -> None:
        """A log line (or a progress report) arrived: the stall clock starts over."""
        self._life_at = now if self._life_at is None else max(self._life_at, now)

    def observe_metrics(self, sample: Mapping[str, Any], now: float) -> None:
        """One metrics sample, as the hook yields it: its GPU utilization feeds the idle-GPU run."""
        reading = gpu_utilization(sample)
        if reading is None:
            return  # no GPU reading: a gap, neither idle nor busy
        utilization, self._gpu_count = reading
        if self._gpu_last is not None and now - self._gpu_last > IDLE_GPU_MAX_GAP_SECONDS:
            self._idle_since = self._idle_last = None  # unknown meanwhile: the run starts over
        self._gpu_last = now
        if utilization < self.guardrails.idle_gpu_threshold:
            if self._idle_since is None:
                self._idle_since = now
            self._idle_last = now
        else:
            self._idle_since = self._idle_last = None

    # ------------------------------------------------------------------------------------------ checks
    def check(
        self, now: float, *, price_per_hour_usd: float | None = None, billed_seconds: float | None = None
    ) -> GuardStop | None:
        """The stop due at ``now``, if any (the first of :data:`GUARDS` that is); the same stop again on
        every later call. ``None`` for a job not seen yet or already ended. ``price_per_hour_usd`` (see
        :func:`price_per_hour`) is remembered for later checks; without one the cost cap cannot fire."""
        if self.stopped is not None:
            return self.stopped
        if not self.guardrails.active or self.stage is None or self.stage.is_terminal:
            return None
        if (price := _non_negative(price_per_hour_usd)) is not None:
            self._price = price
        billed = self._billed_at(now, billed_seconds, remember=True)
        for guard in GUARDS:
            if getattr(self.guardrails, guard) is not None and (
                stop := getattr(self, f"_{guard}")(now, billed)
            ):
                self.stopped = stop
                return stop
        return None

    def next_check_in(
        self, now: float, *, price_per_hour_usd: float | None = None, billed_seconds: float | None = None
    ) -> float | None:
        """Seconds until the earliest guard could fire (0: due now), so that a caller sleeps no longer than
        needed; ``None`` when none can until an observation changes something (no guard on, the job not
        seen yet or ended, or only guards of another stage on). Idle GPU time only grows with samples, so
        that guard's moment is when a sample could complete it. The price and billed time are those of
        :meth:`check` unless given."""
        if self.stopped is not None:
            return 0.0
        rails = self.guardrails
        if not rails.active or self.stage is None or self.stage.is_terminal:
            return None
        waits: list[float] = []
        if self.stage is JobStage.SCHEDULING and rails.max_scheduling_time is not None:
            waits.append(self._since(self._scheduling_since, now) - now + rails.max_scheduling_time)
        if self.stage is JobStage.RUNNING:
            if rails.stall_timeout is not None:
                waits.append(self._stall_since(now) + rails.stall_timeout - now)
            if rails.idle_gpu_timeout is not None:
                since = now if self._idle_since is None else self._idle_since
                waits.append(since + rails.idle_gpu_timeout - now)
            price = _non_negative(price_per_hour_usd)
            price = self._price if price is None else price
            if rails.max_cost_usd is not None and price:
                billed = self._billed_at(now, billed_seconds, remember=False)
                waits.append((rails.max_cost_usd - price * billed / 3600) / price * 3600)
        return max(0.0, min(waits)) if waits else None

    # ------------------------------------------------------------------------------------------ guards
    @staticmethod
    def _since(moment: float | None, now: float) -> float:
        return now if moment is None else moment

    def _stall_since(self, now: float) -> float:
        since = self._since(self._running_since, now)
        return since if self._life_at is None else max(since, self._life_at)

    def _billed_at(self, now: float, given: float | None, *, remember: bool) -> float:
        if (seconds := _non_negative(given)) is not None:
            if remember:
                self._billed = (seconds, now)
            return seconds
        if self._billed is not None:
            seconds, at = self._billed
            return seconds + max(0.0, now - at) if self.stage is JobStage.RUNNING else seconds
        return 0.0 if self._billed_since is None else max(0.0, now - self._billed_since)

    def _cost(self, seconds: float) -> float | None:
        return None if self._price is None else self._price * seconds / 3600

    @property
    def _job(self) -> str:
        return f"job {self.job_id}" if self.job_id else "the job"

    def _stop(self, guard: GuardName, message: str, limit: float, value: float, billed: float) -> GuardStop:
        following = next_flavor(self.flavors, self.flavor) if guard == "max_scheduling_time" else None
        return GuardStop(
            guard=guard, message=message, job_id=self.job_id, flavor=self.flavor, limit=limit, value=value,
            cost_usd=self._cost(billed), next_flavor=following,
        )  # fmt: skip

    def _max_cost_usd(self, now: float, billed: float) -> GuardStop | None:
        limit = self.guardrails.max_cost_usd
        cost = self._cost(billed)
        if limit is None or cost is None or cost + _COST_SLACK < limit:
            return None
        assert self._price is not None
        message = (
            f"max_cost_usd: {self._job} has cost about ${cost:.4f} ({self.flavor or 'its flavor'} at "
            f"{_usd(self._price)}/h for {format_duration(billed)}), the limit is {_usd(limit)}; cancelling it."
        )
        return self._stop("max_cost_usd", message, limit, cost, billed)

    def _idle_gpu_timeout(self, now: float, billed: float) -> GuardStop | None:
        limit = self.guardrails.idle_gpu_timeout
        if limit is None or self._idle_since is None or self._idle_last is None:
            return None
        idle = self._idle_last - self._idle_since
        if idle + _TIME_SLACK < limit:
            return None
        gpus = "the GPU of" if self._gpu_count == 1 else f"the {self._gpu_count} GPUs of"
        verb = "was" if self._gpu_count == 1 else "were on average"
        message = (
            f"idle_gpu_timeout: {gpus} {self._job} {verb} under {self.guardrails.idle_gpu_threshold:g}% for "
            f"{format_duration(idle)} (limit {format_duration(limit)})"
        )
        if (idle_cost := self._cost(idle)) is not None:
            message += f"; that idle time cost about {_usd(idle_cost)}"
        return self._stop("idle_gpu_timeout", message + "; cancelling it.", limit, idle, billed)

    def _stall_timeout(self, now: float, billed: float) -> GuardStop | None:
        limit = self.guardrails.stall_timeout
        if limit is None or self.stage is not JobStage.RUNNING:
            return None
        quiet = now - self._stall_since(now)
        if quiet + _TIME_SLACK < limit:
            return None
        heard = (
            self._life_at is not None
            and self._running_since is not None
            and self._life_at >= self._running_since
        )
        message = (
            f"stall_timeout: no log line from {self._job} for {format_duration(quiet)} while RUNNING "
            f"(limit {format_duration(limit)}){'' if heard else ', none since it started'}; cancelling it."
        )
        return self._stop("stall_timeout", message, limit, quiet, billed)

    def _max_scheduling_time(self, now: float, billed: float) -> GuardStop | None:
        limit = self.guardrails.max_scheduling_time
        if limit is None or self.stage is not JobStage.SCHEDULING:
            return None
        waited = now - self._since(self._scheduling_since, now)
        if waited + _TIME_SLACK < limit:
            return None
        following = next_flavor(self.flavors, self.flavor)
        then = f"cancelling it to try {following} next." if following else "cancelling it"
        if not following:
            then += " (no other flavor to try)." if self.flavors else "."
        message = (
            f"max_scheduling_time: {self._job} still SCHEDULING after {format_duration(waited)} (limit "
            f"{format_duration(limit)}) on {self.flavor or 'the default flavor'}; {then}"
        )
        return self._stop("max_scheduling_time", message, limit, waited, billed)
