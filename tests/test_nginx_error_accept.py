"""nginx's own errors choose JSON or HTML as the app's error pages do (errorpages.wants_json: werkzeug's best_match
of text/html and application/json), for the Accept headers clients send, quality values too.

nginx's choice was a regex for "application/json before text/html": `text/html;q=0, application/json` and
`text/html;q=0.5, application/json;q=0.9`, which prefer JSON and get it from the app, got nginx's HTML page. Then
a type named twice counted at its leftmost q, where werkzeug takes the highest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from flask import Flask

from flaskprod.runtime.errorpages import wants_json
from tests.test_nginx_error_pages import nginx_alone

MOUNT = "/shop"  # the prefix the app mounts itself under, as up finds it (AppInfo.mount_prefixes)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7"
)
# (path, Content-Type, Accept, whether the app answers JSON)
CASES: tuple[tuple[str, str | None, str | None, bool], ...] = (
    # Browsers: a page, an image, a script; curl, requests, httpx and fetch() send */*; some send nothing.
    ("/page", None, FIREFOX, False),
    ("/page", None, CHROME, False),
    ("/page", None, "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", False),
    ("/page", None, "*/*", False),
    ("/page", None, None, False),
    ("/page", None, "text/plain", False),
    ("/page", None, "text/*", False),
    # API clients: axios, jQuery's getJSON, a plain JSON Accept, any case.
    ("/page", None, "application/json, text/plain, */*", True),
    ("/page", None, "application/json, text/javascript, */*; q=0.01", True),
    ("/page", None, "application/json", True),
    ("/page", None, "Application/JSON", True),
    ("/page", None, "application/*", True),
    ("/page", None, "*/*;q=0.1, application/json", True),
    # Quality values: the higher one wins; a tie goes to HTML unless JSON was named more exactly.
    ("/page", None, "application/json, text/html;q=0.1", True),
    ("/page", None, "text/html;q=0, application/json", True),
    ("/page", None, "text/html;q=0.5, application/json;q=0.9", True),
    ("/page", None, "application/json;q=0.5, text/html", False),
    ("/page", None, "application/json;q=0.9, text/html;q=0.8", True),
    ("/page", None, "text/html;q=0.8, application/json;q=0.80", False),
    ("/page", None, "application/json;q=0.55, text/html;q=0.5", True),
    ("/page", None, "application/json;q=0.5, text/html;q=0.55", False),
    ("/page", None, "application/json;q=0.05, */*;q=0.5", False),
    ("/page", None, "application/json;q=1.000, text/html;q=0.999", True),
    ("/page", None, "text/html;q=1.0, application/json;q=1", False),
    ("/page", None, "application/json;q=0, */*", False),
    ("/page", None, "application/json;q=0.5, */*;q=0.5", True),
    ("/page", None, "application/json ; q=0.9 , text/html ; q=0.8", True),
    # A type named twice counts at its highest q, as werkzeug sorts its items by q; nginx took the leftmost.
    ("/page", None, "application/json;q=0.1, text/html;q=0.5, application/json;q=0.9", True),
    ("/page", None, "text/html;q=0.1, application/json;q=0.5, text/html;q=0.9", False),
    ("/page", None, "*/*;q=0.1, application/json;q=0.5, */*;q=0.9", False),
    ("/page", None, "application/json;q=0, text/html;q=0.5, application/json;q=0.8", True),
    ("/page", None, "application/*;q=0.05, text/html;q=0.1, application/*;q=0.25", True),
    # What werkzeug passes over: an invalid q drops the item, a parameter besides q names another type.
    ("/page", None, "application/json;q=2, text/html", False),
    ("/page", None, "text/html;q=0., application/json", True),
    ("/page", None, "application/json; charset=utf-8", False),
    ("/page", None, "application/problem+json", False),
    # A path under /api/ or a JSON body is JSON whatever the Accept.
    ("/api/items", None, FIREFOX, True),
    ("/page", "application/json", FIREFOX, True),
    ("/page", "application/merge-patch+json; charset=utf-8", "*/*", True),
    ("/page", "text/plain", "*/*", False),
    # An app mounted under a prefix (Flask's APPLICATION_ROOT recipe) has its API under it: its request.path
    # leaves the prefix out.
    ("/shop/api/items", None, FIREFOX, True),
    ("/shop/page", None, FIREFOX, False),
    ("/shop/page", None, "application/json", True),
    # The page's Content-Type is its own, not the one the path's extension names.
    ("/report.json", None, FIREFOX, False),
    ("/logo.png", None, "application/json", True),
)


@pytest.fixture(scope="module")
def nginx_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx with no app server behind it: each request gets its 502, on the app's page."""
    with nginx_alone(tmp_path_factory.mktemp("nginx"), mount_prefixes=(MOUNT,)) as port:
        yield f"http://127.0.0.1:{port}"


def apps_choice(path: str, headers: dict[str, str]) -> bool:
    """wants_json for a request to path, which under MOUNT reaches the app with that prefix as its SCRIPT_NAME."""
    script_name = MOUNT if path.startswith(MOUNT + "/") else ""
    environ = {"SCRIPT_NAME": script_name, "PATH_INFO": path.removeprefix(script_name)}
    with Flask(__name__).test_request_context(headers=headers, environ_overrides=environ):
        return wants_json()


def nginx_choice(url: str, path: str, headers: dict[str, str | None]) -> bool:
    response = requests.get(url + path, headers=headers, timeout=5)
    assert response.status_code == 502, response.text
    content_type = response.headers["Content-Type"]
    assert content_type in ("application/json", "text/html; charset=utf-8"), content_type
    return content_type == "application/json"


@pytest.mark.parametrize(("path", "content_type", "accept", "json"), CASES)
def test_nginx_chooses_json_or_html_as_the_app_does(
    nginx_url: str, path: str, content_type: str | None, accept: str | None, json: bool
) -> None:
    # requests sends "Accept: */*" unless told otherwise: None removes the header.
    headers: dict[str, str | None] = {"Accept": accept, "Content-Type": content_type}
    sent = {name: value for name, value in headers.items() if value is not None}
    assert apps_choice(path, sent) is json
    assert nginx_choice(nginx_url, path, headers) is json
