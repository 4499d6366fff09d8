"""Plain Flask: /api/ping, plus stub probes so `flaskprod up` can tell it is ready."""

from __future__ import annotations

from flask import Flask
from flask.typing import ResponseReturnValue

from . import add_ping

app = add_ping(Flask(__name__))
# The SECRET_KEY a production app has (Production(app) requires one): without it Flask skips
# session handling altogether, which would flatter the bare app.
app.config.from_prefixed_env()


# Stubs, not Production's probes: they cost nothing on /api/ping requests.
@app.get("/healthz")
@app.get("/readyz")
def ok() -> ResponseReturnValue:
    return "ok"
