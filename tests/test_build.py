"""`flaskprod build`: the writer, the command's errors, and the image, Compose and Swarm files judged by
real tools (hadolint, checkov, docker-compose, yamllint, gixy-ng, nginx -t) and run natively.

There is no Docker engine here, so what the images would run is run on this machine: the app image's
CMD with its ENV, and nginx with the conf baked into the nginx image, then a request through both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import requests
import yaml
from benchmarks.native import (
    app_command,
    conf_with_upstream,
    dockerfile_env,
    dockerfile_json,
    dockerfile_lines,
    native_nginx,
)

from flaskprod.build import Built, refuse_out_over_the_app
from flaskprod.errors import BuildError
from flaskprod.render.compose import render_compose, render_swarm
from flaskprod.render.deployment import STATIC_DIR, Deployment, app_static, container_machine, plan_deployment
from flaskprod.render.image import app_ignores, copy_instruction, env_value, render_single
from flaskprod.render.kubernetes import render_k8s
from flaskprod.render.nginx import StaticMount
from flaskprod.render.requirements import FLASKPROD_SOURCES
from flaskprod.render.systemd import render_systemd
from flaskprod.render.targets import TARGETS
from flaskprod.render.writer import write_files
from flaskprod.servers.healthcheck import status_at
from flaskprod.servers.probe import AppInfo
from flaskprod.sizing import derive
from flaskprod.spec import load_spec
from tests.buildkit import checkov, make_deployment, make_spec, run_tool, tool, write_tree
from tests.support import BIN, copy_taskboard, free_port, port_pair, running, wait_for
from tests.test_serve import clean_env

FLASKPROD = str(BIN / "flaskprod")
YAMLLINT = "{extends: default, rules: {line-length: {max: 160}, document-start: disable}}"


# --- the writer -------------------------------------------------------------------------------------


def test_writes_every_file_then_reports_them_identical(tmp_path: Path) -> None:
    files = {"a.txt": "one\n", "sub/b.txt": "two\n"}
    first = write_files(tmp_path, files)
    assert [(c.path.relative_to(tmp_path).as_posix(), c.state) for c in first] == [
        ("a.txt", "created"),
        ("sub/b.txt", "created"),
    ]
    assert (tmp_path / "sub" / "b.txt").read_text() == "two\n"
    assert {c.state for c in write_files(tmp_path, files)} == {"identical"}


def test_a_file_changed_by_hand_stops_everything_until_forced(tmp_path: Path) -> None:
    write_files(tmp_path, {"a.txt": "one\n"})
    (tmp_path / "a.txt").write_text("edited\n")
    with pytest.raises(BuildError, match=r"a.txt differs from what flaskprod writes: nothing was written; .* --force"):
        write_files(tmp_path, {"a.txt": "one\n", "new.txt": "new\n"})
    assert (tmp_path / "a.txt").read_text() == "edited\n"
    assert not (tmp_path / "new.txt").exists()
    changes = write_files(tmp_path, {"a.txt": "one\n", "new.txt": "new\n"}, force=True)
    assert [c.state for c in changes] == ["updated", "created"]
    assert (tmp_path / "a.txt").read_text() == "one\n"


def test_its_own_files_are_replaced_and_removed_when_the_spec_changes(tmp_path: Path) -> None:
    record = ".flaskprod-x.sha256"
    write_files(tmp_path, {"a.txt": "one\n", "mon/deep/b.txt": "two\n", "c.txt": "three\n"}, record=record)
    (tmp_path / "c.txt").write_text("mine\n")  # changed by hand, and no longer written below
    (tmp_path / "mon" / "notes.txt").write_text("the user's\n")  # never flaskprod's

    changes = write_files(tmp_path, {"a.txt": "ONE\n", "d.txt": "four\n"}, record=record)
    assert [(c.path.relative_to(tmp_path).as_posix(), c.state) for c in changes] == [
        ("a.txt", "updated"),  # flaskprod's own, as it wrote it: no --force needed
        ("d.txt", "created"),
        ("c.txt", "kept"),
        ("mon/deep/b.txt", "removed"),
    ]
    assert (tmp_path / "a.txt").read_text() == "ONE\n"
    assert (tmp_path / "c.txt").read_text() == "mine\n"
    assert not (tmp_path / "mon" / "deep").exists()  # emptied, so gone; mon/ holds the user's file
    assert (tmp_path / "mon" / "notes.txt").read_text() == "the user's\n"
    # The record names what this run wrote, in sha256sum's format: the kept file is the user's now.
    checked = subprocess.run(["sha256sum", "-c", record], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert (checked.returncode, checked.stdout) == (0, "a.txt: OK\nd.txt: OK\n")
    assert write_files(tmp_path, {"a.txt": "ONE\n", "d.txt": "four\n"}, record=record)[0].state == "identical"

    # A hand edit to a file flaskprod still writes stops the run, as without a record.
    (tmp_path / "a.txt").write_text("edited\n")
    with pytest.raises(BuildError, match=r"a.txt differs from what flaskprod writes: nothing was written"):
        write_files(tmp_path, {"a.txt": "uno\n"}, record=record)
    assert (tmp_path / "d.txt").exists() and (tmp_path / "a.txt").read_text() == "edited\n"


def test_another_targets_files_are_named_as_its_not_as_hand_edits(tmp_path: Path) -> None:
    write_files(tmp_path, {"Dockerfile": "compose's\n", "compose.yaml": "c\n"}, record=".flaskprod-compose.sha256")
    with pytest.raises(BuildError) as refused:
        write_files(tmp_path, {"Dockerfile": "swarm's\n", "stack.yaml": "s\n"}, record=".flaskprod-swarm.sha256")
    # It said "differs from what flaskprod writes ... change the spec instead", as if edited by hand.
    assert str(refused.value) == (
        f"{tmp_path} holds the files of --target compose, and {tmp_path / 'Dockerfile'} differs from what this target "
        "writes: nothing was written; give each target its own --out, or pass --force to replace them"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [".flaskprod-compose.sha256", "Dockerfile", "compose.yaml"]
    # Changed by hand since compose wrote it, it is the user's, named as before.
    (tmp_path / "Dockerfile").write_text("mine\n")
    with pytest.raises(BuildError, match=r"Dockerfile differs from what flaskprod writes: nothing was written; change"):
        write_files(tmp_path, {"Dockerfile": "swarm's\n"}, record=".flaskprod-swarm.sha256")
    assert write_files(tmp_path, {"Dockerfile": "swarm's\n"}, record=".flaskprod-swarm.sha256", force=True)


def test_force_removes_a_file_changed_by_hand_that_is_no_longer_written(tmp_path: Path) -> None:
    write_files(tmp_path, {"a.txt": "one\n", "b.txt": "two\n"}, record="r")
    (tmp_path / "b.txt").write_text("mine\n")
    assert [c.state for c in write_files(tmp_path, {"a.txt": "one\n"}, record="r", dry_run=True)] == [
        "identical",
        "kept",
    ]
    assert [c.state for c in write_files(tmp_path, {"a.txt": "one\n"}, record="r", force=True)] == [
        "identical",
        "removed",
    ]
    assert not (tmp_path / "b.txt").exists()


def test_a_path_that_cannot_be_written_leaves_nothing_written(tmp_path: Path) -> None:
    (tmp_path / "nginx").write_text("a file where a folder goes\n")
    files = {"a.txt": "one\n", "b/c.txt": "two\n", "nginx/nginx.conf": "three\n"}
    with pytest.raises(BuildError) as refused:
        write_files(tmp_path, files, record="r")
    assert str(refused.value) == (
        f"{tmp_path / 'nginx'} is a file where flaskprod needs a folder (for {tmp_path / 'nginx' / 'nginx.conf'}): "
        "nothing was written; move it away, or write elsewhere (--out)"
    )
    # a.txt and b/ were staged before nginx/ failed: neither they, their temporary files nor the record remain.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nginx"]


@pytest.mark.integration
def test_build_into_a_file_is_one_line(project: Path) -> None:
    (project / "outfile").write_text("x\n")
    for out in ("outfile", "outfile/sub"):
        result = flaskprod_build(project, "--target", "compose", "--out", out)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"Error: {project / 'outfile'} is a file where flaskprod needs a folder ")
        assert "nothing was written" in result.stderr and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    changes = write_files(tmp_path / "out", {"a.txt": "one\n"}, dry_run=True)
    assert [c.state for c in changes] == ["created"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd", "a/../../b"])
def test_paths_outside_the_output_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(BuildError, match="outside the output directory"):
        write_files(tmp_path / "out", {"ok.txt": "x", path: "x"})
    assert not (tmp_path / "out").exists()


# --- the command --------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the reference app, as a user's project."""
    dest = tmp_path / "taskboard"
    return copy_taskboard(dest)


