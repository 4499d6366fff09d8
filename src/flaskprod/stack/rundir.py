"""The run directory of `flaskprod up`: config, socket, pid file, temp files and logs in one place."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import ServerError
from ..render import NginxContext, TlsFiles
from ..render.nginx import Protocol, StaticMount
from ..servers.common import UNIX_PATH_MAX


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

    def drain_files(self) -> list[Path]:
        return sorted(self.path.glob("draining-*"))

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

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> StackDir:
        run = cls(Path(path).resolve())
        if len(str(run.app_socket(99999, 1))) > UNIX_PATH_MAX:  # checked before anything is made
            raise ServerError(
                f"run directory {run.path} is too long for a unix socket path ({UNIX_PATH_MAX} bytes): "
                "set proxy.run_dir to a shorter path"
            )
        for directory in (run.path, run.temp_dir, run.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        return run

    def lock(self) -> IO[str]:
        """Hold the directory for this process; a second `up` on it fails on one line instead of fighting."""
        handle = (self.path / "up.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise ServerError(
                f"another flaskprod up (pid {holder}) is running in {self.path}: stop it, or set proxy.run_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

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
        )
