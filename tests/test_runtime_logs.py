"""JSON logs on stdout with the request id, the access line, and when a proxy's request id is trusted."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import logging.config
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, stream_with_context

from flaskprod import Production
from flaskprod.runtime import request_id
from flaskprod.spec import LOG_RELAY_ENV, Spec


def make_app(**settings: object) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)

    @app.get("/hello")
    def hello() -> dict[str, Any]:
        app.logger.info("saying hello")
        return {"request_id": request_id()}

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret detail")

    @app.get("/export")
    def export() -> Response:
        def rows() -> Iterator[str]:
            time.sleep(0.2)
            yield "row\n"

        return Response(stream_with_context(rows()))

    Production(app, spec=Spec().replace(**settings))
    return app


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_app_log_lines_are_json_with_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app()
    response = app.test_client().get("/hello")
    rid = response.headers["X-Request-ID"]
    assert response.json == {"request_id": rid}
    lines = json_lines(capsys.readouterr().out)
    hello = next(line for line in lines if line["message"] == "saying hello")
    assert hello["log.level"] == "info"
    assert hello["http"]["request"]["id"] == rid


def test_access_line_has_ecs_fields(capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app()
    response = app.test_client().get("/hello?x=1", headers={"User-Agent": "probe/1.0"})
    access = [line for line in json_lines(capsys.readouterr().out) if line["log"]["logger"].endswith(".access")]
    assert len(access) == 1
    line = access[0]
    assert line["http"]["request"] == {"id": response.headers["X-Request-ID"], "method": "GET"}
    assert line["http"]["response"]["status_code"] == 200
    assert line["url"]["path"] == "/hello"
    assert line["client"]["ip"] == "127.0.0.1"
    assert line["user_agent"]["original"] == "probe/1.0"
    assert isinstance(line["event"]["duration"], int) and line["event"]["duration"] > 0
    assert line["ecs.version"]


def test_access_line_has_a_non_ascii_path_as_the_client_sent_it(capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app(**{"logging.format": "text"})
    app.test_client().get("/caf\u00e9/\u65e5\u672c")
    assert "GET /caf\u00e9/\u65e5\u672c 404" in capsys.readouterr().out
    app = make_app()
    app.test_client().get("/caf\u00e9/\u65e5\u672c")
    access = [line for line in json_lines(capsys.readouterr().out) if line["log"]["logger"].endswith(".access")]
    assert access[0]["url"]["path"] == "/caf\u00e9/\u65e5\u672c"
    assert access[0]["message"].startswith("GET /caf\u00e9/\u65e5\u672c 404 ")


def test_a_root_handler_does_not_write_the_apps_records_again(capsys: pytest.CaptureFixture[str]) -> None:
    # logging.basicConfig(), or the dictConfig in Flask's docs, puts a text handler on the root logger.
    root_lines = io.StringIO()
    root_handler = logging.StreamHandler(root_lines)
    logging.getLogger().addHandler(root_handler)
    try:
        make_app().test_client().get("/hello")
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert next(line["message"] for line in json_lines(capsys.readouterr().out)) == "saying hello"
    assert root_lines.getvalue() == ""


@contextlib.contextmanager
def unconfigured_logging() -> Iterator[logging.Logger]:
    """The root logger as in a process that configured no logging (a server's worker), not pytest's (whose log
    capture is on it while a test runs): no handler, level WARNING; restored afterwards, with logging's last resort."""
    root = logging.getLogger()
    handlers, level, last_resort = list(root.handlers), root.level, logging.lastResort
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        yield root
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging.lastResort = last_resort


def log_from_elsewhere(app: Flask) -> None:
    """A view logging through a module's logger outside app.logger's name (services/billing.py's __name__)."""

    @app.get("/bill")
    def bill() -> str:
        logging.getLogger("services.billing").info("charging the card")
        logging.getLogger("services.billing").warning("the card expires soon")
        return "billed"


def test_other_loggers_write_the_apps_lines_when_logging_is_unconfigured(capsys: pytest.CaptureFixture[str]) -> None:
    with unconfigured_logging() as root:
        app = make_app()
        log_from_elsewhere(app)
        rid = app.test_client().get("/bill").headers["X-Request-ID"]
        assert root.handlers == []  # a basicConfig() after Production(app) still takes effect
    out, err = capsys.readouterr()
    lines = [line for line in json_lines(out) if line["log"]["logger"] == "services.billing"]
    assert [(line["log.level"], line["message"]) for line in lines] == [
        ("info", "charging the card"),
        ("warning", "the card expires soon"),
    ]
    assert {line["http"]["request"]["id"] for line in lines} == {rid}
    assert err == ""  # not again as bare text


def test_other_loggers_follow_a_logging_config_made_after_production(capsys: pytest.CaptureFixture[str]) -> None:
    theirs = io.StringIO()
    with unconfigured_logging():
        app = make_app()
        log_from_elsewhere(app)
        logging.basicConfig(stream=theirs, format="THEIRS %(name)s %(message)s")
        app.test_client().get("/bill")
    assert "THEIRS services.billing the card expires soon" in theirs.getvalue()
    assert "services.billing" not in capsys.readouterr().out


def test_an_app_that_configured_logging_keeps_its_config(capsys: pytest.CaptureFixture[str]) -> None:
    theirs = io.StringIO()
    with unconfigured_logging() as root:
        logging.config.dictConfig({
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"theirs": {"class": "logging.StreamHandler", "stream": theirs}},
            "root": {"level": "ERROR", "handlers": ["theirs"]},
        })  # fmt: skip
        last_resort = logging.lastResort
        app = make_app()
        log_from_elsewhere(app)
        app.test_client().get("/bill")
        assert logging.lastResort is last_resort and root.level == logging.ERROR
    assert theirs.getvalue() == ""  # their level: ERROR
    assert "services.billing" not in capsys.readouterr().out