def flaskprod_build(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLASKPROD, "build", *args], cwd=project, env=clean_env(), capture_output=True, text=True, timeout=120
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    "shell",
    [{"FLASK_SECRET_KEY": "dev"}, {"FLASK_SECRET_KEY_FILE": "/run/secrets/taskboard_secret_key"}, {}],
    ids=["a-developers-key", "a-file-only-servers-have", "none"],
)
def test_the_builders_secret_key_decides_nothing(project: Path, shell: dict[str, str]) -> None:
    """build imports the app but deploys no key: a weak or absent one in the builder's shell, which Production
    refuses to serve with, still builds, and the same files as a strong one."""
    env = {k: v for k, v in clean_env().items() if k != "FLASK_SECRET_KEY"} | shell
    built = subprocess.run([FLASKPROD, "build", "-t", "k8s"], cwd=project, env=env, capture_output=True, text=True,
                           timeout=120)
    assert built.returncode == 0, built.stderr
    again = flaskprod_build(project, "-t", "k8s")  # a strong key in the shell
    assert again.returncode == 0, again.stderr
    written = again.stdout.splitlines()[1:-1]
    assert written and all(line.split()[0] == "identical" for line in written), again.stdout


@pytest.mark.integration
def test_build_writes_the_target_and_says_what_next(project: Path) -> None:
    result = flaskprod_build(project, "--target", "compose")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "flaskprod build: compose for taskboard in deploy/compose "
        "(gunicorn, 2 workers x 12 threads per container at 1 CPU, 512M)"
    )
    assert "  created      deploy/compose/compose.yaml" in lines
    assert lines[-1] == "next: docker compose -f deploy/compose/compose.yaml up --build"
    compose = yaml.safe_load((project / "deploy/compose/compose.yaml").read_text())
    assert compose["services"]["app"]["image"] == "taskboard:1.0.0"
    # The static folder the app declares is what the nginx image bakes in.
    assert "COPY taskboard/static /srv/static" in (project / "deploy/compose/nginx/Dockerfile").read_text()

    again = flaskprod_build(project, "--target", "compose")
    assert again.returncode == 0
    assert all("identical" in line for line in again.stdout.splitlines()[1:-1])
    # The audit does not argue with files the same spec wrote (the image tells the app to trust nginx).
    for extra in (["--target", "swarm", "--with", "monitoring"], ["--target", "k8s"], ["--target", "systemd"]):
        assert flaskprod_build(project, *extra).returncode == 0
    audit = subprocess.run([FLASKPROD, "check"], cwd=project, env=clean_env(), capture_output=True, text=True,
                           timeout=120)
    assert audit.returncode == 0, audit.stdout
    assert "no issues" in audit.stdout, audit.stdout


@pytest.mark.parametrize(
    "value", ["wsgi:app", "mypkg:create_app('prod')", 'mypkg:create_app("prod")', "My Shop", "a\\b$c", "unix:/a b.sock"]
)
def test_env_values_read_back_as_written(value: str) -> None:
    # Dockerfile ENV splits words, removes quotes and expands $ as a POSIX shell does.
    written = env_value(value)
    echoed = subprocess.run(["sh", "-c", f"printf '%s|' K={written}"], capture_output=True, text=True, check=True)
    assert echoed.stdout == f"K={value}|"
    assert written == value or written.startswith('"')


def test_a_static_folder_with_a_space_is_copied_whole() -> None:
    assert copy_instruction("my static", "/srv/static") == 'COPY ["my static", "/srv/static"]'
    assert copy_instruction("pkg/static", "/srv/static") == "COPY pkg/static /srv/static"


def static_project(project: Path, folder: str, flask_args: str) -> Path:
    """A project whose app serves the static files in folder, made as Flask(__name__, <flask_args>)."""
    (project / folder).mkdir(parents=True)
    (project / folder / "site.css").write_text("body {}\n")
    (project / "requirements.txt").write_text("flask\nflaskprod\n")
    (project / "app.py").write_text(
        "from flask import Flask\nfrom flaskprod import Production\n\n"
        f"app = Flask(__name__, {flask_args})\nProduction(app)\n"
    )
    return project


@pytest.mark.integration
def test_static_files_the_app_serves_from_its_root_stay_with_the_app(tmp_path: Path) -> None:
    """Flask(static_url_path="") answers /site.css itself; nginx must not claim /static/ for that folder."""
    project = static_project(tmp_path / "shop", "public", 'static_url_path="", static_folder="public"')
    assert flaskprod_build(project, "--target", "compose").returncode == 0
    nginx = (project / "deploy/compose/nginx/nginx.conf").read_text()
    assert "alias" not in nginx and "/static/" not in nginx
    assert "public" not in (project / "deploy/compose/nginx/Dockerfile").read_text()
    # Told where the files are, nginx serves them.
    given = flaskprod_build(project, "--target", "compose", "--set", "proxy.static_url=/assets",
                            "--set", f"proxy.static_dir={project / 'public'}")  # fmt: skip
    assert given.returncode == 0, given.stderr
    assert "location /assets/ {" in (project / "deploy/compose/nginx/nginx.conf").read_text()


def blueprint_mount(tmp_path: Path, name: str, url: str) -> StaticMount:
    (tmp_path / name).mkdir(exist_ok=True)
    return StaticMount(endpoint=f"{name}.static", url=url, folder=str(tmp_path / name))


