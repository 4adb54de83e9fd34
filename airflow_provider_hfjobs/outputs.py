"""Outputs per task instance, inputs from an earlier task, and checkpoints that survive tries: the rules,
sans-IO (the Airflow glue is :mod:`airflow_provider_hfjobs.operators.outputs`).

``outputs="alice/artifacts"`` mounts the bucket's folder ``<dag>/<run>/<task>/<map_index>/<try>`` (each part
escaped, :func:`escape_part`) read-write at ``/outputs``; the job learns it from ``HFJOBS_OUTPUTS_DIR``. The
task pushes a *manifest* of what the job wrote there to the ``hf_job_outputs`` XCom::

    {"type": "hf_job_outputs", "bucket": "alice/artifacts", "prefix": "etl/manual__.../export/-1/1",
     "uri": "hf://buckets/alice/artifacts/etl/.../1", "job_id": "...", "source": "reports",
     "files": [{"path": "part-0.jsonl", "size": 1234, "sha256": "9f86d0..."}], "omitted": 0}

``inputs=<that manifest>`` (or a list of them) mounts each manifest's folder read-only, at ``/inputs`` (one)
or ``/inputs-0``, ``/inputs-1``... (a list). ``checkpoint_dir="alice/ckpts"`` mounts the folder
``<dag>/<run>/<task>/<map_index>`` (no try: every try of the task instance shares it) read-write at
``/checkpoints`` (``HFJOBS_CHECKPOINT_DIR``); a later try gets ``HFJOBS_RESUME=1`` and the last checkpoint
the job reported (``HFJOBS_LAST_CHECKPOINT``, ``HFJOBS_LAST_CHECKPOINT_STEP``).

Where the sha256 comes from: the Hub's bucket listing gives sizes and Xet hashes, no sha256, so the job
computes the manifest itself (:func:`airflow_provider_hfjobs.reports.report_outputs`, one ``output`` report
line per file) at its end; a ``@task.hf_job`` function and a UV script get that for free, an image job
prints the lines (``python hfjobs_report.py --outputs``). A folder on a bucket exists only once a file is in
it (as in any object store), and a job whose volume ``path`` does not exist fails when it starts: before the
job, one short job (:func:`prepare_command`) writes a marker file into each folder to be mounted.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.jobs.models import Volume
from airflow_provider_hfjobs.reports import (
    CHECKPOINT_ENV,
    CHECKPOINT_RECORD,
    LAST_CHECKPOINT_ENV,
    LAST_CHECKPOINT_STEP_ENV,
    OUTPUTS_ENV,
    PREFIX_MARKER,
    RESUME_ENV,
)

OUTPUTS_MOUNT = "/outputs"
INPUTS_MOUNT = "/inputs"
CHECKPOINT_MOUNT = "/checkpoints"
#: The ``hf://`` URI of the try's folder, for the job (``@task.hf_job`` returns it in a path's entry).
OUTPUTS_URI_ENV = "HFJOBS_OUTPUTS_URI"
#: Where the inputs are: one directory, or (a list) the directories joined by ``:``.
INPUTS_ENV = "HFJOBS_INPUTS_DIR"
OUTPUTS_XCOM_KEY = "hf_job_outputs"
MANIFEST_TYPE = "hf_job_outputs"
#: ``task_state_store`` key (Airflow >= 3.3): the last checkpoint the task instance's jobs reported (JSON).
CHECKPOINT_STATE_KEY = "hf_job_checkpoint"
#: The job that makes the folders exist: a small image with a shell, a cpu-basic flavor, a short timeout.
PREPARE_IMAGE = "busybox:1.37"
PREPARE_FLAVOR = "cpu-basic"
PREPARE_TIMEOUT = "10m"
PREPARE_MOUNT = "/hfjobs-prepare"
ARGUMENTS = ("outputs", "inputs", "checkpoint_dir")

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}\Z")
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def escape_part(value: Any) -> str:
    """One folder name from a DAG id, run id, task id or number: letters, digits, ``-_.`` kept, every other
    byte ``%XX`` (so ``manual__2026-01-01T00:00:00+00:00`` becomes ``manual__2026-01-01T00%3A00%3A00%2B00%3A00``),
    a leading ``.`` too (never ``.`` or ``..``). Injective: two different names never share a folder."""
    text = str(value)
    escaped = "".join(
        char if char in _SAFE else "".join(f"%{byte:02X}" for byte in char.encode("utf-8")) for char in text
    )
    if escaped.startswith("."):
        escaped = "%2E" + escaped[1:]
    return escaped or "%00"


@dataclass(frozen=True)
class TryPlace:
    """Which try of which task instance: the folders of its outputs and checkpoints."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int

    @property
    def instance_prefix(self) -> str:
        """Shared by every try of the task instance (the checkpoint folder)."""
        parts = (self.dag_id, self.run_id, self.task_id, self.map_index)
        return "/".join(escape_part(part) for part in parts)

    @property
    def try_prefix(self) -> str:
        """This try's own folder (the outputs)."""
        return f"{self.instance_prefix}/{escape_part(self.try_number)}"


