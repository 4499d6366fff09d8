"""`up --with postgres`: a real PostgreSQL beside the app on this machine, reached on a unix socket only.

Its max_connections is counted from the pool sizes the app is told, for two releases at once (`flaskprod
deploy` runs both while it switches, a canary runs both for as long as it lasts), so the pools can never
outgrow it: the same count `build --with postgres` makes for a rolling update. Its data stays in
database.local_dir between runs. No TCP listener: the socket's directory, 0700, is the only way in, so the
local connections it trusts are those of the user who runs `up` (and root). One `up` at a time runs it: a lock file
in database.local_dir names the `up` that does.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import ServerError, SpecError
from ..render.deployment import dns_label
from ..sizing import Derived, max_connections
from ..spec import Spec
from .children import Child, as_user
from .pidlock import HeldElsewhere, hold
from .releases import RELEASES_AT_ONCE

INSTALL_HINT = "install it with `apt-get install postgresql` (Debian, Ubuntu)"
# The cluster's superuser; the app logs in as a role of its own, named after it, which owns its database.
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root: `up` run as root runs the server as this OS user (Debian's package makes it).
OS_USER = "postgres"
# Seconds PostgreSQL's fast shutdown gets when `up` stops at once (a Ctrl-C before ready, or a second one).
FAST_SHUTDOWN_GRACE = 30.0
# The drivers SQLAlchemy names in a URL, in the order they are preferred.
DRIVERS = ("psycopg2", "psycopg")
# Settings a reload cannot change under --with postgres: the server was started with them.
RESTART_ONLY = ("database.local_dir", "database.postgres_bin_dir", "database.url_env")
# In database.local_dir: held (flock) by the `up` that runs PostgreSQL there, which writes its pid in it.
LOCK_FILE = "up.lock"
# postmaster.pid's eighth line: the server's state, "ready" once it accepts connections (what `pg_ctl start --wait`
# reads).
STATUS_LINE = 7


@dataclass(frozen=True, kw_only=True)
class Postgres:
    bin_dir: Path
    directory: Path
    os_user: str | None  # who the server runs as, when not the user who runs `up`
    name: str  # the app's role and database
    driver: str
    max_connections: int

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "socket"

    @property
    def url(self) -> str:
        """What the app is given: its role, no password (none is needed on the socket), the socket's directory."""
        return f"postgresql+{self.driver}://{self.name}@/{self.name}?host={self.socket_dir}"

    def describe(self) -> str:
        return (
            f"PostgreSQL {self.version()}, database {self.name} on unix:{self.socket_dir}, "
            f"max_connections {self.max_connections}; data in {self.data_dir}"
        )

    def version(self) -> str:
        return self.bin_dir.parent.name

    def _run(self, command: list[str], what: str, *, as_server: bool = False) -> str:
        done: subprocess.CompletedProcess[str] = subprocess.run(
            command,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
            **as_user(self.os_user if as_server else None),
        )
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise ServerError(f"{what} failed: {lines[-1] if lines else f'exit status {done.returncode}'}")
        return done.stdout

    def prepare(self) -> tuple[IO[str], bool]:
        """The directories, held for this `up` as long as the lock returned is open, and a cluster made by initdb on
        the first run; True when it made one. ServerError when another `up`, or another PostgreSQL, runs on the
        data."""
        self._make_directories()
        # Taken before the data is judged: a live `up`'s server is never taken for one a killed `up` left behind.
        lock = self._hold()
        try:
            return lock, self._make_cluster()
        except BaseException:
            lock.close()
            raise

    def _make_directories(self) -> None:
        try:
            self.socket_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServerError(
                f"database.local_dir {self.directory}: cannot make {exc.filename}: {exc.strerror}"
            ) from None
        if self.os_user is not None:
            check_reachable(self.directory, self.os_user)  # the folders just made, as the umask left them
            entry = pwd.getpwnam(self.os_user)
            for path in (self.directory, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(self.directory, 0o700)
        os.chmod(self.socket_dir, 0o700)

    def _make_cluster(self) -> bool:
        """initdb's cluster, on the first run; True when it made one."""
        if (self.data_dir / "PG_VERSION").is_file():
            self._check_unheld()  # the lock was free: a PostgreSQL here now is no live `up`'s
            return False
        shutil.rmtree(self.data_dir, ignore_errors=True)  # a directory initdb left half made
        initdb = [
            str(self.bin_dir / "initdb"),
            f"--pgdata={self.data_dir}",
            f"--username={SUPERUSER}",
            # Local connections only, and the socket's directory decides who makes them.
            "--auth-local=trust",
            "--auth-host=reject",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]
        try:
            self._run(initdb, f"initdb of {self.data_dir}", as_server=True)
        except ServerError:
            # initdb removes what it made when it fails, or is stopped, but not when a signal kills it first.
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise
        return True

    def _hold(self) -> IO[str]:
        """database.local_dir's lock file, locked and naming this process; ServerError naming the `up` holding it."""
        try:
            return hold(self.directory / LOCK_FILE)
        except OSError as exc:
            raise ServerError(
                f"database.local_dir {self.directory}: cannot open {exc.filename}: {exc.strerror}"
            ) from None
        except HeldElsewhere as exc:
            # A holder that has not written its pid yet is starting: there is no pid to name.
            known = exc.holder.isdigit()
            how = f"with `kill -TERM {exc.holder}` (or Ctrl-C where it runs)" if known else "where it runs"
            raise ServerError(
                f"another flaskprod up (pid {exc.holder}) runs PostgreSQL on database.local_dir {self.directory}: stop "
                f"it {how}, or set database.local_dir to another directory"
            ) from None

    def _check_unheld(self) -> None:
        """Refuse, in one line, data a live process holds (postmaster.pid names it): PostgreSQL would refuse too,
        with a FATAL line and its exit status."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return  # no lock file, or its process is gone: PostgreSQL takes the data over
        try:
            program = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            program = "postgres"
        if program != "postgres":  # its pid taken by another process since: the file outlived its server
            raise ServerError(
                f"{self.data_dir}/postmaster.pid names pid {pid}, which is now {program}, not PostgreSQL: remove that "
                "file if no PostgreSQL runs on this data, then start again"
            )
        raise ServerError(
            f"a PostgreSQL (pid {pid}) still holds database.local_dir's data {self.data_dir}, perhaps left by a "
            f"`flaskprod up` that was killed: stop it with `kill {pid}`, then start again (or set database.local_dir "
            "to another directory)"
        )

    def child(self) -> Child:
        """The server: SIGINT is its fast shutdown (sessions end, a checkpoint is written)."""
        command = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            "listen_addresses=",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            "-c",
            f"max_connections={self.max_connections}",
        ]
        # It dies with `up` as it stops with it, fast: were `up` killed outright, nothing else would stop it.
        child = Child(
            name="postgres",
            command=command,
            stop_signal=signal.SIGINT,  # its fast shutdown: transactions are rolled back, the data is left clean
            death_signal=signal.SIGINT,
            user=self.os_user,
            cwd=self.directory,  # one it can enter: in `up`'s (a project root's 0700 folder), it logs that it cannot
            quick_grace=FAST_SHUTDOWN_GRACE,  # killed, it would replay its log at the next start
        )
        # It serves once postmaster.pid says ready (after its recovery, on its socket): one that cannot take its
        # socket exits before.
        child.serves = lambda: self.ready(child.pid)[0]
        return child

    def _client(self, program: str, *args: str) -> list[str]:
        return [str(self.bin_dir / program), "-h", str(self.socket_dir), "-U", SUPERUSER, *args]

    def ready(self, pid: int | None) -> tuple[bool, str]:
        """Whether the server started as pid accepts connections, and what postmaster.pid says. Read, not asked: the
        server logs a FATAL line for every connection tried while it starts up (or shuts down)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().split("\n")
        except OSError:
            return False, "no postmaster.pid yet"
        if lines[0] != str(pid):  # an earlier server's, not yet rewritten by this one
            return False, f"postmaster.pid names pid {lines[0] or '(none yet)'}, not {pid}"
        status = lines[STATUS_LINE].strip() if len(lines) > STATUS_LINE else ""
        return status == "ready", f"postmaster.pid says {status or 'starting'}"

    def ensure_database(self) -> bool:
        """The app's role and its database, made once; True when they were made now."""
        query = f"SELECT 1 FROM pg_database WHERE datname = '{self.name}'"
        if self._run(self._client("psql", "-d", "postgres", "-tAc", query), "psql").strip() == "1":
            return False
        self._run(self._client("createuser", "--no-superuser", "--no-createdb", self.name), "createuser")
        self._run(self._client("createdb", f"--owner={self.name}", self.name), "createdb")
        return True


def role_name(spec: Spec) -> str:
    return dns_label(spec.app.name).replace("-", "_")


def find_bin_dir(setting: str) -> Path:
    if setting != "auto":
        path = Path(setting)
        if not (path / "postgres").is_file():
            raise ServerError(
                f"database.postgres_bin_dir {setting} holds no postgres program: set it to the directory of "
                f"PostgreSQL's server programs, or to auto; {INSTALL_HINT}"
            )
        return path
    found = [Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin") if (Path(d) / "postgres").is_file()]
    found.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else -1)
    if not found:
        raise ServerError(
            f"PostgreSQL not found under /usr/lib/postgresql/*/bin: --with postgres runs it; {INSTALL_HINT}"
        )
    return found[-1]


def find_driver() -> str:
    """The driver the app's interpreter (this one: `up` starts the app server with it) can import."""
    for driver in DRIVERS:
        if importlib.util.find_spec(driver) is not None:
            return driver
    raise ServerError(
        "--with postgres gives the app a PostgreSQL URL, and no driver for it is installed: "
        "pip install psycopg2-binary (or psycopg[binary])"
    )


def _reachable(path: Path, user: str) -> Path | None:
    """The first directory above path that user cannot pass through, if any; one not made yet is no obstacle (it is
    checked once made)."""
    entry = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, entry.pw_gid))
    for parent in reversed(path.parents):
        try:
            info = parent.stat()
        except FileNotFoundError:
            return None  # and nothing below it exists either
        if info.st_uid == entry.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return parent
    return None


