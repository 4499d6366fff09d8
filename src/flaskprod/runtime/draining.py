"""Draining state: once set, readiness fails so the load balancer stops sending new requests."""

from __future__ import annotations

import os

from ..spec import DRAIN_FILE_ENV

_draining = False


def begin() -> None:
    """Mark this process as draining; only an assignment, so it is safe inside a signal handler."""
    global _draining
    _draining = True


def reset() -> None:
    """Clear the in-process flag (for tests and for a worker that is reused)."""
    global _draining
    _draining = False


def is_draining() -> bool:
    """True after begin(), or while the file named by FLASKPROD_DRAIN_FILE exists.

    The server supervisor creates that file before signalling its workers, so every worker
    reports draining at once, whichever of them the readiness probe happens to reach.
    """
    if _draining:
        return True
    path = os.environ.get(DRAIN_FILE_ENV)
    return bool(path) and os.path.exists(path)  # type: ignore[arg-type]
