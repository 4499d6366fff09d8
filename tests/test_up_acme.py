"""`flaskprod up --tls acme`: a certificate from a real ACME server (pebble) through certbot, kept and renewed."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from flaskprod.stack.acme import RELOAD_RETRY, Acme, Certbot
from tests.buildkit import run_tool, tool
from tests.pebble import Pebble
from tests.support import free_port, wait_for
from tests.upstack import start_up, stop, up_args, up_env, write_app

pytestmark = pytest.mark.integration

NAME = "shop.flaskprod.test"


def acme_args(pebble: Pebble, tls_port: int, acme_dir: Path, name: str = NAME) -> list[str]:
    return [
        "--tls", "acme", "--tls-port", str(tls_port),
        "--set", f"proxy.server_name={name}",
        "--set", f"tls.acme_server={pebble.directory}",
        "--set", f"tls.acme_ca={pebble.listener_ca}",
        "--set", f"tls.acme_dir={acme_dir}",
        "--set", "tls.email=ops@flaskprod.test",
    ]  # fmt: skip


def served_certificate(tls_port: int, name: str = NAME) -> bytes:
    """The leaf certificate nginx presents for name, unverified (DER)."""
    context = ssl._create_unverified_context()
    with (
        socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


class _Verified(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 that verifies the chain and the host name against cafile, as a browser would."""

    def __init__(self, port: int, cafile: Path) -> None:
        super().__init__(NAME, port, timeout=10, context=ssl.create_default_context(cafile=str(cafile)))

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=NAME)  # type: ignore[attr-defined]


