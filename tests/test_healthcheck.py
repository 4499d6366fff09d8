"""`python -m flaskprod.servers.healthcheck`, the containers' health check, against real Gunicorn and uWSGI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import PYTHON, ROOT, free_port, running, wait_for
from tests.test_serve import FLASKPROD, clean_env


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "flaskprod.servers.healthcheck"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("server", "protocol", "unix"),
    [("gunicorn", "http", False), ("uwsgi", "http", False), ("uwsgi", "uwsgi", False), ("uwsgi", "uwsgi", True)],
)
def test_healthy_server_passes_and_a_stopped_one_fails(tmp_path: Path, server: str, protocol: str, unix: bool) -> None:
    bind = f"unix:{tmp_path / 'app.sock'}" if unix else f"0.0.0.0:{free_port()}"
    settings = {
        "FLASKPROD_APP__TARGET": "tests.apps.basic:app",
        "FLASKPROD_SERVER__KIND": server,
        "FLASKPROD_SERVER__BIND": bind,
        "FLASKPROD_SERVER__PROTOCOL": protocol,
        "FLASKPROD_SERVER__WORKERS": "1",
    }
    env = clean_env(**settings)
    log = tmp_path / "serve.log"
    with log.open("w") as out, running([FLASKPROD, "serve"], env=env, cwd=ROOT, stdout=out, stderr=out) as proc:

        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()
            return healthcheck(env).returncode == 0

        wait_for(healthy, timeout=30, what=f"{server} ({protocol}) to pass the health check")
    stopped = healthcheck(env)
    assert stopped.returncode == 1
    assert stopped.stderr.startswith(f"unhealthy: {bind}: ")


@pytest.mark.integration
def test_a_path_that_is_not_healthy_fails_with_its_status(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(
        FLASKPROD_APP__TARGET="tests.apps.basic:app",
        FLASKPROD_SERVER__BIND=f"127.0.0.1:{port}",
        FLASKPROD_SERVER__WORKERS="1",
    )
    log = tmp_path / "serve.log"
    with log.open("w") as out, running([FLASKPROD, "serve"], env=env, cwd=ROOT, stdout=out, stderr=out):
        wait_for(lambda: healthcheck(env).returncode == 0, timeout=30, what="gunicorn to be healthy")
        wrong = healthcheck({**env, "FLASKPROD_MONITORING__HEALTH_PATH": "/no-such-path"})
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == "unhealthy: /no-such-path answered 404"


def test_a_bad_setting_is_one_line() -> None:
    result = healthcheck(clean_env(FLASKPROD_SERVER__WORKERZ="2"))
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy: env FLASKPROD_SERVER__WORKERZ: unknown setting")
    assert "Traceback" not in result.stderr


def test_a_config_it_cannot_read_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "flaskprod.toml").mkdir()
    result = healthcheck(clean_env(FLASKPROD_CONFIG=str(tmp_path / "flaskprod.toml")))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"unhealthy: {tmp_path}/flaskprod.toml: cannot read config file: Is a directory; make it a file you can read, "
        "or pass another with --config"
    )