#: What parse-time checks build the volumes with (the real place is known when the task runs).
PLACEHOLDER = TryPlace("dag", "run", "task", -1, 1)


def check_bucket(value: Any, argument: str) -> str:
    """A bucket id ``namespace/name``, or a clear error naming the argument."""
    if not isinstance(value, str) or not _BUCKET_RE.match(value):
        raise HfJobsInputError(
            f"{argument} must be a bucket id 'namespace/name' (e.g. {argument}='alice/artifacts', made with hf "
            f"buckets create); got {value!r:.100}."
        )
    return value


def check_manifest(value: Any, where: str = "inputs") -> dict[str, Any]:
    """An ``hf_job_outputs`` manifest as :func:`build_manifest` makes it, checked (it may come through XCom)."""
    if not isinstance(value, Mapping) or value.get("type") != MANIFEST_TYPE:
        raise HfJobsInputError(
            f"{where} must be the {OUTPUTS_XCOM_KEY} XCom of a task with outputs= (a manifest, or a list of them), "
            "e.g. inputs=\"{{ ti.xcom_pull(task_ids='export', key='"
            f"{OUTPUTS_XCOM_KEY}') }}}}\" with render_template_as_native_obj=True, or "
            f"XComArg(export, key='{OUTPUTS_XCOM_KEY}'); got {type(value).__name__} {str(value)[:80]!r}."
        )
    bucket = check_bucket(value.get("bucket"), f"{where}['bucket']")
    prefix = value.get("prefix")
    if not isinstance(prefix, str) or not prefix.strip("/") or ".." in prefix.split("/"):
        raise HfJobsInputError(f"{where}['prefix'] must be the folder of the manifest; got {prefix!r:.100}.")
    files = value.get("files")
    if not isinstance(files, list) or not all(isinstance(entry, Mapping) for entry in files):
        raise HfJobsInputError(
            f"{where}['files'] must be a list of {{path, size, sha256}}; got {files!r:.100}."
        )
    return {**value, "bucket": bucket, "prefix": prefix.strip("/")}


def check_inputs(value: Any) -> list[dict[str, Any]]:
    """``inputs``: ``None``, a manifest, or a list of manifests (a mapped producer's XCom); a template
    rendered as text (no ``render_template_as_native_obj``) is read back as JSON or a Python literal."""
    if value is None:
        return []
    if isinstance(value, str):
        import ast
        import json

        try:
            value = json.loads(value)
        except ValueError:
            with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError):
                value = ast.literal_eval(value.strip())  # else refused below, with what to pass
    if isinstance(value, Mapping):
        return [check_manifest(value)]
    if isinstance(value, (list, tuple)):
        return [check_manifest(item, f"inputs[{index}]") for index, item in enumerate(value)]
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # a lazy XCom sequence
        return check_inputs(list(value))
    return [check_manifest(value)]


def input_mounts(count: int) -> list[str]:
    return [INPUTS_MOUNT] if count == 1 else [f"{INPUTS_MOUNT}-{index}" for index in range(count)]


@dataclass(frozen=True)
class Layout:
    """The volumes and environment ``outputs``, ``inputs`` and ``checkpoint_dir`` give one try's job."""

    outputs: str | None
    inputs: tuple[dict[str, Any], ...]
    checkpoint_dir: str | None
    place: TryPlace

    @classmethod
    def of(cls, outputs: Any, inputs: Any, checkpoint_dir: Any, place: TryPlace) -> Layout:
        return cls(
            check_bucket(outputs, "outputs") if outputs is not None else None,
            tuple(check_inputs(inputs)),
            check_bucket(checkpoint_dir, "checkpoint_dir") if checkpoint_dir is not None else None,
            place,
        )

    @property
    def active(self) -> bool:
        return bool(self.outputs or self.inputs or self.checkpoint_dir)

    def volumes(self) -> list[Volume]:
        out = []
        if self.outputs:
            out.append(
                Volume(type="bucket", source=self.outputs, mount_path=OUTPUTS_MOUNT, path=self.place.try_prefix,
                       read_only=False)
            )  # fmt: skip
        for mount, manifest in zip(input_mounts(len(self.inputs)), self.inputs, strict=True):
            out.append(
                Volume(type="bucket", source=manifest["bucket"], mount_path=mount, path=manifest["prefix"],
                       read_only=True)
            )  # fmt: skip
        if self.checkpoint_dir:
            out.append(
                Volume(type="bucket", source=self.checkpoint_dir, mount_path=CHECKPOINT_MOUNT,
                       path=self.place.instance_prefix, read_only=False)
            )  # fmt: skip
        return out

    def check_free(self, user_volumes: Sequence[Volume]) -> None:
        """No user volume at (or inside, or around) a mount these arguments take."""
        mine = {volume.mount_path: argument for volume, argument in self._owned()}
        for index, volume in enumerate(user_volumes):
            for path, argument in mine.items():
                user = volume.mount_path.rstrip("/") or "/"
                if user == path or user.startswith(path + "/") or path.startswith(user.rstrip("/") + "/"):
                    raise HfJobsInputError(
                        f"volumes[{index}] is mounted at {volume.mount_path}, which {argument}= uses ({path}): "
                        f"mount it elsewhere, or leave {argument} out and mount the bucket yourself."
                    )

    def _owned(self) -> list[tuple[Volume, str]]:
        volumes = self.volumes()
        names = (["outputs"] if self.outputs else []) + ["inputs"] * len(self.inputs)
        names += ["checkpoint_dir"] if self.checkpoint_dir else []
        return list(zip(volumes, names, strict=True))

    def env(self, last_checkpoint: Mapping[str, Any] | None, resume: bool) -> dict[str, str]:
        """The job's environment for these mounts (``resume``: :func:`should_resume`)."""
        env: dict[str, str] = {}
        if self.outputs:
            env[OUTPUTS_ENV] = OUTPUTS_MOUNT
            env[OUTPUTS_URI_ENV] = f"hf://buckets/{self.outputs}/{self.place.try_prefix}"
        if self.inputs:
            env[INPUTS_ENV] = ":".join(input_mounts(len(self.inputs)))
        if self.checkpoint_dir:
            env[CHECKPOINT_ENV] = CHECKPOINT_MOUNT
            if resume:
                env[RESUME_ENV] = "1"
            if resume and last_checkpoint:
                env[LAST_CHECKPOINT_ENV] = str(last_checkpoint["path"])
                if last_checkpoint.get("step") is not None:
                    env[LAST_CHECKPOINT_STEP_ENV] = str(last_checkpoint["step"])
        return env

    def folders_to_prepare(self) -> list[tuple[str, str]]:
        """(bucket, folder) that must exist before the job starts: its outputs and checkpoint folders."""
        found = [(self.outputs, self.place.try_prefix)] if self.outputs else []
        if self.checkpoint_dir:
            found.append((self.checkpoint_dir, self.place.instance_prefix))
        return found


