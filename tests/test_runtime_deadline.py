"""The soft request deadline: past server.timeout the app answers 504 and the worker is free again."""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.test import TestResponse

from flaskprod import Production
from flaskprod.runtime.deadline import CLOCK_SET_WRONG, RequestTimeout, Watchdog, call_with_deadline, counted_wait
from flaskprod.spec import Spec

SPIN = "/api/spin/<float:seconds>"  # the spin view's route, as the metrics name it


def make_app(*, setup: Callable[[Flask], None] | None = None, **settings: object) -> Flask:
    """setup: what the app's factory does to it before Production(app)."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), RAN=[])
    if setup is not None:
        setup(app)

    @app.before_request
    def before() -> None:
        app.config["RAN"].append("before_request")  # the app's own hook: runs ahead of its views

    @app.get("/api/sleep/<float:seconds>")
    def sleep(seconds: float) -> dict[str, float]:
        time.sleep(seconds)
        return {"slept": seconds}

    @app.get("/api/spin/<float:seconds>")
    def spin(seconds: float) -> dict[str, float]:
        # Python-level work (a busy loop), which a deadline can interrupt on any thread.
        app.config["RAN"].append("spin")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return {"spun": seconds}

    Production(app, spec=Spec().replace(**{"server.timeout": 1, "logging.access_log": False, **settings}))
    return app


def behind_nginx(**settings: object) -> Flask:
    """An app that trusts the one proxy in front (nginx in `up`) to say when it passed each request on."""
    return make_app(**{"proxy.trusted_hops": 1, **settings})


def sent(seconds_ago: float) -> dict[str, str]:
    """The X-Request-Start nginx sends ("t=" and its $msec), for a request it passed on seconds_ago."""
    return {"X-Request-Start": f"t={time.time() - seconds_ago:.3f}"}


def counted(app: Flask, status: int, endpoint: str = SPIN) -> float:
    registry = app.extensions["flaskprod"].registry
    labels = {"method": "GET", "endpoint": endpoint, "status": str(status)}
    return registry.get_sample_value("http_requests_total", labels) or 0.0


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


def test_a_websocket_outlasts_the_deadline_and_is_pinged_within_it() -> None:
    """A WebSocket's view holds the connection for the whole conversation: stopped at server.timeout, every socket
    closed after a second. flask-sock pings it within the timeout, so no proxy on the way closes it as idle."""
    app = make_app()
    app.add_url_rule("/ws", view_func=lambda: (time.sleep(1.3), "bye")[1], websocket=True)
    handshake = {"Upgrade": "WebSocket", "Connection": "Upgrade"}
    client = app.test_client()
    response = client.get("/ws", headers=handshake, environ_base={"wsgi.url_scheme": "ws"})
    assert (response.status_code, response.text) == (200, "bye")
    assert client.get("/api/sleep/1.3").status_code == 504  # an HTTP route still has its deadline
    assert client.get("/api/sleep/1.3", headers=handshake).status_code == 400  # and no handshake runs it without
    assert app.config["SOCK_SERVER_OPTIONS"] == {"ping_interval": 1}
    own = Flask(__name__)
    own.config.update(SECRET_KEY=secrets.token_hex(32), SOCK_SERVER_OPTIONS={"ping_interval": 50})
    Production(own, spec=Spec())
    assert own.config["SOCK_SERVER_OPTIONS"] == {"ping_interval": 50}
    assert make_app(**{"server.timeout": 300}).config["SOCK_SERVER_OPTIONS"] == {"ping_interval": 25}


def test_switched_off_or_under_testing_no_deadline() -> None:
    assert make_app(**{"server.soft_timeout": False}).test_client().get("/api/sleep/1.3").status_code == 200
    # Production reads app.testing at init_app; a testing app from the start runs without the timer.
    testing = Flask(__name__)
    testing.config.update(TESTING=True, SECRET_KEY=secrets.token_hex(32))
    testing.add_url_rule("/s", view_func=lambda: (time.sleep(1.3), "ok")[1])
    Production(testing, spec=Spec().replace(**{"server.timeout": 1}))
    assert testing.test_client().get("/s").status_code == 200


@pytest.mark.parametrize("threaded", [False, True], ids=["timer", "watchdog"])
def test_testing_set_after_production_runs_without_the_deadline(threaded: bool) -> None:
    """A test suite's fixture sets TESTING once the app's factory has run Production(app): its requests get no
    SIGALRM timer (pytest-timeout's) and are not stopped, as those of an app testing from the start."""
    app = make_app()
    app.config["TESTING"] = True
    timers: list[tuple[float, float]] = []
    app.add_url_rule("/timer", view_func=lambda: (timers.append(signal.getitimer(signal.ITIMER_REAL)), "ok")[1])
    client = app.test_client()
    assert client.get("/timer").status_code == 200
    assert timers == [(0.0, 0.0)]
    response, _ = timed_get(client, "/api/spin/1.3", threaded=threaded)
    assert response.status_code == 200
    app.config["TESTING"] = False  # read per request: the deadline is back
    response, _ = timed_get(client, "/api/spin/1.3", threaded=threaded)
    assert response.status_code == 504


def own_http_errors(app: Flask) -> None:
    """An app's own handler for every HTTP error, as flask-smorest's Api(app) registers."""

    def handle(exc: HTTPException) -> ResponseReturnValue:
        return jsonify(code=exc.code, status=exc.name), exc.code or 500

    app.register_error_handler(HTTPException, handle)


@pytest.mark.parametrize("threaded", [False, True], ids=["timer", "watchdog"])
@pytest.mark.parametrize("registered", ["after", "before"])
def test_the_deadline_is_logged_when_the_app_answers_http_errors_itself(
    threaded: bool, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """flask-smorest's handler for HTTPException answers the 504 in place of flaskprod's page: the client gets the
    app's JSON, and the log still says which request the deadline stopped, where, and why."""
    if registered == "after":
        app = make_app()
        own_http_errors(app)
    else:
        app = make_app(setup=own_http_errors)
    response, _ = timed_get(app.test_client(), "/api/spin/10.0", threaded=threaded)
    assert response.status_code == 504
    assert response.json == {"code": 504, "status": "Gateway Timeout"}  # the app's own answer
    [line] = deadline_lines(capsys.readouterr().out)
    assert line["log.level"] == "error"
    assert line["http"]["request"]["id"] == response.headers["X-Request-ID"]
    assert line["http"]["response"]["status_code"] == 504
    assert line["message"].endswith(": GET /api/spin/10.0")
    assert line["error"]["type"] == "RequestTimeout"
    assert "in spin" in line["error"]["stack_trace"]  # where the request was stuck


def test_a_deadline_caught_outside_a_request_is_not_logged_by_the_next(capsys: pytest.CaptureFixture[str]) -> None:
    """call_with_deadline raising to its own caller (a job, a test) leaves nothing for a later request to log."""
    with pytest.raises(RequestTimeout):
        call_with_deadline(0.2, 0.0, time.sleep, 2)
    assert make_app().test_client().get("/api/sleep/0.01").status_code == 200
    assert not deadline_lines(capsys.readouterr().out)


def timed_get(client: FlaskClient, path: str, *, threaded: bool, **kwargs: Any) -> tuple[TestResponse, float]:
    """GET path and how long it took: on the main thread, as a single-threaded worker runs requests (the
    deadline is a timer), or on another, as a threaded one does (the watchdog raises in it)."""
    results: list[tuple[TestResponse, float]] = []

    def get() -> None:
        started = time.monotonic()
        response = client.get(path, **kwargs)
        results.append((response, time.monotonic() - started))

    if not threaded:
        get()
        return results[0]
    worker = threading.Thread(target=get)
    worker.start()
    worker.join(15)
    assert results, f"{path} did not finish"
    return results[0]


def in_thread(client: FlaskClient, path: str) -> tuple[int, float]:
    """GET path on a thread other than the main one, as a threaded server runs requests."""
    response, elapsed = timed_get(client, path, threaded=True)
    return response.status_code, elapsed


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


@pytest.mark.parametrize(
    ("waited", "counted_as"),
    [
        (None, 0.0),  # no start time from a trusted proxy: the deadline counts from the app's start, as ever
        (0.0, 0.0),  # a start ahead of the app's clock by under a minute (seconds_since): no wait, no longer deadline
        (12.5, 12.5),  # part of the deadline spent waiting: the rest is left
        (30.0, 30.0),  # all of it: answered 504 at once
        (30 + CLOCK_SET_WRONG, 30 + CLOCK_SET_WRONG),  # past it by up to ten minutes (nginx gave up): at once too
        (30 + CLOCK_SET_WRONG + 1, 0.0),  # further: a clock set wrong, not a queue; the whole timeout
        (3600.0, 0.0),  # a proxy's clock an hour behind (a time zone's offset) would otherwise refuse every request
    ],
)
def test_the_wait_counted_against_a_30s_deadline(waited: float | None, counted_as: float) -> None:
    assert counted_wait(30, waited) == counted_as


@pytest.mark.parametrize("threaded", [False, True], ids=["timer", "watchdog"])
def test_a_request_that_waited_for_a_worker_gets_the_rest_of_its_deadline(
    threaded: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """nginx's read timeout counts from when it passed the request on: so does the app's deadline."""
    app = behind_nginx()
    response, elapsed = timed_get(app.test_client(), "/api/spin/5.0", threaded=threaded, headers=sent(0.6))
    assert response.status_code == 504
    assert 0.25 <= elapsed < 0.75  # the 0.4 s left of 1, not a whole second from the app's start
    assert response.json is not None and response.json["error"]["message"] == RequestTimeout.description
    assert deadline_lines(capsys.readouterr().out)
    assert counted(app, 504) == 1 and counted(app, 200) == 0


@pytest.mark.parametrize("threaded", [False, True], ids=["timer", "watchdog"])
def test_a_request_that_waited_past_its_deadline_is_answered_504_at_once_without_running(
    threaded: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    app = behind_nginx()
    client = app.test_client()
    response, elapsed = timed_get(client, "/api/spin/0.01", threaded=threaded, headers=sent(1.2))
    assert response.status_code == 504
    assert elapsed < 0.25
    assert response.json is not None
    assert response.json["error"]["message"] == "The request waited too long for the app and was not run."
    assert app.config["RAN"] == []  # neither the view nor the app's own before_request hook
    # Logged and counted as any request stopped at its deadline: under its route, in progress no longer.
    [line] = deadline_lines(capsys.readouterr().out)
    assert "waited too long" in line["error"]["message"]
    assert counted(app, 504) == 1 and counted(app, 200) == 0
    registry = app.extensions["flaskprod"].registry
    assert registry.get_sample_value("http_requests_in_progress", {"method": "GET", "endpoint": SPIN}) == 0
    # The next request, sent just now, runs as ever.
    assert client.get("/api/spin/0.01", headers=sent(0)).status_code == 200
    assert app.config["RAN"] == ["before_request", "spin"]


@pytest.mark.parametrize("off", ["monitoring.metrics", "monitoring.queue_time"])
@pytest.mark.parametrize("threaded", [False, True], ids=["timer", "watchdog"])
def test_the_deadline_counts_from_nginx_s_start_without_the_wait_s_histogram_too(off: str, threaded: bool) -> None:
    """The wait's histogram and the deadline read the same header; the deadline does not need the histogram."""
    app = behind_nginx(**{off: False})
    client = app.test_client()
    response, elapsed = timed_get(client, "/api/spin/5.0", threaded=threaded, headers=sent(0.6))
    assert response.status_code == 504 and 0.25 <= elapsed < 0.75
    response, elapsed = timed_get(client, "/api/spin/0.01", threaded=threaded, headers=sent(1.2))
    assert response.status_code == 504 and elapsed < 0.25
    assert response.json is not None
    assert response.json["error"]["message"] == "The request waited too long for the app and was not run."
    assert app.config["RAN"] == ["before_request", "spin"]  # the first request's only: the second never ran


@pytest.mark.parametrize(
    ("settings", "start"),
    [
        ({"proxy.trusted_hops": 1}, -30.0),  # ahead of the app's clock: the whole timeout, never more
        ({"proxy.trusted_hops": 1}, 7200.0),  # a clock set wrong
        ({"proxy.trusted_hops": 1}, "t=soon"),  # not a time
        ({}, 1.2),  # from a client: no proxy is trusted to say when it sent the request
    ],
    ids=["ahead", "hours-old", "garbage", "untrusted"],
)
def test_a_start_time_not_to_be_believed_leaves_the_whole_deadline(
    settings: dict[str, object], start: float | str
) -> None:
    """start: the header's text, or how many seconds ago it says the request was sent."""
    headers = {"X-Request-Start": start} if isinstance(start, str) else sent(start)
    client = make_app(**settings).test_client()
    assert client.get("/api/spin/0.6", headers=headers).status_code == 200
    # Never more than the timeout from the app's start either.
    started = time.monotonic()
    assert client.get("/api/spin/5.0", headers=headers).status_code == 504
    assert 0.9 <= time.monotonic() - started < 2


def test_a_waited_request_does_not_make_the_idle_watchdog_look_more_often() -> None:
    """The watchdog's look with nothing armed stays the deadline's length, not the few ms one request had left."""
    watchdog = Watchdog()
    stopped: list[float] = []

    def request() -> None:
        started = time.monotonic()
        try:
            watchdog.arm(30, 29.95)
            while time.monotonic() < started + 5:
                pass
        except RequestTimeout:
            stopped.append(time.monotonic() - started)
        watchdog.disarm()

    worker = threading.Thread(target=request)
    worker.start()
    worker.join(10)
    assert stopped and stopped[0] < 1  # stopped 50 ms in, 30 s after a start 29.95 s ago
    looks = watchdog.looks
    time.sleep(0.5)  # idle: at 50 ms apart it would look 10 times
    assert watchdog.looks - looks <= 1
