"""The console script: Ctrl-C at any moment once flaskprod's code runs is "interrupted" and status 130, no traceback;
`import flaskprod` loads no Flask until a name that needs it is used."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import server_env
from tests.support import BIN

# An app that takes 10 s to import, writing its pid first: the command is still loading it at every moment tried.
SLOW_APP = """
import os
import pathlib
import time

pathlib.Path("pid").write_text(str(os.getpid()))
time.sleep(10)

from flask import Flask

app = Flask(__name__)
"""
# The installed console script, run as Python runs it, once Python's own start is over (its site imports; runpy's
# pkgutil is imported first too, being the harness's): a Ctrl-C before that is Python's to handle (it dies of SIGINT,
# or prints a traceback from its own imports and exits 1), as is one in the 2-4 ms Python takes to find flaskprod and
# run cli.py's first lines, which no code of flaskprod's precedes. Before, a Ctrl-C in the next 0.2 s (Flask and the
# runtime loading, click parsing) printed a traceback, or click's "Aborted!" with status 1.
LAUNCH = (
    "import pkgutil, runpy, sys; print('started', flush=True); sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.mark.parametrize("delay", [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4])
def test_ctrl_c_at_any_moment_is_130_without_a_traceback(tmp_path: Path, delay: float) -> None:
    (tmp_path / "app.py").write_text(SLOW_APP)
    args = [sys.executable, "-c", LAUNCH, str(BIN / "flaskprod"), "check", "app:app"]
    command = subprocess.Popen(args, cwd=tmp_path, env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    try:
        assert command.stdout is not None and command.stdout.readline() == "started\n"
        time.sleep(delay)
        command.send_signal(signal.SIGINT)
        _, err = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
        with contextlib.suppress(OSError, ValueError):  # the app check was loading, had it started
            pid = int((tmp_path / "pid").read_text())
            if b"flaskprod.servers.probe" in Path("/proc", str(pid), "cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
    assert "Traceback" not in err, err
    assert (command.returncode, err[-12:]) == (130, "interrupted\n"), err


def test_import_flaskprod_loads_no_flask_until_a_name_needs_it() -> None:
    code = (
        "import sys, flaskprod; assert 'flask' not in sys.modules, 'flask imported'; "
        "from flaskprod import Production, SpecError, load_spec, pool_options, version, Spec; "
        "assert Production.__name__ == 'Production' and isinstance(version, str) and 'flask' in sys.modules; "
        "assert {'Production', 'version'} <= set(dir(flaskprod)); "
        "import flaskprod as f; f.missing"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().endswith("AttributeError: module 'flaskprod' has no attribute 'missing'"), done.stderr
