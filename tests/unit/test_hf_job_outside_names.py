"""``@task.hf_job``: a function that uses a module-level name of its DAG file fails when the DAG is
parsed, naming it, instead of with a NameError inside the job (issue 22, item 6)."""

from __future__ import annotations

import json
import os.path
from os import path

import pytest

from airflow_provider_hfjobs.decorators.hf_job import check_function, hf_job_task, outside_names
from airflow_provider_hfjobs.exceptions import HfJobsInputError

LIMIT = 10


def helper(value: int) -> int:
    return value + 1


def uses_a_constant() -> int:
    return LIMIT


def uses_a_module_imported_at_module_level() -> str:
    return json.dumps({"a": 1})


def uses_a_helper_and_a_constant(value: int) -> int:
    return helper(value) * LIMIT


def uses_a_name_defined_nowhere() -> int:
    return not_defined_anywhere  # type: ignore[name-defined]  # noqa: F821


def takes_a_default_of_the_dag_file(limit: int = LIMIT) -> int:
    return limit


def uses_one_in_a_nested_function_and_a_comprehension() -> list[int]:
    def inner() -> int:
        return LIMIT

    return [helper(n) for n in range(inner())]


def self_contained(rows: list[dict], field: str = "x") -> dict:
    """Every name is the function's own: imports inside, parameters, locals, builtins, attributes."""
    import json
    import os.path
    from collections import Counter as Tally

    class Row:  # annotations stay unevaluated in the job, as here
        value: path
        name = "row"
        label = name.upper()

    def parse(text: str) -> dict:
        return json.loads(text)

    counted = Tally(row[field] for row in rows)
    total = sum(len(str(value)) for value in counted.values())
    where = os.path.join("a", "b")
    try:
        parse("{}")
    except ValueError as error:
        print(error, __name__)
    return {"total": total, "where": where, "row": Row.label, "path": where.path if False else None}


def recursive(n: int) -> int:
    return 1 if n <= 1 else n * recursive(n - 1)


def makes_its_own_global() -> int:
    global COUNTER
    COUNTER = 1
    return COUNTER


@pytest.mark.parametrize(
    ("function", "names"),
    [
        (uses_a_constant, ["LIMIT"]),
        (uses_a_module_imported_at_module_level, ["json"]),
        (uses_a_helper_and_a_constant, ["LIMIT", "helper"]),
        (uses_a_name_defined_nowhere, ["not_defined_anywhere"]),
        (takes_a_default_of_the_dag_file, ["LIMIT"]),
        (uses_one_in_a_nested_function_and_a_comprehension, ["LIMIT", "helper"]),
    ],
)
def test_the_names_a_function_reads_from_the_dag_file_are_found(function: object, names: list[str]) -> None:
    assert outside_names(function) == names
    with pytest.raises(
        HfJobsInputError, match=rf"{function.__name__}\(\) uses names .*\({', '.join(names)}\)"
    ):
        check_function(function)


@pytest.mark.parametrize("function", [self_contained, recursive, makes_its_own_global])
def test_a_self_contained_function_passes(function: object) -> None:
    assert outside_names(function) == []
    check_function(function)


def test_the_decorator_refuses_it_when_applied_saying_what_to_do() -> None:
    with pytest.raises(HfJobsInputError) as error:
        hf_job_task(flavor="cpu-basic")(uses_a_helper_and_a_constant)
    message = str(error.value)
    assert "uses names of the DAG file (LIMIT, helper)" in message
    assert "Import modules inside the function, pass values as arguments" in message
    assert os.path.basename(__file__)  # (the module-level imports above are the DAG file's own)
