"""An app factory that configures logging with dictConfig after Production(app), as many apps' create_app do."""

from logging.config import dictConfig

from flask import Flask

from flaskprod import Production

LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
}


def create_app() -> Flask:
    app = Flask(__name__)
    Production(app)
    dictConfig(LOGGING)  # disable_existing_loggers defaults to true: it disabled the logger Production set up

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("kaboom")

    return app
