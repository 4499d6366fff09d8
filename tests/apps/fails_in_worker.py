"""An app that imports cleanly on its own but fails inside the server (where the drain file is set)."""

from __future__ import annotations

import os

from flask import Flask

if os.environ.get("FLASKPROD_DRAIN_FILE"):
    raise RuntimeError("this app only fails where the server runs it")

app = Flask(__name__)
