"""The suite's forked ``airflow`` commands (tests/integration/forked_airflow.py) behave as fresh ones: the
same output and exit status, a timeout that kills the command, a home's first command run fresh, and a new
pre-imported interpreter when the environment changes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration import forked_airflow
from tests.integration.airflow_run import make_airflow_home

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HFJOBS_TESTS_FORK", "1")
    forked_airflow.close_all()
    yield make_airflow_home(tmp_path, "http://127.0.0.1:9", "hf_unused")
    forked_airflow.close_all()


def test_forked_commands_answer_as_fresh_ones(home) -> None:
    first = home.run("variables", "list")  # writes airflow.cfg (as every command but `version`): fresh
    assert first.returncode == 0 and not forked_airflow._ZYGOTES
    forked, fresh = home.run("version"), home.run("version", fresh=True)
    assert len(forked_airflow._ZYGOTES) == 1
    assert (forked.returncode, forked.stdout) == (fresh.returncode, fresh.stdout) and forked.returncode == 0
    missing = [home.run("dags", "test", "no_such_dag", fresh=fresh) for fresh in (False, True)]
    assert [result.returncode for result in missing] == [missing[1].returncode] * 2 != [0, 0]
    assert all("no_such_dag" in result.stdout + result.stderr for result in missing)


def test_a_changed_environment_gets_its_own_interpreter(home) -> None:
    home.run("variables", "list")
    home.run("variables", "list")
    home.env["AIRFLOW_VAR_FORKED_PROBE"] = "from-the-environment"
    shown = home.run("variables", "get", "forked_probe")
    assert shown.returncode == 0 and "from-the-environment" in shown.stdout, shown.stderr[-2000:]
    assert len(forked_airflow._ZYGOTES) == 2


def test_a_timeout_kills_the_forked_command(home) -> None:
    home.run("variables", "list")
    with pytest.raises(subprocess.TimeoutExpired):
        home.run("triggerer", timeout=8)  # runs until stopped
    (zygote,) = forked_airflow._ZYGOTES.values()
    children = Path(f"/proc/{zygote.process.pid}/task/{zygote.process.pid}/children").read_text().split()
    assert not children, children  # the command's process group was killed and reaped
    assert home.run("version").returncode == 0  # and the zygote serves the next command
    assert os.path.exists(f"/proc/{zygote.process.pid}")
