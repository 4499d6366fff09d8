"""Error responses as JSON or a small HTML page, never with a traceback."""

from __future__ import annotations

import json

from flask import Flask, Response, current_app, g, request
from flask.typing import ErrorHandlerCallable, ResponseReturnValue
from markupsafe import escape
from werkzeug.exceptions import HTTPException

from .deadline import PASSED_IN_A_WAIT, RequestTimeout
from .logs import request_id

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{code} {name}</title></head>
<body><h1>{code} {name}</h1><p>{message}</p>{rid}</body></html>
"""


def wants_json() -> bool:
    """JSON for API clients: /api/ paths, JSON requests, or an Accept preferring JSON to HTML by werkzeug's
    best_match (the higher q, then the more exact name; a tie is HTML). A wildcard beside JSON does not tip it to
    HTML: axios asks with "application/json, text/plain, */*". nginx's own errors choose alike
    (render/nginx.py, error_accept_maps)."""
    if request.path.startswith("/api/") or request.is_json:
        return True
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"


def _apps_catch_all() -> ErrorHandlerCallable | None:
    """The app's own errorhandler(Exception), which Flask would give HTTP errors too, but which this
    handler (registered for HTTPException, nearer in the exception's class tree) would shadow."""
    return current_app.error_handler_spec.get(None, {}).get(None, {}).get(Exception)


def error_body(code: int, name: str, message: str, rid: str | None, *, as_json: bool) -> tuple[str, str]:
    """The page and its mimetype; nginx's own errors answer the same (render/nginx.py)."""
    if as_json:
        return json.dumps({"error": {"status": code, "message": message, "request_id": rid}}), "application/json"
    rid_html = f"<p>Request id: <code>{escape(rid)}</code></p>" if rid else ""
    return _HTML.format(code=code, name=escape(name), message=escape(message), rid=rid_html), "text/html"


def error_response(exc: HTTPException) -> ResponseReturnValue:
    if exc.code is None:  # not an error (e.g. a bare HTTPException wrapping a response)
        return exc
    if exc.code == 500 and g.get(PASSED_IN_A_WAIT):  # what the wait raised as the deadline stopped it
        # Logged by the pipeline as any request its deadline stopped, with the wait's traceback: where it was stuck.
        stuck_in = getattr(exc, "original_exception", None)
        exc = RequestTimeout().with_traceback(stuck_in.__traceback__ if stuck_in is not None else None)
    catch_all = _apps_catch_all()
    if catch_all is not None:
        answer: ResponseReturnValue = current_app.ensure_sync(catch_all)(exc)
        if answer is not exc:  # Flask's documented "pass through HTTP errors" returns it: the page below
            return answer
    code = exc.code or 500  # never None here: that returned above, and RequestTimeout's is 504
    name = exc.name
    # An InternalServerError's description is Werkzeug's generic text, never the original error.
    message = exc.description or name
    body, mimetype = error_body(code, name, message, request_id(), as_json=wants_json())
    response = Response(body, status=code, mimetype=mimetype)
    # Keep what the exception says about the response, such as Allow on 405 or WWW-Authenticate on 401.
    for header, value in exc.get_headers():
        if header.lower() != "content-type":
            response.headers[header] = value
    return response


def register_error_pages(app: Flask) -> None:
    """Handle every HTTP error, unless the app already has its own handler for HTTPException; an
    errorhandler(Exception) of the app's sees each error first, as without this handler.

    Unhandled exceptions still reach Flask's handle_exception, which logs them with the traceback
    (and the request id, through the log filter) and then answers with a 500 handled here; in
    debug and testing they propagate as Flask intends.
    """
    existing = app.error_handler_spec.get(None, {}).get(None, {})
    if HTTPException not in existing:
        app.register_error_handler(HTTPException, error_response)
