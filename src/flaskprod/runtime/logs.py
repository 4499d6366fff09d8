"""Log records as JSON (ECS) or text on stdout, each carrying the request id, and the access line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import ecs_logging
from flask import Flask, has_request_context, request
from flask.logging import default_handler, wsgi_errors_stream

from ..spec import LOG_RELAY_ENV, Spec
from .proxy import CLIENT_ADDRESS_KEY

REQUEST_ID_KEY = "flaskprod.request_id"
REQUEST_ID_FIELD = "http.request.id"  # ECS field name
# A streamed response's access line: the bytes of its body the server sent, and for one cut short (the client
# gone, or its worker killed at the server's timeout) event.outcome "failure": its status was sent before the body.
BODY_BYTES_FIELD = "http.response.body.bytes"
OUTCOME_FIELD = "event.outcome"
ECS_VERSION = "1.6.0"  # as written by ecs_logging, so all lines of a service agree
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), default=str)
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")
# What a server puts in REMOTE_ADDR for a peer that has no IP address, a unix socket's: Gunicorn "", uWSGI's HTTP
# socket "0.0.0.0" (the unspecified address, which no client sends from).
_NO_PEER_ADDRESS = ("", "0.0.0.0", "::")


def request_id() -> str | None:
    """The current request's id, or None outside a request."""
    if not has_request_context():
        return None
    value = request.environ.get(REQUEST_ID_KEY)
    return value if isinstance(value, str) else None


def is_sane_request_id(value: str) -> bool:
    """A proxy-supplied id is only reused when it cannot break a log line or a header."""
    return _SANE_REQUEST_ID.fullmatch(value) is not None


class RequestIdFilter(logging.Filter):
    """Adds the request id to every record handled inside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if REQUEST_ID_FIELD not in record.__dict__:
            rid = request_id()
            if rid is not None:
                record.__dict__[REQUEST_ID_FIELD] = rid
        return True


class TextFormatter(logging.Formatter):
    """Plain lines for people reading a terminal, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = record.__dict__.get(REQUEST_ID_FIELD)
        return f"{line} [request_id={rid}]" if rid else line


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is at the time, so redirections (test capture, daemons) are followed."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


