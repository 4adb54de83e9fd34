"""The provider info passes the checks Airflow runs on its own providers (apache/airflow's
``scripts/in_container/run_provider_yaml_files_check.py``), done here on this package:

- it is valid against Airflow's ``provider_info.schema.json`` (what ``ProvidersManager`` validates);
- every module of a ``hooks``/``operators``/``sensors``/``triggers`` folder is declared, and every declared
  one belongs to the package and imports without a provider deprecation warning;
- integration names are declared and unique per resource type; the connection type's ``hook-class-name``,
  the extra links and the task decorator are classes / callables that exist;
- the Airflow 2.11 connection form (``get_connection_form_widgets``, ``get_ui_field_behaviour``) says what
  Airflow 3 reads from ``conn-fields`` and ``ui-field-behaviour``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hfjobs.get_provider_info import get_provider_info

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "airflow_provider_hfjobs"
RESOURCE_TYPES = ("sensors", "operators", "hooks", "triggers", "bundles")


def _declared_modules(resource_type: str) -> set[str]:
    return {
        m for entry in get_provider_info().get(resource_type, []) for m in entry.get("python-modules", [])
    }


def _found_modules(resource_type: str) -> set[str]:
    """As Airflow's check finds them: every ``.py`` file (``__init__.py`` aside) in a folder of that name."""
    package_dir = REPO / PACKAGE
    files = {*package_dir.glob(f"**/{resource_type}/*.py"), *package_dir.glob(f"**/{resource_type}/**/*.py")}
    return {".".join(f.relative_to(REPO).with_suffix("").parts) for f in files if f.name != "__init__.py"}


def test_the_provider_info_is_valid_against_airflows_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((importlib.resources.files("airflow") / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


@pytest.mark.parametrize("resource_type", RESOURCE_TYPES)
def test_every_module_of_a_resource_folder_is_declared(resource_type: str) -> None:
    declared, found = _declared_modules(resource_type), _found_modules(resource_type)
    assert declared == found, (
        f"{resource_type}: not declared in get_provider_info: {sorted(found - declared)}; "
        f"declared but no such file: {sorted(declared - found)}"
    )
    assert all(m.startswith(f"{PACKAGE}.") for m in declared)


def test_every_declared_module_imports_without_a_deprecation_warning() -> None:
    """In a fresh interpreter (as Airflow's check: ``PYTHONWARNINGS=default``), so that each import runs."""
    modules = sorted(set().union(*(_declared_modules(r) for r in RESOURCE_TYPES)))
    probe = (
        "import importlib, json, sys, warnings\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        module = importlib.import_module(name)\n"
        "    bad += [f'{name}: {w.category.__name__}: {w.message}' for w in caught\n"
        "            if 'ProviderDeprecation' in w.category.__name__ or 'airflow_provider_hfjobs' in w.filename]\n"
        "print(json.dumps(bad))\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "default", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run(
        [sys.executable, "-c", probe, *modules],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("resource_type", RESOURCE_TYPES)
def test_integration_names_are_declared_and_not_repeated(resource_type: str) -> None:
    info = get_provider_info()
    integrations = {i["integration-name"] for i in info["integrations"]}
    names = Counter(entry["integration-name"] for entry in info.get(resource_type, []))
    assert set(names) <= integrations and all(count == 1 for count in names.values()), names


def _import(dotted: str) -> Any:
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _connection_type() -> dict[str, Any]:
    (conn,) = get_provider_info()["connection-types"]
    return conn


def test_the_connection_types_hook_class_exists_and_says_that_type() -> None:
    conn = _connection_type()
    assert conn["hook-class-name"].startswith(f"{PACKAGE}.")
    hook = _import(conn["hook-class-name"])
    assert inspect.isclass(hook)
    assert hook.conn_type == conn["connection-type"] == "hf_jobs"
    assert hook.hook_name == conn["hook-name"]
    assert hook.conn_name_attr and hook.default_conn_name


def test_the_extra_links_and_the_task_decorator_exist() -> None:
    info = get_provider_info()
    for link in info["extra-links"]:
        assert link.startswith(f"{PACKAGE}.") and inspect.isclass(_import(link))
    for decorator in info["task-decorators"]:
        assert callable(_import(decorator["class-name"]))


def test_the_2_11_field_behaviour_is_the_ui_field_behaviour() -> None:
    conn = _connection_type()
    behaviour = _import(conn["hook-class-name"]).get_ui_field_behaviour()
    declared = conn["ui-field-behaviour"]
    assert behaviour == {
        "hidden_fields": declared["hidden-fields"],
        "relabeling": declared["relabeling"],
        "placeholders": declared["placeholders"],
    }


def test_the_2_11_form_widgets_are_the_conn_fields() -> None:
    """Airflow 2.11 builds its form from ``get_connection_form_widgets`` (wtforms, not installed with 3.x),
    Airflow 3 from ``conn-fields``: the same fields, types, labels and defaults."""
    wtforms = pytest.importorskip("wtforms")
    pytest.importorskip("flask_appbuilder")
    conn = _connection_type()
    widgets = _import(conn["hook-class-name"]).get_connection_form_widgets()
    fields = conn["conn-fields"]
    assert set(widgets) == set(fields)
    kinds = {"string": wtforms.StringField, "boolean": wtforms.BooleanField, "integer": wtforms.IntegerField}
    for name, field in fields.items():
        widget = widgets[name]
        (kind,) = (t for t in field["schema"]["type"] if t != "null")
        assert widget.field_class is kinds[kind], (name, widget.field_class)
        assert str(widget.args[0]) == field["label"], (name, str(widget.args[0]))
        if "default" in field["schema"]:
            assert widget.kwargs.get("default") == field["schema"]["default"], name
