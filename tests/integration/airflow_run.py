"""Run real ``airflow`` commands in a throwaway AIRFLOW_HOME whose ``hf_default`` points at a Jobs server."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.integration import forked_airflow

REPO = Path(__file__).resolve().parents[2]
atexit.register(forked_airflow.close_all)
AIRFLOW = str(Path(sys.executable).parent / "airflow")


@dataclass
class AirflowHome:
    path: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300, fresh: bool = False) -> subprocess.CompletedProcess[str]:
        """``airflow *args`` in this home, forked from a pre-imported interpreter (``forked_airflow``), or
        with ``fresh`` (and ``HFJOBS_TESTS_FORK=0``) as a new ``airflow`` process."""
        if not fresh and forked_airflow.enabled():
            forked = forked_airflow.run_forked(AIRFLOW, args, self.env, self.path, timeout)
            if forked is not None:
                return forked
        return subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.path,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def dags_test(
        self, dag_id: str, timeout: float = 300, fresh: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return self.run("dags", "test", dag_id, timeout=timeout, fresh=fresh)


def make_airflow_home(path: Path, server_url: str, token: str, *extra_dag_dirs: Path) -> AirflowHome:
    """A fresh AIRFLOW_HOME with the example DAGs (and any extra ones), migrated once."""
    dags = path / "dags"
    shutil.copytree(REPO / "example_dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    for extra in extra_dag_dirs:
        for file in extra.glob("*.py"):
            shutil.copy(file, dags / file.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "HF_"))}
    env.update(
        AIRFLOW_HOME=str(path),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW_CONN_HF_DEFAULT=json.dumps({"conn_type": "hf_jobs", "host": server_url, "password": token}),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONWARNINGS="ignore",
    )
    home = AirflowHome(path, env)
    shutil.copyfile(_migrated_db(env), path / "airflow.db")
    return home


_TEMPLATE: dict[str, Path] = {}


def _migrated_db(env: dict[str, str]) -> Path:
    """An empty metadata DB migrated once per test process (``airflow db migrate`` costs an Airflow start-up,
    several CPU seconds), copied into each new home: the SQLite file holds no path of its home."""
    if "db" not in _TEMPLATE:
        template = Path(tempfile.mkdtemp(prefix="hfjobs-migrated-db-"))
        atexit.register(shutil.rmtree, template, ignore_errors=True)
        (template / "dags").mkdir()
        migrated = AirflowHome(
            template,
            {**env, "AIRFLOW_HOME": str(template), "AIRFLOW__CORE__DAGS_FOLDER": str(template / "dags")},
        ).run("db", "migrate", timeout=180, fresh=True)
        if migrated.returncode != 0:
            raise RuntimeError(
                f"airflow db migrate failed:\n{migrated.stdout[-3000:]}\n{migrated.stderr[-3000:]}"
            )
        _TEMPLATE["db"] = template / "airflow.db"
    return _TEMPLATE["db"]


_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})[.,](\d{3})")


def count(text: str, needle: str) -> int:
    """Log records containing ``needle``. Airflow 2.11's ``dags test`` echoes each task log record through
    two handlers (two formats, same millisecond): such echoes count once."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for line in text.splitlines():
        if needle not in line:
            continue
        stamp = _STAMP.search(line)
        key = (*stamp.groups(), line[line.index(needle) :]) if stamp else None
        if key is None or key not in seen:
            total += 1
        if key is not None:
            seen.add(key)
    return total
