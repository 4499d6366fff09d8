"""A real PostgreSQL for tests: one already running (DATABASE_URL or a local socket), or a throwaway initdb cluster."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.support import free_port

# Where the Debian packages put the machine's own clusters' sockets.
LOCAL_SOCKET_DIR = "/var/run/postgresql"
# initdb refuses to run as root, so a root test run hands the cluster to this OS user.
PG_USER = "postgres"
# Crash safety is worthless for a throwaway cluster; these make start, stop and writes fast.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "100",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL could be found or installed: a test setup error, never a reason to skip."""


def _newest_bin_dir() -> Path | None:
    """The bin dir of the newest Debian-packaged PostgreSQL, e.g. /usr/lib/postgresql/15/bin."""
    dirs = [Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin") if (Path(d) / "initdb").is_file()]
    dirs.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else -1)
    return dirs[-1] if dirs else None


def _is_root() -> bool:
    return os.geteuid() == 0


def _install_postgresql() -> None:
    subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL, timeout=300)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        timeout=600,
    )


def find_bin_dir() -> Path:
    """The PostgreSQL server binaries, installed from the Debian package when missing and we are root."""
    bin_dir = _newest_bin_dir()
    if bin_dir is None and _is_root() and shutil.which("apt-get"):
        _install_postgresql()
        bin_dir = _newest_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin. "
            "Install them with `apt-get install postgresql` (as root) or set DATABASE_URL to a running server."
        )
    return bin_dir


def to_sqlalchemy_url(url: str) -> str:
    """postgres://... and postgresql://... as SQLAlchemy's postgresql+psycopg2://... form."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg2"))


def answers(url: str, timeout: int = 2) -> bool:
    """True when a PostgreSQL server at url accepts a connection and runs SELECT 1."""
    import psycopg2

    dsn = urlunsplit(urlsplit(url)._replace(scheme="postgresql"))
    try:
        with contextlib.closing(psycopg2.connect(dsn, connect_timeout=timeout)) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            return bool(cur.fetchone() == (1,))
    except psycopg2.Error:
        return False


def _local_socket_urls() -> list[str]:
    """URLs for the machine's own cluster(s) on the Debian socket directory, as the postgres role."""
    sockets = sorted(Path(LOCAL_SOCKET_DIR).glob(".s.PGSQL.*"))
    return [
        f"postgresql+psycopg2://{PG_USER}@/postgres?host={LOCAL_SOCKET_DIR}&port={sock.suffix.lstrip('.')}"
        for sock in sockets
        if sock.suffix.lstrip(".").isdigit()
    ]


def external_url(environ: Mapping[str, str] = os.environ) -> str | None:
    """A running PostgreSQL that answers now: DATABASE_URL first, then a local socket; else None."""
    url = environ.get("DATABASE_URL", "")
    if urlsplit(url).scheme.split("+")[0] in {"postgres", "postgresql"}:
        return to_sqlalchemy_url(url) if answers(url) else None
    # Peer authentication usually refuses other OS users here; then the throwaway cluster is used.
    return next((u for u in _local_socket_urls() if answers(u)), None)


@dataclass
class ExternalPostgres:
    """A server this test run did not start: it may be used, never stopped."""

    url: str
    owned: bool = field(default=False, init=False)

    def stop(self) -> None:
        raise RuntimeError("refusing to stop a PostgreSQL server this test run did not start")

    def start(self) -> None:
        raise RuntimeError("refusing to start a PostgreSQL server this test run did not start")


@dataclass
class ThrowawayPostgres:
    """A cluster in a temporary directory, on 127.0.0.1 and a free port, trust auth, removed at close()."""

    bin_dir: Path
    root: Path
    port: int
    # Server settings over FAST_SETTINGS (what a deployment renders), and initdb options after its own.
    settings: Mapping[str, str] = field(default_factory=dict)
    initdb_args: Sequence[str] = ()
    owned: bool = field(default=True, init=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/postgres"

    @classmethod
    def create(cls, *, settings: Mapping[str, str] | None = None, initdb_args: Sequence[str] = ()) -> ThrowawayPostgres:
        bin_dir = find_bin_dir()
        # Under /tmp itself, whatever TMPDIR says: the postgres user must reach the cluster's directory,
        # and a private temp dir (pytest's is mode 0700) would shut it out.
        root = Path(tempfile.mkdtemp(prefix="flaskprod-pg-", dir="/tmp"))
        if _is_root():
            _chown_to_pg_user(root)
        server = cls(bin_dir=bin_dir, root=root, port=free_port(), settings=dict(settings or {}),
                     initdb_args=tuple(initdb_args))
        try:
            server._initdb()
            server.start()
        except BaseException:
            server.close()
            raise
        return server

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool as the cluster's owner (the postgres OS user when we are root)."""
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if _is_root():
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n{log}"
            )
        return result

    def _initdb(self) -> None:
        self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", PG_USER, "--no-sync", "-E", "UTF8",
                  "--locale=C", *self.initdb_args)

    def _server_options(self) -> str:
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            **FAST_SETTINGS,
            **self.settings,
        }
        return " ".join(f"-c {k}={v}" for k, v in options.items())

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        self._run("pg_ctl", "start", "-D", str(self.data_dir), "-w", "-t", "30", "-l", str(self.log_file),
                  "-o", self._server_options())

    def stop(self) -> None:
        """Stop the server for real (fast shutdown: open connections are cut) and return once it is gone."""
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-w", "-t", "30", "-m", "fast")

    def is_running(self) -> bool:
        return self._postmaster_pid() is not None

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def close(self) -> None:
        """Stop immediately, kill the postmaster if pg_ctl could not, and remove every file."""
        if self.is_running():
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-w", "-t", "10", "-m", "immediate")
        pid = self._postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)
        shutil.rmtree(self.root, ignore_errors=True)


def _chown_to_pg_user(path: Path) -> None:
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, but there is no {PG_USER!r} OS user to own the cluster (initdb refuses root); "
            "install the Debian `postgresql` package, which creates it"
        ) from None
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
