"""Reports from inside a job (progress, metrics, assets, checks) through its log: the one rule, sans-IO.

A job tells its task how it is doing by printing *report lines*, one JSON object after a fixed prefix::

    ::hfjobs-report::{"kind":"progress","done":3,"total":10,"unit":"epoch"}
    ::hfjobs-report::{"kind":"metric","name":"loss","value":0.25,"step":3}
    ::hfjobs-report::{"kind":"asset","uri":"hf://buckets/alice/out/part-0.parquet","metadata":{"rows":10}}
    ::hfjobs-report::{"kind":"check","name":"no_empty_rows","passed":true}

In a ``@task.hf_job`` function or an ``HfUvJobOperator`` script, ``from hfjobs_report import
report_progress, report_metric, report_asset, report_check`` prints them (:func:`helper_source`, generated
from the constants here, as :mod:`.results` generates the function runner); any other job prints the lines
itself. The task (on a worker, or in the trigger: both use :class:`ReportLog`) never shows a report line
raw: progress becomes one line with rate and ETA, at most one per :data:`PROGRESS_INTERVAL` seconds plus
the first and the last; a metric, asset or check one short line each; the last of each kind goes to the
``hf_job_reports`` XCom. Reports travel in the job's log, so each also counts as life for
``stall_timeout``.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

#: What starts every report line. Lines starting so are never shown raw in a task log.
REPORT_PREFIX = "::hfjobs-report::"
#: The job's environment variable the provider sets to ``"1"``: the helper prints only then (a no-op
#: outside a job started by Airflow).
REPORTS_ENV = "HFJOBS_REPORTS"
#: The module a ``@task.hf_job`` function or a UV script imports the helper from.
HELPER_MODULE = "hfjobs_report"
#: A UV job's environment variable carrying the helper's source (base64); the job's command writes it
#: next to the script as ``hfjobs_report.py`` (:func:`airflow_provider_hfjobs.jobs.uv.build_uv_command`).
HELPER_ENV = "HFJOBS_REPORT_HELPER"
#: The XCom key of the last reports of each kind.
REPORTS_XCOM_KEY = "hf_job_reports"
#: Seconds between two progress lines in the task log (the first and the last are always shown).
PROGRESS_INTERVAL = 10.0
KINDS = ("progress", "metric", "asset", "check", "output", "checkpoint")
#: Longest report line read (longer: malformed); what the helper prints stays far below it.
MAX_LINE_CHARS = 4096
#: Longest metric or check name, unit, asset URI and metadata (as JSON; a non-ASCII character counts as
#: its ``\\uXXXX`` escape), so that what is kept, and carried in a trigger event, stays small.
MAX_NAME_CHARS = 100
MAX_UNIT_CHARS = 40
MAX_URI_CHARS = 500
MAX_METADATA_CHARS = 256
#: Longest path of an ``output`` (relative to the outputs directory) or a ``checkpoint``.
MAX_PATH_CHARS = 300
#: Largest integer kept exactly (as JSON numbers are read back).
MAX_INTEGER = 2**53
#: How many metric names, assets and check names are kept; further new ones are counted as ``dropped``.
MAX_METRICS = 50
MAX_ASSETS = 20
MAX_CHECKS = 20
#: How many ``output`` files are kept (the manifest of :mod:`airflow_provider_hfjobs.outputs`); further
#: ones are counted as ``dropped`` (the mount of an ``inputs`` manifest still holds all of them).
MAX_OUTPUTS = 30
#: The job's environment (:mod:`airflow_provider_hfjobs.outputs` sets it): where the try's outputs are
#: mounted, the checkpoint directory, whether this try should resume and the last checkpoint reported.
OUTPUTS_ENV = "HFJOBS_OUTPUTS_DIR"
CHECKPOINT_ENV = "HFJOBS_CHECKPOINT_DIR"
RESUME_ENV = "HFJOBS_RESUME"
LAST_CHECKPOINT_ENV = "HFJOBS_LAST_CHECKPOINT"
LAST_CHECKPOINT_STEP_ENV = "HFJOBS_LAST_CHECKPOINT_STEP"
#: Files the provider writes itself: the marker that makes a bucket prefix exist, and the last checkpoint
#: as the job reported it (in the checkpoint directory, so any later try reads it, on any Airflow).
PREFIX_MARKER = ".hfjobs-prefix"
CHECKPOINT_RECORD = ".hfjobs-checkpoint.json"
#: Bound of the JSON of what is kept (the XCom, and the ``reports`` of a trigger event), from the limits
#: above: what the worst case adds up to, with margin (``tests/unit/test_reports.py`` builds it).
MAX_SUMMARY_CHARS = 56_000


def validate_report(report: Any) -> dict[str, Any]:
    """One report as the rules allow it, with only the known fields; a ``ValueError`` says what is wrong.

    Its source is also the job-side helper's (:func:`helper_source`): the job refuses what the task would."""
    import json
    import math
    import numbers

    if not isinstance(report, dict):
        raise ValueError(f"a report is a JSON object; got {type(report).__name__}")
    kind = report.get("kind")
    if kind not in KINDS:
        raise ValueError(f"report kind must be one of {', '.join(KINDS)}; got {kind!r:.40}")

    def encoded_length(value: Any) -> int:
        return len(json.dumps(value, allow_nan=False, separators=(",", ":")))

    def text(field: str, limit: int) -> str:
        value = report.get(field)
        if not isinstance(value, str) or not value.strip() or not value.isprintable():
            raise ValueError(
                f"{kind} {field} must be a non-empty string of printable characters; got {value!r:.80}"
            )
        if encoded_length(value) > limit + 2:
            raise ValueError(
                f"{kind} {field} is over {limit} characters (non-ASCII ones count as 6): {value!r:.80}"
            )
        return value

    def number(field: str, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{kind} {field} must be a number; got {type(value).__name__} {value!r:.40}")
        if isinstance(value, numbers.Integral):
            if abs(int(value)) > MAX_INTEGER:
                raise ValueError(f"{kind} {field} must be at most {MAX_INTEGER} in size; got {value!r:.40}")
            return int(value)
        if not math.isfinite(float(value)):
            raise ValueError(f"{kind} {field} must be a finite number; got {value!r}")
        return float(value)

    def metadata() -> dict[str, Any] | None:
        value = report.get("metadata")
        if value is None:
            return None
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise ValueError(f"{kind} metadata must be a dict with string keys; got {type(value).__name__}")
        try:
            length = encoded_length(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{kind} metadata must hold JSON values only ({error})") from None
        if length > MAX_METADATA_CHARS:
            raise ValueError(
                f"{kind} metadata is {length} characters of JSON, over {MAX_METADATA_CHARS}: write the details "
                "to a file and report its path"
            )
        return json.loads(json.dumps(value))

    if kind == "progress":
        done, total = number("done", report.get("done")), number("total", report.get("total"))
        if total <= 0:
            raise ValueError(f"progress total must be above 0; got {total!r}")
        if not 0 <= done <= total:
            raise ValueError(f"progress done must be between 0 and total ({total!r}); got {done!r}")
        out: dict[str, Any] = {
            "kind": kind,
            "done": done,
            "total": total,
            "unit": text("unit", MAX_UNIT_CHARS),
        }
        if report.get("t") is not None:
            out["t"] = float(number("t", report["t"]))
        return out
    if kind == "metric":
        out = {
            "kind": kind,
            "name": text("name", MAX_NAME_CHARS),
            "value": number("value", report.get("value")),
        }
        step = report.get("step")
        if step is not None:
            if (
                isinstance(step, bool)
                or not isinstance(step, numbers.Integral)
                or not 0 <= int(step) <= MAX_INTEGER
            ):
                raise ValueError(f"metric step must be a whole number from 0 up, or None; got {step!r:.40}")
            out["step"] = int(step)
        return out
    if kind in ("output", "checkpoint"):
        path = text("path", MAX_PATH_CHARS)
        if kind == "output" and (path.startswith("/") or ".." in path.split("/")):
            raise ValueError(f"output path must be relative to the outputs directory; got {path!r:.80}")
        out = {"kind": kind, "path": path}
        field = "size" if kind == "output" else "step"
        value = report.get(field)
        if value is not None or kind == "output":
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Integral)
                or not 0 <= int(value) <= MAX_INTEGER
            ):
                raise ValueError(f"{kind} {field} must be a whole number from 0 up; got {value!r:.40}")
            out[field] = int(value)
        digest = report.get("sha256")
        if kind == "output" and digest is not None:
            if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
                raise ValueError(f"output sha256 must be 64 lower-case hex digits; got {digest!r:.80}")
            out["sha256"] = digest
        return out
    if kind == "asset":
        out = {"kind": kind, "uri": text("uri", MAX_URI_CHARS)}
    else:
        passed = report.get("passed")
        if type(passed).__name__ not in ("bool", "bool_"):  # numpy's bool_ too
            raise ValueError(f"check passed must be True or False; got {passed!r:.40}")
        out = {"kind": kind, "name": text("name", MAX_NAME_CHARS), "passed": bool(passed)}
    found = metadata()
    if found is not None:
        out["metadata"] = found
    return out


