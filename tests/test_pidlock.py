"""The lock file that names the `up` holding a folder (stack.pidlock), and the refusals built on it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from flaskprod.errors import ServerError
from flaskprod.stack.pidlock import HeldElsewhere, hold
from flaskprod.stack.postgres import LOCK_FILE, Postgres


def test_a_lock_held_names_its_pid(tmp_path: Path) -> None:
    path = tmp_path / "up.lock"
    mine = hold(path)
    try:
        assert path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(HeldElsewhere) as held:
            hold(path)  # another open file: flock refuses it as it would another process
        assert held.value.holder == str(os.getpid())
    finally:
        mine.close()
    hold(path).close()  # free once its holder closed it


def _postgres(directory: Path) -> Postgres:
    return Postgres(
        bin_dir=directory, directory=directory, os_user=None, name="app", driver="psycopg", max_connections=10
    )


def test_a_postgres_folder_held_by_an_up_names_its_pid_and_the_kill(tmp_path: Path) -> None:
    held = hold(tmp_path / LOCK_FILE)
    try:
        told = rf"pid {os.getpid()}\) runs PostgreSQL .*: stop it with `kill -TERM {os.getpid()}`"
        with pytest.raises(ServerError, match=told):
            _postgres(tmp_path)._hold()
    finally:
        held.close()


def test_a_holder_that_has_not_written_its_pid_yet_gets_no_kill_command(tmp_path: Path) -> None:
    # Between its flock and its write: "kill -TERM unknown" would be no command at all.
    with (tmp_path / LOCK_FILE).open("a+") as starting:
        fcntl.flock(starting, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ServerError) as refused:
            _postgres(tmp_path)._hold()
    assert "kill" not in str(refused.value)
    message = str(refused.value)
    assert "(pid unknown) runs PostgreSQL" in message and ": stop it where it runs, or set" in message
