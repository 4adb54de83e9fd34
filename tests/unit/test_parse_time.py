"""Mistakes surface when the DAG is parsed: each literal argument the hook would refuse at run time is
refused when the operator is built, with the hook's own message after the task id; values that hold a
template (or an XComArg) wait for run time; mapped tasks still parse."""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path
from typing import Any
from unittest import mock

import pendulum
import pytest
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
from airflow_provider_hfjobs.jobs import MAX_INLINE_SCRIPT_ENCODED_BYTES
from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator, HfUvJobOperator
from tests.unit.test_operators import FakeTI

REPO = Path(__file__).resolve().parents[2]
BIG_SCRIPT = "x = 1\n" * (MAX_INLINE_SCRIPT_ENCODED_BYTES // 6)
VOLUME = {"type": "bucket", "source": "alice/ckpts", "mount_path": "/ckpts"}

# (case id, arguments of HfJobRunOperator and of the hook's run_job, beside image and command)
RUN_CASES: list[tuple[str, dict[str, Any]]] = [
    ("timeout-no-unit", {"timeout": "1.5"}),
    ("timeout-upper-unit", {"timeout": "2H"}),
    ("timeout-negative", {"timeout": -5}),
    ("timeout-bool", {"timeout": True}),
    ("image-empty", {"image": ""}),
    ("space-without-name", {"image": "hf.co/spaces/alice"}),
    ("command-string", {"command": "python -c 1"}),
    ("command-empty", {"command": []}),
    ("command-non-string", {"command": ["python", 3]}),
    ("env-non-string", {"env": {"N": 1}}),
    ("env-bad-name", {"env": {"1ST": "x"}}),
    ("secret-non-string", {"secrets": {"TOKEN": 123456}}),
    ("env-and-secret", {"env": {"KEY": "a"}, "secrets": {"KEY": "b"}}),
    ("label-key-space", {"labels": {"my team": "ml"}}),
    ("label-value-dot", {"labels": {"version": "1.2"}}),
    ("labels-not-dict", {"labels": ["team"]}),
    ("name-twice", {"labels": {"name": "a"}, "name": "b"}),
    ("name-invalid", {"name": "my job"}),
    ("flavor-empty", {"flavor": ""}),
    ("attempts-zero", {"attempts": 0}),
    ("attempts-not-int", {"attempts": "2"}),
    ("volumes-not-list", {"volumes": VOLUME}),
    ("volume-not-dict", {"volumes": ["alice/ckpts"]}),
    ("volume-unknown-type", {"volumes": [{**VOLUME, "type": "repo"}]}),
    ("volume-source-uri", {"volumes": [{**VOLUME, "source": "hf://buckets/alice/ckpts"}]}),
    ("volume-duplicate-mount-path", {"volumes": [VOLUME, {**VOLUME, "mount_path": "/ckpts/"}]}),
    ("expose-not-list", {"expose": 8000}),
    ("expose-port-range", {"expose": [70000]}),
    ("expose-public-port-zero", {"expose_public": [0]}),
    ("ssh-not-bool", {"ssh": "yes"}),
    ("network-aliases-without-group", {"network_aliases": ["master"]}),
    ("network-group-invalid", {"network_group": "Train_1"}),
    ("network-alias-invalid", {"network_group": "g", "network_aliases": ["Master"]}),
    ("network-alias-twice", {"network_group": "g", "network_aliases": ["a", "a"]}),
    ("resource-group-not-string", {"resource_group_id": 5}),
    ("namespace-slash", {"namespace": "org/team"}),
]

# (case id, script, other arguments of HfUvJobOperator and of the hook's run_uv_job)
UV_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("uv-script-missing", "/no/such/train.py", {}),
    ("uv-script-empty", "", {}),
    ("uv-script-http", "http://e.x/s.py", {}),
    ("uv-script-too-large", BIG_SCRIPT, {}),
    ("uv-arg-non-string", "https://e.x/s.py", {"script_args": ["--epochs", 3]}),
    ("uv-dependency-empty", "https://e.x/s.py", {"dependencies": [""]}),
    ("uv-python-empty", "https://e.x/s.py", {"python": ""}),
    ("uv-env-clash", "print(1)\n", {"env": {"UV_SCRIPT_ENCODED": "x"}}),
    ("uv-timeout", "https://e.x/s.py", {"timeout": "1.5"}),
    ("uv-volumes", "https://e.x/s.py", {"volumes": [{**VOLUME, "mount_path": "ckpts"}]}),
]


