"""`flaskprod build`: the values nginx and the app share come from the app as it loads, the containers' sizes from
the input alone, and the proxy the app trusts is the nginx in front of it."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flaskprod import build as build_module
from flaskprod.errors import SpecError
from flaskprod.render.compose import render_compose, render_swarm
from flaskprod.render.image import render_single
from flaskprod.render.kubernetes import render_k8s
from flaskprod.render.systemd import render_systemd
from flaskprod.servers import probe as probe_module
from flaskprod.servers.probe import AppInfo
from flaskprod.sizing import MIB
from tests.buildkit import build_tree, make_deployment, make_spec
from tests.test_build import FLASKPROD, dockerfile_env
from tests.test_build_k8s import PRODUCTION  # what a k8s build needs besides the defaults
from tests.test_serve import clean_env

NGINX_TARGETS = ("compose", "compose-uwsgi", "swarm", "k8s", "systemd")
# An app with a body limit of its own, which Production(app) keeps; and one that lifts every limit after it.
OWN_LIMIT = """
from flask import Flask

from flaskprod import Production

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 20 * 1024 * 1024
Production(app)
"""
NO_LIMIT = """
from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)
app.config["MAX_CONTENT_LENGTH"] = None
"""


def write_project(root: Path, source: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wsgi.py").write_text(source)
    (root / "requirements.txt").write_text("flask\nflaskprod\n")
    return root


def body_limits(conf: str) -> list[str]:
    return re.findall(r"^\s*client_max_body_size (\S+);", conf, re.MULTILINE)


# --- nginx's body limit is the app's --------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("target", NGINX_TARGETS)
def test_nginx_limits_bodies_to_the_max_content_length_the_app_keeps(tmp_path: Path, target: str) -> None:
    # The app kept its 20 MiB, and nginx refused everything over proxy.max_body_size's 10 MiB under a comment
    # saying it was the app's byte count.
    settings = PRODUCTION if target == "k8s" else {"app.name": "shop"}
    tree = build_tree(write_project(tmp_path / "own", OWN_LIMIT), target, settings, ())
    assert tree.d.derived.max_body_bytes == 20 * MIB
    assert body_limits(tree.files["nginx/nginx.conf"]) == [str(20 * MIB)]
    if target == "k8s":
        ingress = tree.yaml("ingress.yaml")
        assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == str(20 * MIB)


@pytest.mark.integration
def test_an_app_without_a_limit_gets_the_settings_at_nginx(tmp_path: Path) -> None:
    tree = build_tree(write_project(tmp_path / "none", NO_LIMIT), "compose", {"proxy.max_body_size": "3M"}, ())
    assert body_limits(tree.files["nginx/nginx.conf"]) == [str(3 * MIB)]


# --- the same input writes the same files ---------------------------------------------------------------------


@pytest.fixture
def jittered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The app's memory as the probe measures it, a different value on every build: the first two on either side
    of 96 MiB, which is 4 workers in 512M rather than 3, then a small app and a big one."""
    measured = [95.0, 97.0, 40.0, 300.0]
    learn = probe_module.probe_to_learn
    calls = iter(measured)

    def probe_to_learn(*args: Any, **kwargs: Any) -> AppInfo:
        return dataclasses.replace(learn(*args, **kwargs), rss_mb=next(calls))

    monkeypatch.setattr(probe_module, "probe_to_learn", probe_to_learn)
    return measured


@pytest.mark.integration
@pytest.mark.parametrize(("target", "extras"), [("compose", ("postgres",)), ("k8s", ())])
def test_builds_of_the_same_input_write_the_same_files_whatever_the_app_measures(
    tmp_path: Path, jittered: list[float], target: str, extras: tuple[str, ...]
) -> None:
    # The measured RSS sized the workers: 4 workers five times and 3 once for one input, baked into the image
    # with the pools and PostgreSQL's max_connections.
    project = write_project(tmp_path / "shop", OWN_LIMIT)
    spec = make_spec(**{**PRODUCTION, "deploy.cpus": "8", "deploy.memory": "512M"})
    outputs, workers = [], set()
    for _ in jittered:
        built = build_module.build(spec, target=target, extras=extras, root=project, dry_run=True, environ=clean_env())
        outputs.append(built.target.render(built.deployment))
        workers.add(built.deployment.derived.workers)
    changed = sorted({name for files in outputs[1:] for name in files if files[name] != outputs[0].get(name)})
    assert not changed, f"{changed} changed with the app's measured memory"
    assert workers == {3}  # 384 MiB for workers (0.75 of 512M) / 128 MiB each


