"""An app with a syntax error is shown the same by every command that loads it: Python's own display of the
error (file, line, caret), without importlib's frames, then the one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import BIN, free_port, readable, run_flaskprod


@pytest.mark.parametrize("command", ["init", "init --dry-run", "check", "check --format json", "serve", "up", "build"])
def test_a_syntax_error_is_its_file_line_and_caret_then_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "app.py").write_text("from flask import Flask\n\napp = Flask(__name__\n")
    (tmp_path / "requirements.txt").write_text("flask\nflaskprod\n")  # what build asks first
    extra = {
        "serve": ["--bind", f"127.0.0.1:{free_port()}"],
        "up": ["--host", "127.0.0.1", "--port", str(free_port())],
        "build": ["--target", "single", "--dry-run"],
    }
    # up finds nginx (and uWSGI, in the venv) on PATH before it loads the app.
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/bin"}
    result = run_flaskprod(*command.split(), *extra.get(command, []), cwd=tmp_path, env=env)
    line = "error while importing 'app': SyntaxError: '(' was never closed (app.py, line 3)"
    # check's JSON says it too, for a job that parses stdout.
    json_error = json.dumps({"error": line, "exit_code": 2}) + "\n" if "--format json" in command else ""
    assert (result.returncode, result.stdout) == (2, json_error)
    assert readable(result.stderr) == (
        f'  File "{tmp_path}/app.py", line 3\n'
        "    app = Flask(__name__\n"
        "               ^\n"
        "SyntaxError: '(' was never closed\n"
        f"Error: {line}\n"
    )
