"""deploy.release_command under `up` and `deploy`: run once in a new release, with its app server's environment,
before that app server starts; Heroku's release phase, on one host.

The command runs from the release's copy of the project, so a migration is the new code's; its output goes to a
file in the run dir, whose last lines a failure names. Nothing here waits: `up`'s supervisor polls `finished`
and keeps supervising the running release meanwhile (see Stack.run_release_command).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..discovery import APP_VARIABLE
from ..errors import ServerError
from ..exits import describe_exit
from .children import die_with_parent

# How many of the command's last output lines an error quotes, and how many characters of them at most.
TAIL_LINES = 5
TAIL_CHARS = 600
# Seconds a command told to stop (SIGTERM to its group) gets before it is killed.
STOP_GRACE = 5.0


def interpreter_bin() -> str:
    """The folder of the Python `up` runs on: its virtualenv's bin, where `flask` and `alembic` are installed.
    Not resolved: a venv's python is a link to the system's, whose folder has neither."""
    return os.path.dirname(sys.executable)


def command_env(env: Mapping[str, str], app_target: str) -> dict[str, str]:
    """The app server's environment for the command: FLASK_APP names the app `up` serves (so `flask db upgrade`
    finds the same one), and the virtualenv's bin comes first on PATH, as in the app image."""
    path = os.pathsep.join(filter(None, [interpreter_bin(), env.get("PATH", os.defpath)]))
    return {**env, APP_VARIABLE: app_target, "PATH": path}


def resolve(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> list[str]:
    """argv with its program found on env's PATH, or a path (./migrate.sh) in cwd, the release's copy of the
    project it runs in; ServerError naming the fix when it is nowhere."""
    if "/" in argv[0]:
        path = cwd / argv[0]
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServerError(
                f"deploy.release_command: {argv[0]!r} is not an executable file in the project: check the path "
                "(relative to the project's folder), or make it executable (chmod +x)"
            )
        return [str(path), *argv[1:]]
    program = shutil.which(argv[0], path=env.get("PATH"))
    if program is None:
        raise ServerError(
            f"deploy.release_command: {argv[0]!r} is not found in {interpreter_bin()} or on PATH: install it into "
            "the app's virtualenv (`flask db upgrade` needs flask-migrate) or give its full path"
        )
    return [program, *argv[1:]]


def tail(log: Path) -> str:
    """The last lines of the command's output on one line, ' | ' between them; "no output" when it gave none."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    joined = " | ".join(lines[-TAIL_LINES:])
    return (joined if len(joined) <= TAIL_CHARS else "..." + joined[-TAIL_CHARS:]) or "no output"


@dataclass
class ReleaseCommand:
    """One run of the command for one release, its output in log."""

    argv: tuple[str, ...]
    release: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def shown(self) -> str:
        return shlex.join(self.argv)

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        """Started in a process group of its own, which `stop` ends whole (a shell's children too)."""
        program = resolve(self.argv, env, cwd)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                program,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=die_with_parent,
            )

    def finished(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def check(self, seconds: float) -> None:
        """ServerError, with its last output lines, unless the command exited 0."""
        assert self.proc is not None
        status = self.proc.returncode
        if status != 0:
            raise ServerError(
                f"the release command `{self.shown}` {describe_exit(status)} after {seconds:.1f}s, so release "
                f"{self.release} does not start; its last lines: {tail(self.log)} (all of it: {self.log})"
            )

    def timed_out(self, timeout: int) -> ServerError:
        return ServerError(
            f"the release command `{self.shown}` did not finish within deploy.release_timeout = {timeout}s and "
            f"was stopped, so release {self.release} does not start; its last lines: {tail(self.log)} "
            f"(all of it: {self.log}); raise deploy.release_timeout if it needs longer"
        )

    def stop(self) -> None:
        """SIGTERM to its group, then SIGKILL to what is left after STOP_GRACE: a migration stopped half-way is
        rolled back by the database's transaction."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # what its leader left behind
