"""JSON log lines on the server's stdout, each app record and access line carrying the request's id."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Server, StartServer
from tests.support import readable, wait_for

pytestmark = pytest.mark.integration

APP = """
from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/hello")
def hello():
    app.logger.info("hello from the view")
    return "hi"
"""

# Elastic Common Schema fields (https://www.elastic.co/guide/en/ecs/current/ecs-field-reference.html).
REQUEST_ID = "http.request.id"
MESSAGE = "message"
URL_PATH = "url.path"
STATUS = "http.response.status_code"
VIEW_MESSAGE = "hello from the view"


def field(record: dict[str, Any], dotted: str) -> Any:
    """An ECS field from a record, whether the formatter nested it ({"http": {"request": ...}}) or not."""
    if dotted in record:
        return record[dotted]
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def records_for(server: Server, request_id: str) -> list[dict[str, Any]]:
    return [r for r in server.json_lines() if field(r, REQUEST_ID) == request_id]


def app_and_access_lines(server: Server, request_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait for the view's log record and the access line of one request, found by its id."""

    def both() -> tuple[dict[str, Any], dict[str, Any]] | None:
        records = records_for(server, request_id)
        app_line = next((r for r in records if field(r, MESSAGE) == VIEW_MESSAGE), None)
        access = next((r for r in records if field(r, URL_PATH) == "/hello" and field(r, STATUS) == 200), None)
        return (app_line, access) if app_line and access else None

    try:
        found: tuple[dict[str, Any], dict[str, Any]] = wait_for(both, timeout=10, what="log lines")
    except AssertionError:
        wanted = f"{REQUEST_ID}={request_id!r}"
        raise AssertionError(f"no app line and access line with {wanted}:\n{server.output()}") from None
    return found


def assert_all_stdout_is_json(server: Server) -> None:
    """Every stdout line is one JSON object: a log shipper reads stdout line by line."""
    for line in server.stdout().splitlines():
        if line.strip():
            assert isinstance(json.loads(line), dict), line


