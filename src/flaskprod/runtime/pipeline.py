"""The per-request WSGI layer: request id, security headers, metrics, the access line and the probes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import conversations, deadline
from .body import hold_chunked_body
from .logs import REQUEST_ID_FIELD, REQUEST_ID_KEY, is_sane_request_id, log_access
from .metrics import KNOWN_METHODS, OTHER_METHOD, UNMATCHED, HttpMetrics

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# Set by the proxy in front (flaskprod's nginx: "t=" and its $msec) as it passes the request on.
REQUEST_START_KEY = "HTTP_X_REQUEST_START"
# The metrics Route of the request, set (and counted as in progress) by the before_request hook once
# Flask has matched the route: Flask clears its request before this layer regains control.
ROUTE_KEY = "flaskprod.route"
Header = tuple[str, str]
# What an app that must not serve (the gate's refusal) answers: the reason is logged, never sent.
REFUSED = b"refused: unsafe configuration, see the log\n"
REFUSED_HEADERS = (("Content-Type", "text/plain"), ("Content-Length", str(len(REFUSED))))
# Turns nginx's buffering off for one response (server-sent events).
UNBUFFERED = ("X-Accel-Buffering", "no")
# Set on an exception a streamed body raised once this layer has logged it, to the request's id: the server's own
# record of it (Gunicorn's "Error handling request", uWSGI's printed traceback), with no id, would be a second one.
LOGGED_MARK = "__flaskprod_logged__"
# Set by a server's entry whose clean close of a body with no length looks like its end (uWSGI's): a callable that
# makes the close of the request's connection a reset, for a streamed body that failed, so its client sees the cut.
RESET_KEY = "flaskprod.reset_connection"
# A probe answers with (status line, headers, body); it runs outside Flask so the app's own hooks
# (login redirects, sessions, per-request DB work) never decide whether the process is healthy.
Probe = Callable[["WSGIEnvironment"], tuple[str, list[Header], bytes]]


def seconds_since(request_start: str, now: float) -> float | None:
    """now minus a proxy's X-Request-Start: "t=" and seconds (nginx's $msec), milliseconds or microseconds.

    None for a value that is not a time; never below 0, as nginx's clock is read at millisecond steps.
    """
    try:
        sent = float(request_start.removeprefix("t="))
    except ValueError:
        return None
    if sent > 1e14:
        sent /= 1e6
    elif sent > 1e11:
        sent /= 1e3
    if not 0 < sent <= now + 60:
        return None
    return now - sent if now > sent else 0.0


def is_websocket(environ: WSGIEnvironment) -> bool:
    """Whether the request is a WebSocket handshake (RFC 6455: Upgrade: websocket, in any case)."""
    upgrade = environ.get("HTTP_UPGRADE")
    return upgrade is not None and upgrade.lower() == "websocket"


def unbuffer_event_stream(headers: list[Header]) -> bool:
    """Ask nginx not to buffer a stream of server-sent events, unless the app said either way itself; whether the
    response is one.

    nginx holds an upstream's response until a buffer fills (proxy_buffering, uwsgi_buffering), so events of a
    few bytes each reached the browser all at once as the stream ended. Other streamed bodies stay buffered: a
    slow client then holds nginx's buffers, not a worker. nginx reads X-Accel-Buffering and does not pass it on.
    """
    event_stream = said = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == "x-accel-buffering":
            said = True
        elif lowered == "content-type" and value.lower().startswith("text/event-stream"):
            event_stream = True
    if event_stream and not said:
        headers.append(UNBUFFERED)
    return event_stream


def json_probe_response(status: int, body: dict[str, Any]) -> tuple[str, list[Header], bytes]:
    data = json.dumps(body).encode()
    reason = {200: "OK", 403: "FORBIDDEN", 503: "SERVICE UNAVAILABLE"}.get(status, "")
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("Content-Length", str(len(data)))]
    return f"{status} {reason}", headers, data


class RequestPipeline:
    """Wraps the Flask WSGI app; everything here runs on every request, so it avoids needless work."""

    def __init__(
        self,
        wsgi_app: WSGIApplication,
        *,
        request_id_header: str,
        trust_request_id: bool,
        headers: list[Header],
        https_headers: list[Header],
        metrics: HttpMetrics | None,
        access_logger: logging.Logger | None,
        quiet_paths: frozenset[str],
        probes: dict[str, Probe],
        request_timeout: float | None = None,
        trust_start: bool = False,
        count_queue: bool = False,
        gate: Callable[[], str | None] | None = None,
        error_logger: logging.Logger | None = None,
        body_limit: Callable[[], int | None] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.wsgi_app = wsgi_app
        self._rid_environ = "HTTP_" + request_id_header.upper().replace("-", "_")
        self._rid_header = request_id_header
        self._trust_rid = trust_request_id
        self._headers = headers
        self._https_headers = headers + https_headers
        self._header_names = frozenset(name.lower() for name, _ in self._https_headers)
        self._metrics = metrics
        self._access = access_logger
        self._quiet = quiet_paths
        self._probes = probes
        self._timeout = request_timeout
        # X-Request-Start, from a proxy trusted to say when it passed the request on: read for the deadline,
        # which counts from then as nginx's read timeout does, and for the wait's histogram.
        self._count_queue = trust_start and count_queue and metrics is not None
        self._read_start = self._count_queue or (trust_start and request_timeout is not None)
        # Run before the first request: why the app as served must not serve, or None (then never again).
        self._gate = gate
        self._errors = error_logger
        self._body_limit = body_limit  # the app's MAX_CONTENT_LENGTH, read per chunked request
        # The app's config, whose TESTING is read per request: a test suite's fixture sets it after the app's
        # factory ran Production(app), and its requests then run without the deadline's SIGALRM or watchdog thread
        # (pytest-timeout and friends own SIGALRM), as those of an app testing from the start do.
        self._config: Mapping[str, Any] = config if config is not None else {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._gate is not None:
            if self._gate() is not None:  # the reason is in the log; a client learns nothing of the config
                start_response("500 INTERNAL SERVER ERROR", [*REFUSED_HEADERS])
                return [REFUSED]
            self._gate = None
        t0 = time.perf_counter()
        # Read first: the wait ends as the app starts the request; it is counted with the request's figures,
        # and the request's deadline counts from its start, as nginx's read timeout does.
        since_start = None
        if self._read_start and (request_start := environ.get(REQUEST_START_KEY)):
            since_start = seconds_since(request_start, time.time())
        queued = since_start if self._count_queue else None
        rid = environ.get(self._rid_environ) if self._trust_rid else None
        if rid is None or not is_sane_request_id(rid):
            rid = os.urandom(16).hex()
        environ[REQUEST_ID_KEY] = rid
        extra = self._https_headers if environ.get("wsgi.url_scheme") == "https" else self._headers
        status_code = 500
        streamed = False  # no Content-Length: the body is made as the server reads it, after the app returns
        # A WebSocket or a stream of server-sent events: it lasts as long as the client listens, so it is counted
        # and in progress, but its minutes are no request's latency, and the duration histogram leaves them out.
        # The membership test first: a call per request is a measurable share of this layer's cost.
        conversation = websocket = "HTTP_UPGRADE" in environ and is_websocket(environ)

        def start(status: str, headers: list[Header], exc_info: Any = None) -> Any:
            nonlocal status_code, streamed, conversation
            status_code = int(status[:3])
            streamed = True
            # A loop, not a set of the names: on a small request each comprehension costs a microsecond.
            for name, _ in headers:
                lowered = name.lower()
                if lowered == "content-length":
                    streamed = False
                elif lowered in self._header_names:  # the app set one of them itself: keep its value
                    present = {name.lower() for name, _ in headers}
                    streamed = "content-length" not in present
                    headers += [(name, value) for name, value in extra if name.lower() not in present]
                    break
            else:
                headers += extra
            headers.append((self._rid_header, rid))
            if streamed and unbuffer_event_stream(headers):
                conversation = True
            return start_response(status, headers, exc_info)

        if environ.get("HTTP_TRANSFER_ENCODING"):
            hold_chunked_body(environ, self._body_limit() if self._body_limit is not None else None)
        path = environ.get("PATH_INFO", "")
        probe = self._probes.get(path)
        handed_on = False  # the body finishes the request when the server closes it
        if websocket:  # its view holds this thread for the whole conversation
            conversations.opened()
        try:
            if probe is not None:
                status, headers, data = probe(environ)
                start(status, headers)
                return [] if environ.get("REQUEST_METHOD") == "HEAD" else [data]
            if self._timeout is not None and not self._config.get("TESTING"):
                waited = deadline.counted_wait(self._timeout, since_start)
                if waited < self._timeout and not conversation:
                    body = deadline.call_with_deadline(self._timeout, waited, self.wsgi_app, environ, start)
                elif waited < self._timeout:  # its view holds the connection for as long as the conversation lasts
                    body = self.wsgi_app(environ, start)
                else:
                    # Through Flask all the same, so the 504 is the app's page, logged and counted under its route:
                    # Production's first before_request hook raises it before any of the app's code.
                    environ[deadline.EXPIRED_KEY] = True
                    body = self.wsgi_app(environ, start)
                stopped = deadline.take_stopped()
                if stopped is not None:
                    self.deadline_stopped(stopped, environ, status_code, rid)
            else:
                body = self.wsgi_app(environ, start)
            if streamed:
                # Counted, timed and logged once the server has read it all and closes it.
                handed_on = True
                ending = (self, environ, path, UNMATCHED, status_code, t0, queued, conversation, rid)
                if conversation and not websocket:  # an event stream: the server's thread holds it while it lasts
                    conversations.opened()
                    return StreamedBody(body, ending, holds=True)
                return StreamedBody(body, ending)
            return body
        finally:
            if websocket:
                conversations.closed()
            if not handed_on:  # finish(), inline: a method call is a tenth of this layer's cost
                elapsed = time.perf_counter() - t0
                if self._metrics is not None:
                    timed = None if conversation else elapsed
                    self._count(environ, path if probe is not None else UNMATCHED, status_code, timed, queued)
                if self._access is not None and path not in self._quiet:
                    log_access(self._access, environ, status_code, elapsed, rid)

    def finish(
        self,
        environ: WSGIEnvironment,
        path: str,
        endpoint: str,
        status: int,
        t0: float,
        queued: float | None,
        conversation: bool,
        rid: str,
        *,
        sent: int | None = None,
        cut: bool = False,
    ) -> None:
        """Count the request (under endpoint when the route hook did not run, and untimed when it was a conversation)
        and write its access line; a streamed body's with the bytes the server sent of it, and whether it was cut."""
        elapsed = time.perf_counter() - t0
        if self._metrics is not None:
            self._count(environ, endpoint, status, None if conversation else elapsed, queued)
        if self._access is not None and path not in self._quiet:
            log_access(self._access, environ, status, elapsed, rid, sent=sent, cut=cut)

    def deadline_stopped(
        self, stopped: deadline.RequestTimeout, environ: WSGIEnvironment, status: int, rid: str
    ) -> None:
        """Log a request its deadline stopped, whichever error handler answered it (an app's own for HTTPException
        replaces flaskprod's page). The traceback shows where it was stuck: the one clue to why it was slow."""
        if self._errors is not None:
            method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
            self._errors.error(
                "request stopped after its deadline (server.timeout): %s %s", method, path, exc_info=stopped,
                extra={REQUEST_ID_FIELD: rid, "http.response.status_code": status},
            )

    def stream_failed(self, environ: WSGIEnvironment, rid: str, exc: Exception) -> None:
        """Log the exception a streamed body raised as the server read it: Flask's error handling ended when the
        view returned, so this is the app's only record of it; marked as logged, for the server to leave it out of
        its own log (logged_by_the_app), which has no request id."""
        if self._errors is not None:
            method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
            self._errors.error(
                "exception while streaming the response to %s %s", method, path, exc_info=exc,
                extra={REQUEST_ID_FIELD: rid},
            )
            with contextlib.suppress(AttributeError):  # an exception that takes no attribute is logged twice
                setattr(exc, LOGGED_MARK, rid)

    def _count(
        self, environ: WSGIEnvironment, endpoint: str, status: int, elapsed: float | None, queued: float | None
    ) -> None:
        """Count the request under the route the hook found, else under endpoint (a probe's path, or unmatched);
        elapsed None leaves it out of the duration histogram."""
        assert self._metrics is not None
        route = environ.pop(ROUTE_KEY, None)
        if route is not None:
            self._metrics.finished(route, status, elapsed, was_started=True, queued=queued)
            return
        method = environ.get("REQUEST_METHOD", "")
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        route = self._metrics.route(method, endpoint)
        self._metrics.finished(route, status, elapsed, was_started=False, queued=queued)


