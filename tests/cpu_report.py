"""Opt-in pytest plugin: CPU seconds per test file (this process and the children it reaped: Airflow
commands, deployments, local jobs), to find what makes ``make test`` slow on a 2-core machine.

    .venv/bin/python -m pytest -p tests.cpu_report -n 3 --dist loadfile   # writes $HFJOBS_CPU_REPORT

Each xdist worker appends one JSON line per file to ``$HFJOBS_CPU_REPORT`` (default
``/tmp/hfjobs-cpu-report.jsonl``): ``{"file", "cpu_s", "wall_s"}``; ``python -m tests.cpu_report FILE``
prints the files by CPU. Not a test and not an assertion: a measurement (``benchmarks/`` style).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import resource
import sys
import time
from collections import defaultdict
from typing import Any

import pytest

REPORT = os.environ.get("HFJOBS_CPU_REPORT", "/tmp/hfjobs-cpu-report.jsonl")
_current: dict[str, Any] = {}
_AIRFLOW = importlib.metadata.version("apache-airflow")


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _flush() -> None:
    if not _current:
        return
    row = {"file": _current["file"], "airflow": _AIRFLOW, "cpu_s": round(_cpu() - _current["cpu"], 2),
           "wall_s": round(time.monotonic() - _current["wall"], 2)}  # fmt: skip
    with open(REPORT, "a") as out:
        out.write(json.dumps(row) + "\n")
    _current.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    path = item.location[0]
    if _current.get("file") != path:
        _flush()
        _current.update(file=path, cpu=_cpu(), wall=time.monotonic())
    yield
    if nextitem is None or nextitem.location[0] != path:
        _flush()  # module fixtures are torn down by now (their processes reaped)


def pytest_sessionfinish(session: pytest.Session) -> None:
    _flush()


if __name__ == "__main__":
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    with open(sys.argv[1] if len(sys.argv) > 1 else REPORT) as rows:
        for line in rows:
            row = json.loads(line)
            key = f'{row["file"]} [{row.get("airflow", "?")}]'
            totals[key][0] += row["cpu_s"]
            totals[key][1] += row["wall_s"]
    grand = sum(cpu for cpu, _ in totals.values())
    print(f"{'cpu s':>8} {'wall s':>8}  file   (total {grand:.0f} CPU s)")
    for file, (cpu, wall) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
        print(f"{cpu:8.1f} {wall:8.1f}  {file}")
