"""A threaded Gunicorn worker takes a new connection only while one of its threads is free.

Gunicorn's gthread worker accepts connections while it holds fewer than worker_connections (1000), whatever its
threads are doing, and queues each behind them. The workers share one listening socket, and one of them often takes
most of the connections (in a run by hand, 100 of 150 WebSocket conversations went to one of two workers): once its
threads were all held, the next handshake and the next plain request it took waited there until nginx answered 504,
while the other worker had threads free. Gated, a busy worker leaves new connections in the kernel's listen queue for
a worker that can start them now, or for its own next free thread.

A request on a connection the worker already holds (nginx's kept upstream connections) still queues in it: only
the worker that holds a connection can read it.
"""

from __future__ import annotations

from typing import Any


def accepting_only_with_a_free_thread(worker: Any) -> None:
    """Gate worker's accepting on its threads (from post_worker_init: before its loop registers the listeners).

    Every connection handed to a thread (enqueue_req) is counted busy until its result comes back to the worker's
    own loop (finish_request), where both run, so the count needs no lock. The loop asks to accept again after every
    event; the gate says no while every thread is busy.
    """
    if not hasattr(worker, "enqueue_req"):
        return  # the sync worker takes one connection at a time already; gevent's are not threads
    threads = worker.cfg.threads
    busy = 0
    enqueue_req, finish_request = worker.enqueue_req, worker.finish_request
    set_accept_enabled, accept = worker.set_accept_enabled, worker.accept

    def counted_enqueue_req(conn: Any) -> None:
        nonlocal busy
        busy += 1
        enqueue_req(conn)

    def counted_finish_request(conn: Any, fs: Any) -> None:
        nonlocal busy
        busy -= 1
        finish_request(conn, fs)

    def gated_set_accept_enabled(enabled: bool) -> None:
        set_accept_enabled(enabled and busy < threads)

    def accept_then_gate(listener: Any) -> None:
        accept(listener)
        if busy >= threads:
            set_accept_enabled(False)

    worker.enqueue_req = counted_enqueue_req
    worker.finish_request = counted_finish_request
    worker.set_accept_enabled = gated_set_accept_enabled
    worker.accept = accept_then_gate
