"""The whole job API of huggingface_hub 2.4 in the sans-IO core (issue 12): the create body with every
``run_job`` argument, differential against ``huggingface_hub._create_job_spec``; volumes; uv commands;
the new job JSON fields; route descriptions; ``wait_for_job``'s rules; the metrics stream parser; and bad
input for every new argument, rejected before any request (each case listed in docs/reliability.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from huggingface_hub import HfApi
from huggingface_hub import Volume as HubVolume
from huggingface_hub import _jobs_api as official

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsAsyncHook, HfJobsHook, _recent_credentials
from airflow_provider_hfjobs.jobs import (
    NAMESPACE,
    JobInfo,
    JobStage,
    JobWait,
    Volume,
    build_expose_payload,
    build_job_spec,
    build_uv_command,
    cancel_job_call,
    classify_uv_script,
    create_job_call,
    default_uv_job_name,
    hardware_call,
    inspect_job_call,
    job_logs_route,
    job_metrics_route,
    normalize_volumes,
    rerun_job_call,
    update_job_expose_call,
    update_job_labels_call,
    whoami_call,
)
from airflow_provider_hfjobs.sse import MetricsStreamParser

JOB = "687fb701029421ae5549d998"


def hub_volumes(volumes: list[Any] | None) -> list[HubVolume] | None:
    """The same volumes as ``huggingface_hub`` objects (its ``Volume`` takes camelCase or snake_case)."""
    if volumes is None:
        return None
    return [
        v if isinstance(v, HubVolume) else HubVolume(**(v if isinstance(v, dict) else v.to_xcom()))
        for v in volumes
    ]


# ------------------------------------------------------------------------------ create, differentially
SPECS: list[dict[str, Any]] = [
    dict(image="python:3.12", command=["python"], attempts=1),
    dict(image="python:3.12", command=["python"], attempts=3, timeout="2h"),
    dict(
        image="python:3.12",
        command=["x"],
        volumes=[Volume(type="bucket", source="alice/ckpts", mount_path="/ckpts")],
    ),
    dict(
        image="python:3.12",
        command=["x"],
        volumes=[
            {
                "type": "dataset",
                "source": "HuggingFaceFW/fineweb",
                "mountPath": "/data",
                "revision": "main",
                "path": "sample/10BT",
            },
            {"type": "bucket", "source": "alice/out", "mount_path": "/out", "read_only": False},
            {"type": "model", "source": "org/model", "mountPath": "/model", "readOnly": True},
            {"source": "org/default-is-a-model", "mount_path": "/m2"},
        ],
    ),
    dict(
        image="python:3.12", command=["x"], volumes=[HubVolume(type="space", source="a/s", mount_path="/app")]
    ),
    dict(image="python:3.12", command=["x"], volumes=[]),
    dict(image="python:3.12", command=["x"], expose=[8000]),
    dict(image="python:3.12", command=["x"], expose_public=[7860]),
    dict(image="python:3.12", command=["x"], expose=[8000, 8000, 9000], expose_public=[9000, 7860, 7860]),
    dict(image="python:3.12", command=["x"], expose=[], expose_public=[]),
    dict(image="python:3.12", command=["x"], ssh=True),
    dict(image="python:3.12", command=["x"], ssh=False),
    dict(image="python:3.12", command=["x"], network_group="train"),
    dict(image="python:3.12", command=["x"], network_group="train", network_aliases=["master", "worker-1"]),
    dict(image="python:3.12", command=["x"], network_group="train", network_aliases=[]),
    dict(image="python:3.12", command=["x"], network_group=""),
    dict(image="python:3.12", command=["x"], resource_group_id="66f1a2b3c4d5e6f708192a3b"),
    dict(image="python:3.12", command=["x"], resource_group_id=""),
    dict(
        image="hf.co/spaces/alice/duckdb",
        command=["duckdb"],
        env={"A": "1"},
        secrets={"S": "s"},
        flavor="a10g-small",
        timeout="30m",
        attempts=2,
        name="nightly",
        labels={"team": "ml"},
        volumes=[{"type": "bucket", "source": "alice/ckpts", "mountPath": "/ckpts", "path": "run-1"}],
        expose=[8000],
        expose_public=[7860],
        ssh=True,
        network_group="g",
        network_aliases=["a"],
        resource_group_id="rg",
    ),
]


@pytest.mark.parametrize("spec", SPECS)
def test_create_body_equals_the_official_client(spec: dict[str, Any]) -> None:
    ours = build_job_spec(**spec)
    name = spec.get("name") or official._default_job_name_from_image(spec["image"], spec["command"])
    defaults = {"env": None, "secrets": None, "flavor": None, "timeout": None}
    theirs = official._create_job_spec(
        **{**defaults, **spec, "name": name, "volumes": hub_volumes(spec.get("volumes"))}
    )
    assert json.dumps(ours) == json.dumps(theirs)  # same keys, same order, same values


@pytest.mark.parametrize(
    ("expose", "public"),
    [(None, None), ([1], None), (None, [2]), ([1, 2, 1], [2, 3]), ([], [5, 5]), ([7], [7])],
)
def test_expose_payload_equals_the_official_client(
    expose: list[int] | None, public: list[int] | None
) -> None:
    assert build_expose_payload(expose, public) == official._build_expose_payload(expose, public)


@pytest.mark.parametrize(
    "data",
    [
        {"type": "bucket", "source": "a/b", "mountPath": "/x"},
        {
            "type": "model",
            "source": "a/b",
            "mountPath": "/x",
            "revision": "v1",
            "readOnly": True,
            "path": "p/q",
        },
        {"type": "bucket", "source": "a/b", "mount_path": "/x", "read_only": False},
        {"source": "a/b", "mountPath": "/x"},
    ],
)
def test_volumes_serialize_and_parse_like_the_official_client(data: dict[str, Any]) -> None:
    (ours,) = normalize_volumes([data])
    theirs = HubVolume(**data)
    assert ours.to_dict() == theirs.to_dict()
    assert Volume.from_api(theirs.to_dict()) == ours
    assert normalize_volumes([ours.to_xcom()]) == [ours]  # the XCom form is accepted back


# ----------------------------------------------------------------------------------------------- uv
@pytest.mark.parametrize(
    ("script", "args", "deps", "python"),
    [
        ("lighteval", ["endpoint", "inference-providers", "model_name=x", "lighteval|gsm8k|0|0"], ["lighteval"], None),
        ("python", ["-c", "print(1)"], None, "3.11"),
        ("https://example.com/sft.py?raw=1", ["--epochs", "3"], ["trl", "torch>=2"], None),
    ],
)  # fmt: skip
def test_uv_command_and_name_equal_the_official_client(
    script: str, args: list[str], deps: list[str] | None, python: str | None
) -> None:
    kind = classify_uv_script(script, is_file=lambda _: False)
    ours, extra_env = build_uv_command(
        script_args=args,
        dependencies=deps,
        python=python,
        **{"script_url" if kind == "url" else "script_command": script},
    )
    theirs, _, _, volumes = HfApi(endpoint="http://127.0.0.1:9", token=False)._create_uv_command_env_and_secrets(
        script=script, script_args=args, dependencies=deps, python=python, env=None, secrets=None,
        namespace="alice", token=False,
    )  # fmt: skip
    assert (ours, extra_env, volumes) == (theirs, {}, [])
    assert default_uv_job_name(script, args) == official._default_job_name_from_script(script, args)


def test_classify_uv_script(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("print(1)\n")
    exists = lambda path: path == str(tool)  # noqa: E731
    assert classify_uv_script("lighteval", is_file=exists) == "command"
    assert classify_uv_script("python3.12", is_file=exists) == "command"
    assert classify_uv_script(str(tool), is_file=exists) == "file"  # an existing file, suffix or not
    assert classify_uv_script("print(1)\nprint(2)", is_file=exists) == "inline"
    assert classify_uv_script("https://e.x/s.py", is_file=exists) == "url"
    for missing in (
        "train.py",
        "run.sh",
        "cfg.yaml",
        "cfg.yml",
        "pyproject.toml",
        "TRAIN.PY",
        "./tool",
        "dir/tool",
    ):
        with pytest.raises(HfJobsInputError, match="does not exist"):
            classify_uv_script(missing, is_file=exists)
    for not_a_command in ("python -c 1", "print(1)", "'lighteval'"):
        with pytest.raises(HfJobsInputError, match="is no file, https URL, inline source"):
            classify_uv_script(not_a_command, is_file=exists)
    # Without a look at the disk (the operator's first pass): path-like is a file, a program name a command.
    assert classify_uv_script("train.py") == "file"
    assert classify_uv_script("lighteval") == "command"
    assert classify_uv_script("print(1)") == "file"


def test_run_uv_job_runs_a_command_as_the_official_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``run_uv_job("lighteval", ...)`` is ``uv run ... lighteval ...`` (it failed with "script file not
    found"); a bare name that is an existing file is shipped as the script, as the official client does."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(HfJobsHook, "_create_job", lambda self, call: sent.append(call.body) or call)
    monkeypatch.setenv(
        "AIRFLOW_CONN_HF_UV",
        json.dumps(
            {
                "conn_type": "hf_jobs",
                "host": "http://127.0.0.1:9",
                "password": "hf_x",
                "extra": {"namespace": "alice"},
            }
        ),
    )
    hook = HfJobsHook("hf_uv")
    hook.run_uv_job("lighteval", script_args=["endpoint", "x"], dependencies=["lighteval"], attempts=2)
    assert sent[-1]["command"] == ["uv", "run", "--with", "lighteval", "lighteval", "endpoint", "x"]
    assert sent[-1]["attempts"] == 2
    assert sent[-1]["labels"]["name"] == official._default_job_name_from_script(
        "lighteval", ["endpoint", "x"]
    )
    assert sent[-1]["dockerImage"] == official.DEFAULT_UV_IMAGE
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lighteval").write_text("print('a file named like the command')\n")
    hook.run_uv_job("lighteval")
    assert sent[-1]["command"][:2] == ["bash", "-c"] and "UV_SCRIPT_ENCODED" in sent[-1]["environment"]


# ------------------------------------------------------------------------------------------- job JSON
FULL_JOB = {
    "id": JOB, "createdAt": "2026-11-24T06:49:34.580Z", "dockerImage": "python:3.12", "command": ["python"],
    "secrets": ["HF_TOKEN"], "flavor": "a10g-small", "labels": {"name": "n"},
    "owner": {"id": "5e9e", "name": "alice", "type": "user"},
    "status": {
        "stage": "RUNNING", "message": None, "exposeUrls": [f"https://{JOB}--8000.hf.jobs"],
        "sshUrl": f"ssh://{JOB}@ssh.hf.jobs", "failureCount": 1,
    },
    "volumes": [
        {"type": "dataset", "source": "o/d", "mountPath": "/data", "revision": "main", "readOnly": True},
        {"type": "bucket", "source": "alice/ckpts", "mountPath": "/ckpts", "path": "run-1"},
    ],
    "retry": 2, "expose": {"ports": [8000, 7860], "portsPublic": [7860]},
    "network": {"group": "train", "aliases": ["master"]},
    "initiator": {"type": "duplicated-job", "id": "5f0000000000000000000000", "name": None},
    "resourceGroupId": "rg-1",
}  # fmt: skip


def test_new_job_fields_parse_like_the_official_client() -> None:
    ours = JobInfo.from_api(FULL_JOB, "https://hub.test")
    theirs = official.JobInfo(**FULL_JOB, endpoint="https://hub.test")
    assert [v.to_dict() for v in ours.volumes] == [v.to_dict() for v in theirs.volumes]
    assert (ours.retry, ours.attempts, ours.failure_count) == (theirs.retry, 3, 1)
    assert (ours.expose, ours.expose_public) == (theirs.expose, theirs.expose_public)
    assert (ours.expose_urls, ours.ssh_url) == (theirs.status.expose_urls, theirs.status.ssh_url)
    assert (ours.network.group, ours.network.aliases) == (theirs.network.group, theirs.network.aliases)
    assert (ours.initiator.type, ours.initiator.id, ours.initiator.name) == (
        theirs.initiator.type, theirs.initiator.id, theirs.initiator.name,
    )  # fmt: skip
    assert ours.resource_group_id == "rg-1"


def test_new_job_fields_go_to_xcom_without_secret_values() -> None:
    leaky = {**FULL_JOB, "secrets": {"HF_TOKEN": "hf_s3cr3t_value"}, "environment": {"A": "1"}}
    info = JobInfo.from_api(leaky).to_dict()
    assert json.loads(json.dumps(info)) == info
    assert "hf_s3cr3t_value" not in json.dumps(info) and info["secret_names"] == ["HF_TOKEN"]
    assert info["volumes"][1] == {
        "type": "bucket", "source": "alice/ckpts", "mount_path": "/ckpts", "revision": None, "read_only": None,
        "path": "run-1",
    }  # fmt: skip
    assert (info["attempts"], info["retry"], info["failure_count"]) == (3, 2, 1)
    assert (info["expose"], info["expose_public"]) == ([8000, 7860], [7860])
    assert info["expose_urls"] == [f"https://{JOB}--8000.hf.jobs"] and info["ssh_url"].startswith("ssh://")
    assert info["network"] == {"group": "train", "aliases": ["master"]}
    assert info["initiator"] == {"type": "duplicated-job", "id": "5f0000000000000000000000", "name": None}
    assert info["resource_group_id"] == "rg-1"


def test_a_job_without_the_new_fields_has_empty_ones() -> None:
    info = JobInfo.from_api({"id": "a", "status": {"stage": "RUNNING"}}).to_dict()
    assert info["volumes"] == [] and info["network"] is None and info["initiator"] is None
    assert info["attempts"] is info["retry"] is info["expose"] is info["ssh_url"] is None


@pytest.mark.parametrize(
    "odd",
    [
        {"volumes": [1, {"type": "bucket"}, "x"]},
        {"volumes": {"type": "bucket"}},
        {"expose": [8000]},
        {"expose": {"ports": "8000", "portsPublic": [True]}},
        {"network": "train"},
        {"network": {"aliases": ["a"]}},
        {"initiator": {"type": "user"}},
        {"retry": "2"},
        {"status": {"stage": "RUNNING", "exposeUrls": "https://x", "sshUrl": 5}},
    ],
)
def test_an_odd_informational_field_never_makes_a_running_job_unreadable(odd: dict[str, Any]) -> None:
    job = JobInfo.from_api({"id": "a", "status": {"stage": "RUNNING"}, **odd})
    assert job.stage is JobStage.RUNNING
    assert not job.volumes and job.network is None and job.initiator is None and job.retry is None
    assert job.expose is None and job.expose_urls is None and job.ssh_url is None


# ------------------------------------------------------------------------------------------------ routes
def test_each_route_is_described_once_with_the_official_path_method_and_body() -> None:
    calls = {
        "whoami": whoami_call(),
        "hardware": hardware_call(),
        "create": create_job_call({"command": ["x"]}, "alice"),
        "inspect": inspect_job_call(JOB, "alice"),
        "cancel": cancel_job_call(JOB, "alice"),
        "rerun": rerun_job_call(JOB, "alice"),
        "labels": update_job_labels_call(JOB, {"team": "ml"}, "alice"),
        "expose": update_job_expose_call(JOB, [8000], [7860], "alice"),
    }
    shape = {name: (call.method, call.path, call.body, call.idempotent) for name, call in calls.items()}
    assert shape == {
        "whoami": ("GET", "/api/whoami-v2", None, True),
        "hardware": ("GET", "/api/jobs/hardware", None, True),
        "create": ("POST", "/api/jobs/alice", {"command": ["x"]}, False),
        "inspect": ("GET", f"/api/jobs/alice/{JOB}", None, True),
        "cancel": ("POST", f"/api/jobs/alice/{JOB}/cancel", None, True),
        "rerun": ("POST", f"/api/jobs/alice/{JOB}/duplicate", None, False),
        "labels": ("PUT", f"/api/jobs/alice/{JOB}/labels", {"labels": {"team": "ml"}}, True),
        "expose": (
            "PUT",
            f"/api/jobs/alice/{JOB}/expose",
            {"ports": [8000, 7860], "portsPublic": [7860]},
            True,
        ),
    }
    metrics, logs = job_metrics_route(JOB, "alice"), job_logs_route(JOB, "alice")
    assert (metrics.path, metrics.read_timeout, metrics.ends_on) == (
        f"/api/jobs/alice/{JOB}/metrics",
        10.0,
        {406, 500},
    )
    assert (logs.path, logs.read_timeout, logs.ends_on) == (f"/api/jobs/alice/{JOB}/logs", 120.0, frozenset())


def test_a_route_without_namespace_waits_for_the_hooks() -> None:
    call = update_job_labels_call(JOB, {"a": "b"})
    assert call.needs_namespace and NAMESPACE in call.route
    with pytest.raises(ValueError, match="not resolved"):
        call.path  # noqa: B018
    resolved = call.in_namespace("my-org")
    assert (resolved.path, resolved.namespace, resolved.body) == (
        f"/api/jobs/my-org/{JOB}/labels",
        "my-org",
        call.body,
    )
    assert create_job_call({}).in_namespace("bob").action == "create a job in namespace 'bob'"
    with pytest.raises(HfJobsInputError, match="namespace"):
        call.in_namespace("a/b")


# ------------------------------------------------------------------------------------------- wait_for_job
def job(stage: str, job_id: str = JOB) -> JobInfo:
    return JobInfo.from_api({"id": job_id, "status": {"stage": stage}, "owner": {"name": "alice"}})


def test_wait_rules_follow_the_official_client() -> None:
    wait = JobWait(JOB, timeout=None, poll_interval=2, stages=None, now=0.0)
    assert wait.single and wait.job_ids == [JOB] and wait.pause(job("RUNNING"), 1e9) == 2.0
    assert [s.value for s in JobStage if wait.reached(job(s.value))] == [
        "COMPLETED",
        "ERROR",
        "CANCELED",
        "DELETED",
    ]
    running = JobWait([JOB, "abc"], timeout=10, poll_interval=4, stages=["running"], now=100.0)
    assert not running.single and running.reached(job("RUNNING")) and running.reached(job("ERROR"))
    assert not running.reached(job("SCHEDULING"))
    assert running.pause(job("SCHEDULING"), 108.0) == 2.0  # never past the deadline
    with pytest.raises(TimeoutError, match=f"job {JOB} is still SCHEDULING after 10 s"):
        running.pause(job("SCHEDULING"), 110.0)
    assert running.result([job("RUNNING"), job("RUNNING", "abc")])[1].id == "abc"
    assert JobWait([], timeout=None, poll_interval=1, stages=JobStage.RUNNING, now=0).result([]) == []


# ------------------------------------------------------------------------------------------------ metrics
SAMPLE = {
    "cpu_usage_pct": 0, "cpu_millicores": 3500, "memory_used_bytes": 1417216, "memory_total_bytes": 15032385536,
    "rx_bps": 0, "tx_bps": 0, "gpus": {"d901cd7f": {"utilization": 0, "memory_used_bytes": 0, "memory_total_bytes": 22836000000}},
    "replica": "j6qz9",
}  # fmt: skip


def test_metrics_stream_yields_the_servers_dicts_however_the_bytes_are_cut() -> None:
    """The wire shape of spec section 6 (``event: metric`` then ``data: {...}``), keep-alives, CRLF, and
    what a sample is not (another event, a non-object, broken JSON): passed over, never raised."""
    second = {**SAMPLE, "cpu_usage_pct": 97.5}
    stream = (
        b": keep-alive\n\n"
        + b"event: metric\ndata: " + json.dumps(SAMPLE, separators=(",", ":")).encode() + b"\n\n"
        + b"event: other\ndata: {\"x\": 1}\n\n"
        + b"event: metric\ndata: [1, 2]\n\n"
        + b"event: metric\ndata: {broken\n\n"
        + b"event: metric\r\ndata: " + json.dumps(second).encode() + b"\r\n\r\n"
        + b"data: {\"unnamed\": true}\n\n"
        + b"event: metric\ndata: {\"cut\": "
    )  # fmt: skip
    whole = MetricsStreamParser().feed(stream)
    assert whole == [SAMPLE, second, {"unnamed": True}]
    for size in (1, 2, 7, 64):
        parser = MetricsStreamParser()
        pieces = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert [sample for piece in pieces for sample in parser.feed(piece)] == whole


# ------------------------------------------------------------------------------------------------ bad input
def run(**kwargs: Any):
    return lambda hook: hook.run_job(**{"image": "python:3.12", "command": ["true"], **kwargs})


def vol(**kwargs: Any):
    return run(volumes=[{"type": "bucket", "source": "alice/ckpts", "mount_path": "/ckpts", **kwargs}])


def uv(script: str, **kwargs: Any):
    return lambda hook: hook.run_uv_job(script, **kwargs)


# (case id, call, what the message must contain)
CASES = [
    ("attempts-zero", run(attempts=0), "attempts must be a whole number of tries, at least 1"),
    ("attempts-not-int", run(attempts="2"), "attempts must be a whole number"),
    (
        "volumes-not-list",
        run(volumes={"type": "bucket", "source": "a/b", "mount_path": "/x"}),
        "volumes must be a list",
    ),
    ("volume-not-dict", run(volumes=["hf://buckets/a/b:/x"]), "volumes[0] must be a Volume or a dict"),
    (
        "volume-no-mount-path",
        run(volumes=[{"type": "bucket", "source": "a/b"}]),
        "volumes[0] has no mount_path",
    ),
    ("volume-no-source", run(volumes=[{"type": "bucket", "mountPath": "/x"}]), "volumes[0] has no source"),
    ("volume-unknown-key", vol(readonly=True), "volumes[0] has an unknown key 'readonly'"),
    ("volume-unknown-type", vol(type="repo"), "volumes[0].type 'repo' is not a volume type"),
    ("volume-source-uri", vol(source="hf://buckets/alice/ckpts"), "is a URI"),
    (
        "volume-source-not-namespaced",
        vol(type="model", source="gpt2", read_only=None),
        "must be 'namespace/name'",
    ),
    (
        "volume-relative-mount-path",
        vol(mount_path="ckpts"),
        "volumes[0].mount_path 'ckpts' must be an absolute path",
    ),
    ("volume-root-mount-path", vol(mount_path="/"), "other than '/'"),
    (
        "volume-duplicate-mount-path",
        run(
            volumes=[
                Volume(type="dataset", source="o/d", mount_path="/data"),
                {"type": "bucket", "source": "a/b", "mountPath": "/data/"},
            ]
        ),
        "volumes[1].mount_path '/data/' is already used by volumes[0]",
    ),
    ("volume-bucket-revision", vol(revision="main"), "a bucket has no revisions"),
    ("volume-repo-read-write", vol(type="dataset", source="o/d", read_only=False), "always mounts read-only"),
    ("volume-path-absolute", vol(path="/runs"), "volumes[0].path '/runs' must be a folder inside"),
    ("expose-not-list", run(expose=8000), "expose must be a list of port numbers"),
    ("expose-port-range", run(expose=[70000]), "expose[0]=70000 is not a port"),
    ("expose-port-string", run(expose=["8000"]), "expose[0]='8000' is not a port"),
    ("expose-public-port-zero", run(expose_public=[0]), "expose_public[0]=0 is not a port"),
    ("ssh-not-bool", run(ssh="yes"), "ssh must be True or False"),
    ("network-aliases-without-group", run(network_aliases=["master"]), "network_aliases needs network_group"),
    ("network-group-invalid", run(network_group="Train_1"), "network_group 'Train_1' is invalid"),
    (
        "network-alias-invalid",
        run(network_group="g", network_aliases=["Master"]),
        "network_aliases[0]='Master'",
    ),
    ("network-alias-twice", run(network_group="g", network_aliases=["a", "a"]), "has 'a' twice"),
    ("resource-group-not-string", run(resource_group_id=5), "resource_group_id must be"),
    ("uv-command-line", uv("python -c 1"), "pass the program as script and its arguments as script_args"),
    ("uv-path-missing", uv("./tools/train"), "does not exist"),
    (
        "labels-update-invalid",
        lambda hook: hook.update_job_labels(JOB, labels={"a b": "x"}),
        "labels key 'a b'",
    ),
    ("labels-update-missing", lambda hook: hook.update_job_labels(JOB, labels=None), "labels is required"),
    ("expose-update-port", lambda hook: hook.update_job_expose(JOB, expose=[0]), "expose[0]=0 is not a port"),
    ("rerun-bad-id", lambda hook: hook.rerun_job("../x"), "is not a job id"),
    ("metrics-bad-id", lambda hook: list(hook.fetch_job_metrics("a/b")), "is not a job id"),
    (
        "wait-unknown-stage",
        lambda hook: hook.wait_for_job(JOB, stages=["FINISHED"]),
        "stages[0] 'FINISHED' is not a job stage",
    ),
    (
        "wait-negative-timeout",
        lambda hook: hook.wait_for_job(JOB, timeout=-1),
        "timeout must be seconds (0 or more)",
    ),
    (
        "wait-poll-string",
        lambda hook: hook.wait_for_job(JOB, poll_interval="5"),
        "poll_interval must be positive",
    ),
    ("wait-ids-not-list", lambda hook: hook.wait_for_job({JOB}), "job_id must be a job id or a list"),
]


@pytest.fixture(params=["namespace", "no-namespace"])
def hook(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> HfJobsHook:
    """A hook whose every request fails the test; without a namespace, resolving one would be a whoami
    request, so bad input must fail before even that."""

    def no_http(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("bad input must be rejected before any request")

    monkeypatch.setattr(requests.Session, "request", no_http)
    extra = {"namespace": "alice"} if request.param == "namespace" else {}
    conn = {"conn_type": "hf_jobs", "host": "http://127.0.0.1:9", "password": "hf_x", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_HF_BAD_API", json.dumps(conn))
    return HfJobsHook("hf_bad_api")


@pytest.mark.parametrize(("case", "call", "needle"), CASES, ids=[case for case, _, _ in CASES])
def test_rejected_before_any_request(hook: HfJobsHook, case: str, call, needle: str) -> None:
    with pytest.raises(HfJobsInputError) as info:
        call(hook)
    assert needle in str(info.value), str(info.value)


ASYNC_CASES = [
    ("labels-update-invalid", lambda hook: hook.update_job_labels(JOB, labels={"a b": "x"})),
    ("expose-update-port", lambda hook: hook.update_job_expose(JOB, expose=[0])),
    ("rerun-bad-id", lambda hook: hook.rerun_job("../x")),
    ("wait-unknown-stage", lambda hook: hook.wait_for_job(JOB, stages=["FINISHED"])),
]


@pytest.mark.parametrize(("case", "call"), ASYNC_CASES, ids=[case for case, _ in ASYNC_CASES])
async def test_the_async_hook_rejects_them_before_any_request(
    case: str, call, monkeypatch: pytest.MonkeyPatch
) -> None:
    _recent_credentials.clear()
    conn = {
        "conn_type": "hf_jobs",
        "host": "http://127.0.0.1:9",
        "password": "hf_x",
    }  # no namespace: no whoami
    monkeypatch.setenv("AIRFLOW_CONN_HF_BAD_ASYNC", json.dumps(conn))
    async with HfJobsAsyncHook("hf_bad_async") as hook:
        with pytest.raises(HfJobsInputError):
            await call(hook)
        assert hook._client is None and hook._kept is None  # nothing was ever opened
    with pytest.raises(HfJobsInputError, match="is not a job id"):
        async for _ in HfJobsAsyncHook("hf_bad_async").fetch_job_metrics("a/b"):
            pass


def test_the_new_cases_are_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.MULTILINE))
    assert {case for case, _, _ in CASES} <= documented
