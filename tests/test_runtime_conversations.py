"""Production(app) counts the conversations its process holds open (runtime/conversations.py), which a Gunicorn
worker reads to stop accepting once they hold every thread: a WebSocket while its view runs, an event stream until the
server closes it, and nothing else."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from flask import Flask, Response

from flaskprod import Production
from flaskprod.runtime import conversations
from flaskprod.spec import Spec


def make_app(seen: list[int]) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)

    def chat() -> str:  # what a WebSocket view does (flask-sock's): hold the request for the conversation
        seen.append(conversations.held())
        return "bye"

    app.add_url_rule("/chat", "chat", chat, websocket=True)
    app.add_url_rule("/page", "page", chat)

    @app.get("/events")
    def events() -> Response:
        def stream() -> Iterator[str]:
            seen.append(conversations.held())
            yield "data: one\n\n"

        return Response(stream(), mimetype="text/event-stream")

    @app.get("/csv")
    def csv() -> Response:
        def rows() -> Iterator[str]:
            seen.append(conversations.held())
            yield "a,b\n"

        return Response(rows(), mimetype="text/csv")

    Production(app, spec=Spec().replace(**{"logging.access_log": False}))
    return app


def test_a_websocket_is_held_while_its_view_runs() -> None:
    seen: list[int] = []
    before = conversations.held()
    client = make_app(seen).test_client()
    client.get("/chat", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    client.get("/page")
    assert seen == [before + 1, before]
    assert conversations.held() == before


def test_an_event_stream_is_held_until_the_server_closes_it_and_other_streams_are_not() -> None:
    seen: list[int] = []
    before = conversations.held()
    client = make_app(seen).test_client()
    response = client.get("/events", buffered=False)
    assert response.get_data() == b"data: one\n\n"
    assert conversations.held() == before + 1
    response.close()
    assert conversations.held() == before
    client.get("/csv").close()
    assert seen == [before + 1, before]