def hook_message(call: Any) -> str:
    with pytest.raises(HfJobsInputError) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize(("case", "arguments"), RUN_CASES, ids=[case for case, _ in RUN_CASES])
def test_a_bad_literal_fails_when_the_operator_is_built_with_the_hooks_message(
    hook: HfJobsHook, case: str, arguments: dict[str, Any]
) -> None:
    full = {"image": "python:3.12", "command": ["true"], **arguments}
    expected = hook_message(lambda: hook.run_job(**full))
    with pytest.raises(HfJobsInputError) as info:
        HfJobRunOperator(task_id="train", **full)
    assert str(info.value) == f"Task 'train': {expected}"
    assert "123456" not in str(info.value)  # a secret's value is never echoed


@pytest.mark.parametrize(("case", "script", "arguments"), UV_CASES, ids=[case for case, _, _ in UV_CASES])
def test_a_bad_literal_uv_argument_fails_when_the_operator_is_built(
    hook: HfJobsHook, case: str, script: str, arguments: dict[str, Any]
) -> None:
    expected = hook_message(lambda: hook.run_uv_job(script, **arguments))
    with pytest.raises(HfJobsInputError) as info:
        HfUvJobOperator(task_id="train", script=script, **arguments)
    assert str(info.value) == f"Task 'train': {expected}"


def test_an_unknown_flavor_suggests_the_closest_and_how_to_allow_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIRFLOW__HFJOBS__EXTRA_FLAVORS", raising=False)
    with pytest.raises(HfJobsInputError) as info:
        HfJobRunOperator(task_id="train", image="python:3.12", command=["true"], flavor="a10g-smal")
    message = str(info.value)
    assert message.startswith("Task 'train': flavor 'a10g-smal' is unknown: did you mean 'a10g-small'?")
    assert "cpu-basic, cpu-upgrade" in message and "h200x8" in message  # the known list
    assert "[hfjobs] extra_flavors" in message
    with pytest.raises(HfJobsInputError, match="did you mean 'h200'"):
        HfUvJobOperator(task_id="train", script="https://e.x/s.py", flavor="H200")
    # A flavor newer than this provider, named in the Airflow option, is accepted.
    monkeypatch.setenv("AIRFLOW__HFJOBS__EXTRA_FLAVORS", "b300x8, mi355x")
    HfJobRunOperator(task_id="train", image="python:3.12", command=["true"], flavor="mi355x")
    with pytest.raises(HfJobsInputError, match=r"Known flavors: .*b300x8, mi355x"):
        HfJobRunOperator(task_id="train", image="python:3.12", command=["true"], flavor="b300")


def test_the_hook_itself_lets_the_server_decide_the_flavor(hook: HfJobsHook) -> None:
    with pytest.raises(AssertionError, match="before any request"):  # it got as far as sending
        hook.run_job(image="python:3.12", command=["true"], flavor="a10g-smal")


def dag(**kwargs: Any) -> DAG:
    return DAG(dag_id="parse", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), **kwargs)