def test_app_static_serves_the_apps_folder_then_each_blueprints_flask_would_route_to(tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    blueprints = (
        blueprint_mount(tmp_path, "admin", "/admin/static"),
        blueprint_mount(tmp_path, "plain", "/static"),  # no url_prefix: Flask routes /static to the app
        blueprint_mount(tmp_path, "root", ""),  # static_url_path="": nginx's / is the app's
        blueprint_mount(tmp_path, "docs", "/static/docs"),  # under the app's: the longer location wins
        StaticMount(endpoint="gone.static", url="/gone/static", folder=str(tmp_path / "missing")),
    )
    info = AppInfo(rss_mb=None, static_folder=str(tmp_path / "static"), static_url_path="/static",
                   import_string="app:app", blueprint_static=blueprints)  # fmt: skip
    assert [(m.endpoint, m.url, m.folder) for m in app_static(make_spec(), info)] == [
        ("static", "/static", str(tmp_path / "static")),
        ("admin.static", "/admin/static", str(tmp_path / "admin")),
        ("docs.static", "/static/docs", str(tmp_path / "docs")),
    ]
    # proxy.static_url and proxy.static_dir replace the app's own mount; the blueprints' stay as Flask has them.
    (tmp_path / "public").mkdir()
    spec = make_spec(**{"proxy.static_url": "/assets/", "proxy.static_dir": str(tmp_path / "public")})
    assert [(m.url, m.folder) for m in app_static(spec, info)][:2] == [
        ("/assets", str(tmp_path / "public")),
        ("/admin/static", str(tmp_path / "admin")),
    ]
    # An app serving its own files from the root keeps them; its blueprints' are still nginx's.
    at_root = AppInfo(rss_mb=None, static_folder=str(tmp_path / "static"), static_url_path="",
                      import_string="app:app", blueprint_static=blueprints)  # fmt: skip
    assert [m.endpoint for m in app_static(make_spec(), at_root)] == ["admin.static", "plain.static", "docs.static"]


BLUEPRINT_APP = """\
from flask import Blueprint, Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)
admin = Blueprint("admin", __name__, static_folder="admin_static", static_url_path="/admin/static")
shop = Blueprint("shop", __name__, static_folder="assets")  # at /shop/assets: Flask derives it from url_prefix
hidden = Blueprint("hidden", __name__, static_folder="hidden", static_url_path="/static")  # Flask routes it to the app
installed = Blueprint("ext", __name__, static_folder={installed!r}, url_prefix="/ext")  # an installed package's
for blueprint in (admin, hidden, installed):
    app.register_blueprint(blueprint)
app.register_blueprint(shop, url_prefix="/shop")
"""


@pytest.mark.integration
@pytest.mark.parametrize(
    ("target", "key", "path", "default"),
    [
        ("k8s", "monitoring.ready_path", "/static/ready", "/readyz"),
        ("compose", "monitoring.health_path", "/static/health", "/healthz"),
        ("systemd", "monitoring.metrics_path", "/static/metrics/", "/metrics"),
    ],
)
def test_an_endpoint_under_the_static_url_is_refused_where_nginx_serves_it(
    project: Path, target: str, key: str, path: str, default: str
) -> None:
    # nginx answered the pods' readiness probe from the static folder (404), and no pod ever turned Ready.
    result = flaskprod_build(project, "--target", target, "--set", f"{key}={path}")
    assert result.returncode == 2, result.stdout
    assert result.stderr == (
        f"Error: {key} {path} is under /static/, where nginx serves the app's static files from disk, so it never "
        f"reaches the app; set {key} to a path outside it, such as {default}\n"
    )
    assert not (project / "deploy").exists()


@pytest.mark.integration
def test_an_endpoint_under_a_blueprints_static_url_is_refused_and_one_the_app_serves_is_not(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    installed = tmp_path / "venv/lib/python3.11/site-packages/ext/static"
    for folder in (project / "static", project / "admin_static", project / "assets", project / "hidden", installed):
        folder.mkdir(parents=True)
    (project / "requirements.txt").write_text("flask\nflaskprod\n")
    (project / "app.py").write_text(BLUEPRINT_APP.format(installed=str(installed)))
    result = flaskprod_build(project, "--target", "compose", "--set", "monitoring.ready_path=/shop/assets/ready")
    assert result.returncode == 2, result.stdout
    assert "monitoring.ready_path /shop/assets/ready is under /shop/assets/, where nginx serves blueprint shop's " \
        "static files from disk" in result.stderr
    # The installed package's folder stays with the app, which answers its endpoints before its routes; so does the
    # single image, which has no nginx.
    for target, path in (("compose", "/ext/static/r"), ("single", "/static/r")):
        assert flaskprod_build(project, "--target", target, "--set", f"monitoring.ready_path={path}").returncode == 0


@pytest.mark.integration
def test_blueprint_static_folders_are_baked_into_the_nginx_image_and_served_from_it(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    installed = tmp_path / "venv/lib/python3.11/site-packages/ext/static"
    files = {"static/site.css": "app", "admin_static/admin.3f2a1b9c.css": "admin", "assets/shop.css": "shop",
             "hidden/h.css": "hidden", "requirements.txt": "flask\nflaskprod\n"}  # fmt: skip
    for relative, text in files.items():
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text(text)
    installed.mkdir(parents=True)
    (installed / "ext.css").write_text("ext")
    (project / "app.py").write_text(BLUEPRINT_APP.format(installed=str(installed)))
    result = flaskprod_build(project, "--target", "compose")
    assert result.returncode == 0, result.stderr
    out = project / "deploy/compose"
    # Each folder of the project in a folder of its own; the installed package's stays with the app.
    copies = [line for line in dockerfile_lines((out / "nginx/Dockerfile").read_text()) if STATIC_DIR in line]
    assert copies == [
        "COPY static /srv/static/static",
        "COPY admin_static /srv/static/admin.static",
        "COPY assets /srv/static/shop.static",
    ]
    conf = (out / "nginx/nginx.conf").read_text()
    assert re.findall(r"location (\S+) \{\n\s*alias (\S+);", conf) == [
        ("/static/", "/srv/static/static/"),
        ("/admin/static/", "/srv/static/admin.static/"),
        ("/shop/assets/", "/srv/static/shop.static/"),
    ]
    port = free_port()
    nginx = native_nginx(project, out, tmp_path / "nginx", port=port, upstream="127.0.0.1:9")
    run_tool([*nginx, "-t", "-q"])
    with (
        (tmp_path / "nginx.log").open("w") as log,
        running([*nginx, "-g", "daemon off;"], cwd=tmp_path, stdout=log, stderr=log) as proxy,
    ):

        def get(path: str) -> requests.Response:
            assert proxy.poll() is None, (tmp_path / "nginx.log").read_text()
            return requests.get(f"http://127.0.0.1:{port}{path}", headers={"Host": "localhost"}, timeout=10)

        admin = wait_for(lambda: get("/admin/static/admin.3f2a1b9c.css"), timeout=20, what="nginx to answer")
        assert (admin.status_code, admin.text) == (200, "admin")
        assert admin.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert [get(path).text for path in ("/static/site.css", "/shop/assets/shop.css")] == ["app", "shop"]
        # No app runs behind this nginx: what stays with the app gets nginx's 502.
        assert get("/ext/static/ext.css").status_code == 502


@pytest.mark.integration
@pytest.mark.parametrize("renderer", [render_compose, render_swarm])
@pytest.mark.parametrize(
    ("names", "host"),
    [
        ("*.example.com", "probe.example.com"),
        (".shop.test", "shop.test"),
        (r"~^api\d+\.example\.com$ www.example.*", "www.example.probe"),
    ],
)
def test_the_nginx_images_health_check_sends_a_host_its_nginx_serves(
    tmp_path: Path, renderer: object, names: str, host: str
) -> None:
    """It sent proxy.server_name's first entry as it is written (a ~regex, *.example.com), which nginx closes (444):
    the check never passed. Here the image's own nginx answers the check's request with the site."""
    project = tmp_path / "p"
    d = make_deployment(project, spec=make_spec(**{"app.name": "shop", "proxy.server_name": names}), out="deploy/x")
    out = write_tree(project / d.out, renderer(d))  # type: ignore[operator]
    check = dockerfile_json((out / "nginx/Dockerfile").read_text(), "HEALTHCHECK .* CMD")
    assert check[check.index("--header") + 1] == f"Host: {host}"
    port = free_port()
    nginx = native_nginx(project, out, tmp_path / "nginx", port=port, upstream="127.0.0.1:9")
    with listening_nginx(nginx, tmp_path, port):
        # No app behind this nginx: its 502 is the site's server taking the request, which a name it does not
        # serve never reaches (the connection is closed).
        url = check[-1].replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        assert requests.get(url, headers={"Host": host}, timeout=10).status_code == 502


@pytest.mark.parametrize("target", ["compose", "swarm", "k8s", "systemd"])
def test_a_server_name_of_regexes_alone_gives_the_health_checks_no_host(tmp_path: Path, target: str) -> None:
    d = make_deployment(tmp_path, spec=make_spec(**{"proxy.server_name": r"~^api\d+\.example\.com$"}))
    askers = {"k8s": "the kubelet's probes", "systemd": "the README's check"}
    asker = askers.get(target, "the nginx image's health check")
    with pytest.raises(BuildError) as refused:
        TARGETS[target].render(d)
    assert str(refused.value) == (
        rf"proxy.server_name '~^api\\d+\\.example\\.com$' has no plain host name for {asker} to send; add one "
        "such as the site's own name"
    )


@pytest.mark.parametrize(("version", "tag"), [("1.2.3", "1.2.3"), ("2.0.0rc1+local.7", "2.0.0rc1-local.7")])
def test_the_image_tag_is_the_version_as_docker_takes_it(tmp_path: Path, version: str, tag: str) -> None:
    d = make_deployment(tmp_path, spec=make_spec(**{"app.name": "shop", "app.version": version}))
    assert (d.image, d.nginx_image) == (f"shop:{tag}", f"shop-nginx:{tag}")


@pytest.mark.integration
def test_the_images_contexts_hold_what_each_copies(tmp_path: Path) -> None:
    """The nginx image takes its conf and the static folders, even one named like a build folder (dist/, a
    bundler's output); the app image leaves out what build wrote, which pip would take for a second package."""
    project = static_project(tmp_path / "spa", "dist", 'static_folder="dist"')
    assert flaskprod_build(project, "--target", "compose").returncode == 0
    out = project / "deploy/compose"
    assert (out / "nginx/Dockerfile.dockerignore").read_text().splitlines()[1:] == [
        "*", "!deploy/compose/nginx", "!dist",
    ]  # fmt: skip
    app_ignored = (out / "Dockerfile.dockerignore").read_text().splitlines()
    assert "dist" in app_ignored and app_ignored[-2:] == ["deploy", "!dist"]  # the later line wins
    assert "COPY dist /srv/static/static" in (out / "nginx/Dockerfile").read_text()


@pytest.mark.integration
def test_settings_given_to_build_reach_the_app_as_they_reach_nginx(project: Path) -> None:
    """A flag, a FLASKPROD_* variable or another config file sets nginx's side at build time; the app in the
    container reads only the project's flaskprod.toml, so the build must tell it the same values."""
    (project / "staging.toml").write_text('[app]\ntarget = "wsgi:app"\n[server]\ngraceful_timeout = 10\n')
    env = clean_env(FLASKPROD_LOGGING__LEVEL="DEBUG")
    args = ["--config", "staging.toml", "--timeout", "60", "--set", "monitoring.health_path=/live",
            "--set", "deploy.replicas=3"]  # fmt: skip
    for target in ("compose", "k8s", "systemd"):
        done = subprocess.run([FLASKPROD, "build", "--target", target, *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr  # the probe answered /live: it was told the flag too
        out = project / "deploy" / target
        text = "\n".join(p.read_text() for p in sorted(out.rglob("*")) if p.is_file() and p.suffix != ".types")
        for carried in ("SERVER__TIMEOUT", "SERVER__GRACEFUL_TIMEOUT", "LOGGING__LEVEL", "MONITORING__HEALTH_PATH"):
            assert f"FLASKPROD_{carried}" in text, (target, carried)
        assert "FLASKPROD_DEPLOY__" not in text  # what only the build reads stays out
        assert "FLASKPROD_PROXY__MAX_BODY_SIZE" not in text  # the project's own flaskprod.toml is in the image
        nginx = (out / "nginx" / "nginx.conf").read_text()
        assert re.search(r"_read_timeout 62s;", nginx), target  # the app's 60 s deadline, and 2 s for its 504
    compose = (project / "deploy/compose/compose.yaml").read_text()
    assert "stop_grace_period: 15s" in compose  # drain 0 + graceful 10 + 5
    dockerfile = (project / "deploy/compose/Dockerfile").read_text()
    assert "FLASKPROD_SERVER__TIMEOUT=60 " in dockerfile and "FLASKPROD_LOGGING__LEVEL=DEBUG " in dockerfile


@pytest.mark.integration
def test_a_hand_edit_is_kept_and_named(project: Path) -> None:
    assert flaskprod_build(project, "--target", "single").returncode == 0
    dockerfile = project / "deploy/single/Dockerfile"
    # A changed spec rewrites flaskprod's own files without --force, as their header says.
    rebuilt = flaskprod_build(project, "--target", "single", "--threads", "4")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "  updated      deploy/single/Dockerfile\n" in rebuilt.stdout
    dockerfile.write_text(dockerfile.read_text() + "# mine\n")
    result = flaskprod_build(project, "--target", "single")
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: {dockerfile} differs from what flaskprod writes: nothing was written; "
        "change the spec instead, or pass --force to overwrite\n"
    )
    assert dockerfile.read_text().endswith("# mine\n")
    assert flaskprod_build(project, "--target", "single", "--force").returncode == 0
    assert not dockerfile.read_text().endswith("# mine\n")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "single", "--with", "monitoring"], "--with monitoring is not available for --target single"),
        (["--target", "k8s", "--with", "logging"], "the platform's collector (a DaemonSet, journald)"),
        (["--target", "compose", "--with", "elk"], "--with elk: unknown; choose from monitoring"),
        (["--target", "compose", "--out", "/tmp"], "--out /tmp: outside the project"),
        (["--target", "compose", "--server", "uwsgi"], "--target compose runs gunicorn, but server.kind is uwsgi"),
        # Its image spoke the uwsgi protocol to the clients it faces, on a port the next step did not publish.
        (["--target", "single", "--server", "uwsgi"], "--target single runs gunicorn, but server.kind is uwsgi: use "
         "--target compose-uwsgi for uwsgi, or pass --server gunicorn"),
        (["--target", "k8s", "--set", "deploy.memory=lots"], "invalid value 'lots' for deploy.memory"),
        (["nosuchmodule:app", "--target", "single"], "nosuchmodule"),
    ],
)
def test_mistakes_are_one_line_and_write_nothing(project: Path, args: list[str], message: str) -> None:
    result = flaskprod_build(project, *args)
    assert result.returncode == 2, result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "deploy").exists()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("out", "relation"),
    [
        ("taskboard", "is the Python package taskboard"),
        ("taskboard/static/x", "is inside the Python package taskboard"),
    ],
)
def test_out_in_the_apps_own_package_is_one_line_and_writes_nothing(project: Path, out: str, relation: str) -> None:
    # Its .dockerignore left the app's code out of the image, and the files landed among the app's modules.
    result = flaskprod_build(project, "--target", "compose", "--out", out)
    assert result.returncode == 2, result.stdout
    assert result.stderr == (
        f"Error: --out {out}: {relation}; the deployment's files go in a folder of their own, which the app image "
        "leaves out: pick one such as deploy/compose\n"
    )
    assert [p.name for p in project.rglob("*") if p.name in ("compose.yaml", "Dockerfile", "nginx")] == []


