"""A query the request's deadline interrupted mid-wait, stopped on the server, its connection kept or dropped.

psycopg (3) waits for the server in Python, where the deadline lands: gevent's Timeout in the request's
greenlet, or SIGALRM's handler on a sync worker. It cancels a query only for KeyboardInterrupt and SystemExit;
for anything else it leaves the connection waiting for the answer ("ACTIVE"), so the pool's rollback when the
request ends failed with "another command is already in progress", and the client got 500 instead of the
deadline's 504 while the query ran on. psycopg2 waits inside libpq, where no deadline lands (under gevent its wait
callback cancels, servers/greenlets.py).

pg8000, pure Python, is stopped the same way partway through a message, and had the same failed rollback.

PyMySQL reads MySQL's answer in Python too, so the deadline stopped it partway through a packet: the rollback
failed ("InterfaceError (0, '')"), the client got 500, and the statement ran on until MariaDB's statement
timeout, if any, stopped it (MySQL's stops SELECTs alone). Under threads the deadline lands only once the answer
comes, and the same 500 followed.

psycopg (3.2 and later) reads the interruptions it cancels for from a tuple, which the deadline joins: then any
psycopg connection, one the app opens itself or psycopg_pool's, cancels the query and reads the answer, as on
Ctrl-C. An SQLAlchemy handle_error listener on every engine stops such a query too, for older psycopg and the
other drivers: psycopg's with its cancel, after which the server's error is read and the connection goes back to
the pool in a failed transaction, which its rollback ends (dropped instead when that does not come in time);
pg8000's with PostgreSQL's cancel request, PyMySQL's with KILL QUERY, and the connection of either, whose place in
the protocol is lost, is dropped.
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .deadline import RequestTimeout, on_greenlets

# How long the server has to answer a cancel, as psycopg allows for KeyboardInterrupt's.
CANCEL_WAIT = 5.0
# PostgreSQL's CancelRequest: its length, then the code that tells it from a startup message.
CANCEL_REQUEST = struct.pack("!ii", 16, 80877102)


def watch_engines_for_interrupted_queries() -> None:
    """Listen on every SQLAlchemy engine, those made already and those to come; SQLAlchemy must be imported."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "handle_error", cancel_interrupted_query):
        event.listen(Engine, "handle_error", cancel_interrupted_query)


def let_psycopg_cancel_at_the_deadline() -> None:
    """Have psycopg cancel a query whose wait the deadline interrupts, as it does for KeyboardInterrupt and
    SystemExit, on every connection this process opens; psycopg must be imported (an app without it pays nothing).

    A threaded worker's deadline lands between Python instructions, and psycopg's binary package waits in a loop
    in C (wait_c), so a query ran on to its end, and its 504 with it: by hand, without a statement timeout,
    pg_sleep(10) at a 1 s deadline was answered at 10 s. In other threads psycopg now waits in its Python loop
    (wait_poll), which polls in steps of 0.1 s, so the deadline lands within that step. The main thread keeps
    wait_c (SIGALRM's handler runs there), and gevent's greenlets whatever psycopg chose.

    psycopg.connection._INTERRUPTED is private: a psycopg without it (before 3.2) is left to the listener below.
    """
    connection = sys.modules.get("psycopg.connection")
    interrupted = getattr(connection, "_INTERRUPTED", None)
    if isinstance(interrupted, tuple) and RequestTimeout not in interrupted:
        connection._INTERRUPTED = (*interrupted, RequestTimeout)  # type: ignore[union-attr]
    waiting = sys.modules.get("psycopg.waiting")
    in_c, in_python = getattr(waiting, "wait_c", None), getattr(waiting, "wait_poll", None)
    if in_c is not None and in_python is not None and waiting.wait is in_c:  # type: ignore[union-attr]
        waiting.wait = _wait_within_the_deadlines_reach(in_c, in_python)  # type: ignore[union-attr]


