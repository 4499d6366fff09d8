"""A library's logger that carries only a NullHandler (as the logging HOWTO tells libraries to do) writes flaskprod's
lines while the app configures no logging: Flask-Limiter's "ratelimit ... exceeded" among them."""

from __future__ import annotations

import io
import logging
import logging.config
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import StartServer
from tests.support import wait_for
from tests.test_integration_logs import MESSAGE, field, records_for
from tests.test_runtime_logs import json_lines, make_app, unconfigured_logging

# A library's module: its logger and a NullHandler on it, made as it is imported, before the app is.
QUOTAS = """
import logging

log = logging.getLogger("quotas")
log.addHandler(logging.NullHandler())


def spend():
    log.debug("a debug line, under logging.level")
    log.info("quota spent")
    log.warning("quota nearly gone")
"""


@pytest.fixture
def quotas_library() -> Iterator[logging.Logger]:
    """The library's logger in this process, as QUOTAS makes it; its handlers removed afterwards."""
    log = logging.getLogger("quotas")
    log.addHandler(logging.NullHandler())
    try:
        yield log
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)


def spend_in_a_view(app: Flask) -> None:
    log = logging.getLogger("quotas")

    @app.get("/spend")
    def spend() -> str:
        log.debug("a debug line, under logging.level")
        log.info("quota spent")
        log.warning("quota nearly gone")
        return "spent"


def quota_lines(out: str) -> list[tuple[str, str, str]]:
    return [
        (line["log.level"], line["message"], line["http"]["request"]["id"])
        for line in json_lines(out)
        if line["log"]["logger"] == "quotas"
    ]


def test_a_null_handled_librarys_records_are_written_once_with_the_request_id(
    capsys: pytest.CaptureFixture[str], quotas_library: logging.Logger
) -> None:
    with unconfigured_logging():
        app = make_app()
        spend_in_a_view(app)
        rid = app.test_client().get("/spend").headers["X-Request-ID"]
    out, err = capsys.readouterr()
    assert quota_lines(out) == [("info", "quota spent", rid), ("warning", "quota nearly gone", rid)]
    assert err == ""


def test_a_child_logger_is_written_once_though_both_carry_a_null_handler(
    capsys: pytest.CaptureFixture[str], quotas_library: logging.Logger
) -> None:
    child = logging.getLogger("quotas.redis")
    child.addHandler(logging.NullHandler())
    try:
        with unconfigured_logging():
            make_app()
            child.warning("the storage is gone")
        lines = [line["message"] for line in json_lines(capsys.readouterr().out) if line["log"]["logger"] == child.name]
        assert lines == ["the storage is gone"]
    finally:
        for handler in list(child.handlers):
            child.removeHandler(handler)


def test_a_logging_config_made_after_production_decides(
    capsys: pytest.CaptureFixture[str], quotas_library: logging.Logger
) -> None:
    theirs = io.StringIO()
    with unconfigured_logging():
        app = make_app()
        spend_in_a_view(app)
        logging.basicConfig(stream=theirs, format="THEIRS %(name)s %(message)s")
        app.test_client().get("/spend")
    assert "THEIRS quotas quota nearly gone" in theirs.getvalue()
    assert quota_lines(capsys.readouterr().out) == []  # not a second time as flaskprod's


def test_a_handler_the_app_put_on_the_librarys_logger_decides(
    capsys: pytest.CaptureFixture[str], quotas_library: logging.Logger
) -> None:
    theirs = io.StringIO()
    with unconfigured_logging():
        app = make_app()
        spend_in_a_view(app)
        quotas_library.addHandler(logging.StreamHandler(theirs))
        app.test_client().get("/spend")
    assert theirs.getvalue().splitlines() == ["quota spent", "quota nearly gone"]
    assert quota_lines(capsys.readouterr().out) == []


# --- under a real server: the library's module imported by the app's, and Flask-Limiter itself ---------------

APP = """
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from flaskprod import Production
import quotas

app = Flask(__name__)
Production(app)
limiter = Limiter(get_remote_address, app=app, storage_uri="memory://")  # its NullHandler after Production(app)


@app.get("/spend")
def spend():
    quotas.spend()
    return "spent"


@app.get("/once")
@limiter.limit("1 per minute")
def once():
    return "once"
"""


@pytest.mark.integration
@pytest.mark.parametrize("server_kind", ["gunicorn", "uwsgi"])
def test_a_null_handled_librarys_lines_reach_the_servers_log(
    serve_app: StartServer, tmp_path: Path, server_kind: str
) -> None:
    (tmp_path / "quotas.py").write_text(QUOTAS)
    server = serve_app(APP, args=("--server", server_kind))
    spent = server.get("/spend")
    assert server.get("/once").status_code == 200
    refused = server.get("/once")
    assert refused.status_code == 429

    def lines_of(rid: str, logger: str, count: int) -> list[tuple[str, str]] | None:
        records = [r for r in records_for(server, rid) if field(r, "log.logger") == logger]
        found = [(field(r, "log.level"), field(r, MESSAGE)) for r in records]
        return found if len(found) >= count else None

    quota = wait_for(lambda: lines_of(spent.headers["X-Request-ID"], "quotas", 2), timeout=10, what="quotas' lines")
    assert quota == [("info", "quota spent"), ("warning", "quota nearly gone")]
    [(level, message)] = wait_for(
        lambda: lines_of(refused.headers["X-Request-ID"], "flask-limiter", 1), timeout=10, what="the ratelimit line"
    )
    assert level == "info"
    assert message.startswith("ratelimit 1 per 1 minute") and "exceeded at endpoint" in message
    assert "quota" not in server.stderr()
