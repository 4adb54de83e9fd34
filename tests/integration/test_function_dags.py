"""``@task.hf_job`` for real: ``airflow dags test`` runs the example DAG and failing DAGs against the local
Jobs server, and the built script runs as a job through the hook (its result read back from the log)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from airflow_provider_hfjobs.results import (
    MAX_RESULT_BYTES,
    RESULT_PREFIX,
    RESULT_TAIL_LINES,
    build_function_script,
    decode_result,
)
from tests.integration.airflow_run import AirflowHome, count, make_airflow_home
from tests.integration.conftest import TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]

FAILING_DAGS = """
import pendulum
from airflow.providers.common.compat.sdk import DAG, task

START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG(dag_id="hfjobs_function_failing", schedule=None, start_date=START):

    @task.hf_job(retries=0, poll_interval=1)
    def check_shard(shard: int) -> int:
        print(f"checking shard {shard}")
        if shard == 7:
            raise ValueError(f"bad shard {shard}")
        return shard

    @task.hf_job(retries=0, poll_interval=1, deferrable=True)
    def check_shard_deferred(shard: int) -> int:
        print(f"checking deferred shard {shard}")
        raise KeyError(f"no shard {shard}")

    @task.hf_job(retries=0, poll_interval=1)
    def too_big() -> str:
        print("making a large result")
        return "x" * MAX_PLUS_ONE

    @task(retries=0)
    def labels() -> set:
        return {"a", "b"}

    @task.hf_job(retries=0)
    def count_labels(labels: list) -> int:
        print("never runs")
        return len(labels)

    check_shard(7)
    check_shard_deferred(3)
    too_big()
    count_labels(labels())
"""


@pytest.fixture(scope="module")
def airflow_home(server, tmp_path_factory) -> AirflowHome:
    extra = tmp_path_factory.mktemp("function-dags")
    source = FAILING_DAGS.replace("MAX_PLUS_ONE", str(MAX_RESULT_BYTES + 1))
    (extra / "hfjobs_function_failing.py").write_text(textwrap.dedent(source))
    return make_airflow_home(tmp_path_factory.mktemp("airflow-home"), server.url, TOKEN, extra)


def output(result) -> str:
    return result.stdout + result.stderr


def test_function_example_maps_a_gpu_step_and_returns_values_through_xcom(airflow_home: AirflowHome) -> None:
    result = airflow_home.dags_test("hfjobs_function")
    text = output(result)
    assert result.returncode == 0, text[-6000:]
    # Each line the functions print appears once per task (embed on the worker, embed_deferred in the
    # triggerer); their result lines never.
    for shard, rows in (("00", 10), ("01", 11), ("02", 12)):
        assert count(text, f"embedding shard {shard} with BAAI/bge-small-en: {rows} rows") == 2, text[-6000:]
    assert count(text, "summarized 3 shards: 33 rows") == 1, text[-6000:]
    assert RESULT_PREFIX not in text and "hfjobs-result" not in text
    # The downstream plain @task got the values the jobs returned (mapped list; multiple_outputs key).
    assert count(text, "rows per shard from the jobs: [10, 11, 12]") == 1, text[-6000:]
    assert count(text, "rows per shard from the deferred jobs: [10, 11, 12]") == 1, text[-6000:]
    assert count(text, "total rows from the summarize job: 33") == 1, text[-6000:]
    # Three GPU-flavor jobs on the worker, three deferred, one deferred CPU job.
    assert count(text, "COMPLETED on a10g-small") == 6
    assert count(text, "COMPLETED on cpu-basic") == 1
    assert "[DAG TEST] running trigger in line" in text or "Pausing task as DEFERRED" in text


def test_function_failures_name_the_exception_and_never_show_result_lines(airflow_home: AirflowHome) -> None:
    result = airflow_home.dags_test("hfjobs_function_failing")
    text = output(result)
    assert result.returncode != 0
    assert RESULT_PREFIX not in text and "hfjobs-result" not in text, text[-6000:]
    # An exception in the function (sync and deferred): its type, message and frame, then the usual failure.
    assert re.search(
        r"check_shard\(\) raised ValueError: bad shard 7\n\s+line \d+, in check_shard: raise", text
    )
    assert re.search(r"check_shard_deferred\(\) raised KeyError: 'no shard 3'", text), text[-6000:]
    assert len(set(re.findall(r"job ([0-9a-f]{24}) ended ERROR: exit code 1", text))) == 3, text[-6000:]
    assert count(text, "checking shard 7") >= 1 and count(text, "checking deferred shard 3") >= 1
    # The traceback the runner printed is in the failure's log tail (and the task log).
    assert "Traceback (most recent call last)" in text
    # A return value over the limit fails in the job, with the fix in the message.
    assert re.search(
        rf"too_big\(\) raised ValueError: the return value is {MAX_RESULT_BYTES + 3} bytes, over the limit of "
        rf"{MAX_RESULT_BYTES} bytes \(512 KiB\); write large results to a bucket volume and return its path",
        text,
    ), text[-6000:]
    # A value that is no JSON fails the task before any job is made, naming the argument.
    assert re.search(r"argument 'labels' of count_labels\(\) is a set, which cannot travel to the job", text)
    assert count(text, "never runs") == 0
    assert len(set(re.findall(r"Hugging Face job ([0-9a-f]{24}): http", text))) == 3


def test_a_large_result_travels_in_many_lines_through_the_real_log(hook, tmp_path: Path) -> None:
    """The script as the decorator builds it, run as a uv job: a 300 KB value (about 100 result lines, more
    than the failure tail) comes back whole from the log's tail."""
    source = textwrap.dedent(
        """
        def make(n, fill="y"):
            print("making", n)
            return {"n": n, "blob": fill * n}
        """
    )
    script = build_function_script(source, "make", args=[300_000], kwargs={"fill": "z"})
    job = hook.run_uv_job(script)
    final = hook.wait_for_job(job.id, poll_interval=0.5, timeout=120)
    assert final.stage.value == "COMPLETED", list(hook.fetch_job_logs(job.id))[-20:]
    lines = list(hook.fetch_job_logs(job.id, tail=RESULT_TAIL_LINES))
    assert sum(line.startswith(RESULT_PREFIX) for line in lines) > 60
    assert "making 300000" in lines
    assert decode_result(lines) == ("value", {"n": 300_000, "blob": "z" * 300_000})
