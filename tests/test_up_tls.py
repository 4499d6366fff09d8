"""`flaskprod up --tls`: HTTPS in front, the plain port redirecting, the app told it is HTTPS; mistakes as one line."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.buildkit import run_tool, tool
from tests.support import free_port, wait_for
from tests.upstack import PLAIN, UpStack, name_app, start_up, stop, up_args, up_env, write_app

pytestmark = [
    pytest.mark.integration,
    # Some requests dial 127.0.0.1 for a certificate made out to a name: its identity is not the point there.
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpStack, int]]:
    root = tmp_path_factory.mktemp("up-tls")
    write_app(root)
    tls_port = free_port()
    running = start_up(root, "uwsgi", free_port(), "--tls", "self-signed", "--tls-port", str(tls_port))
    try:
        running.wait_ready()
        yield running, tls_port
    finally:
        stop(running)


def test_https_serves_the_app_with_a_certificate_for_its_names(tls_stack: tuple[UpStack, int]) -> None:
    stack, tls_port = tls_stack
    cert = stack.run_dir / "tls" / "self-signed.crt"
    assert f"URL         https://127.0.0.1:{tls_port}/" in stack.stdout()
    # Verified against the certificate up made: the address the table shows is in it.
    page = requests.get(f"https://127.0.0.1:{tls_port}/api/ping", verify=str(cert), timeout=10)
    assert page.status_code == 200
    # The app knows the request was HTTPS (nginx says so, and it trusts nginx): HSTS is sent.
    # Sent once (nginx's, the app's own dropped), on the app's answers and on nginx's static files alike.
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    static = requests.get(f"https://127.0.0.1:{tls_port}/static/{PLAIN}", verify=str(cert), timeout=10)
    assert static.status_code == 200
    assert static.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert (stack.run_dir / "tls" / "self-signed.key").stat().st_mode & 0o077 == 0


def test_plain_http_redirects_to_https_keeping_the_path(tls_stack: tuple[UpStack, int]) -> None:
    stack, tls_port = tls_stack
    answer = stack.get("/api/ping?x=1", headers={"Host": "localhost"}, allow_redirects=False)
    assert answer.status_code == 308
    assert answer.headers["Location"] == f"https://localhost:{tls_port}/api/ping?x=1"


def test_unknown_names_get_no_answer_over_https(tls_stack: tuple[UpStack, int]) -> None:
    _, tls_port = tls_stack
    with pytest.raises(requests.ConnectionError):
        requests.get(f"https://127.0.0.1:{tls_port}/", headers={"Host": "evil.example"}, verify=False, timeout=10)


def test_gixy_and_nginx_accept_the_tls_config(tls_stack: tuple[UpStack, int]) -> None:
    stack, _ = tls_stack
    conf = stack.run_dir / "nginx.conf"
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf.read_text()
    run_tool([tool("gixy"), str(conf)])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls", "files"], "tls.mode files needs tls.cert: set it to a PEM file"),
        (["--tls", "files", "--set", "tls.cert=/nonexistent.pem", "--set", "tls.key=/nonexistent.key"],
         "tls.cert /nonexistent.pem: cannot read it (No such file or directory)"),
        (["--tls", "self-signed", "--tls-port", "PORT"], "HTTPS needs a port of its own"),
        (["--tls", "sometimes"], "invalid value 'sometimes' for tls.mode"),
    ],
)
def test_tls_mistakes_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    write_app(tmp_path)
    port = free_port()
    args = [str(port) if a == "PORT" else a for a in args]
    result = subprocess.run(up_args("uwsgi", port, *args), cwd=tmp_path, env=up_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("form", ["pkcs8", "traditional"])
def test_a_key_with_a_passphrase_is_one_line_not_a_prompt(tmp_path: Path, form: str) -> None:
    """nginx would ask for the passphrase on the terminal at `nginx -t`, and again at every start and reload."""
    write_app(tmp_path)
    cert, plain, key = tmp_path / "site.crt", tmp_path / "plain.key", tmp_path / "site.key"
    run_tool([tool("openssl"), "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-days", "2", "-subj", "/CN=localhost", "-keyout", str(plain), "-out", str(cert)])
    encrypt = ["pkey", "-aes256"] if form == "pkcs8" else ["ec", "-aes256"]
    run_tool([tool("openssl"), *encrypt, "-in", str(plain), "-passout", "pass:secret", "-out", str(key)])
    error, stderr = refused_files(tmp_path, cert, key)
    assert f"tls.key {key}: the key is encrypted with a passphrase" in error
    assert "pass phrase" not in stderr  # nginx never asked


def refused_files(project: Path, cert: Path | str, key: Path | str) -> tuple[str, str]:
    """`up --tls files` with cert and key, which it must refuse (exit 2) in one Error: line: that line, and stderr."""
    result = subprocess.run(up_args("gunicorn", free_port(), "--tls", "files", "--tls-port", str(free_port()),
                                    "--set", f"tls.cert={cert}", "--set", f"tls.key={key}"),
                            cwd=project, env=up_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0], result.stderr


@pytest.mark.parametrize("mistake", ["another-key", "swapped", "key-twice"])
def test_a_certificate_and_key_that_are_no_pair_are_one_line(tmp_path: Path, mistake: str) -> None:
    """nginx would refuse them at `nginx -t` in OpenSSL's words ("key values mismatch", "PEM_read_bio_X509_AUX")."""
    write_app(tmp_path)
    for name in ("one", "two"):
        run_tool([tool("openssl"), "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-days", "2", "-subj", "/CN=localhost",
                  "-keyout", str(tmp_path / f"{name}.key"),
                  "-out", str(tmp_path / f"{name}.crt")])
    cert, key, message = {
        "another-key": ("one.crt", "two.key", "tls.key {key} is not the key of tls.cert {cert} (their public keys"),
        "swapped": ("one.key", "one.crt", "tls.cert {cert}: no certificate in it"),
        "key-twice": ("one.crt", "one.crt", "tls.key {key}: no private key in it"),
    }[mistake]
    cert, key = str(tmp_path / cert), str(tmp_path / key)
    error, stderr = refused_files(tmp_path, cert, key)
    assert message.format(cert=cert, key=key) in error, stderr
    assert "SSL" not in stderr


