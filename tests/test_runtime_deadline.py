"""The soft request deadline: past server.timeout the app answers 504 and the worker is free again."""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flaskprod import Production
from flaskprod.runtime.deadline import Watchdog
from flaskprod.spec import Spec


def make_app(**settings: object) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32))

    @app.get("/api/sleep/<float:seconds>")
    def sleep(seconds: float) -> dict[str, float]:
        time.sleep(seconds)
        return {"slept": seconds}

    @app.get("/api/spin/<float:seconds>")
    def spin(seconds: float) -> dict[str, float]:
        # Python-level work (a busy loop), which a deadline can interrupt on any thread.
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return {"spun": seconds}

    Production(app, spec=Spec().replace(**{"server.timeout": 1, "logging.access_log": False, **settings}))
    return app


def deadline_lines(out: str) -> list[dict[str, Any]]:
    """The app's JSON log lines on stdout that report a request stopped at its deadline."""
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if "deadline" in line["message"]]


def test_request_past_the_deadline_gets_504_and_is_logged(capsys: pytest.CaptureFixture[str]) -> None:
    client = make_app().test_client()
    started = time.monotonic()
    response = client.get("/api/sleep/10.0")
    assert response.status_code == 504
    assert 0.9 <= time.monotonic() - started < 5
    assert response.json["error"]["status"] == 504
    assert "Traceback" not in response.text
    [line] = deadline_lines(capsys.readouterr().out)
    assert line["log.level"] == "error"
    assert "in sleep" in line["error"]["stack_trace"]  # the traceback shows where the request was stuck
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


def in_thread(client: FlaskClient, path: str) -> tuple[int, float]:
    """GET path on a thread other than the main one, as a threaded server runs requests."""
    results: list[tuple[int, float]] = []

    def get() -> None:
        started = time.monotonic()
        status = client.get(path).status_code
        results.append((status, time.monotonic() - started))

    worker = threading.Thread(target=get)
    worker.start()
    worker.join(15)
    assert results, f"{path} did not finish"
    return results[0]


def test_threaded_request_running_python_is_stopped_at_the_deadline(capsys: pytest.CaptureFixture[str]) -> None:
    client = make_app().test_client()
    status, elapsed = in_thread(client, "/api/spin/10.0")
    assert status == 504
    assert 0.9 <= elapsed < 2
    assert deadline_lines(capsys.readouterr().out)
    # Fast requests on threads after it are untouched, and so is one that ends near its deadline.
    assert in_thread(client, "/api/spin/0.01")[0] == 200
    assert in_thread(client, "/api/spin/0.9")[0] == 200


def test_threaded_request_in_one_long_c_call_is_stopped_when_the_call_returns() -> None:
    """A signal handler cannot run on a thread, so a sleep is not cut short: the 504 comes after it."""
    status, elapsed = in_thread(make_app().test_client(), "/api/sleep/1.5")
    assert status == 504
    assert elapsed >= 1.5


def test_many_threads_each_get_their_own_deadline() -> None:
    client = make_app().test_client()
    outcomes: list[int] = []
    lock = threading.Lock()

    def get(path: str) -> None:
        status = client.get(path).status_code
        with lock:
            outcomes.append(status)

    paths = ["/api/spin/5.0"] * 3 + ["/api/spin/0.2"] * 5
    threads = [threading.Thread(target=get, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert sorted(outcomes) == [200] * 5 + [504] * 3


def test_the_watchdog_does_not_wake_for_every_request() -> None:
    """Waking it per request would cost a thread switch each time; it looks once per deadline length."""
    watchdog = Watchdog()

    def requests() -> None:
        for _ in range(500):
            watchdog.arm(30)
            watchdog.disarm()
            time.sleep(0.0005)  # the gaps in which no request is armed

    worker = threading.Thread(target=requests)
    worker.start()
    worker.join(30)
    assert watchdog.looks <= 2