@pytest.mark.parametrize(
    ("out", "relation"),
    [
        ("static", "is the static folder static"),
        ("static/deploy", "is inside the static folder static"),
        ("src", "holds the Python package src/shop"),
        ("tools", "holds the app's module tools/app.py"),
    ],
)
def test_out_never_holds_or_lies_in_what_the_images_copy(tmp_path: Path, out: str, relation: str) -> None:
    d = make_deployment(tmp_path, out=out)
    (tmp_path / "src/shop").mkdir(parents=True)
    (tmp_path / "src/shop/__init__.py").write_text("")
    d = dataclasses.replace(d, project=dataclasses.replace(d.project, app_module="tools/app.py"))
    with pytest.raises(BuildError) as refused:
        refuse_out_over_the_app(d, TARGETS["swarm"])
    assert str(refused.value) == (
        f"--out {out}: {relation}; the deployment's files go in a folder of their own, which the app image leaves "
        "out: pick one such as deploy/swarm"
    )
    refuse_out_over_the_app(dataclasses.replace(d, out="deploy/swarm"), TARGETS["swarm"])  # a folder of its own


@pytest.mark.integration
def test_an_app_without_production_is_told_what_the_health_checks_need(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    (tmp_path / "requirements.txt").write_text("flask\nflaskprod\n")
    result = flaskprod_build(tmp_path, "--target", "compose")
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == (
        "Error: app:app does not answer /healthz or /readyz, which the deployment's health checks ask: "
        "add Production(app) where the app is created"
    )
    assert not (tmp_path / "deploy").exists()


@pytest.mark.integration
@pytest.mark.parametrize("target", ["single", "systemd"])
def test_requirements_without_flaskprod_are_refused_and_nothing_is_written(project: Path, target: str) -> None:
    # Written by hand, without the package every target's command is.
    requirements = project / "requirements.txt"
    requirements.write_text(requirements.read_text().replace("flaskprod\n", ""))
    result = flaskprod_build(project, "--target", target)
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == (
        "Error: requirements.txt does not install flaskprod, which every target runs (`flaskprod serve`): "
        f"add a line for it; {FLASKPROD_SOURCES}"
    )
    assert not (project / "deploy").exists()


@pytest.mark.integration
def test_a_greenlet_worker_the_requirements_do_not_install_is_refused_and_nothing_is_written(project: Path) -> None:
    args = ("--target", "k8s", "--server", "gunicorn", "--set", "server.worker_class=gevent")
    result = flaskprod_build(project, *args)
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == (
        "Error: server.worker_class = 'gevent' runs on gevent, which requirements.txt does not install: the image's "
        "app server would not start; add gevent to it"
    )
    assert not (project / "deploy").exists()
    requirements = project / "requirements.txt"
    requirements.write_text(requirements.read_text() + "gevent\n")
    assert flaskprod_build(project, *args).returncode == 0
    deployment = yaml.safe_load((project / "deploy/k8s/deployment.yaml").read_text())
    [app] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app"]
    assert {"name": "FLASKPROD_SERVER__WORKER_CLASS", "value": "gevent"} in app["env"]


@pytest.mark.integration
def test_a_project_without_requirements_is_told_how_to_fix_it(project: Path) -> None:
    (project / "requirements.txt").unlink()
    result = flaskprod_build(project, "--target", "single")
    assert result.returncode == 2
    assert "no requirements.txt or pyproject.toml" in result.stderr
    assert "pip freeze > requirements.txt" in result.stderr


# --- what the files say -----------------------------------------------------------------------------


def test_every_shared_number_comes_from_the_derived_values(tmp_path: Path) -> None:
    spec = make_spec(**{"app.name": "shop", "server.graceful_timeout": "20", "server.drain_delay": "3",
                        "deploy.cpus": "1.5", "deploy.memory": "768M", "deploy.replicas": "3"})
    d = make_deployment(tmp_path / "p", spec=spec, out="deploy/compose")
    compose = yaml.safe_load(render_compose(d)["compose.yaml"])
    swarm = yaml.safe_load(render_swarm(d)["stack.yaml"])
    grace = f"{d.derived.timeouts.shutdown_grace}s"
    assert grace == "28s"  # drain 3 + graceful 20 + margin 5
    for services in (compose["services"], swarm["services"]):
        assert services["app"]["stop_grace_period"] == grace
        assert services["nginx"]["stop_grace_period"] == grace
        assert services["app"]["deploy"]["replicas"] == 3
        assert services["app"]["deploy"]["resources"]["limits"] == {"cpus": "1.5", "memory": "768M"}
    # nginx waits for requests in flight as long as the app server does.
    conf = render_compose(d)["nginx/nginx.conf"]
    assert "worker_shutdown_timeout 20s;" in conf
    assert "set $flaskprod_app app:8000;" in conf


def test_the_secret_key_is_required_never_written(tmp_path: Path) -> None:
    d = make_deployment(tmp_path / "p")
    compose = render_compose(d)["compose.yaml"]
    assert "${FLASK_SECRET_KEY:?" in compose
    swarm = yaml.safe_load(render_swarm(d)["stack.yaml"])
    assert swarm["services"]["app"]["environment"] == {"FLASK_SECRET_KEY_FILE": "/run/secrets/shop_secret_key"}
    assert swarm["secrets"] == {"shop_secret_key": {"external": True}}
    # The guide's stack leans on depends_on, which `docker stack deploy` ignores.
    assert all("depends_on" not in service for service in swarm["services"].values())


@pytest.mark.parametrize(
    ("renderer", "file", "where"),
    [(render_compose, "compose.yaml", "this host"), (render_swarm, "stack.yaml", "the node labelled shop-tls")],
)
def test_the_tls_steps_say_lets_encrypt_comes_to_port_80(tmp_path: Path, renderer: Any, file: str, where: str) -> None:
    settings = {"app.name": "shop", "proxy.server_name": "shop.example.com"}
    challenge = "# once http://shop.example.com/.well-known/acme-challenge/ reaches nginx on port"
    plain = renderer(make_deployment(tmp_path / "plain", spec=make_spec(**settings), extras=("tls",)))[file]
    assert f"{challenge} 80\n# (the names' DNS must point at {where});" in plain
    # HTTP-01 connects to port 80 alone: the header had the challenge reach nginx on 8088, and certbot then failed.
    spec = make_spec(**settings, **{"deploy.http_port": "8088"})
    moved = renderer(make_deployment(tmp_path / "moved", spec=spec, extras=("tls",)))[file]
    assert (
        f"{challenge} 8088\n# Let's Encrypt connects to port 80 alone: forward port 80 of {where} to 8088\n"
        f"# (the names' DNS must point at {where});"
    ) in moved


def test_swarm_restarts_the_app_and_nginx_however_they_ended_and_never_gives_up(tmp_path: Path) -> None:
    # Swarm never replaces a task it gave up on (max_attempts) or one that exited 0 under on-failure: the
    # service would run a replica short until its next update.
    swarm = yaml.safe_load(render_swarm(make_deployment(tmp_path / "p"))["stack.yaml"])
    for name in ("app", "nginx"):
        deploy = swarm["services"][name]["deploy"]
        assert deploy["restart_policy"] == {"condition": "any", "delay": "5s"}
        # A failed update is still undone: Swarm watches each new task for this long.
        assert deploy["update_config"]["failure_action"] == "rollback"
        assert deploy["update_config"]["monitor"] == "30s"


def test_swarm_restarts_the_database_and_certbots_loop_and_runs_the_init_step_once(tmp_path: Path) -> None:
    spec = make_spec(**{"proxy.server_name": "shop.example.com", "tls.email": "ops@example.com"})
    d = make_deployment(tmp_path / "p", spec=spec, extras=("postgres", "tls"))
    services = yaml.safe_load(render_swarm(d)["stack.yaml"])["services"]
    # Both exit 0 on a `docker stop`, which on-failure would leave stopped for good.
    assert services["postgres"]["deploy"]["restart_policy"] == {"condition": "any", "delay": "5s"}
    assert services["certbot"]["deploy"]["restart_policy"] == {"condition": "any", "delay": "5s"}
    assert services["certbot-init"]["deploy"]["restart_policy"] == {"condition": "on-failure"}


def test_swarm_publishes_nginx_on_each_node_when_it_limits_per_client(tmp_path: Path) -> None:
    meshed = render_swarm(make_deployment(tmp_path / "mesh"))
    nginx = yaml.safe_load(meshed["stack.yaml"])["services"]["nginx"]
    assert [port["mode"] for port in nginx["ports"]] == ["ingress"]
    assert "nginx sees the mesh's\n# address, not the client's" in meshed["stack.yaml"]
    # Through the mesh every client arrives from one address: a limit per client would limit them all as one.
    d = make_deployment(tmp_path / "limited", spec=make_spec(**{"proxy.rate_limit": "10r/s"}))
    stack = render_swarm(d)["stack.yaml"]
    nginx = yaml.safe_load(stack)["services"]["nginx"]
    assert [(port["published"], port["mode"]) for port in nginx["ports"]] == [(80, "host")]
    assert "replicas" not in nginx["deploy"] and nginx["deploy"]["mode"] == "global"
    # Two tasks cannot hold one node's port: the old one stops first.
    assert nginx["deploy"]["update_config"]["order"] == "stop-first"
    assert "limit_req_zone $binary_remote_addr" in render_swarm(d)["nginx/nginx.conf"]
    assert "host mode" in stack
    path = tmp_path / "stack.yaml"
    path.write_text(stack)
    resolved = compose_config(path, clean_env())
    assert resolved["services"]["nginx"]["deploy"]["mode"] == "global"
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, str(path)])


