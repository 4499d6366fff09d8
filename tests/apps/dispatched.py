"""Flask's "Application Dispatching" shape: the module's WSGI entry point is middleware mounting two Flask apps."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

front = Flask("front")
back = Flask("back")
application = DispatcherMiddleware(front, {"/back": back})


def create_app() -> DispatcherMiddleware:
    return application
