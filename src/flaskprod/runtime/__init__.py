"""The Flask extension: health, readiness, metrics, JSON logs, proxy handling, headers, safe config."""

from __future__ import annotations

from . import draining
from .extension import Production
from .logs import request_id
from .metrics import mark_worker_dead, prepare_multiproc_dir

__all__ = ["Production", "draining", "mark_worker_dead", "prepare_multiproc_dir", "request_id"]
