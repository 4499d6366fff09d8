"""`flaskprod build --with tls`: a Let's Encrypt certificate for proxy.server_name, got and renewed the way each
target's operators do it.

Compose and Swarm run certbot in a container beside nginx, the two sharing a volume of certificates and one of
challenge files; Kubernetes leaves it to cert-manager at the Ingress; a VM uses the system's certbot and its
timer. Every target answers the HTTP-01 challenge through the nginx the template renders (the same location
`flaskprod up --tls acme` serves), and asks for the names proxy.server_name lists, checked by the rules `up` uses.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

from ..errors import BuildError
from .deployment import NGINX_UID, Deployment
from .nginx import TlsFiles

# Pinned: the flags below are certbot's as of this release; a rebuild of the tag gets the same certbot.
CERTBOT_IMAGE = "certbot/certbot:v5.8.0"
# certbot's directories in its image. The first is a volume nginx reads too; the others hold locks, backups and
# logs only, so they are scratch space.
LETSENCRYPT_DIR = "/etc/letsencrypt"
CERTBOT_SCRATCH_DIRS = ("/var/lib/letsencrypt", "/var/log/letsencrypt")
# The challenge files certbot writes and nginx serves under /.well-known/acme-challenge/: a volume of its own.
WEBROOT = "/var/www/certbot"
# In the certificates' volume: the link nginx reads through, first to the stand-in, then to certbot's lineage.
SERVED = f"{LETSENCRYPT_DIR}/served"
STAND_IN = f"{LETSENCRYPT_DIR}/stand-in"
# The unprivileged nginx image cannot bind below 1024: HTTPS on this port, published as deploy.https_port.
NGINX_TLS_PORT = 8443
# The stand-in is never trusted by anyone; it only has to let nginx start until the real one comes.
STAND_IN_DAYS = 30
# certbot renews 30 days before expiry; twice a day is what its own timer does.
RENEW_SECONDS = 12 * 3600
# Let's Encrypt allows 5 failed validations per name an hour: a failed attempt waits 15 minutes.
RETRY_SECONDS = 15 * 60
# How often nginx looks for a new certificate on the shared volume (one stat of one file).
RELOAD_CHECK_SECONDS = 60
# Volume names in Compose and Swarm.
CERTS_VOLUME = "letsencrypt"
WEBROOT_VOLUME = "acme-webroot"


def http01_validatable(name: str) -> bool:
    """Whether an ACME server can validate name over HTTP-01 (`build --with tls`, `up --tls acme`): it proves
    control of a DNS name, so not an address, an nginx pattern, a wildcard (DNS-01 only; nginx's ".example.com"
    is one too) or localhost."""
    try:
        ipaddress.ip_address(name.strip("[]"))
        return False
    except ValueError:
        pass
    return (
        "." in name and not name.startswith(("~", "*", ".")) and name != "_" and not name.endswith(".localhost")
    )


def tls_names(d: Deployment) -> list[str]:
    """proxy.server_name's names, each one Let's Encrypt can validate over HTTP-01; BuildError naming the rest."""
    names = d.spec.proxy.server_name.split()
    unusable = [name for name in names if not http01_validatable(name)]
    if unusable or not names:
        shown = " ".join(unusable) or "nothing"
        raise BuildError(
            f"--with tls gets a Let's Encrypt certificate for proxy.server_name, which must list the site's public "
            f"DNS names, not {shown}: e.g. --set proxy.server_name='example.com www.example.com'"
        )
    return names


def check_ports(d: Deployment) -> None:
    if d.spec.deploy.https_port == d.spec.deploy.http_port:
        raise BuildError(
            f"deploy.https_port {d.spec.deploy.https_port} is deploy.http_port too: HTTPS needs a port of its own; "
            "set deploy.https_port (443 by default)"
        )


def certonly_args(d: Deployment, *, webroot: str, deploy_hook: str | None = None) -> list[str]:
    """certbot's arguments that get the certificate, or keep the one there when it covers the names and is not
    due (--keep-until-expiring): run again, it renews. deploy_hook runs after each new one, now and at renewals."""
    names = tls_names(d)
    email = d.spec.tls.email
    account = ["--email", email] if email else ["--register-unsafely-without-email"]
    domains = [arg for name in names for arg in ("-d", name)]
    hook = ["--deploy-hook", deploy_hook] if deploy_hook else []
    return [
        "certonly", "--non-interactive", "--agree-tos", *account,
        "--webroot", "--webroot-path", webroot, "--cert-name", names[0], *domains,
        "--server", d.spec.tls.acme_server, "--key-type", "ecdsa", "--keep-until-expiring", *hook,
    ]  # fmt: skip


def shell_words(argv: list[str], *, indent: str, width: int = 100) -> str:
    """argv as one shell command over as many lines as width needs (continued with backslashes), each option
    beside its value; lines after the first start with indent and four more spaces."""
    quoted = [shlex.quote(arg) for arg in argv]
    units: list[str] = []
    for word in quoted:
        if units and units[-1].startswith("-") and " " not in units[-1] and not word.startswith("-"):
            units[-1] = f"{units[-1]} {word}"
        else:
            units.append(word)
    lines = [units[0]]
    for unit in units[1:]:
        if len(indent) + len(lines[-1]) + len(unit) + 1 > width:
            lines.append(f"{indent}    {unit}")
        else:
            lines[-1] = f"{lines[-1]} {unit}"
    return " \\\n".join(lines)


def _stand_in_command(name: str, key: str, cert: str) -> list[str]:
    return [
        "openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-days", str(STAND_IN_DAYS), "-subj", f"/CN={name}", "-keyout", key, "-out", cert,
    ]  # fmt: skip


# --- Compose and Swarm: certbot in a container beside nginx ------------------------------------------------


def container_tls(d: Deployment) -> TlsFiles:
    """What the nginx image serves HTTPS with: the certificates' volume, through the served link."""
    return TlsFiles(
        port=NGINX_TLS_PORT,
        cert=f"{SERVED}/fullchain.pem",
        key=f"{SERVED}/privkey.pem",
        acme_webroot=WEBROOT,
        public_port=d.spec.deploy.https_port,
    )


