"""The provider as Airflow discovers it: entry point, hook, connection type, links, triggers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

AIRFLOW = str(Path(sys.executable).parent / "airflow")


def airflow(*args: str, home: Path) -> str:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("providers", "list"), "airflow-provider-hfjobs"),
        (("providers", "hooks"), "airflow_provider_hfjobs.hooks.hfjobs.HfJobsHook"),
        (("providers", "links"), "airflow_provider_hfjobs.links.hfjobs.HfJobLink"),
        (("providers", "triggers"), "airflow_provider_hfjobs.triggers.hfjobs"),
        (("providers", "behaviours"), "hf_jobs"),
    ],
)
def test_airflow_discovers_the_provider(command: tuple[str, ...], expected: str, tmp_path: Path) -> None:
    assert expected in airflow(*command, "--output", "plain", home=tmp_path)


def test_provider_info_declares_the_connection_form() -> None:
    from airflow_provider_hfjobs.get_provider_info import get_provider_info

    info = get_provider_info()
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "hf_jobs" and "namespace" in conn["conn-fields"]
    assert conn["ui-field-behaviour"]["relabeling"]["password"] == "HF token"
    from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook

    assert HfJobsHook.get_ui_field_behaviour()["hidden_fields"] == conn["ui-field-behaviour"]["hidden-fields"]


def test_the_providers_options_are_in_airflows_configuration(tmp_path: Path) -> None:
    """`airflow config list` shows the [hfjobs] options with their descriptions; an unset one reads empty,
    which the provider takes as its default."""
    listed = airflow("config", "list", "--section", "hfjobs", "--include-descriptions", home=tmp_path)
    assert "log_checkpoint_steps_per_second" in listed and "extra_flavors" in listed, listed
    assert "Hardware flavors newer than this provider" in listed
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__HFJOBS__EXTRA_FLAVORS": "b300x8"}
    got = subprocess.run(
        [AIRFLOW, "config", "get-value", "hfjobs", "extra_flavors"], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert got.returncode == 0 and got.stdout.strip().splitlines()[-1] == "b300x8", got.stderr[-2000:]
