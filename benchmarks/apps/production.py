"""The same /api/ping with Production(app) fully on: metrics, JSON logs, request ids, headers, probes."""

from __future__ import annotations

from flask import Flask

from flaskprod import Production

from . import add_ping

app = add_ping(Flask(__name__))
Production(app)
