"""A module-level app with Production, a slow endpoint and a pid endpoint for the serve tests."""

from __future__ import annotations

import os
import time

from flask import Flask, request

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/")
def index() -> str:
    return "hello from basic"


@app.get("/pid")
def pid() -> str:
    return str(os.getpid())


@app.get("/slow")
def slow() -> str:
    # Bounded so a misbehaving test cannot park a worker for long.
    seconds = min(float(request.args.get("s", "1")), 5.0)
    if started := request.args.get("started"):  # a file the test waits for: the request is in the app's hands
        open(started, "w").close()
    time.sleep(seconds)
    return f"slept {seconds}"
