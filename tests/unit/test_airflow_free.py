"""The ``airflow_free`` marker's claim, checked: ``make test`` runs those modules in one Airflow leg only, which
is the same test only if they use nothing of Airflow and everything they do use is pinned to the same version
in both constraints files."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = sorted((REPO / "constraints").glob("airflow-*.txt"))
#: What an airflow-free test may use at run time without importing it at module level: the browser driver
#: and the ``hf`` CLI (the official client's entry point, run as a process).
RUN_TIME_DISTRIBUTIONS = ("playwright", "huggingface_hub")
#: Imported when installed, by code paths the local server does not take; installed with Airflow 3 only.
OPPORTUNISTIC = {
    "a2wsgi": "uvicorn.middleware.wsgi (the server is ASGI)",
    "watchfiles": "uvicorn's reloader (never on)",
    "sniffio": "anyio's async-library detection (asyncio without it)",
}
#: Names that mean Airflow: its package, the provider's Airflow glue, the suite's Airflow helpers and the
#: fixtures that make an Airflow hook.
AIRFLOW_USES = re.compile(
    r"^\s*(from|import)\s+airflow\b|airflow_provider_hfjobs\.(hooks|operators|sensors|triggers|decorators|links)"
    r"|tests\.integration\.airflow_run|\bAirflowHome\b|bin/airflow"
    r"|def test_\w+\([^)]*\b(hook|proxied_hook)\b",
    re.MULTILINE,
)


def airflow_free_modules() -> list[str]:
    """The test modules whose ``pytestmark`` names ``airflow_free``."""
    found = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not isinstance(node, ast.Assign):
                continue
            named = any(isinstance(target, ast.Name) and target.id == "pytestmark" for target in node.targets)
            if named and "airflow_free" in ast.unparse(node.value):
                found.append(".".join(path.relative_to(REPO).with_suffix("").parts))
    return found


def pins(path: Path) -> dict[str, str]:
    pinned = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split(";")[0].strip().split("==", 1)
            pinned[canonical(name)] = version.strip()
    return pinned


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(names: set[str]) -> set[str]:
    """The distributions ``names`` need here, recursively (extras' requirements and other platforms' left
    out)."""
    seen: set[str] = set()
    todo = [canonical(name) for name in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonical(requirement.name))
    return seen


def test_there_are_airflow_free_modules() -> None:
    assert len(airflow_free_modules()) >= 10, airflow_free_modules()


def test_airflow_free_modules_name_nothing_of_airflow() -> None:
    uses = {
        module: sorted({match.group(0).strip() for match in AIRFLOW_USES.finditer(source)})
        for module in airflow_free_modules()
        if AIRFLOW_USES.search(source := (REPO / (module.replace(".", "/") + ".py")).read_text())
    }
    assert not uses, uses


def test_airflow_free_modules_import_no_airflow_and_what_they_import_is_pinned_alike() -> None:
    modules = airflow_free_modules()
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    top_level = set(json.loads(loaded.stdout.splitlines()[-1]))
    assert "airflow" not in top_level
    owners = importlib.metadata.packages_distributions()
    used = {dist for name in top_level for dist in owners.get(name, [])} | set(RUN_TIME_DISTRIBUTIONS)
    # The provider's own requirements are Airflow's: what its local server needs is imported above.
    needed = closure({canonical(dist) for dist in used} - {"airflow-provider-hfjobs"})
    first, *others = (pins(path) for path in CONSTRAINTS)
    assert others, CONSTRAINTS
    differ = {
        name: [pinned.get(name) for pinned in (first, *others)]
        for name in sorted(needed)
        if any(pinned.get(name) != first.get(name) for pinned in others)
        and not (name in OPPORTUNISTIC and None in [pinned.get(name) for pinned in (first, *others)])
    }
    assert not differ, f"pinned differently in {[path.name for path in CONSTRAINTS]}: {differ}"