def check_reachable(directory: Path, user: str) -> None:
    """SpecError when user, who runs the server, cannot reach directory."""
    blocked = _reachable(directory, user)
    if blocked is not None:
        raise SpecError(
            f"database.local_dir {directory}: the {user} user the server runs as cannot enter {blocked} "
            f"(mode {stat.S_IMODE(blocked.stat().st_mode):04o}): set database.local_dir to a directory it can "
            "reach, e.g. /var/lib/flaskprod"
        )


def plan_postgres(spec: Spec, derived: Derived) -> Postgres:
    """Check what --with postgres needs: the programs, a driver for the app, a directory the server can reach."""
    if not spec.database.engine_options:
        raise SpecError(
            "--with postgres sizes the server for the pools the app is told, which reach SQLAlchemy through "
            "database.engine_options, and it is false: set it to true, or run without --with postgres"
        )
    bin_dir = find_bin_dir(spec.database.postgres_bin_dir)
    driver = find_driver()
    directory = Path(spec.database.local_dir).resolve()
    os_user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            raise ServerError(
                f"PostgreSQL does not run as root, and there is no {OS_USER} user to run it as: {INSTALL_HINT} "
                "(it makes the user), or run `flaskprod up` as another user"
            ) from None
        os_user = OS_USER
        check_reachable(directory, OS_USER)
    # derived.pool is each process's share of database.connection_budget with both releases running.
    processes = RELEASES_AT_ONCE * derived.workers
    return Postgres(
        bin_dir=bin_dir,
        directory=directory,
        os_user=os_user,
        name=role_name(spec),
        driver=driver,
        max_connections=max_connections(derived.pool, processes),
    )
