"""`flaskprod up --with postgres`: a real PostgreSQL started beside the app, sized for its pools, kept between runs."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import BIN, free_port
from tests.upstack import UpStack, processes_under, start_up, stop, up_env, write_app

pytestmark = pytest.mark.integration

APP = """
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
import sqlalchemy as sa

from flaskprod import Production

app = Flask(__name__)
Production(app)
db = SQLAlchemy(app)


class Visit(db.Model):
    id = sa.Column(sa.Integer, primary_key=True)
    note = sa.Column(sa.String(80), nullable=False)


with app.app_context():
    db.create_all()  # at start, not at a first request: /readyz waits for the models' tables


@app.post("/visits")
def add_visit():
    db.create_all()
    db.session.add(Visit(note=request.get_data(as_text=True)))
    db.session.commit()
    return "added"


@app.get("/db")
def about_db():
    db.create_all()
    row = db.session.execute(sa.text(
        "SELECT current_user, current_database(), current_setting('max_connections'), "
        "inet_server_addr() IS NULL, current_setting('statement_timeout')"
    )).one()
    return jsonify(
        user=row[0], database=row[1], max_connections=int(row[2]), over_socket=row[3], statement_timeout=row[4],
        pool_size=db.engine.pool.size(), notes=[v.note for v in db.session.scalars(sa.select(Visit))],
    )
"""



@pytest.fixture
def visits() -> Iterator[Path]:
    """A project no flaskprod.toml names: its directory names it, and its database. Not under tmp_path,
    whose long path leaves no room for the run directory's sockets."""
    base = Path(tempfile.mkdtemp(prefix="flaskprod-"))
    try:
        (base / "visits").mkdir()
        yield base / "visits"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def start(root: Path, local_dir: Path, *extra: str) -> UpStack:
    args = ("--workers", "1", "--threads", "4", "--with", "postgres", "--set", f"database.local_dir={local_dir}")
    stack = start_up(root, "gunicorn", free_port(), *args, *extra)
    stack.wait_ready()
    return stack


def test_up_runs_postgres_sized_for_two_releases_and_keeps_its_data(visits: Path, local_dir: Path) -> None:
    project = visits
    write_app(project, APP)
    stack = start(project, local_dir)
    try:
        assert f"  postgres    PostgreSQL 15, database visits on unix:{local_dir}/socket, max_connections 17; " in (
            stack.stdout()
        )
        assert f"initdb made a PostgreSQL cluster in {local_dir}/data" in stack.stderr()
        assert requests.post(stack.url("/visits"), data="first", timeout=15).text == "added"
        about = stack.get("/db").json()
        # 1 worker x 4 threads: a pool of 4 and 2 overflow, for each of two releases, + 5 for administration.
        # A statement may run as long as its request (server.timeout, 30 s), not on after it.
        assert about == {
            "user": "visits", "database": "visits", "max_connections": 2 * 1 * (4 + 2) + 5,
            "over_socket": True, "statement_timeout": "30s", "pool_size": 4, "notes": ["first"],
        }  # fmt: skip
        assert stack.get("/readyz").json()["checks"]["database"]["status"] == "ok"
        assert stat.S_IMODE((local_dir / "socket").stat().st_mode) == 0o700
        assert (local_dir / "data").stat().st_uid == pwd.getpwnam("postgres").pw_uid  # PostgreSQL refuses root

        # A deploy runs both releases on the database at once: the budget was counted for that.
        write_app(project, APP.replace('return "added"', 'return "added by release 2"'))
        deployed = subprocess.run(
            [str(BIN / "flaskprod"), "deploy"], cwd=project, env=up_env(), capture_output=True, text=True, timeout=120
        )
        assert deployed.returncode == 0, deployed.stderr
        assert requests.post(stack.url("/visits"), data="second", timeout=15).text == "added by release 2"
    finally:
        stop(stack)
    assert stack.proc.returncode == 0, stack.output()
    assert "database system is shut down" in stack.stderr()
    assert processes_under(local_dir) == {}

    again = start(project, local_dir)
    try:
        assert "initdb made" not in again.stderr()
        assert again.get("/db").json()["notes"] == ["first", "second"]
    finally:
        stop(again)


def run_up(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flaskprod"), "up", "app:app", "--port", str(free_port()), "--with", "postgres", *args],
        cwd=root, env=up_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_mistakes_are_one_line_and_start_nothing(tmp_path: Path, local_dir: Path) -> None:
    write_app(tmp_path, APP)
    missing = run_up(tmp_path, "--set", f"database.postgres_bin_dir={tmp_path}")
    assert missing.returncode == 2
    assert missing.stderr == (
        f"Error: database.postgres_bin_dir {tmp_path} holds no postgres program: set it to the directory of "
        "PostgreSQL's server programs, or to auto; install it with `apt-get install postgresql` (Debian, Ubuntu)\n"
    )
    no_pools = run_up(tmp_path, "--set", "database.engine_options=false", "--set", f"database.local_dir={local_dir}")
    assert no_pools.returncode == 2
    assert no_pools.stderr.startswith("Error: --with postgres sizes the server for the pools the app is told")
    assert os.geteuid() == 0, "the suite runs as root, as `make test` does: this case is root's"
    # pytest's own temporary directories are root's alone (0700): the postgres user could not enter them.
    unreachable = run_up(tmp_path, "--set", f"database.local_dir={tmp_path / 'pg'}")
    assert unreachable.returncode == 2
    assert unreachable.stderr.startswith(f"Error: database.local_dir {tmp_path / 'pg'}: the postgres user the server")
    assert "(mode 0700): set database.local_dir to a directory it can reach" in unreachable.stderr
    assert unreachable.stderr.count("\n") == 1
    assert not (tmp_path / "pg").exists() and not (tmp_path / ".flaskprod" / "run" / "releases").exists()