def test_request_id_from_a_trusted_proxy_is_kept_and_logged(serve_app: StartServer) -> None:
    # One proxy in front (nginx in `flaskprod up`) sets X-Request-ID; the app must keep it, and still log access.
    server = serve_app(APP, env={"FLASKPROD_PROXY__TRUSTED_HOPS": "1", "FLASKPROD_LOGGING__ACCESS_LOG": "true"})
    request_id = uuid.uuid4().hex
    response = server.get("/hello", headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == request_id

    app_line, access = app_and_access_lines(server, request_id)
    assert field(app_line, "log.level") == "info"
    assert field(access, "http.request.method") == "GET"

    generated = server.get("/hello").headers["X-Request-ID"]
    assert generated and generated != request_id
    app_and_access_lines(server, generated)
    assert_all_stdout_is_json(server)


def test_request_id_is_generated_when_no_proxy_is_trusted(serve_app: StartServer) -> None:
    # With nothing in front, X-Request-ID comes from the client: it could forge another request's id.
    server = serve_app(APP)
    forged = uuid.uuid4().hex
    response = server.get("/hello", headers={"X-Request-ID": forged})
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    assert request_id and request_id != forged

    app_line, access = app_and_access_lines(server, request_id)
    assert field(app_line, "log.level") == "info"
    assert field(access, "http.request.method") == "GET"
    assert not records_for(server, forged)
    assert_all_stdout_is_json(server)


# A failure of Gunicorn's own, mid-stream: a chunk that is not bytes. One the view raises is the app's to log, with its
# request id, and not Gunicorn's (tests/test_stream_failure_logged_once.py).
FAILING_STREAM = APP + '''

@app.get("/stream")
def stream():
    def rows():
        yield "first"
        yield 42

    return app.response_class(rows())
'''


@pytest.mark.parametrize(("log_format", "json_lines"), [("json", True), ("text", False)])
def test_gunicorns_own_lines_are_written_as_the_apps_are(
    serve_app: StartServer, log_format: str, json_lines: bool
) -> None:
    """Start, workers, a request it failed (traceback and all) and stop: one JSON object a line under json."""
    server = serve_app(FAILING_STREAM, env={"FLASKPROD_LOGGING__FORMAT": log_format}, args=("--server", "gunicorn"))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # the server cut the body short
        server.get("/stream")
    wait_for(lambda: "Error handling request" in server.stderr(), timeout=10, what="Gunicorn's error line")
    lines = [line for line in server.stderr().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            parsed.append(None)
    if json_lines:
        assert all(isinstance(record, dict) for record in parsed), server.stderr()
        [failed] = [r for r in parsed if r and field(r, MESSAGE) == "Error handling request"]
        assert field(failed, "log.level") == "error" and "is not a byte" in field(failed, "error.message")
        assert "in handle_request" in field(failed, "error.stack_trace")
        assert field(failed, "log.logger") == "gunicorn.error"
    else:
        assert any("[ERROR] Error handling request" in line for line in lines), server.stderr()


DYING_WORKER = APP + '''
import os
import signal
import sys
import traceback


@app.get("/noise")
def noise():
    print("printed by the view")
    try:
        raise ValueError("printed traceback")
    except ValueError:
        traceback.print_exc(file=sys.stderr)
    return "noisy"


@app.get("/die")
def die():
    os.kill(os.getpid(), signal.SIGKILL)
'''


def parsed_lines(text: str) -> list[dict[str, Any] | None]:
    """Each non-blank line as its JSON object, or None."""
    out: list[dict[str, Any] | None] = []
    for line in text.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append(None)
    return out


@pytest.mark.parametrize(("log_format", "json_lines"), [("json", True), ("text", False)])
def test_uwsgis_own_lines_are_written_as_the_apps_are(
    serve_app: StartServer, log_format: str, json_lines: bool
) -> None:
    """uWSGI's start, a worker's death and respawn, the app's print()s and a printed traceback: JSON under json."""
    server = serve_app(DYING_WORKER, env={"FLASKPROD_LOGGING__FORMAT": log_format}, args=("--server", "uwsgi"))
    assert server.get("/noise").text == "noisy"
    with pytest.raises(requests.exceptions.ConnectionError):
        server.get("/die")
    wait_for(lambda: "Respawned uWSGI worker" in server.stderr(), timeout=10, what="uWSGI's respawn line")
    wait_for(lambda: "printed by the view" in server.stdout(), timeout=10, what="the view's print")
    err, out = parsed_lines(server.stderr()), parsed_lines(server.stdout())
    if json_lines:
        assert all(isinstance(record, dict) for record in err), server.stderr()
        assert all(isinstance(record, dict) for record in out), server.stdout()
        messages = [(field(r, "log.level"), field(r, "log.logger"), field(r, MESSAGE)) for r in err if r]
        assert any(level == "error" and "DAMN ! worker" in message for level, _, message in messages), messages
        [traceback] = [field(r, "error.stack_trace") for r in err if r and field(r, "error.stack_trace")]
        assert traceback.endswith("ValueError: printed traceback") and "in noise" in traceback
        assert ("error", "uwsgi", "ValueError: printed traceback") in messages
        assert ("info", "stdout", "printed by the view") in [
            (field(r, "log.level"), field(r, "log.logger"), field(r, MESSAGE)) for r in out if r
        ]
    else:
        assert None in err  # uWSGI's plain lines, as it writes them
        assert "DAMN ! worker" in server.stderr() and "\nValueError: printed traceback" in server.stderr()


NOISY_WORKER = APP + """
import logging
import sys
import traceback


@app.get("/noise")
def noise():
    print("printed by the view")
    logging.getLogger("a.library").warning("a library warned")  # no handler: logging's last resort, flaskprod's
    try:
        raise ValueError("printed traceback")
    except ValueError:
        traceback.print_exc(file=sys.stderr)
    return "noisy"
"""


@pytest.mark.parametrize(("log_format", "json_lines"), [("json", True), ("text", False)])
def test_gunicorn_workers_plain_lines_are_written_as_the_apps_are(
    serve_app: StartServer, log_format: str, json_lines: bool
) -> None:
    """A print(), a library's logger with no handler and a printed traceback from a Gunicorn worker: JSON under
    json, as uWSGI's are, and none lost when the server stops. The library's record is written as the app's are."""
    server = serve_app(
        NOISY_WORKER, workers=2, env={"FLASKPROD_LOGGING__FORMAT": log_format}, args=("--server", "gunicorn")
    )
    assert server.get("/noise").text == "noisy"
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0, server.output()
    err, out = parsed_lines(server.stderr()), parsed_lines(server.stdout())
    if json_lines:
        assert all(isinstance(record, dict) for record in err), server.stderr()
        assert all(isinstance(record, dict) for record in out), server.stdout()
        printed = [(field(r, "log.level"), field(r, "log.logger"), field(r, MESSAGE)) for r in out if r]
        assert ("info", "stdout", "printed by the view") in printed
        assert ("warning", "a.library", "a library warned") in printed  # a record, with its logger and level
        [traceback] = [field(r, "error.stack_trace") for r in err if r and field(r, MESSAGE).startswith("ValueError")]
        assert traceback.endswith("ValueError: printed traceback") and "in noise" in traceback
    else:
        assert "\nprinted by the view\n" in f"\n{server.stdout()}"
        assert " WARNING a.library: a library warned" in server.stdout()
        assert "\nValueError: printed traceback\n" in server.stderr()
    # Each worker's last line, written as it exits, reached the log before serve itself exited.
    exiting = [line for line in server.stderr().splitlines() if "Worker exiting (pid: " in line]
    assert len(exiting) == 2, server.stderr()


STREAM_PAST_THE_TIMEOUT = APP + '''
import time


@app.get("/export")
def export():
    def rows():
        for n in range(40):
            yield f"row {n}\\n"
            time.sleep(0.5)

    return app.response_class(rows())
'''


def test_a_stream_the_workers_timeout_cuts_is_logged_as_cut(serve_app: StartServer) -> None:
    """Gunicorn kills a sync worker (server.threads = 1) still busy server.timeout + 5 s after it took a request, and
    a streamed body's view runs after the deadline's end: the client got 200 and part of the body, and the access
    line, a plain 200 before, says the body was cut and how many of its bytes were sent."""
    server = serve_app(STREAM_PAST_THE_TIMEOUT, args=("--server", "gunicorn", "--threads", "1", "--timeout", "1"))
    assert "Using worker: sync" in server.stderr()
    received = b""
    with server.get("/export", stream=True, timeout=30) as response:
        assert response.status_code == 200
        with pytest.raises(requests.exceptions.ChunkedEncodingError):  # the worker died mid-body
            for chunk in response.iter_content(None):
                received += chunk
    assert received.startswith(b"row 0\n") and b"row 39\n" not in received

    def export_line() -> dict[str, Any] | None:
        return next((r for r in server.json_lines() if field(r, URL_PATH) == "/export"), None)

    line = wait_for(export_line, timeout=10, what="the access line of /export")
    assert field(line, STATUS) == 200  # as sent, before the body
    assert field(line, "event.outcome") == "failure"
    assert 0 < field(line, "http.response.body.bytes") <= len(received)
    assert field(line, MESSAGE).endswith(f", cut short after {field(line, 'http.response.body.bytes')} bytes")
    assert_all_stdout_is_json(server)


# An app named otherwise than its modules: Flask("wsgi") in app.py, its code under services/ logging by module name.
OTHER_NAMES = """
from flask import Flask

from flaskprod import Production
from services import billing

app = Flask("wsgi")
Production(app)


@app.get("/bill")
def bill():
    billing.charge()
    return "billed"
"""

BILLING = """
import logging

log = logging.getLogger(__name__)


def charge():
    log.info("charging the card")
    log.warning("the card expires soon")
"""


@pytest.mark.parametrize("server_kind", ["gunicorn", "uwsgi"])
def test_the_apps_modules_outside_its_loggers_name_log_json_lines(
    serve_app: StartServer, tmp_path: Path, server_kind: str
) -> None:
    """app.logger is "wsgi", so services.billing's records reached no handler of flaskprod's: its warning was bare
    text on stderr, and its info nothing. Each is now one JSON line on stdout, with its logger, level and the
    request's id."""
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "__init__.py").write_text("")
    (tmp_path / "services" / "billing.py").write_text(BILLING)
    server = serve_app(OTHER_NAMES, args=("--server", server_kind))
    response = server.get("/bill")
    assert response.text == "billed"
    rid = response.headers["X-Request-ID"]

    def billing_lines() -> list[tuple[str, str]] | None:
        lines = [(field(r, "log.level"), field(r, MESSAGE)) for r in records_for(server, rid)]
        found = [line for line in lines if line[1] in ("charging the card", "the card expires soon")]
        return found if len(found) >= 2 else None

    found = wait_for(billing_lines, timeout=10, what="services.billing's records")
    assert found == [("info", "charging the card"), ("warning", "the card expires soon")]  # each once
    loggers = {field(r, "log.logger") for r in records_for(server, rid) if field(r, MESSAGE) == "charging the card"}
    assert loggers == {"services.billing"}
    assert "the card expires soon" not in server.stderr()
    assert_all_stdout_is_json(server)


OWN_HTTP_ERRORS = APP + """
import time

from flask import jsonify
from werkzeug.exceptions import HTTPException


@app.errorhandler(HTTPException)
def own(exc):  # as flask-smorest's Api(app) registers
    return jsonify(code=exc.code, status=exc.name), exc.code


@app.get("/spin")
def spin():
    end = time.monotonic() + 20
    while time.monotonic() < end:
        pass
    return "done"
"""


@pytest.mark.parametrize("threads", ["1", "4"], ids=["timer", "watchdog"])
def test_the_deadline_is_logged_when_the_app_answers_http_errors_itself(serve_app: StartServer, threads: str) -> None:
    """The app's own HTTPException handler answers the deadline's 504; the log says the deadline stopped it."""
    server = serve_app(OWN_HTTP_ERRORS, args=("--server", "gunicorn", "--threads", threads, "--timeout", "1"))
    response = server.get("/spin", timeout=15)
    assert (response.status_code, response.json()) == (504, {"code": 504, "status": "Gateway Timeout"})
    rid = response.headers["X-Request-ID"]

    def stopped() -> dict[str, Any] | None:
        return next((r for r in records_for(server, rid) if "deadline" in field(r, MESSAGE)), None)

    line = wait_for(stopped, timeout=10, what="the deadline's line")
    assert field(line, "log.level") == "error" and field(line, STATUS) == 504
    assert "in spin" in field(line, "error.stack_trace")


# An app with a logging config of its own: basicConfig's plain lines on stderr, and a file in its own format.
CONFIGURED_ITSELF = """
import logging

from flask import Flask

from flaskprod import Production
from services import billing

BEFORE
app = Flask(__name__)
Production(app)
AFTER


@app.get("/bill")
def bill():
    billing.charge()
    return "billed"
"""
BASIC_CONFIG = """logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
logging.getLogger().addHandler(logging.FileHandler("own.log"))
"""
NEAR_LIMIT = """
import logging

log = logging.getLogger(__name__)


def charge():
    log.warning("card near limit")
"""


@pytest.mark.parametrize(("server_kind", "configured"), [("gunicorn", "before"), ("uwsgi", "after")])
def test_a_warning_through_the_apps_own_basicconfig_keeps_its_level_logger_and_request_id(
    serve_app: StartServer, tmp_path: Path, server_kind: str, configured: str
) -> None:
    """basicConfig's console handler wrote "WARNING services.billing card near limit", which serve relayed as a
    record of its own at info, from "stderr" or "uwsgi", with no request id. Under serve it writes the record as
    JSON: once, a warning of services.billing with the request's id; the app's file handler keeps its format."""
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "__init__.py").write_text("")
    (tmp_path / "services" / "billing.py").write_text(NEAR_LIMIT)
    source = CONFIGURED_ITSELF.replace("BEFORE" if configured == "before" else "AFTER", BASIC_CONFIG)
    server = serve_app(source.replace("BEFORE", "").replace("AFTER", ""), args=("--server", server_kind))
    response = server.get("/bill")
    assert response.text == "billed"
    rid = response.headers["X-Request-ID"]
    wait_for(lambda: "card near limit" in (tmp_path / "own.log").read_text(), timeout=10, what="the file's line")
    wait_for(lambda: "card near limit" in server.stderr(), timeout=10, what="services.billing's line")
    lines = [line for line in (server.stdout() + server.stderr()).splitlines() if "card near limit" in line]
    assert len(lines) == 1, server.output()  # once
    record = json.loads(lines[0])
    assert (field(record, "log.level"), field(record, "log.logger"), field(record, MESSAGE)) == (
        "warning", "services.billing", "card near limit"
    )
    assert field(record, REQUEST_ID) == rid
    assert (tmp_path / "own.log").read_text() == "card near limit\n"  # FileHandler's own format: the message
    assert all(isinstance(r, dict) for r in parsed_lines(server.stderr())), server.stderr()


