"""An app whose own import fails: a dependency that is not installed."""

from __future__ import annotations

import flaskprod_no_such_dependency  # noqa: F401
from flask import Flask

app = Flask(__name__)
