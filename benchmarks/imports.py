"""Import: what importing the provider costs on top of Airflow itself.

    .venv/bin/python benchmarks/imports.py             # median of 9 fresh interpreters per row

Every row is a fresh interpreter that first imports ``airflow`` (not counted), then the module named,
timed with ``perf_counter`` inside the process (so interpreter start-up is not counted either), from
compiled bytecode as an installed package has it.
``get_provider_info`` is what every Airflow process imports for each installed provider.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import save, table

MODULES = [
    "airflow_provider_hfjobs.get_provider_info",
    "airflow_provider_hfjobs",
    "airflow_provider_hfjobs.hooks.hfjobs",
    "airflow_provider_hfjobs.operators.hfjobs",
    "airflow_provider_hfjobs.sensors.hfjobs",
    "airflow_provider_hfjobs.triggers.hfjobs",
    "airflow_provider_hfjobs.links.hfjobs",
    "huggingface_hub",
]
PROBE = """
import json, sys, time
t0 = time.perf_counter(); import airflow; t1 = time.perf_counter()
import importlib; importlib.import_module(sys.argv[1]); t2 = time.perf_counter()
print(json.dumps({"airflow": t1 - t0, "module": t2 - t1}))
"""


def measure(module: str, runs: int, env: dict[str, str]) -> dict[str, float]:
    def probe() -> dict[str, float]:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, module], capture_output=True, text=True, check=True, env=env
        )
        return json.loads(done.stdout)

    probe()  # writes the bytecode, as an installed package has it
    samples = [probe() for _ in range(runs)]
    return {
        "airflow ms": statistics.median(s["airflow"] for s in samples) * 1000,
        "module over airflow ms": statistics.median(s["module"] for s in samples) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    # Compiled bytecode, in a throwaway cache: PYTHONDONTWRITEBYTECODE would make every run compile from source.
    cache = tempfile.mkdtemp(prefix="hfjobs-pycache-")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    rows = []
    for module in MODULES:
        rows.append({"module": module, **measure(module, args.runs, env)})
        print(
            table(rows[-1:], ["module", "airflow ms", "module over airflow ms"]).splitlines()[-1], flush=True
        )
    print()
    print(table(rows, ["module", "airflow ms", "module over airflow ms"]))
    path = save("imports", {"command": " ".join(["benchmarks/imports.py", *(argv or sys.argv[1:])]),
                            "args": vars(args), "rows": rows})  # fmt: skip
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
