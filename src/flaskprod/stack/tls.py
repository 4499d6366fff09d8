"""HTTPS for `flaskprod up`: the certificate nginx presents, made at start or read from the user's files."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..errors import ServerError, SpecError
from ..render import TlsFiles
from ..spec import Spec
from .acme import Acme

# Short-lived on purpose: a self-signed certificate is for trying HTTPS out, and `up` makes a new one
# at every start.
SELF_SIGNED_DAYS = 30
# Beside the certificate: the names it was made for, one a line (self_signed_for).
_NAMES = "self-signed.names"


def _subject_alt_names(names: list[str]) -> str:
    """nginx server_name entries as a certificate's names: .host (it and every name under it) is host and *.host;
    a regex, a prefix.* and the catch-all _ name no certificate can."""
    entries: list[str] = []
    for name in names:
        bare = name.strip("[]")
        try:
            ipaddress.ip_address(bare)
            entries.append(f"IP:{bare}")
        except ValueError:
            if name.startswith("."):
                entries += [f"DNS:{name[1:]}", f"DNS:*{name}"]
            elif not name.startswith("~") and not name.endswith(".*") and name != "_":
                entries.append(f"DNS:{name}")
    return ",".join(dict.fromkeys(entries))


def make_self_signed(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """An ECDSA P-256 key and a certificate for names (DNS names and IP addresses) in directory."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServerError("--tls self-signed needs the openssl command: apt-get install openssl")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert, key = directory / "self-signed.crt", directory / "self-signed.key"
    sans = _subject_alt_names(names) or "DNS:localhost"
    done = subprocess.run(
        [
            openssl, "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-days", str(SELF_SIGNED_DAYS), "-subj", f"/CN={names[0] if names else 'localhost'}",
            "-addext", f"subjectAltName={sans}", "-keyout", str(key), "-out", str(cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise ServerError(f"openssl could not make a self-signed certificate: {done.stderr.strip().splitlines()[-1:]}")
    key.chmod(0o600)
    (directory / _NAMES).write_text("\n".join(names))
    return cert, key


def self_signed_for(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """The self-signed certificate in directory, made again unless it was made for exactly names: up's nginx answers
    the app's SERVER_NAME, which a deploy or reload may change, and its certificate names what nginx answers."""
    cert, key = directory / "self-signed.crt", directory / "self-signed.key"
    try:
        if cert.exists() and key.exists() and (directory / _NAMES).read_text() == "\n".join(names):
            return cert, key
    except OSError:
        pass
    return make_self_signed(directory, names)


def kept_self_signed(directory: Path) -> Callable[[], None]:
    """What puts the self-signed certificate, key and names in directory back as they are now: self_signed_for makes
    them again in place for a reload's names, and a reload that then fails leaves nginx presenting the old ones,
    which a restarted or reloaded nginx must read too."""
    kept: dict[Path, tuple[bytes, int]] = {}
    for name in ("self-signed.crt", "self-signed.key", _NAMES):
        path = directory / name
        try:
            kept[path] = (path.read_bytes(), path.stat().st_mode & 0o777)
        except FileNotFoundError:
            continue

    def put_back() -> None:
        for path, (data, mode) in kept.items():
            try:
                if path.read_bytes() == data:
                    continue
            except FileNotFoundError:
                pass
            # Whole, with the key's mode from its creation on: nginx never reads half a file, nor another user a key.
            staged = path.with_name(f"{path.name}.new")
            staged.unlink(missing_ok=True)
            with os.fdopen(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as fh:
                fh.write(data)
            os.replace(staged, path)

    return put_back


def _readable(setting: str, value: str | None) -> str:
    if not value:
        raise SpecError(f"tls.mode files needs {setting}: set it to a PEM file (or use --tls self-signed to try HTTPS)")
    path = Path(value).expanduser().resolve()
    try:
        with path.open("rb") as fh:
            head = fh.read(256)
    except OSError as exc:
        raise SpecError(f"{setting} {value}: cannot read it ({exc.strerror}); point {setting} at a PEM file") from None
    if b"-----BEGIN" not in head:
        raise SpecError(f"{setting} {value}: not a PEM file (no -----BEGIN line); convert it or point at the PEM")
    # PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY") or OpenSSL's traditional form ("Proc-Type: 4,ENCRYPTED"). nginx would
    # ask for the passphrase on the terminal at `nginx -t`, at its start and at every reload: `up` waited at an
    # "Enter PEM pass phrase:" prompt, and could not reload unattended.
    if b"ENCRYPTED" in head:
        raise SpecError(
            f"{setting} {value}: the key is encrypted with a passphrase, which nginx would ask for at every start "
            "and reload; give it the key unencrypted (openssl pkey -in KEY -out KEY.plain, kept 0600)"
        )
    return str(path)


def tls_for_up(spec: Spec, tls_dir: Path, names: list[str], acme: Acme | None = None) -> TlsFiles | None:
    """The TLS files nginx uses under `up`, or None when HTTPS is off; a user's mistake is one SpecError.

    With acme, the issued certificate when there is one; until then a self-signed stand-in, so nginx can
    serve the challenge that gets the real one.
    """
    mode = spec.tls.mode
    if mode == "off":
        return None
    if spec.tls.port == spec.proxy.port:
        raise SpecError(f"tls.port {spec.tls.port} is proxy.port too: HTTPS needs a port of its own (--tls-port)")
    if acme is not None:
        acme.prepare()
        webroot = str(acme.webroot)
        if acme.issued():
            return TlsFiles(port=spec.tls.port, cert=str(acme.cert), key=str(acme.key), acme_webroot=webroot)
        made = make_self_signed(tls_dir, list(acme.names))
        return TlsFiles(port=spec.tls.port, cert=str(made[0]), key=str(made[1]), acme_webroot=webroot)
    if mode == "self-signed":
        made = make_self_signed(tls_dir, names)
        return TlsFiles(port=spec.tls.port, cert=str(made[0]), key=str(made[1]))
    cert, key = _readable("tls.cert", spec.tls.cert), _readable("tls.key", spec.tls.key)
    _same_key(cert, key)
    return TlsFiles(port=spec.tls.port, cert=cert, key=key)


def _same_key(cert: str, key: str) -> None:
    """Refuse a certificate and key that are not a pair, in words that say which file to change: nginx says
    "SSL_CTX_use_PrivateKey ... key values mismatch", or "PEM_read_bio_X509_AUX() failed" for swapped files."""
    openssl = shutil.which("openssl")
    if openssl is None:  # nginx still refuses a wrong pair, in its own words
        return
    cert_public = _openssl_out(openssl, "x509", "-in", cert, "-noout", "-pubkey")
    if cert_public is None:
        raise SpecError(f"tls.cert {cert}: no certificate in it; point tls.cert at the certificate (fullchain.pem)")
    key_public = _openssl_out(openssl, "pkey", "-in", key, "-pubout")
    if key_public is None:
        raise SpecError(f"tls.key {key}: no private key in it; point tls.key at the certificate's key (privkey.pem)")
    if cert_public != key_public:
        raise SpecError(
            f"tls.key {key} is not the key of tls.cert {cert} (their public keys differ); point tls.key at the key "
            "the certificate was issued for (privkey.pem beside fullchain.pem)"
        )


def _openssl_out(openssl: str, *args: str) -> str | None:
    done = subprocess.run([openssl, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    return done.stdout if done.returncode == 0 else None
