"""The install story, end to end: the wheel ``make dist`` builds, installed with the constraints into a fresh
virtualenv outside the repository, serves the local Jobs server (``hfjobs-local``, its console script) and
runs a shipped example DAG with ``airflow dags test`` against it, the way the README's install section says:

    make dist
    pip install "dist/airflow_provider_hfjobs-<version>-py3-none-any.whl[local]" \\
        --constraint constraints/airflow-<airflow>-py3.11.txt

Tests reach no network but 127.0.0.1, so the fresh venv does not download Airflow from the index (about 40 s
on a warm cache, minutes on a cold one): ``python -m venv`` makes it, and a ``.pth`` file lets it see the
running suite's site-packages (Airflow and every dependency, pinned by the same constraints) through a folder
of links that leaves out this package (its dist-info and its editable finder). pip then finds every
requirement already satisfied and installs the wheel alone (``--no-index`` makes sure it fetches nothing);
nothing of the repository is on ``sys.path``. What this proves is the wheel's contents: its modules, package
data (the job pages' static files, ``py.typed``), entry points (Airflow's provider discovery and
``hfjobs-local``) and the example DAGs with their scripts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import airflow_provider_hfjobs

pytestmark = [pytest.mark.system, pytest.mark.airflow_db]

REPO = Path(__file__).resolve().parents[2]
VERSION = airflow_provider_hfjobs.__version__
WHEEL = f"dist/airflow_provider_hfjobs-{VERSION}-py3-none-any.whl"
AIRFLOW_VERSION = pytest.importorskip("airflow").__version__
CONSTRAINTS = f"constraints/airflow-{AIRFLOW_VERSION}-py3.11.txt"
TOKEN = "hf_install_token_7d1e"
NAMESPACE = "alice"
# Kept out of the fresh venv's view of the suite's site-packages: this package (the wheel brings it) and
# what the venv has of its own.
_HIDDEN = re.compile(
    r"^(airflow_provider_hfjobs|__editable__|pip\b|pip-|setuptools|_distutils_hack|pkg_resources)"
)


def run(*args: str | Path, cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{output[-6000:]}"
    return output


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "HF_", "PYTHON", "VIRTUAL_ENV")) and k != "PIP_REQUIRE_VIRTUALENV"
    }
    return {**env, "PYTHONWARNINGS": "ignore", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make dist``, as the README says (its build tools are in .venv, it runs without network), into a
    directory of this test's (``DIST=``): the other Airflow leg, running at the same time, builds too."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    dist = tmp_path_factory.mktemp("make-dist") / "dist"
    run("make", "--no-print-directory", "dist", f"DIST={dist}", cwd=REPO, env=clean_env())
    path = dist / Path(WHEEL).name
    assert path.is_file(), sorted(p.name for p in dist.iterdir())
    return path


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    root = tmp_path_factory.mktemp("fresh-install")
    assert not root.resolve().is_relative_to(REPO)
    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=root, env=clean_env())
    suite = Path(sysconfig.get_paths()["purelib"])
    view = root / "suite-site-packages"
    view.mkdir()
    for entry in suite.iterdir():
        if not _HIDDEN.match(entry.name) and entry.suffix != ".pth":
            (view / entry.name).symlink_to(entry)
    (site_packages,) = venv.glob("lib/python3*/site-packages")
    (site_packages / "zz_suite_site_packages.pth").write_text(f"{view}\n")
    env = clean_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    # The README's command (from the repository root, where constraints/ is), offline, with this wheel.
    run(
        venv / "bin" / "pip", "install", "--disable-pip-version-check", "--no-index", f"{wheel}[local]",
        "--constraint", CONSTRAINTS, cwd=REPO, env=env,
    )  # fmt: skip
    return venv


def python_in(venv: Path, code: str, cwd: Path) -> str:
    return run(venv / "bin" / "python", "-c", code, cwd=cwd, env=clean_env()).strip().splitlines()[-1]


def test_the_wheel_holds_the_license_the_type_marker_and_the_example_dags(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert f"airflow_provider_hfjobs-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "airflow_provider_hfjobs/py.typed" in names
    for dag in (REPO / "example_dags").glob("*.py"):
        assert f"airflow_provider_hfjobs/example_dags/{dag.name}" in names
    assert "airflow_provider_hfjobs/example_dags/scripts/train.py" in names
    assert "airflow_provider_hfjobs/local/static/job.js" in names
    assert not any(n.startswith(("tests/", "example_dags/", "benchmarks/")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(f"airflow_provider_hfjobs-{VERSION}.dist-info/METADATA").decode()
    assert f"Version: {VERSION}" in metadata and "License-Expression: Apache-2.0" in metadata


def test_the_installed_package_comes_from_the_wheel_not_the_repository(venv: Path, tmp_path: Path) -> None:
    where = json.loads(
        python_in(
            venv,
            "import json, importlib.metadata as m, airflow_provider_hfjobs as p, airflow_provider_hfjobs.example_dags"
            " as e; print(json.dumps([p.__file__, list(e.__path__), m.version('airflow-provider-hfjobs'),"
            " [str(f) for f in m.files('airflow-provider-hfjobs') if f.name == 'py.typed']]))",
            cwd=tmp_path,
        )
    )
    package_file, example_dags, version, typed = where
    assert Path(package_file).is_relative_to(venv), package_file
    assert all(Path(p).is_relative_to(venv) for p in example_dags), example_dags
    assert version == VERSION and typed == ["airflow_provider_hfjobs/py.typed"]


@pytest.fixture(scope="module")
def jobs_server(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``hfjobs-local serve``: the wheel's console script, from the fresh venv."""
    cwd = tmp_path_factory.mktemp("jobs-server")
    port = free_port()
    log = (cwd / "server.log").open("w")
    server = subprocess.Popen(
        [str(venv / "bin" / "hfjobs-local"), "serve", "--port", str(port), "--token", TOKEN, "--namespace",
         NAMESPACE],
        cwd=cwd, env=clean_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/api/whoami-v2", headers={"Authorization": f"Bearer {TOKEN}"}).ok:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, (cwd / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "hfjobs-local did not answer within 60 s"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_a_shipped_example_dag_runs_with_airflow_dags_test(
    venv: Path, jobs_server: str, tmp_path: Path
) -> None:
    """The quickstart (one job waited on by the worker, one deferred to the in-process trigger), copied from
    the installed package into a DAGs folder, as a user would."""
    shipped = Path(
        python_in(venv, "import airflow_provider_hfjobs.example_dags as e; print(e.__path__[0])", tmp_path)
    )
    dags = tmp_path / "dags"
    shutil.copytree(shipped, dags, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    connection = {"conn_type": "hf_jobs", "host": jobs_server, "password": TOKEN}
    env = clean_env(
        AIRFLOW_HOME=str(tmp_path / "airflow-home"),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_HF_DEFAULT=json.dumps(connection),
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    airflow = (venv / "bin" / "python", "-m", "airflow")
    run(*airflow, "db", "migrate", cwd=tmp_path, env=env, timeout=300)
    providers = run(*airflow, "providers", "get", "airflow-provider-hfjobs", cwd=tmp_path, env=env)
    assert VERSION in providers, providers[-2000:]
    output = run(*airflow, "dags", "test", "hfjobs_quickstart", cwd=tmp_path, env=env, timeout=300)
    assert output.count("Hello from the cloud!") >= 2, output[-6000:]
    assert len(set(re.findall(r"Hugging Face job ([0-9a-f]{24}): http", output))) == 2, output[-6000:]
    assert str(REPO) not in output.replace(str(REPO / ".venv"), ""), "the run used the repository's files"
