"""`flaskprod check` warns when the config class the app loads is picked by an environment variable set in the shell
check runs in and in no deployment file (FP-C021): check, build and up saw the production config, while every built
target loads the code's default (Flasky's `create_app(os.getenv("FLASK_CONFIG") or "default")`, a DevelopmentConfig
with DEBUG on, which then refuses to start, or runs on its development database)."""

from __future__ import annotations

from pathlib import Path

from flaskprod.checks.registry import REGISTRY
from tests import test_check
from tests.test_check import audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

CONFIG = """\
class Config:
    SQLALCHEMY_TRACK_MODIFICATIONS = False


class DevelopmentConfig(Config):
    DEBUG = True


class ProductionConfig(Config):
    pass


config = {"development": DevelopmentConfig, "production": ProductionConfig, "default": DevelopmentConfig}
"""
FACTORY = """\
import os

from flask import Flask

from config import config
from flaskprod import Production


def create_app(config_name=None):
    app = Flask(__name__)
    config_name = config_name or os.environ.get("SHOP_CONFIG", "development")
    app.config.from_object(config[config_name])
    Production(app)
    return app
"""
# Flasky's shape: the factory takes the name, and the module a server imports reads the variable.
FLASKY_FACTORY = FACTORY.replace("config_name=None", "config_name").replace(
    '    config_name = config_name or os.environ.get("SHOP_CONFIG", "development")\n', ""
)
FLASKY = 'import os\n\nfrom shop import create_app\n\napp = create_app(os.getenv("FLASK_CONFIG") or "default")\n'


def test_a_factory_reading_the_variable_is_named_with_the_default_deployments_load(project: Path) -> None:
    files = {"config.py": CONFIG, "shop.py": FACTORY}
    found = audit(project, files, "shop:create_app()", env={"SHOP_CONFIG": "production"}).only("FP-C021")
    assert [(m["obj"], m["level"], m["text"], m["hint"]) for m in found] == [
        (
            "shop.py:11",
            "WARNING",
            "SHOP_CONFIG picks the config the app loads (app.config.from_object at shop.py:12), and is set where "
            "check runs ('production') but in no deployment file: the built targets, and `up` or `serve` started "
            "without it, load the config of its default, 'development', instead",
            REGISTRY["FP-C021"].hint,
        )
    ]


def test_flaskys_wsgi_module_passing_the_variable_to_the_factory_is_named(project: Path) -> None:
    files = {"config.py": CONFIG, "shop.py": FLASKY_FACTORY, "flasky.py": FLASKY}
    found = audit(project, files, "flasky:app", env={"FLASK_CONFIG": "production"}).only("FP-C021")
    assert [(m["obj"], m["text"].split(": the built")[0]) for m in found] == [
        (
            "flasky.py:5",
            "FLASK_CONFIG picks the config the app loads (app.config.from_object at shop.py:11), and is set where "
            "check runs ('production') but in no deployment file",
        )
    ]


def test_a_variable_the_deployments_set_or_the_shell_leaves_at_its_default_passes(project: Path) -> None:
    files = {"config.py": CONFIG, "shop.py": FACTORY}
    for env in ({}, {"SHOP_CONFIG": "development"}):
        assert audit(project, files, "shop:create_app()", env=env).only("FP-C021") == [], env
    # A developer's shell picking another config than the production one the code defaults to.
    defaults_to_production = FACTORY.replace('"SHOP_CONFIG", "development"', '"SHOP_CONFIG", "production"')
    production_default = {**files, "shop.py": defaults_to_production}
    development = {"SHOP_CONFIG": "development"}
    assert audit(project, production_default, "shop:create_app()", env=development).only("FP-C021") == []
    production = {"SHOP_CONFIG": "production"}
    dockerfile = {"Dockerfile": "FROM python:3.11-slim\nENV SHOP_CONFIG=production\n"}
    assert audit(project, {**files, **dockerfile}, "shop:create_app()", env=production).only("FP-C021") == []
    (project / "Dockerfile").unlink()
    compose = {"compose.yaml": "services:\n  app:\n    build: .\n    environment:\n      SHOP_CONFIG: production\n"}
    assert audit(project, {**files, **compose}, "shop:create_app()", env=production).only("FP-C021") == []