def should_resume(first_try_of_run: bool) -> bool:
    """A try resumes when an earlier try of this run came before it (an Airflow retry); the first try of a
    run, or the first after a clear, starts afresh (its checkpoint record is removed, :func:`prepare_command`)."""
    return not first_try_of_run


def prepare_command(
    folders: Sequence[tuple[str, str]], *, reset: Sequence[tuple[str, str]] = ()
) -> tuple[list[str], list[Volume]]:
    """The command and volumes of the job that makes each (bucket, folder) exist: every bucket mounted whole
    (once), a marker file (:data:`~airflow_provider_hfjobs.reports.PREFIX_MARKER`, left out of manifests) in
    each folder; in each ``reset`` folder the checkpoint record is removed (a fresh start)."""
    buckets = list(dict.fromkeys(bucket for bucket, _ in [*folders, *reset]))
    mounts = {bucket: f"{PREPARE_MOUNT}-{index}" for index, bucket in enumerate(buckets)}
    volumes = [
        Volume(type="bucket", source=bucket, mount_path=mount, read_only=False)
        for bucket, mount in mounts.items()
    ]
    made = [f"{mounts[bucket]}/{folder}" for bucket, folder in folders]
    cleared = [f"{mounts[bucket]}/{folder}" for bucket, folder in reset]
    script = (
        f'n=$1; shift; i=0; for d in "$@"; do i=$((i+1)); if [ "$i" -le "$n" ]; then '
        f'mkdir -p "$d" && touch "$d/{PREFIX_MARKER}" || exit 1; else rm -f "$d/{CHECKPOINT_RECORD}"; fi; done'
    )
    return ["sh", "-c", script, "hfjobs-prepare", str(len(made)), *made, *cleared], volumes


def build_manifest(
    bucket: str, place: TryPlace, reported: Sequence[Mapping[str, Any]], *, job_id: str, omitted: int = 0
) -> dict[str, Any]:
    """The ``hf_job_outputs`` XCom: the try's folder and the files the job reported (path, size, sha256)."""
    files = [
        {"path": str(entry["path"]), "size": entry.get("size"), "sha256": entry.get("sha256")}
        for entry in reported
        if isinstance(entry, Mapping) and isinstance(entry.get("path"), str)
    ]
    return {
        "type": MANIFEST_TYPE, "bucket": bucket, "prefix": place.try_prefix,
        "uri": f"hf://buckets/{bucket}/{place.try_prefix}", "mount_path": OUTPUTS_MOUNT, "job_id": job_id,
        "source": "reports" if files else "none", "files": files, "omitted": int(omitted),
    }  # fmt: skip


def checkpoint_from_state(value: Any) -> dict[str, Any] | None:
    """The last checkpoint as ``task_state_store`` kept it (JSON text), or ``None`` if absent or odd."""
    import json

    if not isinstance(value, str) or not value:
        return None
    try:
        found = json.loads(value)
    except ValueError:
        return None
    if not isinstance(found, dict) or not isinstance(found.get("path"), str):
        return None
    step = found.get("step")
    return {
        "path": found["path"],
        "step": step if isinstance(step, int) and not isinstance(step, bool) else None,
    }
