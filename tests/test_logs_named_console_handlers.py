"""Under serve, a console handler a dictConfig puts on a named logger writes flaskprod's JSON, as the root's do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartServer
from tests.support import wait_for

pytestmark = pytest.mark.integration

# The "loggers" section of a dictConfig, as Django's and many apps' own: a handler on services.billing, none on the
# root; one to stdout on services.audit, which passes its records up to services (a file) too.
CONFIGURED = """
import logging
import logging.config

from flask import Flask

from flaskprod import Production

logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "plain"},
        "out": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "plain"},
        "own_file": {"class": "logging.FileHandler", "filename": "own.log", "formatter": "plain"},
    },
    "loggers": {
        "services.billing": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "services": {"handlers": ["own_file"], "level": "INFO"},
        "services.audit": {"handlers": ["out"], "level": "INFO"},
    },
})

app = Flask(__name__)
Production(app)


@app.get("/charge")
def charge():
    logging.getLogger("services.billing").warning("card near limit")
    logging.getLogger("services.audit").info("charged 12 EUR")
    return "charged"
"""


def lines_with(text: str, output: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


def as_seen(line: str) -> tuple[Any, ...]:
    record = json.loads(line)
    request_id = record.get("http", {}).get("request", {}).get("id")  # none on a line serve relayed as it came
    return record["log.level"], record["log"]["logger"], record["message"], request_id


@pytest.mark.parametrize("server_kind", ["gunicorn", "uwsgi"])
def test_a_named_loggers_console_handlers_write_json_with_the_request_id_once(
    serve_app: StartServer, tmp_path: Path, server_kind: str
) -> None:
    """services.billing's stderr handler wrote "WARNING services.billing card near limit", which serve relayed as
    a record of its own at info, from "stderr" or "uwsgi", with no request id (only the root's console handlers got
    flaskprod's JSON). Each line is now that record as JSON, once; the file handler keeps the app's format."""
    server = serve_app(CONFIGURED, args=("--server", server_kind))
    response = server.get("/charge")
    assert response.text == "charged"
    rid = response.headers["X-Request-ID"]
    wait_for(lambda: lines_with("card near limit", server.stderr()), timeout=10, what="services.billing's line")
    wait_for(lambda: lines_with("charged 12 EUR", server.stdout()), timeout=10, what="services.audit's line")
    wait_for(lambda: "charged 12 EUR" in (tmp_path / "own.log").read_text(), timeout=10, what="the file's line")
    everything = server.stdout() + server.stderr()
    [billing] = lines_with("card near limit", everything)
    [audit] = lines_with("charged 12 EUR", everything)
    assert as_seen(billing) == ("warning", "services.billing", "card near limit", rid), server.output()
    assert as_seen(audit) == ("info", "services.audit", "charged 12 EUR", rid), server.output()
    assert (tmp_path / "own.log").read_text() == "INFO services.audit charged 12 EUR\n"