# ------------------------------------------------------------------------------------ the job's helper
_HELPER = '''"""Reports from inside a Hugging Face job to its Airflow task (airflow-provider-hfjobs).

    from hfjobs_report import report_progress, report_metric, report_asset, report_check

Each call prints one line (@@REPORT_PREFIX@@ and JSON) that the task reads and never shows raw. Outside a
job started by Airflow (@@REPORTS_ENV@@ is not "1") nothing is printed; bad input raises ValueError either way.
"""

from __future__ import annotations

import json as _json
import os as _os
import sys as _sys
import time as _time

REPORT_PREFIX = @@REPORT_PREFIX@@
REPORTS_ENV = @@REPORTS_ENV@@
KINDS = @@KINDS@@
MAX_NAME_CHARS = @@MAX_NAME_CHARS@@
MAX_UNIT_CHARS = @@MAX_UNIT_CHARS@@
MAX_URI_CHARS = @@MAX_URI_CHARS@@
MAX_METADATA_CHARS = @@MAX_METADATA_CHARS@@
MAX_INTEGER = @@MAX_INTEGER@@
MAX_PATH_CHARS = @@MAX_PATH_CHARS@@
OUTPUTS_ENV = @@OUTPUTS_ENV@@
CHECKPOINT_ENV = @@CHECKPOINT_ENV@@
LAST_CHECKPOINT_ENV = @@LAST_CHECKPOINT_ENV@@
LAST_CHECKPOINT_STEP_ENV = @@LAST_CHECKPOINT_STEP_ENV@@
PREFIX_MARKER = @@PREFIX_MARKER@@
CHECKPOINT_RECORD = @@CHECKPOINT_RECORD@@


@@VALIDATE@@

def _emit(report):
    line = REPORT_PREFIX + _json.dumps(validate_report(report), separators=(",", ":"), allow_nan=False)
    if _os.environ.get(REPORTS_ENV) == "1":
        _sys.stdout.write(line + "\\n")
        _sys.stdout.flush()


def report_progress(done, total, unit="step"):
    """done of total units (0 <= done <= total, total > 0): one progress line, with rate and ETA, in the task log."""
    _emit({"kind": "progress", "done": done, "total": total, "unit": unit, "t": round(_time.time(), 3)})


def report_metric(name, value, step=None):
    """A finite number under a name (the last per name reaches the task's XCom), at an optional step."""
    _emit({"kind": "metric", "name": name, "value": value, "step": step})


def report_asset(uri, metadata=None):
    """Something the job produced (a path or URI), with optional JSON metadata."""
    _emit({"kind": "asset", "uri": uri, "metadata": metadata})


def report_check(name, passed, metadata=None):
    """A data-quality check that passed (True) or failed (False), with optional JSON metadata."""
    _emit({"kind": "check", "name": name, "passed": passed, "metadata": metadata})


def _sha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def output_entry(path, directory=None):
    """The manifest entry (path relative to the outputs directory, size, sha256) of a file under it, or None."""
    root = directory or _os.environ.get(OUTPUTS_ENV)
    if not root or not isinstance(path, str) or not path:
        return None
    base = _os.path.realpath(root)
    full = _os.path.realpath(path if _os.path.isabs(path) else _os.path.join(base, path))
    if not full.startswith(base.rstrip("/") + "/") or not _os.path.isfile(full):
        return None
    return {"path": _os.path.relpath(full, base), "size": _os.path.getsize(full), "sha256": _sha256(full)}


def report_outputs(directory=None):
    """One output line (path, size, sha256) per file under the outputs directory (@@OUTPUTS_ENV@@): the
    task's manifest. Called for you at the end of a @task.hf_job function or a UV script; returns the entries."""
    root = directory or _os.environ.get(OUTPUTS_ENV)
    entries = []
    if not root or not _os.path.isdir(root):
        return entries
    for folder, folders, names in _os.walk(root):
        folders.sort()
        for name in sorted(names):
            full = _os.path.join(folder, name)
            if _os.path.islink(full) or not _os.path.isfile(full):
                continue
            relative = _os.path.relpath(full, root)
            if relative == PREFIX_MARKER:
                continue
            entry = {"path": relative, "size": _os.path.getsize(full), "sha256": _sha256(full)}
            try:
                _emit({"kind": "output", **entry})
            except ValueError as error:  # a name the manifest cannot carry: the file is still in the bucket
                _sys.stderr.write(f"hfjobs_report: {relative!r} is left out of the outputs manifest: {error}\\n")
                continue
            entries.append(entry)
    return entries


def report_checkpoint(path, step=None):
    """A checkpoint the job saved (a path, an optional whole step): the task keeps the last one, and a later
    try of the task gets it from last_checkpoint() (it is also written to the checkpoint directory)."""
    report = {"kind": "checkpoint", "path": path, "step": step}
    validate_report(report)
    directory = _os.environ.get(CHECKPOINT_ENV)
    if directory and _os.path.isdir(directory):
        with open(_os.path.join(directory, CHECKPOINT_RECORD), "w", encoding="utf-8") as handle:
            _json.dump({"path": path, "step": step}, handle)
    _emit(report)


def last_checkpoint():
    """The last checkpoint an earlier try (or an earlier attempt of this job) reported, {"path", "step"}, or None:
    read from the checkpoint directory, else from what the task knew (@@LAST_CHECKPOINT_ENV@@)."""
    directory = _os.environ.get(CHECKPOINT_ENV)
    if directory:
        try:
            with open(_os.path.join(directory, CHECKPOINT_RECORD), encoding="utf-8") as handle:
                found = _json.load(handle)
            if isinstance(found, dict) and isinstance(found.get("path"), str):
                step = found.get("step")
                return {"path": found["path"], "step": step if isinstance(step, int) else None}
        except (OSError, ValueError):
            pass
    path = _os.environ.get(LAST_CHECKPOINT_ENV)
    if not path:
        return None
    step = _os.environ.get(LAST_CHECKPOINT_STEP_ENV, "")
    return {"path": path, "step": int(step) if step.isdigit() else None}


if __name__ == "__main__" and _sys.argv[1:] == ["--outputs"]:  # run after a UV script, or by an image job
    report_outputs()
'''


