"""Which Airflow this is, once (as the official providers' ``version_compat`` modules do)."""

from __future__ import annotations

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

_BASE = Version(Version(AIRFLOW_VERSION).base_version)

AIRFLOW_V_3_PLUS = _BASE.release[:1] >= (3,)
#: 3.3 added ``BaseTrigger.on_kill`` (a user stopped a deferred task) and ``task_state_store``.
AIRFLOW_V_3_3_PLUS = _BASE.release[:2] >= (3, 3)
