"""Error pages: JSON for API clients, small HTML otherwise, never a traceback."""

from __future__ import annotations

import secrets

import pytest
from flask import Flask, abort
from werkzeug.exceptions import HTTPException

from flaskprod import Production
from flaskprod.spec import Spec


@pytest.fixture()
def app() -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom() -> str:
        raise ValueError("password=hunter2 in /srv/app/settings.py")

    @app.get("/api/boom")
    def api_boom() -> str:
        raise ValueError("password=hunter2")

    @app.get("/forbidden")
    def forbidden() -> str:
        abort(403, "<script>alert(1)</script>")

    @app.post("/only-post")
    def only_post() -> str:
        return "ok"

    return app


def start(app: Flask, **settings: object) -> Flask:
    Production(app, spec=Spec().replace(**{"logging.access_log": False, **settings}))
    return app


def test_browser_gets_html(app: Flask) -> None:
    response = start(app).test_client().get("/nope", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "<h1>404 Not Found</h1>" in response.text
    assert response.headers["X-Request-ID"] in response.text


def test_api_client_gets_json(app: Flask) -> None:
    response = start(app).test_client().get("/nope", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    error = response.json["error"]
    assert error["status"] == 404
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert "not found" in error["message"].lower()


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/api/missing", {}),
        ("/nope", {"json": {"a": 1}}),
    ],
)
def test_api_paths_and_json_requests_get_json(app: Flask, path: str, kwargs: dict[str, object]) -> None:
    response = start(app).test_client().post(path, **kwargs)  # type: ignore[arg-type]
    assert response.mimetype == "application/json"
    assert response.json["error"]["status"] in (404, 405)


@pytest.mark.parametrize(
    ("accept", "mimetype"),
    [
        ("*/*", "text/html"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),  # a browser
        ("text/html, application/json", "text/html"),
        ("application/json, text/plain, */*", "application/json"),  # axios: was HTML, */* ranking with JSON
        ("application/json, */*;q=0.5", "application/json"),
    ],
)
def test_json_named_before_html_or_a_wildcard_gets_json(app: Flask, accept: str, mimetype: str) -> None:
    assert start(app).test_client().get("/nope", headers={"Accept": accept}).mimetype == mimetype


@pytest.mark.parametrize(("path", "mimetype"), [("/boom", "text/html"), ("/api/boom", "application/json")])
def test_500_never_leaks_the_exception(app: Flask, path: str, mimetype: str) -> None:
    response = start(app).test_client().get(path)
    assert response.status_code == 500
    assert response.mimetype == mimetype
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "ValueError" not in response.text


def test_message_is_escaped_in_html(app: Flask) -> None:
    response = start(app).test_client().get("/forbidden")
    assert response.status_code == 403
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text


def test_allow_header_kept_on_405(app: Flask) -> None:
    response = start(app).test_client().get("/only-post", headers={"Accept": "application/json"})
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.json["error"]["status"] == 405


def test_apps_own_handlers_win(app: Flask) -> None:
    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        return "custom 404", 404

    client = start(app).test_client()
    assert client.get("/nope", headers={"Accept": "application/json"}).text == "custom 404"
    # Other codes still get the JSON page.
    assert client.get("/forbidden", headers={"Accept": "application/json"}).json["error"]["status"] == 403


def test_apps_catch_all_handler_still_answers_http_errors(app: Flask) -> None:
    # Flask gives an app's errorhandler(Exception) every HTTP error too; the HTTPException handler
    # registered here is nearer in the class tree and would otherwise take them from it.
    @app.errorhandler(Exception)
    def everything(error: Exception) -> tuple[dict[str, object], int]:
        code = getattr(error, "code", None) or 500
        return {"handled_by": "app", "code": code}, code

    client = start(app).test_client()
    assert client.get("/nope").json == {"handled_by": "app", "code": 404}
    assert client.get("/forbidden").json == {"handled_by": "app", "code": 403}
    assert client.get("/boom").json == {"handled_by": "app", "code": 500}


def test_catch_all_that_passes_http_errors_through_gets_the_error_page(app: Flask) -> None:
    # Flask's documented generic handler: "pass through HTTP errors" by returning them.
    @app.errorhandler(Exception)
    def everything(error: Exception) -> object:
        if isinstance(error, HTTPException):
            return error
        return "app's 500 page", 500

    client = start(app).test_client()
    response = client.get("/nope", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.json["error"]["request_id"] == response.headers["X-Request-ID"]
    assert client.get("/boom").text == "app's 500 page"


def test_error_pages_switch(app: Flask) -> None:
    client = start(app, **{"security.error_pages": False}).test_client()
    response = client.get("/nope", headers={"Accept": "application/json"})
    assert response.mimetype == "text/html"
    assert "The requested URL was not found" in response.text