def logged_by_the_app(exc: BaseException | None) -> str | None:
    """The request id an exception was logged with by this layer (RequestPipeline.stream_failed), else None: the server
    that catches it next logs it again only when the app did not."""
    rid = getattr(exc, LOGGED_MARK, None)
    return rid if isinstance(rid, str) else None


class StreamedBody:
    """A streamed response's body (stream_with_context, a generator): its view runs while the server reads it,
    so the request is in progress, timed and logged until the server closes it (PEP 3333: always, even
    after an error or a client gone)."""

    __slots__ = ("_began", "_body", "_ending", "_holds", "_sent", "_whole")

    def __init__(self, body: Iterable[bytes], ending: tuple[Any, ...], *, holds: bool = False) -> None:
        self._body = body
        self._ending: tuple[Any, ...] | None = ending  # the pipeline and the arguments of its finish
        self._holds = holds  # a conversation counted open (conversations.opened) until the server closes it
        self._sent = 0  # bytes of the body the server has written: it asks for a chunk once it wrote the last
        self._began = False  # a chunk went to the server, which sends the status line with the first
        # The client got a whole response: the body's end, or the server's own error page for a body that failed
        # before its first chunk.
        self._whole = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._body:
                self._began = True
                yield chunk
                self._sent += len(chunk)
        except Exception as exc:
            # Re-raised so the server cuts the response short: ended cleanly, a cut body would look whole.
            if self._ending is not None:
                pipeline, environ, path, endpoint, _status, *rest = self._ending
                pipeline.stream_failed(environ, rest[-1], exc)
                self._ending = (pipeline, environ, path, endpoint, 500, *rest)  # counted and logged as failed
                # Nothing sent yet, the server answers its own 500 page, whole (Gunicorn, most servers); uWSGI sends
                # the app's status with no body instead, so there it is cut like the rest.
                self._whole = not self._began and "uwsgi.version" not in environ
                reset = environ.get(RESET_KEY)
                if reset is not None:
                    reset()
            raise
        self._whole = True

    def close(self) -> None:
        ending, self._ending = self._ending, None
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if ending is not None:
                if self._holds:
                    conversations.closed()
                pipeline, *arguments = ending
                # Closed before its end: the client left, or the server stopped it (its worker timeout killing a
                # sync worker mid-stream). Its status was sent as the body began, so the line says it was cut;
                # an event stream's end is its client leaving, which is no failure.
                cut = not self._whole and not self._holds
                pipeline.finish(*arguments, sent=self._sent, cut=cut)
