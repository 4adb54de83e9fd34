"""The operators' argument checks: at DAG parse time every argument whose value is known already, once
rendered when the task starts, with the rules the hook applies when it builds the request (and, for
``HfUvJobOperator``, where its script lies). Mixins of :mod:`airflow_provider_hfjobs.operators.hfjobs`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import conf

from airflow_provider_hfjobs.exceptions import HfJobsError, HfJobsInputError
from airflow_provider_hfjobs.guardrails import GUARDRAIL_ARGUMENTS, check_guardrail_arguments, flavor_fallback
from airflow_provider_hfjobs.jobs import (
    check_create_arguments,
    check_known_flavor,
    check_uv_arguments,
    check_uv_env,
    classify_uv_script,
    encode_script_source,
    validate_namespace,
)
from airflow_provider_hfjobs.task_side import check_poll_interval, extra_flavors

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator as _OperatorBase

    from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
else:
    _OperatorBase = object

#: What makes Airflow change a string when it renders it, with Jinja's default delimiters (a DAG's
#: ``jinja_environment_kwargs`` may add its own).
_JINJA_MARKS = ("{{", "{%", "{#")
_JINJA_MARK_OPTIONS = ("variable_start_string", "block_start_string", "comment_start_string")
_UV_ARGUMENTS = ("script_args", "dependencies", "python")


class RunArgumentChecks(_OperatorBase):
    """``HfJobRunOperator``'s checks of its arguments (and the base of every subclass's)."""

    if TYPE_CHECKING:  # the operator's, for the type checker only
        image: str
        command: list[str]
        flavor: str | list[str] | None
        env: Any
        labels: Any
        poll_interval: float

        @property
        def hook(self) -> HfJobsHook: ...

        def _create_arguments(self, labels: dict[str, str], *, followed: bool = True) -> dict[str, Any]: ...

        def _check_outputs_arguments(self, context: Any | None) -> None: ...

    def _check_known_arguments(self) -> None:
        """At DAG parse time, check every argument whose value is known already with the rules the hook
        applies when it builds the request, so that a mistake is a DAG import error naming the task rather
        than a failed run. An argument holding a template is checked once rendered, when the task starts.
        So is every argument of a mapped task: unmapping builds the operator again on the worker, from
        values that may come from XCom (see :meth:`_check_rendered_flavors` for their flavor)."""
        try:
            self.poll_interval = check_poll_interval(self.poll_interval)
            if not getattr(self, "_BaseOperator__from_mapped", False):
                self._check_arguments(None)
        except HfJobsInputError as error:
            raise type(error)(f"Task {self.task_id!r}: {error}") from None

    def _check_arguments(self, context: Any | None) -> None:
        """The hook's rules on the arguments known: all of them at run time (``context`` given, rendered),
        at parse time (``None``) those holding no template, plus the known-flavor check (the hook lets the
        server decide, since new flavors appear on the Hub; a literal off the list is almost always a typo;
        a rendered one too, unless the Hub lists it: :meth:`_check_rendered_flavors`)."""
        guards = {name: getattr(self, name) for name in GUARDRAIL_ARGUMENTS if self._known(name, context)}
        guardrails = check_guardrail_arguments(**guards)
        flavors = flavor_fallback(self.flavor) if self._known("flavor", context) else []
        if len(flavors) > 1 and "max_scheduling_time" in guards and guardrails["max_scheduling_time"] is None:
            raise HfJobsInputError(
                f"flavor is a list ({', '.join(flavors)}): a fallback order needs max_scheduling_time (how long "
                "a job may wait on one flavor before the next is tried), e.g. max_scheduling_time='10m'; or "
                "give one flavor."
            )
        self._check_outputs_arguments(context)  # outputs=, inputs=, checkpoint_dir= (operators/outputs.py)
        arguments = {
            name: value for name, value in self._job_arguments().items() if self._known(name, context)
        }
        if namespace := arguments.pop("namespace", None):
            validate_namespace(namespace)
        for flavor in flavors[1:]:  # the first is checked with the other create arguments
            check_create_arguments(flavor=flavor)
        check_create_arguments(**arguments)
        if context is None:
            for flavor in flavors:
                check_known_flavor(flavor, extra_flavors())
        else:
            self._check_rendered_flavors(flavors)

    def _check_rendered_flavors(self, flavors: list[str]) -> None:
        """At run time, before any job is created, a flavor that was a template (or came from XCom, or a
        mapped task's values) gets the literal's check and its "did you mean": a name off the provider's
        list and ``[hfjobs] extra_flavors`` is accepted only if the Hub's hardware list names it (one
        request, only then: a flavor newer than this provider works); if that list cannot be read, the
        server decides."""
        known = extra_flavors()
        unknown = []
        for flavor in flavors:
            try:
                check_known_flavor(flavor, known)
            except HfJobsInputError as refusal:
                unknown.append((flavor, refusal))
        if not unknown:
            return
        try:
            listed = {hardware.name for hardware in self.hook.list_jobs_hardware()}
        except HfJobsError as exc:
            self.log.info(
                "Could not read the Hub's hardware list to check flavor %s (%s).", unknown[0][0], exc
            )
            return
        for flavor, refused in unknown:
            if flavor not in listed:
                raise refused

    def _job_arguments(self) -> dict[str, Any]:
        """The hook's create arguments (without the task instance labels), by operator attribute name."""
        return {"image": self.image, "command": self.command, **self._create_arguments(self.labels)}

    def _known(self, name: str, context: Any | None) -> bool:
        """Is the argument's value known: always at run time; at parse time unless it is a template field
        holding a template."""
        return (
            context is not None
            or name not in self.template_fields
            or not self._holds_template(getattr(self, name))
        )

    def _holds_template(self, value: Any) -> bool:
        """Would rendering change ``value``: a string with a Jinja mark (or a template file name, by
        ``template_ext``), an ``XComArg``/``MappedArgument`` (anything resolved when rendered), an object with
        template fields of its own, or a collection holding one. As Airflow's ``render_template`` walks it."""
        if isinstance(value, str):
            return any(mark in value for mark in self._jinja_marks()) or (
                bool(self.template_ext) and value.endswith(tuple(self.template_ext))
            )
        if not isinstance(value, os.PathLike) and (
            hasattr(value, "resolve") or hasattr(value, "as_setup") or hasattr(value, "template_fields")
        ):
            return True
        if isinstance(value, Mapping):
            return any(self._holds_template(item) for item in value.values())
        if isinstance(value, (list, tuple, set, frozenset)):
            return any(self._holds_template(item) for item in value)
        return False

    def _jinja_marks(self) -> tuple[str, ...]:
        options = getattr(self._dag_of(None), "jinja_environment_kwargs", None) or {}
        return (
            *_JINJA_MARKS,
            *(options[key] for key in _JINJA_MARK_OPTIONS if isinstance(options.get(key), str)),
        )

    def _dag_of(self, context: Any | None) -> Any:
        """The task's DAG: the context's at run time, else the one it was created in, if any."""
        dag = (context or {}).get("dag")
        if dag is None:
            # "not assigned to a Dag yet" (RuntimeError, AirflowException)
            with contextlib.suppress(Exception):
                dag = self.dag
        return dag


