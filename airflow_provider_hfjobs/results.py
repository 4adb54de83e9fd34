"""A function's return value (or its error) through the job's log: the one rule, sans-IO.

``@task.hf_job`` runs a Python function of the DAG as a UV script (:func:`build_function_script`). The
script's runner prints what the function returned, or the exception it raised, as *result lines*:

    ::hfjobs-result::value 1/2 <base64 of the JSON, first part>
    ::hfjobs-result::value 2/2 <the rest>

``value`` or ``error``, the part number and count, then base64 (immune to any whitespace handling on the
way; parts of :data:`CHUNK_CHARS` characters, far below the log line limits of the Hub and of this
provider's stream reader). The task reads the log's tail once the job is over and takes the last complete
group (:func:`decode_result`); the lines themselves never reach the task log (:func:`is_result_line`).

The runner inside the job is generated from the constants here, so both sides always agree. It also
makes the report helper (:mod:`airflow_provider_hfjobs.reports`) importable in the function as
``hfjobs_report``, without installing anything.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from airflow_provider_hfjobs.exceptions import HfJobsInputError

#: What starts every result line. Lines starting so are never shown in a task log.
RESULT_PREFIX = "::hfjobs-result::"
#: Most bytes of the JSON of a return value (what goes through the log, and then into XCom).
MAX_RESULT_BYTES = 512 * 1024
#: Base64 characters per result line.
CHUNK_CHARS = 4000
#: Most lines one group can take (the largest value, base64, in parts), and so how many lines of the log's
#: tail to read for it (plus a margin for lines printed after it).
MAX_RESULT_LINES = -(-(MAX_RESULT_BYTES * 4 // 3 + 4) // CHUNK_CHARS)
RESULT_TAIL_LINES = MAX_RESULT_LINES + 50
#: The error group: the message and this many of the last frames.
MAX_ERROR_MESSAGE_CHARS = 2000
MAX_ERROR_FRAMES = 5
KINDS = ("value", "error")


def encode_result_lines(kind: str, payload: str) -> list[str]:
    """The lines carrying ``payload`` (JSON text) as a ``kind`` group."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    data = base64.b64encode(payload.encode("utf-8")).decode("ascii")
    chunks = [data[i : i + CHUNK_CHARS] for i in range(0, len(data), CHUNK_CHARS)] or [""]
    return [f"{RESULT_PREFIX}{kind} {n}/{len(chunks)} {chunk}" for n, chunk in enumerate(chunks, 1)]


def is_result_line(text: str) -> bool:
    """Is this log line one of the runner's result lines (never shown in a task log)?"""
    return isinstance(text, str) and text.startswith(RESULT_PREFIX)


def visible_lines(texts: Iterable[str]) -> list[str]:
    """The log lines a person should see: without result lines."""
    return [text for text in texts if not is_result_line(text)]


def _parse(text: str) -> tuple[str, int, int, str] | None:
    try:
        kind, position, chunk = text[len(RESULT_PREFIX) :].split(" ", 2)
        number, total = (int(part) for part in position.split("/"))
    except ValueError:
        return None
    if kind not in KINDS or not 1 <= number <= total:
        return None
    return kind, number, total, chunk.strip()


def decode_result(texts: Sequence[str]) -> tuple[str, Any] | None:
    """The last complete group among ``texts`` (``("value", value)`` or ``("error", info)``), or ``None``.

    Other lines may come between a group's lines; an incomplete or garbled group is skipped."""
    parsed = [found for text in texts if is_result_line(text) and (found := _parse(text)) is not None]
    end = len(parsed)
    while end > 0:
        kind, number, total, _ = parsed[end - 1]
        start = end - total
        group = parsed[start:end] if start >= 0 and number == total else []
        if group and all(g[0] == kind and g[1] == i and g[2] == total for i, g in enumerate(group, 1)):
            try:
                payload = base64.b64decode("".join(g[3] for g in group), validate=True).decode("utf-8")
                return kind, json.loads(payload)
            except ValueError:
                pass
        end -= 1
    return None


