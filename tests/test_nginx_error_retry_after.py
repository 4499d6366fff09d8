"""nginx's own 429 (the rate limit) and 503 tell a client how long to back off, as the app's may (Flask-Limiter's
Retry-After): the 429 one period of proxy.rate_limit, when limit_req takes the client's next request.

They carried no Retry-After: a client or load balancer that backs off had nothing to wait for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from flaskprod.render.nginx import rate_limit_retry_after
from tests.test_nginx_error_pages import BROWSER, JSON_CLIENT, assert_html_page, assert_json_page, nginx_alone
from tests.test_render_nginx import make_spec

# A location answering nginx's own 503, which none of the rendered conf's modules sends (limit_req answers 429).
UNAVAILABLE = "        location = /unavailable {\n            return 503;\n        }\n\n        location / {"


@contextmanager
def nginx_with(tmp_path: Path, rate: str, *, unavailable: bool = False) -> Iterator[str]:
    """nginx with no app server behind it, limiting each client to rate with no burst; its base URL."""
    tmp_path.mkdir(exist_ok=True)
    spec = make_spec(**{"proxy.rate_limit": rate, "proxy.rate_limit_burst": "0"})

    def with_unavailable(text: str) -> str:
        assert text.count("        location / {") == 1
        return text.replace("        location / {", UNAVAILABLE)

    with nginx_alone(tmp_path, spec, edit=with_unavailable if unavailable else None) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(("rate", "seconds"), [("1r/m", 60), ("30r/m", 2), ("7r/m", 9), ("10r/s", 1), ("1r/s", 1)])
def test_the_rate_limits_retry_after_is_one_period_of_its_rate(rate: str, seconds: int) -> None:
    assert rate_limit_retry_after(rate) == seconds


@pytest.mark.integration
def test_nginx_429_says_when_the_rate_limit_takes_the_next_request(tmp_path: Path) -> None:
    with nginx_with(tmp_path / "per-minute", "1r/m") as url:
        first = requests.get(url + "/page", headers=JSON_CLIENT, timeout=5)
        assert_json_page(first, 502)
        assert "Retry-After" not in first.headers
        limited = requests.get(url + "/page", headers=JSON_CLIENT, timeout=5)
        assert_json_page(limited, 429)
        assert limited.headers["Retry-After"] == "60"
        as_html = requests.get(url + "/page", headers=BROWSER, timeout=5)
        assert_html_page(as_html, 429)
        assert as_html.headers["Retry-After"] == "60"

    # What it says is true: once a client has waited that long, nginx takes its next request.
    with nginx_with(tmp_path / "per-second", "1r/s") as url:
        assert requests.get(url + "/page", timeout=5).status_code == 502
        limited = requests.get(url + "/page", timeout=5)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
        time.sleep(int(limited.headers["Retry-After"]) + 0.2)
        assert requests.get(url + "/page", timeout=5).status_code == 502


@pytest.mark.integration
def test_nginx_503_says_when_to_ask_again(tmp_path: Path) -> None:
    with nginx_with(tmp_path, "100r/s", unavailable=True) as url:
        unavailable = requests.get(url + "/unavailable", headers=JSON_CLIENT, timeout=5)
        assert unavailable.status_code == 503 and unavailable.headers["Content-Type"] == "application/json"
        assert unavailable.json()["error"]["status"] == 503
        assert unavailable.headers["Retry-After"] == "1"
