"""Tiny apps for measuring what Production(app) costs: the same route with and without it.

Each lives in its own module, so a server importing one never runs the other's set-up.
"""

from __future__ import annotations

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue


def add_ping(app: Flask) -> Flask:
    """The route both apps serve: the same JSON answer as the reference app's /api/ping."""

    @app.get("/api/ping")
    def ping() -> ResponseReturnValue:
        return jsonify(ok=True)

    return app