def test_a_missing_script_beside_the_dag_file_fails_with_the_path_looked_at(tmp_path: Path) -> None:
    here = Path(__file__).parent
    with dag(), pytest.raises(HfJobsInputError) as info:
        HfUvJobOperator(task_id="train", script="scripts/missing.py")
    assert str(info.value).startswith(
        f"Task 'train': script file 'scripts/missing.py' does not exist (looked for {here / 'scripts' / 'missing.py'})"
    )
    with dag(), pytest.raises(HfJobsInputError, match="is no file, https URL"):
        HfUvJobOperator(task_id="train", script="python -c 1")
    outside = tmp_path / "train.py"
    outside.write_text("print(1)\n")
    with dag(), pytest.raises(HfJobsInputError, match=r"^Task 'train': script .* is outside the DAG folder"):
        HfUvJobOperator(task_id="train", script=str(outside))
    with dag():  # an existing script beside the DAG, a URL, inline source, a command: all fine
        HfUvJobOperator(task_id="local", script=Path(__file__).name)
        HfUvJobOperator(task_id="url", script="https://e.x/s.py")
        HfUvJobOperator(task_id="inline", script="print(1)\n")
        HfUvJobOperator(task_id="command", script="lighteval", script_args=["--help"])
        HfUvJobOperator(task_id="opt_in", script=str(outside), allow_script_outside_dags_folder=True)
    # Not in a DAG yet: where a relative name lies is not known, only an absolute path is looked at.
    HfUvJobOperator(task_id="train", script="scripts/missing.py")
    with pytest.raises(HfJobsInputError, match="does not exist"):
        HfUvJobOperator(task_id="train", script=str(tmp_path / "missing.py"))


# (case id, a mistake inside a template or beside one, the same mistake as a literal)
TEMPLATED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("flavor", {"flavor": "{{ params.flavor }}x"}, {"flavor": "a10g-smal"}),
    ("timeout", {"timeout": "{{ params.timeout }}"}, {"timeout": "1.5"}),
    ("command", {"command": ["python", "{% if true %}-c{% endif %}", 1]}, {"command": ["python", "-c", 1]}),
    ("env", {"env": {"N": "{{ params.n }}", "BAD NAME": "x"}}, {"env": {"N": "1", "BAD NAME": "x"}}),
    ("labels", {"labels": {"version": "{{ params.v }}", "a b": "c"}}, {"labels": {"a b": "c"}}),
    (
        "volumes",
        {"volumes": [{"type": "dataset", "source": "{{ params.dataset }}", "mount_path": "data"}]},
        {"volumes": [{"type": "dataset", "source": "alice/corpus", "mount_path": "data"}]},
    ),
    ("namespace", {"namespace": "{{ params.ns }}/x"}, {"namespace": "org/x"}),
    ("name", {"name": "{# later #}my job"}, {"name": "my job"}),
    (
        "network",
        {"network_group": "{{ params.group }}", "network_aliases": ["master"]},
        {"network_aliases": ["master"]},
    ),
    (
        "env-and-secrets",
        {"env": {"KEY": "a"}, "secrets": {"KEY": "{{ var.value.key }}"}},
        {"env": {"KEY": "a"}, "secrets": {"KEY": "b"}},
    ),
]


@pytest.mark.parametrize(("case", "templated", "literal"), TEMPLATED, ids=[case for case, _, _ in TEMPLATED])
def test_a_template_is_checked_at_run_time_not_at_parse_time(
    case: str, templated: dict[str, Any], literal: dict[str, Any]
) -> None:
    """A mistake inside a template (or beside one, for a rule between two arguments) does not fail the
    parse: the rendered value is checked when the task runs. The same mistake as a literal does."""
    HfJobRunOperator(task_id="t", **{"image": "python:3.12", "command": ["true"], **templated})
    with pytest.raises(HfJobsInputError, match=r"^Task 't': "):
        HfJobRunOperator(task_id="t", **{"image": "python:3.12", "command": ["true"], **literal})


