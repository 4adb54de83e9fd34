"""The package list, which pyproject.toml alone cannot say: the example DAGs stay in ``example_dags/`` (where
``make demo`` and the tests use them) and ship in the wheel and sdist as ``airflow_provider_hfjobs.example_dags``,
as Airflow's own providers ship theirs (``airflow.providers.standard.example_dags``). Everything else about the
package is in pyproject.toml."""

from setuptools import find_packages, setup

EXAMPLE_DAGS = "airflow_provider_hfjobs.example_dags"

setup(
    packages=[
        *find_packages(include=["airflow_provider_hfjobs", "airflow_provider_hfjobs.*"]),
        EXAMPLE_DAGS,
        # The uv scripts the nightly-training example runs in its jobs (a folder of modules, no __init__.py).
        f"{EXAMPLE_DAGS}.scripts",
    ],
    package_dir={EXAMPLE_DAGS: "example_dags"},
)
