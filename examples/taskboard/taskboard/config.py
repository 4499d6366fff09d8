"""Per-environment settings for taskboard, picked by name or by the TASKBOARD_CONFIG variable."""

from __future__ import annotations

import os

# Read from the environment by Flask's CLI (`flask --debug`) as well as by people.
_TRUTHY = {"1", "true", "yes", "on"}


class Config:
    """Settings shared by every environment; subclasses change only what differs."""

    SQLALCHEMY_RECORD_QUERIES = False
    # Forms are small; anything larger is a mistake or an attack, refused before it is read.
    MAX_CONTENT_LENGTH = 1024 * 1024
    WTF_CSRF_ENABLED = True
    # The benchmark endpoint /api/slow never holds a worker longer than this.
    TASKBOARD_SLOW_MAX_MS = 60_000
    # Upper bound for /api/cpu?n=…, so one request cannot pin a core for long.
    TASKBOARD_CPU_MAX_N = 5_000_000
    TASKBOARD_SEED_DEMO = True


class DevelopmentConfig(Config):
    DEBUG = True
    # Obviously not a secret: development only; Production refuses such keys outside debug.
    SECRET_KEY = "dev-only-not-secret"
    TEMPLATES_AUTO_RELOAD = True


class TestingConfig(Config):
    TESTING = True
    SECRET_KEY = "testing-only-not-secret"
    # Tests post forms without scraping tokens; the CSRF tests turn it back on.
    WTF_CSRF_ENABLED = False


class ProductionConfig(Config):
    DEBUG = False
    TESTING = False
    # SESSION_COOKIE_SECURE is left to flaskprod.Production, which knows whether TLS is in front.
    SESSION_COOKIE_SAMESITE = "Lax"

    def __init__(self) -> None:
        # No default on purpose: a key published in source code is no secret, and
        # flaskprod.Production refuses to start without a strong one.
        secret = os.environ.get("FLASK_SECRET_KEY")
        if secret:
            self.SECRET_KEY = secret


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_name_from_env() -> str:
    """TASKBOARD_CONFIG if set; else development under `flask --debug`, otherwise production."""
    name = os.environ.get("TASKBOARD_CONFIG", "").strip().lower()
    if name:
        return name
    if os.environ.get("FLASK_DEBUG", "").strip().lower() in _TRUTHY:
        return "development"
    # Safe by default: an app started by a server with nothing set is a production app.
    return "production"


def get_config(name: str | None = None) -> Config:
    """An instance of the named config class; a clear error for unknown names."""
    chosen = (name or config_name_from_env()).lower()
    try:
        return CONFIGS[chosen]()
    except KeyError:
        choices = ", ".join(sorted(CONFIGS))
        raise ValueError(f"Unknown taskboard config {chosen!r}: use one of {choices} (TASKBOARD_CONFIG).") from None
