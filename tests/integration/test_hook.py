"""HfJobsHook against the local Jobs server over real HTTP (127.0.0.1 only)."""

from __future__ import annotations

import sys
import textwrap

import pytest

from airflow_provider_hfjobs.exceptions import (
    HfJobsAuthError,
    HfJobsBadRequestError,
    HfJobsInputError,
    HfJobsNotFoundError,
)
from airflow_provider_hfjobs.hooks.hfjobs import HfJobsHook
from airflow_provider_hfjobs.jobs import SUBMISSION_LABEL, JobStage
from tests.integration.conftest import NAMESPACE, TOKEN, set_connection
from tests.integration.faultproxy import Fault

pytestmark = pytest.mark.integration


def printer(count: int, delay: float = 0.0, exit_code: int = 0) -> list[str]:
    """A job command printing ``line 0`` .. ``line N-1`` (``delay`` seconds apart), then exiting."""
    code = textwrap.dedent(
        f"""
        import sys, time
        for i in range({count}):
            print(f"line {{i}}", flush=True)
            time.sleep({delay})
        sys.exit({exit_code})
        """
    )
    return ["python", "-c", code]


def expected(count: int) -> list[str]:
    return [f"line {i}" for i in range(count)]


def test_run_job_follow_logs_and_complete(hook: HfJobsHook) -> None:
    job = hook.run_job(
        image="python:3.12", command=printer(5, 0.05), env={"GREETING": "hi"}, labels={"team": "ml"}
    )
    assert job.stage in (JobStage.SCHEDULING, JobStage.RUNNING)
    assert job.url == f"{hook.endpoint}/jobs/{NAMESPACE}/{job.id}"
    assert job.labels["team"] == "ml" and SUBMISSION_LABEL in job.labels and job.labels["name"]

    assert list(hook.fetch_job_logs(job.id, follow=True)) == expected(5)
    final = hook.wait_for_job(job.id, timeout=60, poll_interval=0.2)
    assert final.stage is JobStage.COMPLETED
    assert final.started_at is not None and final.finished_at is not None
    assert final.docker_image == "python:3.12"
    # Non-follow read of a finished job: the same lines, once.
    assert list(hook.fetch_job_logs(job.id)) == expected(5)
    assert list(hook.fetch_job_logs(job.id, tail=2)) == expected(5)[-2:]


def test_failing_job_ends_in_error_with_exit_code(hook: HfJobsHook) -> None:
    job = hook.run_job(image="python:3.12", command=printer(2, exit_code=3))
    final = hook.wait_for_job(job.id, timeout=60, poll_interval=0.2)
    assert final.stage is JobStage.ERROR
    assert final.message == "exit code 3"
    assert list(hook.fetch_job_logs(final.id)) == expected(2)


def test_cancel_running_job(hook: HfJobsHook) -> None:
    job = hook.run_job(
        image="python:3.12", command=["python", "-c", "import time; print('up', flush=True); time.sleep(120)"]
    )
    lines = hook.iter_job_log_lines(job.id, follow=True)
    assert next(lines).text == "up"  # the job really runs
    hook.cancel_job(job.id)
    assert list(lines) == []  # the stream ends once the job is canceled
    assert hook.inspect_job(job.id).stage is JobStage.CANCELED


def test_non_follow_read_of_an_idle_running_job_returns_what_is_there(hook: HfJobsHook) -> None:
    """The stream of a running job never ends; without ``follow`` the read stops after the 5 s silence
    (mid-body, ``requests`` reports that read timeout as a ConnectionError: it is not a cut)."""
    job = hook.run_job(
        image="python:3.12", command=["python", "-c", "import time; print('up', flush=True); time.sleep(120)"]
    )
    follow = hook.iter_job_log_lines(job.id, follow=True)
    assert next(follow).text == "up"
    follow.close()
    assert list(hook.fetch_job_logs(job.id)) == ["up"]
    assert hook.inspect_job(job.id).stage is JobStage.RUNNING
    hook.cancel_job(job.id)


def test_list_jobs_filters_on_the_server(hook: HfJobsHook) -> None:
    done = hook.run_job(image="python:3.12", command=printer(1), labels={"suite": "listing", "kind": "done"})
    hook.wait_for_job(done.id, timeout=60, poll_interval=0.2)
    live = hook.run_job(
        image="python:3.12", command=["sleep", "60"], labels={"suite": "listing", "kind": "live"}
    )
    try:
        ids = {job.id for job in hook.list_jobs(labels={"suite": "listing"})}
        assert {done.id, live.id} <= ids
        running = {
            job.id for job in hook.list_jobs(status=["RUNNING", "SCHEDULING"], labels={"suite": "listing"})
        }
        assert running == {live.id}
        assert [job.id for job in hook.list_jobs(labels={"suite": "listing", "kind": "done"})] == [done.id]
    finally:
        hook.cancel_job(live.id)