class AccessFormatter(logging.Formatter):
    """The access line as ECS JSON, built directly: the generic ECS formatter costs ~50us a line.

    The output has the same shape as ecs_logging's for the same record, minus the origin fields.
    """

    def __init__(self) -> None:
        super().__init__()
        # (second, its text), replaced as one tuple so threads never pair a second with another's text.
        self._stamp: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        second = int(created)
        cached, text = self._stamp
        if second != cached:  # one strftime per second, not per line
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._stamp = (second, text)
        return f"{text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        f = record.__dict__
        line: dict[str, Any] = {
            "@timestamp": self._timestamp(record.created),
            "log.level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        client_ip = f.get("client.ip")
        if client_ip is not None:
            line["client"] = {"ip": client_ip}
        line["ecs.version"] = ECS_VERSION
        event: dict[str, Any] = {"duration": f.get("event.duration")}
        response: dict[str, Any] = {"status_code": f.get("http.response.status_code")}
        sent = f.get(BODY_BYTES_FIELD)
        if sent is not None:  # a streamed body's
            response["body"] = {"bytes": sent}
            if f.get(OUTCOME_FIELD) is not None:
                event["outcome"] = f[OUTCOME_FIELD]
        line["event"] = event
        line["http"] = {
            "request": {"id": f.get(REQUEST_ID_FIELD), "method": f.get("http.request.method")},
            "response": response,
        }
        line["log"] = {"logger": record.name}
        line["process"] = {"pid": record.process}
        line["url"] = {"path": f.get("url.path")}
        user_agent = f.get("user_agent.original")
        if user_agent is not None:
            line["user_agent"] = {"original": user_agent}
        return _COMPACT_JSON.encode(line)


class PropagateWhileTesting(logging.Handler):
    """Passes app.logger's records on to the loggers above it, as propagation would, while the app's TESTING is on.

    app.logger does not propagate, so a root handler (basicConfig's) does not write each record a second time; but
    pytest's caplog is a root handler too, and a test fixture turns TESTING on after Production(app) ran (Flask's
    tutorial: create_app(), then config.update(TESTING=True)). So TESTING is read as each record is logged: outside
    tests, one dict read a record."""

    def __init__(self, logger: logging.Logger, config: Mapping[str, Any]) -> None:
        super().__init__()
        self._logger = logger
        self._config = config

    def handle(self, record: logging.LogRecord) -> bool:  # no lock taken, no filter run: nothing to write
        if self._config.get("TESTING") and not self._logger.propagate:
            self._pass_up(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self._pass_up(record)

    def _pass_up(self, record: logging.LogRecord) -> None:
        # pytest (9.2+) also puts its capture handlers on a logger that does not propagate: each record once.
        own = self._logger.handlers
        logger = self._logger.parent
        while logger is not None:
            for handler in logger.handlers:
                if handler not in own and record.levelno >= handler.level:
                    handler.handle(record)
            logger = logger.parent if logger.propagate else None


def make_handler(spec: Spec, *, access: bool = False) -> logging.Handler:
    handler = StdoutHandler()
    if spec.logging.format == "text":
        handler.setFormatter(TextFormatter())
    elif access:
        handler.setFormatter(AccessFormatter())
    else:
        handler.setFormatter(ecs_logging.StdlibFormatter())
    if not access:  # access records carry their id already
        handler.addFilter(RequestIdFilter())
    return handler


def _replace_handlers(logger: logging.Logger, handler: logging.Handler) -> None:
    for old in list(logger.handlers):
        # Flask's own stderr handler, and ours from an earlier app with the same name (tests).
        if old is default_handler or isinstance(old, (StdoutHandler, PropagateWhileTesting)):
            logger.removeHandler(old)
    logger.addHandler(handler)


def configure_logging(app: Flask, spec: Spec) -> None:
    """Send the app logger to stdout with the request id, and the access logger with its own fast formatter."""
    _replace_handlers(app.logger, make_handler(spec))
    app.logger.setLevel(spec.logging.level)
    # Each record once, as one line: a root handler (logging.basicConfig, or the dictConfig in Flask's
    # docs) would write it again as text, a traceback over many lines. While TESTING is on, whenever a test
    # turned it on, the records go up too, for pytest's caplog.
    app.logger.propagate = False
    app.logger.addHandler(PropagateWhileTesting(app.logger, app.config))
    access = access_logger(app)
    _replace_handlers(access, make_handler(spec, access=True))
    # Its own handler writes the line; passing it up too would write it twice.
    access.propagate = False
    format_unconfigured_loggers(spec)
    format_console_handlers()


def format_unconfigured_loggers(spec: Spec) -> None:
    """Every other logger's records in the app's format and level too, while nothing has configured logging.

    A logger outside app.logger's name (the app's own modules when it is Flask("wsgi") or made in app.py, a
    library's) reached only logging's last resort, which wrote WARNING and above as bare text on stderr and dropped
    the rest. logging.lastResort, which handles a record no handler took, becomes flaskprod's handler, and the
    root logger's level the spec's. Once the app configures logging itself (basicConfig, dictConfig), before
    Production(app) or after it, the root logger has handlers and the last resort is no longer used.
    """
    root = logging.getLogger()
    if root.handlers:  # configured: by the app, or by a test runner (pytest's log capture)
        return
    logging.lastResort = make_handler(spec)
    if root.level == logging.WARNING:  # logging's default, not a level the app chose
        root.setLevel(spec.logging.level)
    relay_null_handled_loggers()


def relay_null_handled_loggers() -> None:
    """A library's logger that carries only a NullHandler (Flask-Limiter's "flask-limiter", as the logging HOWTO
    tells libraries to do) writes through flaskprod's last resort too, while it is logging's.

    The NullHandler is there so the application decides where its records go; logging never reaches its last
    resort for them, so Flask-Limiter's "ratelimit ... exceeded" lines were never written. Where the app decides
    nothing, flaskprod does, as a basicConfig would: each record at the logger's level, as one line in
    logging.format with the request id. Loggers made so far: called again as the app is loaded (revive_loggers),
    after its module made its extensions; and any later one, as it logs (RelayingRecordFactory)."""
    if not isinstance(logging.lastResort, StdoutHandler):  # the app configured logging: it decides
        return
    for logger in list(logging.Logger.manager.loggerDict.values()):  # a copy: threads may add loggers
        if isinstance(logger, logging.Logger):
            _relay_if_null_handled(logger)
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, RelayingRecordFactory):
        logging.setLogRecordFactory(RelayingRecordFactory(factory))


def _relay_if_null_handled(logger: logging.Logger) -> None:
    """A NullHandledRelay on logger when it carries a NullHandler and no relay yet."""
    null_handled = False
    for handler in logger.handlers:
        if isinstance(handler, NullHandledRelay):
            return
        null_handled = null_handled or isinstance(handler, logging.NullHandler)
    if null_handled:
        logger.addHandler(NullHandledRelay())


class RelayingRecordFactory:
    """logging's record factory, which first relays the loggers a record passes (relay_null_handled_loggers) that got
    their NullHandler after the app was loaded: a library imported inside a view, or one that adds it as it first
    logs. Those records were dropped, where a logger with no handler at all wrote them through the last resort. The
    factory is the one hook logging calls for every record before it looks for handlers; it wraps the one it
    found, so an app's or an instrumentation's own factory still makes the record."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> logging.LogRecord:
        if isinstance(logging.lastResort, StdoutHandler):  # else the app configured logging: it decides
            logger = logging.Logger.manager.loggerDict.get(name) if name else None
            while isinstance(logger, logging.Logger):
                if logger.handlers:
                    _relay_if_null_handled(logger)
                logger = logger.parent if logger.propagate else None
        return self.inner(name, *args, **kwargs)


class NullHandledRelay(logging.Handler):
    """On a logger with a NullHandler: hands a record to flaskprod's last resort (logging.lastResort) when no
    other handler on its way up takes it, as logging would have without the NullHandler. Nothing once the app
    configures logging (a root handler, a handler of its own on the library's logger), so no line is written
    twice; and only the first relay on the record's way up writes it."""

    def handle(self, record: logging.LogRecord) -> bool:  # no lock taken: the last resort takes its own
        last_resort = logging.lastResort
        if isinstance(last_resort, StdoutHandler) and record.levelno >= last_resort.level and self._alone(record):
            last_resort.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # handle() does the work
        pass

    def _alone(self, record: logging.LogRecord) -> bool:
        """True when self is the first relay on the record's way up and no other handler is on it."""
        logger = logging.Logger.manager.loggerDict.get(record.name)
        first_relay = None
        while isinstance(logger, logging.Logger):
            for handler in logger.handlers:
                if isinstance(handler, NullHandledRelay):
                    first_relay = first_relay or handler
                elif not isinstance(handler, logging.NullHandler):
                    return False
            logger = logger.parent if logger.propagate else None
        return first_relay is self


def format_console_handlers() -> None:
    """Every logger's handlers to stdout or stderr, the root's and a named one's, write flaskprod's JSON, with the
    request id, under a server `flaskprod serve` started with logging.format json: it relays every line of those
    streams as JSON.

    An app's own config (basicConfig, dictConfig) wrote its format there: serve relayed each of its lines as a
    record of its own, at info, from the "stderr" or "uwsgi" logger and with no request id, so a WARNING of
    services.billing was filed as info. Each record now keeps its level, logger and request id. Only the format
    changes: a record is written by the handlers it reached before, once each. Handlers to files or elsewhere keep
    the app's format; outside serve (flask run, tests), so do these.
    """
    if os.environ.get(LOG_RELAY_ENV) != "json":
        return
    for handler in _handlers_of_every_logger():
        if _writes_to_console(handler) and not isinstance(handler.formatter, ecs_logging.StdlibFormatter):
            handler.setFormatter(ecs_logging.StdlibFormatter())
            if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
                handler.addFilter(RequestIdFilter())


def _handlers_of_every_logger() -> list[logging.Handler]:
    """The root's handlers and those of every logger made so far (a dictConfig's "loggers" section puts a console
    handler on services.billing, not the root), each once."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]  # a copy: threads may add some
    handlers = (handler for logger in loggers if isinstance(logger, logging.Logger) for handler in logger.handlers)
    return list(dict.fromkeys(handlers))


def _writes_to_console(handler: logging.Handler) -> bool:
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, (logging.FileHandler, StdoutHandler)):
        return False
    stream = handler.stream
    # Flask's docs' dictConfig writes to wsgi_errors_stream: the server's stderr.
    if stream is wsgi_errors_stream or stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        return True
    try:
        return stream.fileno() in (1, 2)
    except (AttributeError, OSError, ValueError):  # a stream with no descriptor (StringIO)
        return False


def revive_loggers(app: Flask) -> None:
    """Enable the app's loggers again after logging.config.dictConfig disabled them, as it does to every logger
    that exists and that its config does not name (disable_existing_loggers defaults to true): called after
    Production(app), it silenced the app's error tracebacks and access lines, where plain Flask, which makes
    app.logger on first use, kept them. As the app is loaded, the console handlers its config made after
    Production(app) write JSON too, as format_console_handlers says."""
    format_console_handlers()
    relay_null_handled_loggers()
    access = access_logger(app)
    if app.logger.disabled or access.disabled:
        app.logger.disabled = access.disabled = False
        app.logger.warning(
            "logging.config.dictConfig disabled the app's logger after Production(app) set it up; enabled again: "
            "pass disable_existing_loggers=False to dictConfig, or configure logging before Production(app)"
        )


def access_log_enabled(spec: Spec) -> bool:
    if spec.logging.access_log == "auto":
        # A proxy in front (nginx) already writes an access line with the same request id.
        return spec.proxy.trusted_hops == 0
    return bool(spec.logging.access_log)


def access_logger(app: Flask) -> logging.Logger:
    return app.logger.getChild("access")


def log_access(
    logger: logging.Logger,
    environ: Mapping[str, Any],
    status: int,
    seconds: float,
    rid: str,
    *,
    sent: int | None = None,
    cut: bool = False,
) -> None:
    """Write one access line; the record is made directly since its caller's file and line say nothing.

    sent: the bytes of a streamed body the server sent; cut: it ended before the body did."""
    if not logger.isEnabledFor(logging.INFO):
        return
    method = environ.get("REQUEST_METHOD", "")
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if not path.isascii():
        # WSGI hands the path's bytes over as latin-1 text: undone, "/ü" is logged as itself, not "/Ã¼".
        with contextlib.suppress(UnicodeEncodeError):  # a server that decoded it already
            path = path.encode("latin-1").decode("utf-8", "replace")
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %s %.1fms, cut short after %d bytes" if cut else "%s %s %s %.1fms",
        (method, path, status, seconds * 1000, sent or 0) if cut else (method, path, status, seconds * 1000),
        None,
        extra=access_fields(environ, path, status, int(seconds * 1e9), rid),
    )
    if sent is not None:
        record.__dict__[BODY_BYTES_FIELD] = sent
        if cut:
            record.__dict__[OUTCOME_FIELD] = "failure"
    logger.handle(record)


def access_fields(environ: Mapping[str, Any], path: str, status: int, duration_ns: int, rid: str) -> dict[str, Any]:
    """ECS fields of one access line."""
    return {
        "http.request.method": environ.get("REQUEST_METHOD", ""),
        "url.path": path,
        "http.response.status_code": status,
        "event.duration": duration_ns,
        "client.ip": client_ip(environ),
        "user_agent.original": environ.get("HTTP_USER_AGENT"),
        REQUEST_ID_FIELD: rid,
    }


def client_ip(environ: Mapping[str, Any]) -> str | None:
    """The access line's client.ip: the client's address as proxy trust read it, else the peer's; None where the
    peer came over a unix socket (nginx, or any local process) and no trusted proxy named the client. ECS's
    client.ip holds an IP address: "" is none, and "0.0.0.0" one the client never had; the field is left out."""
    address = environ.get(CLIENT_ADDRESS_KEY) or environ.get("REMOTE_ADDR")
    return None if address in _NO_PEER_ADDRESS else address
