"""`flaskprod up`'s run directory: a bad proxy.run_dir is one line, and a start that fails takes back what it made
(never what an earlier run left)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from flaskprod.stack.releases import LAST_NUMBER
from tests.support import BIN, free_port, wait_for
from tests.test_up_errors import run_up
from tests.upstack import processes_under, start_up, stop, up_env, write_app

pytestmark = pytest.mark.integration


def tree(root: Path) -> set[str]:
    """Every path under root, relative to it, but what a release copied (each release's own folder is listed)."""
    found = set()
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if not (len(relative.parts) > 4 and relative.parts[:3] == (".flaskprod", "run", "releases")):
            found.add(str(relative))
    return found


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_a_run_dir_that_is_a_file_is_refused_in_one_line(tmp_path: Path, where: str) -> None:
    write_app(tmp_path)
    (tmp_path / "notes").write_text("mine\n")
    run_dir = tmp_path / "notes" if where == "file" else tmp_path / "notes" / "run"
    before = tree(tmp_path)
    result = run_up(tmp_path, "gunicorn", str(free_port()), "--set", f"proxy.run_dir={run_dir}")
    what = "is a file" if where == "file" else f"is under {tmp_path / 'notes'}, which is a file"
    assert (result.returncode, result.stderr) == (
        2, f"Error: proxy.run_dir {run_dir} {what}: set proxy.run_dir to a directory's path\n"
    )  # fmt: skip
    assert tree(tmp_path) == before
    assert (tmp_path / "notes").read_text() == "mine\n"


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """A directory no one may write in, root included (the suite runs as root, whom modes do not stop)."""
    path = tmp_path / "locked"
    path.mkdir()
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("inside", [False, True], ids=["the-run-dir", "its-parent"])
def test_a_run_dir_that_cannot_be_written_is_refused_in_one_line(
    tmp_path: Path, immutable: Path, inside: bool
) -> None:
    write_app(tmp_path)
    run_dir = immutable / "run" if inside else immutable
    result = run_up(tmp_path, "gunicorn", str(free_port()), "--set", f"proxy.run_dir={run_dir}")
    assert (result.returncode, result.stderr) == (
        2,
        f"Error: proxy.run_dir {run_dir}: {immutable} is not writable by root: run `flaskprod up` as its owner, or "
        "set proxy.run_dir to a directory you can write\n",
    )


def test_a_run_dir_on_a_read_only_filesystem_says_so(tmp_path: Path) -> None:
    """It said "not writable by root: run flaskprod up as its owner", to root, who owned it."""
    write_app(tmp_path)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(read_only)], check=True)
    try:
        result = run_up(tmp_path, "gunicorn", str(free_port()), "--set", f"proxy.run_dir={read_only}/run")
    finally:
        subprocess.run(["umount", str(read_only)], check=True)
    assert (result.returncode, result.stderr) == (
        2,
        f"Error: proxy.run_dir {read_only}/run: {read_only} is on a read-only filesystem: set proxy.run_dir to a "
        "directory on a writable one, such as /tmp/NAME\n",
    )


def test_a_project_where_the_instance_folder_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    """A read-only project with the run dir elsewhere: an OSError traceback from new_release."""
    project, run_dir = tmp_path / "project", tmp_path / "run"
    write_app(project)
    subprocess.run(["chattr", "+i", str(project)], check=True)
    try:
        result = run_up(project, "gunicorn", str(free_port()), "--set", f"proxy.run_dir={run_dir}")
    finally:
        subprocess.run(["chattr", "-i", str(project)], check=True)
    assert (result.returncode, result.stderr.splitlines()[-1:]) == (
        2,
        [f"Error: cannot make the app's instance folder {project}/instance: Operation not permitted; every release "
         "shares it from the project, so make it there once (or run from a project you can write)"],
    )  # fmt: skip


def test_a_run_dir_nginx_cannot_name_is_refused_before_it_is_made(tmp_path: Path) -> None:
    write_app(tmp_path)
    run_dir = tmp_path / "run$1"
    result = run_up(tmp_path, "gunicorn", str(free_port()), "--set", f"proxy.run_dir={run_dir}")
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: proxy.run_dir {run_dir}: nginx and the app server cannot take a path with $, ;, {{, }}, quotes or "
        "control characters: set proxy.run_dir to a path without them\n"
    )
    assert not run_dir.exists()


def test_no_app_makes_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "flaskprod"), "up", "--port", str(free_port())],
        cwd=tmp_path, env=up_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("Error: no Flask app found")
    assert tree(tmp_path) == set()


