"""The soft request deadline: past server.timeout the app answers 504 and the worker is free again."""

from __future__ import annotations

import logging
import secrets
import threading
import time

import pytest
from flask import Flask

from flaskprod import Production
from flaskprod.spec import Spec


def make_app(**settings: object) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32))

    @app.get("/api/sleep/<float:seconds>")
    def sleep(seconds: float) -> dict[str, float]:
        time.sleep(seconds)
        return {"slept": seconds}

    Production(app, spec=Spec().replace(**{"server.timeout": 1, "logging.access_log": False, **settings}))
    return app


def test_request_past_the_deadline_gets_504_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    client = make_app().test_client()
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/sleep/10.0")
    assert response.status_code == 504
    assert 0.9 <= time.monotonic() - started < 5
    assert response.json["error"]["status"] == 504
    assert "Traceback" not in response.text
    record = next(r for r in caplog.records if "deadline" in r.getMessage())
    assert record.exc_info is not None  # the traceback shows where the request was stuck
    # The timer is cleared once a request ends: a fast request after it is untouched.
    assert client.get("/api/sleep/0.01").status_code == 200
    time.sleep(1.2)
    assert client.get("/api/sleep/0.01").status_code == 200


def test_fast_requests_are_not_affected() -> None:
    client = make_app().test_client()
    for _ in range(3):
        assert client.get("/api/sleep/0.3").json == {"slept": 0.3}


def test_switched_off_or_under_testing_no_deadline() -> None:
    assert make_app(**{"server.soft_timeout": False}).test_client().get("/api/sleep/1.3").status_code == 200
    # Production reads app.testing at init_app; a testing app from the start runs without the timer.
    testing = Flask(__name__)
    testing.config.update(TESTING=True, SECRET_KEY=secrets.token_hex(32))
    testing.add_url_rule("/s", view_func=lambda: (time.sleep(1.3), "ok")[1])
    Production(testing, spec=Spec().replace(**{"server.timeout": 1}))
    assert testing.test_client().get("/s").status_code == 200


def test_threaded_servers_are_left_to_the_hard_timeout() -> None:
    client = make_app().test_client()
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(client.get("/api/sleep/1.3").status_code))
    worker.start()
    worker.join(10)
    assert results == [200]
