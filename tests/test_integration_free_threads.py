"""A real Gunicorn: a threaded worker whose threads are all busy leaves a new connection to a worker with one free
(servers/freethreads.py), where it used to take it and queue it behind its own."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import StartServer

pytestmark = pytest.mark.integration

APP = """
import os
import time

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/held")
def held():
    time.sleep(1)  # holds its thread while the others arrive
    return str(os.getpid())
"""

ROUNDS = 5


def test_as_many_requests_as_threads_run_at_once_one_on_each(serve_app: StartServer) -> None:
    """2 workers x 2 threads and 4 requests at once, each on a new connection: 2 on each worker. Ungated, a worker
    took a third while its two threads were busy (its answer came a second late), in most rounds."""
    server = serve_app(APP, workers=2, args=("--server", "gunicorn", "--threads", "2"))
    splits = []
    for _ in range(ROUNDS):
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: server.get("/held", headers={"Connection": "close"}), range(4)))
        assert all(answer.status_code == 200 for answer in answers), [answer.text for answer in answers]
        splits.append(sorted(Counter(answer.text for answer in answers).values()))
    assert splits == [[2, 2]] * ROUNDS, f"requests per worker in each round: {splits}\n{server.output()}"
