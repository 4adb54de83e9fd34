"""``@task.hf_job``: the result-line rule (:mod:`airflow_provider_hfjobs.results`), the script it builds (run
here with this interpreter, as the job would run it), and the decorator's parse-time and run-time checks."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pendulum
import pytest
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_hfjobs.decorators.hf_job import HfJobDecoratedOperator, hf_job_task
from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.operators.hfjobs import failure_message
from airflow_provider_hfjobs.results import (
    CHUNK_CHARS,
    MAX_RESULT_BYTES,
    MAX_RESULT_LINES,
    RESULT_PREFIX,
    RESULT_TAIL_LINES,
    build_function_script,
    decode_result,
    encode_result_lines,
    error_summary,
    is_result_line,
    visible_lines,
)
from airflow_provider_hfjobs.triggers.hfjobs import HfJobTrigger

START = pendulum.datetime(2026, 1, 1, tz="UTC")


# ------------------------------------------------------------------------------------------- result lines
@pytest.mark.parametrize("value", [None, 3, "é ü 漢", {"rows": 10, "path": "/x y "}, list(range(5000))])
def test_result_lines_round_trip(value) -> None:
    lines = encode_result_lines("value", json.dumps(value))
    assert all(is_result_line(line) and len(line) < CHUNK_CHARS + 40 for line in lines)
    assert decode_result(["before", *lines, "after"]) == ("value", value)


def test_a_value_at_the_limit_fits_in_the_tail_that_is_read() -> None:
    lines = encode_result_lines("value", json.dumps("x" * (MAX_RESULT_BYTES - 2)))
    assert len(lines) <= MAX_RESULT_LINES < RESULT_TAIL_LINES


def test_the_last_complete_group_wins_and_broken_groups_are_skipped() -> None:
    first = encode_result_lines("error", json.dumps({"type": "ValueError"}))
    second = encode_result_lines("value", json.dumps("x" * 8_000))  # three lines
    assert len(second) == 3
    interleaved = [second[0], "a line between", second[1], second[2]]
    assert decode_result([*first, "retry", *interleaved]) == ("value", "x" * 8_000)
    assert decode_result([*first, second[0], second[2]]) == ("error", {"type": "ValueError"})  # part missing
    assert decode_result([*first, RESULT_PREFIX + "value 1/1 %%%notbase64"]) == (
        "error",
        {"type": "ValueError"},
    )
    assert decode_result([RESULT_PREFIX + "garbage", "plain"]) is None
    assert decode_result([]) is None


def test_result_lines_are_never_for_people() -> None:
    lines = ["hello", *encode_result_lines("value", "1"), "bye"]
    assert visible_lines(lines) == ["hello", "bye"]
    assert not is_result_line("said " + RESULT_PREFIX)  # only at the start of a line
    message = failure_message("j1", "ERROR", "exit code 1", "https://x/j1", lines)
    assert RESULT_PREFIX not in message and "Last 2 log lines:\n  hello\n  bye" in message


def test_error_summary_names_the_exception_and_its_frames() -> None:
    info = {"type": "ValueError", "message": "bad shard 7", "frames": ["line 3, in f: raise ValueError(x)"]}
    assert (
        error_summary(info, "f") == "f() raised ValueError: bad shard 7\n  line 3, in f: raise ValueError(x)"
    )
    assert error_summary("garbled", "f") == "f() failed in the job."


def test_the_trigger_never_writes_result_lines_to_the_task_log() -> None:
    trigger = HfJobTrigger(job_id="j1", namespace="alice")
    log = mock.Mock()
    with mock.patch.object(HfJobTrigger, "log", new_callable=mock.PropertyMock, return_value=log):
        asyncio.run(trigger._step(["one", *encode_result_lines("value", "2"), "two"], end=4))
    assert [c.args for c in log.info.call_args_list] == [("%s", "one"), ("%s", "two")]
    assert trigger.log_cursor == 4


# -------------------------------------------------------------------------------------------- the script
def run_script(tmp_path: Path, source: str, name: str, *args, **kwargs) -> subprocess.CompletedProcess[str]:
    script = build_function_script(textwrap.dedent(source), name, args=args, kwargs=kwargs)
    path = tmp_path / "script.py"
    path.write_text(script)
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60)


def test_the_script_has_a_pep723_header_with_the_dependencies() -> None:
    script = build_function_script(
        "def f():\n    return 1\n", "f", dependencies=["torch>=2.3", 'x; python_version<"3.13"']
    )
    assert script.startswith(
        '# /// script\n# dependencies = ["torch>=2.3", "x; python_version<\\"3.13\\""]\n# ///\n'
    )
    assert "from __future__ import annotations" in script
    with pytest.raises(HfJobsInputError, match="named function"):
        build_function_script("x = 1\n", "<lambda>")


def test_the_runner_calls_the_function_and_prints_one_result_group(tmp_path: Path) -> None:
    source = """
    def embed(shard: str, model: str = "m") -> Dict:  # an annotation the job cannot resolve: never evaluated
        print("embedding", shard, model)
        return {"shard": shard, "model": model, "rows": [1, 2]}
    """
    done = run_script(tmp_path, source, "embed", "07", model="bge")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "embedding 07 bge" and all(is_result_line(line) for line in lines[1:])
    assert decode_result(lines) == ("value", {"shard": "07", "model": "bge", "rows": [1, 2]})


def test_an_exception_prints_the_traceback_and_an_error_group(tmp_path: Path) -> None:
    source = """
    def check(n):
        return inner(n)

    def inner(n):
        raise ValueError(f"bad shard {n}")
    """
    done = run_script(tmp_path, source, "check", 7)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "ValueError: bad shard 7" in done.stderr
    kind, info = decode_result(done.stderr.splitlines())
    assert kind == "error" and info["type"] == "ValueError" and info["message"] == "bad shard 7"
    check, inner = info["frames"]
    assert re.fullmatch(r"line \d+, in check: return inner\(n\)", check), check
    assert re.fullmatch(r"line \d+, in inner: raise ValueError\(f\"bad shard \{n\}\"\)", inner), inner
    assert not any(is_result_line(line) for line in done.stdout.splitlines())


def test_a_return_value_over_the_limit_fails_in_the_job(tmp_path: Path) -> None:
    done = run_script(tmp_path, "def big(n):\n    return 'x' * n\n", "big", MAX_RESULT_BYTES)
    assert done.returncode == 1
    kind, info = decode_result(done.stderr.splitlines())
    assert kind == "error" and info["message"] == (
        f"the return value is {MAX_RESULT_BYTES + 2} bytes, over the limit of {MAX_RESULT_BYTES} bytes "
        "(512 KiB); write large results to a bucket volume and return its path"
    )


def test_a_return_value_that_is_no_json_fails_in_the_job(tmp_path: Path) -> None:
    done = run_script(tmp_path, "def f():\n    return {1, 2}\n", "f")
    kind, info = decode_result(done.stderr.splitlines())
    assert done.returncode == 1 and kind == "error" and info["type"] == "TypeError"
    assert "the return value of f() cannot travel back as JSON" in info["message"]


# ----------------------------------------------------------------------------------------- the decorator
def test_task_hf_job_resolves_through_the_provider_and_strips_its_decorator() -> None:
    from airflow_provider_hfjobs.get_provider_info import get_provider_info

    assert get_provider_info()["task-decorators"] == [
        {"name": "hf_job", "class-name": "airflow_provider_hfjobs.decorators.hf_job.hf_job_task"}
    ]
    with DAG(dag_id="fn", schedule=None, start_date=START):

        @task.hf_job(flavor="a10g-small", dependencies=["torch"], timeout="2h")
        def embed(shard: str) -> dict:
            return {"shard": shard}

        op = embed("00").operator
    assert isinstance(op, HfJobDecoratedOperator) and op.flavor == "a10g-small"
    assert "\ndef embed(shard: str) -> dict:\n" in op.script and "@task.hf_job(" not in op.script
    assert "script" not in op.template_fields and {"op_args", "op_kwargs", "secrets"} <= set(
        op.template_fields
    )


def test_a_lambda_or_a_closure_is_refused_when_decorated() -> None:
    with pytest.raises(HfJobsInputError, match="cannot run a lambda"):
        hf_job_task(lambda x: x)
    factor = 3

    def scale(x):
        return x * factor

    with pytest.raises(
        HfJobsInputError, match=r"scale\(\) uses variables of its enclosing function \(factor\)"
    ):
        hf_job_task(flavor="cpu-basic")(scale)
    with pytest.raises(HfJobsInputError, match=r"scale\(\)"):
        hf_job_task(scale)


def test_arguments_the_decorator_does_not_take() -> None:
    with DAG(dag_id="fn", schedule=None, start_date=START):

        def f():
            return 1

        with pytest.raises(TypeError, match="takes no 'script'"):
            hf_job_task(script="x.py")(f)()
        with pytest.raises(HfJobsInputError, match="wait_for_completion=False"):
            hf_job_task(wait_for_completion=False)(f)()


def test_a_literal_argument_that_is_no_json_fails_when_the_dag_is_parsed() -> None:
    with DAG(dag_id="fn", schedule=None, start_date=START):

        @task.hf_job
        def count(labels, n=1):
            return len(labels) * n

        with pytest.raises(HfJobsInputError, match=r"Task 'count': argument 'labels' of count\(\) is a set"):
            count({"a"})
        with pytest.raises(HfJobsInputError, match=r"argument 'n' of count\(\) is a object"):
            count(["a"], n=object())
        count(["a"], n="{{ params.n }}")  # a template: checked once rendered
        count(XComStub(), n=2)  # resolved at run time


class XComStub:
    """Anything ``resolve``-able is an XComArg-like value: checked at run time, not at parse time."""

    def resolve(self, context):  # pragma: no cover - never called here
        return None


class LazySequence:
    """What a downstream task gets for a mapped task's values (Airflow's lazy XCom sequence)."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_run_time_arguments_are_resolved_values_checked_as_json() -> None:
    from collections.abc import Sequence

    Sequence.register(LazySequence)
    with DAG(dag_id="fn", schedule=None, start_date=START):

        @task.hf_job
        def summarize(stats, run_id=None, *, model="m"):
            return stats

        op = summarize(XComStub()).operator
    op.op_args = [LazySequence([{"rows": 1}, {"rows": 2}])]  # as rendered: resolved XCom values
    script = op._build_script({"run_id": "manual__1", "ti": object()})
    assert '{"args": [[{"rows": 1}, {"rows": 2}]], "kwargs": {"run_id": "manual__1"}}' in script
    op.op_args = [[1]]
    op.op_kwargs = {"model": {1, 2}}
    with pytest.raises(
        HfJobsInputError, match=r"Task 'summarize': argument 'model' of summarize\(\) is a set"
    ):
        op._build_script({})
    op.op_kwargs = {}
    with pytest.raises(HfJobsInputError, match=r"argument 'run_id' .* It comes from the Airflow context"):
        op._build_script({"run_id": pendulum.now()})