def test_hardware_lists_prices(hook: HfJobsHook) -> None:
    hardware = {hw.name: hw for hw in hook.list_jobs_hardware()}
    assert {"cpu-basic", "a10g-small", "a100-large", "h200"} <= set(hardware)
    # cpu-basic is $0.01 an hour.
    assert hardware["cpu-basic"].cost_usd(3600) == pytest.approx(0.01, rel=0.01)


def test_run_uv_job_inline_and_file(hook: HfJobsHook, tmp_path) -> None:
    source = "import sys\nprint('uv says', *sys.argv[1:], flush=True)\n"
    inline = hook.run_uv_job(source, script_args=["a b", "$HOME", "it's"])
    assert inline.command[0] == "bash" and "UV_SCRIPT_ENCODED" in inline.environment
    script = tmp_path / "train.py"
    script.write_text(source)
    from_file = hook.run_uv_job(str(script), script_args=["--epochs", "3"])
    for job, line in ((inline, "uv says a b $HOME it's"), (from_file, "uv says --epochs 3")):
        final = hook.wait_for_job(job.id, timeout=120, poll_interval=0.2)
        logs = list(hook.fetch_job_logs(job.id))
        assert final.stage is JobStage.COMPLETED, (final.message, logs)
        assert line in logs


def test_namespace_resolved_once_through_whoami(server, proxy, monkeypatch) -> None:
    set_connection(monkeypatch, "hf_no_ns", proxy.url, TOKEN)
    hook = HfJobsHook("hf_no_ns")
    job = hook.run_job(image="python:3.12", command=printer(1))
    hook.inspect_job(job.id)
    list(hook.list_jobs())
    hook.wait_for_job(job.id, timeout=60, poll_interval=0.2)
    assert hook.namespace == NAMESPACE
    assert proxy.count("GET", r"^/api/whoami-v2") == 1


def test_wrong_token_is_one_clear_line(server, monkeypatch) -> None:
    set_connection(monkeypatch, "hf_bad", server.url, "hf_wrong_token_value", namespace=NAMESPACE)
    hook = HfJobsHook("hf_bad")
    with pytest.raises(HfJobsAuthError) as info:
        hook.run_job(image="python:3.12", command=["true"])
    message = str(info.value)
    assert "\n" not in message and "invalid token" in message and "hf_wrong_token_value" not in message
    ok, text = hook.test_connection()
    assert not ok and "invalid token" in text


def test_unknown_job_is_one_clear_line(hook: HfJobsHook) -> None:
    with pytest.raises(HfJobsNotFoundError) as info:
        hook.inspect_job("0123456789abcdef01234567")
    message = str(info.value)
    assert "\n" not in message
    assert "0123456789abcdef01234567" in message and NAMESPACE in message


def test_unknown_flavor_lists_valid_ones_and_creates_nothing(hook: HfJobsHook) -> None:
    before = len(list(hook.list_jobs()))
    with pytest.raises(HfJobsBadRequestError) as info:
        hook.run_job(image="python:3.12", command=["true"], flavor="a100-huge")
    message = str(info.value)
    assert (
        "\n" not in message and "a100-huge" in message and "cpu-basic" in message and "a10g-small" in message
    )
    assert len(list(hook.list_jobs())) == before


def test_bad_input_fails_before_any_request(proxy, monkeypatch) -> None:
    set_connection(monkeypatch, "hf_counted", proxy.url, TOKEN, namespace=NAMESPACE)
    hook = HfJobsHook("hf_counted")
    with pytest.raises(HfJobsInputError, match="timeout"):
        hook.run_job(image="python:3.12", command=["true"], timeout="1.5")
    with pytest.raises(HfJobsInputError, match="script file"):
        hook.run_uv_job("/no/such/script.py")
    assert proxy.requests == []


def test_connection_test_button(hook: HfJobsHook) -> None:
    ok, text = hook.test_connection()
    assert ok and NAMESPACE in text


def test_env_fallback_without_connection(server, monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_HF_DEFAULT", raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    hook = HfJobsHook()
    assert hook.namespace == NAMESPACE
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HfJobsInputError, match="HF_TOKEN"):
        HfJobsHook().credentials  # noqa: B018