class UvArgumentChecks(RunArgumentChecks):
    """``HfUvJobOperator``'s own checks: ``run_uv_job``'s rules, and where a local script lies."""

    if TYPE_CHECKING:
        script: str
        allow_script_outside_dags_folder: bool

    def _check_arguments(self, context: Any | None) -> None:
        """``run_uv_job``'s rules first (the script, its arguments, ``env`` not taking the script's
        variable), then the create's."""
        kind = self._script_kind(context) if self._known("script", context) else None
        check_uv_arguments(
            **{name: getattr(self, name) for name in _UV_ARGUMENTS if self._known(name, context)}
        )
        if kind == "inline":  # a file's size is checked when the hook reads it
            encode_script_source(self.script.encode("utf-8"))
        if kind is not None and self._known("env", context):
            check_uv_env(self.env, kind)
        super()._check_arguments(context)

    def _script_kind(self, context: Any | None) -> str | None:
        """What ``script`` is (:func:`classify_uv_script`), a file looked for where the task will look at
        run time (beside the DAG file; a missing one is an error). At parse time an operator not in a DAG
        yet cannot tell where a relative name lies: ``None`` then, after the checks that need no disk."""
        dag = self._dag_of(context)
        if context is None and dag is None:
            kind = classify_uv_script(self.script)  # the rules that need no look at the disk
            if kind in ("inline", "url"):
                return kind
            if not Path(self.script).expanduser().is_absolute():
                return None
            return self._resolve_script(None, folder_rule=False)[0]  # without the DAG's own folder yet
        return self._resolve_script(dag)[0]

    def _script_path(self, context: Any) -> str:
        """What the hook gets as ``script``: a local file resolved (see :meth:`_resolve_script`), else the
        URL, source or command as given."""
        return self._resolve_script(self._dag_of(context))[1]

    def _resolve_script(self, dag: Any, *, folder_rule: bool = True) -> tuple[str, str]:
        """The script's kind and what the hook gets. A relative script path is relative to the DAG file, not
        to wherever the worker runs; the file must lie under the DAG folder or the DAG file's folder
        (symlinks and ``..`` resolved first)."""
        script = self.script
        fileloc = getattr(dag, "fileloc", None)
        dag_dir = Path(fileloc).parent if fileloc else None

        def beside_dag(name: str) -> Path:
            path = Path(name).expanduser()
            return dag_dir / path if not path.is_absolute() and dag_dir is not None else path

        # A bare name is a command (``lighteval``) unless such a file lies beside the DAG.
        location = str(beside_dag(script)) if isinstance(script, str) and script.strip() else None
        kind = classify_uv_script(script, is_file=lambda name: beside_dag(name).is_file(), location=location)
        if kind != "file":
            return kind, script
        resolved = beside_dag(script).resolve()
        if self.allow_script_outside_dags_folder or not folder_rule:
            return kind, str(resolved)
        roots = {Path(conf.get("core", "dags_folder")).expanduser().resolve()}
        if dag_dir is not None:
            roots.add(dag_dir.resolve())
        if not any(resolved.is_relative_to(root) for root in roots):
            raise HfJobsInputError(
                f"script {script!r} is outside the DAG folder ({', '.join(sorted(map(str, roots)))}): put the "
                "script beside your DAGs, or pass allow_script_outside_dags_folder=True if shipping that file "
                "into the job is intended."
            )
        return kind, str(resolved)
