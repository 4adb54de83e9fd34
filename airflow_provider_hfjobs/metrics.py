"""What a job's metrics stream says about its run, free of I/O: samples in, one summary out.

The Jobs API streams one sample a second while a job runs (``GET .../metrics``, the reference's §6):
``{"cpu_usage_pct", "cpu_millicores", "memory_used_bytes", "memory_total_bytes", "rx_bps", "tx_bps",
"gpus": {id: {"utilization", "memory_used_bytes", "memory_total_bytes"}}}``. A task that watched its job
answers "was the GPU I paid for busy?" with one line and one small dict, so the stream is folded as it
comes (running sums and peaks, constant memory however long the job runs) and only numbers leave: the
dict travels in a trigger event and an XCom, both stored and logged by Airflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from airflow_provider_hfjobs.jobs import DEFAULT_FLAVOR

#: A mean GPU utilization below this (percent) on a GPU flavor earns a warning: the GPU mostly waited.
IDLE_GPU_THRESHOLD_PCT = 10.0
#: GPUs read from one sample at most: the largest flavor has 8; a runaway ``gpus`` map costs nothing.
MAX_GPUS_PER_SAMPLE = 64

#: The summary's keys, each a number or ``None`` (not measured). ``samples``/``gpu_samples``/``gpu_count``
#: are counts; the rest are percents, bytes, or the server's ``*_bps`` rates.
SUMMARY_KEYS = (
    "samples", "gpu_samples", "gpu_count",
    "gpu_utilization_mean_pct", "gpu_utilization_peak_pct",
    "gpu_memory_used_peak_bytes", "gpu_memory_total_bytes",
    "cpu_usage_mean_pct", "cpu_usage_peak_pct",
    "memory_used_peak_bytes", "memory_total_bytes",
    "rx_bps_mean", "tx_bps_mean",
)  # fmt: skip
_COUNT_KEYS = frozenset({"samples", "gpu_samples", "gpu_count"})


def flavor_has_gpu(flavor: str | None) -> bool:
    """Every Hub flavor but ``cpu-*`` carries an accelerator; no flavor means the Hub's default, a CPU.

    Decided by name so that metrics off costs no request (the hardware list is not needed to know it)."""
    name = (flavor or DEFAULT_FLAVOR).strip().lower()
    return bool(name) and not name.startswith("cpu")


def _number(value: Any) -> float | None:
    """A finite, non-negative reading, or ``None``: a sample is informational, never trusted to be clean."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


class _Mean:
    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, value: float | None) -> None:
        if value is not None:
            self.total += value
            self.count += 1

    def value(self) -> float | None:
        return self.total / self.count if self.count else None


def _peak(current: float | None, value: float | None) -> float | None:
    if value is None:
        return current
    return value if current is None else max(current, value)


