"""``@task.hf_job``: a Python function of the DAG runs on Hugging Face Jobs hardware.

.. code-block:: python

    @task.hf_job(flavor="a10g-small", dependencies=["torch"], timeout="2h")
    def embed(shard: str, model: str = "BAAI/bge-small-en") -> dict:
        import torch  # imports inside the function: the DAG file's do not exist in the job

        ...
        return {"rows": n, "path": out}

    stats = embed.expand(shard=list_shards())

The function's source (its ``@task.hf_job`` decorator stripped) becomes an inline UV script
(:func:`airflow_provider_hfjobs.results.build_function_script`) with a PEP 723 header for ``dependencies``
and a runner that calls it with the task's arguments, resolved by then (XComs, mapped values, templates),
as JSON. Its return value comes back through the job's log as result lines the task log never shows
(:mod:`airflow_provider_hfjobs.results`) and becomes the task's XCom ``return_value`` (``multiple_outputs``
works as for ``@task``). An exception in the function fails the task with its type, message and last
frames. Everything else is :class:`~airflow_provider_hfjobs.operators.hfjobs.HfUvJobOperator`'s: flavor,
secrets, volumes, timeout, deferrable, reattach.

Reports: the function can ``from hfjobs_report import report_progress`` (and ``report_metric``,
``report_asset``, ``report_check``): the script's runner makes that module, nothing is installed
(:mod:`airflow_provider_hfjobs.reports`).

Secret arguments: an argument value Airflow masks (a masked Variable, a connection's password), or one
named in ``secret_arguments=[...]``, travels as a job secret (names only on the Jobs API and the job page),
never in the script the job's environment shows.

Limits: arguments and the return value are JSON (the return value at most 512 KiB: write more to a bucket
volume and return its path); no lambdas and no closures (the function travels as source); the function
imports what it uses; names of the DAG file (other functions, constants) do not exist in the job, and a
function that uses one is refused when the DAG is parsed (:func:`outside_names`).
"""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import textwrap
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow.providers.common.compat.sdk import DecoratedOperator, task_decorator_factory

from airflow_provider_hfjobs.exceptions import HfJobFailedError, HfJobsError, HfJobsInputError
from airflow_provider_hfjobs.guardrails import GuardStop
from airflow_provider_hfjobs.jobs import JobInfo, encode_script_source
from airflow_provider_hfjobs.masking import is_masked
from airflow_provider_hfjobs.operators.hfjobs import HfUvJobOperator
from airflow_provider_hfjobs.results import (
    RESULT_TAIL_LINES,
    build_function_script,
    check_json_argument,
    decode_result,
    error_summary,
    seal_secret_arguments,
)

#: What HfUvJobOperator's own checks see while the operator is made (inline source, then replaced).
_PLACEHOLDER_SCRIPT = "# @task.hf_job: the function's script is built once the operator is made\npass\n"


def _plain(value: Any) -> Any:
    """The values of a mapped task, as a downstream task gets them (a lazy XCom sequence), as a list."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray, list, tuple)):
        return list(value)
    return value


#: What the job's script has at module level besides the function (``build_function_script``: the future
#: import, the runner; a module's own attributes); everything else the function reads from its globals
#: is a NameError there.
_SCRIPT_GLOBALS = frozenset(
    {
        "annotations",
        "_hfjobs_run",
        "__file__",
        "__cached__",
        "__builtins__",
        "__annotations__",
        *dir(types.ModuleType("job")),
    }
)
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_GLOBAL_STORES = frozenset({"STORE_GLOBAL", "DELETE_GLOBAL"})


def _as_in_the_job(function: Any) -> types.CodeType | None:
    """The function's definition compiled as the job's script compiles it (its source, postponed
    annotations, its decorators left out), or ``None`` when its source cannot be read or parsed here (the
    operator says so, or it is not a def of its own)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return None
    node = next(
        (
            item
            for item in tree.body
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == function.__name__
        ),
        None,
    )
    if node is None:
        return None
    node.decorator_list = []
    future = ast.parse("from __future__ import annotations").body  # as the script starts
    return compile(
        ast.Module(body=[*future, node], type_ignores=[]), "<@task.hf_job>", "exec", dont_inherit=True
    )


