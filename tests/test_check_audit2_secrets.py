"""`flaskprod check` on the key and debug mode as the guides write them: one finding for one string, named at the
line of the source that sets it, not at the app."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

# The Flask Mega-Tutorial's and Flasky's layout: a config class whose key falls back to a string, and an app factory
# that picks the config by name ("default" is the development one).
FLASKY = {
    "myapp/config.py": """
        import os


        class Config:
            SECRET_KEY = os.environ.get("SECRET_KEY") or "hard-to-guess-string"


        class DevelopmentConfig(Config):
            DEBUG = True


        class TestingConfig(Config):
            TESTING = True


        config = {"development": DevelopmentConfig, "testing": TestingConfig, "default": DevelopmentConfig}
    """,
    "myapp/__init__.py": """
        from flask import Flask

        from .config import config


        def create_app(config_name="default"):
            app = Flask(__name__)
            app.config.from_object(config[config_name])
            return app
    """,
    "wsgi.py": "import os\n\nfrom myapp import create_app\n\n"
    'app = create_app(os.getenv("FLASK_CONFIG") or "default")\n',
}

# A single-module app that sets its key and debug mode in its own code.
SINGLE = """
    from flask import Flask

    app = Flask(__name__)
    app.config["SECRET_KEY"] = "dev"
    app.config["DEBUG"] = True


    @app.route("/")
    def index():
        return "ok"


    if __name__ == "__main__":
        app.debug = True
        app.run(host="0.0.0.0", port=5000, debug=True)
"""


def test_the_guides_fallback_key_is_one_finding_at_its_line(project: Path) -> None:
    result = audit(project, FLASKY, "wsgi:app", env={"SECRET_KEY": None, "FLASK_SECRET_KEY": None})
    keys = [(m["id"], m["level"], m["obj"], m["text"]) for m in result.messages if m["id"] in ("FP-S003", "FP-S010")]
    assert keys == [
        (
            "FP-S010",
            "ERROR",
            "myapp/config.py:5",
            "SECRET_KEY falls back to a published default ('hard-to-guess-string') written in the source, and the "
            "app is running with it right now (SECRET_KEY is not set): anyone can sign its sessions",
        )
    ]


def test_a_key_and_debug_mode_set_in_the_apps_code_are_named_at_their_lines(project: Path) -> None:
    result = audit(project, {"app.py": SINGLE}, env={"FLASK_SECRET_KEY": None})
    # The module turns debug on, so its key is development's (not FP-S010's): FP-S003 names it, at its line. The
    # app.debug = True under __main__ is not what a server runs.
    assert [(m["id"], m["obj"]) for m in result.messages if m["id"] in ("FP-S001", "FP-S003", "FP-S010")] == [
        ("FP-S001", "app.py:5"),
        ("FP-S003", "app.py:4"),
    ]


def test_debug_mode_from_a_config_class_is_named_where_the_class_sets_it(project: Path) -> None:
    result = audit(project, FLASKY, "wsgi:app", env={"SECRET_KEY": None})
    assert [m["obj"] for m in result.only("FP-S001")] == ["myapp/config.py:9"]
    # Turned on in two places, the app's config says which is in effect: the check names the app.
    twice = dict(FLASKY, **{"myapp/settings.py": "DEBUG = True\n"})
    assert [m["obj"] for m in audit(project, twice, "wsgi:app").only("FP-S001")] == ["wsgi:app"]
