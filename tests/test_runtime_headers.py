"""Security headers and session cookie flags."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager, UserMixin, login_user
from werkzeug.wrappers import Response

from flaskprod import Production
from flaskprod.runtime.extension import settle_as_loaded
from flaskprod.spec import Spec


def make_app(**settings: object) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)

    @app.get("/")
    def index() -> str:
        return "home"

    @app.get("/framed")
    def framed() -> Response:
        return Response("ok", headers={"X-Frame-Options": "SAMEORIGIN"})

    @app.get("/login")
    def login() -> str:
        session["user"] = "ada"
        return "in"

    Production(app, spec=Spec().replace(**{"logging.access_log": False, **settings}))
    return app


def test_default_headers() -> None:
    headers = make_app().test_client().get("/").headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Content-Security-Policy" not in headers
    assert "Strict-Transport-Security" not in headers  # plain HTTP


def test_headers_the_app_set_are_kept() -> None:
    headers = make_app().test_client().get("/framed").headers
    assert headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]


def test_values_from_the_spec() -> None:
    app = make_app(
        **{
            "security.frame_options": "SAMEORIGIN",
            "security.referrer_policy": "no-referrer",
            "security.content_security_policy": "default-src 'self'",
        }
    )
    headers = app.test_client().get("/").headers
    assert headers["X-Frame-Options"] == "SAMEORIGIN"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Content-Security-Policy"] == "default-src 'self'"


def test_hsts_only_over_https() -> None:
    client = make_app(**{"security.hsts_max_age": 600}).test_client()
    assert client.get("/", base_url="https://localhost").headers["Strict-Transport-Security"] == (
        "max-age=600; includeSubDomains"
    )
    assert "Strict-Transport-Security" not in client.get("/").headers
    off = make_app(**{"security.hsts": False}).test_client()
    assert "Strict-Transport-Security" not in off.get("/", base_url="https://localhost").headers


def test_hsts_behind_a_tls_terminating_proxy() -> None:
    client = make_app(**{"proxy.trusted_hops": 1}).test_client()
    headers = client.get("/", headers={"X-Forwarded-Proto": "https"}).headers
    assert "Strict-Transport-Security" in headers


def test_headers_switch() -> None:
    headers = make_app(**{"security.headers": False}).test_client().get("/").headers
    assert "X-Content-Type-Options" not in headers
    assert "X-Request-ID" in headers


def set_cookie(app: Flask, base_url: str = "http://localhost") -> str:
    return app.test_client().get("/login", base_url=base_url).headers["Set-Cookie"]


def test_cookie_secure_auto_follows_the_scheme() -> None:
    app = make_app()
    plain = set_cookie(app)
    assert "HttpOnly" in plain and "SameSite=Lax" in plain
    assert "Secure" not in plain
    assert "Secure" in set_cookie(app, "https://localhost")


def test_a_session_extensions_cookie_gets_secure_over_https_too() -> None:
    # Flask-Session's Session(app) installs an interface of its own; Production(app) replaced Flask's stock one alone,
    # so over HTTPS the session cookie went without Secure. Checked as a server gets the app (settle_as_loaded).
    app = make_app()

    class ServerSide(SecureCookieSessionInterface):
        pass

    app.session_interface = ServerSide()
    settle_as_loaded(app)
    assert "Secure" not in set_cookie(app)
    assert "Secure" in set_cookie(app, "https://localhost")


def test_cookie_flags_from_the_spec() -> None:
    app = make_app(**{"security.session_cookie_secure": True, "security.session_cookie_samesite": "Strict"})
    cookie = set_cookie(app)
    assert "Secure" in cookie and "SameSite=Strict" in cookie and "HttpOnly" in cookie
    assert "Secure" not in set_cookie(make_app(**{"security.session_cookie_secure": False}), "https://localhost")


def remember_cookie(app: Flask, base_url: str = "http://localhost") -> str:
    cookies = app.test_client().get("/remember", base_url=base_url).headers.getlist("Set-Cookie")
    return next(cookie for cookie in cookies if cookie.startswith("remember_token="))


def login_app(**config: object) -> Flask:
    """An app with Flask-Login whose /remember logs in with "remember me", as its docs show."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), **config)
    Production(app, spec=Spec().replace(**{"logging.access_log": False, "proxy.trusted_hops": 1}))
    manager = LoginManager(app)

    class User(UserMixin):
        id = "ada"

    manager.user_loader(lambda user_id: User())
    app.add_url_rule("/remember", "remember", lambda: str(login_user(User(), remember=True)))
    return app


def test_flask_logins_remember_cookie_gets_the_session_cookies_flags() -> None:
    app = login_app()
    plain = remember_cookie(app)
    assert "HttpOnly" in plain and "SameSite=Lax" in plain and "Secure" not in plain
    assert "Secure" in remember_cookie(app, "https://localhost")
    # Behind a TLS-terminating proxy, as the session cookie.
    behind = app.test_client().get("/remember", headers={"X-Forwarded-Proto": "https"})
    assert any("Secure" in c for c in behind.headers.getlist("Set-Cookie") if c.startswith("remember_token="))


def test_flask_logins_remember_cookie_keeps_the_apps_own_flags() -> None:
    app = login_app(REMEMBER_COOKIE_SECURE=False, REMEMBER_COOKIE_SAMESITE="Strict")
    cookie = remember_cookie(app, "https://localhost")
    assert "Secure" not in cookie and "SameSite=Strict" in cookie


def test_cookie_settings_of_the_app_are_kept() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=True)
    app.add_url_rule("/login", "login", lambda: session.update(user="ada") or "in")
    Production(app, spec=Spec())
    cookie = set_cookie(app)
    assert "SameSite=Strict" in cookie and "Secure" in cookie


def streaming_app() -> Flask:
    app = make_app()

    def events() -> Iterator[str]:
        yield "data: 1\n\n"

    @app.get("/events")
    def event_stream() -> Response:
        return Response(events(), mimetype="text/event-stream")

    @app.get("/events/framed")
    def framed_event_stream() -> Response:  # an app-set security header takes the pipeline's other branch
        return Response(events(), mimetype="text/event-stream", headers={"X-Frame-Options": "SAMEORIGIN"})

    @app.get("/events/buffered")
    def buffered_event_stream() -> Response:
        return Response(events(), mimetype="text/event-stream", headers={"X-Accel-Buffering": "yes"})

    @app.get("/export.csv")
    def export() -> Response:
        return Response(iter(["a,b\n", "1,2\n"]), mimetype="text/csv")

    return app


def test_server_sent_events_ask_nginx_not_to_buffer_them() -> None:
    client = streaming_app().test_client()
    for path in ("/events", "/events/framed"):
        response = client.get(path)
        assert response.headers.getlist("X-Accel-Buffering") == ["no"], path
        assert response.get_data() == b"data: 1\n\n"


def test_other_streams_and_the_apps_own_choice_are_left_to_nginx() -> None:
    client = streaming_app().test_client()
    assert client.get("/events/buffered").headers.getlist("X-Accel-Buffering") == ["yes"]
    exported = client.get("/export.csv")
    assert "X-Accel-Buffering" not in exported.headers
    assert exported.get_data() == b"a,b\n1,2\n"
