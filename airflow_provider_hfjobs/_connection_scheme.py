"""Keeps Airflow's "Connection schemes (type: hf_jobs) shall not contain '_' according to RFC3986" warning out
of the logs, without renaming the connection type that users already have.

Airflow logs it from ``Connection.get_uri()``, which its connection lookup calls every time to fill the
secrets cache (``SecretCache.save_connection_uri(conn_id, conn.get_uri())``, whether or not the cache is
on): 3 or 4 times per ``airflow dags test``, dozens in a deployment. The URI it writes is right
(``hf-jobs://...``); only the warning is noise, and the user can do nothing about it.

- Airflow 3 does not warn for a connection read from a URI whose scheme has no ``_`` (``hf-jobs://``): it
  checks the scheme the URI had (``_prenormalized_conn_type``). A ``hf_jobs`` connection built from fields
  (a JSON ``AIRFLOW_CONN_`` variable, a secrets backend) or loaded from the metadata DB is given that same
  scheme, ``hf-jobs``, when it is built or loaded (SQLAlchemy's ``init`` and ``load`` events of the model,
  added as soon as ``airflow.models.connection`` is imported).
- Airflow 2 warns for any ``_`` in the type, through the standard library's logging: a filter on that one
  logger drops that one record for ``hf_jobs``, nothing else.

:func:`install` runs when the package is imported: in every Airflow process that loads the providers'
information (the API server, scheduler, triggerer, ``dags test``) and wherever a DAG uses the provider. It
imports nothing of Airflow.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from types import ModuleType
from typing import Any

CONN_TYPE = "hf_jobs"
SCHEME = "hf-jobs"
_LOGGER = "airflow.models.connection.Connection"
_MESSAGE = "Connection schemes (type: %s) shall not contain '_' according to RFC3986."
_MODEL = ("airflow.models.connection", "Connection")

_installed = False


class _SchemeWarningFilter(logging.Filter):
    """Drops Airflow 2's RFC 3986 warning for ``hf_jobs``; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == _MESSAGE and record.args == (CONN_TYPE,))


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    logging.getLogger(_LOGGER).addFilter(_SchemeWarningFilter())
    module = sys.modules.get(_MODEL[0])
    if module is not None and hasattr(module, _MODEL[1]):
        _listen(getattr(module, _MODEL[1]))
    else:
        # Airflow may import this package before its model (providers are discovered while Airflow loads):
        # the events are added once the model module has run, before any connection is built or loaded.
        sys.meta_path.insert(0, _ModelImport())


class _ModelImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``airflow.models.connection`` is first imported, the spec the other finders
    give gets a loader that adds the events right after the module has run. Removes itself then."""

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _MODEL[0]:
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_module = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            model = getattr(module, _MODEL[1], None)
            if model is not None:
                _listen(model)

        # Wrapping the loader's method is the point: Airflow's Connection model gets its events when loaded.
        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _listen(model: type) -> None:
    try:
        from sqlalchemy import event

        if not event.contains(model, "load", _on_load):
            event.listen(model, "load", _on_load)
            event.listen(model, "init", _on_init)
    except Exception:  # never in the way of Airflow's own import: the warning is only noise
        logging.getLogger(__name__).debug("connection scheme events not added", exc_info=True)


def _on_load(target: Any, context: Any) -> None:
    if getattr(target, "conn_type", None) == CONN_TYPE:
        target._prenormalized_conn_type = SCHEME


def _on_init(target: Any, args: Any, kwargs: dict[str, Any]) -> None:
    # Before __init__'s body: one given a URI sets its own scheme there, one given fields keeps this.
    if kwargs.get("conn_type") == CONN_TYPE:
        target._prenormalized_conn_type = SCHEME