def error_summary(info: Any, function_name: str) -> str:
    """One paragraph for a failure message from an ``error`` group: the exception and its last frames."""
    if not isinstance(info, dict):
        return f"{function_name}() failed in the job."
    text = f"{function_name}() raised {info.get('type') or 'an exception'}"
    text += f": {info['message']}" if info.get("message") else ""
    frames = [str(frame) for frame in info.get("frames") or []]
    if frames:
        text += "\n" + "\n".join(f"  {frame}" for frame in frames)
    return text


# -------------------------------------------------------------------------------------------- arguments
def check_json_argument(name: str, value: Any, *, function_name: str) -> None:
    """``@task.hf_job`` arguments travel as JSON: anything else is refused, naming the argument."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        raise HfJobsInputError(
            f"argument {name!r} of {function_name}() is a {type(value).__name__}, which cannot travel to the "
            f"job as JSON ({error}). Pass JSON values (str, int, float, bool, None, lists and dicts of them), "
            "or a path in a volume for anything larger or richer."
        ) from None


def encode_arguments(args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    return json.dumps({"args": list(args), "kwargs": kwargs})


#: A secret argument's stand-in in the script: ``{SECRET_REFERENCE: "<job secret name>"}``; the runner puts
#: the value from the job's environment back before calling the function.
SECRET_REFERENCE = "__hfjobs_secret__"
#: The job secret names that carry secret arguments (``HFJOBS_SECRET_ARG_1`` ...).
SECRET_ARGUMENT_PREFIX = "HFJOBS_SECRET_ARG_"


def seal_secret_arguments(
    named: dict[str, Any], is_secret: Callable[[str | None, str], bool]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The arguments (by parameter name) with every string ``is_secret(name, value)`` calls secret replaced
    by a reference to a job secret, and those secrets (name to value): a secret argument then travels as the
    job's ``secrets`` do (names only on the API and the job page), never in the script that the job's
    environment shows (``UV_SCRIPT_ENCODED``). Strings are looked at anywhere in the JSON values, under
    the name of their dict key, else of the argument."""
    secrets: dict[str, str] = {}

    def seal(name: str | None, value: Any) -> Any:
        if isinstance(value, str):
            if not is_secret(name, value):
                return value
            reference = f"{SECRET_ARGUMENT_PREFIX}{len(secrets) + 1}"
            secrets[reference] = value
            return {SECRET_REFERENCE: reference}
        if isinstance(value, dict):
            return {key: seal(key if isinstance(key, str) else name, item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [seal(name, item) for item in value]
        return value

    return {key: seal(key, value) for key, value in named.items()}, secrets


# --------------------------------------------------------------------------------------------- the script
_RUNNER = """

# ---- airflow-provider-hfjobs runner: calls the function above, prints its result for the task --------
def _hfjobs_run(function, arguments):
    import base64
    import json
    import os
    import sys
    import traceback
    import types

    # ``from hfjobs_report import report_progress`` in the function: nothing to install (see reports.py)
    helper = types.ModuleType(@@HELPER_MODULE@@)
    exec(compile(@@HELPER_SOURCE@@, @@HELPER_MODULE@@ + ".py", "exec"), helper.__dict__)
    sys.modules.setdefault(@@HELPER_MODULE@@, helper)

    def emit(stream, kind, payload):
        data = base64.b64encode(payload.encode("utf-8")).decode("ascii")
        chunks = [data[i : i + @@CHUNK_CHARS@@] for i in range(0, len(data), @@CHUNK_CHARS@@)] or [""]
        sys.stdout.flush()
        sys.stderr.flush()
        stream.write("".join(
            f"{@@RESULT_PREFIX@@}{kind} {n}/{len(chunks)} {chunk}\\n" for n, chunk in enumerate(chunks, 1)
        ))
        stream.flush()

    name = getattr(function, "__name__", "function")

    def unseal(value):  # a secret argument travelled as a job secret: its value is in the environment
        if isinstance(value, dict):
            if set(value) == {@@SECRET_REFERENCE@@}:
                return os.environ[value[@@SECRET_REFERENCE@@]]
            return {key: unseal(item) for key, item in value.items()}
        if isinstance(value, list):
            return [unseal(item) for item in value]
        return value

    try:
        arguments = unseal(json.loads(arguments))
        value = function(*arguments["args"], **arguments["kwargs"])
        if os.environ.get(@@OUTPUTS_ENV@@):  # the try's outputs: a manifest line per file (reports.py)
            entry = helper.output_entry(value) if isinstance(value, str) else None
            helper.report_outputs()
            if entry is not None:  # a returned path under /outputs comes back as its manifest entry
                value = {**entry, "uri": os.environ.get(@@OUTPUTS_URI_ENV@@, "").rstrip("/") + "/" + entry["path"]}
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"the return value of {name}() cannot travel back as JSON ({error}); return JSON values "
                "(str, int, float, bool, None, lists and dicts of them), or write files to a bucket volume "
                "and return their path"
            ) from None
        size = len(text.encode("utf-8"))
        if size > @@MAX_RESULT_BYTES@@:
            raise ValueError(
                f"the return value is {size} bytes, over the limit of @@MAX_RESULT_BYTES@@ bytes (@@MAX_RESULT_KIB@@ KiB); "
                "write large results to a bucket volume and return its path"
            )
    except BaseException as error:
        traceback.print_exc()
        frames = traceback.extract_tb(error.__traceback__)[1:][-@@MAX_ERROR_FRAMES@@:]
        info = {
            "type": type(error).__qualname__,
            "message": str(error)[:@@MAX_ERROR_MESSAGE_CHARS@@],
            "frames": [
                f"line {frame.lineno}, in {frame.name}: {(frame.line or '').strip()}" for frame in frames
            ],
        }
        emit(sys.stderr, "error", json.dumps(info))
        sys.exit(1)
    emit(sys.stdout, "value", text)


if __name__ == "__main__":
    _hfjobs_run(@@FUNCTION@@, @@ARGUMENTS@@)
"""


def runner_source(function_name: str, arguments_json: str) -> str:
    """The runner, with this module's constants written into it (and the report helper's source)."""
    from airflow_provider_hfjobs.outputs import OUTPUTS_URI_ENV
    from airflow_provider_hfjobs.reports import (  # (reports reads results)
        HELPER_MODULE,
        OUTPUTS_ENV,
        helper_source,
    )

    constants = {
        "HELPER_MODULE": repr(HELPER_MODULE),
        "HELPER_SOURCE": repr(helper_source()),
        "OUTPUTS_ENV": repr(OUTPUTS_ENV),
        "OUTPUTS_URI_ENV": repr(OUTPUTS_URI_ENV),
        "RESULT_PREFIX": repr(RESULT_PREFIX),
        "CHUNK_CHARS": repr(CHUNK_CHARS),
        "MAX_RESULT_BYTES": repr(MAX_RESULT_BYTES),
        "MAX_RESULT_KIB": repr(MAX_RESULT_BYTES // 1024),
        "MAX_ERROR_FRAMES": repr(MAX_ERROR_FRAMES),
        "MAX_ERROR_MESSAGE_CHARS": repr(MAX_ERROR_MESSAGE_CHARS),
        "FUNCTION": function_name,
        "ARGUMENTS": repr(arguments_json),
        "SECRET_REFERENCE": repr(SECRET_REFERENCE),
    }
    return re.sub(r"@@([A-Z_]+)@@", lambda match: constants[match.group(1)], _RUNNER)


def script_header(dependencies: Sequence[str] | None) -> str:
    """The PEP 723 block: the function's ``dependencies`` (JSON strings are TOML basic strings)."""
    deps = ", ".join(json.dumps(dep) for dep in dependencies or [])
    return f"# /// script\n# dependencies = [{deps}]\n# ///\n"


def build_function_script(
    source: str,
    function_name: str,
    *,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    dependencies: Sequence[str] | None = None,
) -> str:
    """The UV script of a ``@task.hf_job`` function: a PEP 723 header, the function's source (decorators
    stripped by the caller) and the runner that calls it with ``args``/``kwargs`` (JSON) and prints its
    result lines. Annotations stay unevaluated (``from __future__ import annotations``): the DAG file's
    imports for them do not exist in the job."""
    if not function_name.isidentifier():
        raise HfJobsInputError(f"@task.hf_job needs a named function; got {function_name!r}.")
    return (
        script_header(dependencies)
        + f'"""{function_name}() of a DAG, run by @task.hf_job (airflow-provider-hfjobs)."""\n\n'
        + "from __future__ import annotations\n\n"
        + source.rstrip()
        + "\n"
        + runner_source(function_name, encode_arguments(args, kwargs or {}))
    )
