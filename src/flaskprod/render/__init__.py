"""Renderers: pure functions from the spec to the text of configuration files."""

from __future__ import annotations

from .nginx import NginxContext, StaticMount, TlsFiles, render_nginx, render_nginx_conf

__all__ = ["NginxContext", "StaticMount", "TlsFiles", "render_nginx", "render_nginx_conf"]
