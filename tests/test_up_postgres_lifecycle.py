"""`up --with postgres` run as root: a database.local_dir not made yet, PostgreSQL dying with a killed `up`, and a
PostgreSQL still holding the data named in one line."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import BIN, free_port, wait_for
from tests.test_up_postgres import APP
from tests.upstack import processes_under, start_up, stop, up_env, write_app

pytestmark = pytest.mark.integration

PG_BIN = Path("/usr/lib/postgresql/15/bin")



def up_with_postgres(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flaskprod"), "up", "app:app", "--port", str(free_port()), "--with", "postgres", *extra],
        cwd=root, env=up_env(), capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def test_a_local_dir_not_made_yet_is_made_and_postgres_dies_with_a_killed_up(tmp_path: Path, local_dir: Path) -> None:
    assert os.geteuid() == 0, "the suite runs as root, as `make test` does: the server runs as the postgres user"
    data = local_dir / "new" / "pg"
    write_app(tmp_path, APP)
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--with", "postgres",
                     "--set", f"database.local_dir={data}")  # fmt: skip
    try:
        stack.wait_ready()
        assert stack.get("/db").json()["user"] == tmp_path.name.replace("-", "_")
        assert processes_under(data)  # the server, on its data
        os.kill(stack.proc.pid, signal.SIGKILL)  # nothing in `up` runs to stop it
        stack.proc.wait(10)
        wait_for(lambda: not processes_under(data), timeout=30, what="PostgreSQL to stop after up was killed")
    finally:
        stop(stack)


AS_POSTGRES = {"user": "postgres", "group": "postgres"}


def make_cluster(local_dir: Path) -> Path:
    """A cluster in local_dir/data, as `up` lays it out (and owns it, run as root); its data directory."""
    entry = pwd.getpwnam("postgres")
    (local_dir / "socket").mkdir()
    for path in (local_dir / "socket", local_dir):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    data = local_dir / "data"
    subprocess.run([str(PG_BIN / "initdb"), f"--pgdata={data}", "--username=postgres", "--auth-local=trust"],
                   check=True, capture_output=True, **AS_POSTGRES)  # fmt: skip
    return data


def run_server(local_dir: Path, *settings: str) -> subprocess.Popen[bytes]:
    """PostgreSQL on local_dir's cluster, no `up` its parent; settings are `-c name=value` pairs."""
    command = [str(PG_BIN / "postgres"), "-D", str(local_dir / "data"), "-c", "listen_addresses=",
               "-c", f"unix_socket_directories={local_dir / 'socket'}"]  # fmt: skip
    for setting in settings:
        command += ["-c", setting]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **AS_POSTGRES
    )