def test_an_xcomarg_is_not_known_at_parse_time() -> None:
    with dag():
        upstream = HfJobRunOperator(task_id="up", image="python:3.12", command=["true"])
        HfJobRunOperator(
            task_id="t", image="python:3.12", command=upstream.output, flavor=upstream.output,
            env={"N": upstream.output}, volumes=[upstream.output], timeout=upstream.output,
        )  # fmt: skip
        HfUvJobOperator(task_id="u", script=upstream.output, script_args=["--n", upstream.output])
        with pytest.raises(HfJobsInputError, match=r"^Task 'v': script_args\[1\] must be a string"):
            HfUvJobOperator(task_id="v", script=upstream.output, script_args=["--n", 1])


def test_a_template_file_by_template_ext_and_custom_jinja_marks_count_as_templates() -> None:
    class WithExt(HfUvJobOperator):
        template_ext = (".py",)

    WithExt(task_id="t", script="/no/such/train.py")  # rendered from a template file at run time
    with pytest.raises(HfJobsInputError, match="does not exist"):
        HfUvJobOperator(task_id="t", script="/no/such/train.py")
    with dag(jinja_environment_kwargs={"variable_start_string": "<<", "variable_end_string": ">>"}):
        HfJobRunOperator(task_id="t", image="python:3.12", command=["true"], timeout="<< params.t >>")
        with pytest.raises(HfJobsInputError, match="is not a duration"):
            HfJobRunOperator(task_id="u", image="python:3.12", command=["true"], timeout="[ params.t ]")


def test_the_other_arguments_are_still_checked_beside_a_template() -> None:
    with pytest.raises(HfJobsInputError, match=r"^Task 't': timeout='1.5' is not a duration"):
        HfJobRunOperator(
            task_id="t",
            image="python:3.12",
            command=["{{ params.cmd }}"],
            flavor="{{ params.f }}",
            timeout="1.5",
        )
    with pytest.raises(HfJobsInputError, match=r"^Task 'u': script_args\[1\] must be a string"):
        HfUvJobOperator(task_id="u", script="{{ params.script }}", script_args=["--n", 3])
    with pytest.raises(HfJobsInputError, match=r"^Task 'u': env may not set UV_SCRIPT_ENCODED"):
        HfUvJobOperator(
            task_id="u",
            script="print(1)\n",
            env={"UV_SCRIPT_ENCODED": "x"},
            secrets={"T": "{{ var.value.t }}"},
        )


def test_partial_and_expand_parse_and_unmapping_waits_for_the_run() -> None:
    with dag():
        mapped = HfJobRunOperator.partial(task_id="m", image="python:3.12", flavor="cpu-basic").expand(
            command=[["python", "-c", "1"], ["python", "-c", "2"]]
        )
        uv = HfUvJobOperator.partial(task_id="u", script="https://e.x/s.py").expand(
            script_args=[["1"], ["2"]]
        )
    assert mapped.task_id == "m" and uv.task_id == "u"
    # Unmapped on the worker, with values that may come from XCom: a flavor newer than the list is the
    # server's to judge, as any run-time value; a bad one fails the task before any request.
    unmapped = mapped.unmap({"command": ["python", "-c", "1"], "flavor": "brand-new-gpu"})
    assert unmapped.flavor == "brand-new-gpu"
    unmapped = mapped.unmap({"command": ["python", "-c", "1"], "timeout": "1.5"})
    unmapped.__dict__["hook"] = hook = mock.MagicMock()
    with pytest.raises(HfJobsInputError, match=r"^timeout='1.5' is not a duration"):
        unmapped.execute({"ti": FakeTI()})
    hook.list_jobs.assert_not_called()


def test_run_time_values_are_checked_before_any_request() -> None:
    """A template that renders badly fails the task with the hook's message before the earlier-try lookup
    (a request) and without the prefix: the task log already names the task."""
    op = HfJobRunOperator(task_id="t", image="python:3.12", command=["true"], timeout="{{ params.t }}")
    op.__dict__["hook"] = hook = mock.MagicMock()
    op.timeout = "1.5"  # as rendered
    with pytest.raises(HfJobsInputError, match=r"^timeout='1.5' is not a duration"):
        op.execute({"ti": FakeTI()})
    hook.list_jobs.assert_not_called()
    hook.run_job.assert_not_called()
    assert op.job_url == ""  # what the extra link returns: no job, no XCom lookup


