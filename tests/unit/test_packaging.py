"""One version, said in one place (``airflow_provider_hfjobs.__version__``), and everything that repeats it agrees:
the package's build configuration, the provider info Airflow reads, the installed metadata, the changelog's
current entry, and any pinned install line in the README or the guides."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

import airflow_provider_hfjobs
from airflow_provider_hfjobs.get_provider_info import get_provider_info

REPO = Path(__file__).resolve().parents[2]
VERSION = airflow_provider_hfjobs.__version__
# A PEP 440 version as written in a pin or a file name (0.2.0, 1.0.0rc1, 0.3.0.dev2, ...).
_V = r"\d+(?:\.\d+)*(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?"
_PINNED = re.compile(rf"airflow-provider-hfjobs==({_V})|airflow_provider_hfjobs-({_V})(?=[-.])")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_version_is_said_once_in_the_package() -> None:
    assert re.fullmatch(_V, VERSION), VERSION
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "airflow_provider_hfjobs.__version__"
    }


def test_the_provider_info_says_the_package_version() -> None:
    assert get_provider_info()["versions"][0] == VERSION


def test_the_installed_metadata_says_the_package_version() -> None:
    installed = importlib.metadata.version("airflow-provider-hfjobs")
    assert installed == VERSION, (
        f"the installed metadata says {installed}, the package {VERSION}: reinstall (make venv / make venv-af2)"
    )


def test_the_changelogs_current_entry_is_this_version() -> None:
    headings = re.findall(r"^## (.+)$", (REPO / "CHANGELOG.md").read_text(), flags=re.MULTILINE)
    assert headings, "CHANGELOG.md has no version entry"
    current = re.match(rf"({_V})\b", headings[0])
    assert current is not None and current.group(1) == VERSION, headings[0]
    assert sum(h.startswith(f"{VERSION} ") or h == VERSION for h in headings) == 1, headings


def _docs() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_pinned_install_line_says_this_version(doc: Path) -> None:
    if not doc.exists():
        pytest.skip(f"no {doc.name}")
    pinned = {m.group(1) or m.group(2) for m in _PINNED.finditer(doc.read_text())}
    assert pinned <= {VERSION}, f"{doc.name} pins {sorted(pinned)}, the package is {VERSION}"


def test_the_long_description_has_no_relative_link() -> None:
    """README.md is the index page's long description, where a relative link (``docs/x.md``, an image)
    leads nowhere."""
    readme = (REPO / _pyproject()["project"]["readme"]).read_text()
    targets = [
        *re.findall(r"\]\(\s*<?([^)\s>]+)", readme),  # [text](target), possibly split across lines
        *re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", readme, flags=re.MULTILINE),  # [ref]: target
        *re.findall(r"(?:src|href)\s*=\s*[\"']([^\"']+)", readme),  # HTML
    ]
    relative = [t for t in targets if not re.match(r"(https?:|mailto:|#)", t)]
    assert relative == [], f"relative links in README.md: {relative}"


def test_the_license_is_an_spdx_string_with_its_file() -> None:
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    requires = _pyproject()["build-system"]["requires"]
    assert any(
        re.fullmatch(r"setuptools>=(\d+).*", r) and int(r.split(">=")[1].split(",")[0]) >= 77
        for r in requires
    )


def test_the_package_is_marked_typed() -> None:
    assert (REPO / "airflow_provider_hfjobs" / "py.typed").is_file()
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["airflow_provider_hfjobs"]
    assert "Typing :: Typed" in _pyproject()["project"]["classifiers"]


def test_the_example_dags_are_importable_from_the_package() -> None:
    """As installed (editable or from the wheel), the example DAGs are ``airflow_provider_hfjobs.example_dags``
    (setup.py maps it to ``example_dags/``), with the scripts the nightly-training example runs."""
    import airflow_provider_hfjobs.example_dags as example_dags

    (folder,) = (Path(p) for p in example_dags.__path__)
    assert (folder / "example_hfjobs_quickstart.py").is_file()
    assert (folder / "scripts" / "train.py").is_file() and (folder / "scripts" / "evaluate.py").is_file()
