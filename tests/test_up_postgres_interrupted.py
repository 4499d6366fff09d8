"""`up --with postgres` stopped by a terminal's Ctrl-C (SIGINT to its process group) before it served: the user's own
stop, not an error, and the next start finds a whole cluster or none."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support import free_port, wait_for
from tests.test_up_postgres import APP
from tests.upstack import UpStack, processes_under, start_up, stop, up_env, write_app

pytestmark = pytest.mark.integration

# The app takes its time to load while SLOW_LOAD is set: a Ctrl-C lands between createdb and ready.
SLOW_APP = "import os, time\nif os.environ.get('SLOW_LOAD'):\n    time.sleep(60)\n" + APP


def start(root: Path, data: Path, **env: str) -> UpStack:
    return start_up(root, "gunicorn", free_port(), "--workers", "1", "--with", "postgres",
                    "--set", f"database.local_dir={data}", env=up_env(**env))  # fmt: skip


def in_group(pgid: int, program: str) -> bool:
    """Whether a process running program is in process group pgid (initdb runs in up's)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().split(" (", 1)[1].rsplit(") ", 1)
        except (OSError, ValueError):
            continue
        if name == program and int(rest.split()[2]) == pgid:
            return True
    return False


def ctrl_c(stack: UpStack) -> tuple[int, str]:
    """SIGINT to up's process group, as a terminal sends it; up's exit status and stderr."""
    os.killpg(stack.proc.pid, signal.SIGINT)
    stack.proc.wait(60)
    return stack.proc.returncode, stack.stderr()


def test_ctrl_c_during_initdb_is_a_clean_stop_and_the_next_start_makes_the_cluster(
    tmp_path: Path, local_dir: Path
) -> None:
    write_app(tmp_path, APP)
    stack = start(tmp_path, local_dir)
    try:
        wait_for(lambda: in_group(stack.proc.pid, "initdb"), timeout=60, interval=0.01, what="initdb to start")
        status, stderr = ctrl_c(stack)
        assert status == 0, stack.output()
        assert "Error" not in stderr and "stopped before postgres was ready" in stderr, stack.output()
        assert not (local_dir / "data").exists()  # initdb, stopped, removed what it had made
        assert processes_under(local_dir) == {}
    finally:
        stop(stack)

    again = start(tmp_path, local_dir)
    try:
        again.wait_ready()
        assert f"initdb made a PostgreSQL cluster in {local_dir}/data" in again.stderr()
    finally:
        stop(again)


def test_ctrl_c_after_the_database_was_made_keeps_the_cluster(tmp_path: Path, local_dir: Path) -> None:
    """database.local_dir not made yet, as the default is on a first run: the rest this run made goes."""
    data = local_dir / "new" / "pg"
    write_app(tmp_path, SLOW_APP)
    stack = start(tmp_path, data, SLOW_LOAD="1")
    try:
        wait_for(lambda: "created the database" in stack.stderr(), timeout=60, interval=0.05, what="createdb")
        status, stderr = ctrl_c(stack)
        assert status == 0, stack.output()
        assert "stopped while the app loaded" in stderr
        assert (data / "data" / "PG_VERSION").is_file()
        assert not (tmp_path / ".flaskprod").exists()  # what else it made went
    finally:
        stop(stack)

    again = start(tmp_path, data)
    try:
        again.wait_ready()
        assert "initdb made" not in again.stderr()
        assert "created the database" not in again.stderr()
        assert again.get("/db").json()["database"] == tmp_path.name.replace("-", "_")
    finally:
        stop(again)
