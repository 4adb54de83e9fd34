"""Getting a task's secret values to the triggerer's secrets masker without writing them down in clear.

A deferred job's log is written by the triggerer, a process that never rendered the task's ``secrets``, so
its masker does not know them. Trigger kwargs are the only way in, and they are logged (the trigger's
``repr``), shown in the UI and API (the task instance's trigger), and stored in the ``trigger`` table —
encrypted at rest there only when a Fernet key is configured. So the values travel sealed with Airflow's own
Fernet key (the one that protects connection passwords): every place that shows kwargs shows ciphertext,
and only a process holding the key (the triggerer) can register the values with its masker.

Without a Fernet key nothing is sealed and nothing is sent: the task log says once that a deferred job's
printed secrets cannot be masked, and how to fix it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Protocol

log = logging.getLogger(__name__)


class _Fernet(Protocol):
    """What is used here of Airflow's ``get_fernet()`` (a ``cryptography`` Fernet or MultiFernet)."""

    def encrypt(self, data: bytes) -> bytes: ...
    def decrypt(self, token: bytes) -> bytes: ...


def _fernet() -> _Fernet | None:
    try:
        from airflow.models.crypto import get_fernet

        fernet = get_fernet()
    except Exception as exc:  # no airflow-core here (a Task-SDK-only worker), or a broken key
        log.debug("No Fernet key available: %s", type(exc).__name__)
        return None
    return fernet if getattr(fernet, "is_encrypted", False) else None


def seal_mask_values(values: Iterable[object]) -> str | None:
    """The non-empty string values, encrypted for the triggerer; ``None`` when there are none or no Fernet
    key is configured (the caller then warns)."""
    plain = sorted({value for value in values if isinstance(value, str) and value})
    if not plain:
        return None
    fernet = _fernet()
    if fernet is None:
        return None
    return fernet.encrypt(json.dumps(plain).encode("utf-8")).decode("ascii")


def unseal_mask_values(sealed: str | None) -> list[str]:
    """The values :func:`seal_mask_values` sealed; ``[]`` (and a warning) if they cannot be read here."""
    if not sealed:
        return []
    fernet = _fernet()
    try:
        if fernet is None:
            raise ValueError("no Fernet key is configured in this process")
        values = json.loads(fernet.decrypt(sealed.encode("ascii")))
    except Exception as exc:
        log.warning(
            "Cannot read the secret values to mask (%s): set the same [core] fernet_key on workers and "
            "triggerers. Secrets this job prints will not be masked in its log.",
            type(exc).__name__,
        )
        return []
    return [value for value in values if isinstance(value, str) and value]


def is_masked(value: str, name: str | None = None) -> bool:
    """Would Airflow's secrets masker hide ``value`` (it holds a registered secret: a masked Variable, a
    connection's password, a rendered ``secrets`` value), or hide any value under the name ``name``
    (``api_key``, ``password``, ``token`` ...)? Such a value must travel as a job *secret*: a job's
    environment and script are shown by the Jobs API and the job page to whoever can list the namespace."""
    from airflow.providers.common.compat.sdk import redact

    return bool(value) and redact(value, name) != value
