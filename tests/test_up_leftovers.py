"""What `flaskprod up` leaves in its run dir: a graceful stop leaves the releases, logs and configs and nothing of
the processes that ran; a killed up's leftovers (its sockets, records, links, a copy cut short) go at the next
start, once that start holds the run dir, never while another up does."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support import free_port, wait_for
from tests.test_up_deploy import flaskprod
from tests.test_up_errors import run_up
from tests.upstack import UpStack, processes_under, start_up, stop, write_app

pytestmark = pytest.mark.integration

# What a stopped up leaves at the top of its run dir (no config file in these projects): what the next start and
# rollback's releases need, the logs, and the nginx config it ran with.
KEPT = {"logs", "releases", "tmp", "mime.types", "nginx.conf", "up.lock"}


def top(run_dir: Path) -> set[str]:
    return {path.name for path in run_dir.iterdir()}


def kill_up(stack: UpStack) -> None:
    """SIGKILL to up alone, as the OOM killer would: its children die with it (die_with_parent)."""
    stack.proc.kill()
    stack.proc.wait(10)
    wait_for(lambda: processes_under(stack.root) == {}, timeout=30, interval=0.1, what="up's children to exit")


def test_a_graceful_stop_leaves_the_releases_and_nothing_of_the_processes(tmp_path: Path) -> None:
    # Before, the app servers' records (app-N.json) and the serving links, pointing at sockets gone, stayed.
    write_app(tmp_path)
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        deployed = flaskprod(tmp_path, "deploy")
        assert deployed.returncode == 0, deployed.stderr
        assert stack.get("/api/ping").status_code == 200
        stack.proc.send_signal(signal.SIGTERM)
        assert stack.proc.wait(60) == 0, stack.output()
    finally:
        stop(stack)
    assert top(stack.run_dir) == KEPT
    assert sorted(path.name for path in (stack.run_dir / "releases").iterdir()) == ["1", "2"]  # rollback's
    assert (stack.run_dir / "logs" / "access.log").stat().st_size > 0


def test_a_killed_ups_leftovers_go_at_the_next_start(tmp_path: Path) -> None:
    # Before, release 1's record stayed beside release 2's for as long as the next up ran, and after it.
    write_app(tmp_path)
    first = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        first.wait_ready()
        kill_up(first)
    finally:
        stop(first)
    left = top(first.run_dir) - KEPT
    assert {"app-1.json", "control.sock", "serving-0", "serving-0.sock", "serving-0.prom"} <= left, left

    second = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        second.wait_ready()
        assert second.get("/api/ping").status_code == 200
        running = top(second.run_dir) - KEPT
        assert not [name for name in running if name.startswith(("app-1.", "draining-1"))], running
        assert {"app-2.sock", "app-2.prom", "app-2.json", "control.sock", "nginx.pid"} <= running
    finally:
        stop(second)


def big_project(root: Path, files: int = 20000) -> None:
    """An app with enough files that its copy into a release takes a while to kill it during."""
    write_app(root)
    data = root / "data"
    data.mkdir()
    for number in range(files):
        (data / f"{number}.txt").write_text("x" * 100)


def test_a_copy_cut_short_by_a_kill_goes_at_the_next_start(tmp_path: Path) -> None:
    # Before, releases/.1.partial (the project's size) stayed until a copy took its number again: a start that failed
    # before copying (here, an app that no longer imports) left it.
    big_project(tmp_path)
    first = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    partial = first.run_dir / "releases" / ".1.partial"
    try:
        wait_for(partial.exists, timeout=60, interval=0.005, what="the copy into release 1 to start")
        kill_up(first)
    finally:
        stop(first)
    assert partial.is_dir() and not (first.run_dir / "releases" / "1").exists()

    (tmp_path / "app.py").write_text("raise RuntimeError('cannot reach the settings service')\n")
    failed = run_up(tmp_path, "gunicorn", str(free_port()))
    assert failed.returncode == 2 and "cannot reach the settings service" in failed.stderr
    assert not partial.exists()
    assert sorted(path.name for path in (first.run_dir / "releases").iterdir()) == []


def test_a_second_up_sweeps_nothing_of_a_live_ones(tmp_path: Path) -> None:
    """The sweep comes after the run dir's lock: a second up on a live one's run dir is refused and leaves its copy
    under way, its sockets and links as they are."""
    write_app(tmp_path)
    live = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    copying = live.run_dir / "releases" / ".2.partial"
    try:
        live.wait_ready()
        (copying / "static").mkdir(parents=True)
        (copying / "app.py").write_text("app = None\n")
        before = top(live.run_dir)
        refused = run_up(tmp_path, "gunicorn", str(free_port()))
        assert refused.returncode == 2
        assert refused.stderr.endswith(
            f"Error: another flaskprod up (pid {live.proc.pid}) is running in {live.run_dir}: stop it, or set "
            "proxy.run_dir\n"
        ), refused.stderr
        assert top(live.run_dir) == before
        assert (copying / "app.py").read_text() == "app = None\n"
        assert live.get("/api/ping").status_code == 200
    finally:
        stop(live)
