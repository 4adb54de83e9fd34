"""``outputs=``, ``inputs=`` and ``checkpoint_dir=`` of a job task: the Airflow glue of
:mod:`airflow_provider_hfjobs.outputs` (the rules are there). A mixin of
:class:`~airflow_provider_hfjobs.operators.hfjobs.HfJobRunOperator`, so ``HfUvJobOperator`` and
``@task.hf_job`` have them too.

Parse time: literal arguments are checked (a bucket id, a manifest, no user volume on their mounts).
Before a new job is created: the folders to mount are made to exist by one short job. In the job's
arguments: the volumes and the environment. When the job ends (succeeded or failed): the manifest to the
``hf_job_outputs`` XCom, and the last checkpoint reported to ``task_state_store`` (Airflow >= 3.3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset, redact

from airflow_provider_hfjobs.cancellation import cancel_and_confirm, log_outcome, stop_reason
from airflow_provider_hfjobs.exceptions import HfJobFailedError
from airflow_provider_hfjobs.jobs import JobInfo, normalize_volumes
from airflow_provider_hfjobs.operators.reattach import _first_try_of_run, _task_state
from airflow_provider_hfjobs.outputs import (
    ARGUMENTS,
    CHECKPOINT_STATE_KEY,
    OUTPUTS_XCOM_KEY,
    PLACEHOLDER,
    PREPARE_FLAVOR,
    PREPARE_IMAGE,
    PREPARE_TIMEOUT,
    Layout,
    TryPlace,
    build_manifest,
    checkpoint_from_state,
    prepare_command,
    should_resume,
)
from airflow_provider_hfjobs.reports import MAX_OUTPUTS

if TYPE_CHECKING:
    from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
    from airflow_provider_hfjobs.reports import ReportLog

    _Base = Any
else:
    _Base = object


def try_place(context: Any) -> TryPlace:
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return TryPlace(
        str(ti.dag_id), str(ti.run_id), str(ti.task_id),
        int(map_index) if map_index is not None else -1, int(ti.try_number),
    )  # fmt: skip


class JobOutputs(_Base):
    """Mixin of :class:`~airflow_provider_hfjobs.operators.hfjobs.HfJobRunOperator`: see the module."""

    if TYPE_CHECKING:
        outputs: Any
        inputs: Any
        checkpoint_dir: Any
        volumes: Any
        namespace: str | None
        poll_interval: float
        _reports: ReportLog | None

        @property
        def hook(self) -> HfJobsHook: ...

        def _known(self, name: str, context: Any | None) -> bool: ...

        def _holds_template(self, value: Any) -> bool: ...

        emit_assets: bool
        wait_for_completion: bool
        outlets: list[Any]

    #: This try's layout and what it resumes from, set when the task starts (``None``: at parse time).
    _outputs_run: tuple[Layout, bool, dict[str, Any] | None] | None = None
    #: The run whose folders a prepare job has made (once per try).
    _prepared_for: tuple[Layout, bool, dict[str, Any] | None] | None = None

    # ------------------------------------------------------------------------------------------ assets
    def _declare_assets(self) -> None:
        """The written buckets of literal ``outputs``/``checkpoint_dir`` are outlets, as a literal written
        volume is (:mod:`.lineage`), so their Asset events need no alias (which Airflow 2.11 refuses for
        a dataset first met at run time through the alias of a ``@task.hf_job`` task)."""
        super()._declare_assets()
        if not (self.emit_assets and self.wait_for_completion):
            return
        have = {outlet.uri for outlet in self.outlets if isinstance(outlet, Asset)}
        for name in ("outputs", "checkpoint_dir"):
            value = getattr(self, name, None)
            if isinstance(value, str) and not self._holds_template(value) and "/" in value:
                uri = f"hf://buckets/{value}"
                if uri not in have:
                    self.outlets.insert(0, Asset(uri))
                    have.add(uri)

    # ------------------------------------------------------------------------------------------ checks
    def _check_outputs_arguments(self, context: Any | None) -> None:
        """The three arguments, if known (literal, or rendered), and no user volume on their mounts."""
        layout = self._outputs_layout(context, PLACEHOLDER)
        if layout.active and self._known("volumes", context) and self.volumes is not None:
            layout.check_free(normalize_volumes(self.volumes))

    def _outputs_layout(self, context: Any | None, place: TryPlace) -> Layout:
        values = {
            name: getattr(self, name, None) if self._known(name, context) else None for name in ARGUMENTS
        }
        return Layout.of(values["outputs"], values["inputs"], values["checkpoint_dir"], place)

    # ----------------------------------------------------------------------------------------- the run
    def _begin_outputs(self, context: Any) -> None:
        """This try's folders, and whether it resumes (an Airflow retry) from which checkpoint (Airflow
        >= 3.3 keeps the last one reported in ``task_state_store``; on any Airflow the job finds it in its
        checkpoint folder too, :func:`airflow_provider_hfjobs.reports.last_checkpoint`)."""
        layout = self._outputs_layout(context, try_place(context))
        if not layout.active:
            self._outputs_run = None
            return
        resume = should_resume(_first_try_of_run(context, self))
        last = None
        if layout.checkpoint_dir and resume:
            last = checkpoint_from_state(_task_state(context, self.log).get(CHECKPOINT_STATE_KEY))
            self.log.info(
                "Try %s resumes from checkpoint folder hf://buckets/%s/%s%s.", layout.place.try_number,
                layout.checkpoint_dir, layout.place.instance_prefix,
                f" (last checkpoint {last['path']})" if last else "",
            )  # fmt: skip
        self._outputs_run = (layout, resume, last)

    def _with_outputs(self, arguments: dict[str, Any], followed: bool) -> dict[str, Any]:
        """The create arguments plus this try's volumes and environment (at parse time: as the checks see
        them, with a placeholder folder). A job no task follows (a schedule's) gets none."""
        if not followed:
            return arguments
        if self._outputs_run is not None:
            layout, resume, last = self._outputs_run
        else:
            layout, resume, last = self._outputs_layout(None, PLACEHOLDER), False, None
        if not layout.active:
            return arguments
        volumes = arguments.get("volumes")
        if volumes is None or isinstance(volumes, (list, tuple)):
            arguments["volumes"] = [*(volumes or []), *layout.volumes()]
        arguments["env"] = {**(arguments.get("env") or {}), **layout.env(last, resume)}
        return arguments

    def _prepare_folders(self, context: Any) -> None:
        """Before a new job: one short job makes this try's outputs folder and the checkpoint folder exist
        (a bucket folder exists once a file is in it; a job mounting a missing one fails when it starts),
        and on a fresh start removes the checkpoint record."""
        if self._outputs_run is None:
            return
        layout, resume, _ = self._outputs_run
        folders = layout.folders_to_prepare()
        reset = (
            [(layout.checkpoint_dir, layout.place.instance_prefix)]
            if layout.checkpoint_dir and not resume
            else []
        )
        if not folders or self._outputs_run is self._prepared_for:
            return  # (a resubmit on a fallback flavor: this try's folders exist already)
        command, volumes = prepare_command(folders, reset=reset)
        ti = context["ti"]
        job = self.hook.run_job(
            image=PREPARE_IMAGE, command=command, volumes=volumes, flavor=PREPARE_FLAVOR, timeout=PREPARE_TIMEOUT,
            labels={"airflow-hfjobs": "prepare-folders"}, name=f"prepare-{ti.task_id}"[:60],
            namespace=self.namespace or None,
        )  # fmt: skip
        self.log.info(
            "Preparing the folders of this try (%s) with Hugging Face job %s.",
            ", ".join(f"hf://buckets/{bucket}/{folder}" for bucket, folder in folders), job.id,
        )  # fmt: skip
        try:
            final = self.hook.wait_for_job(
                job.id, namespace=job.owner_name or None, poll_interval=min(self.poll_interval, 2.0)
            )
        except BaseException as exc:  # Ctrl-C, SIGTERM, a lost API: a job this task started never runs on
            log_outcome(
                self.log,
                cancel_and_confirm(
                    self.hook, job.id, namespace=job.owner_name or None, reason=stop_reason(exc)
                ),
            )
            raise
        self._prepared_for = self._outputs_run
        if not final.stage.is_success:
            raise HfJobFailedError(
                f"Could not prepare the outputs/checkpoint folders: job {final.id} ended {final.stage.value}"
                f"{': ' + final.message if final.message else ''}. {final.url}",
                job_id=final.id, stage=final.stage.value, job_url=final.url,
            )  # fmt: skip

    def _publish_outputs(self, context: Any, job: JobInfo) -> None:
        """When the job ended: its outputs manifest to XCom, its last checkpoint to ``task_state_store``."""
        layout = self._outputs_layout(context, try_place(context))
        if not layout.active:
            return
        reports = self._reports if self._reports is not None and self._reports.job_id == job.id else None
        summary = (reports.summary(redact) if reports is not None else None) or {}
        if layout.outputs:
            reported = summary.get("outputs") or []
            omitted = int(summary.get("dropped", 0)) if len(reported) >= MAX_OUTPUTS else 0
            manifest = build_manifest(layout.outputs, layout.place, reported, job_id=job.id, omitted=omitted)
            context["ti"].xcom_push(key=OUTPUTS_XCOM_KEY, value=manifest)
            if reported:
                self.log.info(
                    "Outputs of job %s: %d file(s) in %s (the %s XCom).", job.id, len(reported), manifest["uri"],
                    OUTPUTS_XCOM_KEY,
                )  # fmt: skip
            else:
                self.log.info(
                    "Job %s reported no outputs (%s): its manifest lists no files. A @task.hf_job function or "
                    "UV script reports what it wrote to /outputs by itself; an image job runs "
                    "`python hfjobs_report.py --outputs` at its end (docs/outputs.md).", job.id, manifest["uri"],
                )  # fmt: skip
        checkpoint = summary.get("checkpoint")
        if layout.checkpoint_dir and isinstance(checkpoint, Mapping):
            _task_state(context, self.log).set(CHECKPOINT_STATE_KEY, json.dumps(dict(checkpoint)))
