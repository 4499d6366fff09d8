"""App config from FLASK_* variables, FLASK_*_FILE secrets, the database URL (its password from a secret file)
and the spec."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from flask import Flask

from ..errors import ConfigurationError
from ..spec import Spec, parse_size
from .db import with_installed_driver

# Seconds between the pings flask-sock's server sends on a WebSocket (its SOCK_SERVER_OPTIONS' ping_interval), at
# most: within the 60 s most load balancers and Ingress controllers close an idle connection at.
MAX_PING_INTERVAL = 25

ENV_PREFIX = "FLASK_"
FILE_SUFFIX = "_FILE"
# Flask's settings that are booleans or byte counts. from_prefixed_env reads values as JSON, so
# FLASK_DEBUG=False or FLASK_SESSION_COOKIE_SECURE=no would stay a (truthy) string, and
# FLASK_MAX_CONTENT_LENGTH=16M a string that fails every request with a body.
FLASK_BOOLEANS = frozenset({
    "DEBUG", "TESTING", "PROPAGATE_EXCEPTIONS", "USE_X_SENDFILE", "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SECURE", "SESSION_COOKIE_PARTITIONED", "SESSION_REFRESH_EACH_REQUEST",
    "TRAP_BAD_REQUEST_ERRORS", "TRAP_HTTP_EXCEPTIONS", "EXPLAIN_TEMPLATE_LOADING", "TEMPLATES_AUTO_RELOAD",
    "PROVIDE_AUTOMATIC_OPTIONS",
})
FLASK_SIZES = frozenset({"MAX_CONTENT_LENGTH", "MAX_FORM_MEMORY_SIZE"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def set_unless_changed(app: Flask, key: str, value: Any) -> None:
    """Set key unless the app chose its own value.

    config.setdefault cannot do this for keys Flask ships defaults for (they always exist), so a
    value still equal to Flask's default counts as not chosen.
    """
    if key not in app.config or app.config[key] == app.default_config.get(key):
        app.config[key] = value


def load_file_variables(app: Flask, environ: Mapping[str, str], own: frozenset[str] = frozenset()) -> None:
    """FLASK_X_FILE=/path sets config X to the file's stripped content (Docker and Kubernetes secrets).

    Not when X_FILE is among own, the app's config keys before FLASK_* were read: FLASK_LOG_FILE then sets the
    app's LOG_FILE, a path it reads itself, as any FLASK_* variable sets its key."""
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or not name.endswith(FILE_SUFFIX):
            continue
        if len(name) <= len(ENV_PREFIX) + len(FILE_SUFFIX) or name[len(ENV_PREFIX) :] in own:
            continue
        key = name[len(ENV_PREFIX) : -len(FILE_SUFFIX)]
        app.config[key] = read_named_file(name, environ[name]).strip()
        # from_prefixed_env also stored the path itself under X_FILE; it is not a setting of the app.
        app.config.pop(name[len(ENV_PREFIX) :], None)


def type_flask_variables(app: Flask, environ: Mapping[str, str]) -> None:
    """Give Flask's boolean and size settings from FLASK_* variables their types, as Flask reads FLASK_DEBUG."""
    for key in FLASK_BOOLEANS | FLASK_SIZES:
        name = ENV_PREFIX + key
        value = app.config.get(key)
        if name not in environ or not isinstance(value, str):
            continue  # unset, or JSON already gave it a type
        text = value.strip().lower()
        if key in FLASK_SIZES:
            try:
                app.config[key] = parse_size(value)
            except ValueError:
                raise ConfigurationError(
                    f"{name}={value!r} is not a size: write a number of bytes or one such as 16M or 512k"
                ) from None
        elif text in _TRUE | _FALSE:
            app.config[key] = text in _TRUE
        else:
            raise ConfigurationError(f"{name}={value!r} is not a boolean: write true or false")


