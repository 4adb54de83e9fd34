"""Assets and lineage of a job task: Airflow Assets (Datasets on 2.11) and OpenLineage facets.

When the DAG is parsed, a task with literal ``volumes`` declares them (:mod:`airflow_provider_hfjobs.assets`):
read-only volumes as ``inlets``, written buckets as ``outlets`` (so the UI's asset graph and asset-scheduled
DAGs know of them), plus one :class:`AssetAlias` per task, through which what is known only at run time
(templated volumes, ``report_asset``) is emitted. When the job COMPLETED, each output gets its Asset event,
with the job's id and URL (and the report's metadata) as its extra; a failed job emits none, as Airflow's
own outlets. ``get_openlineage_facets_on_start/complete/failure`` (the convention the OpenLineage provider
calls) give the same inputs and outputs, plus an ``hfJob`` run facet: id, URL, image, flavor, stage, cost,
metrics summary, checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset, AssetAlias, redact

from airflow_provider_hfjobs.assets import JobAssets, alias_name, job_assets, openlineage_name, volume_assets
from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.jobs import JobInfo, normalize_volumes

if TYPE_CHECKING:
    from airflow_provider_hfjobs.reports import ReportLog

    _Base = Any
else:
    _Base = object


class AssetLineage(_Base):
    """Mixin of :class:`~airflow_provider_hfjobs.operators.hfjobs.HfJobRunOperator`: see the module."""

    if TYPE_CHECKING:
        emit_assets: bool
        inlets: list[Any]
        outlets: list[Any]
        volumes: Any
        wait_for_completion: bool
        image: str
        namespace: str | None
        _reports: ReportLog | None

        def _holds_template(self, value: Any) -> bool: ...

    #: The last job this task ended with, and its ``job`` XCom (for the OpenLineage facets).
    _lineage_job: JobInfo | None = None
    _lineage_info: Mapping[str, Any] | None = None

    # ------------------------------------------------------------------------------------ parse time
    def _declare_assets(self) -> None:
        """Literal volumes as inlets and outlets, and the task's alias (see the module)."""
        if not self.emit_assets:
            return
        declared = JobAssets()
        if not self._holds_template(self.volumes):
            with contextlib.suppress(HfJobsInputError):  # said by the argument checks, with what to change
                declared = volume_assets(normalize_volumes(self.volumes))
        inputs, outputs = declared.uris
        if not self.wait_for_completion:
            # The task ends at submit, before the job wrote anything: no event for what it will write.
            outputs = []
        self.inlets = _with_assets(self.inlets, inputs)
        self.outlets = [*_with_assets(self.outlets, outputs), AssetAlias(name=self._asset_alias())]

    def _asset_alias(self) -> str:
        dag = getattr(self, "_dag", None)  # ``self.dag`` raises on Airflow 3 for a task outside a DAG
        return alias_name(getattr(dag, "dag_id", None), self.task_id)

    # ------------------------------------------------------------------------------------- run time
    def _job_assets(self, job: JobInfo) -> JobAssets:
        summary = self._reports.summary(redact) if self._reports is not None else None
        reported = summary.get("assets", []) if summary else []
        return job_assets(job.volumes, reported, {"hf_job_id": job.id, "hf_job_url": job.url})

    def _record_lineage(self, context: Any, job: JobInfo, info: Mapping[str, Any]) -> None:
        """Keep the job for the OpenLineage facets; a COMPLETED one's outputs get their Asset events."""
        self._lineage_job, self._lineage_info = job, info
        if not (self.emit_assets and job.stage.is_success):
            return
        events = context.get("outlet_events") if isinstance(context, Mapping) else None
        if events is None:
            return
        declared = {outlet.uri for outlet in self.outlets if isinstance(outlet, Asset)}
        alias = next((outlet for outlet in self.outlets if isinstance(outlet, AssetAlias)), None)
        emitted, refused = [], []
        assets = self._job_assets(job)
        for ref in assets.outputs:
            try:
                asset = Asset(ref.uri)
                if asset.uri in declared:
                    events[asset].extra.update(ref.extra)
                elif alias is not None:
                    events[alias].add(asset, extra=dict(ref.extra))
                else:
                    continue
            except (ValueError, TypeError) as exc:  # a reported URI Airflow does not take as an asset
                refused.append(f"{ref.uri} ({exc})")
                continue
            emitted.append(asset.uri)
        if emitted:
            self.log.info("Asset events for job %s: %s", job.id, ", ".join(emitted))
        if refused:
            self.log.warning("Not Airflow assets, so no event: %s", "; ".join(refused))
        if assets.local:
            self.log.info(
                "Reported paths under no written bucket (files of the job's own disk), so no asset event: %s",
                ", ".join(assets.local),
            )

    # ----------------------------------------------------------------------------------- OpenLineage
    def get_openlineage_facets_on_start(self) -> Any:
        """The inputs and outputs the volumes declare (the job does not exist yet)."""
        try:
            assets = volume_assets(normalize_volumes(self.volumes))
        except (HfJobsInputError, TypeError, ValueError):
            assets = JobAssets()
        return _operator_lineage(assets, {})

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The job's inputs and outputs (volumes and reported assets) and its ``hfJob`` run facet."""
        job = self._lineage_job
        if job is None:
            return self.get_openlineage_facets_on_start()
        return _operator_lineage(self._job_assets(job), {"hfJob": self._run_facet(job)})

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self.get_openlineage_facets_on_complete(task_instance)

    def _run_facet(self, job: JobInfo) -> Any:
        from airflow_provider_hfjobs.lineage_facets import HfJobRunFacet

        info = self._lineage_info or {}
        summary = self._reports.summary(redact) if self._reports is not None else None
        return HfJobRunFacet(
            jobId=job.id, jobUrl=job.url, namespace=job.owner_name or self.namespace or "", image=self.image,
            flavor=job.flavor, stage=job.stage.value, billedSeconds=info.get("billed_seconds"),
            priceUsdPerHour=info.get("price_per_hour_usd"), costUsd=info.get("cost_usd"),
            metrics=dict(info.get("metrics") or {}),
            checks=dict((summary or {}).get("checks") or {}),
        )  # fmt: skip


def _with_assets(existing: Any, uris: list[str]) -> list[Any]:
    """``existing`` inlets/outlets plus an :class:`Asset` for each URI not declared yet."""
    current = list(existing or [])
    have = {item.uri for item in current if isinstance(item, Asset)}
    return current + [Asset(uri) for uri in dict.fromkeys(uris) if uri not in have]


def _operator_lineage(assets: JobAssets, run_facets: dict[str, Any]) -> Any:
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    def datasets(refs: Any) -> list[Any]:
        return [Dataset(*openlineage_name(ref.uri)) for ref in refs]

    return OperatorLineage(
        inputs=datasets(assets.inputs), outputs=datasets(assets.outputs), run_facets=run_facets
    )
