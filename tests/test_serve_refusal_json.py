"""serve's refusal to start is one JSON error record where its output is a JSON log (up's, the journal, a
container's: JSON logs, stderr no terminal); the plain "Error:" line at a terminal and under text logs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flaskprod.spec import PROBE_RECORD_ENV
from tests.conftest import server_env
from tests.support import BIN
from tests.upstack import APP, start_up, stop, up_env, write_app

pytestmark = pytest.mark.integration

UP_PORT = 22101  # helper 93's range
REASON = "error while importing 'app': RuntimeError: DATABASE_URL is missing"
BAD_WORKERS = "flag --set server.workers: invalid value 'lots' for server.workers: expected integer | \"auto\""


def records(output: str) -> list[dict[str, Any]]:
    """Every line of output as the JSON object it must be: a plain line fails the test, naming itself."""
    parsed = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"a plain line in a JSON log: {line!r}\n--- the log ---\n{output}") from None
        assert isinstance(record, dict), line
        parsed.append(record)
    return parsed


def test_a_deploy_that_serve_refuses_leaves_up_s_log_all_json_and_its_client_told_the_reason_once(
    tmp_path: Path,
) -> None:
    """up starts serve for the release; serve refused it (its app raises as it is imported) with the plain line
    'Error: error while importing ...' in the middle of up's JSON log. It is an error record of flaskprod.serve
    now, between the traceback's record and up's own 'deploy failed'; the deploy's client reads the reason once."""
    write_app(tmp_path, APP)
    stack = start_up(tmp_path, "gunicorn", UP_PORT, "--workers", "1")
    try:
        stack.wait_ready()
        write_app(tmp_path, APP + '\nraise RuntimeError("DATABASE_URL is missing")\n')
        deploy = subprocess.run([str(BIN / "flaskprod"), "deploy"], cwd=tmp_path, env=up_env(), capture_output=True,
                                text=True, timeout=120)  # fmt: skip
    finally:
        stop(stack)
    assert deploy.returncode == 1, deploy.stderr
    assert deploy.stderr.count(REASON) == 1, deploy.stderr
    logged = records(stack.stderr())
    [refusal] = [r for r in logged if r["log"]["logger"] == "flaskprod.serve"]
    assert (refusal["log.level"], refusal["message"]) == ("error", REASON)
    [failed] = [r for r in logged if r["message"].startswith("deploy failed: ")]
    assert failed["log.level"] == "error" and REASON in failed["message"]
    assert logged.index(refusal) < logged.index(failed)


def serve_refusing(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, tty: bool = False, under_up: bool = True
) -> str:
    """serve's stderr as it refuses to start app:app with args (an app that raises as it is imported); under_up:
    given the path of its record, as up starts it."""
    (tmp_path / "app.py").write_text('raise RuntimeError("DATABASE_URL is missing")\n')
    env = {**(env or {}), **({PROBE_RECORD_ENV: str(tmp_path / "record.json")} if under_up else {})}
    command = [str(BIN / "flaskprod"), "serve", "app:app", "--bind", "unix:/tmp/h83-never.sock", *args]
    if not tty:
        done = subprocess.run(command, cwd=tmp_path, env=server_env(env), capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        return done.stderr
    controller, terminal = os.openpty()
    try:
        done = subprocess.run(command, cwd=tmp_path, env=server_env(env), stdout=subprocess.DEVNULL,
                              stderr=terminal, timeout=60, check=False)  # fmt: skip
        os.close(terminal)
        assert done.returncode == 2
        said = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            said += chunk
    finally:
        os.close(controller)
    return said.decode().replace("\r\n", "\n")


def test_serves_refusal_in_up_s_json_log_is_one_error_record(tmp_path: Path) -> None:
    out = records(serve_refusing(tmp_path))
    assert json.loads((tmp_path / "record.json").read_text()) == {"error": REASON}  # up's, as before
    assert [(r["log.level"], r["message"]) for r in out] == [
        ("error", "RuntimeError: DATABASE_URL is missing"),  # the traceback's record
        ("error", REASON),
    ]
    assert out[-1]["log"] == {"logger": "flaskprod.serve"}


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--set", "server.workers=lots"), None), ((), {"FLASKPROD_LOGGING__FORMAT": "bogus"})],
    ids=["bad-flag", "bad-format-itself"],
)
def test_a_refusal_for_a_bad_setting_is_one_json_record_too(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str] | None
) -> None:
    """The spec that would say the output is JSON does not load: each logging setting is read alone, a wrong one
    as its default (json)."""
    [refusal] = records(serve_refusing(tmp_path, *args, env=env))
    assert refusal["log.level"] == "error" and "invalid value" in refusal["message"], refusal


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), [("error", "RuntimeError: DATABASE_URL is missing"), ("error", REASON)]),  # the traceback's, then it
        (("--set", "server.workers=lots"), [("error", BAD_WORKERS)]),
    ],
    ids=["import-error", "bad-setting"],
)
def test_serves_refusal_outside_up_is_one_json_record_too(
    tmp_path: Path, args: tuple[str, ...], expected: list[tuple[str, str]]
) -> None:
    """systemd's journal, a container's log, the targets build writes: serve's stderr is a pipe to a JSON log
    there too, where its 'Error: ...' was the one plain line (after the traceback's record, which was JSON)."""
    out = records(serve_refusing(tmp_path, *args, under_up=False))
    assert [(r["log.level"], r["message"]) for r in out] == expected
    assert out[-1]["log"] == {"logger": "flaskprod.serve"} and "error" not in out[-1]  # one line: no traceback
    assert not (tmp_path / "record.json").exists()  # up's alone


def test_serves_refusal_stays_a_plain_line_at_a_terminal_and_under_text_logs(tmp_path: Path) -> None:
    at_terminal = serve_refusing(tmp_path, tty=True)
    assert at_terminal.endswith(f"\nRuntimeError: DATABASE_URL is missing\nError: {REASON}\n"), at_terminal
    outside_up = serve_refusing(tmp_path, tty=True, under_up=False)
    assert outside_up.endswith(f"\nRuntimeError: DATABASE_URL is missing\nError: {REASON}\n"), outside_up
    as_text = serve_refusing(tmp_path, "--set", "logging.format=text")
    assert as_text.endswith(f"\nError: {REASON}\n") and as_text.startswith("Traceback"), as_text
    configure_off = serve_refusing(tmp_path, env={"FLASKPROD_LOGGING__CONFIGURE": "false"})
    assert configure_off.endswith(f"\nError: {REASON}\n"), configure_off
    text_outside_up = serve_refusing(tmp_path, "--set", "logging.format=text", under_up=False)
    assert text_outside_up.endswith(f"\nError: {REASON}\n"), text_outside_up
