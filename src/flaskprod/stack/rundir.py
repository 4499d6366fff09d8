"""The run directory of `flaskprod up`: config, socket, pid file, temp files and logs in one place."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import ServerError, SpecError
from ..render import NginxContext, TlsFiles
from ..render.nginx import Protocol, StaticMount, conf_path
from ..servers.common import UNIX_PATH_MAX
from ..spec import validate
from .pidlock import HeldElsewhere, hold
from .releases import LAST_NUMBER, PARTIAL

# The widest release number StackDir.at measures the run directory's socket paths with; a release numbered past it
# is checked as it is made (StackDir.check_release).
LONGEST_CHECKED = 99999
# StackDir.leftovers, as globs under the run directory.
_LEFTOVERS = (
    "app-*.sock",
    "app-*.prom",
    "app-*.json",
    "draining-*",
    "serving-*",
    ".serving-*.new",
    "scrapes",
    "control.sock",
    "nginx.pid",
    "nginx.conf.new",
    f"releases/{PARTIAL.format(number='*')}",
    f"releases/{LAST_NUMBER}.new",
)


def repoint(link: Path, target: str) -> None:
    """link pointed at target (relative to link's folder), atomically: whoever opens it next (nginx) reaches target,
    and no one finds it missing meanwhile."""
    staged = link.with_name(f".{link.name}.new")
    staged.unlink(missing_ok=True)
    staged.symlink_to(target)
    os.replace(staged, link)  # rename(2) replaces the link itself, never what it points to


@dataclass(frozen=True)
class StackDir:
    """Paths under one directory; nothing `up` writes lives anywhere else."""

    path: Path

    @property
    def nginx_conf(self) -> Path:
        return self.path / "nginx.conf"

    @property
    def nginx_pid(self) -> Path:
        return self.path / "nginx.pid"

    def app_socket(self, release: int, generation: int = 0) -> Path:
        """Each release's app server listens on its own socket: two run at once while nginx switches, between
        releases on a deploy, or between two app servers of one release (generations 0 and 1) on a reload."""
        return self.path / (f"app-{release}.{generation}.sock" if generation else f"app-{release}.sock")

    def serving_socket(self, link: int) -> Path:
        """A link nginx connects through to the serving release's app server (serving-0.sock -> app-2.sock, and
        serving-0.prom -> app-2.prom beside it): a switch repoints it, and one that changes nothing else needs no
        reload of nginx. Two (link 0 and 1), so that a switch that reloads nginx gives its new config the other: its
        old workers keep sending what they hold to the old app server, the new ones to the new."""
        return self.path / f"serving-{link}.sock"

    def serving_folder(self, link: int) -> Path:
        """The link to the serving release's folder (serving-0 -> releases/2), which nginx serves static files from."""
        return self.path / f"serving-{link}"

    @property
    def scrapes_dir(self) -> Path:
        """`up --with monitoring`: a folder per running release (scrapes/2/), holding the link nginx's listener for
        Prometheus passes /releases/2/metrics through (scrape_link); a release that stops takes its folder along, so
        nginx.conf names no release and a deploy needs no reload of nginx for its scrapes."""
        return self.path / "scrapes"

    def scrape_link(self, release: int) -> Path:
        """The link to release's metrics responder (scrapes/2/app.prom -> ../../app-2.prom), repointed when a reload
        replaces its app server."""
        return self.scrapes_dir / str(release) / "app.prom"

    def point_scrapes(self, responders: Mapping[int, Path]) -> None:
        """A scrape link for each running release (number: its app server's metrics responder), each repointed
        atomically; the folders of the others go, so nginx answers 404 for them."""
        for release, responder in responders.items():
            link = self.scrape_link(release)
            link.parent.mkdir(parents=True, exist_ok=True)
            repoint(link, os.path.relpath(responder, link.parent))
        for folder in self.scrapes_dir.glob("*") if self.scrapes_dir.is_dir() else ():
            if not (folder.name.isdigit() and int(folder.name) in responders):
                shutil.rmtree(folder, ignore_errors=True)

    @property
    def releases_dir(self) -> Path:
        return self.path / "releases"

    @property
    def control_socket(self) -> Path:
        """Where `flaskprod deploy` and `rollback` reach the running `up`."""
        return self.path / "control.sock"

    def drain_file(self, release: int, generation: int = 0) -> Path:
        """Readiness answers 503 while it exists: each app server's own, as a drained one stops beside the next."""
        return self.path / (f"draining-{release}.{generation}" if generation else f"draining-{release}")

    @property
    def temp_dir(self) -> Path:
        return self.path / "tmp"

    @property
    def tls_dir(self) -> Path:
        return self.path / "tls"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def access_log(self) -> Path:
        return self.logs_dir / "access.log"

    @property
    def prometheus_dir(self) -> Path:
        """`up --with monitoring`: prometheus.yml, the alerts.yml it loads, and data/ (kept between runs)."""
        return self.path / "prometheus"

    def leftovers(self) -> list[Path]:
        """What only a running `up` uses, left when it stops or is killed: its app servers' sockets, records and
        drain files, the links nginx reached them through (at nothing once those are gone), the control socket,
        nginx's pid file, staged files, and copies into releases/ cut short. Never a release (rollback's), a log, or
        the configs and data kept between runs."""
        found = [path for pattern in _LEFTOVERS for path in self.path.glob(pattern)]
        return sorted(path for path in found if path.is_symlink() or path.exists())

    def tidy(self) -> None:
        """Remove leftovers(): only by the `up` holding the directory (lock), once nothing of another run uses them."""
        for path in self.leftovers():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def socket_paths(self, *, scrapes: bool, release: int = LONGEST_CHECKED) -> list[Path]:
        """The longest unix socket paths a run makes here for release (by default, the widest number at() checks):
        an app server's on its second socket (its metrics responder's beside it is no longer: sizing.responder_bind);
        under --with monitoring, a scrape link too, which nginx connects through."""
        return [self.app_socket(release, 1), *([self.scrape_link(release)] if scrapes else [])]

    def _over(self, *, scrapes: bool, release: int = LONGEST_CHECKED) -> int:
        """Bytes by which the longest of socket_paths passes what a unix socket takes (<= 0: none does)."""
        longest = max(len(os.fsencode(path)) for path in self.socket_paths(scrapes=scrapes, release=release))
        return longest - UNIX_PATH_MAX

    def check_release(self, number: int, *, scrapes: bool) -> None:
        """ServerError, before release number is made, when its socket paths here pass what a unix socket takes:
        at() checked every number up to LONGEST_CHECKED, and a wider one lengthens each path."""
        over = self._over(scrapes=scrapes, release=number)
        if over > 0:
            size = len(os.fsencode(self.path))
            links = ", with --with monitoring's scrape links" if scrapes else ""
            raise ServerError(
                f"release {number}'s unix socket paths under run directory {self.path} ({size} bytes) would pass the "
                f"{UNIX_PATH_MAX} bytes a socket takes{links}: set proxy.run_dir to a path of at most {size - over} "
                "bytes and restart flaskprod up (its releases are numbered from 1 again)"
            )

    @classmethod
    def at(cls, path: str | os.PathLike[str], *, scrapes: bool = False) -> StackDir:
        """The run directory proxy.run_dir names, checked before anything is made: a ServerError naming it. scrapes:
        the run makes scrape links (--with monitoring), whose paths are the longest."""
        run = cls(Path(path).resolve())
        size = len(os.fsencode(run.path))
        over = run._over(scrapes=scrapes)
        if over > 0:
            links = ", with --with monitoring's scrape links" if scrapes else ""
            raise ServerError(
                f"run directory {run.path} is {size} bytes, too long for the unix socket paths under it "
                f"({UNIX_PATH_MAX} bytes at most{links}): set proxy.run_dir to a path of at most {size - over} bytes"
            )
        try:
            conf_path(str(run.path))
            validate("server.bind", f"unix:{run.app_socket(1)}", "proxy.run_dir")
        except SpecError:
            raise ServerError(
                f"proxy.run_dir {run.path}: nginx and the app server cannot take a path with $, ;, {{, }}, quotes or "
                "control characters: set proxy.run_dir to a path without them"
            ) from None
        existing = next(path for path in (run.path, *run.path.parents) if path.exists())
        if not existing.is_dir():
            what = "is a file" if existing == run.path else f"is under {existing}, which is a file"
            raise ServerError(f"proxy.run_dir {run.path} {what}: set proxy.run_dir to a directory's path")
        if os.statvfs(existing).f_flag & os.ST_RDONLY:  # os.access says only "no", and root owns what it cannot write
            raise ServerError(
                f"proxy.run_dir {run.path}: {existing} is on a read-only filesystem: set proxy.run_dir to a directory "
                "on a writable one, such as /tmp/NAME"
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ServerError(
                f"proxy.run_dir {run.path}: {existing} is not writable by {_user()}: run `flaskprod up` as its "
                "owner, or set proxy.run_dir to a directory you can write"
            )
        return run

    def make(self) -> None:
        """The directory and the folders nginx writes to from the start."""
        try:
            for directory in (self.path, self.temp_dir, self.logs_dir):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServerError(f"proxy.run_dir {self.path}: cannot make {exc.filename}: {exc.strerror}") from None

    def lock(self) -> IO[str]:
        """Hold the directory for this process; a second `up` on it fails on one line instead of fighting."""
        try:
            return hold(self.path / "up.lock")
        except OSError as exc:
            raise ServerError(f"proxy.run_dir {self.path}: cannot open {exc.filename}: {exc.strerror}") from None
        except HeldElsewhere as exc:
            raise ServerError(
                f"another flaskprod up (pid {exc.holder}) is running in {self.path}: stop it, or set proxy.run_dir"
            ) from None

    def nginx_context(
        self,
        *,
        upstream: Path,
        host: str,
        port: int,
        protocol: Protocol,
        static: tuple[StaticMount, ...],
        user: str | None,
        tls: TlsFiles | None = None,
        metrics: tuple[str, int] | None = None,
        canary: tuple[Path, int] | None = None,
    ) -> NginxContext:
        """upstream is the app server's socket; canary, a (socket, percent), gives a second app server that
        share of the requests; metrics, a (host, port), adds the listener that serves the metrics path alone,
        to Prometheus."""
        return NginxContext(
            host=host,
            port=port,
            upstream=f"unix:{upstream}",
            canary=(f"unix:{canary[0]}", canary[1]) if canary else None,
            protocol=protocol,
            static=static,
            conf_dir=str(self.path),
            pid_file=str(self.nginx_pid),
            temp_dir=str(self.temp_dir),
            access_log=str(self.access_log),
            error_log="stderr",
            user=user,
            tls=tls,
            metrics_host=metrics[0] if metrics else None,
            metrics_port=metrics[1] if metrics else None,
            # Each app server answers scrapes beside its socket (app_server_env turns it on).
            responders=True,
            # Prometheus scrapes each running release apart, a canary too, through its link (point_scrapes).
            release_scrapes=str(self.scrapes_dir) if metrics else None,
        )


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _entries(path: Path, depth: int) -> set[Path]:
    """What lies in path, down to depth levels (1: its own entries), symbolic links not followed."""
    if depth <= 0 or path.is_symlink():
        return set()
    try:
        children = list(path.iterdir())
    except OSError:
        return set()
    found = set(children)
    for child in children:
        found |= _entries(child, depth - 1)
    return found


def _remove(path: Path, keep: Callable[[Path], bool]) -> None:
    """path and what it holds, except what keep names (and the folders holding that); quietly, as far as it can."""
    if keep(path):
        return
    if path.is_dir() and not path.is_symlink():
        with contextlib.suppress(OSError):
            for child in path.iterdir():
                _remove(child, keep)
        with contextlib.suppress(OSError):
            path.rmdir()  # left when it still holds something kept
    else:
        with contextlib.suppress(OSError):
            path.unlink()


@dataclass(frozen=True)
class _Watched:
    path: Path
    depth: int
    made: Path | None  # path's first missing folder, which this run makes along with it: all of it is this run's
    before: frozenset[Path]


class Trail:
    """What a run of `up` made, told from what existed before it: a start that fails takes back its own files and
    folders, never what an earlier run left (its releases, logs, a database's data)."""

    def __init__(self) -> None:
        self._watched: list[_Watched] = []

    def watch(self, path: Path, depth: int = 0) -> None:
        """Before anything is made in path: remember what lies in it, depth levels down (0: path alone is this run's
        or not)."""
        missing = [folder for folder in (path, *path.parents) if not (folder.exists() or folder.is_symlink())]
        made = missing[-1] if missing else None
        self._watched.append(_Watched(path, depth, made, frozenset() if made else frozenset(_entries(path, depth))))

    def remove(self, keep: Callable[[Path], bool] = lambda path: False) -> None:
        """Remove what was made since watch(), except the files keep names."""
        for watched in reversed(self._watched):
            if watched.made is not None:
                _remove(watched.made, keep)
                continue
            new = _entries(watched.path, watched.depth) - watched.before
            for path in sorted(new):
                if path.parent not in new:  # a new folder goes whole
                    _remove(path, keep)


class Claim:
    """The run directory held by one `up`: made, locked against a second one, and when the start fails, rid of
    what this run made. Its logs of commands that failed stay: the error names them."""

    def __init__(self, run: StackDir) -> None:
        self.run = run
        self.trail = Trail()
        self.trail.watch(run.path, depth=2)  # releases/N, logs/*, tls/*, tmp/*: each this run's or an earlier one's
        self.lock: IO[str] | None = None
        self.kept: list[Path] = []

    def take(self, others: Iterable[Path] = ()) -> None:
        """Make and lock the run directory; others are further places this run may make (watched whole)."""
        for path in others:
            self.trail.watch(path)
        try:
            self.run.make()
        except ServerError:
            self.trail.remove()
            raise
        self.lock = self.run.lock()  # held by another `up`: nothing here is this run's to remove
        # Left by an `up` that was killed (its lock went with it): a stale drain file would fail readiness at once,
        # a copy cut short holds the project's size, records and links would stay for good.
        self.run.tidy()

    def release(self, *, failed: bool) -> None:
        """Let the directory go; after a failed start, without what this run made."""
        if self.lock is None:
            return
        if failed:
            self.trail.remove(keep=self._kept)
        self.lock.close()
        self.lock = None

    def keep(self, path: Path) -> None:
        """Leave path, and all it holds, where a failed start would take it back: something this run made that is
        whole and worth keeping (a database's cluster)."""
        self.kept.append(path)

    def _kept(self, path: Path) -> bool:
        if any(path == kept or kept in path.parents for kept in self.kept):
            return True
        return path.parent == self.run.logs_dir and path != self.run.access_log

