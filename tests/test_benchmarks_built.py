"""The benchmark's built stacks: what `flaskprod build -t compose|compose-uwsgi` writes, run here under load."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

import pytest
from benchmarks import run
from benchmarks.stacks import all_stacks, started
from benchmarks.workloads import BY_NAME

from tests.support import wait_for


@pytest.mark.integration
@pytest.mark.parametrize("name", ["built-compose", "built-compose-uwsgi"])
def test_a_built_compose_target_serves_under_load_and_stops_with_its_run(tmp_path: Path, name: str) -> None:
    stack = next(s for s in all_stacks(default_kind="uwsgi") if s.name == name)
    mode = dataclasses.replace(run.QUICK, duration=1, workload_warmup=1)
    env = run.stack_env(run.base_env(secrets.token_hex(32)), stack, f"sqlite:///{tmp_path}/db.sqlite3")
    with started(stack, tmp_path, env) as running:
        workers = running.worker_pids()
        [measured] = run.load_workloads(stack, running, [BY_NAME["ping"]], mode, lambda line: None, sweep=False)
        app = running.plan.commands[0]
        # The image's own settings, recorded with the command: its bind, moved to a port here.
        assert app.env["FLASKPROD_SERVER__BIND"].startswith("127.0.0.1:")
        assert "FLASKPROD_SERVER__BIND=127.0.0.1:" in app.shown()
        assert "resolver" in running.plan.files["nginx.conf"]  # Compose's nginx, as it asks Docker's DNS
    assert len(workers) >= 2
    assert measured["ok_rps"] > 0
    assert measured["errors"] == 0, measured
    # Killed with their group; whoever inherited them reaps them a moment later.
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10, what="the workers to be gone")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
