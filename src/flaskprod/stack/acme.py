"""`flaskprod up --tls acme`: a certificate from an ACME server (Let's Encrypt), got and renewed by certbot.

certbot answers the HTTP-01 challenge through the running nginx (its webroot), so nginx starts first with
a placeholder certificate when none was issued yet, and reloads once the real one is in place. The
certificate lives in tls.acme_dir between runs: a restart reuses it, as Let's Encrypt's rate limits want.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import ServerError, SpecError
from ..render.tls import http01_validatable
from ..spec import Spec

# certbot's own timer runs `certbot renew` twice a day; it renews 30 days before expiry.
RENEW_EVERY = 12 * 3600.0
# A renewed certificate `nginx -t` refused (half written, a key that does not match yet) is tried again this often.
RELOAD_RETRY = 60.0
# An order at Let's Encrypt takes seconds; this bounds a server that does not answer.
OBTAIN_TIMEOUT = 180.0
# certbot's own errors on its way to the ACME server (its requests session, its directory fetch), as opposed
# to what the ACME server reports about fetching the challenge.
_UNREACHABLE = ("requests.exceptions.", "ValueError: Requesting ", "urllib3.exceptions.")


def acme_names(spec: Spec) -> list[str]:
    """proxy.server_name's names, each one an ACME server can validate over HTTP; SpecError naming the rest."""
    names = spec.proxy.server_name.split()
    unusable = [name for name in names if not http01_validatable(name)]
    if unusable or not names:
        shown = " ".join(unusable) or "nothing"
        raise SpecError(
            f"tls.mode acme needs proxy.server_name to list this machine's public DNS names, not {shown}: "
            "e.g. --set proxy.server_name='example.com www.example.com'"
        )
    return names


