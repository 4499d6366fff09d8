"""The exceptions flaskprod raises for a user's mistake; each message says what to do."""

from __future__ import annotations


class FlaskprodError(Exception):
    """Base class: the CLI prints the message on one line and exits 2, without a traceback."""

    exit_code = 2


class SpecError(FlaskprodError):
    """A setting, config file or environment variable is wrong."""


class DiscoveryError(FlaskprodError):
    """The Flask app could not be found or imported."""


class ServerError(FlaskprodError):
    """The app server could not be started (port in use, unknown kind, missing binary)."""


class ConfigurationError(FlaskprodError):
    """The app's own configuration is unsafe for production (weak SECRET_KEY, debug on)."""


class BuildError(FlaskprodError):
    """Deployment files could not be written as asked (unknown target, a changed file in the way)."""
