"""What both servers share: the bind check, the per-start run directory and the drain file."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import socket
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ServerError
from ..runtime.metrics import MULTIPROC_ENV
from ..spec import DRAIN_FILE_ENV

__all__ = ["DRAIN_FILE_ENV", "MULTIPROC_ENV", "UNIX_PATH_MAX", "RunDir", "check_bind", "parse_bind"]

# The longest unix socket path the kernel takes: sun_path holds 108 bytes with the closing NUL.
UNIX_PATH_MAX = 107


def loopback_for(host: str) -> str:
    """Where this machine reaches a listener bound to host: the loopback address for a wildcard."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "*": "127.0.0.1"}.get(host, host)


def parse_bind(bind: str) -> tuple[str, int] | str:
    """(host, port) for 'host:port' or '[v6]:port', or the path for 'unix:/path'."""
    if bind.startswith("unix:"):
        return bind[len("unix:") :]
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServerError(f"bind {bind!r}: expected host:port such as 127.0.0.1:8000, or unix:/path/to.sock")
    return host.strip("[]") or "0.0.0.0", int(port)


def check_bind(bind: str, *, instead: str | None = None) -> None:
    """Fail early, on one line, when the address cannot be listened on (most often: already in use).

    instead is the flag the message suggests; by default --bind with another port on the same host,
    or another path for a unix socket.
    """
    address = parse_bind(bind)
    if isinstance(address, str):
        _check_unix(bind, address, instead or "--bind unix:PATH")
    else:
        _check_tcp(bind, address, instead or f"--bind {bind.rpartition(':')[0]}:PORT")


def _check_tcp(bind: str, address: tuple[str, int], instead: str) -> None:
    try:
        infos = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServerError(f"cannot listen on {bind}: {exc.strerror}; pass a local address") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # nginx and the servers set SO_REUSEADDR too, so a port in TIME_WAIT is not reported as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServerError(f"{bind} is already in use: stop what holds it or pass {instead}") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ServerError(
                    f"cannot listen on {bind}: {exc.strerror}, since no interface of this machine has that address; "
                    f"pass one it has, such as 127.0.0.1:{address[1]}, or 0.0.0.0:{address[1]} for every interface"
                ) from None
            raise ServerError(f"cannot listen on {bind}: {exc.strerror}") from None


def _check_unix(bind: str, path: str, instead: str) -> None:
    """The path takes a new socket: short enough, in a directory this user may write, and nothing in the way
    but a socket no server answers on (left by one that died: the server removes it, as it always has)."""
    size = len(os.fsencode(path))
    if size > UNIX_PATH_MAX:
        raise ServerError(
            f"cannot listen on {bind}: the path is {size} bytes, over the {UNIX_PATH_MAX} a unix socket takes; "
            f"pass {instead} with a shorter path"
        )
    directory = os.path.dirname(path) or "."
    try:
        mode: int | None = os.stat(path).st_mode  # a link to a socket is replaced like the socket
    except FileNotFoundError:
        mode = stat.S_IFLNK if os.path.islink(path) else None  # a dangling link is in the way too
    except OSError:
        mode = None  # its directory is the problem: binding says which
    if mode is None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(path)
            except OSError as exc:
                raise ServerError(_unbindable(bind, directory, exc, instead)) from None
        os.unlink(path)
    elif stat.S_ISDIR(mode):
        example = os.path.join(path, "app.sock")
        raise ServerError(f"cannot listen on {bind}: {path} is a directory; name a socket in it: --bind unix:{example}")
    elif not stat.S_ISSOCK(mode):
        raise ServerError(f"cannot listen on {bind}: {path} exists and is not a socket; move it away or pass {instead}")
    elif _answers(path):
        raise ServerError(f"{bind} is already in use: stop what holds it or pass {instead}")
    elif not os.access(directory, os.W_OK | os.X_OK):  # the server could not replace the stale socket
        raise ServerError(_not_writable(bind, directory, instead))


def _answers(path: str) -> bool:
    """True when a server accepts connections on the socket at path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(path)
        except BlockingIOError:
            return True  # its listen backlog is full: very much alive
        except OSError:
            return False
    return True


def _not_writable(bind: str, directory: str, instead: str) -> str:
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = f"uid {os.geteuid()}"
    return (
        f"cannot listen on {bind}: directory {directory} is not writable by user {user}; "
        f"give {user} write access or pass {instead}"
    )


def _unbindable(bind: str, directory: str, exc: OSError, instead: str) -> str:
    """The one line for a failed bind of a unix socket path that did not exist."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) and not os.path.isdir(directory):
        if os.path.exists(directory):
            return f"cannot listen on {bind}: {directory} is not a directory; pass {instead}"
        return f"cannot listen on {bind}: directory {directory} does not exist; create it or pass {instead}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return _not_writable(bind, directory, instead)
    if exc.errno == errno.EADDRINUSE:  # made since it was looked at
        return f"{bind} is already in use: stop what holds it or pass {instead}"
    return f"cannot listen on {bind}: {exc.strerror or exc}"


@dataclass(frozen=True)
class RunDir:
    """Files one server start owns: the multi-process metrics directory and the drain file."""

    path: Path
    multiproc_dir: Path
    owns_multiproc_dir: bool
    # Named by a supervisor above this server (`flaskprod up`), which marks the workers draining
    # itself before it stops anything; None = a file of this start's own.
    given_drain_file: Path | None = None

    @classmethod
    def create(cls, name: str, multiproc_dir: str | None) -> RunDir:
        path = Path(tempfile.mkdtemp(prefix=f"flaskprod-{name}-"))
        given = os.environ.get(DRAIN_FILE_ENV)
        drain = Path(given) if given else None
        if multiproc_dir is None:
            return cls(path=path, multiproc_dir=path / "metrics", owns_multiproc_dir=True, given_drain_file=drain)
        return cls(
            path=path, multiproc_dir=Path(multiproc_dir).resolve(), owns_multiproc_dir=False, given_drain_file=drain
        )

    @property
    def drain_file(self) -> Path:
        return self.given_drain_file or self.path / "draining"

    def environ(self) -> dict[str, str]:
        """Variables the workers inherit: where metrics go and which file means 'draining'."""
        return {MULTIPROC_ENV: str(self.multiproc_dir), DRAIN_FILE_ENV: str(self.drain_file)}

    def prepare(self) -> None:
        """A fresh metrics directory and no drain file, as every start must begin."""
        from ..runtime.metrics import prepare_multiproc_dir

        prepare_multiproc_dir(str(self.multiproc_dir))
        self.drain_file.unlink(missing_ok=True)

    def begin_drain(self) -> None:
        """From now on every worker's readiness answers 503."""
        self.drain_file.touch()

    def mark_app_loaded(self) -> None:
        """A worker loaded the app: the code imports, so a later worker's failure to load it is taken as passing."""
        (self.path / "app-loaded").touch()

    def app_loaded_before(self) -> bool:
        return (self.path / "app-loaded").exists()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if not self.owns_multiproc_dir:
            from ..runtime.metricfiles import ARCHIVE_FILES

            # Leave a configured directory in place but empty, so nothing stale outlives this start.
            for entry in [*self.multiproc_dir.glob("*.db"), *(self.multiproc_dir / name for name in ARCHIVE_FILES)]:
                entry.unlink(missing_ok=True)
