"""A real Gunicorn: a threaded worker whose threads all hold conversations leaves a new connection to a worker with a
thread free (servers/freethreads.py, runtime/conversations.py), where it used to take it and queue it behind them."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
from simple_websocket import Client

from flaskprod.runtime import conversations
from tests.conftest import StartServer

pytestmark = pytest.mark.integration

APP = """
import os

from flask import Flask
from flask_sock import Sock

from flaskprod import Production

app = Flask(__name__)
Production(app)
sock = Sock(app)


@sock.route("/whose")
def whose(ws):
    while True:
        ws.receive()
        ws.send(str(os.getpid()))
"""

ROUNDS = 3


def test_as_many_conversations_as_threads_each_worker_holding_its_share(serve_app: StartServer) -> None:
    """2 workers x 2 threads (no conversation threads on top) hold 4 conversations, 2 each, opened one after
    another. Ungated, a worker took a third handshake while both its threads held one: it never got an answer."""
    server = serve_app(
        APP, workers=2, args=("--server", "gunicorn", "--threads", "2", "--set", "server.conversation_threads=0")
    )
    splits = []
    with ThreadPoolExecutor(1) as connecting:
        for _ in range(ROUNDS):
            with ExitStack() as open_now:
                pids = []
                for _ in range(4):
                    # Bounded: a handshake queued behind held threads would wait for as long as they are held.
                    ws = connecting.submit(Client.connect, f"ws://127.0.0.1:{server.port}/whose").result(timeout=5)
                    open_now.callback(ws.close)
                    ws.send("whose?")
                    pids.append(ws.receive(timeout=5))
                splits.append(sorted(pids.count(pid) for pid in set(pids)))
    assert splits == [[2, 2]] * ROUNDS, f"conversations per worker in each round: {splits}\n{server.output()}"
    # A worker says so as its gate closes, not at every turn of its loop: a close needs a conversation to fill the
    # worker, so at most once for each conversation opened (a round's end and the next's start may close it again).
    said = server.output().count("all 2 threads of worker")
    assert 1 <= said <= 4 * ROUNDS, server.output()


def test_the_count_follows_each_conversation_and_a_forked_child_holds_none() -> None:
    before = conversations.held()
    conversations.opened()
    conversations.opened()
    conversations.closed()
    assert conversations.held() == before + 1
    pid = os.fork()
    if pid == 0:
        os._exit(0 if conversations.held() == 0 else 1)
    _, status = os.waitpid(pid, 0)
    conversations.closed()
    assert os.waitstatus_to_exitcode(status) == 0
    assert conversations.held() == before
