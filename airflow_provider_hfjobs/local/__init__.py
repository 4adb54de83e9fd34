"""A local Hugging Face Jobs server: the HF Jobs REST API, with each job's command run as a local process.

For offline DAG development, the demo and integration tests; the official ``huggingface_hub`` client and
``hf jobs`` CLI work against it unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_hfjobs.local.server import LocalJobsServer

__all__ = ["LocalJobsServer"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package (e.g. for the demo) must not need starlette/uvicorn until a server starts.
    if name == "LocalJobsServer":
        from airflow_provider_hfjobs.local.server import LocalJobsServer

        return LocalJobsServer
    raise AttributeError(name)
