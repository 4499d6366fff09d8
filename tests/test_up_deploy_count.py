"""`flaskprod deploy` counts the files it copied as a user counts the project's: not the data it links."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import BIN, free_port, stop_group, wait_for
from tests.upstack import up_args, up_env

pytestmark = pytest.mark.integration

APP = """
from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/")
def index():
    return "one file"
"""


def test_deploy_of_a_one_file_project_says_one_file(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "app.py").write_text(APP)  # and nothing else: up's output goes outside it
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        up = subprocess.Popen(
            up_args("gunicorn", free_port(), "--workers", "1"), cwd=project, env=up_env(),
            stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: "is ready" in out.read_text() or up.poll() is not None, timeout=60, what="up's table")
        assert up.poll() is None, err.read_text()
        deployed = subprocess.run(
            [str(BIN / "flaskprod"), "deploy"], cwd=project, env=up_env(), capture_output=True, text=True, timeout=120
        )
        assert deployed.returncode == 0, deployed.stderr
        # up made the instance folder in the project, which every release links to: data, not a file copied.
        assert (
            f"flaskprod deploy: copied 1 file of {project} into release 2, linking the project's instance\n"
        ) in deployed.stderr, deployed.stderr
    finally:
        stop_group(up, timeout=40)