def compose_escape(script: str) -> str:
    """A script as a Compose file carries it: Compose and `docker stack deploy` expand $NAME, and $$ is one $."""
    return script.replace("$", "$$")


def init_script(d: Deployment) -> str:
    """Run once as root before nginx starts: a stand-in certificate when there is none, and both volumes given
    to nginx's user, which certbot runs as too (certbot keeps keys readable by their owner alone)."""
    name = tls_names(d)[0]
    stand_in = shell_words(_stand_in_command(name, f"{STAND_IN}/privkey.pem", f"{STAND_IN}/fullchain.pem"), indent="  ")
    return "\n".join(
        [
            "set -eu",
            "# nginx needs a certificate to start, and Let's Encrypt needs nginx to answer its challenge: until",
            "# certbot's first certificate, nginx serves a self-signed stand-in.",
            f"if [ ! -e {SERVED}/fullchain.pem ]; then",
            f"  mkdir -p {STAND_IN}",
            f"  {stand_in}",
            f"  ln -sfn stand-in {SERVED}",
            "fi",
            f"chown -R {NGINX_UID}:{NGINX_UID} {LETSENCRYPT_DIR} {WEBROOT}",
            "",
        ]
    )


def certbot_script(d: Deployment) -> str:
    """certbot's loop, as nginx's user: get the certificate (or renew it when due), point nginx at it, sleep."""
    name = tls_names(d)[0]
    certonly = shell_words(["certbot", *certonly_args(d, webroot=WEBROOT)], indent="  ")
    return "\n".join(
        [
            "trap 'exit 0' TERM",
            "while :; do",
            f"  if {certonly}; then",
            "    # From now on nginx serves certbot's lineage, which certbot renews in place.",
            f"    ln -sfn live/{name} {SERVED}",
            f"    pause={RENEW_SECONDS}",
            "  else",
            "    # Let's Encrypt allows 5 failed validations per name an hour.",
            f"    pause={RETRY_SECONDS}",
            "  fi",
            '  sleep "$pause" &',
            "  wait $!",
            "done",
            "",
        ]
    )


