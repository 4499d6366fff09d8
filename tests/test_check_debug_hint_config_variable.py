"""FP-S001's hint for an app whose config class is picked by an environment variable that is unset where check runs,
so the code's development default (DEBUG = True) is what loaded: the fix is to set the variable, as FP-C021 reads
the choice, not to remove DEBUG = True from the development config, as the hint said."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import audit
from tests.test_check_config_picked_by_shell import CONFIG, FACTORY, FLASKY, FLASKY_FACTORY

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

IN_CODE = (
    "the app turns debug on itself, not FLASK_DEBUG: remove `DEBUG = True`, `app.debug = True` or "
    '`app.config["DEBUG"] = True` from its production code; use `flask run --debug` for local development'
)


def test_the_hint_names_the_unset_variable_that_picks_the_config(project: Path) -> None:
    found = audit(project, {"config.py": CONFIG, "shop.py": FACTORY}, "shop:create_app()").only("FP-S001")
    assert [(m["obj"], m["hint"]) for m in found] == [
        (
            "config.py:6",
            "SHOP_CONFIG (read at shop.py:11) picks the config the app loads (app.config.from_object at shop.py:12) "
            "and is unset where check runs, so the app loaded the code's default, 'development', which turns debug "
            "on: set SHOP_CONFIG to the production config wherever the app runs, and where check runs to audit "
            "that config, or make production the code's default; leave the development config's DEBUG as it is",
        )
    ]
    # Set, it loads the production config: debug is off.
    env = {"SHOP_CONFIG": "production"}
    assert audit(project, {}, "shop:create_app()", env=env).only("FP-S001") == []


def test_flaskys_variable_read_where_the_factory_is_called_is_named(project: Path) -> None:
    files = {"config.py": CONFIG, "shop.py": FLASKY_FACTORY, "flasky.py": FLASKY}
    hints = [m["hint"] for m in audit(project, files, "flasky:app").only("FP-S001")]
    assert [hint.split(" picks")[0] for hint in hints] == ["FLASK_CONFIG (read at flasky.py:5)"]
    assert "the code's default, 'default', which turns debug on: set FLASK_CONFIG" in hints[0]


def test_debug_in_the_config_the_code_defaults_to_for_production_is_the_codes_to_remove(project: Path) -> None:
    # The production config is the default and turns debug on itself: setting the variable changes nothing.
    production_debug = CONFIG.replace("(Config):\n    pass", "(Config):\n    DEBUG = True")
    defaults_to_production = FACTORY.replace('"SHOP_CONFIG", "development"', '"SHOP_CONFIG", "production"')
    files = {"config.py": production_debug, "shop.py": defaults_to_production}
    assert [m["hint"] for m in audit(project, files, "shop:create_app()").only("FP-S001")] == [IN_CODE]