@functools.cache
def helper_source() -> str:
    """The ``hfjobs_report`` module the job imports: :func:`validate_report` and four functions that print
    report lines, with this module's constants written in."""
    constants = {
        "REPORT_PREFIX": repr(REPORT_PREFIX),
        "REPORTS_ENV": repr(REPORTS_ENV),
        "KINDS": repr(KINDS),
        "MAX_NAME_CHARS": repr(MAX_NAME_CHARS),
        "MAX_UNIT_CHARS": repr(MAX_UNIT_CHARS),
        "MAX_URI_CHARS": repr(MAX_URI_CHARS),
        "MAX_METADATA_CHARS": repr(MAX_METADATA_CHARS),
        "MAX_INTEGER": repr(MAX_INTEGER),
        "MAX_PATH_CHARS": repr(MAX_PATH_CHARS),
        "OUTPUTS_ENV": repr(OUTPUTS_ENV),
        "CHECKPOINT_ENV": repr(CHECKPOINT_ENV),
        "LAST_CHECKPOINT_ENV": repr(LAST_CHECKPOINT_ENV),
        "LAST_CHECKPOINT_STEP_ENV": repr(LAST_CHECKPOINT_STEP_ENV),
        "PREFIX_MARKER": repr(PREFIX_MARKER),
        "CHECKPOINT_RECORD": repr(CHECKPOINT_RECORD),
        "VALIDATE": inspect.getsource(validate_report),
    }
    return re.sub(r"@@([A-Z_]+)@@", lambda match: constants[match.group(1)], _HELPER)


