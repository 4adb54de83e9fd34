"""The edges of issue 19 item 4 that need no server: the hook's own refusals (before any request), the
server's mount-path normalization, the runner's capacity bookkeeping, the shim's process-tree walk."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_hfjobs.exceptions import HfJobsInputError
from airflow_provider_hfjobs.jobs import (
    JobStage,
    build_job_spec,
    validate_command,
    validate_env,
    validate_secrets,
)
from airflow_provider_hfjobs.local.runner import Capacity, check_flavor_capacity
from airflow_provider_hfjobs.local.shim import descendants
from airflow_provider_hfjobs.local.spec import (
    SpecError,
    normalize_mount_path,
    system_directory,
    validate_create,
)
from airflow_provider_hfjobs.local.store import JobRecord


# ----------------------------------------------------------------------------------------- hook side
@pytest.mark.parametrize("name", ["A=B", "", "A\0", "1A", "A B"])
def test_env_and_secret_names_must_be_variable_names(name: str) -> None:
    for check, field in ((validate_env, "env"), (validate_secrets, "secrets")):
        with pytest.raises(HfJobsInputError, match=f"^{field} key"):
            check({name: "value"})


def test_a_nul_byte_in_a_value_is_refused_naming_the_variable_never_the_value() -> None:
    with pytest.raises(HfJobsInputError, match=r"env\['A'\] contains a NUL byte") as env_error:
        validate_env({"A": "visible\0"})
    with pytest.raises(HfJobsInputError, match=r"secrets\['TOKEN'\] contains a NUL byte") as secret_error:
        validate_secrets({"TOKEN": "hunter2\0"})
    assert "visible" not in str(env_error.value) and "hunter2" not in str(secret_error.value)


def test_a_nul_byte_in_the_command_is_refused_naming_its_position() -> None:
    with pytest.raises(HfJobsInputError, match=r"command\[1\] contains a NUL byte"):
        validate_command(["python", "-c\0"])
    with pytest.raises(HfJobsInputError, match=r"command\[2\]"):
        build_job_spec(image="python:3.12", command=["sh", "-c", "echo\0"])
    assert validate_command(["sh", "-c", "echo a=b"]) == ["sh", "-c", "echo a=b"]


# --------------------------------------------------------------------------------------- server side
@pytest.mark.parametrize(
    ("given", "normal"),
    [("//proc", "/proc"), ("/./proc", "/proc"), ("/proc/", "/proc"), ("//usr//lib/", "/usr/lib"),
     ("/data//x/./y", "/data/x/y"), ("//", "/"), ("/.", "/")],
)  # fmt: skip
def test_mount_paths_are_normalized_before_they_are_checked(given: str, normal: str) -> None:
    assert normalize_mount_path(given) == normal


@pytest.mark.parametrize(
    ("path", "system"),
    [("/proc", "/proc"), ("/usr/lib", "/usr"), ("/lib64", "/lib64"), ("/libx32/y", "/libx32"),
     ("/var/tmp", "/var"), ("/run/user/0", "/run"), ("/boot", "/boot"), ("/", "/"), ("/data", None),
     ("/opt/x", None), ("/tmp/work", None), ("/home/me", None)],
)  # fmt: skip
def test_system_directories_and_what_is_under_them(path: str, system: str | None) -> None:
    assert system_directory(path) == system


def test_the_create_body_keeps_the_normalized_mount_path() -> None:
    body = {"command": ["true"], "dockerImage": "python:3.12",
            "volumes": [{"type": "bucket", "source": "a/b", "mountPath": "//data//x/"}]}  # fmt: skip
    spec, _ = validate_create(body)
    assert spec["volumes"][0]["mountPath"] == "/data/x"
    body["volumes"][0]["mountPath"] = "//etc"
    with pytest.raises(SpecError, match=r"volumes\[0\]\.mountPath '//etc' is the system directory /etc"):
        validate_create(body)


# ---------------------------------------------------------------------------------------- capacity
def job(job_id: str, flavor: str = "cpu-basic") -> JobRecord:
    return JobRecord(id=job_id, namespace="ns", spec={"flavor": flavor}, secrets={})


def test_flavor_capacity_names_known_flavors_and_whole_numbers() -> None:
    assert check_flavor_capacity({"a10g-small": 0, "t4-small": 2}) == {"a10g-small": 0, "t4-small": 2}
    for bad in ({"a100-huge": 1}, {"t4-small": -1}, {"t4-small": 1.5}, {"t4-small": True}):
        with pytest.raises(ValueError, match="flavor_capacity"):
            check_flavor_capacity(bad)  # type: ignore[arg-type]


def test_a_full_flavor_never_holds_up_another_and_its_waiter_lets_go_when_cancelled() -> None:
    async def scenario() -> None:
        capacity = Capacity(2, {"a10g-small": 0, "t4-small": 1})
        blocked, first_t4, second_t4 = job("a", "a10g-small"), job("b", "t4-small"), job("c", "t4-small")
        waiting = asyncio.ensure_future(capacity.acquire(blocked))
        assert await capacity.acquire(first_t4)  # not behind the a10g-small waiter
        queued = asyncio.ensure_future(capacity.acquire(second_t4))
        await asyncio.sleep(0)
        assert not waiting.done() and not queued.done()
        blocked.finish(JobStage.CANCELED)
        capacity.wake()
        assert await waiting is False  # it ended while waiting: no slot taken
        capacity.release("t4-small")
        assert await queued is True
        assert (capacity.used, capacity.by_flavor["t4-small"], capacity.by_flavor["a10g-small"]) == (1, 1, 0)

    asyncio.run(scenario())


def test_a_waiter_cancelled_after_its_grant_gives_the_slot_on() -> None:
    async def scenario() -> None:
        capacity = Capacity(1)
        assert await capacity.acquire(job("a"))
        granted_then_cancelled = asyncio.ensure_future(capacity.acquire(job("b")))
        next_in_line = asyncio.ensure_future(capacity.acquire(job("c")))
        await asyncio.sleep(0)
        capacity.release("cpu-basic")  # grants b, whose task is cancelled before it resumes
        granted_then_cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await granted_then_cancelled
        assert await asyncio.wait_for(next_in_line, 5) is True
        assert capacity.used == 1

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------- shim
def test_descendants_follow_every_generation_and_nothing_else() -> None:
    table = {
        10: (1, False),
        11: (10, False),
        12: (11, True),
        13: (10, False),
        20: (1, False),
        21: (20, False),
    }
    assert sorted(descendants(10, table)) == [11, 12, 13]
    assert descendants(12, table) == []
