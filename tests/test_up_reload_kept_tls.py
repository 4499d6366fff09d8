"""A SIGHUP that fails leaves the self-signed certificate `--tls self-signed` made as it was: the files on disk are
those nginx presents, though the edit changed the names a new certificate was made for (see test_up_reload_kept.py
for the rest of the stack)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
from pathlib import Path

import pytest

from tests.support import free_port, wait_for
from tests.test_up_reload_kept import BREAKS
from tests.upstack import APP, start_up, stop, write_app

pytestmark = pytest.mark.integration

FILES = ("self-signed.crt", "self-signed.key", "self-signed.names")


def presented(port: int) -> bytes:
    """The certificate nginx presents on port (DER), to a client asking for localhost."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def on_disk(tls_dir: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert((tls_dir / "self-signed.crt").read_text())


@pytest.mark.parametrize(
    ("names", "breaks", "said"),
    [
        # The new app server does not load: the names changed, nginx -t accepted the config.
        ("store.example.com", True, "app server of release 1 not reloaded"),
        # nginx -t refuses the edited config (a regex PCRE cannot compile), made after the certificate for its names.
        ("store.example.com ~(", False, "nginx and the app server not reloaded, the running config stays"),
    ],
)
def test_a_failed_sighup_leaves_the_self_signed_certificate_nginx_presents(
    tmp_path: Path, names: str, breaks: bool, said: str
) -> None:
    write_app(tmp_path, APP + BREAKS)
    config = tmp_path / "flaskprod.toml"
    config.write_text('[proxy]\nserver_name = "shop.example.com"\n')
    tls_port = free_port()
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--tls", "self-signed", "--tls-port",
                     str(tls_port), "--set", "proxy.ready_timeout=20")  # fmt: skip
    try:
        stack.wait_ready()
        tls_dir = stack.run_dir / "tls"
        before = {name: (tls_dir / name).read_bytes() for name in FILES}
        served = presented(tls_port)
        assert served == on_disk(tls_dir)

        if breaks:
            (tmp_path / "instance" / "broken").write_text("")
        config.write_text(f'[proxy]\nserver_name = "{names}"\n')
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: said in stack.stderr(), timeout=40, what="the failed reload")

        # nginx presents the certificate it did; the files a restarted or reloaded nginx reads are that one's.
        assert presented(tls_port) == served
        assert {name: (tls_dir / name).read_bytes() for name in FILES} == before, stack.output()
        assert not list(tls_dir.glob("*.new")), sorted(p.name for p in tls_dir.iterdir())
        assert (tls_dir / "self-signed.key").stat().st_mode & 0o077 == 0

        # Once the edit can apply, the next SIGHUP makes the certificate for the new name, and nginx presents it.
        (tmp_path / "instance" / "broken").unlink(missing_ok=True)
        config.write_text('[proxy]\nserver_name = "store.example.com"\n')
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: "app server of release 1 reloaded" in stack.stderr(), timeout=40, what="the reload")
        assert (tls_dir / "self-signed.names").read_text().split("\n")[0] == "store.example.com"
        wait_for(lambda: presented(tls_port) == on_disk(tls_dir) != served, timeout=30, what="the new certificate")
    finally:
        stop(stack)
