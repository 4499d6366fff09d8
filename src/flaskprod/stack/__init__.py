"""`flaskprod up`: nginx in front of the app server on a unix socket, supervised on this machine."""

from __future__ import annotations

from .up import up

__all__ = ["up"]