@pytest.mark.integration
def test_the_worker_memory_setting_sizes_the_containers(tmp_path: Path, jittered: list[float]) -> None:
    project = write_project(tmp_path / "shop", OWN_LIMIT)
    for memory_mb, workers in (("96", 4), ("200", 1)):
        spec = make_spec(**{"deploy.cpus": "8", "deploy.memory": "512M", "server.worker_memory_mb": memory_mb})
        built = build_module.build(spec, target="compose", root=project, dry_run=True, environ=clean_env())
        assert built.deployment.derived.workers == workers
        assert dockerfile_env(built.target.render(built.deployment)["Dockerfile"])["FLASKPROD_SERVER__WORKERS"] == (
            str(workers)
        )


# --- the proxy the app trusts ---------------------------------------------------------------------------------


RENDERERS = {"compose": render_compose, "swarm": render_swarm, "k8s": render_k8s, "systemd": render_systemd}


@pytest.mark.parametrize("target", RENDERERS)
@pytest.mark.parametrize(("hops", "said"), [
    (2, "proxy.trusted_hops = 2, but nginx, the one proxy in front of the app here, rate-limits, guards the metrics "
        "path and logs by the address that connects to it"),
    (0, "proxy.trusted_hops = 0, but nginx is in front of the app here, whose X-Forwarded-* headers"),
])  # fmt: skip
def test_a_trusted_hops_other_than_nginx_is_refused_not_overridden(
    tmp_path: Path, target: str, hops: int, said: str
) -> None:
    # 2 became 1 in every target, silently: behind a balancer, the app took the balancer for the client.
    spec = make_spec(**{**PRODUCTION, "proxy.trusted_hops": str(hops)})
    d = make_deployment(tmp_path / "p", spec=spec, server="uwsgi" if target in ("k8s", "systemd") else "gunicorn")
    with pytest.raises(SpecError) as refused:
        RENDERERS[target](d)
    assert str(refused.value).startswith(said)
    assert "remove proxy.trusted_hops (1 is set)" in str(refused.value)


@pytest.mark.parametrize("target", RENDERERS)
def test_trusted_hops_set_to_nginx_alone_is_taken(tmp_path: Path, target: str) -> None:
    spec = make_spec(**{**PRODUCTION, "proxy.trusted_hops": "1"})
    d = make_deployment(tmp_path / "p", spec=spec, server="uwsgi" if target in ("k8s", "systemd") else "gunicorn")
    assert "TRUSTED_HOPS" in "".join(RENDERERS[target](d).values())


def test_the_single_image_trusts_no_proxy_whatever_is_set(tmp_path: Path) -> None:
    d = make_deployment(tmp_path / "p", spec=make_spec(**{"app.name": "shop", "proxy.trusted_hops": "2"}))
    assert dockerfile_env(render_single(d)["Dockerfile"])["FLASKPROD_PROXY__TRUSTED_HOPS"] == "0"


@pytest.mark.integration
def test_build_refuses_trusted_hops_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    project = write_project(tmp_path / "shop", OWN_LIMIT)
    done = subprocess.run([FLASKPROD, "build", "--target", "compose", "--set", "proxy.trusted_hops=2"], cwd=project,
                          env=clean_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("Error: proxy.trusted_hops = 2, but nginx") and done.stderr.count("\n") == 1
    assert "pass --set proxy.trusted_hops=1" in done.stderr
    assert not (project / "deploy").exists()