class MetricsAccumulator:
    """Folds samples into the summary as they arrive: constant memory, and a malformed sample (or a
    missing field) only leaves that field unmeasured."""

    def __init__(self) -> None:
        self.samples = 0
        self.gpu_samples = 0
        self.gpu_count = 0
        self._gpu_utilization = _Mean()
        self._gpu_utilization_peak: float | None = None
        self._gpu_memory_used_peak: float | None = None
        self._gpu_memory_total: float | None = None
        self._cpu = _Mean()
        self._cpu_peak: float | None = None
        self._memory_used_peak: float | None = None
        self._memory_total: float | None = None
        self._rx = _Mean()
        self._tx = _Mean()

    def add(self, sample: Any) -> None:
        if not isinstance(sample, Mapping):
            return
        self.samples += 1
        cpu = _number(sample.get("cpu_usage_pct"))
        self._cpu.add(cpu)
        self._cpu_peak = _peak(self._cpu_peak, cpu)
        self._memory_used_peak = _peak(self._memory_used_peak, _number(sample.get("memory_used_bytes")))
        self._memory_total = _peak(self._memory_total, _number(sample.get("memory_total_bytes")))
        self._rx.add(_number(sample.get("rx_bps")))
        self._tx.add(_number(sample.get("tx_bps")))
        self._add_gpus(sample.get("gpus"))

    def _add_gpus(self, gpus: Any) -> None:
        if not isinstance(gpus, Mapping) or not gpus:
            return
        used = total = 0.0
        seen = 0
        for _, gpu in zip(range(MAX_GPUS_PER_SAMPLE), gpus.values(), strict=False):
            if not isinstance(gpu, Mapping):
                continue
            utilization = _number(gpu.get("utilization"))
            self._gpu_utilization.add(utilization)
            self._gpu_utilization_peak = _peak(self._gpu_utilization_peak, utilization)
            used += _number(gpu.get("memory_used_bytes")) or 0.0
            total += _number(gpu.get("memory_total_bytes")) or 0.0
            seen += 1
        if not seen:
            return
        # GPU memory is the sample's sum over its GPUs: "how much of what I rented was filled".
        self.gpu_samples += 1
        self.gpu_count = max(self.gpu_count, seen)
        self._gpu_memory_used_peak = _peak(self._gpu_memory_used_peak, used)
        self._gpu_memory_total = _peak(self._gpu_memory_total, total or None)

    def summary(self) -> dict[str, float | int | None]:
        """The summary: plain numbers (``None``: not measured), for a trigger event and the ``job`` XCom."""
        rounded = {
            "samples": self.samples,
            "gpu_samples": self.gpu_samples,
            "gpu_count": self.gpu_count,
            "gpu_utilization_mean_pct": self._gpu_utilization.value(),
            "gpu_utilization_peak_pct": self._gpu_utilization_peak,
            "gpu_memory_used_peak_bytes": self._gpu_memory_used_peak,
            "gpu_memory_total_bytes": self._gpu_memory_total,
            "cpu_usage_mean_pct": self._cpu.value(),
            "cpu_usage_peak_pct": self._cpu_peak,
            "memory_used_peak_bytes": self._memory_used_peak,
            "memory_total_bytes": self._memory_total,
            "rx_bps_mean": self._rx.value(),
            "tx_bps_mean": self._tx.value(),
        }
        return {key: _tidy(key, value) for key, value in rounded.items()}


def _tidy(key: str, value: float | int | None) -> float | int | None:
    """Counts and bytes as integers, percents and rates to 0.1: small in the event, exact enough."""
    if value is None:
        return None
    if key in _COUNT_KEYS or key.endswith("_bytes"):
        return int(value)
    return round(float(value), 1)


def summary_from(value: Any) -> dict[str, float | int | None] | None:
    """A summary that came through a trigger event (stored in, and read back from, the metadata DB): only
    the known keys, each a finite number or ``None``. Anything else is dropped, so no text rides along."""
    if not isinstance(value, Mapping):
        return None
    summary = {key: _tidy(key, _number(value.get(key))) for key in SUMMARY_KEYS}
    return summary if summary["samples"] is not None else None


# ---------------------------------------------------------------------------------------- what is said
def _percent(value: float) -> str:
    return f"{value:.0f}%"


def _gigabytes(used: float | None, total: float | None) -> str:
    if total:
        return f"{(used or 0) / 1e9:.1f}/{total / 1e9:.1f} GB"
    return f"{(used or 0) / 1e9:.1f} GB"


