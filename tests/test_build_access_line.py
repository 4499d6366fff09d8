"""`flaskprod build`: behind a target's nginx, which writes each request's access line with its request id, the app
writes none of its own, as under `up`; facing clients (the single image), it does.

The app is told so outright (logging.access_log = false), not left to auto, which reads proxy.trusted_hops = 0 as no
proxy in front: the same files, run here as test_build runs them, with an operator's FLASKPROD_PROXY__TRUSTED_HOPS=0
in the container (a ProxyFix of the app's own reading nginx's headers, FP-C008's way out), logged every request twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from flaskprod.render.compose import render_compose, render_swarm
from flaskprod.render.deployment import Deployment
from flaskprod.render.image import render_single
from flaskprod.render.kubernetes import render_k8s
from flaskprod.render.systemd import render_systemd
from tests.buildkit import make_deployment, make_spec
from tests.support import BIN, copy_taskboard, free_port, port_pair, running, wait_for
from tests.test_build import dockerfile_env, dockerfile_json, flaskprod_build, native_nginx
from tests.test_build_k8s import PRODUCTION
from tests.test_build_systemd import units_of
from tests.test_serve import clean_env


def _from_dockerfile(files: dict[str, str]) -> dict[str, str]:
    return dockerfile_env(files["Dockerfile"])


def _from_pod(files: dict[str, str]) -> dict[str, str]:
    deployment = yaml.safe_load(files["deployment.yaml"])
    app = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app")
    return {entry["name"]: entry["value"] for entry in app["env"] if "value" in entry}


def _from_unit(files: dict[str, str]) -> dict[str, str]:
    return units_of(files)[0].environment()


# Each target behind nginx: its renderer, app server, and where the app container's (or unit's) variables are.
BEHIND_NGINX = {
    "compose": (render_compose, "gunicorn", _from_dockerfile),
    "compose-uwsgi": (render_compose, "uwsgi", _from_dockerfile),
    "swarm": (render_swarm, "gunicorn", _from_dockerfile),
    "k8s": (render_k8s, "uwsgi", _from_pod),
    "systemd": (render_systemd, "uwsgi", _from_unit),
}


def app_env(tmp_path: Path, target: str, settings: dict[str, str] | None = None) -> dict[str, str]:
    renderer, server, read = BEHIND_NGINX[target]
    d: Deployment = make_deployment(
        tmp_path / "p", spec=make_spec(**{**PRODUCTION, **(settings or {})}), server=server  # type: ignore[arg-type]
    )
    return read(renderer(d))


@pytest.mark.parametrize("target", BEHIND_NGINX)
def test_every_target_behind_nginx_tells_the_app_its_access_line_is_nginxs(tmp_path: Path, target: str) -> None:
    env = app_env(tmp_path, target)
    # It was missing: auto, which the app reads as off only while it trusts a proxy.
    assert env["FLASKPROD_LOGGING__ACCESS_LOG"] == "false"
    assert env["FLASKPROD_PROXY__TRUSTED_HOPS"] == "1"


@pytest.mark.parametrize("target", BEHIND_NGINX)
def test_an_access_line_asked_for_is_kept_behind_nginx(tmp_path: Path, target: str) -> None:
    assert app_env(tmp_path, target, {"logging.access_log": "true"})["FLASKPROD_LOGGING__ACCESS_LOG"] == "true"


def test_the_single_image_facing_clients_writes_its_own_access_line(tmp_path: Path) -> None:
    env = dockerfile_env(render_single(make_deployment(tmp_path / "p", out="deploy/single"))["Dockerfile"])
    assert "FLASKPROD_LOGGING__ACCESS_LOG" not in env  # auto: with no proxy trusted, the app logs each request
    assert env["FLASKPROD_PROXY__TRUSTED_HOPS"] == "0"


def app_access_paths(output: str) -> list[str]:
    """url.path of every access line the app wrote (JSON on stdout, under either server)."""
    paths = []
    for line in output.splitlines():
        if line.startswith("{") and '"url"' in line:
            record: dict[str, Any] = json.loads(line)
            if isinstance(record.get("url"), dict):
                paths.append(record["url"]["path"])
    return paths


def nginx_uris(log: Path) -> list[str]:
    return [json.loads(line)["uri"] for line in log.read_text().splitlines() if line.startswith('{"time"')]


@pytest.mark.integration
@pytest.mark.parametrize(("target", "hops"), [("compose", None), ("compose", "0"), ("compose-uwsgi", "0")])
def test_the_built_files_run_here_write_one_access_line_a_request(
    tmp_path: Path, target: str, hops: str | None
) -> None:
    project = copy_taskboard(tmp_path / "taskboard")
    result = flaskprod_build(project, "--target", target)
    assert result.returncode == 0, result.stderr
    out = project / "deploy" / target
    dockerfile = (out / "Dockerfile").read_text()
    env = clean_env(**dockerfile_env(dockerfile))
    if hops is not None:
        env["FLASKPROD_PROXY__TRUSTED_HOPS"] = hops  # set in the container by hand, past build
    app_port = port_pair()  # and the one after it, for the metrics responder beside it
    env["FLASKPROD_SERVER__BIND"] = f"127.0.0.1:{app_port}"
    command = dockerfile_json(dockerfile, "CMD")
    command[0] = str(BIN / command[0])
    nginx_port = free_port()
    nginx = native_nginx(project, out, tmp_path / "nginx", port=nginx_port, upstream=f"127.0.0.1:{app_port}")
    app_log, nginx_log = tmp_path / "app.log", tmp_path / "nginx.log"
    with (
        app_log.open("w") as app_out,
        nginx_log.open("w") as nginx_out,
        running(command, env=env, cwd=project, stdout=app_out, stderr=app_out) as app,
        running([*nginx, "-g", "daemon off;"], cwd=tmp_path / "nginx", stdout=nginx_out, stderr=nginx_out),
    ):

        def answered() -> bool:
            assert app.poll() is None, app_log.read_text()
            try:
                response = requests.get(f"http://127.0.0.1:{nginx_port}/api/ping?once", timeout=5,
                                        headers={"Host": "localhost"})  # fmt: skip
            except requests.ConnectionError:
                return False
            return response.status_code == 200

        wait_for(answered, timeout=60, what=f"the app through nginx ({app_log})")
        wait_for(lambda: "/api/ping?once" in nginx_uris(nginx_log), timeout=10,
                 what="nginx's access line (buffered, flushed each second)")  # fmt: skip
    # Stopped (SIGTERM, as a container is): every line the app would write is written by now.
    assert "/api/ping" not in app_access_paths(app_log.read_text()), app_log.read_text()