@dataclass(frozen=True, kw_only=True)
class Acme:
    """One certificate lineage in certbot's directories, for names, from server."""

    certbot: str
    directory: Path
    names: tuple[str, ...]
    server: str
    email: str | None
    ca_bundle: str | None

    @classmethod
    def from_spec(cls, spec: Spec) -> Acme:
        names = acme_names(spec)
        certbot = shutil.which("certbot")
        if certbot is None:
            raise ServerError("--tls acme needs certbot: apt-get install certbot (or pip install certbot)")
        ca_bundle = spec.tls.acme_ca
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise SpecError(f"tls.acme_ca {ca_bundle}: no such file; point it at the PEM CA bundle of tls.acme_server")
        directory = Path(spec.tls.acme_dir).expanduser().resolve()
        return cls(
            certbot=certbot,
            directory=directory,
            names=tuple(names),
            server=spec.tls.acme_server,
            email=spec.tls.email,
            ca_bundle=str(Path(ca_bundle).resolve()) if ca_bundle else None,
        )

    @property
    def webroot(self) -> Path:
        return self.directory / "webroot"

    @property
    def live(self) -> Path:
        return self.directory / "config" / "live" / self.names[0]

    @property
    def cert(self) -> Path:
        return self.live / "fullchain.pem"

    @property
    def key(self) -> Path:
        return self.live / "privkey.pem"

    def issued(self) -> bool:
        return self.cert.exists() and self.key.exists()

    def version(self) -> tuple[int, int] | None:
        """What identifies the certificate nginx should serve: certbot swaps the symlink's target on renewal."""
        try:
            stat = self.cert.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def prepare(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # nginx's workers read the challenge files: the webroot is theirs to read, the rest is not.
        self.webroot.mkdir(mode=0o755, exist_ok=True)

    def _common(self) -> list[str]:
        return [
            "--config-dir", str(self.directory / "config"),
            "--work-dir", str(self.directory / "work"),
            "--logs-dir", str(self.directory / "logs"),
            "--non-interactive",
        ]  # fmt: skip

    def obtain_command(self) -> list[str]:
        """certonly: issues the certificate, or keeps the one there when it covers the names and is not due."""
        account = ["--email", self.email] if self.email else ["--register-unsafely-without-email"]
        domains = [arg for name in self.names for arg in ("-d", name)]
        return [
            self.certbot, "certonly", *self._common(), "--agree-tos", *account,
            "--webroot", "--webroot-path", str(self.webroot), *domains,
            "--cert-name", self.names[0], "--server", self.server, "--key-type", "ecdsa",
        ]  # fmt: skip

    def renew_command(self) -> list[str]:
        """renew: the server, webroot and key type certonly stored; renews within 30 days of expiry.

        certbot first sleeps a random few minutes, as Let's Encrypt asks of scheduled renewals: up waits
        for it in the background.
        """
        return [self.certbot, "renew", *self._common(), "--cert-name", self.names[0]]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.ca_bundle:
            # certbot talks to the ACME server through requests, which reads its trust store from here.
            env["REQUESTS_CA_BUNDLE"] = self.ca_bundle
        return env

    def start(self, command: list[str], log: IO[str]) -> subprocess.Popen[str]:
        """certbot in a session of its own (stopped with its group), its output to log."""
        return subprocess.Popen(
            command,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def failure(self, output: str, port: int) -> ServerError:
        """certbot's reason on one line, with what to check: the way to the ACME server, or the way back."""
        reason = certbot_reason(output)
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            advice = (
                "certbot does not trust the ACME server's HTTPS certificate; for a private ACME server, "
                "point tls.acme_ca at the CA bundle it chains to"
            )
        elif reason.startswith(_UNREACHABLE):
            advice = "certbot could not reach tls.acme_server: check the URL and that this machine can connect to it"
        else:
            advice = (
                "the ACME server fetches http://NAME/.well-known/acme-challenge/ on port 80, "
                f"which must reach this nginx (proxy.port {port})"
            )
        return ServerError(
            f"certbot could not get a certificate for {' '.join(self.names)} from {self.server}: "
            f"{reason}; {advice}; certbot's log is in {self.directory / 'logs'}"
        )



def certbot_reason(output: str) -> str:
    """The line of certbot's output that says why it failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for marker in ("Detail:", "An unexpected error occurred:"):
        for i, line in enumerate(lines):
            if line.startswith(marker):
                rest = line.removeprefix(marker).strip()
                return rest or (lines[i + 1] if i + 1 < len(lines) else marker)
    noise = ("Saving debug log", "Ask for help", "- - -")
    meaningful = [line for line in lines if not line.startswith(noise)]
    return meaningful[-1] if meaningful else "no output"


class Certbot:
    """The certbot run in progress for one lineage (at most one at a time), and the certificate last served."""

    def __init__(self, acme: Acme, log: Path) -> None:
        self.acme = acme
        self.log = log
        self.process: subprocess.Popen[str] | None = None
        self.renew_at = time.monotonic() + RENEW_EVERY
        self.served = acme.version()
        self.retry_at = 0.0  # when a certificate nginx would not take is tried again

    def start(self, command: list[str]) -> None:
        with self.log.open("w") as out:
            self.process = self.acme.start(command, out)

    def poll(self) -> int | None:
        """certbot's exit status once it finished (then it is forgotten); None while it runs or when none does."""
        if self.process is None or (status := self.process.poll()) is None:
            return None
        self.process = None
        return status

    def reason(self) -> str:
        return certbot_reason(self.log.read_text(errors="replace"))

    def renew_if_due(self, now: float) -> None:
        """Start `certbot renew` when its time came and nothing else runs."""
        if self.process is None and now >= self.renew_at:
            self.renew_at = now + RENEW_EVERY
            self.start(self.acme.renew_command())

    def unserved(self, now: float) -> tuple[int, int] | None:
        """A certificate on disk that nginx does not serve yet, whoever put it there (this certbot, a system timer,
        a user); while nginx cannot be reloaded to serve it, asked again once every RELOAD_RETRY seconds."""
        version = self.acme.version()
        if version is None or version == self.served or now < self.retry_at:
            return None
        self.retry_at = now + RELOAD_RETRY
        return version

    def serving(self, version: tuple[int, int] | None = None) -> None:
        """nginx serves the certificate: version, as unserved() gave it, else the one on disk now."""
        self.served = version if version is not None else self.acme.version()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
