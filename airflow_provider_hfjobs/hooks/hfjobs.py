"""The provider's hooks, importable from one place (and from the connection type's ``hook-class-name``).

- :class:`HfJobsHook` (:mod:`.sync`): the HF Jobs REST API over ``requests``, for operators, sensors and
  DAG code;
- :class:`HfJobsAsyncHook` (:mod:`.async_`): the same API for triggers, without a blocking call;
- :mod:`.credentials`: what both share: the ``hf_jobs`` connection, credentials, TLS settings.

Both hooks send the requests :mod:`airflow_provider_hfjobs.jobs` describes, one route description each;
method names and arguments are ``huggingface_hub``'s.
"""

from __future__ import annotations

from airflow_provider_hfjobs.hooks.async_ import HfJobsAsyncHook, _HttpxEventStream
from airflow_provider_hfjobs.hooks.credentials import (
    CA_ENVIRONMENT,
    HfJobsCredentials,
    _HfJobsHookBase,
    _recent_credentials,
    _RecentCredentials,
    credentials_from_connection,
    credentials_from_environment,
    normalize_endpoint,
    shared_ssl_context,
    tls_verify_setting,
    user_agent,
)
from airflow_provider_hfjobs.hooks.sync import NO_FOLLOW_READ_TIMEOUT, HfJobsHook
from airflow_provider_hfjobs.jobs import (
    FOLLOW_READ_TIMEOUT,
    JobInitiator,
    JobNetwork,
    JobSpec,
    LastJobInfo,
    ScheduledJobInfo,
    ScheduledJobStatus,
    Volume,
)

__all__ = [
    "CA_ENVIRONMENT",
    "FOLLOW_READ_TIMEOUT",
    "NO_FOLLOW_READ_TIMEOUT",
    "HfJobsAsyncHook",
    "HfJobsCredentials",
    "HfJobsHook",
    "JobInitiator",
    "JobNetwork",
    "JobSpec",
    "LastJobInfo",
    "ScheduledJobInfo",
    "ScheduledJobStatus",
    "Volume",
    "_HfJobsHookBase",
    "_HttpxEventStream",
    "_RecentCredentials",
    "_recent_credentials",
    "credentials_from_connection",
    "credentials_from_environment",
    "normalize_endpoint",
    "shared_ssl_context",
    "tls_verify_setting",
    "user_agent",
]
