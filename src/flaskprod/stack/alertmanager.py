"""`up --with monitoring`: Debian's Alertmanager beside Prometheus, routing as `build --with monitoring`'s does.

Debian 12's Alertmanager (0.25) reads no url_file, so the webhook's URL, read from the file
monitoring.alert_webhook_url_file names, goes into its config in the run dir, which only `up`'s user reads.
"""

from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ServerError, SpecError
from ..render.monitoring import Receiver, alertmanager_file
from ..render.nginx import listen_address
from ..servers.common import check_bind
from ..spec import Spec
from .children import Child
from .prometheus import ALERTMANAGER_HOST, SCRAPE_INTERVAL, answers_ready, replace_file
from .rundir import StackDir

# Debian's name for it first; the upstream tarball's binary is `alertmanager`.
BINARIES = ("prometheus-alertmanager", "alertmanager")
INSTALL_HINT = "install it with `apt-get install prometheus-alertmanager` (Debian, Ubuntu)"
SETTING = "monitoring.alert_webhook_url_file"
# Rules are evaluated every SCRAPE_INTERVAL under `up` (15 s in the containers): alerts that fire together reach
# Alertmanager within two evaluations, so a group's first notification need not wait build's 30 s.
GROUP_WAIT = 2 * SCRAPE_INTERVAL


@dataclass(frozen=True, kw_only=True)
class Alertmanager:
    """`up`'s Alertmanager: its binary and its loopback port."""

    binary: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{listen_address(ALERTMANAGER_HOST, self.port)}"

    @staticmethod
    def directory(run: StackDir) -> Path:
        """alertmanager.yml (the webhook's URL in it: the owner's alone) and data/ (silences, notification log)."""
        return run.path / "alertmanager"

    def describe(self, spec: Spec) -> str:
        """Its line in `up`'s table."""
        hook = spec.monitoring.alert_webhook_url_file
        goes = f"posts alerts to the URL in {hook}" if hook else f"keeps alerts in its UI and API; {SETTING} unset"
        return f"{self.url}/  ({goes})"

    def child(self, run: StackDir, log_format: str) -> Child:
        """The supervised process: SIGTERM is its graceful stop, SIGHUP makes it read its config again."""
        directory = self.directory(run)
        command = [
            self.binary,
            f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address={listen_address(ALERTMANAGER_HOST, self.port)}",
            # The links in its notifications: its own address, not a lookup of this machine's hostname.
            f"--web.external-url={self.url}/",
            # Alone: no peers to gossip silences with, so no cluster port on every interface.
            "--cluster.listen-address=",
            "--log.level=warn",
            f"--log.format={'json' if log_format == 'json' else 'logfmt'}",
        ]
        return Child(name="alertmanager", command=command, stop_signal=signal.SIGTERM, listens_port=self.port)

    def write_config(self, run: StackDir, spec: Spec) -> bool:
        """alertmanager.yml, grouped and routed as build's, with the webhook's URL read now; whether it changed.
        SpecError when the URL's file cannot be read or holds no URL."""
        receiver = Receiver(url=webhook_url(spec))
        directory = self.directory(run)
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)
        text = alertmanager_file(receiver, group_wait=GROUP_WAIT, by="up")
        return replace_file(directory / "alertmanager.yml", text, mode=0o600)

    def ready(self) -> tuple[bool, str]:
        return answers_ready(ALERTMANAGER_HOST, self.port)


def webhook_url(spec: Spec) -> str | None:
    """The URL in the file monitoring.alert_webhook_url_file names (relative to where `up` runs), None when unset."""
    name = spec.monitoring.alert_webhook_url_file
    if name is None:
        return None
    try:
        text = Path(name).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        fix = "point it at a file holding the webhook's URL"
        raise SpecError(f"{SETTING} {name}: cannot read it ({why}); {fix}") from None
    words = text.split()
    # The URL is not shown: it often carries the receiver's token.
    if len(words) != 1 or not _is_url(words[0]):
        raise SpecError(
            f"{SETTING} {name}: holds no http:// or https:// URL alone; write the webhook's URL, nothing else, in it"
        )
    return words[0]


def _is_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:  # an unclosed [ of an IPv6 address
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def find_alertmanager() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found is not None:
            return found
    raise ServerError(f"prometheus-alertmanager not found on PATH: --with monitoring runs it; {INSTALL_HINT}")


def plan_alertmanager(spec: Spec) -> Alertmanager:
    """Check what the Alertmanager of --with monitoring needs: the binary, the webhook's URL, its port free.
    plan_prometheus has checked its port against the others."""
    binary = find_alertmanager()
    webhook_url(spec)
    port = spec.monitoring.alertmanager_port
    check_bind(listen_address(ALERTMANAGER_HOST, port), instead="--set monitoring.alertmanager_port=PORT")
    return Alertmanager(binary=binary, port=port)