def test_files_mode_serves_the_users_certificate(tmp_path: Path) -> None:
    write_app(tmp_path)
    cert, key = tmp_path / "site.crt", tmp_path / "site.key"
    run_tool([tool("openssl"), "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "2", "-subj", "/CN=localhost",
              "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)])
    tls_port = free_port()
    stack = start_up(tmp_path, "gunicorn", free_port(), "--tls", "files", "--tls-port", str(tls_port),
                     "--set", f"tls.cert={cert}", "--set", f"tls.key={key}")
    try:
        stack.wait_ready()
        session = requests.Session()
        # The name the certificate is for, dialled on loopback.
        page = session.get(f"https://127.0.0.1:{tls_port}/api/ping", headers={"Host": "localhost"}, verify=False,
                           timeout=10)
        assert page.status_code == 200
        served = subprocess.run([tool("openssl"), "s_client", "-connect", f"127.0.0.1:{tls_port}", "-servername",
                                 "localhost"], input="", capture_output=True, text=True, timeout=20)
        assert "subject=CN = localhost" in served.stdout
    finally:
        stop(stack)


def test_sighup_serves_the_certificate_the_config_file_now_names(tmp_path: Path) -> None:
    # A renewed certificate under a new name (site-2025.crt): the edited config and a SIGHUP put it in nginx's hands.
    write_app(tmp_path)
    pairs = []
    for name in ("first", "second"):
        cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
        run_tool([tool("openssl"), "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "2", "-subj",
                  f"/CN=localhost/O={name}", "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key),
                  "-out", str(cert)])  # fmt: skip
        pairs.append((cert, key))
    tls_port = free_port()
    config = tmp_path / "flaskprod.toml"

    def name_in_config(cert: Path, key: Path) -> None:
        config.write_text(f'[tls]\nmode = "files"\nport = {tls_port}\ncert = "{cert}"\nkey = "{key}"\n')

    def organisation() -> str:
        served = subprocess.run([tool("openssl"), "s_client", "-connect", f"127.0.0.1:{tls_port}", "-servername",
                                 "localhost"], input="", capture_output=True, text=True, timeout=20)  # fmt: skip
        return next((line for line in served.stdout.splitlines() if line.startswith("subject=")), "")

    name_in_config(*pairs[0])
    stack = start_up(tmp_path, "gunicorn", free_port())
    try:
        stack.wait_ready()
        assert "O = first" in organisation()
        name_in_config(*pairs[1])
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: "O = second" in organisation(), timeout=20, what="nginx to present the second certificate")
        # A path that cannot be read is refused as at start; nginx keeps presenting the one it has.
        name_in_config(tmp_path / "missing.crt", pairs[1][1])
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: "tls.cert" in stack.stderr() and "cannot read it" in stack.stderr(), timeout=20,
                 what="the error for the missing certificate")
        assert "O = second" in organisation()
    finally:
        stop(stack)


