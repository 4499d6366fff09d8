"""The Flask extension: health, readiness, metrics, JSON logs, proxy handling, headers, safe config."""

from __future__ import annotations

from .extension import Production

__all__ = ["Production"]