def test_swarm_gives_the_health_check_as_long_as_kubernetes_liveness_probe(tmp_path: Path) -> None:
    # Both replace an app whose check times out three times: under load, a Python start throttled at the CPU
    # limit and a /healthz queued behind requests take seconds, and a busy replica is not a broken one.
    d = make_deployment(tmp_path / "p")
    swarm = yaml.safe_load(render_swarm(d)["stack.yaml"])["services"]["app"]["healthcheck"]
    k8s = yaml.safe_load(render_k8s(d)["deployment.yaml"])["spec"]["template"]["spec"]["containers"][0]
    assert k8s["name"] == "app"
    assert swarm["timeout"] == f"{k8s['livenessProbe']['timeoutSeconds']}s" == "10s"
    assert swarm["retries"] == k8s["livenessProbe"]["failureThreshold"] == 3


def test_single_publishes_the_port_its_image_exposes(tmp_path: Path) -> None:
    spec = make_spec(**{"app.name": "shop", "app.version": "1.2.3", "deploy.app_port": 9000})
    d = make_deployment(tmp_path / "p", spec=spec, out="deploy/single")
    assert "EXPOSE 9000" in dockerfile_lines(render_single(d)["Dockerfile"])
    step = Built(target=TARGETS["single"], deployment=d, changes=[]).next_step
    assert " && docker run --rm -p 9000:9000 -e FLASK_SECRET_KEY " in step  # it said -p 8000:8000 whatever the port


def test_single_container_trusts_no_proxy_and_compose_trusts_nginx(tmp_path: Path) -> None:
    d = make_deployment(tmp_path / "p", out="deploy/single")
    assert "FLASKPROD_PROXY__TRUSTED_HOPS=0" in render_single(d)["Dockerfile"]
    assert "FLASKPROD_PROXY__TRUSTED_HOPS=1" in render_compose(d)["Dockerfile"]


@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_the_app_server_listens_on_deploy_app_port_whatever_protocol_it_speaks(tmp_path: Path, server: str) -> None:
    # uWSGI bound 3031 whatever deploy.app_port said; nginx's upstream and EXPOSE followed that one, not the setting.
    spec = make_spec(**{"app.name": "shop", "deploy.app_port": 9000})
    d = make_deployment(tmp_path / "p", spec=spec, server=server, out="deploy/x")  # type: ignore[arg-type]
    for files in (render_compose(d), render_swarm(d)):
        assert dockerfile_env(files["Dockerfile"])["FLASKPROD_SERVER__BIND"] == "0.0.0.0:9000"
        assert "EXPOSE 9000" in dockerfile_lines(files["Dockerfile"])
        # The app server, and its metrics responder on the next port, where nginx sends scrapes: Swarm's in upstream
        # blocks, Compose's in the variables its nginx resolves per request.
        addresses = re.findall(r"(?:server|set \$flaskprod_\w+) (app:\d+)[ ;]", files["nginx/nginx.conf"])
        assert sorted(set(addresses)) == ["app:9000", "app:9001"], addresses
        assert dockerfile_env(files["Dockerfile"])["FLASKPROD_MONITORING__METRICS_RESPONDER"] == "true"


# --- judged by the tools ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each container target written into a project of its own: target -> output directory."""
    base = tmp_path_factory.mktemp("targets")
    trees = {}
    for target, server, renderer in (
        ("single", "gunicorn", render_single),
        ("compose", "gunicorn", render_compose),
        ("compose-uwsgi", "uwsgi", render_compose),
        ("swarm", "gunicorn", render_swarm),
    ):
        root = base / target
        d = make_deployment(root / "project", server=server, out=f"deploy/{target}")  # type: ignore[arg-type]
        trees[target] = write_tree(root / "project" / d.out, renderer(d))
    return trees


@pytest.mark.parametrize("target", ["single", "compose", "compose-uwsgi", "swarm"])
def test_hadolint_passes_every_dockerfile(rendered: dict[str, Path], target: str) -> None:
    for dockerfile in sorted(rendered[target].rglob("Dockerfile")):
        run_tool([tool("hadolint"), "--failure-threshold", "style", str(dockerfile)])


def test_hadolint_would_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n")
    result = subprocess.run([tool("hadolint"), str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "DL3007" in result.stdout


def test_checkov_passes_the_dockerfiles(rendered: dict[str, Path]) -> None:
    base = rendered["single"].parents[3]  # targets/<target>/project/deploy/<target>
    summary = checkov(base, "dockerfile")
    assert summary["resource_count"] >= 7  # 4 app images, 3 nginx images


@pytest.mark.parametrize(("target", "file"), [("compose", "compose.yaml"), ("compose-uwsgi", "compose.yaml"),
                                              ("swarm", "stack.yaml")])
def test_docker_compose_and_yamllint_accept_the_stack(rendered: dict[str, Path], target: str, file: str) -> None:
    path = rendered[target] / file
    env = {**clean_env(), "FLASK_SECRET_KEY": secrets.token_hex(32)}
    resolved = compose_config(path, env)
    assert set(resolved["services"]) == {"app", "nginx"}
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, str(path)])


def test_compose_refuses_to_start_without_a_secret_key(rendered: dict[str, Path]) -> None:
    env = clean_env()
    env.pop("FLASK_SECRET_KEY")
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(rendered["compose"] / "compose.yaml"), "config"],
        env=env, capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "set FLASK_SECRET_KEY" in result.stderr