def kill_server(server: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and its backends (its session): a crash, its data left for recovery to replay."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(10)


@pytest.fixture
def holder(local_dir: Path) -> Iterator[Path]:
    """A cluster in local_dir/data and a PostgreSQL running on it that no `up` started (one a killed `up` left)."""
    data = make_cluster(local_dir)
    server = run_server(local_dir)
    try:
        wait_for(lambda: (data / "postmaster.pid").exists(), timeout=30, what="PostgreSQL to start")
        yield local_dir
    finally:
        kill_server(server)


def test_a_postgresql_still_holding_the_data_is_named_with_how_to_stop_it(tmp_path: Path, holder: Path) -> None:
    write_app(tmp_path, APP)
    pid = int((holder / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    result = up_with_postgres(tmp_path, "--set", f"database.local_dir={holder}")
    assert (result.returncode, result.stderr) == (
        2,
        f"Error: a PostgreSQL (pid {pid}) still holds database.local_dir's data {holder / 'data'}, perhaps left by "
        f"a `flaskprod up` that was killed: stop it with `kill {pid}`, then start again (or set database.local_dir "
        "to another directory)\n",
    )
    assert not (tmp_path / ".flaskprod").exists()
    assert processes_under(tmp_path) == {}


def test_an_unreachable_local_dir_not_made_yet_is_one_line(tmp_path: Path, local_dir: Path) -> None:
    """The default database.local_dir, in a project whose run dir is elsewhere: .flaskprod is not there yet."""
    write_app(tmp_path, APP)
    run_dir = local_dir / "run"
    result = up_with_postgres(tmp_path, "--set", f"proxy.run_dir={run_dir}")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"Error: database.local_dir {tmp_path / '.flaskprod' / 'postgres'}: the postgres user the server runs as "
        "cannot enter "
    )
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / ".flaskprod").exists() and not run_dir.exists()


def test_a_second_up_on_a_live_ups_postgresql_names_that_up_and_leaves_it_serving(
    tmp_path: Path, local_dir: Path
) -> None:
    """Another run directory, the same database.local_dir: the PostgreSQL there is a live `up`'s, not a leftover."""
    write_app(tmp_path, APP)
    first = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--with", "postgres",
                     "--set", f"database.local_dir={local_dir}")  # fmt: skip
    try:
        first.wait_ready()
        server = processes_under(local_dir / "data")
        other_run_dir = local_dir / "run"
        second = up_with_postgres(
            tmp_path, "--set", f"database.local_dir={local_dir}", "--set", f"proxy.run_dir={other_run_dir}"
        )
        assert (second.returncode, second.stderr) == (
            2,
            f"Error: another flaskprod up (pid {first.proc.pid}) runs PostgreSQL on database.local_dir {local_dir}: "
            f"stop it with `kill -TERM {first.proc.pid}` (or Ctrl-C where it runs), or set database.local_dir to "
            "another directory\n",
        )
        assert not other_run_dir.exists()
        assert processes_under(local_dir / "data") == server  # its PostgreSQL neither stopped nor joined
        assert first.get("/db").json()["user"] == tmp_path.name.replace("-", "_")
    finally:
        stop(first)
    assert first.proc.returncode == 0, first.output()


@pytest.fixture
def crashed(local_dir: Path) -> Path:
    """A cluster whose PostgreSQL was killed after writing a few hundred MB with no checkpoint since: the next start
    replays them, a start that stays short of ready a while."""
    make_cluster(local_dir)
    server = run_server(local_dir, "max_wal_size=4GB", "checkpoint_timeout=1h")
    try:
        psql = [str(PG_BIN / "psql"), "-h", str(local_dir / "socket"), "-U", "postgres", "-d", "postgres", "-qc"]
        wait_for(lambda: subprocess.run([*psql, "SELECT 1"], capture_output=True).returncode == 0, timeout=30,
                 what="PostgreSQL to accept connections")  # fmt: skip
        rows = "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS s FROM generate_series(1, 1000000) g"
        subprocess.run([*psql, rows], check=True, capture_output=True, timeout=120)
    finally:
        kill_server(server)
    return local_dir


def test_a_start_that_replays_a_crash_waits_for_it_and_logs_no_fatal_line(tmp_path: Path, crashed: Path) -> None:
    """Readiness is read from postmaster.pid: asking by connecting made the server log `FATAL: the database system is
    starting up` for every try until it was ready."""
    write_app(tmp_path, APP)
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--with", "postgres",
                     "--set", f"database.local_dir={crashed}")  # fmt: skip
    try:
        stack.wait_ready()
        started = stack.stderr()
        assert stack.get("/db").json()["user"] == tmp_path.name.replace("-", "_")
    finally:
        stop(stack)
    assert "database system was not properly shut down; automatic recovery in progress" in started
    assert "FATAL" not in started, started
    assert "could not change directory" not in started  # it runs in a folder it can enter, not the project's
    # The database is made once the server is ready: its psql would have failed before (and `up` with it).
    ready = started.index("database system is ready to accept connections")
    assert started.index(f"created the database {tmp_path.name.replace('-', '_')}") > ready
