"""An app that Production refuses to start: its SECRET_KEY is a published default."""

from __future__ import annotations

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
app.config["SECRET_KEY"] = "hard-to-guess-string"
Production(app)