def outside_names(function: Any) -> list[str]:
    """The names the function (its body, nested functions and classes, its default values) reads from
    module level that the job's script will not have: the DAG file's imports, constants, helpers, or
    names defined nowhere. Read from the bytecode, so a local, a parameter, a name imported inside the
    function, an attribute (``x.path``) or a builtin is never one."""
    code = _as_in_the_job(function)
    if code is None:
        return []
    loaded: set[str] = set()
    stored: set[str] = set()

    def walk(code: types.CodeType) -> None:
        own: set[str] = set()  # a module or class body's own names (STORE_NAME) read back with LOAD_NAME
        for instruction in dis.get_instructions(code):
            name = instruction.argval
            if instruction.opname in _GLOBAL_LOADS and isinstance(name, str):
                if instruction.opname == "LOAD_GLOBAL" or name not in own:
                    loaded.add(name)
            elif instruction.opname in _GLOBAL_STORES and isinstance(name, str):
                stored.add(name)  # ``global x`` and an assignment: the function makes it itself
            elif instruction.opname == "STORE_NAME" and isinstance(name, str):
                own.add(name)
        for constant in code.co_consts:
            if isinstance(constant, types.CodeType):
                walk(constant)

    walk(code)
    allowed = {*dir(builtins), *_SCRIPT_GLOBALS, function.__name__, *stored}
    return sorted(loaded - allowed)


def check_function(function: Any) -> None:
    """What cannot travel to a job as source: not a plain named function, a lambda, a closure."""
    if not inspect.isfunction(function):
        raise HfJobsInputError(
            f"@task.hf_job runs a plain Python function (def ...); got {type(function).__name__} {function!r:.80}."
        )
    name = function.__name__
    if name == "<lambda>":
        raise HfJobsInputError(
            "@task.hf_job cannot run a lambda: the function travels to the job as its source. Write a def."
        )
    nonlocals = sorted(inspect.getclosurevars(function).nonlocals)
    if nonlocals:
        raise HfJobsInputError(
            f"@task.hf_job function {name}() uses variables of its enclosing function "
            f"({', '.join(nonlocals)}): it travels to the job as source, without them. Pass them as arguments "
            "(JSON values) instead."
        )
    outside = outside_names(function)
    if outside:
        of_dag = [name for name in outside if name in getattr(function, "__globals__", {})]
        where = "names of the DAG file" if len(of_dag) == len(outside) else "names from outside it"
        raise HfJobsInputError(
            f"@task.hf_job function {name}() uses {where} ({', '.join(outside)}): it travels to the job as "
            "its own source alone, where they do not exist (a NameError in the job). Import modules inside "
            "the function, pass values as arguments (JSON values), and define helper functions inside it."
        )


