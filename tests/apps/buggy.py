"""An app with a bug at import time."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)
RATIO = 1 / 0