def test_an_app_that_does_not_import_leaves_nothing(tmp_path: Path) -> None:
    write_app(tmp_path, "raise RuntimeError('cannot reach the settings service')\n")
    before = tree(tmp_path)
    result = run_up(tmp_path, "gunicorn", str(free_port()))
    assert result.returncode == 2
    assert "RuntimeError: cannot reach the settings service" in result.stderr
    assert tree(tmp_path) == before  # no .flaskprod/run, no instance folder


def test_an_nginx_that_fails_leaves_nothing(tmp_path: Path) -> None:
    write_app(tmp_path)
    before = tree(tmp_path)
    result = run_up(tmp_path, "gunicorn", str(free_port()), "--set", "proxy.nginx=/bin/false")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: nginx rejected")
    assert tree(tmp_path) == before  # no releases/1 either
    assert processes_under(tmp_path) == {}


def test_a_failed_start_keeps_what_an_earlier_run_left(tmp_path: Path) -> None:
    write_app(tmp_path)
    first = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        first.wait_ready()
        assert first.get("/api/ping").status_code == 200
    finally:
        stop(first)
    left = tree(tmp_path)
    assert {".flaskprod/run/releases/1", ".flaskprod/run/logs/access.log", ".flaskprod/run/up.lock"} <= left
    access_log = (first.run_dir / "logs" / "access.log").read_text()

    # Its release 2 is made, and the config nginx rejects is its own: the run takes back release 2 alone.
    failed = run_up(tmp_path, "gunicorn", str(free_port()), "--set", "proxy.nginx=/bin/false")
    assert failed.returncode == 2, failed.stderr
    assert tree(tmp_path) == left
    assert (first.run_dir / "logs" / "access.log").read_text() == access_log


def test_a_failed_release_command_keeps_its_log(tmp_path: Path) -> None:
    """The error names the command's log: it stays, while the release and the rest of the run dir go."""
    write_app(tmp_path)
    command = "python -c \"print('no database yet'); raise SystemExit(3)\""
    result = run_up(tmp_path, "gunicorn", str(free_port()), "--set", f"deploy.release_command={command}")
    assert result.returncode == 2
    log = tmp_path / ".flaskprod" / "run" / "logs" / "release-1.log"
    assert f"(all of it: {log})" in result.stderr
    assert log.read_text() == "no database yet\n"
    assert {path for path in tree(tmp_path) if path.startswith(".flaskprod")} == {
        ".flaskprod", ".flaskprod/run", ".flaskprod/run/logs", ".flaskprod/run/logs/release-1.log"
    }  # fmt: skip


def run_dir_of(tmp_path: Path, size: int) -> Path:
    """A run dir's path of size bytes, under tmp_path."""
    path = tmp_path / ("r" * (size - len(os.fsencode(tmp_path)) - 1))
    assert len(os.fsencode(path)) == size
    return path


def numbered_from(run_dir: Path, number: int) -> None:
    """The run's release is number (its names are the longest at 99999): as if the numbers before were taken."""
    (run_dir / "releases").mkdir(parents=True)
    (run_dir / "releases" / LAST_NUMBER).write_text(f"{number - 1}\n")


def test_a_run_dir_at_the_bound_without_monitoring_serves_on_its_longest_socket(tmp_path: Path) -> None:
    """90 bytes: release 99999's second app server (SIGHUP's) listens on a socket path of 107 bytes. Before, every
    run was bound by --with monitoring's scrape links, 6 bytes longer, and this one was refused."""
    write_app(tmp_path)
    run_dir = run_dir_of(tmp_path, 90)
    numbered_from(run_dir, 99999)
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--set", f"proxy.run_dir={run_dir}")
    try:
        stack.wait_ready()
        stack.proc.send_signal(signal.SIGHUP)
        reloaded = "app server of release 99999 reloaded"
        wait_for(lambda: reloaded in stack.stderr(), timeout=60, interval=0.1, what="the SIGHUP's app server")
        for name in ("app-99999.1.sock", "app-99999.1.prom"):  # the app server's and its metrics responder's
            longest = run_dir / name
            assert (len(os.fsencode(longest)), longest.is_socket()) == (107, True)
        assert stack.get("/api/ping").status_code == 200
        assert "# TYPE http_requests_total counter" in stack.get("/metrics").text
    finally:
        stop(stack)