class HfJobDecoratedOperator(DecoratedOperator, HfUvJobOperator):
    """The operator behind ``@task.hf_job``: an :class:`HfUvJobOperator` whose script is the function.

    :param python_callable: the function (a plain ``def``, no closure).
    :param op_args: positional arguments (JSON values once resolved).
    :param op_kwargs: keyword arguments (JSON values once resolved).
    :param dependencies: requirements, written into the script's PEP 723 header.

    Everything else as :class:`HfUvJobOperator` (no ``script``/``script_args``: the function is the script).
    """

    custom_operator_name = "@task.hf_job"
    # The script is built from the function, never rendered: its source may hold "{{" legitimately.
    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *(name for name in HfUvJobOperator.template_fields if name not in ("script", "script_args")),
    )
    template_fields_renderers = {
        **{
            k: v
            for k, v in HfUvJobOperator.template_fields_renderers.items()
            if k not in ("script", "script_args")
        },
        **DecoratedOperator.template_fields_renderers,
    }

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        secret_arguments: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        check_function(python_callable)
        for name in ("script", "script_args"):
            if name in kwargs:
                raise TypeError(f"@task.hf_job takes no {name!r}: the decorated function is the script.")
        if kwargs.get("wait_for_completion") is False:
            raise HfJobsInputError(
                "@task.hf_job waits for its function's return value: wait_for_completion=False is not supported."
            )
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            script=_PLACEHOLDER_SCRIPT,
            **kwargs,
        )
        #: Parameters whose values are secret whatever the masker says (values it masks are secret anyway).
        self.secret_arguments = list(secret_arguments)
        # The script without arguments yet, so that a function too large fails when the DAG is parsed;
        # execute() builds it again with the arguments.
        self.script = build_function_script(self._function_source(), python_callable.__name__)
        self._check_script_size(self.script)
        if not getattr(self, "_BaseOperator__from_mapped", False):
            self._check_literal_arguments()

    # ------------------------------------------------------------------------------------------ the script
    def _function_source(self) -> str:
        """The function's source with its task decorators stripped, by Airflow's own helper."""
        try:
            return self.get_python_source()
        except (OSError, TypeError) as error:
            raise HfJobsInputError(
                f"@task.hf_job cannot read the source of {self.python_callable.__name__}() ({error}): define "
                "it in a DAG file."
            ) from None

    def _check_script_size(self, script: str) -> None:
        try:
            encode_script_source(script.encode("utf-8"))
        except HfJobsInputError:
            raise HfJobsInputError(
                f"Task {self.task_id!r}: {self.python_callable.__name__}() with its arguments is "
                f"{len(script.encode('utf-8')) // 1000} KB of script, over what a job spec carries (about 750 "
                "KB). Pass large inputs as a path in a volume (volumes=...) instead of as arguments."
            ) from None

    def _named_arguments(self) -> list[tuple[str, Any]]:
        """``op_args`` and ``op_kwargs``, each with the parameter name it binds to (for messages)."""
        names = list(inspect.signature(self.python_callable).parameters)
        named = [
            (names[position] if position < len(names) else f"#{position}", value)
            for position, value in enumerate(self.op_args or ())
        ]
        return named + list((self.op_kwargs or {}).items())

    def _check_literal_arguments(self) -> None:
        """At parse time, the arguments already known (no template, no XCom) must be JSON."""
        function_name = self.python_callable.__name__
        for name, value in self._named_arguments():
            if not self._holds_template(value):
                try:
                    check_json_argument(name, value, function_name=function_name)
                except HfJobsInputError as error:
                    raise HfJobsInputError(f"Task {self.task_id!r}: {error}") from None

    def _call_arguments(self, context: Any) -> tuple[list[Any], dict[str, Any]]:
        """The resolved arguments, plus the context values the function asks for by name (``ds``,
        ``run_id``, ``params`` ...: only plain JSON ones can travel), each checked to be JSON."""
        function_name = self.python_callable.__name__
        self.op_args = [_plain(value) for value in self.op_args or ()]
        self.op_kwargs = {name: _plain(value) for name, value in (self.op_kwargs or {}).items()}
        args, kwargs = list(self.op_args), dict(self.op_kwargs)
        parameters = list(inspect.signature(self.python_callable).parameters.values())
        from_context = []
        for position, parameter in enumerate(parameters):
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if position < len(args) or parameter.name in kwargs or parameter.name not in context:
                continue
            if parameter.kind is parameter.POSITIONAL_ONLY:
                continue
            kwargs[parameter.name] = context[parameter.name]
            from_context.append(parameter.name)
        for name, value in self._named_arguments() + [(name, kwargs[name]) for name in from_context]:
            try:
                check_json_argument(name, value, function_name=function_name)
            except HfJobsInputError as error:
                where = (
                    " It comes from the Airflow context (the function asks for it by name): only plain values "
                    "such as ds or run_id can travel; pass what the function needs as an argument instead."
                    if name in from_context
                    else ""
                )
                raise HfJobsInputError(f"Task {self.task_id!r}: {error}{where}") from None
        return args, kwargs

    def _build_script(self, context: Any) -> str:
        args, kwargs = self._call_arguments(context)
        args, kwargs = self._seal_secret_arguments(args, kwargs)
        script = build_function_script(
            self._function_source(),
            self.python_callable.__name__,
            args=args,
            kwargs=kwargs,
            dependencies=self.dependencies,
        )
        self._check_script_size(script)
        return script

    def _seal_secret_arguments(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Arguments whose value Airflow masks (a masked Variable, a connection password: ``***`` in the
        task log) or named in ``secret_arguments`` travel as job secrets, never in the script: the job's
        environment (``UV_SCRIPT_ENCODED``) is shown by the Jobs API and the job page."""
        marked = set(self.secret_arguments)
        names = list(inspect.signature(self.python_callable).parameters)
        positional = {index: name for index, name in enumerate(names)}

        def is_secret(name: str | None, value: str) -> bool:
            return name in marked or is_masked(value, name)

        # A positional argument is named after its parameter, so that secret_arguments and names apply.
        named = {**{positional.get(i, f"#{i}"): value for i, value in enumerate(args)}, **kwargs}
        sealed, secrets = seal_secret_arguments(named, is_secret)
        if not secrets:
            return args, kwargs
        taken = set(self.secrets or {}) | set(self.env or {})
        if clash := sorted(taken & set(secrets)):
            raise HfJobsInputError(
                f"Task {self.task_id!r}: {', '.join(clash)} is reserved for {self.python_callable.__name__}()'s "
                "secret arguments: name your env or secrets otherwise."
            )
        self.secrets = {**(self.secrets or {}), **secrets}
        self._mask_secrets()
        self.log.info(
            "%d argument value(s) of %s() that Airflow masks travel as job secrets (%s), not in the script.",
            len(secrets), self.python_callable.__name__, ", ".join(secrets),
        )  # fmt: skip
        values, keys = list(sealed.values()), list(sealed)
        return values[: len(args)], dict(zip(keys[len(args) :], values[len(args) :], strict=True))

    # -------------------------------------------------------------------------------------------- the run
    def execute(self, context: Any) -> Any:
        self.script = self._build_script(context)  # after templates and XComs are resolved
        return super().execute(context)

    def submit_job(self, context: Any, labels: dict[str, str]) -> JobInfo:
        """The dependencies are in the script's header, not ``uv run --with``."""
        return self.hook.run_uv_job(
            self.script, python=self.python, image=self.image, **self._create_arguments(labels)
        )

    def _finish(
        self,
        context: Any,
        job: JobInfo,
        log_tail: list[str],
        *,
        metrics: dict[str, Any] | None = None,
        stopped_by: GuardStop | None = None,
    ) -> Any:
        """The job's outcome as :class:`HfUvJobOperator`'s, then the function's: its return value, or its
        exception in the failure message."""
        function_name = self.python_callable.__name__
        if not job.stage.is_success:
            log_tail = log_tail or self._log_tail(job.id)
            found = decode_result(log_tail)
            try:
                super()._finish(context, job, log_tail, metrics=metrics, stopped_by=stopped_by)
            except HfJobFailedError as failure:
                if found is None or found[0] != "error":
                    raise
                raise HfJobFailedError(
                    f"{error_summary(found[1], function_name)}\n{failure}",
                    job_id=failure.job_id, stage=failure.stage, job_url=failure.job_url,
                ) from None  # fmt: skip
        super()._finish(context, job, log_tail, metrics=metrics)
        found = decode_result(log_tail)
        if found is None:
            try:
                tail = list(
                    self.hook.fetch_job_logs(job.id, namespace=self.job_namespace, tail=RESULT_TAIL_LINES)
                )
            except HfJobsError as error:
                raise HfJobsError(
                    f"Hugging Face job {job.id} COMPLETED, but its log (holding {function_name}()'s return value) "
                    f"could not be read: {error}"
                ) from None
            found = decode_result(tail)
        if found is None or found[0] != "value":
            raise HfJobsError(
                f"Hugging Face job {job.id} COMPLETED, but the end of its log holds no return value of "
                f"{function_name}() (did something in the job print after it, or exit the process?). {job.url}"
            )
        return found[1]


def hf_job_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> Any:
    """``@task.hf_job``: run the decorated function on Hugging Face Jobs (see :mod:`this module <.hf_job>`).

    Takes :class:`HfUvJobOperator`'s arguments (``flavor``, ``dependencies``, ``python``, ``secrets``,
    ``volumes``, ``timeout``, ``deferrable`` ...) and ``@task``'s (``multiple_outputs``, ``task_id`` ...).
    """
    if python_callable is not None:
        check_function(python_callable)
        return task_decorator_factory(
            python_callable=python_callable,
            multiple_outputs=multiple_outputs,
            decorated_operator_class=HfJobDecoratedOperator,
            **kwargs,
        )
    factory = task_decorator_factory(
        multiple_outputs=multiple_outputs, decorated_operator_class=HfJobDecoratedOperator, **kwargs
    )

    def decorator(function: Callable[..., Any]) -> Any:
        check_function(function)  # when the decorator is applied, before any task is made of it
        return factory(function)

    return decorator
