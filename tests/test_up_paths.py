"""`flaskprod up` where a path nginx.conf names holds a space: the run dir, a static folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import free_port
from tests.upstack import start_up, stop, write_app

pytestmark = pytest.mark.integration

APP = """
from flask import Flask

from flaskprod import Production

app = Flask(__name__, static_folder="my assets", static_url_path="/assets")
Production(app)
"""


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_a_run_dir_and_a_static_folder_with_spaces_are_served(tmp_path: Path, kind: str) -> None:
    write_app(tmp_path, APP)
    (tmp_path / "my assets").mkdir()
    (tmp_path / "my assets" / "site.css").write_text("body { color: teal; }\n")
    run_dir = tmp_path / "r un"  # its pid file, logs, temp files and sockets, and each release's copy of the assets
    stack = start_up(tmp_path, kind, free_port(), "--workers", "1", "--set", f"proxy.run_dir={run_dir}")
    try:
        stack.wait_ready()
        assert stack.get("/readyz").status_code == 200
        served = stack.get("/assets/site.css")
        assert (served.status_code, served.text) == (200, "body { color: teal; }\n")
        # nginx's answer from disk (the app's own static route would say no-cache)
        assert served.headers["Cache-Control"].startswith("public, max-age=")
        assert f"unix:{run_dir}/app-1.sock" in stack.stdout()
    finally:
        stop(stack)
    assert stack.proc.returncode == 0, stack.output()
