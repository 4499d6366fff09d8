"""Under `up`, nginx writes each request's access line: the app writes none of its own unless told to, whatever
proxy.trusted_hops says (0 leaves the X-Forwarded-* headers to the app's own ProxyFix; nginx is still in front)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import free_port, wait_for
from tests.upstack import start_up, stop, write_app

pytestmark = pytest.mark.integration


def test_trusted_hops_0_leaves_the_access_line_to_nginx(tmp_path: Path) -> None:
    write_app(tmp_path)
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--set", "proxy.trusted_hops=0")
    try:
        stack.wait_ready()
        assert stack.get("/api/ping?once").status_code == 200
        wait_for(
            lambda: "/api/ping?once" in [line["uri"] for line in stack.nginx_access()],
            timeout=10,
            what="nginx's access line (buffered, flushed each second)",
        )
    finally:
        stop(stack)  # graceful: every line the app would write is written by now
    assert stack.proc.returncode == 0, stack.output()
    assert "/api/ping" not in stack.app_access_paths(), stack.output()
