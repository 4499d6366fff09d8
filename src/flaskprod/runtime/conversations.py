"""How many conversations (WebSockets, streams of server-sent events) this process holds open right now.

Each holds one of the server's threads for as long as it lasts; a threaded Gunicorn worker whose threads all hold
one stops taking connections, which would wait there until a conversation ended (servers/freethreads.py).
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()  # += on a global is several bytecodes: two threads could lose one
_open = 0


def held() -> int:
    return _open


def opened() -> None:
    global _open
    with _lock:
        _open += 1


def closed() -> None:
    global _open
    with _lock:
        _open -= 1


def _none_after_fork() -> None:
    global _lock, _open
    _lock, _open = threading.Lock(), 0  # a forked worker holds none of its parent's, and its lock may be held


os.register_at_fork(after_in_child=_none_after_fork)