def test_a_run_dir_at_the_bound_with_monitoring_is_scraped_through_its_longest_link(tmp_path: Path) -> None:
    """84 bytes under --with monitoring: nginx passes release 99999's scrapes through a link of 107 bytes."""
    write_app(tmp_path)
    run_dir = run_dir_of(tmp_path, 84)
    numbered_from(run_dir, 99999)
    metrics_port = free_port()
    stack = start_up(
        tmp_path, "gunicorn", free_port(), "--workers", "1", "--with", "monitoring",
        "--set", f"proxy.run_dir={run_dir}", "--set", f"monitoring.prometheus_port={free_port()}",
        "--set", f"monitoring.metrics_port={metrics_port}", "--set", f"monitoring.alertmanager_port={free_port()}",
    )  # fmt: skip
    try:
        stack.wait_ready()
        link = run_dir / "scrapes" / "99999" / "app.prom"
        assert (len(os.fsencode(link)), link.is_socket()) == (107, True)
        scraped = requests.get(f"http://127.0.0.1:{metrics_port}/releases/99999/metrics", timeout=15)
        assert scraped.status_code == 200 and "# TYPE http_requests_total counter" in scraped.text
    finally:
        stop(stack)


@pytest.mark.parametrize(
    ("extras", "size", "most", "links"),
    [((), 91, 90, ""), (("--with", "monitoring"), 85, 84, ", with --with monitoring's scrape links")],
    ids=["without-monitoring", "with-monitoring"],
)
def test_a_run_dir_a_byte_over_the_bound_is_refused_in_one_line(
    tmp_path: Path, extras: tuple[str, ...], size: int, most: int, links: str
) -> None:
    write_app(tmp_path)
    run_dir = run_dir_of(tmp_path, size)
    result = run_up(tmp_path, "gunicorn", str(free_port()), *extras, "--set", f"proxy.run_dir={run_dir}")
    assert (result.returncode, result.stderr) == (
        2,
        f"Error: run directory {run_dir} is {size} bytes, too long for the unix socket paths under it (107 bytes at "
        f"most{links}): set proxy.run_dir to a path of at most {most} bytes\n",
    )
    assert not run_dir.exists()


def test_a_release_numbered_past_the_bound_is_refused_before_its_socket_paths_pass_it(tmp_path: Path) -> None:
    """at() measures the run dir's socket paths with release 99999: 90 bytes fit. Release 100000's names are a byte
    longer, its second app server's socket 108 bytes: it was made and served, and no SIGHUP could replace its app
    server ("cannot listen on .../app-100000.1.sock: the path is 108 bytes"). The deploy that would make it is
    refused in one line, and release 99999 serves on."""
    write_app(tmp_path)
    run_dir = run_dir_of(tmp_path, 90)
    numbered_from(run_dir, 99999)
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--set", f"proxy.run_dir={run_dir}")
    try:
        stack.wait_ready()
        deploy = subprocess.run(
            [str(BIN / "flaskprod"), "deploy", "--set", f"proxy.run_dir={run_dir}"], cwd=tmp_path, env=up_env(),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert (deploy.returncode, deploy.stderr) == (
            1,
            f"Error: release 100000's unix socket paths under run directory {run_dir} (90 bytes) would pass the 107 "
            "bytes a socket takes: set proxy.run_dir to a path of at most 89 bytes and restart flaskprod up (its "
            "releases are numbered from 1 again)\n",
        ), stack.output()
        assert sorted(path.name for path in (run_dir / "releases").iterdir()) == [LAST_NUMBER, "99999"]
        assert stack.get("/api/ping").status_code == 200
    finally:
        stop(stack)


def test_a_release_numbered_past_the_bound_serves_under_a_run_dir_short_enough_for_it(tmp_path: Path) -> None:
    """89 bytes, the most release 100000 takes: up starts it, and SIGHUP's app server listens on 107 bytes."""
    write_app(tmp_path)
    numbered_from(run_dir_of(tmp_path, 90), 100000)
    refused = run_up(tmp_path, "gunicorn", str(free_port()), "--set", f"proxy.run_dir={run_dir_of(tmp_path, 90)}")
    assert (refused.returncode, refused.stderr) == (
        2,
        f"Error: release 100000's unix socket paths under run directory {run_dir_of(tmp_path, 90)} (90 bytes) would "
        "pass the 107 bytes a socket takes: set proxy.run_dir to a path of at most 89 bytes and restart flaskprod up "
        "(its releases are numbered from 1 again)\n",
    )
    run_dir = run_dir_of(tmp_path, 89)
    numbered_from(run_dir, 100000)
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--set", f"proxy.run_dir={run_dir}")
    try:
        stack.wait_ready()
        stack.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "app server of release 100000 reloaded" in stack.stderr(), timeout=60, what="the reload")
        longest = run_dir / "app-100000.1.sock"
        assert (len(os.fsencode(longest)), longest.is_socket()) == (107, True)
        assert stack.get("/api/ping").status_code == 200
    finally:
        stop(stack)
