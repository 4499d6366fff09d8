"""Renderers: pure functions from the spec to the text of configuration files."""

from __future__ import annotations

from .nginx import NginxContext, TlsFiles, render_nginx, render_nginx_conf

__all__ = ["NginxContext", "TlsFiles", "render_nginx", "render_nginx_conf"]