def test_a_testing_apps_records_still_reach_caplog(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()  # one not testing first: the logger is shared by name
    app = Flask(__name__)
    app.testing = True
    Production(app, spec=Spec())
    with caplog.at_level(logging.INFO), app.test_request_context():
        app.logger.info("seen by caplog")
    assert "seen by caplog" in caplog.text


def test_access_line_of_a_streamed_response_is_written_once_it_is_sent(capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app()
    with app.test_client().get("/export", buffered=False) as response:
        assert not json_lines(capsys.readouterr().out)  # still being made
        assert response.get_data() == b"row\n"
    [line] = json_lines(capsys.readouterr().out)
    assert line["url"]["path"] == "/export"
    assert line["event"]["duration"] >= 0.2e9


def test_access_line_of_a_streamed_response_cut_short_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """A client gone mid-stream, or a worker killed at the server's timeout: the status (200) was sent before the
    body, so the line keeps it, and says the body was cut, after how many of its bytes."""
    app = make_app()

    @app.get("/rows")
    def rows() -> Response:
        return Response(f"row {n}\n" for n in range(3))

    client = app.test_client()
    with client.get("/rows", buffered=False) as response:
        assert next(iter(response.response)) == b"row 0\n"  # then the server stops reading
    [cut] = json_lines(capsys.readouterr().out)
    assert cut["http"]["response"] == {"status_code": 200, "body": {"bytes": 0}}  # the first chunk unconfirmed
    assert cut["event"]["outcome"] == "failure"
    assert cut["message"].startswith("GET /rows 200 ") and cut["message"].endswith(", cut short after 0 bytes")
    with client.get("/rows", buffered=False) as response:
        chunks = iter(response.response)
        assert [next(chunks), next(chunks)] == [b"row 0\n", b"row 1\n"]
    [cut] = json_lines(capsys.readouterr().out)
    assert cut["http"]["response"]["body"] == {"bytes": 6}
    assert client.get("/rows", buffered=True).text == "row 0\nrow 1\nrow 2\n"
    [whole] = json_lines(capsys.readouterr().out)
    assert whole["http"]["response"] == {"status_code": 200, "body": {"bytes": 18}}
    assert "outcome" not in whole["event"] and "cut" not in whole["message"]


def test_probes_write_no_access_line(capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app()
    client = app.test_client()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200
    assert not json_lines(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, 1),  # auto, no proxy in front: the app logs requests
        ({"proxy.trusted_hops": 1}, 0),  # auto, nginx in front logs them
        ({"proxy.trusted_hops": 1, "logging.access_log": True}, 1),
        ({"logging.access_log": False}, 0),
    ],
)
def test_access_log_switch(capsys: pytest.CaptureFixture[str], settings: dict[str, object], expected: int) -> None:
    app = make_app(**settings)
    app.test_client().get("/hello")
    lines = json_lines(capsys.readouterr().out)
    assert len([line for line in lines if line["log"]["logger"].endswith(".access")]) == expected


def test_text_format(capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app(**{"logging.format": "text"})
    response = app.test_client().get("/hello")
    out = capsys.readouterr().out
    assert "INFO" in out and "saying hello" in out
    assert f"request_id={response.headers['X-Request-ID']}" in out
    assert not json_lines(out)


def test_level_from_spec(capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app(**{"logging.level": "WARNING"})
    app.test_client().get("/hello")
    assert "saying hello" not in capsys.readouterr().out


def test_unhandled_error_is_logged_with_traceback_and_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    lines = json_lines(capsys.readouterr().out)
    error = next(line for line in lines if line["log.level"] == "error")
    assert error["http"]["request"]["id"] == response.headers["X-Request-ID"]
    assert error["error"]["type"] == "RuntimeError"
    assert error["error"]["message"] == "secret detail"
    assert 'raise RuntimeError("secret detail")' in error["error"]["stack_trace"]
    # ... while the client learns nothing of it.
    assert "secret detail" not in response.text and "Traceback" not in response.text


def test_request_id_is_generated_without_a_trusted_proxy() -> None:
    app = make_app()
    client = app.test_client()
    response = client.get("/hello", headers={"X-Request-ID": "forged-by-client"})
    rid = response.headers["X-Request-ID"]
    assert rid != "forged-by-client"
    assert len(rid) == 32 and int(rid, 16) >= 0
    assert client.get("/hello").headers["X-Request-ID"] != rid


def test_request_id_from_a_trusted_proxy_is_reused() -> None:
    app = make_app(**{"proxy.trusted_hops": 1})
    response = app.test_client().get("/hello", headers={"X-Request-ID": "nginx-abc.123_x"})
    assert response.headers["X-Request-ID"] == "nginx-abc.123_x"
    assert response.json == {"request_id": "nginx-abc.123_x"}


@pytest.mark.parametrize("bad", ["has space", "a" * 201, "new\\nline", "quote\"d", ""])
def test_insane_request_ids_are_replaced(bad: str) -> None:
    app = make_app(**{"proxy.trusted_hops": 1})
    response = app.test_client().get("/hello", headers={"X-Request-ID": bad})
    assert response.headers["X-Request-ID"] != bad
    assert len(response.headers["X-Request-ID"]) == 32


def test_request_id_header_name_from_spec() -> None:
    app = make_app(**{"proxy.trusted_hops": 1, "logging.request_id_header": "X-Correlation-ID"})
    response = app.test_client().get("/hello", headers={"X-Correlation-ID": "corr-1"})
    assert response.headers["X-Correlation-ID"] == "corr-1"


def test_request_id_outside_a_request_is_none() -> None:
    assert request_id() is None


def console_and_file_handlers(tmp_path: Path) -> tuple[logging.StreamHandler[Any], logging.FileHandler]:
    """basicConfig's handler on stderr and a file's, the app's own config, on the root logger."""
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    own_file = logging.FileHandler(tmp_path / "own.log")
    own_file.setFormatter(logging.Formatter("FILE %(message)s"))
    return console, own_file


@pytest.mark.parametrize(
    ("relayed", "settings", "json_on_console"),
    [("json", {}, True), (None, {}, False), ("json", {"logging.configure": False}, False)],
    ids=["under-serve", "outside-serve", "configure-false"],
)
def test_the_roots_console_handlers_write_json_only_where_serve_relays_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, relayed: str | None, settings: dict[str, object],
    json_on_console: bool,
) -> None:
    """Under serve (json), basicConfig's stderr handler writes flaskprod's JSON with the request id: serve relayed each
    of its plain lines as one record at info; a file handler keeps the app's format, and so does the console outside
    serve (flask run, a test) or with logging.configure = false."""
    if relayed is None:
        monkeypatch.delenv(LOG_RELAY_ENV, raising=False)
    else:
        monkeypatch.setenv(LOG_RELAY_ENV, relayed)
    console, own_file = console_and_file_handlers(tmp_path)
    with unconfigured_logging() as root:
        root.addHandler(console)
        root.addHandler(own_file)
        app = make_app(**settings)
        log_from_elsewhere(app)
        seen = io.StringIO()
        console.setStream(seen)  # where it writes: not what it is formatted by
        rid = app.test_client().get("/bill").headers["X-Request-ID"]
        own_file.close()
    lines = seen.getvalue().splitlines()
    if json_on_console:
        [record] = [json.loads(line) for line in lines]
        assert (record["log.level"], record["log"]["logger"], record["message"]) == (
            "warning", "services.billing", "the card expires soon"
        )
        assert record["http"]["request"]["id"] == rid
    else:
        assert lines == ["WARNING services.billing the card expires soon"]
    assert (tmp_path / "own.log").read_text() == "FILE the card expires soon\n"
