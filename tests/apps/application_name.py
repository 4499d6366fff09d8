"""The app is called `application`, as WSGI servers conventionally expect."""

from __future__ import annotations

from flask import Flask

application = Flask(__name__)
