"""What a job read and wrote, as asset URIs: the one rule, sans-IO (no Airflow import).

Airflow Assets (Datasets on 2.11) and OpenLineage datasets of a job come from two places:

- its **volumes**: a bucket mounted read-write is an *output* (``hf://buckets/<ns>/<name>``), and every
  read-only volume an *input* (``hf://buckets/...``, ``hf://models/<id>``, ``hf://datasets/<id>``,
  ``hf://spaces/<id>``; the Hub mounts repos read-only always). The URI names the bucket or repo, not the
  subfolder mounted (``path``, given in the event's extra instead): a DAG scheduled on
  ``Asset("hf://buckets/alice/ckpts")`` runs whichever prefix of it a job wrote, and a per-try prefix
  does not make a new asset at each try;
- its **reports**: every ``report_asset(uri, metadata)`` (:mod:`.reports`) is an output, its metadata
  the event's extra (a pushed model: ``report_asset("hf://models/alice/llm")``). A path in the job
  (``/ckpts/model.safetensors``) under a written bucket's mount path is a file of that bucket: listed
  (``files``: its path in the bucket, its metadata) in the bucket's event, not an asset of its own (a
  checkpoint per epoch must not make an asset each); any other path names nothing outside the job and is
  no asset (:attr:`JobAssets.local`; it stays in the reports XCom).

The Airflow side (declaring inlets/outlets, emitting events) is :mod:`.operators.lineage`; the
OpenLineage side reads the same :class:`JobAssets`.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_hfjobs.jobs import Volume

#: The URI scheme of everything on the Hub.
SCHEME = "hf"
#: A volume's ``type`` -> the collection its URI names (``hf://<collection>/<id>``).
COLLECTIONS = {"bucket": "buckets", "model": "models", "dataset": "datasets", "space": "spaces"}
#: Volume types a job can write: the Hub forces repo mounts (models, datasets, Spaces) read-only.
WRITABLE_TYPES = frozenset({"bucket"})
#: The bucket ``huggingface_hub`` uploads a UV job's local script into and mounts at ``/data``: plumbing,
#: not a dataset of the user's.
ARTIFACTS_BUCKET = "jobs-artifacts"


@dataclass(frozen=True)
class AssetRef:
    """One asset a job read or wrote: its URI and what its Asset event (or OpenLineage dataset) carries."""

    uri: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobAssets:
    """The assets of one job: ``inputs`` it read, ``outputs`` it wrote (each URI once, in order)."""

    inputs: tuple[AssetRef, ...] = ()
    outputs: tuple[AssetRef, ...] = ()
    #: Reported paths under no written bucket: files of the job's own disk, gone with it.
    local: tuple[str, ...] = ()

    @property
    def uris(self) -> tuple[list[str], list[str]]:
        return [ref.uri for ref in self.inputs], [ref.uri for ref in self.outputs]


def volume_uri(volume: Volume) -> str:
    """``hf://buckets/alice/ckpts``, ``hf://models/openai/whisper`` (the bucket or repo, not its subfolder)."""
    collection = COLLECTIONS.get(volume.type, f"{volume.type}s")
    return f"{SCHEME}://{collection}/{volume.source.strip('/')}"


def writes(volume: Volume) -> bool:
    """Whether the job can write through this volume (a bucket not mounted ``read_only``)."""
    return volume.type in WRITABLE_TYPES and not volume.read_only


def is_plumbing(volume: Volume) -> bool:
    """The bucket ``hf jobs uv run`` ships a local script through, at ``/data``: no asset of the user's."""
    return volume.type == "bucket" and volume.source.rpartition("/")[2] == ARTIFACTS_BUCKET