def nginx_script() -> str:
    """nginx in front, and a loop beside it that reloads nginx (after a config test) once the certificate it
    serves changed: the stand-in replaced, a renewal. certbot, in a container of its own, cannot signal it."""
    cert = f"{SERVED}/fullchain.pem"
    return "\n".join(
        [
            f"cert={cert}",
            'served=$(stat -L -c %i:%Y "$cert" 2>/dev/null || true)',
            f"while sleep {RELOAD_CHECK_SECONDS}; do",
            '  now=$(stat -L -c %i:%Y "$cert" 2>/dev/null) || continue',
            '  if [ "$now" != "$served" ] && nginx -t -q && nginx -s reload; then',
            '    served="$now"',
            "  fi",
            "done &",
            "exec nginx -g 'daemon off;'",
            "",
        ]
    )


# --- Kubernetes: cert-manager at the Ingress -----------------------------------------------------------------


def issuer_name(d: Deployment) -> str:
    return f"{d.name}-letsencrypt"


def certificate_secret(d: Deployment) -> str:
    """The Secret cert-manager keeps the Ingress's certificate and key in."""
    return f"{d.name}-tls"


def issuer_object(d: Deployment, metadata: dict[str, object]) -> dict[str, object]:
    """A namespaced cert-manager Issuer for Let's Encrypt's HTTP-01 challenge, answered through the Ingress."""
    acme: dict[str, object] = {"server": d.spec.tls.acme_server}
    if d.spec.tls.email:
        acme["email"] = d.spec.tls.email
    acme |= {
        # The ACME account's key, which cert-manager makes and keeps here.
        "privateKeySecretRef": {"name": f"{issuer_name(d)}-account"},
        # cert-manager answers the challenge with a solver pod and an Ingress of the cluster's default class.
        "solvers": [{"http01": {"ingress": {}}}],
    }
    return {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": metadata, "spec": {"acme": acme}}


# --- systemd: the system's certbot on the VM ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HostCertificate:
    """certbot's certificate on a VM, kept in letsencrypt, got through webroot (which nginx serves); hook runs
    after each new one and reloads nginx_unit, whose group must read the key."""

    names: tuple[str, ...]
    letsencrypt: str
    webroot: str
    hook: str
    group: str
    nginx_unit: str

    @property
    def live(self) -> str:
        return f"{self.letsencrypt}/live/{self.names[0]}"

    @property
    def cert(self) -> str:
        return f"{self.live}/fullchain.pem"

    @property
    def key(self) -> str:
        return f"{self.live}/privkey.pem"

    def tls_files(self, port: int) -> TlsFiles:
        return TlsFiles(port=port, cert=self.cert, key=self.key, acme_webroot=self.webroot)

    def stand_in_commands(self) -> list[list[str]]:
        """A self-signed stand-in where certbot will put the certificate, so nginx can start and serve the challenge."""
        return [
            ["install", "-d", "-m", "0755", self.webroot, f"{self.letsencrypt}/live", self.live],
            _stand_in_command(self.names[0], self.key, self.cert),
            ["chgrp", self.group, self.key],
            ["chmod", "0640", self.key],
        ]

    def clear_stand_in_command(self) -> list[str]:
        """certbot makes a lineage only in an empty directory; the running nginx keeps the stand-in it loaded."""
        return ["rm", self.cert, self.key]

    def certonly_command(self, d: Deployment) -> list[str]:
        return ["certbot", *certonly_args(d, webroot=self.webroot, deploy_hook=self.hook)]

    def hook_script(self) -> str:
        lineage = '"$RENEWED_LINEAGE"'
        return "\n".join(
            [
                "#!/bin/sh",
                f"# certbot runs this after each certificate it gets or renews for {self.names[0]} ($RENEWED_LINEAGE):",
                "# certonly --deploy-hook stored it in the lineage's renewal configuration, so the renewals of",
                "# Debian's certbot.timer run it too. Written by `flaskprod build --target systemd --with tls`.",
                "set -eu",
                "# nginx runs as an unprivileged user from the start; certbot keeps keys for root alone (0700",
                "# directories, a 0600 key). certbot keeps the key's group and mode at renewals; this sets them",
                "# anyway.",
                f"chmod 0755 {self.letsencrypt}/live {self.letsencrypt}/archive",
                f"chgrp {self.group} {lineage}/privkey.pem",
                f"chmod 0640 {lineage}/privkey.pem",
                "# Checked with nginx -t first (ExecReload=); a config nginx rejects leaves the running one serving.",
                f"systemctl reload {self.nginx_unit}",
                "",
            ]
        )