@functools.cache
def helper_encoded() -> str:
    """:func:`helper_source` as it travels in a UV job's :data:`HELPER_ENV`."""
    return base64.b64encode(helper_source().encode("utf-8")).decode("ascii")


def _load_helper() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": HELPER_MODULE}
    exec(compile(helper_source(), f"{HELPER_MODULE}.py", "exec"), namespace)  # our own source
    return namespace


_helper = _load_helper()
#: The job-side functions, importable here too (a function tested outside a job): no-ops unless the
#: environment has ``HFJOBS_REPORTS=1``.
report_progress: Callable[..., None] = _helper["report_progress"]
report_metric: Callable[..., None] = _helper["report_metric"]
report_asset: Callable[..., None] = _helper["report_asset"]
report_check: Callable[..., None] = _helper["report_check"]
report_outputs: Callable[..., list[dict[str, Any]]] = _helper["report_outputs"]
report_checkpoint: Callable[..., None] = _helper["report_checkpoint"]
last_checkpoint: Callable[[], dict[str, Any] | None] = _helper["last_checkpoint"]
output_entry: Callable[..., dict[str, Any] | None] = _helper["output_entry"]


# ----------------------------------------------------------------------------------------- the task side
def is_report_line(text: str) -> bool:
    """Is this log line a report (never shown raw in a task log)?"""
    return isinstance(text, str) and text.startswith(REPORT_PREFIX)


