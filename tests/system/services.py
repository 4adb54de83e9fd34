"""PostgreSQL and Redis servers from Debian's packages, started by a test on 127.0.0.1 (random free ports, a
throwaway directory, no system service touched) and stopped after it. Where a server cannot be had the tests
that need it skip, and the run's summary says so in red even under ``-q`` (as the browser tests do).

Debian's ``postgresql`` and ``redis-server`` packages are installed by ``make test`` (``make services``) when
missing and it runs as root; ``HFJOBS_PG_BINDIR`` (the directory of ``initdb`` and ``postgres``) and
``HFJOBS_REDIS_SERVER`` point at other builds.

PostgreSQL refuses to run as root: as root, ``initdb`` and ``postgres`` run as the ``postgres`` user that
Debian's package creates (``nobody`` where there is none), in a directory of their own outside the
(root-only) pytest temp tree.
"""

from __future__ import annotations

import contextlib
import glob
import grp
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

#: The Python packages the distributed leg needs (the ``test`` extra has them; the constraints pin them).
MODULES = {
    "airflow.providers.celery": "apache-airflow-providers-celery",
    "psycopg2": "psycopg2-binary",
    "asyncpg": "asyncpg",
    "redis": "redis",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: ``HFJOBS_PG_BINDIR``, else Debian's newest."""
    if configured := os.environ.get("HFJOBS_PG_BINDIR"):
        candidates = [configured]
    else:
        candidates = sorted(
            glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name), reverse=True
        )
        if initdb := shutil.which("initdb"):
            candidates.append(str(Path(initdb).resolve().parent))
    for candidate in candidates:
        path = Path(candidate)
        if all(os.access(path / name, os.X_OK) for name in ("initdb", "postgres")):
            return path
    return None


def redis_server() -> Path | None:
    configured = (
        os.environ.get("HFJOBS_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
    )
    path = Path(configured)
    return path if os.access(path, os.X_OK) else None


def services_problem() -> str | None:
    """Why the distributed tests cannot run here, or ``None``."""
    missing = [package for module, package in MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        return (
            f"DISTRIBUTED TESTS SKIPPED: the Python packages {', '.join(missing)} are missing; install the test "
            "extra (pip install -c constraints/<file> -e '.[local,test]'; make test does this)"
        )
    absent = [
        name
        for name, found in (("postgresql", postgres_bindir()), ("redis-server", redis_server()))
        if found is None
    ]
    if absent:
        return (
            f"DISTRIBUTED TESTS SKIPPED: no {' and no '.join(absent)} binaries; install Debian's "
            f"{' '.join(absent)} (make test does this as root), or set HFJOBS_PG_BINDIR / HFJOBS_REDIS_SERVER"
        )
    return None


def skip_loudly(request: pytest.FixtureRequest, problem: str) -> None:
    """Skip; the run's summary repeats ``problem`` in red (its "TESTS SKIPPED: " does: tests/conftest.py)."""
    pytest.skip(problem)


def _wait(what: str, check, timeout: float, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what} exited ({process.returncode}):\n{log.read_text(errors='replace')[-3000:]}"
            )
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise RuntimeError(
        f"timed out after {timeout} s waiting for {what}:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _stop(process: subprocess.Popen[bytes] | None, sig: signal.Signals, grace: float = 30) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Postgres:
    """A PostgreSQL cluster of its own: ``initdb`` into a temp directory, ``postgres`` on 127.0.0.1 only (no
    Unix socket beside the data), trust authentication (loopback, the test's own cluster), no fsync."""

    def __init__(self, database: str = "airflow", user: str = "airflow") -> None:
        self.bindir = postgres_bindir()
        assert self.bindir is not None, services_problem()
        self.database, self.user = database, user
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hfjobs-postgres-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._as: dict = {}
        if os.geteuid() == 0:  # postgres will not run as root
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                account = pwd.getpwnam("nobody")
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            group = grp.getgrgid(account.pw_gid).gr_name
            self.account = f"{account.pw_name}:{group}"
        else:
            self.account = pwd.getpwuid(os.geteuid()).pw_name
        self._env = {
            "PATH": f"{self.bindir}:/usr/bin:/bin",
            "LANG": "C",
            "LC_ALL": "C",
            "HOME": str(self.dir),
        }

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def celery_url(self) -> str:
        return f"db+postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> None:
        initdb = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "--no-sync",
             "-E", "UTF8", "--locale=C"],
            env=self._env, cwd=self.dir, capture_output=True, timeout=120, stdin=subprocess.DEVNULL, **self._as,
        )  # fmt: skip
        assert initdb.returncode == 0, (initdb.stdout + initdb.stderr).decode(errors="replace")[-3000:]
        log = open(self.log, "wb")  # noqa: SIM115 - kept open for the process's life
        self.process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=300",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            env=self._env, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, **self._as,
        )  # fmt: skip
        import psycopg2

        def ready() -> bool:
            psycopg2.connect(
                host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", connect_timeout=5
            ).close()
            return True

        _wait("postgres", ready, timeout=60, process=self.process, log=self.log)
        with contextlib.closing(self.connect("postgres")) as conn:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{self.database}"')

    def connect(self, database: str | None = None):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            dbname=database or self.database,
            connect_timeout=10,
        )

    def query(self, sql: str, *args: object) -> list[tuple]:
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cursor:
            cursor.execute(sql, args)
            rows = cursor.fetchall()
            conn.rollback()
            return rows

    def stop(self) -> None:
        try:
            _stop(self.process, signal.SIGINT)  # postgres's "fast" shutdown
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A Redis server of its own on 127.0.0.1, nothing persisted."""

    def __init__(self) -> None:
        self.binary = redis_server()
        assert self.binary is not None, services_problem()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hfjobs-redis-"))
        self.log = self.dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.log, "wb")  # noqa: SIM115 - kept open for the process's life
        self.process = subprocess.Popen(
            [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"],
            env={"PATH": "/usr/bin:/bin", "LANG": "C"}, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        import redis

        def ready() -> bool:
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=5, socket_timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()

        _wait("redis-server", ready, timeout=30, process=self.process, log=self.log)

    def stop(self) -> None:
        try:
            _stop(self.process, signal.SIGTERM)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
