"""A query the request's deadline interrupted mid-wait, cancelled on the server and its answer read.

psycopg (3) waits for the server in Python, where the deadline lands: gevent's Timeout in the request's
greenlet, or SIGALRM's handler on a sync worker. It cancels a query only for KeyboardInterrupt and SystemExit;
for anything else it leaves the connection waiting for the answer ("ACTIVE"), so the pool's rollback when the
request ends failed with "another command is already in progress", and the client got 500 instead of the
deadline's 504 while the query ran on. psycopg2 waits inside libpq, where no deadline lands (under gevent its wait
callback cancels, servers/greenlets.py).

An SQLAlchemy handle_error listener on every engine cancels such a query, reads the server's error, and hands the
connection back to the pool in a failed transaction, which its rollback ends. One it cannot bring back in time
is dropped from the pool instead.
"""

from __future__ import annotations

import select
import time
from typing import Any

from .deadline import RequestTimeout

# How long the server has to answer a cancel, as psycopg allows for KeyboardInterrupt's.
CANCEL_WAIT = 5.0


def watch_engines_for_interrupted_queries() -> None:
    """Listen on every SQLAlchemy engine, those made already and those to come; SQLAlchemy must be imported."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "handle_error", cancel_interrupted_query):
        event.listen(Engine, "handle_error", cancel_interrupted_query)


def cancel_interrupted_query(context: Any) -> None:
    """handle_error: a psycopg connection the deadline left waiting is cancelled and drained, or else dropped."""
    if not isinstance(context.original_exception, RequestTimeout) or context.connection is None:
        return
    if context.engine.dialect.driver != "psycopg" or context.connection.invalidated:
        return
    dbapi_connection = context.connection.connection.dbapi_connection
    from psycopg import pq

    if dbapi_connection is None or dbapi_connection.pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
        return
    try:
        if hasattr(dbapi_connection, "cancel_safe"):  # psycopg 3.2: waits like a query, with a limit
            dbapi_connection.cancel_safe(timeout=CANCEL_WAIT)
        else:
            dbapi_connection.cancel()
        read_answers(dbapi_connection.pgconn, time.monotonic() + CANCEL_WAIT)
    except Exception:
        # In an unknown state: close it rather than hand it to the next request. The pool's others are fine.
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False


def read_answers(pgconn: Any, until: float) -> None:
    """Read every result the server sends for the query in flight, up to until (time.monotonic()).

    select is gevent's under its patches, so the other greenlets run meanwhile.
    """
    while True:
        pgconn.consume_input()
        if pgconn.is_busy():
            left = until - time.monotonic()
            if left <= 0 or not select.select([pgconn.socket], [], [], left)[0]:
                raise TimeoutError("the server did not answer the cancel")
            continue
        if pgconn.get_result() is None:
            return
