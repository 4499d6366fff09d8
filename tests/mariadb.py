"""A real MariaDB for tests: a throwaway server in a temporary directory, on 127.0.0.1 and a free port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port

# The database and the user the app gets, as a deployment's would be: not root.
DATABASE, USER, PASSWORD = "shop", "shop", "shop-pw"


class MariaDBUnavailable(RuntimeError):
    """No MariaDB could be started: a test setup error, never a reason to skip."""


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise MariaDBUnavailable(f"{name} not found: apt-get install mariadb-server (make test installs it)")
    return found


@dataclass
class ThrowawayMariaDB:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.root / "mariadb.sock"

    @property
    def url(self) -> str:
        """The app's URL, for PyMySQL: a pure-Python driver, which gevent's patched sockets make wait in its loop."""
        return f"mysql+pymysql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    @classmethod
    def create(cls) -> ThrowawayMariaDB:
        root = Path(tempfile.mkdtemp(prefix="flaskprod-mariadb-"))
        data = root / "data"
        installed = subprocess.run(
            [_tool("mariadb-install-db"), "--no-defaults", f"--datadir={data}", f"--user={_os_user()}",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            capture_output=True, text=True, timeout=120,
        )
        if installed.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise MariaDBUnavailable(f"mariadb-install-db failed:\n{installed.stdout}{installed.stderr}")
        port = free_port()
        log = (root / "server.log").open("wb")
        proc = subprocess.Popen(
            [_tool("mariadbd"), "--no-defaults", f"--datadir={data}", f"--socket={root / 'mariadb.sock'}",
             f"--port={port}", "--bind-address=127.0.0.1", f"--user={_os_user()}", "--skip-log-bin",
             "--innodb-flush-log-at-trx-commit=0", "--skip-name-resolve"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        server = cls(root=root, port=port, proc=proc)
        try:
            server._wait_ready()
            server.admin(
                f"CREATE DATABASE {DATABASE}; CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'127.0.0.1'; GRANT PROCESS ON *.* TO '{USER}'@'127.0.0.1'"
            )
        except BaseException:
            server.close()
            raise
        return server

    def admin(self, sql: str) -> str:
        """Run sql as root over the server's socket; its tab-separated output."""
        done = subprocess.run(
            [_tool("mariadb"), "--no-defaults", f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", sql],
            capture_output=True, text=True, timeout=30,
        )
        if done.returncode != 0:
            raise MariaDBUnavailable(f"mariadb -e {sql!r} failed: {done.stderr.strip()}")
        return done.stdout

    def running(self, statement_start: str) -> int:
        """How many statements beginning with statement_start the server is running now."""
        escaped = statement_start.replace("'", "''")
        query = (
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            f"WHERE INFO LIKE '{escaped}%' AND ID <> CONNECTION_ID()"
        )
        return int(self.admin(query).strip())

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(MariaDBUnavailable):
                if self.socket.exists():
                    self.admin("SELECT 1")
                    return
            time.sleep(0.2)
        log = (self.root / "server.log").read_text(errors="replace")[-2000:]
        raise MariaDBUnavailable(f"mariadbd did not start within {timeout:g}s:\n{log}")

    def close(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 20 s) and remove every file."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _os_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
