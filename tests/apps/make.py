"""Only a make_app factory, which Flask's discovery also looks for."""

from __future__ import annotations

from flask import Flask


def make_app() -> Flask:
    return Flask("made")
