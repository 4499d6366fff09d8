"""Production(app) with the extensions a real app carries (Flask-Login, Flask-WTF), served by `flaskprod serve`."""

from __future__ import annotations

import http.client

import pytest

from tests.conftest import StartServer

pytestmark = pytest.mark.integration

# Flask-Login set up before Production(app), as an app that makes its extensions at the top of its module does, or
# first imported by the factory after Production(app) (a blueprint's module that it imports there).
LOGIN_FIRST = """
from flask import Flask
from flask_login import LoginManager, UserMixin, login_user

from flaskprod import Production

app = Flask(__name__)
login = LoginManager(app)
Production(app)
"""
LOGIN_IMPORTED_LATER = """
from flask import Flask

from flaskprod import Production


def create_app():
    app = Flask(__name__)
    Production(app)
    from flask_login import LoginManager
    LoginManager(app)
    return app


app = create_app()
from flask_login import UserMixin, login_user
login = app.login_manager
"""
LOGIN_VIEWS = """

class User(UserMixin):
    id = "ada"


login.user_loader(lambda user_id: User())


@app.post("/login")
def sign_in():
    login_user(User(), remember=True)
    return "in"
"""


@pytest.mark.parametrize("source", [LOGIN_FIRST, LOGIN_IMPORTED_LATER], ids=["login-first", "imported-later"])
def test_remember_me_cookie_is_secure_behind_a_tls_proxy_whatever_the_order(
    serve_app: StartServer, source: str
) -> None:
    # Behind a proxy that terminated TLS (one trusted hop, as up's nginx): the session cookie is Secure, and the
    # remember-me cookie, a login for a year, must be too.
    server = serve_app(source + LOGIN_VIEWS, args=("--set", "proxy.trusted_hops=1"))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_all("Set-Cookie") or []}
    assert response.status == 200, server.output()
    assert "Secure" in cookies["session"].split("; ")
    assert "Secure" in cookies["remember_token"].split("; "), cookies["remember_token"]
