"""Production(app): placeholder until the runtime lands."""

from __future__ import annotations

from typing import Any


class Production:
    def __init__(self, app: Any = None, **options: Any) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        app.extensions["flaskprod"] = self