def verified_get(port: int, cafile: Path, path: str) -> http.client.HTTPResponse:
    conn = _Verified(port, cafile)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_up_gets_serves_keeps_and_renews_a_certificate(pebble: Pebble, tmp_path: Path) -> None:
    write_app(tmp_path)
    acme_dir, tls_port = tmp_path / "acme", free_port()
    root = pebble.issuing_root(tmp_path / "pebble-root.pem")
    args = acme_args(pebble, tls_port, acme_dir)

    stack = start_up(tmp_path, "uwsgi", pebble.http_port, *args)
    try:
        stack.wait_ready(timeout=120)
        # Verified as a browser verifies: the chain up to the ACME server's root, and the name.
        page = verified_get(tls_port, root, "/api/ping")
        assert page.status == 200
        assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
        assert f"URL          https://{NAME}:{tls_port}/" in stack.stdout(), stack.output()
        assert f"certificate  {acme_dir}/config/live/{NAME}/fullchain.pem from {pebble.directory}" in stack.stdout()
        assert "certificate issued for shop.flaskprod.test; nginx serves it" in stack.stderr()
        # The plain port answers the challenge path from the webroot, and redirects everything else.
        (acme_dir / "webroot" / ".well-known" / "acme-challenge").mkdir(parents=True, exist_ok=True)
        (acme_dir / "webroot" / ".well-known" / "acme-challenge" / "token-1").write_text("token-1.thumbprint")
        challenge = stack.get("/.well-known/acme-challenge/token-1", headers={"Host": NAME}, allow_redirects=False)
        assert (challenge.status_code, challenge.text) == (200, "token-1.thumbprint")
        redirect = stack.get("/api/ping", headers={"Host": NAME}, allow_redirects=False)
        assert redirect.status_code == 308
        assert redirect.headers["Location"] == f"https://{NAME}:{tls_port}/api/ping"
        run_tool([tool("gixy"), str(stack.run_dir / "nginx.conf")])
        first = served_certificate(tls_port)
    finally:
        stop(stack)
    assert stack.proc.returncode == 0, stack.output()

    # A restart reuses the certificate in tls.acme_dir: nothing is asked of the ACME server.
    stack = start_up(tmp_path, "gunicorn", pebble.http_port, *args)
    try:
        stack.wait_ready(timeout=120)
        assert "asking" not in stack.stderr(), stack.output()
        assert served_certificate(tls_port) == first

        # Renewed behind up's back (as the system's certbot timer would): up reloads nginx to serve it.
        certbot = subprocess.run(
            [tool("certbot"), "renew", "--force-renewal", "--no-random-sleep-on-renew", "--non-interactive",
             "--cert-name", NAME,
             "--config-dir", str(acme_dir / "config"), "--work-dir", str(acme_dir / "work"),
             "--logs-dir", str(acme_dir / "logs")],
            env={**up_env(), "REQUESTS_CA_BUNDLE": str(pebble.listener_ca)},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert certbot.returncode == 0, certbot.stdout + certbot.stderr
        renewed = wait_for(lambda: (der := served_certificate(tls_port)) != first and der, timeout=20,
                           what="nginx to serve the renewed certificate")
        assert ssl.DER_cert_to_PEM_cert(renewed) in (acme_dir / "config" / "live" / NAME / "fullchain.pem").read_text()
        assert verified_get(tls_port, root, "/api/ping").status == 200
        assert "certificate renewed; nginx reloaded to serve it" in stack.stderr()
    finally:
        stop(stack)
    assert stack.proc.returncode == 0, stack.output()


def test_a_failed_validation_stops_up_with_the_servers_reason(pebble: Pebble, tmp_path: Path) -> None:
    write_app(tmp_path)
    # nginx listens where pebble does not look: the challenge cannot be fetched.
    port = free_port()
    stack = start_up(tmp_path, "uwsgi", port, *acme_args(pebble, free_port(), tmp_path / "acme", "fail.flaskprod.test"))
    try:
        stack.proc.wait(120)
    finally:
        stop(stack)
    assert stack.proc.returncode == 2, stack.output()
    errors = [line for line in stack.stderr().splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stack.output()
    assert "certbot could not get a certificate for fail.flaskprod.test" in errors[0]
    assert f"127.0.0.1:{pebble.http_port}: connect: connection refused" in errors[0]
    assert f"must reach this nginx (proxy.port {port})" in errors[0]
    assert "Traceback" not in stack.stderr()
    # Nothing is left serving: nginx and the app server were stopped.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.parametrize("failure", ["untrusted", "unreachable"])
def test_an_acme_server_certbot_cannot_talk_to_is_named_as_the_problem(
    pebble: Pebble, tmp_path: Path, failure: str
) -> None:
    """Not the challenge's port 80 advice: the order never started."""
    write_app(tmp_path)
    port = free_port()
    args = acme_args(pebble, free_port(), tmp_path / "acme")
    if failure == "untrusted":  # pebble's HTTPS is its own CA's, which tls.acme_ca would name
        ca = args.index(f"tls.acme_ca={pebble.listener_ca}")
        del args[ca - 1 : ca + 1]
    else:  # nothing listens there
        args = [arg.replace(pebble.directory, f"https://127.0.0.1:{free_port()}/dir") for arg in args]
    result = subprocess.run(up_args("uwsgi", port, *args), cwd=tmp_path, env=up_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    expected = {"untrusted": "point tls.acme_ca at the CA bundle", "unreachable": "could not reach tls.acme_server"}
    assert expected[failure] in errors[0]
    assert "acme-challenge" not in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ([], "tls.mode acme needs proxy.server_name to list this machine's public DNS names, not localhost"),
        (["--set", "proxy.server_name=127.0.0.1"], "public DNS names, not 127.0.0.1"),
        (["--set", f"proxy.server_name={NAME}", "--set", "tls.acme_ca=/nonexistent.pem"],
         "tls.acme_ca /nonexistent.pem: no such file"),
    ],
)
def test_acme_mistakes_are_one_line(tmp_path: Path, settings: list[str], message: str) -> None:
    write_app(tmp_path)
    port = free_port()
    result = subprocess.run(up_args("uwsgi", port, "--tls", "acme", "--tls-port", str(free_port()), *settings),
                            cwd=tmp_path, env=up_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_renewed_certificate_nginx_would_not_take_is_tried_again_until_it_is_served(tmp_path: Path) -> None:
    # certbot swaps the live symlink; a reload that `nginx -t` refused (half written, a key not yet matching)
    # must not count the certificate as served, or nginx keeps the old one until it expires.
    acme = Acme(certbot=tool("certbot"), directory=tmp_path, names=(NAME,), server="https://acme.test/dir",
                email=None, ca_bundle=None)
    acme.live.mkdir(parents=True)
    acme.cert.write_text("first")
    certbot = Certbot(acme, tmp_path / "certbot.log")
    assert certbot.unserved(now=0.0) is None  # what nginx started with
    replacement = acme.live / "fullchain.pem.new"
    replacement.write_text("renewed")
    replacement.replace(acme.cert)
    renewed = certbot.unserved(now=100.0)
    assert renewed is not None
    # nginx refused it: not asked again at once, and asked again after RELOAD_RETRY.
    assert certbot.unserved(now=100.0 + RELOAD_RETRY / 2) is None
    assert certbot.unserved(now=100.0 + RELOAD_RETRY) == renewed
    certbot.serving(renewed)
    assert certbot.unserved(now=100.0 + 10 * RELOAD_RETRY) is None