def format_report_line(report: Mapping[str, Any]) -> str:
    """The line a job prints for ``report`` (checked as the helper checks it)."""
    return REPORT_PREFIX + json.dumps(validate_report(dict(report)), separators=(",", ":"), allow_nan=False)


def parse_report_line(text: str) -> dict[str, Any]:
    """The report a line carries; a ``ValueError`` says why it is malformed."""
    if len(text) > MAX_LINE_CHARS:
        raise ValueError(f"the line is {len(text)} characters, over {MAX_LINE_CHARS}")
    try:
        report = json.loads(text[len(REPORT_PREFIX) :])
    except ValueError as error:
        raise ValueError(f"what follows {REPORT_PREFIX} is not JSON ({error})") from None
    return validate_report(report)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def rate_text(rate: float, unit: str) -> str:
    """``"1.5 epoch/s"``, or per minute or per hour when that reads better."""
    for per, scale in (("s", 1), ("min", 60), ("h", 3600)):
        if rate * scale >= 0.1 or per == "h":
            return f"{rate * scale:.3g} {unit}/{per}"
    raise AssertionError("unreachable")  # pragma: no cover


def progress_text(progress: Mapping[str, Any]) -> str:
    """``"Progress: 30/100 epoch (30%), 1.5 epoch/s, ETA 47s"`` (rate and ETA once they are known)."""
    from airflow_provider_hfjobs.guardrails import format_duration  # (guardrails imports the jobs package)

    done, total, unit = progress["done"], progress["total"], progress["unit"]
    text = f"Progress: {_number(done)}/{_number(total)} {unit} ({math.floor(done / total * 100)}%)"
    rate = progress.get("rate_per_second")
    if rate:
        text += f", {rate_text(rate, unit)}"
        if done < total:
            text += f", ETA {format_duration((total - done) / rate, approximate=True)}"
    return text


def report_text(report: Mapping[str, Any]) -> tuple[int, str]:
    """The task log's line (level, text) for a metric, asset or check."""
    extra = f" {json.dumps(report['metadata'])}" if report.get("metadata") else ""
    if report["kind"] == "metric":
        step = f" (step {report['step']})" if report.get("step") is not None else ""
        return logging.INFO, f"Metric {report['name']} = {_number(report['value'])}{step}"
    if report["kind"] == "asset":
        return logging.INFO, f"Asset: {report['uri']}{extra}"
    if report["kind"] == "output":
        digest = f", sha256 {report['sha256'][:12]}" if report.get("sha256") else ""
        return logging.INFO, f"Output: {report['path']} ({report['size']} bytes{digest})"
    if report["kind"] == "checkpoint":
        step = f" (step {report['step']})" if report.get("step") is not None else ""
        return logging.INFO, f"Checkpoint: {report['path']}{step}"
    if report["passed"]:
        return logging.INFO, f"Check {report['name']}: passed{extra}"
    return logging.WARNING, f"Check {report['name']}: FAILED{extra}"


