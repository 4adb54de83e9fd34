"""A new user's first hour, as the README tells it: the demo, a local server started by its CLI, the
connection created with `airflow connections add` (stored in the metadata DB, no AIRFLOW_CONN_ variable),
`airflow dags test` of a DAG with a deferred task, and the job page behind the task's URL, in a real
Chromium. The commands run are the README's own, read from its "Your first hour" block."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.airflow_run import REPO, count

pytestmark = [pytest.mark.integration, pytest.mark.airflow_db]

BIN = Path(sys.executable).parent


def first_hour_commands() -> list[str]:
    """The command lines of the README's "Your first hour" block, in order."""
    section = (REPO / "README.md").read_text().split("## Your first hour", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README: no bash block under 'Your first hour'"
    return [line for line in block[1].splitlines() if line.strip()]


def clean_env(home: Path) -> dict[str, str]:
    """A shell as a new user's: no Airflow or HF settings; HOME is the test's, so ``~/...`` lands there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "HF_"))}
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONWARNINGS="ignore")
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``hfjobs-local serve`` as the README starts it (on a free port): its printed export line and URL."""
    tmp_path = tmp_path_factory.mktemp("serve")
    serve = next(line for line in first_hour_commands() if line.startswith("hfjobs-local serve"))
    argv = serve.split("#")[0].split()
    argv[argv.index("--port") + 1] = "0"
    process = subprocess.Popen(
        [str(BIN / argv[0]), *argv[1:]], stdout=subprocess.PIPE, text=True, env=clean_env(tmp_path),
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        export = lines[1].strip()
        assert export.startswith("export HF_ENDPOINT=http://127.0.0.1:"), lines
        yield export, re.search(r"HF_ENDPOINT=(\S+)", export)[1]
    finally:
        process.terminate()
        process.wait(timeout=60)


def readme_script(export_line: str, *, until: str) -> str:
    """The README's commands after the server starts, with the export line the server really printed,
    up to and including the line starting with ``until``."""
    commands = first_hour_commands()
    assert commands[0].startswith("make demo ") and commands[1] == "source .venv/bin/activate", commands[:2]
    script = ["set -euo pipefail"]
    for line in commands[3:]:
        script.append(export_line if line.startswith("export HF_ENDPOINT=") else line)
        if line.startswith(until):
            return "\n".join(script) + "\n"
    raise AssertionError(f"README: no command starting with {until!r} in 'Your first hour'")


@dataclass
class ReadmeRun:
    """The README's commands, run once: what they printed, the shell they left, the server's URL."""

    result: subprocess.CompletedProcess[str]
    script: str
    env: dict[str, str]
    url: str
    token: str


@pytest.fixture(scope="module")
def readme_run(served: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> ReadmeRun:
    export, url = served
    script = readme_script(export, until="airflow dags test")
    env = clean_env(tmp_path_factory.mktemp("user-home"))
    result = subprocess.run(
        ["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return ReadmeRun(result, script, env, url, re.search(r"HF_TOKEN=(\S+)", export)[1])


def test_the_readme_first_hour_runs_a_deferred_task_with_the_stored_connection(readme_run: ReadmeRun) -> None:
    assert (
        "airflow connections add hf_default" in readme_run.script and "AIRFLOW_CONN" not in readme_run.script
    )
    text = readme_run.result.stdout + readme_run.result.stderr
    assert readme_run.result.returncode == 0, text[-5000:]
    assert (Path(readme_run.env["HOME"]) / "airflow-hfjobs" / "airflow.db").exists()  # ~/airflow-hfjobs
    assert count(text, "Hello from the cloud!") == 2, text[-5000:]  # the worker task and the deferred one
    assert count(text, "COMPLETED on cpu-basic") == 2
    assert "ended unwatched" not in text
    pattern = rf"Hugging Face job [0-9a-f]+: ({re.escape(readme_run.url)}/jobs/local-user/[0-9a-f]+)"
    assert len(set(re.findall(pattern, text))) == 2, text[
        -5000:
    ]  # the address the README says each task logs


def test_the_url_a_deferred_task_logs_opens_a_job_page_that_follows_its_log_live(
    readme_run: ReadmeRun, browser: Any, tmp_path: Path
) -> None:
    """In the README's shell (its stored connection), `airflow dags test` of a DAG whose deferred job waits
    for a signal; the URL its task logs is opened in Chromium while the job runs, as a user clicks it."""
    from playwright.sync_api import expect

    assert readme_run.result.returncode == 0
    signal = tmp_path / "go"
    setup = readme_run.script.rsplit("\nairflow dags test", 1)[0]  # the exports, without running a DAG again
    setup = "\n".join(
        line for line in setup.splitlines() if not line.startswith(("airflow db", "airflow conn"))
    )
    script = f"{setup}\nexport AIRFLOW__CORE__DAGS_FOLDER={REPO / 'tests' / 'dags'}\nexec airflow dags test hfjobs_live_page\n"
    env = {**readme_run.env, "HFJOBS_TEST_SIGNAL_FILE": str(signal)}
    lines: list[str] = []
    job_url: list[str] = []
    announced = threading.Event()
    process = subprocess.Popen(
        ["bash", "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if not job_url and (found := re.search(r"Hugging Face job [0-9a-f]+: (http://\S+)", line)):
                job_url.append(found[1])
                announced.set()
        announced.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert announced.wait(300) and job_url, "".join(lines)[-5000:]
        page = browser.new_context().new_page()
        answer = page.goto(job_url[0])
        assert answer is not None and answer.status == 401  # the page asks for the server's token first
        page.get_by_label("Token").fill(readme_run.token)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(job_url[0])
        log = page.locator("#log")
        expect(log).to_contain_text("waiting for the signal", timeout=60_000)
        expect(page.locator("#stage")).to_have_text("RUNNING")
        expect(log).not_to_contain_text("signal received")
        signal.touch()
        expect(log).to_contain_text("signal received", timeout=60_000)
        expect(page.locator("#stage")).to_have_text("COMPLETED", timeout=60_000)
        assert readme_run.token not in page.content()
        assert process.wait(timeout=300) == 0, "".join(lines)[-5000:]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
        reader.join(timeout=60)
    text = "".join(lines)
    assert count(text, "waiting for the signal") == 1 and count(text, "signal received") == 1, text[-5000:]


def test_the_demo_shows_each_tasks_job_lines_and_cost_apart_and_says_where_the_output_is(
    tmp_path: Path,
) -> None:
    recipe = (REPO / "Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "-m airflow_provider_hfjobs.local.demo --dags-folder example_dags" in recipe, recipe
    home = tmp_path / "demo"
    demo = [sys.executable, "-m", "airflow_provider_hfjobs.local.demo", "--dags-folder", "example_dags"]
    result = subprocess.run(
        [*demo, "--home", str(home)], cwd=REPO, env=clean_env(tmp_path), capture_output=True, text=True,
        timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    console = result.stdout
    assert result.returncode == 0, console[-5000:] + result.stderr[-3000:]
    tasks = console.split("\n--- task ")[1:]
    assert [task.splitlines()[0] for task in tasks] == ["hello", "hello_deferred"], console
    for task in tasks:
        body = task.split("\n===")[0].splitlines()[1:]
        assert "    | Hello from the cloud!" in body, task
        assert sum(line.startswith("    | step ") for line in body) == 3, task
        assert re.fullmatch(
            r"    Hugging Face job [0-9a-f]+: http://127\.0\.0\.1:\d+/jobs/demo-user/[0-9a-f]+", body[0]
        )
        assert re.fullmatch(
            r"    Hugging Face job [0-9a-f]+ COMPLETED on cpu-basic \(\$[0-9.]+/h\) after .* about \$[0-9.]+\.", body[-1]
        )
    assert "[info" not in console and "INFO -" not in console, "Airflow's messages belong in the file"
    full = home / "dags-test.log"
    assert f"Full output of `airflow dags test`, Airflow's messages and both task logs: {full}" in console
    assert f"AIRFLOW_HOME with the run in its metadata DB: {home / 'airflow'}" in console
    assert "[DAG TEST]" in full.read_text() and count(full.read_text(), "Hello from the cloud!") == 2
    assert (home / "airflow" / "airflow.db").exists()
    # The output stays after the demo (above); the next demo empties only a folder a demo made.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    refused = subprocess.run(
        [*demo, "--home", str(mine)],
        cwd=REPO,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "not a previous demo's" in refused.stderr
    assert (mine / "notes.txt").read_text() == "keep me"
