"""Security response headers and session cookie flags."""

from __future__ import annotations

import sys

from flask import Flask, Response, current_app, has_request_context, request
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from ..spec import Spec
from .config import set_unless_changed

Header = tuple[str, str]


def security_headers(spec: Spec) -> list[Header]:
    """Headers for every response (each only when the app did not set it already)."""
    sec = spec.security
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", sec.frame_options),
        ("Referrer-Policy", sec.referrer_policy),
    ]
    if sec.content_security_policy:
        headers.append(("Content-Security-Policy", sec.content_security_policy))
    return headers


def hsts_headers(spec: Spec) -> list[Header]:
    """Headers for HTTPS responses only: browsers ignore HSTS over plain HTTP, and it must not pin a dev host."""
    if not spec.security.hsts:
        return []
    return [("Strict-Transport-Security", f"max-age={spec.security.hsts_max_age}; includeSubDomains")]


class ProductionSessionInterface(SecureCookieSessionInterface):
    """Flask's cookie sessions, with the signing serializer built once rather than on every request
    (itsdangerous probes its serializer on construction: a fifth of a small request's cost), and,
    when auto_secure, the Secure flag set for requests that came over HTTPS (as seen through ProxyFix).
    """

    def __init__(self, *, auto_secure: bool) -> None:
        self.auto_secure = auto_secure
        self._cached: tuple[object, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        key = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._cached
        if cached is None or cached[0] != key:
            cached = self._cached = (key, super().get_signing_serializer(app))
        return cached[1]

    def get_cookie_secure(self, app: Flask) -> bool:
        if app.config["SESSION_COOKIE_SECURE"]:
            return True
        return self.auto_secure and has_request_context() and request.is_secure


def secure_foreign_session_cookie(app: Flask) -> None:
    """Secure per request on the cookie of a session interface of the app's own (Flask-Session's, installed by
    Session(app) before or after Production(app)), as on Flask's: configure_cookies replaces the stock interface
    alone, so over HTTPS a server-side session's cookie went without Secure. Such an interface asks
    get_cookie_secure as Flask's does; its answer is widened to the request's scheme."""
    interface = app.session_interface
    if isinstance(interface, ProductionSessionInterface) or getattr(interface, "_flaskprod_secure", False):
        return
    asked = interface.get_cookie_secure

    def get_cookie_secure(app: Flask) -> bool:
        return bool(asked(app)) or (has_request_context() and request.is_secure)

    setattr(interface, "get_cookie_secure", get_cookie_secure)  # noqa: B010  (on this instance alone)
    setattr(interface, "_flaskprod_secure", True)  # noqa: B010


def configure_cookies(app: Flask, spec: Spec) -> None:
    """HttpOnly and SameSite always; Secure as the spec says, or per request when it says auto."""
    set_unless_changed(app, "SESSION_COOKIE_HTTPONLY", True)
    set_unless_changed(app, "SESSION_COOKIE_SAMESITE", spec.security.session_cookie_samesite)
    secure = spec.security.session_cookie_secure
    if secure != "auto":
        set_unless_changed(app, "SESSION_COOKIE_SECURE", secure)
    # Replace only Flask's stock interface; a server-side session extension keeps its own.
    if type(app.session_interface) is SecureCookieSessionInterface:
        app.session_interface = ProductionSessionInterface(auto_secure=secure == "auto")
    # Flask-Login's remember-me cookie is a login for a year; it takes the session cookie's flags unless the app
    # chose its own (Flask-Login leaves Secure off and SameSite unset).
    app.config.setdefault("REMEMBER_COOKIE_SAMESITE", spec.security.session_cookie_samesite)
    if secure != "auto":
        app.config.setdefault("REMEMBER_COOKIE_SECURE", secure)
    elif "flask_login" in sys.modules:
        # Flask-Login takes one value for every request; auto is per request, as for the session cookie. Only
        # for apps that import Flask-Login, so others pay nothing; secure_remember_cookie places it again once the
        # app is loaded, for a LoginManager made before Production(app) or imported after it.
        secure_remember_cookie(app)


def secure_remember_cookie(app: Flask) -> None:
    """Secure per request on Flask-Login's remember-me cookie, unless the app chose REMEMBER_COOKIE_SECURE: the hook
    goes first in the app's after_request list, so it runs last, after Flask-Login's, which sets the cookie.

    Registered after Flask-Login's (LoginManager(app) before Production(app)), it ran first and found no cookie, and
    for an app whose factory imports Flask-Login after Production(app) it was never registered: over HTTPS a login
    for a year went without Secure. Called as Production(app) runs and again as the app is loaded."""
    if "REMEMBER_COOKIE_SECURE" in app.config:
        return
    hooks = app.after_request_funcs.setdefault(None, [])
    if hooks and hooks[0] is _secure_remember_cookie:
        return
    if _secure_remember_cookie in hooks:
        hooks.remove(_secure_remember_cookie)
    hooks.insert(0, _secure_remember_cookie)


def _secure_remember_cookie(response: Response) -> Response:
    """Secure on Flask-Login's remember-me cookie when the request came over HTTPS (as seen through ProxyFix).

    Runs after Flask-Login's own after_request hook: the app's hooks run last to first, and it is the first.
    """
    # The app's own REMEMBER_COOKIE_SECURE, set after Production(app), stands.
    if request.is_secure and "Set-Cookie" in response.headers and "REMEMBER_COOKIE_SECURE" not in current_app.config:
        name = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") + "="
        cookies = response.headers.getlist("Set-Cookie")
        if any(cookie.startswith(name) for cookie in cookies):
            response.headers.setlist(
                "Set-Cookie",
                [c + "; Secure" if c.startswith(name) and "; Secure" not in c else c for c in cookies],
            )
    return response