def resolve_path(path: str, volumes: Iterable[Volume]) -> tuple[Volume, str] | None:
    """The written bucket holding a path in the job (the longest mount wins) and the file's path in that
    bucket, ``None`` if no written bucket holds it."""
    normalized = posixpath.normpath(path)
    best: Volume | None = None
    for volume in volumes:
        mount = posixpath.normpath(volume.mount_path)
        inside = normalized == mount or normalized.startswith(mount.rstrip("/") + "/")
        if writes(volume) and inside and (best is None or len(mount) > len(best.mount_path)):
            best = volume
    if best is None:
        return None
    relative = posixpath.relpath(normalized, posixpath.normpath(best.mount_path))
    parts = [*([best.path.strip("/")] if best.path else []), relative]
    return best, "/".join(part for part in parts if part and part != ".")


def _volume_extra(volume: Volume) -> dict[str, Any]:
    extra: dict[str, Any] = {"mount_path": volume.mount_path}
    if volume.path:
        extra["path"] = volume.path
    if volume.revision:
        extra["revision"] = volume.revision
    return extra


def volume_assets(volumes: Iterable[Volume]) -> JobAssets:
    """Inputs and outputs from volumes alone: what a task declares when the DAG is parsed."""
    return job_assets(volumes, ())


def job_assets(
    volumes: Iterable[Volume], reported: Iterable[Mapping[str, Any]], job: Mapping[str, Any] | None = None
) -> JobAssets:
    """The assets of a job from its volumes and its ``asset`` reports (the ``assets`` of a report summary,
    each ``{"uri", "metadata"?}``); ``job`` (e.g. ``{"hf_job_id": ..., "hf_job_url": ...}``) goes into every
    extra. A URI both mounted and reported is one output, the report's metadata added to the volume's."""
    volumes = list(volumes)
    base = dict(job or {})
    local: list[str] = []
    inputs: dict[str, AssetRef] = {}
    outputs: dict[str, AssetRef] = {}
    for volume in volumes:
        if is_plumbing(volume):
            continue
        uri = volume_uri(volume)
        target = outputs if writes(volume) else inputs
        target.setdefault(uri, AssetRef(uri, {**base, **_volume_extra(volume)}))
    for report in reported:
        reported_uri, metadata = report.get("uri"), report.get("metadata")
        if not isinstance(reported_uri, str) or not reported_uri:
            continue
        if reported_uri.startswith("/"):
            resolved = resolve_path(reported_uri, volumes)
            if resolved is None:
                local.append(reported_uri)
                continue
            # A file of a written bucket: listed in the bucket's event, not an asset of its own (a file per
            # epoch under a per-run folder would make thousands of assets).
            volume, path = resolved
            bucket = outputs[volume_uri(volume)]
            entry = {"path": path, **({"metadata": dict(metadata)} if isinstance(metadata, Mapping) else {})}
            files = [*bucket.extra.get("files", []), entry]
            outputs[bucket.uri] = AssetRef(bucket.uri, {**bucket.extra, "files": files})
            continue
        earlier = outputs.get(reported_uri)
        extra = {
            **(earlier.extra if earlier else base),
            **(metadata if isinstance(metadata, Mapping) else {}),
        }
        outputs[reported_uri] = AssetRef(reported_uri, extra)
    return JobAssets(tuple(inputs.values()), tuple(outputs.values()), tuple(dict.fromkeys(local)))


def alias_name(dag_id: str | None, task_id: str) -> str:
    """The Asset alias a task's reported (and templated) assets are emitted through: one per task."""
    return f"hfjobs:{dag_id}.{task_id}" if dag_id else f"hfjobs:{task_id}"


def openlineage_name(uri: str) -> tuple[str, str]:
    """An asset URI as an OpenLineage dataset ``(namespace, name)``, by the OpenLineage naming convention
    (``scheme://authority`` and the path): ``hf://buckets/alice/ckpts`` -> ``("hf://buckets", "alice/ckpts")``,
    ``s3://b/k`` -> ``("s3://b", "k")``; a URI without a scheme: ``("hf", uri)``."""
    parsed = urllib.parse.urlsplit(uri)
    if not parsed.scheme:
        return SCHEME, uri
    return f"{parsed.scheme}://{parsed.netloc}", parsed.path.lstrip("/") or "/"
