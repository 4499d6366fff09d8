"""flaskprod: take a Flask app to production the way the guide describes, correct by construction."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from .errors import ConfigurationError, DiscoveryError, FlaskprodError, ServerError, SpecError
from .runtime import Production
from .runtime.db import pool_options
from .spec import Spec, load_spec

try:
    version = _dist_version("flaskprod")
except PackageNotFoundError:  # running from a source tree that was not installed
    version = "0.0.0"

__all__ = [
    "ConfigurationError",
    "DiscoveryError",
    "FlaskprodError",
    "Production",
    "ServerError",
    "Spec",
    "SpecError",
    "load_spec",
    "pool_options",
    "version",
]
