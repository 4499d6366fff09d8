"""`flaskprod up`: nginx limits bodies to the MAX_CONTENT_LENGTH of the app it serves, as that app loaded, through a
deploy and a SIGHUP that change it."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support import BIN, free_port, wait_for
from tests.upstack import UpStack, start_up, stop, up_env, write_app

pytestmark = pytest.mark.integration

KIB = 1024
# Its own limit from its instance folder (every release shares it), before Production(app), which keeps it.
OWN_LIMIT_APP = """
from flask import Flask, jsonify, request

from flaskprod import Production

app = Flask(__name__, instance_relative_config=True)
app.config.from_pyfile("site.cfg")
Production(app)
if app.config.get("NO_LIMIT"):
    app.config["MAX_CONTENT_LENGTH"] = None


@app.post("/upload")
def upload():
    return jsonify(size=len(request.get_data()))
"""


def post(stack: UpStack, size: int) -> int:
    return requests.post(stack.url("/upload"), data=b"x" * size, timeout=15).status_code


def limit_in_conf(stack: UpStack) -> int:
    text = (stack.run_dir / "nginx.conf").read_text()
    [value] = {line.split()[1].rstrip(";") for line in text.splitlines() if line.strip().startswith("client_max_body")}
    return int(value)


def set_limit(root: Path, line: str) -> None:
    (root / "instance" / "site.cfg").write_text(line + "\n")


def test_nginx_passes_what_the_app_takes_and_follows_a_deploy_and_a_sighup_that_change_it(tmp_path: Path) -> None:
    # The app allowed 300 KiB; nginx answered 413 past proxy.max_body_size (100k), under a comment saying it was
    # the same byte count the app uses.
    write_app(tmp_path, OWN_LIMIT_APP)
    (tmp_path / "instance").mkdir()
    set_limit(tmp_path, "MAX_CONTENT_LENGTH = 300 * 1024")
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--set", "proxy.max_body_size=100k",
                     "--set", "proxy.ready_timeout=15")  # fmt: skip
    try:
        stack.wait_ready()
        assert limit_in_conf(stack) == 300 * KIB
        assert post(stack, 200 * KIB) == 200, stack.output()
        assert post(stack, 400 * KIB) == 413

        # A release whose app takes less: nginx's limit is the new app's once it serves.
        set_limit(tmp_path, "MAX_CONTENT_LENGTH = 150 * 1024")
        deployed = subprocess.run([str(BIN / "flaskprod"), "deploy"], cwd=tmp_path, env=up_env(), capture_output=True,
                                  text=True, timeout=90)  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr + stack.output()
        assert limit_in_conf(stack) == 150 * KIB
        assert post(stack, 200 * KIB) == 413

        # SIGHUP's new app server loads the app again: nginx follows what it loaded.
        set_limit(tmp_path, "MAX_CONTENT_LENGTH = 400 * 1024")
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: "app server of release 2 reloaded" in stack.stderr(), timeout=30, what="the reload")
        assert limit_in_conf(stack) == 400 * KIB
        assert post(stack, 350 * KIB) == 200

        # An app with no limit: nginx keeps proxy.max_body_size, rather than spool any size to its disk.
        set_limit(tmp_path, "NO_LIMIT = True")
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: stack.stderr().count("app server of release 2 reloaded") == 2, timeout=30, what="the reload")
        assert limit_in_conf(stack) == 100 * KIB
        assert post(stack, 200 * KIB) == 413
    finally:
        stop(stack)
