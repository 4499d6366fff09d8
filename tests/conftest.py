"""Shared fixtures: a real PostgreSQL, and apps written under tmp_path served by `flaskprod serve` on free ports."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import requests

from tests.mariadb import ThrowawayMariaDB
from tests.pebble import Pebble, start_pebble
from tests.pg import ExternalPostgres, ThrowawayPostgres, external_url
from tests.support import BIN, free_port, stop_group
from tests.upstack import processes_under

# Seconds a server gets to import the app, fork its workers and answer /healthz.
BOOT_TIMEOUT = 30.0
# Variables from the developer's shell that would change what the app under test sees.
_INHERITED_PREFIXES = ("FLASK_", "FLASKPROD_", "GUNICORN_", "PROMETHEUS_MULTIPROC_DIR", "DATABASE_URL")


_MADE_BASETEMP = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A short base for the tests' temporary directories, made afresh for the run and removed after it.

    `up` keeps its unix sockets in the project's run directory, and a socket's path has 107 bytes at most. Under
    pytest's own base (/tmp/pytest-of-root/pytest-104/popen-gw1/, its number growing with every run on the
    machine) a project in a test's folder passed that once the number reached three digits.
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):  # xdist's workers get theirs under it
        config.option.basetemp = tempfile.mkdtemp(prefix="fp-", dir="/tmp" if os.path.isdir("/tmp") else None)
        config.stash[_MADE_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    made = config.stash.get(_MADE_BASETEMP, None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def own_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Temporary directories of the servers under test go under pytest's own, not /tmp.

    Some tests SIGKILL a server on purpose, which leaves its run directory behind; here pytest's
    retention cleans it up like any other test file.
    """
    path = tmp_path_factory.mktemp("tmp")
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(path)
    tempfile.tempdir = None  # computed again from TMPDIR on next use
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before
        tempfile.tempdir = None


class Postgres(Protocol):
    """What a test may rely on: a SQLAlchemy URL, and stop/start (which refuse on a server we did not start)."""

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...

    def start(self) -> None: ...


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[ThrowawayPostgres]:
    """A throwaway cluster this run owns, so tests may stop and start it."""
    server = ThrowawayPostgres.create()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres(request: pytest.FixtureRequest) -> Postgres:
    """A PostgreSQL to use (not to stop): DATABASE_URL when it answers, else the throwaway cluster."""
    url = external_url()
    if url is not None:
        return ExternalPostgres(url)
    cluster: ThrowawayPostgres = request.getfixturevalue("postgres_cluster")
    return cluster


@pytest.fixture(scope="session")
def mariadb() -> Iterator[ThrowawayMariaDB]:
    """A throwaway MariaDB this run owns, with a database and a user for the app (its url is PyMySQL's)."""
    server = ThrowawayMariaDB.create()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fresh_pg_database(postgres: Postgres) -> Iterator[str]:
    """The URL of a new, empty database on the test PostgreSQL, dropped afterwards."""
    import sqlalchemy as sa

    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(postgres.url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def server_env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """A clean environment for an app server: nothing inherited that configures Flask or flaskprod,
    and a fresh strong secret (64 hex characters). In extra, a value of None removes the variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    env["FLASK_SECRET_KEY"] = secrets.token_hex(32)
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@dataclass
class Server:
    """One `flaskprod serve` process group, its address and its captured output."""

    proc: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.get(self.url(path), **kwargs)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"

    def json_lines(self) -> list[dict[str, Any]]:
        """Every stdout line that is a JSON object (the app's log records and access lines)."""
        records = []
        for line in self.stdout().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def wait_healthy(self, timeout: float = BOOT_TIMEOUT) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise AssertionError(f"server exited with {code} before it was healthy:\n{self.output()}")
            return self.get("/healthz", timeout=2).status_code == 200

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if healthy():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not healthy after {timeout}s:\n{self.output()}")


def serve_args(target: str, port: int, workers: int, extra: tuple[str, ...] = ()) -> list[str]:
    """The command a user types: flaskprod serve APP --bind 127.0.0.1:PORT --workers N."""
    return [str(BIN / "flaskprod"), "serve", target, "--bind", f"127.0.0.1:{port}", "--workers", str(workers), *extra]


StartServer = Callable[..., Server]


@pytest.fixture
def serve_app(tmp_path: Path) -> Iterator[StartServer]:
    """Write an app module under tmp_path and run it with `flaskprod serve`; every group is killed at teardown.

    start(source, workers=1, env={}, args=(), wait=True, module="app") -> Server; env values of None unset.
    """
    with ExitStack() as stack:

        def start(source: str, *, workers: int = 1, env: dict[str, str | None] | None = None,
                  args: tuple[str, ...] = (), wait: bool = True, module: str = "app") -> Server:
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            port = free_port()
            run_dir = tmp_path / f"run-{sum(1 for _ in tmp_path.glob('run-*'))}"
            run_dir.mkdir()
            stdout_path, stderr_path = run_dir / "stdout.log", run_dir / "stderr.log"
            # Files, not pipes: a full pipe would block the server once it has logged 64 KiB.
            with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
                proc = subprocess.Popen(
                    serve_args(f"{module}:app", port, workers, args),
                    cwd=tmp_path, env=server_env(env), stdout=out, stderr=err,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
            stack.callback(stop_group, proc)
            server = Server(proc=proc, port=port, stdout_path=stdout_path, stderr_path=stderr_path)
            if wait:
                server.wait_healthy()
            return server

        yield start


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """Let's Encrypt's test ACME server; it validates HTTP-01 on one port, the plain port of every stack that
    should pass."""
    server = start_pebble(tmp_path_factory.mktemp("pebble"), http_port=free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def local_dir() -> Iterator[Path]:
    """A database.local_dir for `up --with postgres`: not under pytest's tmp_path, which is 0700 root's, since run as
    root the server runs as the postgres user, who must pass through it."""
    path = Path(tempfile.mkdtemp(prefix="flaskprod-pg-", dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for pid in processes_under(path):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)
