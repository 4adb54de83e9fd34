"""``airflow_provider_hfjobs.jobs`` is a package of one module a concern; every name the single module
had is still importable from the package, and each module imports first without a cycle."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import airflow_provider_hfjobs.jobs as jobs

#: Every public name of ``airflow_provider_hfjobs/jobs.py`` before it became this package.
PUBLIC_NAMES = (
    "ApiCall", "CREATE_ARGUMENTS", "CREATE_NOT_APPLIED_STATUS", "DEFAULT_ENDPOINT", "DEFAULT_FLAVOR",
    "DEFAULT_JOB_TIMEOUT_SECONDS", "DEFAULT_UV_IMAGE", "FOLLOW_READ_TIMEOUT", "HardwareInfo",
    "JOB_STARTED_MARKER", "JSONTooDeepError", "JobInfo", "JobInitiator", "JobNetwork", "JobSpec",
    "JobStage", "JobWait", "KNOWN_FLAVORS", "LastJobInfo", "MAX_ERROR_BODY_BYTES",
    "MAX_INLINE_SCRIPT_ENCODED_BYTES", "MAX_JSON_BODY_BYTES", "MAX_JSON_DEPTH", "MAX_LABEL_LENGTH",
    "MAX_LIST_PAGE_BYTES", "MAX_SERVER_TEXT_CHARS", "METRICS_READ_TIMEOUT", "NAMESPACE", "R",
    "RETRYABLE_STATUS", "RetryAttempts", "RetryPolicy", "Route", "SCHEDULED_TASK_LABEL", "SCHEDULE_ALIASES",
    "SPACE_IMAGE_PREFIXES", "SUBMISSION_LABEL", "ScheduledJobInfo", "ScheduledJobStatus", "StreamRoute",
    "T", "TASK_INSTANCE_LABEL", "TERMINAL_STAGES", "UV_FILE_SUFFIXES", "UV_SCRIPT_ENV", "VOLUME_TYPES",
    "Volume", "body_limit", "build_expose_payload", "build_job_spec", "build_scheduled_job_spec",
    "build_scheduled_uv_job_spec", "build_uv_command", "cancel_job_call", "check_create_arguments",
    "check_env_and_secrets", "check_http_credentials", "check_known_flavor", "check_uv_arguments",
    "check_uv_env", "classify_uv_script", "create_job_call", "create_scheduled_job_call",
    "default_job_name", "default_uv_job_name", "delete_scheduled_job_call", "encode_script_source",
    "error_for_response", "format_timestamp", "hardware_call", "image_fields", "inspect_job_call",
    "inspect_scheduled_job_call", "is_error_status", "is_redirect", "job_labels", "job_logs_route",
    "job_metrics_route", "job_route", "job_url", "json_answer", "list_jobs_params",
    "list_scheduled_jobs_call", "loads_json", "namespace_from_whoami", "next_page_url",
    "next_schedule_time", "normalize_volumes", "outcome_unknown", "parse_timeout", "parse_timestamp",
    "redirect_message", "rerun_job_call", "resume_scheduled_job_call", "retry_after_seconds",
    "scheduled_job_route", "scheduled_spec_changes", "scheduled_task_labels", "server_error_text",
    "suspend_scheduled_job_call", "task_instance_labels", "trigger_error", "trigger_scheduled_job_call",
    "update_job_expose_call", "update_job_labels_call", "update_scheduled_job_labels_call",
    "update_scheduled_job_schedule_call", "uv_job_command", "validate_attempts", "validate_command",
    "validate_env", "validate_flavor", "validate_job_id", "validate_job_name", "validate_labels",
    "validate_namespace", "validate_network", "validate_network_aliases", "validate_network_group",
    "validate_ports", "validate_resource_group_id", "validate_schedule", "validate_scheduled_job_id",
    "validate_secrets", "validate_ssh", "whoami_call",
)  # fmt: skip

MODULES = ("models", "validation", "uv", "errors", "routes", "labels", "schedules")


def test_every_name_of_the_former_module_is_importable_from_the_package() -> None:
    assert [name for name in PUBLIC_NAMES if not hasattr(jobs, name)] == []
    assert sorted(jobs.__all__) == sorted(PUBLIC_NAMES)


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    name = f"airflow_provider_hfjobs.jobs.{module}"
    subprocess.run([sys.executable, "-c", f"import {name}"], check=True)
    assert importlib.import_module(name).__doc__