def test_secret_arguments_travel_as_job_secrets_and_come_back_in_the_job(tmp_path) -> None:
    """seal_secret_arguments takes secret strings (anywhere in the JSON) out of the script; the runner puts
    them back from the job's environment before calling the function."""
    import os
    import subprocess
    import sys

    from airflow_provider_hfjobs.results import build_function_script, seal_secret_arguments

    named = {"key": "s3cr3t", "config": {"password": "pw", "rows": 3}, "shards": ["a", "b"]}
    sealed, secrets = seal_secret_arguments(named, lambda name, value: value in ("s3cr3t", "pw"))
    assert secrets == {"HFJOBS_SECRET_ARG_1": "s3cr3t", "HFJOBS_SECRET_ARG_2": "pw"}
    assert "s3cr3t" not in repr(sealed) and "pw" not in repr(sealed) and sealed["shards"] == ["a", "b"]
    source = "def echo(key, config, shards):\n    print(key, config['password'], config['rows'], shards)\n    return 1\n"
    script = build_function_script(source, "echo", kwargs=sealed)
    assert "s3cr3t" not in script
    path = tmp_path / "job.py"
    path.write_text(script)
    done = subprocess.run(
        [sys.executable, str(path)], env={**os.environ, **secrets}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "s3cr3t pw 3 ['a', 'b']"