def test_the_self_signed_certificate_names_the_apps_server_name_and_follows_a_reload(tmp_path: Path) -> None:
    """nginx answers the app's SERVER_NAME (with subdomain matching, every name under it): the certificate up makes
    names them too, and the ones the reloaded app calls itself after a SIGHUP."""
    name_app(tmp_path, "shop.example.com")
    tls_port = free_port()
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--tls", "self-signed", "--tls-port",
                     str(tls_port), "--set", "proxy.ready_timeout=15")  # fmt: skip

    def served_names() -> str:
        served = subprocess.run([tool("openssl"), "s_client", "-connect", f"127.0.0.1:{tls_port}", "-servername",
                                 "localhost"], input="", capture_output=True, text=True, timeout=20)  # fmt: skip
        names = subprocess.run([tool("openssl"), "x509", "-noout", "-ext", "subjectAltName"], input=served.stdout,
                               capture_output=True, text=True, timeout=20)  # fmt: skip
        return names.stdout

    try:
        stack.wait_ready()
        assert "DNS:localhost, IP Address:127.0.0.1, DNS:shop.example.com, DNS:*.shop.example.com" in served_names()
        (tmp_path / "instance" / "site.cfg").write_text("SERVER_NAME = 'store.example.com'\n")
        os.kill(stack.proc.pid, signal.SIGHUP)

        def only_the_new_name() -> bool:
            names = served_names()
            return "DNS:store.example.com, DNS:*.store.example.com" in names and "shop.example.com" not in names

        # nginx's reload is graceful: an old worker may take a connection or two until it has read its QUIT, so
        # the new certificate is settled once three handshakes in a row present it alone.
        wait_for(lambda: all(only_the_new_name() for _ in range(3)), timeout=30,
                 what="the certificate naming the reloaded app's name alone")  # fmt: skip
    finally:
        stop(stack)


def test_sighup_serves_a_certificate_renewed_in_place(tmp_path: Path) -> None:
    # Let's Encrypt renews behind the same path (live/<name>/fullchain.pem): nginx.conf comes out the same, and nginx
    # read the files again only if it was reloaded. Before, it kept presenting the old certificate.
    write_app(tmp_path)
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"

    def issue(organisation: str) -> None:
        run_tool([tool("openssl"), "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "2", "-subj",
                  f"/CN=localhost/O={organisation}", "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key),
                  "-out", str(cert)])  # fmt: skip

    def presented() -> str:
        served = subprocess.run([tool("openssl"), "s_client", "-connect", f"127.0.0.1:{tls_port}", "-servername",
                                 "localhost"], input="", capture_output=True, text=True, timeout=20)  # fmt: skip
        return next((line for line in served.stdout.splitlines() if line.startswith("subject=")), "")

    issue("first")
    tls_port = free_port()
    stack = start_up(tmp_path, "gunicorn", free_port(), "--tls", "files", "--tls-port", str(tls_port),
                     "--set", f"tls.cert={cert}", "--set", f"tls.key={key}")  # fmt: skip
    try:
        stack.wait_ready()
        assert "O = first" in presented()
        issue("renewed")
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: "O = renewed" in presented(), timeout=30, what="nginx to present the renewed certificate")
        # Said once the old app server has drained, after nginx reloaded.
        wait_for(lambda: "nginx reloaded to read tls.cert and tls.key again" in stack.stdout() + stack.stderr(),
                 timeout=30, what="the reload's last line")  # fmt: skip
    finally:
        stop(stack)
