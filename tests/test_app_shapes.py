"""Shapes real Flask projects take beyond the reference app, each as the line or the behaviour a user sees."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from flaskprod.discovery import find_app
from flaskprod.errors import DiscoveryError
from tests.conftest import server_env
from tests.support import BIN, ROOT

# Autouse: each test's imports and sys.path entries are undone, and FLASK_APP from the shell is ignored.
from tests.test_discovery import isolated_imports  # noqa: F401

FIX = (
    "name the Flask app itself ('module:app'), and mount other WSGI apps on it: "
    "app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {'/prefix': other})"
)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "tests.apps.dispatched:application",
            f"'tests.apps.dispatched:application' is a DispatcherMiddleware, not a Flask app; {FIX}",
        ),
        (
            "tests.apps.dispatched:create_app()",
            f"A valid Flask application was not obtained from 'tests.apps.dispatched:create_app()'; {FIX}",
        ),
    ],
)
def test_a_dispatcher_named_as_the_app_says_to_name_the_flask_app(target: str, message: str) -> None:
    with pytest.raises(DiscoveryError) as caught:
        find_app(target, ROOT)
    assert str(caught.value) == message


def test_the_flask_app_beside_a_dispatcher_loads() -> None:
    assert find_app("tests.apps.dispatched:front", ROOT).name == "front"


def test_a_dispatcher_is_one_line_from_the_command() -> None:
    result = subprocess.run(
        [str(BIN / "flaskprod"), "check", "tests.apps.dispatched:application"],
        cwd=ROOT, env=server_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: 'tests.apps.dispatched:application' is a DispatcherMiddleware, not a Flask app; {FIX}"
    ]


def test_the_apps_own_proxy_fix_inside_production_decides_what_fp_c008_says() -> None:
    """What FP-C008 warns of: Production(app) trusting two proxies (a load balancer, then nginx) and the app's
    ProxyFix one; the inner ProxyFix reads the headers last, so remote_addr is the load balancer's address."""
    from flask import Flask, request
    from werkzeug.middleware.proxy_fix import ProxyFix

    from flaskprod import Production
    from flaskprod.spec import Spec

    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    Production(app, spec=Spec().replace(**{"proxy.trusted_hops": 2}))
    app.add_url_rule("/", "who", lambda: request.remote_addr or "")
    forwarded = {"X-Forwarded-For": "203.0.113.7, 10.0.0.2"}  # the client, then the load balancer
    body = app.test_client().get("/", headers=forwarded, environ_base={"REMOTE_ADDR": "10.0.0.3"}).text
    assert body == "10.0.0.2"