def dagbag_import_errors(folder: Path) -> dict[str, str]:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag
    # include_examples: Airflow 2 only (3.x has no examples in a DagBag; [core] load_examples is off here too)
    options = (
        {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
    )
    return dict(DagBag(dag_folder=str(folder), **options).import_errors)


def test_a_bad_literal_is_a_dag_import_error_naming_the_task_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "bad_flavor.py").write_text(
        textwrap.dedent(
            """
            import pendulum
            from airflow.providers.common.compat.sdk import DAG
            from airflow_provider_hfjobs.operators.hfjobs import HfJobRunOperator

            with DAG(dag_id="bad_flavor", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
                HfJobRunOperator(task_id="train", image="python:3.12", command=["true"], flavor="a10g-smal")
            """
        )
    )
    errors = dagbag_import_errors(tmp_path)
    assert list(errors) == [str(tmp_path / "bad_flavor.py")]
    assert (
        "HfJobsInputError: Task 'train': flavor 'a10g-smal' is unknown: did you mean 'a10g-small'?"
        in next(iter(errors.values()))
    )


@pytest.mark.parametrize("folder", ["example_dags", "tests/dags"])
def test_every_shipped_dag_still_parses(folder: str) -> None:
    assert dagbag_import_errors(REPO / folder) == {}


def test_the_parse_time_cases_are_documented() -> None:
    doc = (REPO / "docs" / "reliability.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.MULTILINE))
    assert {"parse-unknown-flavor", "parse-script-missing-beside-dag", "parse-any-literal"} <= documented


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"stall_timeout": "30 minutes"}, "stall_timeout"),
        ({"stall_timeout": -1}, "stall_timeout"),
        ({"max_cost_usd": 0}, "max_cost_usd"),
        ({"max_cost_usd": "lots"}, "max_cost_usd"),
        ({"idle_gpu_timeout": "1h", "idle_gpu_threshold": 150}, "idle_gpu_threshold"),
        ({"max_scheduling_time": "soon"}, "max_scheduling_time"),
        ({"flavor": ["a10g-small", "a10g-small"], "max_scheduling_time": "5m"}, r"flavor\[1\]"),
        ({"flavor": ["a10g-small", "l4x1"]}, "a fallback order needs max_scheduling_time"),
        ({"flavor": ["a10g-smal", "l4x1"], "max_scheduling_time": "5m"}, "did you mean"),
        ({"flavor": []}, "empty list"),
    ],
)
def test_bad_literal_guardrails_fail_when_the_dag_is_parsed(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(HfJobsInputError, match=r"^Task 'guarded': .*" + message):
        HfJobRunOperator(task_id="guarded", image="python:3.12", command=["python", "-c", "1"], **arguments)
    with pytest.raises(HfJobsInputError, match=r"^Task 'guarded': .*" + message):
        HfUvJobOperator(task_id="guarded", script="print(1)", **arguments)


def test_templated_guardrails_wait_for_run_time_and_good_ones_parse() -> None:
    HfJobRunOperator(
        task_id="guarded", image="python:3.12", command=["python", "-c", "1"], stall_timeout="{{ params.stall }}",
        max_cost_usd="{{ params.cap }}", idle_gpu_timeout="1h", idle_gpu_threshold=2.5,
        flavor=["h200", "a100-large"], max_scheduling_time="{{ params.wait }}",
    )  # fmt: skip
    op = HfJobRunOperator(
        task_id="good", image="python:3.12", command=["python", "-c", "1"], stall_timeout="30m", max_cost_usd=2,
        flavor=["h200", "a100-large"], max_scheduling_time="10m",
    )  # fmt: skip
    assert op._current_flavor() == "h200" and op._guardrails().max_scheduling_time == 600
