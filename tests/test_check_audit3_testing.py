"""`flaskprod check` names the line of the app's code that turns TESTING on (FP-S002), as FP-S001 does for DEBUG:
the app only when several lines do, or a variable here (FLASK_TESTING read into the config) can have."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_check
from tests.test_check import PLAIN, PROD, audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

CONFIG = """
import os


class Config:
    SECRET_KEY = os.environ.get("FLASK_SECRET_KEY")


class ProductionConfig(Config):
    TESTING = True
"""
FACTORY = "from flask import Flask\n\nfrom config import ProductionConfig\n\napp = Flask(__name__)\n" + (
    "app.config.from_object(ProductionConfig)\n"
)


@pytest.mark.parametrize(
    ("files", "where"),
    [
        ({"app.py": PLAIN + "app.testing = True\n"}, ["app.py:4"]),
        ({"app.py": PLAIN + 'app.config["TESTING"] = True\n'}, ["app.py:4"]),
        ({"app.py": PLAIN + "app.config.update(TESTING=True)\n"}, ["app.py:4"]),
        ({"app.py": FACTORY, "config.py": CONFIG}, ["config.py:9"]),
        # Two lines turn it on: which one is in effect is the app's to say.
        ({"app.py": FACTORY + "app.testing = True\n", "config.py": CONFIG}, ["app"]),
    ],
    ids=["attribute", "config-item", "update", "config-class", "twice"],
)
def test_testing_turned_on_in_the_apps_code_is_named_at_its_line(
    project: Path, files: dict[str, str], where: list[str]
) -> None:
    assert [m["obj"] for m in audit(project, files).only("FP-S002")] == where


def test_testing_from_a_variable_here_names_the_app(project: Path) -> None:
    # FLASK_TESTING, which Production(app) reads into TESTING, may be what turned it on: no line is to blame.
    source = PROD.replace("Production(app)\n", 'Production(app)\napp.config["TESTING"] = True\n')
    result = audit(project, {"app.py": source}, env={"FLASK_TESTING": "true"})
    assert [m["obj"] for m in result.only("FP-S002")] == ["app"]
