"""A library's logger that gets its NullHandler after the app was loaded (a library imported inside a view, as
heavy SDKs are, or one that adds it as it first logs) writes flaskprod's lines as one made at import does: its
records were dropped, while a logger with no handler at all wrote them through flaskprod's last resort."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import StartServer
from tests.support import wait_for
from tests.test_integration_logs import MESSAGE, field, records_for
from tests.test_runtime_logs import json_lines, make_app, unconfigured_logging

LOGGER = "lazysdk"


@pytest.fixture
def lazy_logger() -> Iterator[logging.Logger]:
    """The library's logger, with no handler yet; its handlers removed afterwards."""
    log = logging.getLogger(LOGGER)
    try:
        yield log
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)


def test_a_null_handler_added_after_the_app_was_set_up_is_relayed_with_the_request_id(
    capsys: pytest.CaptureFixture[str], lazy_logger: logging.Logger
) -> None:
    with unconfigured_logging():
        app = make_app()

        @app.get("/upload")
        def upload() -> str:
            # What `import lazysdk` does inside the view, the first time it runs.
            if not lazy_logger.handlers:
                lazy_logger.addHandler(logging.NullHandler())
            lazy_logger.info("uploading")
            lazy_logger.getChild("retry").warning("retrying the upload")
            return "done"

        rids = [app.test_client().get("/upload").headers["X-Request-ID"] for _ in range(2)]
    out, err = capsys.readouterr()
    lines = [
        (line["log"]["logger"], line["message"], line["http"]["request"]["id"])
        for line in json_lines(out)
        if line["log"]["logger"].startswith(LOGGER)
    ]
    retry = f"{LOGGER}.retry"
    assert lines == [
        (LOGGER, "uploading", rids[0]), (retry, "retrying the upload", rids[0]),
        (LOGGER, "uploading", rids[1]), (retry, "retrying the upload", rids[1]),
    ]  # fmt: skip
    assert err == ""


def test_once_the_app_configures_logging_a_lazily_null_handled_logger_is_its_to_decide(
    capsys: pytest.CaptureFixture[str], lazy_logger: logging.Logger
) -> None:
    theirs = io.StringIO()
    with unconfigured_logging():
        make_app()
        logging.basicConfig(stream=theirs, format="THEIRS %(name)s %(message)s")
        lazy_logger.addHandler(logging.NullHandler())
        lazy_logger.warning("the app's to write")
    assert theirs.getvalue() == f"THEIRS {LOGGER} the app's to write\n"
    assert not [line for line in json_lines(capsys.readouterr().out) if line["log"]["logger"] == LOGGER]


SDK = """
import logging

log = logging.getLogger("lazysdk")
log.addHandler(logging.NullHandler())


def upload():
    log.info("uploading")
    log.warning("upload slow")
"""

APP = """
from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/upload")
def upload():
    import lazysdk  # imported at the first request, after the server loaded the app

    lazysdk.upload()
    return "done"
"""


@pytest.mark.integration
@pytest.mark.parametrize("server_kind", ["gunicorn", "uwsgi"])
def test_a_library_imported_inside_a_view_reaches_the_servers_log(
    serve_app: StartServer, tmp_path: Path, server_kind: str
) -> None:
    (tmp_path / "lazysdk.py").write_text(SDK)
    server = serve_app(APP, args=("--server", server_kind))
    rid = server.get("/upload").headers["X-Request-ID"]

    def sdk_lines() -> list[tuple[str, str]] | None:
        found = [(field(r, "log.level"), field(r, MESSAGE)) for r in records_for(server, rid)
                 if field(r, "log.logger") == LOGGER]  # fmt: skip
        return found if len(found) >= 2 else None

    assert wait_for(sdk_lines, timeout=10, what="the library's lines") == [
        ("info", "uploading"), ("warning", "upload slow")
    ]
    assert "upload slow" not in server.stderr()