def write_lines(log: Any, shown: Iterable[tuple[int, str]], mask: Callable[[str], Any] | None = None) -> None:
    """Write :meth:`ReportLog.lines` pairs to a logger (``info`` or ``warning``), each through ``mask``."""
    for level, text in shown:
        (log.warning if level >= logging.WARNING else log.info)(
            "%s", text if mask is None else mask(text), stacklevel=2
        )


class ReportLog:
    """A job's reports as the task reads them (on a worker, or in the trigger): what to show in the task
    log, paced, and the last of each kind for XCom. Sans-IO: it returns ``(logging level, text)`` pairs.

    ``clock``: seconds (monotonic), for the pace of progress lines and, for lines without the job's own
    time ``t``, for the rate."""

    def __init__(
        self,
        job_id: str | None = None,
        *,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id, self.interval, self.clock = job_id, float(interval), clock
        self.progress: dict[str, Any] | None = None
        self.metrics: dict[str, dict[str, Any]] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self.checks: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.checkpoint: dict[str, Any] | None = None
        self.malformed = 0
        self.dropped = 0
        self._baseline: tuple[float, float, bool] | None = None  # (done, time, the job's own time?)
        self._shown_at: float | None = None
        self._progress_shown = True

    @property
    def seen(self) -> bool:
        """Was any report line read (even a malformed one)?"""
        return bool(
            self.progress or self.metrics or self.assets or self.checks or self.outputs or self.checkpoint
            or self.malformed or self.dropped
        )  # fmt: skip

    def lines(self, texts: Iterable[str]) -> Iterator[tuple[int, str]]:
        """What the task log shows for these job log lines, in order: plain lines as they are, a report's
        line if it is due, nothing for a ``@task.hf_job`` result line (read at the end)."""
        from airflow_provider_hfjobs.results import is_result_line

        for text in texts:
            if is_report_line(text):
                yield from self.feed(text)
            elif not is_result_line(text):
                yield logging.INFO, text

    def feed(self, text: str) -> list[tuple[int, str]]:
        """One report line: kept, and what to show for it (a malformed one: a warning, the first time)."""
        try:
            report = parse_report_line(text)
        except ValueError as error:
            self.malformed += 1
            if self.malformed > 1:
                return []
            return [
                (
                    logging.WARNING,
                    f"Ignoring a malformed report line of job {self.job_id}: {error}. Further malformed report "
                    f"lines are only counted (malformed in the {REPORTS_XCOM_KEY} XCom).",
                )
            ]
        if report["kind"] == "progress":
            return self._progress(report)
        if report["kind"] == "checkpoint":
            self.checkpoint = {name: value for name, value in report.items() if name != "kind"}
            return [report_text(report)]
        key = report.get("name") or report.get("uri") or report["path"]
        kept, limit = {"metric": (self.metrics, MAX_METRICS), "asset": (self.assets, MAX_ASSETS),
                       "check": (self.checks, MAX_CHECKS),
                       "output": (self.outputs, MAX_OUTPUTS)}[report["kind"]]  # fmt: skip
        shown = [report_text(report)]
        if key in kept or len(kept) < limit:
            kept.pop(key, None)  # the latest last (assets in the order they were last reported)
            kept[key] = {name: value for name, value in report.items() if name not in ("kind", "name")}
        else:
            self.dropped += 1
            if self.dropped == 1:
                shown.append(
                    (logging.WARNING, f"Job {self.job_id} reported more than {limit} {report['kind']} names: "
                     f"further new ones are shown, not kept in the {REPORTS_XCOM_KEY} XCom.")
                )  # fmt: skip
        return shown

    def _progress(self, report: dict[str, Any]) -> list[tuple[int, str]]:
        now = self.clock()
        done, total, unit = report["done"], report["total"], report["unit"]
        stamp = report.get("t")
        at, own = (stamp, True) if stamp is not None else (now, False)
        last = self.progress
        if (
            self._baseline is None
            or last is None
            or (last["total"], last["unit"]) != (total, unit)
            or done < last["done"]
        ):
            self._baseline, self._shown_at = (done, at, own), None  # a first report, or a new phase
        progress: dict[str, Any] = {
            "done": done,
            "total": total,
            "unit": unit,
            "percent": round(done / total * 100, 2),
        }
        assert self._baseline is not None
        first_done, first_at, first_own = self._baseline
        if own == first_own and at > first_at and done > first_done:
            rate = (done - first_done) / (at - first_at)
            progress["rate_per_second"] = round(rate, 6)
            if done < total:
                progress["eta_seconds"] = round((total - done) / rate, 1)
        self.progress = progress
        if self._shown_at is None or done >= total or now - self._shown_at >= self.interval:
            self._shown_at, self._progress_shown = now, True
            return [(logging.INFO, progress_text(progress))]
        self._progress_shown = False
        return []

    def close(self) -> list[tuple[int, str]]:
        """The job's log is over (as far as this reader goes): the last progress line, if not shown yet."""
        if self.progress is None or self._progress_shown:
            return []
        self._progress_shown = True
        return [(logging.INFO, progress_text(self.progress))]

    def summary(self, mask: Callable[[Any], Any] = lambda value: value) -> dict[str, Any] | None:
        """The last report of each kind, JSON (``None``: none came), with ``mask`` (Airflow's ``redact``)
        over every text: names, URIs, metadata (a metadata key Airflow deems sensitive hides its value).
        At most :data:`MAX_SUMMARY_CHARS` of JSON, so a trigger event may carry it."""
        if not self.seen:
            return None
        out: dict[str, Any] = {}
        if self.progress is not None:
            out["progress"] = {**self.progress, "unit": mask(self.progress["unit"])}

        def masked(entry: Mapping[str, Any]) -> dict[str, Any]:
            return {key: mask(value) if key in ("metadata", "uri") else value for key, value in entry.items()}

        out["metrics"] = {mask(name): dict(entry) for name, entry in self.metrics.items()}
        out["assets"] = [masked(entry) for entry in self.assets.values()]
        out["checks"] = {mask(name): masked(entry) for name, entry in self.checks.items()}
        if self.outputs:  # (only when there are: the summary of a job without them is as before)
            out["outputs"] = [{**entry, "path": mask(entry["path"])} for entry in self.outputs.values()]
        if self.checkpoint is not None:
            out["checkpoint"] = {**self.checkpoint, "path": mask(self.checkpoint["path"])}
        if self.malformed:
            out["malformed"] = self.malformed
        if self.dropped:
            out["dropped"] = self.dropped
        return out

    @classmethod
    def from_summary(cls, summary: Any, job_id: str | None = None) -> ReportLog:
        """A reader that goes on from a :meth:`summary` (a trigger's event: it came through the metadata
        DB, so each entry is checked again and a bad one left out). Its last progress counts as shown."""
        log = cls(job_id)
        if not isinstance(summary, Mapping):
            return log
        candidates: list[dict[str, Any]] = []
        progress = summary.get("progress")
        if isinstance(progress, Mapping):
            candidates.append({"kind": "progress", **{k: progress.get(k) for k in ("done", "total", "unit")}})
        for kind, field in (("metric", "metrics"), ("check", "checks")):
            entries = summary.get(field)
            if isinstance(entries, Mapping):
                candidates += [{**entry, "kind": kind, "name": name} for name, entry in entries.items()
                               if isinstance(entry, Mapping)]  # fmt: skip
        for kind, field in (("asset", "assets"), ("output", "outputs")):
            entries = summary.get(field)
            if isinstance(entries, list):
                candidates += [{**entry, "kind": kind} for entry in entries if isinstance(entry, Mapping)]
        checkpoint = summary.get("checkpoint")
        if isinstance(checkpoint, Mapping):
            candidates.append({**checkpoint, "kind": "checkpoint"})
        for candidate in candidates:
            try:
                line = format_report_line(candidate)
            except (ValueError, TypeError):
                continue
            log.feed(line)
        if log.progress is not None and isinstance(progress, Mapping):
            for key in ("rate_per_second", "eta_seconds"):  # as the trigger had them
                value = progress.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    log.progress[key] = value
        for field in ("malformed", "dropped"):
            value = summary.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                setattr(log, field, getattr(log, field) + value)
        log._progress_shown, log._baseline = True, None
        return log


if __name__ == "__main__":  # ``python -m airflow_provider_hfjobs.reports > hfjobs_report.py``: for an image
    print(helper_source(), end="")
