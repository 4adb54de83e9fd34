"""Provider metadata for Airflow's provider discovery (entry point ``apache_airflow_provider``).

Kept import-free (only the package's version): Airflow calls it while loading its own configuration.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hfjobs import __version__

_INTEGRATION = "Hugging Face Jobs"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-hfjobs",
        "name": "Hugging Face Jobs",
        "description": "Run commands, Docker images, Spaces and UV scripts on Hugging Face Jobs hardware "
        "(CPU and GPU, billed by the second) as Airflow tasks.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://huggingface.co/docs/huggingface_hub/guides/jobs",
                "tags": ["service"],
            }
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_provider_hfjobs.operators.hfjobs",
                    "airflow_provider_hfjobs.operators.scheduled",
                    "airflow_provider_hfjobs.operators.maintenance",
                    "airflow_provider_hfjobs.operators.followers",
                    "airflow_provider_hfjobs.operators.arguments",
                    "airflow_provider_hfjobs.operators.reattach",
                    "airflow_provider_hfjobs.operators.lineage",
                    "airflow_provider_hfjobs.operators.outputs",
                ],
            }
        ],
        "sensors": [
            {"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_hfjobs.sensors.hfjobs"]}
        ],
        "hooks": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_provider_hfjobs.hooks.hfjobs",
                    "airflow_provider_hfjobs.hooks.sync",
                    "airflow_provider_hfjobs.hooks.sync_streams",
                    "airflow_provider_hfjobs.hooks.async_",
                    "airflow_provider_hfjobs.hooks.credentials",
                    "airflow_provider_hfjobs.hooks.event_stream",
                    "airflow_provider_hfjobs.hooks.sync_transport",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_provider_hfjobs.triggers.hfjobs",
                    "airflow_provider_hfjobs.triggers.scheduled",
                    "airflow_provider_hfjobs.triggers.log_checkpoint",
                ],
            }
        ],
        "task-decorators": [
            {"name": "hf_job", "class-name": "airflow_provider_hfjobs.decorators.hf_job.hf_job_task"}
        ],
        "extra-links": ["airflow_provider_hfjobs.links.hfjobs.HfJobLink"],
        "config": {
            "hfjobs": {
                "description": "Options of the Hugging Face Jobs provider.",
                "options": {
                    "log_checkpoint_steps_per_second": {
                        "description": "Display steps per second, for all deferred tasks of one triggerer, "
                        "that keep their place in the job's log so that a restarted or moved triggerer shows "
                        "each line once (two XCom writes a step). Empty: 10 on Airflow 3, 25 on Airflow 2. "
                        "0: no checkpoints (live lines, at least once across restarts).",
                        "version_added": "0.2.0",
                        "type": "float",
                        "example": "10",
                        "default": "",
                    },
                    "extra_flavors": {
                        "description": "Hardware flavors newer than this provider, comma-separated: a DAG's "
                        "literal flavor is checked against huggingface_hub 2.4's list plus these when the DAG "
                        "is parsed.",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "b300x8,mi355x",
                        "default": "",
                    },
                },
            }
        },
        "connection-types": [
            {
                "connection-type": "hf_jobs",
                "hook-class-name": "airflow_provider_hfjobs.hooks.hfjobs.HfJobsHook",
                "hook-name": "Hugging Face Jobs",
                "conn-fields": {
                    "namespace": {
                        "label": "Namespace",
                        "description": "User or organization that owns the jobs. Empty: the token's user "
                        "(resolved once through whoami).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "ca_bundle": {
                        "label": "CA bundle (path)",
                        "description": "Path of a CA file or directory to verify the endpoint's certificate "
                        "against (a corporate proxy or private CA). Empty: REQUESTS_CA_BUNDLE, SSL_CERT_FILE or "
                        "the system's CAs.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "verify": {
                        "label": "Verify TLS certificates",
                        "description": "Off only for testing: anyone on the network path could read the token.",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "allow_insecure_http": {
                        "label": "Allow plain HTTP to another machine",
                        "description": "An http:// endpoint other than this machine is refused (the token would "
                        "travel in clear) unless this is on: only for a network you trust.",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "extra"],
                    "relabeling": {"host": "Hub endpoint", "password": "HF token"},
                    "placeholders": {"host": "https://huggingface.co", "password": "hf_..."},
                },
            }
        ],
    }