def _wait_within_the_deadlines_reach(in_c: Callable[..., Any], in_python: Callable[..., Any]) -> Callable[..., Any]:
    """psycopg's wait(gen, fileno, interval, timeout): in Python on a thread other than the main one."""

    def wait(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread() or on_greenlets():
            return in_c(*args, **kwargs)
        return in_python(*args, **kwargs)

    return wait


def cancel_interrupted_query(context: Any) -> None:
    """handle_error: a query the deadline interrupted is stopped on the server; its connection is kept when its
    answer could be read (psycopg), else dropped from the pool (the others in it are fine)."""
    if not isinstance(context.original_exception, RequestTimeout) or context.connection is None:
        return
    if context.connection.invalidated or context.connection.connection.dbapi_connection is None:
        return
    dbapi_connection = context.connection.connection.dbapi_connection
    driver = context.engine.dialect.driver
    if driver == "psycopg":
        kept = cancel_psycopg_query(dbapi_connection)
    elif driver == "pg8000":
        cancel_pg8000_query(dbapi_connection)
        kept = False  # stopped partway through reading a message, as PyMySQL below
    elif driver == "pymysql":
        kill_mysql_query(dbapi_connection)
        kept = False  # stopped partway through reading a packet: the next read would take the rest as its own
    else:
        return
    if not kept:
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False


def cancel_psycopg_query(dbapi_connection: Any) -> bool:
    """Cancel the query a psycopg connection waits on, and read the server's answer; whether that worked."""
    from psycopg import pq

    try:
        if dbapi_connection.closed:
            return False  # psycopg's own cancel went unanswered, and it closed the connection
        if dbapi_connection.pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
            return True  # its answer was read (by psycopg itself, on a deadline it knows): nothing in flight
        if hasattr(dbapi_connection, "cancel_safe"):  # psycopg 3.2: waits like a query, with a limit
            dbapi_connection.cancel_safe(timeout=CANCEL_WAIT)
        else:
            dbapi_connection.cancel()
        read_answers(dbapi_connection.pgconn, time.monotonic() + CANCEL_WAIT)
    except Exception:
        return False
    return True


def cancel_pg8000_query(dbapi_connection: Any) -> None:
    """Send PostgreSQL's cancel request for a pg8000 connection's query, which pg8000 has no call for: on a new
    connection to the same server, the backend's pid and secret key it sent at startup. Unlike psycopg's, the
    server's answer cannot be read: pg8000's reader stopped partway through a message, so the connection is
    dropped, and dropping it alone would not stop the query (the server notices a gone client when it next writes).
    """
    try:
        key = dbapi_connection._backend_key_data  # pid and secret, as the server sent them
        server = dbapi_connection._usock
        with socket.socket(server.family, socket.SOCK_STREAM) as cancel:
            cancel.settimeout(CANCEL_WAIT)
            cancel.connect(server.getpeername())
            cancel.sendall(CANCEL_REQUEST + key)
            cancel.recv(1)  # the server closes it once the cancel is passed on
    except Exception:
        pass  # dropped anyway; its statement runs on until the statement timeout, if any, or its end


def kill_mysql_query(dbapi_connection: Any) -> None:
    """KILL QUERY the statement of a PyMySQL connection, from a connection of its own: MySQL's way to cancel.
    Dropping the connection would not stop it: the server notices a gone client only when it next writes.

    The new connection is made with the interrupted one's own parameters, so those create_engine's connect_args
    gave (a password from a secret, TLS, a unix socket) are used too. A server that refuses it is left to its
    statement timeout (database.statement_timeout).
    """
    limits = {"connect_timeout": CANCEL_WAIT, "read_timeout": CANCEL_WAIT, "write_timeout": CANCEL_WAIT}
    try:
        thread_id = dbapi_connection.thread_id()
        killer = type(dbapi_connection)(**mysql_connect_params(dbapi_connection), **limits)
        try:
            with killer.cursor() as cursor:
                cursor.execute(f"KILL QUERY {int(thread_id)}")
        finally:
            killer.close()
    except Exception:
        pass  # the connection is dropped anyway; its statement runs on until it ends by itself


def mysql_connect_params(connection: Any) -> dict[str, Any]:
    """What a PyMySQL connection was opened with, for another to the same server as the same user."""
    # TLS as the connection asked for it: PyMySQL 1.2 tries TLS unasked (its ssl is then True, _ssl_required
    # False), which it does again by itself; asked for, its context carries the certificates.
    required = connection.ssl and getattr(connection, "_ssl_required", True)
    return {
        "host": connection.host,
        "port": connection.port,
        "unix_socket": connection.unix_socket,
        "user": connection.user,
        "password": connection.password,
        "bind_address": connection.bind_address,
        "server_public_key": connection.server_public_key,
        "ssl": connection.ctx if required else None,
    }


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
