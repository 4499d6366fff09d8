"""Error responses as JSON or a small HTML page, never with a traceback."""

from __future__ import annotations

import json

from flask import Flask, Response, current_app, request
from markupsafe import escape
from werkzeug.exceptions import HTTPException

from .deadline import RequestTimeout
from .logs import request_id

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{code} {name}</title></head>
<body><h1>{code} {name}</h1><p>{message}</p>{rid}</body></html>
"""


def wants_json() -> bool:
    """JSON for API clients: /api/ paths, JSON requests, or an Accept that ranks JSON above HTML."""
    if request.path.startswith("/api/") or request.is_json:
        return True
    accept = request.accept_mimetypes
    return accept["application/json"] > accept["text/html"]


def error_response(exc: HTTPException) -> Response | HTTPException:
    if exc.code is None:  # not an error (e.g. a bare HTTPException wrapping a response)
        return exc
    if isinstance(exc, RequestTimeout):
        # The traceback shows where the request was stuck: the one clue to why it was slow.
        current_app.logger.error("request stopped after its deadline (server.timeout)", exc_info=exc)
    code = exc.code
    name = exc.name
    # An InternalServerError's description is Werkzeug's generic text, never the original error.
    message = exc.description or name
    rid = request_id()
    if wants_json():
        body = json.dumps({"error": {"status": code, "message": message, "request_id": rid}})
        mimetype = "application/json"
    else:
        rid_html = f"<p>Request id: <code>{escape(rid)}</code></p>" if rid else ""
        body = _HTML.format(code=code, name=escape(name), message=escape(message), rid=rid_html)
        mimetype = "text/html"
    response = Response(body, status=code, mimetype=mimetype)
    # Keep what the exception says about the response, such as Allow on 405 or WWW-Authenticate on 401.
    for header, value in exc.get_headers():
        if header.lower() != "content-type":
            response.headers[header] = value
    return response


def register_error_pages(app: Flask) -> None:
    """Handle every HTTP error, unless the app already has its own handler for HTTPException.

    Unhandled exceptions still reach Flask's handle_exception, which logs them with the traceback
    (and the request id, through the log filter) and then answers with a 500 handled here; in
    debug and testing they propagate as Flask intends.
    """
    existing = app.error_handler_spec.get(None, {}).get(None, {})
    if HTTPException not in existing:
        app.register_error_handler(HTTPException, error_response)
