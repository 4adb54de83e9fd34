# Two commands do all set-up on a fresh machine: `make test` and `make demo`. Both create their
# virtualenvs themselves, idempotently: a stamp records what was installed from which constraints.
SHELL := /bin/bash
PYTHON ?= python3.11
PIP_FLAGS := --quiet --disable-pip-version-check

# Airflow 3.3 (the main venv) and Airflow 2.11 (the compatibility venv), each from its own pins.
VENV := .venv
CONSTRAINTS := constraints/airflow-3.3.2-py3.11.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py airflow_provider_hfjobs/__init__.py $(CONSTRAINTS) | sha1sum | cut -c1-12)
VENV_AF2 := .venv-af2
CONSTRAINTS_AF2 := constraints/airflow-2.11.2-py3.11.txt
STAMP_AF2 := $(VENV_AF2)/.installed-$(shell cat pyproject.toml setup.py airflow_provider_hfjobs/__init__.py $(CONSTRAINTS_AF2) | sha1sum | cut -c1-12)

.PHONY: venv venv-af2 browser services test checks test-af3 test-af2 demo lint typecheck format clean dist check-dist docs

venv: $(STAMP)
venv-af2: $(STAMP_AF2)

# What '.[local,test]' requires, read from pyproject.toml: each venv installs it from its constraints, the two
# venvs at once (most of a fresh clone's set-up time), then the project itself, editable and without
# dependencies, taking turns on the build lock (an editable build writes the tree's egg-info).
REQUIREMENTS = $(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	extras = p["optional-dependencies"]; print("\n".join(p["dependencies"] + extras["local"] + extras["test"]))'

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(REQUIREMENTS) > $(VENV)/requirements.txt
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) -r $(VENV)/requirements.txt
	flock .dist.lock $(VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) --no-deps -e '.[local,test]'
	@rm -f $(VENV)/.installed-* && touch $@

$(STAMP_AF2): pyproject.toml $(CONSTRAINTS_AF2)
	@test -x $(VENV_AF2)/bin/python || $(PYTHON) -m venv $(VENV_AF2)
	@$(REQUIREMENTS) > $(VENV_AF2)/requirements.txt
	$(VENV_AF2)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS_AF2) -r $(VENV_AF2)/requirements.txt
	flock .dist.lock $(VENV_AF2)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS_AF2) --no-deps -e '.[local,test]'
	@rm -f $(VENV_AF2)/.installed-* && touch $@

# The browser tests of the job pages drive this Chromium (Playwright cannot download its own here).
CHROMIUM := $(or $(HFJOBS_CHROMIUM),/usr/bin/chromium)

# Debian's chromium, installed when missing and we may (root, apt-get); else the browser tests skip, loudly.
browser:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
			&& exit 0; \
		echo "!!! WARNING: apt-get install chromium FAILED: the browser tests (tests/integration/test_job_pages.py) will be SKIPPED"; \
	else \
		echo "!!! WARNING: no Chromium at $(CHROMIUM) and no way to install it (needs root and apt-get): the browser tests will be SKIPPED. Install chromium, or set HFJOBS_CHROMIUM=/path/to/chromium"; \
	fi

# The distributed leg (tests/system/test_distributed.py) starts its own PostgreSQL and Redis servers from
# Debian's postgresql and redis-server packages: installed when missing and we may (root, apt-get); else that
# leg skips, loudly. HFJOBS_PG_BINDIR and HFJOBS_REDIS_SERVER point the test at other builds.
services:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ -x "$${HFJOBS_PG_BINDIR:-/nonexistent}/initdb" ] \
		|| missing="$$missing postgresql"; \
	command -v redis-server >/dev/null 2>&1 || [ -x "$${HFJOBS_REDIS_SERVER:-/nonexistent}" ] \
		|| missing="$$missing redis-server"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's$$missing for the distributed test leg"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing \
			&& exit 0; \
		echo "!!! WARNING: apt-get install$$missing FAILED: the distributed tests (tests/system/test_distributed.py) will be SKIPPED"; \
	else \
		echo "!!! WARNING: no$$missing and no way to install it (needs root and apt-get): the distributed tests (tests/system/test_distributed.py) will be SKIPPED. Install Debian's$$missing, or set HFJOBS_PG_BINDIR / HFJOBS_REDIS_SERVER"; \
	fi

