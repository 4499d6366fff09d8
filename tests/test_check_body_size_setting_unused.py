"""`flaskprod check` warns when proxy.max_body_size is set but the app sets MAX_CONTENT_LENGTH itself (FP-C022):
Production(app) keeps the app's own value, and nginx's client_max_body_size follows what the app loaded, so a
flaskprod.toml asking for 10M still answered 413 past the app's 2M, with no word from check, build or up."""

from __future__ import annotations

from pathlib import Path

from flaskprod.checks.registry import REGISTRY
from tests import test_check
from tests.test_check import PROD, audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

OWN_LIMIT = 'app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024\n'
SETTING = '[proxy]\nmax_body_size = "10M"\n'


def test_a_setting_the_apps_own_limit_overrides_is_named(project: Path) -> None:
    found = audit(project, {"app.py": PROD + OWN_LIMIT, "flaskprod.toml": SETTING}).only("FP-C022")
    assert [(m["obj"], m["level"], m["text"], m["hint"]) for m in found] == [
        (
            "flaskprod.toml",
            "WARNING",
            "proxy.max_body_size is 10M (10485760 bytes), but the app sets MAX_CONTENT_LENGTH to 2097152 itself: "
            "Flask and nginx's client_max_body_size follow the app's value, so bodies over 2097152 bytes get 413 "
            "and the setting goes unused",
            REGISTRY["FP-C022"].hint,
        )
    ]
    # Given as a flag, the same.
    found = audit(project, {"app.py": PROD + OWN_LIMIT}, "--set", "proxy.max_body_size=10M").only("FP-C022")
    assert [m["obj"] for m in found] == ["app"]


def test_a_setting_in_effect_or_left_at_its_default_passes(project: Path) -> None:
    (project / "flaskprod.toml").write_text(SETTING)
    assert audit(project, {"app.py": PROD}).only("FP-C022") == []  # Production(app) set it from the setting
    same = 'app.config["MAX_CONTENT_LENGTH"] = 10 * 1024 * 1024\n'
    assert audit(project, {"app.py": PROD + same}).only("FP-C022") == []
    # None: the app reads any body, and nginx takes the setting's bound.
    assert audit(project, {"app.py": PROD + 'app.config["MAX_CONTENT_LENGTH"] = None\n'}).only("FP-C022") == []
    (project / "flaskprod.toml").unlink()
    assert audit(project, {"app.py": PROD + OWN_LIMIT}).only("FP-C022") == []