def _rate(bps: float) -> str:
    """The server's ``*_bps`` as ``hf jobs stats`` shows it (decimal prefixes, "bps")."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if bps >= factor:
            return f"{bps / factor:.1f} {prefix}bps"
    return f"{bps:.0f} bps"


def _usd(amount: float) -> str:
    """Dollars to the cent, and a small amount to two significant digits ($0.21, $0.032, $0.0037)."""
    if amount >= 1 or amount <= 0:
        return f"${amount:.2f}"
    decimals = min(6, max(2, 1 - math.floor(math.log10(amount))))
    return f"${amount:.{decimals}f}"


#: The Hub's metrics stream sends a sample a second, from a connection opened once the job runs: a job
#: that ran less than this may end before the first one, so that no sample means nothing (and is not said).
NO_SAMPLE_NOTICE_SECONDS = 10.0


def no_sample_means_something(summary: Mapping[str, Any], ran_seconds: float | None) -> bool:
    """Is "no metrics sample arrived" worth an info line: no sample, and a job that ran long enough
    (:data:`NO_SAMPLE_NOTICE_SECONDS`) for its stream to send several. Not for a job that never ran."""
    if summary.get("samples"):
        return False
    return ran_seconds is not None and ran_seconds >= NO_SAMPLE_NOTICE_SECONDS


def summary_line(job_id: str, summary: Mapping[str, Any], *, gpu_flavor: bool) -> str:
    """The one task-log line: what was measured, and only that (a stream that sent nothing says so)."""
    samples = int(summary.get("samples") or 0)
    if not samples:
        return (
            f"Hugging Face job {job_id}: no metrics sample arrived while it ran (the job ended before its "
            "metrics stream sent one, or the stream could not be read)."
        )
    parts = []
    if summary.get("gpu_samples"):
        gpu = "GPU" if (summary.get("gpu_count") or 1) == 1 else f"{summary['gpu_count']} GPUs"
        if summary.get("gpu_utilization_mean_pct") is not None:
            parts.append(
                f"{gpu} {_percent(summary['gpu_utilization_mean_pct'])} mean / "
                f"{_percent(summary.get('gpu_utilization_peak_pct') or 0)} peak"
            )
        if summary.get("gpu_memory_used_peak_bytes") is not None:
            parts.append(
                "GPU memory "
                f"{_gigabytes(summary['gpu_memory_used_peak_bytes'], summary.get('gpu_memory_total_bytes'))} peak"
            )
    if summary.get("cpu_usage_mean_pct") is not None:
        parts.append(
            f"CPU {_percent(summary['cpu_usage_mean_pct'])} mean / "
            f"{_percent(summary.get('cpu_usage_peak_pct') or 0)} peak"
        )
    if summary.get("memory_used_peak_bytes") is not None:
        parts.append(
            f"memory {_gigabytes(summary['memory_used_peak_bytes'], summary.get('memory_total_bytes'))} peak"
        )
    if summary.get("rx_bps_mean") is not None or summary.get("tx_bps_mean") is not None:
        parts.append(
            f"network {_rate(summary.get('rx_bps_mean') or 0)} in / {_rate(summary.get('tx_bps_mean') or 0)} out"
        )
    text = f"Hugging Face job {job_id} used: {', '.join(parts) or 'nothing measurable'}"
    text += f" over {samples} sample{'s' if samples != 1 else ''}"
    if gpu_flavor and not summary.get("gpu_samples"):
        text += " (no GPU reading in them)"
    return text + "."


def idle_gpu_warning(
    job_id: str, flavor: str | None, summary: Mapping[str, Any], cost_usd: float | None
) -> str | None:
    """A warning when a GPU flavor's GPU mostly waited (mean utilization under
    :data:`IDLE_GPU_THRESHOLD_PCT`), with what that idle time cost; ``None`` otherwise, and always when
    no GPU reading exists (nothing says the GPU was idle)."""
    mean = summary.get("gpu_utilization_mean_pct")
    if not flavor_has_gpu(flavor) or not summary.get("gpu_samples") or mean is None:
        return None
    if mean >= IDLE_GPU_THRESHOLD_PCT:
        return None
    idle = max(0.0, min(1.0, 1 - mean / 100))
    text = (
        f"Hugging Face job {job_id} barely used its GPU ({_percent(mean)} mean utilization): the {flavor} was "
        f"idle {_percent(idle * 100)} of the time"
    )
    if cost_usd is not None:
        text += f": about {_usd(cost_usd * idle)} of {_usd(cost_usd)} paid for nothing"
    return text + ". A smaller flavor, or a cpu-* one, may do as well; or check that the job uses the GPU."