def compose_config(path: Path, env: dict[str, str]) -> dict[str, Any]:
    """docker-compose's own reading of a file (it fails on an invalid one); warnings on stderr are not YAML. The file
    is judged by the Compose spec's JSON schema too, which `docker compose` v2 follows and docker-compose 1.x
    (the Debian package here) predates."""
    run_tool([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])
    done = subprocess.run([tool("docker-compose"), "-f", str(path), "config"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


@pytest.mark.parametrize("target", ["compose", "compose-uwsgi", "swarm"])
def test_nginx_and_gixy_accept_the_nginx_image_conf(rendered: dict[str, Path], tmp_path: Path, target: str) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(conf_with_upstream((rendered[target] / "nginx/nginx.conf").read_text(), "127.0.0.1:9"))
    run_tool([shutil.which("nginx") or "nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(conf)])
    run_tool([tool("gixy"), str(rendered[target] / "nginx/nginx.conf")])


# --- run natively: the app image's CMD and ENV, nginx with the image's conf --------------------------


@contextmanager
def listening_nginx(nginx: list[str], where: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """nginx (native_nginx's command) running in the foreground from where, its log in where/nginx.log, once it
    listens on port; stopped at the end."""
    with (
        (where / "nginx.log").open("w") as log,
        running([*nginx, "-g", "daemon off;"], cwd=where, stdout=log, stderr=log) as proxy,
    ):

        def listening() -> bool:
            assert proxy.poll() is None, (where / "nginx.log").read_text()
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wait_for(listening, timeout=20, what="nginx to listen")
        yield proxy


@pytest.fixture
def native_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """compose-uwsgi's files for the reference app, run here: the app image's CMD, then nginx; yields its URL."""
    server = request.param
    project = tmp_path / "taskboard"
    copy_taskboard(project)
    target = "compose-uwsgi" if server == "uwsgi" else "compose"
    result = flaskprod_build(project, "--target", target)
    assert result.returncode == 0, result.stderr
    out = project / "deploy" / target
    dockerfile = (out / "Dockerfile").read_text()
    app_port = port_pair()  # and the one after it, for the metrics responder beside it
    command, image_env = app_command(dockerfile, app_port)
    env = clean_env(**image_env)
    healthcheck = dockerfile_json(dockerfile, "HEALTHCHECK .* CMD")
    nginx_dir = tmp_path / "nginx"
    nginx_port = free_port()
    nginx = native_nginx(project, out, nginx_dir, port=nginx_port, upstream=f"127.0.0.1:{app_port}")
    with (
        (tmp_path / "app.log").open("w") as app_log,
        (tmp_path / "nginx.log").open("w") as nginx_log,
        running(command, env=env, cwd=project, stdout=app_log, stderr=app_log) as app,
        running([*nginx, "-g", "daemon off;"], cwd=nginx_dir, stdout=nginx_log, stderr=nginx_log) as proxy,
    ):

        def healthy() -> bool:
            assert app.poll() is None, (tmp_path / "app.log").read_text()
            assert proxy.poll() is None, (tmp_path / "nginx.log").read_text()
            return subprocess.run([str(BIN / "python"), *healthcheck[1:]], env=env, cwd=project).returncode == 0

        wait_for(healthy, timeout=60, what="the app image's HEALTHCHECK to pass")
        yield f"http://127.0.0.1:{nginx_port}", project


@pytest.mark.integration
@pytest.mark.parametrize("native_stack", ["uwsgi", "gunicorn"], indirect=True)
def test_the_images_contents_serve_the_app_through_nginx(native_stack: tuple[str, Path]) -> None:
    url, project = native_stack
    page = requests.get(f"{url}/", headers={"Host": "localhost"}, timeout=10)
    assert page.status_code == 200
    assert "X-Request-ID" in page.headers
    css = next((project / "taskboard/static").rglob("*.css"))
    static = requests.get(f"{url}/static/{css.relative_to(project / 'taskboard/static').as_posix()}",
                          headers={"Host": "localhost"}, timeout=10)
    assert static.status_code == 200
    assert static.content == css.read_bytes()
    # A name the site does not serve is closed without an answer (444).
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/", headers={"Host": "evil.example"}, timeout=10)


@pytest.mark.parametrize(("renderer", "file"), [(render_compose, "compose.yaml"), (render_swarm, "stack.yaml")])
def test_monitoring_adds_prometheus_and_grafana_fed_by_the_written_files(
    tmp_path: Path, renderer: object, file: str
) -> None:
    d = make_deployment(tmp_path / "p", extras=["monitoring"], out="deploy/x")
    out = write_tree(tmp_path / "p" / d.out, renderer(d))  # type: ignore[operator]
    env = {**clean_env(), "FLASK_SECRET_KEY": secrets.token_hex(32), "GRAFANA_ADMIN_PASSWORD": "x" * 20}
    resolved = compose_config(out / file, env)
    assert set(resolved["services"]) == {"app", "nginx", "prometheus", "alertmanager", "grafana"}
    # Every file a service mounts or is given as a config is one build wrote, and Prometheus accepts it.
    volumes = [v for service in resolved["services"].values() for v in service.get("volumes", [])]
    mounted = [v.split(":")[0] for v in volumes if isinstance(v, str)]
    mounted += [v["source"] for v in volumes if isinstance(v, dict) and v.get("type") == "bind"]
    mounted += [c["file"] for c in resolved.get("configs", {}).values()]
    sources = [Path(m) for m in mounted if m.startswith("/")]
    assert sources and all(path.exists() for path in sources), sources
    run_tool([tool("promtool"), "check", "config", str(out / "monitoring/prometheus/prometheus.yml")])
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, str(out / file)])
    prometheus = (out / "monitoring/prometheus/prometheus.yml").read_text()
    assert ("tasks.app" in prometheus) == (file == "stack.yaml")


def test_every_replica_together_keeps_within_the_database_budget(tmp_path: Path) -> None:
    spec = make_spec(**{"app.name": "shop", "deploy.replicas": "4", "database.connection_budget": "60"})
    d = make_deployment(tmp_path / "p", spec=spec, out="deploy/compose")
    env = dockerfile_env(render_compose(d)["Dockerfile"])
    # What a container's own `flaskprod serve` derives at start, from the image's environment and its limits:
    # replicas=1, since it knows of no other container.
    inside = derive(load_spec(tmp_path, config=None, environ=env, flags={}), container_machine(spec))
    assert (inside.workers, inside.pool) == (d.derived.workers, d.derived.pool)
    per_container = inside.workers * (inside.pool.size + inside.pool.overflow)
    assert per_container * spec.deploy.replicas <= spec.database.connection_budget


def test_swarm_names_each_config_after_its_content(tmp_path: Path) -> None:
    # A Swarm config cannot change once created: under the same name, `docker stack deploy` of an edited
    # alerts.yml fails ("only updates to Labels are allowed"). A new name for new content deploys.
    def stack(timeout: str) -> tuple[dict[str, str], dict[str, Any]]:
        name = "a-long-application-name-for-the-shop-at-example-com"
        spec = make_spec(**{"app.name": name, "server.timeout": timeout})
        d = make_deployment(tmp_path / timeout, spec=spec, extras=["monitoring", "logging"], out="deploy/swarm")
        files = render_swarm(d)
        return files, yaml.safe_load(files["stack.yaml"])["configs"]

    files, configs = stack("30")
    for config in configs.values():
        text = files[config["file"].removeprefix("./")]
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        # Swarm's own rule for a config's name: at most 64 of these, a letter or digit at each end.
        assert re.fullmatch(r"[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?", config["name"]), config
        assert len(config["name"]) <= 64 and config["name"].endswith(f"_{digest}"), config
    assert len({config["name"] for config in configs.values()}) == len(configs)
    # Built again unchanged, every name stays (no service restarts); with another timeout, the rules' change.
    assert stack("30")[1] == configs
    changed = {key for key, config in stack("45")[1].items() if config["name"] != configs[key]["name"]}
    assert "prometheus_alerts_yml" in changed and "logging_loki_loki_yaml" not in changed


# --- the app image as its process tree: PID 1, the user it runs as, its layers ------------------------

SPAWNING_APP = '''\
import subprocess

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/spawn")
def spawn() -> str:
    # A helper that starts a job in the background and returns: the job outlives its parent, an orphan.
    subprocess.run(["sh", "-c", "sleep 0.2 &"], check=True)
    return "spawned\\n"
'''


def final_stage(text: str) -> list[str]:
    return dockerfile_lines(text.rsplit("\nFROM ", 1)[1])


def build_stage(text: str) -> list[str]:
    return dockerfile_lines(text.split("\nFROM ", 2)[1])


def in_venv(command: list[str]) -> list[str]:
    """command with the image's venv commands (flaskprod, python) named by their path here."""
    return [str(BIN / word) if word in ("flaskprod", "python") else word for word in command]


def image_command(text: str) -> list[str]:
    """What the container runs: ENTRYPOINT (when there is one), then CMD."""
    entrypoint = dockerfile_json(text, "ENTRYPOINT") if "\nENTRYPOINT " in text else []
    return in_venv([*entrypoint, *dockerfile_json(text, "CMD")])


def process_tree(root: int) -> dict[int, str]:
    """Every process under root, with its state (R, S, Z...), from /proc."""
    parents: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = (int(fields[1]), fields[0])
    tree: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state) in parents.items():
            if ppid == parent and pid not in tree:
                tree[pid] = state
                frontier.append(pid)
    return tree


def image_env(text: str, port: int) -> dict[str, str]:
    """The image's environment here: its ENV, with the server on a free loopback port (from port_pair: its metrics
    responder takes the next one)."""
    env = clean_env(**dockerfile_env(text))
    env["FLASKPROD_SERVER__BIND"] = f"127.0.0.1:{port}"
    return env


@pytest.mark.integration
@pytest.mark.parametrize("server", ["uwsgi", "gunicorn"])
def test_the_app_images_pid_1_reaps_the_processes_its_workers_orphan(tmp_path: Path, server: str) -> None:
    """In a PID namespace of its own, as in a container: an orphan is reparented to the image's PID 1, which must
    wait for it, or every one the app leaves behind stays a zombie until the container stops."""
    project = tmp_path / "shop"
    d = make_deployment(project, server=server)  # type: ignore[arg-type]
    (project / "wsgi.py").write_text(SPAWNING_APP)
    text = render_compose(d)["Dockerfile"]  # compose-uwsgi's image for uWSGI, compose's for Gunicorn
    port = port_pair()
    env = image_env(text, port)
    protocol = env.get("FLASKPROD_SERVER__PROTOCOL", "http")
    healthcheck = in_venv(dockerfile_json(text, "HEALTHCHECK .* CMD"))
    namespace = ["unshare", "--pid", "--fork", "--mount-proc"]
    with (
        (tmp_path / "app.log").open("w") as log,
        running([*namespace, *image_command(text)], env=env, cwd=project, stdout=log, stderr=log) as container,
    ):

        def healthy() -> bool:
            assert container.poll() is None, (tmp_path / "app.log").read_text()
            return subprocess.run(healthcheck, env=env, cwd=project).returncode == 0

        wait_for(healthy, timeout=60, what="the image's HEALTHCHECK to pass")
        for _ in range(5):  # in the protocol the server speaks, as nginx would ask
            assert status_at(env["FLASKPROD_SERVER__BIND"], protocol, "/spawn") == 200
        time.sleep(1.5)  # each orphan's sleep has ended
        zombies = [pid for pid, state in process_tree(container.pid).items() if state == "Z"]
        assert zombies == [], (tmp_path / "app.log").read_text()[-2000:]
        # docker stop: SIGTERM to PID 1 ends the server gracefully, and the container with status 0.
        (init,) = [pid for pid, _ in process_tree(container.pid).items() if _parent(pid) == container.pid]
        os.kill(init, signal.SIGTERM)
        assert container.wait(timeout=40) == 0, (tmp_path / "app.log").read_text()[-2000:]


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.integration
def test_the_reference_app_starts_in_its_image_as_the_images_user(project: Path) -> None:
    """The image's files belong to root and it runs as APP_UID, with no instance/ in the context (.dockerignore):
    the app's os.makedirs(app.instance_path, exist_ok=True) and its SQLite file need the folder the image makes."""
    result = flaskprod_build(project, "--target", "single")
    assert result.returncode == 0, result.stderr
    text = (project / "deploy/single/Dockerfile").read_text()
    assert "instance" in (project / "deploy/single/Dockerfile.dockerignore").read_text().splitlines()
    # The image's /app here: a root-owned copy anyone may enter, as COPY makes it; then the final stage's RUNs
    # that follow its WORKDIR, as root. (The user itself is not added to this machine: the image names ids.)
    image = Path(tempfile.mkdtemp(prefix="flaskprod-image-", dir="/tmp"))  # pytest's own is root's alone
    try:
        image.chmod(0o755)
        app_dir = image / "app"
        ignored = (project / "deploy/single/Dockerfile.dockerignore").read_text().splitlines()
        context = [line.removeprefix("**/") for line in ignored if line and not line.startswith(("#", "!"))]
        shutil.copytree(project, app_dir, ignore=shutil.ignore_patterns(*context))  # build made instance/ here
        assert not (app_dir / "instance").exists()
        stage = final_stage(text)
        workdir = next(i for i, line in enumerate(stage) if line == "WORKDIR /app")
        for line in stage[workdir:]:
            if line.startswith("RUN "):
                subprocess.run(["sh", "-c", line[4:].replace("/app", str(app_dir))], check=True)
        uid = int(next(line for line in stage if line.startswith("USER ")).split()[1])
        port = port_pair()
        env = image_env(text, port)
        # As the image's user; it may read past the 0700 home this machine's Python lives under, never write.
        reader = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *reader]
        healthcheck = in_venv(dockerfile_json(text, "HEALTHCHECK .* CMD"))
        with (
            (image / "app.log").open("w") as log,
            running([*as_user, *image_command(text)], env=env, cwd=app_dir, stdout=log, stderr=log) as app,
        ):

            def healthy() -> bool:
                assert app.poll() is None, (image / "app.log").read_text()[-3000:]
                return subprocess.run([*as_user, *healthcheck], env=env, cwd=app_dir).returncode == 0

            wait_for(healthy, timeout=60, what="the image's HEALTHCHECK to pass")
            assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        database = app_dir / "instance" / "taskboard.sqlite3"
        assert database.stat().st_uid == uid
        # Nothing else is the app's to change.
        assert (app_dir / "wsgi.py").stat().st_uid == 0 and not (app_dir / "wsgi.py").stat().st_mode & 0o022
    finally:
        shutil.rmtree(image)


PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "shop"
version = "1.2.3"
dependencies = ["flask>=3", 'tomli; python_version < "3.11"', "flaskprod"]
"""


@pytest.mark.parametrize("python", ["3.11", "3.10"])
def test_a_pyproject_projects_dependencies_are_a_layer_a_code_change_keeps(tmp_path: Path, python: str) -> None:
    """The build stage installs pyproject.toml's dependencies from that file alone, before it copies the code: a
    change to the code rebuilds the project's own install, not every dependency's."""
    project = tmp_path / "shop"
    d = make_deployment(project, spec=make_spec(**{"app.name": "shop", "deploy.python": python}))
    (project / "requirements.txt").unlink()
    (project / "pyproject.toml").write_text(PYPROJECT)
    d = dataclasses.replace(d, project=dataclasses.replace(d.project, requirements=None))
    text = render_single(d)["Dockerfile"]
    stage = build_stage(text)
    copies = [line for line in stage if line.startswith("COPY ")]
    assert copies == ["COPY pyproject.toml /tmp/project/pyproject.toml", "COPY . /app"], stage
    installs = [i for i, line in enumerate(stage) if line.startswith("RUN ") and "pip install" in line]
    assert len(installs) == 2 and installs[0] < stage.index("COPY . /app") < installs[1], stage
    # The layer's command, run here on the copied file by this Python (3.11: tomllib; pip vendors tomli for older).
    command = stage[installs[0]][4:].split(" && pip install ", 1)[0].replace("/tmp/project", str(project))
    subprocess.run(["sh", "-c", command], env={"PATH": f"{BIN}:/usr/bin:/bin"}, check=True, cwd=tmp_path)
    assert (project / "requirements.txt").read_text().splitlines() == [
        "flask>=3", 'tomli; python_version < "3.11"', "flaskprod",
    ]  # fmt: skip
    out = write_tree(project / "deploy/single", {"Dockerfile": text})
    run_tool([tool("hadolint"), "--failure-threshold", "style", str(out / "Dockerfile")])


def stand_in_wheel(folder: Path, name: str, version: str) -> Path:
    """A wheel with nothing but its metadata, as an index would serve it: what pip resolves and hashes."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        tags = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        wheel.writestr(f"{info}/WHEEL", tags)
        wheel.writestr(f"{info}/RECORD", "")
    return path


@pytest.mark.parametrize("requirements", ["hashes", "own uwsgi"])
def test_the_uwsgi_image_installs_requirements_pip_takes(tmp_path: Path, requirements: str) -> None:
    """uWSGI is installed on its own, and not at all when the requirements pin it: pip installs nothing when one
    command has two pins of a package, or a package without a hash beside requirements with hashes."""
    project = tmp_path / "shop"
    d = make_deployment(project, server="uwsgi")
    wheels = tmp_path / "index"
    pinned = stand_in_wheel(wheels, "flaskprod", "1.0")
    digest = hashlib.sha256(pinned.read_bytes()).hexdigest()
    lines = {
        "hashes": f"flaskprod==1.0 --hash=sha256:{digest}\n",
        "own uwsgi": "flaskprod==1.0\nuWSGI==2.0.28\n",
    }[requirements]
    (project / "requirements.txt").write_text(lines)
    stand_in_wheel(wheels, "uwsgi", "2.0.28")
    text = render_compose(d)["Dockerfile"]
    pins = re.findall(r'"uwsgi==([^"]+)"', text)
    for version in pins:
        stand_in_wheel(wheels, "uwsgi", version)
    assert bool(pins) == (requirements == "hashes")
    readme = render_systemd(d)["README.md"]
    assert re.findall(r'pip install "uwsgi==([^"]+)"\n', readme) == pins
    # Each pip command of the build stage, run by pip against an index holding those packages.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    commands = [line for line in build_stage(text) if line.startswith("RUN pip install ")]
    assert len(commands) == len(pins) + 1
    for command in commands:
        args = shlex.split(command.removeprefix("RUN pip install "))
        args = [str(project / "requirements.txt") if a.startswith("/tmp/requirements/") else a for a in args]
        done = subprocess.run(
            [str(BIN / "pip"), "install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(wheels),
             *args], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_flasks_instance_folder_is_a_volume_where_the_root_file_system_is_read_only(
    tmp_path: Path, project: Path
) -> None:
    # The reference app keeps its SQLite file there: on a read-only root its first write failed.
    d = make_deployment(tmp_path / "p")
    dockerfile = render_compose(d)["Dockerfile"]
    assert "RUN install -d -o 10001 -g 10001 -m 0750 /app/instance" in dockerfile  # Docker copies it to a new volume
    path = write_tree(tmp_path / "compose", render_compose(d)) / "compose.yaml"
    env = {**clean_env(), "FLASK_SECRET_KEY": secrets.token_hex(32)}
    app = compose_config(path, env)["services"]["app"]
    assert app["read_only"] is True
    assert [volume.split(":")[:2] for volume in app["volumes"]] == [["instance", "/app/instance"]], app["volumes"]
    stack = render_swarm(d)["stack.yaml"]
    swarm = yaml.safe_load(stack)
    assert swarm["services"]["app"]["volumes"] == ["instance:/app/instance"] and "instance" in swarm["volumes"]
    # On Swarm the volume is each node's own: the header says what that means for a SQLite file.
    assert "is a volume on each node" in stack
    with_db = render_swarm(make_deployment(tmp_path / "db", extras=("postgres",)))["stack.yaml"]
    assert "is a volume on each node" not in with_db
    # Kubernetes mounts nothing there: its pods say where such data belongs instead.
    assert "Flask's instance folder (/app/instance) too: keep data" in render_k8s(d)["kustomization.yaml"]
    # One container: the run line keeps the folder in a volume too, beyond `docker run --rm`.
    single = flaskprod_build(project, "--target", "single")
    assert single.returncode == 0, single.stderr
    assert "-v taskboard-instance:/app/instance taskboard:1.0.0" in single.stdout.splitlines()[-1]


# --- Flask's instance folder, wherever the image's Python puts it -----------------------------------------

SRC_LAYOUT = Path(__file__).parent / "apps" / "src_layout"
FLASK_CALL = "Flask(__name__, instance_relative_config=True)"
# What `flaskprod serve` does in the image, by the image's Python: load the app from the working directory (the
# project's copy) as discovery does, and write once to its SQLite file in the instance folder.
LOAD_AND_WRITE = """\
import os, sys
from flaskprod.discovery import find_app
app = find_app(sys.argv[1], ".")
assert app.test_client().post("/notes", data="first").status_code == 201
assert os.path.isfile(os.path.join(app.instance_path, "inkwell.sqlite3"))
print(app.instance_path)
"""


def laid_out(root: Path, layout: str, chosen: Path) -> str:
    """tests/apps/src_layout copied to root and laid out as layout says; the app target build is given.

    src: pyproject.toml, src/inkwell/, installed by pip; package: inkwell/ at the root with requirements.txt;
    flat: inkwell/ at the root, installed by pip from pyproject.toml too; module: inkwell.py at the root with
    requirements.txt; chosen: src, with Flask(instance_path=chosen); inside package: src, with an instance_path
    computed from the package's own file; wsgi adds src: src/inkwell/ with requirements.txt, wsgi.py putting src/ on
    sys.path itself.
    """
    shutil.copytree(SRC_LAYOUT, root)
    package = root / "src" / "inkwell"
    init = package / "__init__.py"
    instance_path = {"chosen": repr(str(chosen)), "inside package": "os.path.join(os.path.dirname(__file__), 'data')"}
    if layout in instance_path:
        init.write_text(init.read_text().replace(FLASK_CALL, f"Flask(__name__, instance_path={instance_path[layout]})"))
    if layout in ("package", "module", "wsgi adds src"):
        (root / "pyproject.toml").unlink()
        (root / "requirements.txt").write_text("flask\nflaskprod\n")
    if layout == "wsgi adds src":
        (root / "wsgi.py").write_text(
            "import os, sys\n\nsys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'src'))\n"
            "from inkwell import create_app\n\napp = create_app()\n"
        )
        return "wsgi:app"
    if layout in ("package", "flat", "module"):
        (init if layout == "module" else package).rename(root / ("inkwell.py" if layout == "module" else "inkwell"))
        shutil.rmtree(root / "src")
        return "inkwell:create_app()"
    return "src/inkwell:create_app()"


def instance_path_installed(d: Deployment, work: Path) -> tuple[str, Path, Path]:
    """app.instance_path with the project installed as the app image installs it, and the folders that stand for the
    image's /app and venv: the build context (the project less the .dockerignore) copied to work/app; a venv with
    the requirements (this one's packages, through a .pth), and the project itself when it has no requirements file
    (`pip install /app`); the app then loaded there by that venv's Python as `flaskprod serve` loads it."""
    app_dir, venv = work / "app", work / "venv"
    ignored = app_ignores(d).splitlines()
    context = [line.removeprefix("**/") for line in ignored if line and not line.startswith(("#", "!"))]
    shutil.copytree(d.project.root, app_dir, ignore=shutil.ignore_patterns(*context))
    subprocess.run([str(BIN / "python"), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    ours = sysconfig.get_path("purelib")
    (site_packages / "requirements.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    if d.project.requirements is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
        done = subprocess.run(
            [str(BIN / "pip"), "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-build-isolation",
             "--no-index", "--no-cache-dir", str(app_dir)], env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    loaded = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", LOAD_AND_WRITE, d.project.app_target],
        cwd=app_dir, env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    # The last line: the app's JSON access log goes to stdout before it.
    return loaded.stdout.splitlines()[-1], app_dir, venv


def moved(path: str, *, app_dir: Path, venv: Path, to_app: str, to_venv: str) -> str:
    """path with app_dir and venv where an install puts them."""
    for here, there in ((app_dir, to_app), (venv, to_venv)):
        if Path(path).is_relative_to(here):
            return str(PurePosixPath(there) / Path(path).relative_to(here))
    return path


@pytest.mark.integration
@pytest.mark.parametrize(
    ("layout", "in_image"),
    [
        ("src", "/opt/venv/var/inkwell-instance"),  # Flask's <prefix>/var/<name>-instance of an installed package
        ("package", "/app/instance"),
        ("flat", "/app/instance"),  # installed too, but the copy at /app comes first on sys.path
        ("module", "/app/instance"),
        ("chosen", "{chosen}"),
        ("wsgi adds src", "/app/src/instance"),  # kept out of the image's context, as instance/ is
    ],
)
def test_every_target_makes_the_instance_folder_flask_computes_as_the_image_installs_the_app(
    tmp_path: Path, layout: str, in_image: str
) -> None:
    """The image's instance folder (its user's, a volume over it) is app.instance_path as the image's own Python
    computes it: with a src layout pip installs the package into the venv, and Flask looks under the venv's var/,
    where the old /app/instance left the app's first SQLite write on a read-only file system."""
    project, chosen = tmp_path / "inkwell", tmp_path / "data"
    target = laid_out(project, layout, chosen)
    spec = make_spec(**{"app.name": "inkwell", "app.version": "1.0.0", "app.target": target})
    d = plan_deployment(spec, server="gunicorn", root=project, environ=clean_env())
    local, app_dir, venv = instance_path_installed(d, tmp_path / "image")
    expected = in_image.format(chosen=chosen)
    assert moved(local, app_dir=app_dir, venv=venv, to_app="/app", to_venv="/opt/venv") == expected == d.instance_dir

    out = write_tree(project / "deploy/compose", render_compose(d))
    if expected.startswith("/app/"):
        assert expected.removeprefix("/app/") in (out / "Dockerfile.dockerignore").read_text().splitlines()
    assert f"RUN install -d -o 10001 -g 10001 -m 0750 {expected}\n" in (out / "Dockerfile").read_text()
    run_tool([tool("hadolint"), "--failure-threshold", "style", str(out / "Dockerfile")])
    app = compose_config(out / "compose.yaml", clean_env())["services"]["app"]
    assert [volume.split(":")[:2] for volume in app["volumes"]] == [["instance", expected]], app["volumes"]
    stack = render_swarm(d)["stack.yaml"]
    assert yaml.safe_load(stack)["services"]["app"]["volumes"] == [f"instance:{expected}"]
    assert f"Flask's instance folder ({expected}) is a volume on each node" in stack
    assert f"Flask's instance folder ({expected}) too" in render_k8s(d)["kustomization.yaml"]
    single = Built(target=TARGETS["single"], deployment=dataclasses.replace(d, server="gunicorn"), changes=[])
    assert f" -v inkwell-instance:{expected} inkwell:1.0.0" in single.next_step
    # A VM installs the project as the image does, into /srv/inkwell and the venv /opt/inkwell/venv.
    on_vm = moved(local, app_dir=app_dir, venv=venv, to_app="/srv/inkwell", to_venv="/opt/inkwell/venv")
    vm = render_systemd(dataclasses.replace(d, server="uwsgi"))
    assert f"\nReadWritePaths=-{on_vm}\n" in vm["inkwell.service"]
    assert f"install -d -o inkwell -g inkwell -m 0750 {on_vm}\n" in vm["README.md"]


@pytest.mark.integration
def test_an_instance_path_inside_the_installed_package_is_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    project = tmp_path / "inkwell"
    target = laid_out(project, "inside package", tmp_path / "data")
    result = flaskprod_build(project, "--target", "compose", target)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"Error: the app's instance_path {project / 'src/inkwell/data'} is inside its installed package, which the "
        "deployment installs read-only into a virtualenv where no volume reaches: leave instance_path to Flask, or "
        "pass an absolute folder outside the package such as /var/lib/inkwell\n"
    )
    assert not (project / "deploy").exists()