def read_named_file(name: str, path: str) -> str:
    """The text of the file that variable name points to; errors name the variable and the fix."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ConfigurationError(
            f"{name} points to {path}, which does not exist: create the file or unset {name}"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"{name} points to {path}, which cannot be read ({exc.strerror}): fix the path or its permissions"
        ) from None


def database_password(name: str, path: str) -> str:
    """The password in the file variable name points to, read as PostgreSQL's image reads
    POSTGRES_PASSWORD_FILE (bash's $(< file): trailing newlines dropped, nothing else), so one
    secret file gives the server and the app the same password."""
    password = read_named_file(name, path).rstrip("\n")
    if not password:
        raise ConfigurationError(f"{name} points to {path}, which is empty: write the database password into it")
    if "\n" in password or "\r" in password:
        raise ConfigurationError(f"{name} points to {path}, which holds more than one line: write the password alone")
    return password


def with_password(url: str, password: str, *, url_env: str, password_env: str) -> str:
    """url with password after its user name, escaped as a URL needs (SQLAlchemy unescapes it)."""
    parts = urlsplit(url)
    user, at, host = parts.netloc.rpartition("@")
    if not at or not user:
        raise ConfigurationError(
            f"{url_env} names no user for the password in {password_env}: "
            "write it as scheme://USER@host:port/database"
        )
    if ":" in user:
        raise ConfigurationError(
            f"{url_env} carries a password and {password_env} gives one too: "
            f"remove it from {url_env}, so the secret file is its only place"
        )
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def database_url(spec: Spec, environ: Mapping[str, str]) -> str | None:
    """The URL in database.url_env, with the password from the file database.password_file_env names:
    the URL can then sit in plain sight (a Compose file, a pod spec) and the password in a secret."""
    db = spec.database
    url = environ.get(db.url_env)
    password_file = environ.get(db.password_file_env)
    if not url:
        if password_file:
            raise ConfigurationError(
                f"{db.password_file_env} is set but {db.url_env} is not: set {db.url_env} to the database URL "
                "without its password, e.g. postgresql://app@db:5432/app"
            )
        return None
    return completed_url(url, spec, environ)


def completed_url(url: str, spec: Spec, environ: Mapping[str, str]) -> str:
    """url (database.url_env's, or the app's copy of it) as SQLAlchemy connects with it: postgresql://, the
    installed driver named, the password from database.password_file_env's file put in."""
    db = spec.database
    # Heroku-style URLs say postgres://, a scheme SQLAlchemy 1.4+ no longer accepts.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    url = with_installed_driver(url)
    password_file = environ.get(db.password_file_env)
    if password_file:
        password = database_password(db.password_file_env, password_file)
        url = with_password(url, password, url_env=db.url_env, password_env=db.password_file_env)
    return url


def is_the_provided_url(own: str, provided: str) -> bool:
    """True when the app's URL is the one in database.url_env, read by the app itself (the Flask production
    guide's config.py: SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL")), its scheme perhaps rewritten
    (postgres:// to postgresql://, a driver named); a URL the app built otherwise (another host, its own password)
    is not."""
    own_scheme, own_sep, own_rest = own.partition("://")
    scheme, sep, rest = provided.partition("://")
    return bool(own_sep and sep) and own_rest == rest and _backend(own_scheme) == _backend(scheme)


def _backend(scheme: str) -> str:
    backend = scheme.lower().partition("+")[0]
    return "postgresql" if backend == "postgres" else backend


def set_database_url(app: Flask, spec: Spec, environ: Mapping[str, str]) -> None:
    """SQLALCHEMY_DATABASE_URI from database.url_env, complete, unless the app chose another database.

    An app that reads the variable itself holds it as given: without the password, which is in a file
    (database.password_file_env, what `build --with postgres` renders), and without the installed driver. Its
    copy is completed as flaskprod's own would be; it failed with "fe_sendauth: no password supplied"."""
    url = database_url(spec, environ)
    if not url:
        return
    own = app.config.get("SQLALCHEMY_DATABASE_URI")
    if own is None:
        app.config["SQLALCHEMY_DATABASE_URI"] = url
    elif isinstance(own, str) and is_the_provided_url(own, environ[spec.database.url_env]):
        app.config["SQLALCHEMY_DATABASE_URI"] = completed_url(own, spec, environ)


def configure(app: Flask, spec: Spec) -> None:
    """Load FLASK_* and FLASK_*_FILE (when enabled), the database URL and the body size limit."""
    environ = os.environ
    if spec.app.env_config:
        own = frozenset(app.config)
        app.config.from_prefixed_env(ENV_PREFIX.rstrip("_"))
        type_flask_variables(app, environ)
        load_file_variables(app, environ, own)
    set_database_url(app, spec, environ)
    # A value the app chose stays. nginx's limit is whatever the app ends with: build and up read it from the
    # loaded app (servers/probe.py) into sizing.max_body_bytes, so the two layers agree either way.
    set_unless_changed(app, "MAX_CONTENT_LENGTH", parse_size(spec.proxy.max_body_size))
    # A quiet WebSocket would be closed as idle by nginx (its read timeout, server.timeout + 2) and the proxies on
    # the way: pinged sooner, it never is. An interval the app chose stays.
    sock_options = app.config.setdefault("SOCK_SERVER_OPTIONS", {})
    if isinstance(sock_options, dict):
        sock_options.setdefault("ping_interval", ping_interval(spec))


def ping_interval(spec: Spec) -> int:
    """How often a WebSocket is pinged: within every idle timeout between the client and the app."""
    return max(1, min(MAX_PING_INTERVAL, spec.server.timeout))