# The whole suite on Airflow 3.3 and on Airflow 2.11, the two legs at once and beside the static checks, each
# leg spreading its test files over processes (pytest-xdist, --dist loadfile: a file's tests share one process,
# so its module fixtures, Airflow homes and deployments, are made once; the 3.3 leg, the longer, gets one more).
# Most tests wait on jobs and Airflow processes, not the CPU; the `airflow` commands they run fork from an
# interpreter that has imported Airflow already (tests/integration/forked_airflow.py). The venvs are installed
# first, the two at once, then the tools (pip must not race in one venv). Each leg's output is shown whole when
# it ends (--output-sync).
TEST_WORKERS_AF3 ?= 3
TEST_WORKERS_AF2 ?= 2
PYTEST_ARGS ?= -q --dist loadfile

test:
	@$(MAKE) --no-print-directory -j2 --output-sync=target venv venv-af2
	@$(MAKE) --no-print-directory browser services
	@$(MAKE) --no-print-directory $(TYPECHECK_STAMP) $(DIST_STAMP) $(DOCS_STAMP)
	@$(MAKE) --no-print-directory -j3 --output-sync=recurse checks test-af3 test-af2

checks: lint typecheck docs check-dist

# Test modules marked airflow_free (the local server, the official client, the browser; nothing of Airflow, their
# dependencies pinned alike in both constraints files: tests/unit/test_airflow_free.py) run in the 2.11 leg only.
test-af3: venv browser services
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS_AF3) $(PYTEST_ARGS) -m "not airflow_free"

test-af2: venv-af2 browser services
	$(VENV_AF2)/bin/python -m pytest -n $(TEST_WORKERS_AF2) $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check airflow_provider_hfjobs tests example_dags benchmarks

# Static types: mypy, pinned, into .venv beside the suite's (the constraints keep Airflow's pins), checks the
# package (marked typed by py.typed) with pyproject.toml's [tool.mypy] settings, against Airflow 3.3.
TYPECHECK_TOOLS := mypy==2.4.1
TYPECHECK_STAMP := $(VENV)/.typecheck-tools-$(shell echo '$(TYPECHECK_TOOLS)' | sha1sum | cut -c1-12)

$(TYPECHECK_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) $(TYPECHECK_TOOLS)
	@rm -f $(VENV)/.typecheck-tools-* && touch $@

typecheck: venv $(TYPECHECK_STAMP)
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff format airflow_provider_hfjobs tests example_dags benchmarks

# The wheel and sdist, into dist/ (the version is airflow_provider_hfjobs/__init__.py's). The tools that build
# and check them, pinned, go into .venv beside the suite's (the constraints keep Airflow's pins); the build uses
# them there (--no-isolation), so that once installed it needs no network (tests/system/test_install.py runs it).
DIST_TOOLS := build==1.6.1 setuptools==80.9.0 twine==7.0.0 check-wheel-contents==0.6.3
DIST_STAMP := $(VENV)/.dist-tools-$(shell echo '$(DIST_TOOLS)' | sha1sum | cut -c1-12)

$(DIST_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) $(DIST_TOOLS)
	@rm -f $(VENV)/.dist-tools-* && touch $@

# DIST: where they go. The build writes the tree's egg-info: builds at once (the two test legs' install tests,
# check-dist) take turns on a lock.
DIST ?= dist

dist: venv $(DIST_STAMP)
	flock .dist.lock sh -c 'rm -rf "$(DIST)" build && $(VENV)/bin/python -m build --no-isolation --outdir "$(DIST)" .'

# What an index would show and what pip would install: the long description renders, the wheel holds
# what it should (a LICENSE, py.typed, the example DAGs, no stray top-level names).
check-dist: dist
	$(VENV)/bin/twine check --strict $(DIST)/*
	$(VENV)/bin/check-wheel-contents $(DIST)/*.whl

# The guides in docs/ as a site, into site/: MkDocs (pinned in docs/requirements.txt, installed into .venv with
# the constraints, so nothing of Airflow's moves) in strict mode, so a warning (a broken link) fails the build.
DOCS_STAMP := $(VENV)/.docs-$(shell cat docs/requirements.txt $(CONSTRAINTS) | sha1sum | cut -c1-12)

$(DOCS_STAMP): docs/requirements.txt $(CONSTRAINTS) | $(STAMP)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) -r docs/requirements.txt
	@rm -f $(VENV)/.docs-* && touch $@

docs: venv $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir site

demo: venv
	$(VENV)/bin/python -m airflow_provider_hfjobs.local.demo --dags-folder example_dags

clean:
	rm -rf $(VENV) $(VENV_AF2)
