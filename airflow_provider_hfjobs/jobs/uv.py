"""uv jobs: what a ``script`` is (file, URL, inline source or command) and the command and environment
that run it, as ``huggingface_hub``'s ``run_uv_job``.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.jobs.validation import MAX_LABEL_LENGTH, _sanitize_name
from airflow_provider_hfjobs.reports import HELPER_ENV, HELPER_MODULE, OUTPUTS_ENV

DEFAULT_UV_IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"


#: Inline uv scripts travel base64-encoded in one environment variable; the API takes about 1 MB there.
MAX_INLINE_SCRIPT_ENCODED_BYTES = 1_000_000
UV_SCRIPT_ENV = "UV_SCRIPT_ENCODED"


#: A uv ``script`` that is a plain command (``lighteval``, ``python``): a program name, nothing more.
_COMMAND_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*\Z")
#: A missing script with one of these endings is a missing file, never a command (``huggingface_hub``).
UV_FILE_SUFFIXES = (".py", ".sh", ".yaml", ".yml", ".toml")


def classify_uv_script(
    script: str, *, is_file: Callable[[str], bool] | None = None, location: str | None = None
) -> str:
    """What a uv ``script`` is: ``"inline"`` (Python source: it has a line break), ``"url"`` (https),
    ``"file"`` or ``"command"`` (a program such as ``lighteval``, run as ``uv run lighteval``).

    With ``is_file`` (the caller's look at its disk) the rule is ``huggingface_hub``'s: an existing file
    is a file; a missing one that ends in .py/.sh/.yaml/.yml/.toml or has a path separator is the clear
    "does not exist" error; anything else is a command if it is a program name. Without it (no look
    yet), anything path-like is a ``"file"``. An ``http://`` URL is refused: the job runs the script with
    its secrets, and anyone on the path could swap it. ``location``: where ``is_file`` looked, for the
    message (an operator looks beside the DAG file)."""
    if not isinstance(script, str) or not script.strip():
        raise HfJobsInputError(
            "script is required: a local .py path, an https URL, inline Python source, or a command such as "
            "'lighteval'."
        )
    if "\n" in script:
        return "inline"
    scheme = script.split("://", 1)[0].lower() if "://" in script else ""
    if scheme == "https":
        return "url"
    if scheme == "http":
        raise HfJobsInputError(
            f"script URL {script!r} is plain http: the job runs it with its secrets, and anyone on the way "
            "could change it. Serve it over https."
        )
    path_like = "/" in script or "\\" in script or script.lower().endswith(UV_FILE_SUFFIXES)
    if is_file is None:
        return "file" if path_like or not _COMMAND_RE.match(script) else "command"
    if is_file(script):
        return "file"
    if path_like:
        looked = f" (looked for {location})" if location and location != script else ""
        raise HfJobsInputError(
            f"script file {script!r} does not exist{looked}: pass an existing .py path, an https URL, inline "
            "Python source, or a command such as 'lighteval'."
        )
    if not _COMMAND_RE.match(script):
        raise HfJobsInputError(
            f"script {script!r} is no file, https URL, inline source (several lines) or command name: pass "
            "the program as script and its arguments as script_args, e.g. run_uv_job('python', "
            "script_args=['-c', 'print(1)'])."
        )
    return "command"


def _validate_script_args(script_args: Sequence[str] | None) -> list[str]:
    args = list(script_args or [])
    for position, part in enumerate(args):
        if not isinstance(part, str):
            raise HfJobsInputError(
                f"script_args[{position}] must be a string; got {type(part).__name__} {part!r}."
            )
    return args


def _validate_dependencies(dependencies: Sequence[str] | None) -> list[str]:
    for dep in dependencies or []:
        if not isinstance(dep, str) or not dep.strip():
            raise HfJobsInputError(
                f"dependencies must be requirement strings such as 'torch>=2.3'; got {dep!r}."
            )
    return list(dependencies or [])


def _validate_python(python: str | None) -> str | None:
    if python is not None and (not isinstance(python, str) or not python.strip()):
        raise HfJobsInputError(f"python must be a version string such as '3.12'; got {python!r}.")
    return python


_UV_ARGUMENT_RULES: dict[str, Callable[[Any], Any]] = {
    "script_args": _validate_script_args,
    "dependencies": _validate_dependencies,
    "python": _validate_python,
}


def check_uv_arguments(**known: Any) -> dict[str, Any]:
    """Check the uv arguments given (``script_args``, ``dependencies``, ``python``), and only those, as
    :func:`check_create_arguments` does for the create's; :func:`build_uv_command` gives all three."""
    if unknown := sorted(set(known) - set(_UV_ARGUMENT_RULES)):
        raise TypeError(f"check_uv_arguments() got unexpected arguments: {', '.join(unknown)}")
    return {name: rule(known[name]) for name, rule in _UV_ARGUMENT_RULES.items() if name in known}


def encode_script_source(script_source: bytes) -> str:
    """Script source as it travels in ``UV_SCRIPT_ENCODED``: base64, within what the API takes there."""
    encoded = base64.b64encode(script_source).decode("ascii")
    if len(encoded) > MAX_INLINE_SCRIPT_ENCODED_BYTES:
        limit_kb = MAX_INLINE_SCRIPT_ENCODED_BYTES * 3 // 4 // 1000
        raise HfJobsInputError(
            f"script is {len(script_source) // 1000} KB; scripts sent inside the job spec are limited to about "
            f"{limit_kb} KB. Serve it at an http(s) URL (or from a Hub repo) and pass the URL as script."
        )
    return encoded


def check_uv_env(env: Mapping[str, Any] | None, kind: str) -> None:
    """A file or inline script travels in ``UV_SCRIPT_ENCODED`` (see :func:`build_uv_command`): ``env``
    may not set it. ``kind`` is :func:`classify_uv_script`'s."""
    if kind in ("file", "inline") and isinstance(env, Mapping) and UV_SCRIPT_ENV in env:
        raise HfJobsInputError(f"env may not set {UV_SCRIPT_ENV}: it carries the script.")


def build_uv_command(
    *,
    script_args: list[str] | None = None,
    dependencies: list[str] | None = None,
    python: str | None = None,
    script_url: str | None = None,
    script_source: bytes | None = None,
    script_name: str = "script.py",
    script_command: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The job command (and extra environment) of a uv job.

    A URL or a command runs directly (``uv run ... <url or command> <args>``, as ``huggingface_hub``
    does). Source code travels
    inside the job spec, base64 in ``UV_SCRIPT_ENCODED``, and the command decodes it into the job's own
    working directory, so nothing is uploaded to a Hub repo or bucket; so is the report helper when the
    job's environment carries it (``HFJOBS_REPORT_HELPER``, set by ``HfUvJobOperator``: see
    :mod:`airflow_provider_hfjobs.reports`). Script arguments are passed to ``bash -c`` as positional
    parameters, so they need no quoting.
    """
    checked = check_uv_arguments(script_args=script_args, dependencies=dependencies, python=python)
    args = checked["script_args"]
    uv_args: list[str] = []
    for dep in checked["dependencies"]:
        uv_args += ["--with", dep]
    if python is not None:
        uv_args += ["--python", python]
    direct = [target for target in (script_url, script_command) if target is not None]
    if len(direct) + (script_source is not None) != 1:
        raise HfJobsInputError("give exactly one of a script URL, a command and script source.")
    if direct:
        return ["uv", "run", *uv_args, direct[0], *args], {}
    assert script_source is not None
    encoded = encode_script_source(script_source)
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", script_name) or "script.py"
    if not safe_name.endswith(".py"):
        safe_name += ".py"
    uv_line = " ".join(shlex.quote(part) for part in ["uv", "run", *uv_args])
    # The report helper (an operator's job has it in HFJOBS_REPORT_HELPER) beside the script, importable
    # there as ``hfjobs_report``; without the variable (the hook's own jobs) the clause does nothing.
    helper = f'{{ [ -z "${{{HELPER_ENV}:-}}" ] || printf %s "${HELPER_ENV}" | base64 -d > {HELPER_MODULE}.py; }} && '
    # With outputs (HFJOBS_OUTPUTS_DIR, see airflow_provider_hfjobs.outputs) and the helper, the script is run,
    # then the helper reports the files it left there (the task's manifest), and the script's status is kept.
    outputs = (
        f'if [ -n "${{{OUTPUTS_ENV}:-}}" ] && [ -f {HELPER_MODULE}.py ]; then {uv_line} "$0" "$@"; s=$?; '
        f"python3 {HELPER_MODULE}.py --outputs || uv run --no-project {HELPER_MODULE}.py --outputs; exit $s; fi; "
    )
    shell = (
        f'printf %s "${UV_SCRIPT_ENV}" | base64 -d > "$0" && {helper}{{ {outputs}exec {uv_line} "$0" "$@"; }}'
    )
    return ["bash", "-c", shell, safe_name, *args], {UV_SCRIPT_ENV: encoded}


def default_uv_job_name(script: str, script_args: list[str]) -> str:
    """The ``name`` label ``huggingface_hub`` gives a uv job: script stem + hash of script and arguments."""
    if "\n" in script:
        stem = "inline-script"
    else:
        stem = script.split("?", 1)[0].split("#", 1)[0].rstrip("/").split("/")[-1]
        stem = stem.removesuffix(".py")
    digest = hashlib.sha256("\x00".join([script, *script_args]).encode()).hexdigest()[:8]
    return f"{_sanitize_name(stem or 'script')[: MAX_LABEL_LENGTH - 9]}-{digest}"


def uv_job_command(
    script: str,
    kind: str,
    *,
    script_args: list[str] | None = None,
    dependencies: list[str] | None = None,
    python: str | None = None,
    read_file: Callable[[str], bytes] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command and extra environment of a uv job whose ``script`` is of ``kind``
    (:func:`classify_uv_script`); a ``"file"`` is read with ``read_file`` (the caller's disk)."""
    uv: dict[str, Any] = {"script_args": script_args, "dependencies": dependencies, "python": python}
    if kind == "file":
        if read_file is None:
            raise HfJobsInputError(f"script file {script!r} cannot be read here: pass its source instead.")
        name = posixpath.basename(script)
        return build_uv_command(**uv, script_source=read_file(script), script_name=name or "script.py")
    if kind == "inline":
        return build_uv_command(**uv, script_source=script.encode("utf-8"))
    if kind == "url":
        return build_uv_command(**uv, script_url=script)
    return build_uv_command(**uv, script_command=script)
