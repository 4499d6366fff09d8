"""`flaskprod build` audited on a realistic project: a src layout with an app factory, Flask-SQLAlchemy, pinned
dependencies in pyproject.toml and static folders of its own and of a blueprint.

compose-uwsgi's replicas answer scrapes over HTTP on deploy.app_port + 1 (the metrics responder), as compose's
do, so it takes --with monitoring too: its Prometheus, run here for real, scrapes the uWSGI image's command.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.buildkit import run_tool, tool
from tests.support import BIN, free_port, port_pair, running, wait_for
from tests.test_build import dockerfile_env, dockerfile_json
from tests.test_serve import clean_env

SHOP_INIT = '''\
"""The shop: an app factory, Flask-SQLAlchemy, a blueprint with static files of its own."""
from flask import Flask, jsonify
from flask_sqlalchemy import SQLAlchemy

from flaskprod import Production

db = SQLAlchemy()


class Product(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(80), nullable=False)


def create_app():
    app = Flask(__name__, instance_relative_config=True)
    Production(app)  # SQLALCHEMY_DATABASE_URI from DATABASE_URL
    app.config.setdefault("SQLALCHEMY_DATABASE_URI", "sqlite://")
    db.init_app(app)

    from .admin import admin

    app.register_blueprint(admin)

    @app.get("/")
    def index():
        return "shop"

    @app.get("/api/products")
    def products():
        return jsonify([p.name for p in db.session.scalars(db.select(Product))])

    return app
'''
ADMIN_INIT = '''\
from flask import Blueprint

admin = Blueprint("admin", __name__, url_prefix="/admin", static_folder="static", static_url_path="/assets")


@admin.get("/")
def home():
    return "admin"
'''
PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "shop"
version = "2.4.1"
requires-python = ">=3.11"
dependencies = [
    "Flask==3.1.3",
    "Flask-SQLAlchemy==3.1.1",
    "SQLAlchemy==2.0.36",
    "psycopg[binary]==3.2.3",
    "flaskprod @ git+https://git.example.com/ops/flaskprod.git@v0.1.0",
]

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
shop = ["static/**/*", "admin/static/*"]

[tool.flaskprod.app]
target = "shop:create_app"
name = "shop"
"""


def src_layout_shop(root: Path) -> Path:
    """A src-layout project under root: pyproject.toml with pinned dependencies, src/shop with a factory."""
    package = root / "src" / "shop"
    (package / "static" / "css").mkdir(parents=True)
    (package / "admin" / "static").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text(SHOP_INIT)
    (package / "admin" / "__init__.py").write_text(ADMIN_INIT)
    (package / "static" / "css" / "app.css").write_text("body { margin: 0 }\n")
    (package / "admin" / "static" / "admin.css").write_text(".admin { color: red }\n")
    return root


def shop_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment a user with the project installed has: its src folder importable (pip install -e .)."""
    return clean_env(PYTHONPATH=str(root / "src"), **extra)


def build(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flaskprod"), "build", *args], cwd=root, env=shop_env(root), capture_output=True, text=True,
        timeout=120,
    )


def scrape_jobs(prometheus_yml: Path) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in yaml.safe_load(prometheus_yml.read_text())["scrape_configs"]}


def test_compose_uwsgi_takes_monitoring_scraping_each_replicas_responder_over_http(tmp_path: Path) -> None:
    root = src_layout_shop(tmp_path / "shop")
    done = build(root, "--target", "compose-uwsgi", "--with", "monitoring")
    # It answered "--with monitoring is not available for --target compose-uwsgi", a reason that stopped
    # being true once every replica answered scrapes in HTTP beside its uwsgi-protocol port.
    assert done.returncode == 0, done.stderr
    out = root / "deploy" / "compose-uwsgi"
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    assert {"prometheus", "alertmanager", "grafana"} <= set(compose["services"])
    assert compose["services"]["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]  # never public
    env = dockerfile_env((out / "Dockerfile").read_text())
    assert (env["FLASKPROD_SERVER__PROTOCOL"], env["FLASKPROD_MONITORING__METRICS_RESPONDER"]) == ("uwsgi", "true")
    job = scrape_jobs(out / "monitoring/prometheus/prometheus.yml")["shop"]
    # Every replica by Compose's DNS name, on the port after the uwsgi one: the responder, in HTTP.
    assert [(sd["names"], sd["port"]) for sd in job["dns_sd_configs"]] == [(["app"], 8001)]
    run_tool([tool("promtool"), "check", "config", str(out / "monitoring/prometheus/prometheus.yml")])


def test_a_real_prometheus_scrapes_the_compose_uwsgi_images_command(tmp_path: Path) -> None:
    root = src_layout_shop(tmp_path / "shop")
    done = build(root, "--target", "compose-uwsgi", "--with", "monitoring")
    assert done.returncode == 0, done.stderr
    out = root / "deploy" / "compose-uwsgi"
    dockerfile = (out / "Dockerfile").read_text()
    app_port = port_pair()  # and the next one, the responder's
    env = shop_env(root, **dockerfile_env(dockerfile))
    env["FLASKPROD_SERVER__BIND"] = f"127.0.0.1:{app_port}"  # the container's 0.0.0.0:8000, here
    command = dockerfile_json(dockerfile, "CMD")
    command[0] = str(BIN / command[0])
    # The one thing that differs from the container: Compose's DNS name `app` is this machine.
    config = yaml.safe_load((out / "monitoring/prometheus/prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        if job["job_name"] == "shop":
            (sd,) = job.pop("dns_sd_configs")
            assert sd["port"] == 8001
            job["static_configs"] = [{"targets": [f"127.0.0.1:{app_port + 1}"]}]
            job["scrape_interval"] = "1s"
    config.pop("alerting", None)
    prometheus_dir = tmp_path / "prometheus"
    prometheus_dir.mkdir()
    for name in ("alerts.yml",):
        (prometheus_dir / name).write_text((out / "monitoring/prometheus" / name).read_text())
    (prometheus_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus_port = free_port()
    base = f"http://127.0.0.1:{prometheus_port}"
    args = [
        tool("prometheus"),
        f"--config.file={prometheus_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
    ]
    with (
        (tmp_path / "app.log").open("w") as app_log,
        (tmp_path / "prometheus.log").open("w") as prom_log,
        running(command, env=env, cwd=root, stdout=app_log, stderr=app_log) as app,
        running(args, stdout=prom_log, stderr=prom_log) as prometheus,
    ):

        def shop_target() -> dict[str, Any]:
            assert app.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            targets = requests.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            (target,) = [t for t in targets if t["labels"]["job"] == "shop"]
            assert target["health"] == "up", target
            return dict(target)

        target = wait_for(shop_target, timeout=60, what="Prometheus to scrape the uWSGI replica's responder")
        assert target["scrapeUrl"] == f"http://127.0.0.1:{app_port + 1}/metrics"
        # Rules drawn from the spec loaded, and the app's own series arrived.
        rules = requests.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"AppDown", "WorkersSaturated"}
        series = requests.get(f"{base}/api/v1/query", params={"query": 'up{job="shop"}'}, timeout=5).json()
        assert [s["value"][1] for s in series["data"]["result"]] == ["1"]