# ------------------------------------------------------------------------------------------- faults
def test_log_stream_cut_while_running_loses_and_repeats_nothing(proxied_hook: HfJobsHook, proxy) -> None:
    job = proxied_hook.run_job(image="python:3.12", command=printer(12, 0.1))
    proxy.add(Fault("GET", rf"/api/jobs/{NAMESPACE}/{job.id}/logs", times=2, cut_after_bytes=300))
    assert list(proxied_hook.fetch_job_logs(job.id, follow=True)) == expected(12)
    assert proxy.count("GET", rf"/{job.id}/logs") >= 3


def test_log_stream_cut_after_job_finished_still_delivers_everything(proxied_hook: HfJobsHook, proxy) -> None:
    job = proxied_hook.run_job(image="python:3.12", command=printer(60))
    assert proxied_hook.wait_for_job(job.id, timeout=60, poll_interval=0.2).stage is JobStage.COMPLETED
    proxy.add(Fault("GET", rf"/{job.id}/logs", times=1, cut_after_bytes=500))
    assert list(proxied_hook.fetch_job_logs(job.id, follow=True)) == expected(60)


def test_official_client_loses_lines_after_that_cut(server, proxied_hook: HfJobsHook, proxy) -> None:
    """Documents why we read logs ourselves: huggingface_hub 2.4 checks the stage after a cut and stops."""
    from huggingface_hub import HfApi

    job = proxied_hook.run_job(image="python:3.12", command=printer(60))
    proxied_hook.wait_for_job(job.id, timeout=60, poll_interval=0.2)
    proxy.add(Fault("GET", rf"/{job.id}/logs", times=1, cut_after_bytes=500))
    lines = list(
        HfApi(endpoint=proxy.url, token=TOKEN).fetch_job_logs(job_id=job.id, namespace=NAMESPACE, follow=True)
    )
    assert 0 < len(lines) < 60 and lines == expected(len(lines))


def test_create_answered_500_after_reaching_server_is_not_sent_twice(proxied_hook: HfJobsHook, proxy) -> None:
    proxy.add(Fault("POST", rf"^/api/jobs/{NAMESPACE}$", times=1, status=500, forward=True))
    job = proxied_hook.run_job(image="python:3.12", command=printer(1), labels={"suite": "create-500"})
    assert proxy.count("POST", rf"^/api/jobs/{NAMESPACE}$") == 1
    assert [j.id for j in proxied_hook.list_jobs(labels={"suite": "create-500"})] == [job.id]


def test_create_answered_500_before_reaching_server_is_retried_once(proxied_hook: HfJobsHook, proxy) -> None:
    proxy.add(Fault("POST", rf"^/api/jobs/{NAMESPACE}$", times=1, status=503))
    job = proxied_hook.run_job(image="python:3.12", command=printer(1), labels={"suite": "create-503"})
    assert proxy.count("POST", rf"^/api/jobs/{NAMESPACE}$") == 2
    assert [j.id for j in proxied_hook.list_jobs(labels={"suite": "create-503"})] == [job.id]


def test_rate_limit_is_retried_honouring_retry_after(proxied_hook: HfJobsHook, proxy) -> None:
    job = proxied_hook.run_job(image="python:3.12", command=printer(1))
    proxy.add(
        Fault("GET", rf"/api/jobs/{NAMESPACE}/{job.id}$", times=2, status=429, headers={"Retry-After": "0"})
    )
    assert proxied_hook.inspect_job(job.id).id == job.id
    assert proxy.count("GET", rf"/api/jobs/{NAMESPACE}/{job.id}$") == 3


def test_persistent_server_error_gives_up_with_one_line(proxied_hook: HfJobsHook, proxy) -> None:
    from airflow_provider_hfjobs.exceptions import HfJobsServerError

    job = proxied_hook.run_job(image="python:3.12", command=printer(1))
    proxy.add(Fault("GET", rf"/api/jobs/{NAMESPACE}/{job.id}$", times=50, status=502))
    with pytest.raises(HfJobsServerError) as info:
        proxied_hook.inspect_job(job.id)
    assert "\n" not in str(info.value) and "502" in str(info.value)
    assert (
        proxy.count("GET", rf"/api/jobs/{NAMESPACE}/{job.id}$") == 1 + proxied_hook.retry_policy.max_retries
    )


def test_python_of_the_server_runs_jobs(hook: HfJobsHook) -> None:
    job = hook.run_job(image="python:3.12", command=["python", "-c", "import sys; print(sys.executable)"])
    hook.wait_for_job(job.id, timeout=60, poll_interval=0.2)
    assert list(hook.fetch_job_logs(job.id)) == [sys.executable]