@pytest.mark.parametrize("server_kind", ["gunicorn", "uwsgi"])
def test_an_app_that_raises_as_it_is_imported_is_one_json_record(
    serve_app: StartServer, server_kind: str
) -> None:
    """serve's probe printed the app's traceback as it was: under `up`, a failed deploy wrote its plain lines into
    up's JSON log. It is one error record now, the exception's line its message and the whole in error.stack_trace;
    serve's own refusal follows, one error record too."""
    server = serve_app(APP + '\nraise RuntimeError("bad import")\n', args=("--server", server_kind), wait=False)
    assert server.proc.wait(60) == 2, server.output()
    lines = [line for line in server.stderr().splitlines() if line.strip()]
    [record, _] = [json.loads(line) for line in lines]  # every line a record, the refusal's too
    assert readable(lines[-1]) == "Error: error while importing 'app': RuntimeError: bad import\n"
    assert (field(record, "log.level"), field(record, MESSAGE)) == ("error", "RuntimeError: bad import")
    stack = field(record, "error.stack_trace")
    assert stack.startswith("Traceback (most recent call last):\n") and stack.endswith("RuntimeError: bad import")
    assert 'app.py", line ' in stack


def test_an_import_traceback_stays_as_printed_under_text_logs(serve_app: StartServer) -> None:
    """logging.format text: serve's output is for people, the traceback as Python prints it."""
    server = serve_app(
        APP + '\nraise RuntimeError("bad import")\n', env={"FLASKPROD_LOGGING__FORMAT": "text"}, wait=False
    )
    assert server.proc.wait(60) == 2, server.output()
    assert "\nRuntimeError: bad import\nError: error while importing 'app'" in server.stderr()
    assert server.stderr().startswith("Traceback (most recent call last):\n")
