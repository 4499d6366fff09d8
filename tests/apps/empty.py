"""A module with no Flask app in it."""

from __future__ import annotations

VALUE = 1
