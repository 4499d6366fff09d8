"""An app that refuses to start the way Production does, by raising ConfigurationError at import."""

from __future__ import annotations

from flaskprod import ConfigurationError

raise ConfigurationError("SECRET_KEY is missing: set FLASK_SECRET_KEY to 32+ random characters")
