"""App config from FLASK_* variables, FLASK_*_FILE secrets and the spec."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from ..errors import ConfigurationError
from ..spec import Spec, parse_size

ENV_PREFIX = "FLASK_"
FILE_SUFFIX = "_FILE"


def set_unless_changed(app: Flask, key: str, value: Any) -> None:
    """Set key unless the app chose its own value.

    config.setdefault cannot do this for keys Flask ships defaults for (they always exist), so a
    value still equal to Flask's default counts as not chosen.
    """
    if key not in app.config or app.config[key] == app.default_config.get(key):
        app.config[key] = value


def load_file_variables(app: Flask, environ: Mapping[str, str]) -> None:
    """FLASK_X_FILE=/path sets config X to the file's stripped content (Docker and Kubernetes secrets)."""
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or not name.endswith(FILE_SUFFIX):
            continue
        if len(name) <= len(ENV_PREFIX) + len(FILE_SUFFIX):
            continue
        key = name[len(ENV_PREFIX) : -len(FILE_SUFFIX)]
        path = environ[name]
        try:
            with open(path, encoding="utf-8") as fh:
                app.config[key] = fh.read().strip()
        except FileNotFoundError:
            raise ConfigurationError(
                f"{name} points to {path}, which does not exist: create the file or unset {name}"
            ) from None
        except OSError as exc:
            raise ConfigurationError(
                f"{name} points to {path}, which cannot be read ({exc.strerror}): fix the path or its permissions"
            ) from None
        # from_prefixed_env also stored the path itself under X_FILE; it is not a setting of the app.
        app.config.pop(name[len(ENV_PREFIX) :], None)


def database_url(spec: Spec, environ: Mapping[str, str]) -> str | None:
    url = environ.get(spec.database.url_env)
    if not url:
        return None
    # Heroku-style URLs say postgres://, a scheme SQLAlchemy 1.4+ no longer accepts.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    return url


def configure(app: Flask, spec: Spec) -> None:
    """Load FLASK_* and FLASK_*_FILE (when enabled), the database URL and the body size limit."""
    environ = os.environ
    if spec.app.env_config:
        app.config.from_prefixed_env(ENV_PREFIX.rstrip("_"))
        load_file_variables(app, environ)
    url = database_url(spec, environ)
    if url:
        app.config.setdefault("SQLALCHEMY_DATABASE_URI", url)
    # nginx enforces the same limit from the same setting, so both layers agree.
    set_unless_changed(app, "MAX_CONTENT_LENGTH", parse_size(spec.proxy.max_body_size))
