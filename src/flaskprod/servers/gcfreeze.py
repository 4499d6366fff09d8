"""Freezing the loaded app's objects (server.gc_freeze): the collector's permanent generation.

A loaded Flask app is tens of thousands of objects (modules, functions, the URL map, SQLAlchemy's
metadata) that live as long as the worker. CPython's full collection walks every one of them: 34 ms
for the reference app, a pause in which all of a threaded worker's requests wait. It also writes to
each object's header, so in a forked worker every page it walks stops being shared with the master.
gc.freeze() moves them out of the collector's sight for good: run where the app was loaded, before
the fork when the master loads it (uWSGI; Gunicorn with preload), in the worker otherwise.
"""

from __future__ import annotations

import gc


def freeze_loaded() -> None:
    """Collect once, then freeze what survives.

    The collection first keeps start-up garbage (import-time cycles) from being frozen, and so kept,
    for the life of the process.
    """
    gc.collect()
    gc.freeze()
