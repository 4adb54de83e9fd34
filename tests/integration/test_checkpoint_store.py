"""The process's log record through this Airflow's real store, on a real metadata DB: Airflow 3's Variables
through a real trigger-runner supervisor (its in-process Execution API), Airflow 2's metadata DB. A place
looked for and not found logs no error (the earlier design's ``GetXCom`` of a key not written yet logged
"XCom not found" at every trigger start: shown here for contrast); one process's record is found by the
next; a deleted record is gone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_hfjobs.version_compat import AIRFLOW_V_3_PLUS

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]

PROBE = Path(__file__).with_name("checkpoint_store_probe.py")
CONTRAST = "--- GetXCom of a key not written yet ---"
#: An error record, in structlog's console format (Airflow 3) or logging's (Airflow 2).
ERROR = re.compile(r"\[error\s*\]|\bERROR\b")
BIN = Path(sys.executable).parent


def test_records_go_through_the_real_store_and_a_missing_one_logs_no_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__UNIT_TEST_MODE="False",
        PYTHONWARNINGS="ignore",
    )  # fmt: skip
    migrated = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, timeout=180
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    probed = subprocess.run(
        [sys.executable, str(PROBE)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert probed.returncode == 0, probed.stdout[-3000:]
    result = json.loads(probed.stdout.strip().splitlines()[-1])
    ours, _, contrast = probed.stdout.partition(CONTRAST)
    assert result["store"] == ("SupervisorRecordStore" if AIRFLOW_V_3_PLUS else "DatabaseRecordStore")
    assert result["missing"] is None
    assert not ERROR.search(ours) and "not found" not in ours.lower(), ours[-3000:]
    assert result["shown"] == ["a", "b", "c"] and result["writes"] == 3
    (key,) = result["keys"]
    assert key.startswith("hfjobs_log_positions.")
    assert result["found"] == [4, 4]  # the next process resumes after the three lines, exactly
    assert result["keys after delete"] == []
    if AIRFLOW_V_3_PLUS:  # the test can tell: Airflow logs the earlier design's read as an error
        assert ERROR.search(contrast) and "XCom not found" in contrast, contrast[-3000:]
