"""A threaded Gunicorn worker whose threads all hold conversations leaves new connections to the other workers.

Gunicorn's gthread worker accepts connections while it holds fewer than worker_connections (1000), whatever its
threads are doing, and queues each behind them. A conversation (a WebSocket, a stream of server-sent events) holds
its thread for as long as the client stays, and the workers share one listening socket, of which one often takes
most connections: in a run by hand, once one of two workers held 112 conversations on its 112 threads, the next
handshake and the next plain request it took waited there until nginx answered 504, while the other worker had
threads free. So a worker stops accepting while its conversations (runtime/conversations.py, counted by
Production(app)) hold every thread, and new connections wait in the kernel's listen queue for one that can start
them.

Only conversations close the gate. Gated on every busy thread, a worker saturated by short requests on nginx's kept
connections (which it alone can read) never reopened it, and new connections starved in the listen queue for
seconds (17 to 64 requests a wrk run waited past its 2 s timeout).
"""

from __future__ import annotations

from typing import Any

from ..runtime import conversations


def accepting_while_a_thread_is_free_of_conversations(worker: Any) -> None:
    """Gate worker's accepting on the conversations it holds (from post_worker_init: before its loop registers the
    listeners). Its loop asks to accept again after every event and at least once a second while it does not, so a
    conversation's end reopens the gate within a second."""
    if not hasattr(worker, "enqueue_req"):
        return  # the sync worker takes one connection at a time already; gevent's are not threads
    threads = int(worker.cfg.threads)
    set_accept_enabled, accept = worker.set_accept_enabled, worker.accept
    full = False  # said so in the log: once as the gate closes, not at every turn of the loop

    def held_full() -> bool:
        nonlocal full
        now_full = conversations.held() >= threads
        if now_full and not full:
            worker.log.warning(
                "all %d threads of worker %d hold conversations: it takes no new connection until one ends; "
                "raise server.conversation_threads (or add workers) for more at once", threads, worker.pid,
            )
        full = now_full
        return now_full

    def gated_set_accept_enabled(enabled: bool) -> None:
        set_accept_enabled(enabled and not held_full())

    def accept_unless_held(listener: Any) -> None:
        if held_full():
            set_accept_enabled(False)  # the connection waits in the listen queue
            return
        accept(listener)

    worker.set_accept_enabled = gated_set_accept_enabled
    worker.accept = accept_unless_held
