"""WSGI entry point for servers: `gunicorn wsgi:app` (config from TASKBOARD_CONFIG, production by default)."""

from __future__ import annotations

from taskboard import create_app

app = create_app()
