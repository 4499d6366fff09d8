"""`flaskprod build --with tls`: a Let's Encrypt certificate for proxy.server_name on every target that carries it.

The files are judged by the tools the other build tests use (docker-compose config, yamllint, hadolint, checkov,
kubectl kustomize, kubernetes-validate, nginx -t, gixy-ng, systemd-analyze verify). What they would run is run
here natively: the Compose init step's script, which makes the stand-in certificate nginx starts on; the pod's
nginx behind an Ingress, in front of a stand-in app that echoes what it is told; and the systemd target end to
end against a real ACME server (pebble): nginx on the stand-in, the README's certbot command through the webroot
nginx serves, the deploy hook's reload, nginx serving the issued certificate, and a renewal as certbot.timer
would run it.
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import ssl
import stat
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from benchmarks.native import conf_with_upstream

from flaskprod.render import tls
from flaskprod.render.nginx import hsts_value
from flaskprod.render.systemd import Layout, Paths, host_certificate, render_units
from tests.buildkit import WSGI_APP, Tree, build_tree, checkov, make_deployment, make_spec, run_tool, tool, write_tree
from tests.pebble import Pebble
from tests.support import BIN, free_port, stop_group, wait_for
from tests.test_build import YAMLLINT, compose_config
from tests.test_build_k8s import CHECKOV_SKIPS, PRODUCTION
from tests.test_build_k8s import render as render_k8s_tree
from tests.test_build_systemd import (
    APP,
    Installed,
    Started,
    as_this_user,
    command,
    layout_under,
    nginx_t,
    spec_from_toml,
    start_units,
    units_of,
    verifiable_layout,
    verify,
)
from tests.test_serve import clean_env
from tests.test_up_acme import served_certificate, verified_get

NAMES = "shop.example.com www.shop.example.com"
SETTINGS = {"app.name": "shop", "app.version": "1.2.3", "proxy.server_name": NAMES, "tls.email": "ops@example.com"}
COMPOSE_FILES = {"compose": "compose.yaml", "compose-uwsgi": "compose.yaml", "swarm": "stack.yaml"}
# pebble-challtestsrv answers every name with 127.0.0.1.
ACME_NAME = "shop.flaskprod.test"
HSTS = "max-age=31536000; includeSubDomains"


def write_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wsgi.py").write_text(WSGI_APP)
    (root / "requirements.txt").write_text("flask\nflaskprod\n")
    (root / "static").mkdir(exist_ok=True)
    (root / "static" / "app.css").write_text("body { margin: 0 }\n")
    return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tree]:
    base = tmp_path_factory.mktemp("tls")
    built = {}
    for target in ("compose", "compose-uwsgi", "swarm", "k8s", "systemd"):
        settings = {**PRODUCTION, **SETTINGS} if target == "k8s" else SETTINGS
        built[target] = build_tree(write_project(base / target), target, settings, ("tls",))
    return built


def resolved(tree: Tree) -> dict[str, Any]:
    env = {**clean_env(), "FLASK_SECRET_KEY": secrets.token_hex(32)}
    return compose_config(tree.path / COMPOSE_FILES[tree.target], env)


def as_run(script: str) -> str:
    """A script from `docker-compose config`, which prints a Compose file: $$ stays escaped there, and a
    container gets $. A lone $ would have been a variable Compose replaced (with nothing, and a warning)."""
    assert "$" not in script.replace("$$", ""), script
    return script.replace("$$", "$")


def start_nginx(conf: Path, prefix: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [shutil.which("nginx") or "nginx", "-p", f"{prefix}/", "-c", str(conf), "-g", "daemon off;"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def tls_accepts(port: int) -> bool:
    try:
        served_certificate(port, ACME_NAME)
    except OSError:
        return False
    return True


# --- Compose and Swarm -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["compose", "compose-uwsgi", "swarm"])
def test_docker_compose_and_yamllint_accept_the_stack(trees: dict[str, Tree], target: str) -> None:
    tree = trees[target]
    services = resolved(tree)["services"]
    assert set(services) == {"app", "nginx", "certbot-init", "certbot"}
    nginx, init, certbot = services["nginx"], services["certbot-init"], services["certbot"]
    https = [p for p in nginx["ports"] if p["target"] == tls.NGINX_TLS_PORT]
    assert len(https) == 1 and str(https[0]["published"]) == "443"
    # nginx reads the certificates and the challenges; only certbot and the init step write them.
    assert nginx["volumes"] == ["letsencrypt:/etc/letsencrypt:ro", "acme-webroot:/var/www/certbot:ro"]
    for service in (init, certbot):
        assert re.fullmatch(r"certbot/certbot:v\d+\.\d+\.\d+", service["image"])
        assert service["volumes"] == ["letsencrypt:/etc/letsencrypt:rw", "acme-webroot:/var/www/certbot:rw"]
        assert service["read_only"] is True
    # certbot runs as nginx's user, which must read the keys certbot keeps for their owner; root only to chown.
    assert certbot["user"] == "101:101" and init["user"] == "0:0"
    # Compose unescaped $$: the scripts as the shell sees them.
    loop = as_run(nginx["command"][2])
    assert '"$cert"' in loop and "nginx -t -q && nginx -s reload" in loop and "$$" not in loop
    script = as_run(certbot["command"][0])
    assert "certbot certonly --non-interactive --agree-tos --email ops@example.com --webroot" in script
    assert "-d shop.example.com" in script and "-d www.shop.example.com" in script
    assert "ln -sfn live/shop.example.com /etc/letsencrypt/served" in script
    if target == "swarm":
        label = "node.labels.shop-tls == true"
        for service in (nginx, init, certbot):
            assert service["deploy"]["placement"]["constraints"] == [label]
            assert "depends_on" not in service
        assert "max_attempts" not in nginx["deploy"]["restart_policy"]
    else:
        assert init["cap_drop"] == ["ALL"] and sorted(init["cap_add"]) == ["CHOWN", "DAC_OVERRIDE"]
        assert init["network_mode"] == "none"
        assert certbot["cap_drop"] == ["ALL"] and "no-new-privileges:true" in certbot["security_opt"]
        assert nginx["depends_on"]["certbot-init"]["condition"] == "service_completed_successfully"
        assert certbot["depends_on"]["nginx"]["condition"] == "service_healthy"
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, str(tree.path / COMPOSE_FILES[target])])


@pytest.mark.parametrize("target", ["compose", "swarm"])
def test_hadolint_passes_the_https_nginx_image(trees: dict[str, Tree], target: str) -> None:
    dockerfile = trees[target].path / "nginx" / "Dockerfile"
    run_tool([tool("hadolint"), "--failure-threshold", "style", str(dockerfile)])
    text = dockerfile.read_text()
    assert "EXPOSE 8080 8443" in text
    assert '"--no-check-certificate", "--header", "Host: shop.example.com", "https://127.0.0.1:8443/healthz"' in text


def test_checkov_passes_every_dockerfile(trees: dict[str, Tree]) -> None:
    summary = checkov(trees["compose"].path.parents[2], "dockerfile")
    # compose, compose-uwsgi, swarm, k8s: an app image and an nginx image each.
    assert summary["resource_count"] >= 8


def container_conf(tree: Tree, root: Path, *, http: int, https: int, upstream: str = "127.0.0.1:9") -> Path:
    """The nginx image's conf as it runs here: loopback ports, the volumes under root, paths of its own."""
    conf = tree.files["nginx/nginx.conf"]
    for old, new in (
        ("/tmp", str(root / "tmp")),  # first: the paths below are under /tmp here
        ("/etc/letsencrypt", str(root / "letsencrypt")),
        ("/var/www/certbot", str(root / "webroot")),
        ("/etc/nginx", str(root / "conf")),
        ("/srv/static", str(root / "static")),
    ):
        conf = conf.replace(old, new)
    conf = conf_with_upstream(conf, upstream)
    conf = conf.replace(f"0.0.0.0:{tls.NGINX_TLS_PORT}", f"127.0.0.1:{https}")
    conf = conf.replace("0.0.0.0:8080", f"127.0.0.1:{http}")
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    write_tree(root / "conf", {"mime.types": tree.files["nginx/mime.types"], "nginx.conf": as_this_user(conf)})
    return root / "conf" / "nginx.conf"


def native_script(script: str, root: Path) -> str:
    script = script.replace("/etc/letsencrypt", str(root / "letsencrypt"))
    return script.replace("/var/www/certbot", str(root / "webroot"))


def test_the_init_step_makes_the_stand_in_nginx_starts_on_and_keeps_a_real_one(
    trees: dict[str, Tree], tmp_path: Path
) -> None:
    tree = trees["compose"]
    init = native_script(as_run(resolved(tree)["services"]["certbot-init"]["command"][0]), tmp_path)
    (tmp_path / "letsencrypt").mkdir()
    (tmp_path / "webroot").mkdir()
    run_tool(["sh", "-c", init])
    served = tmp_path / "letsencrypt" / "served"
    assert os.readlink(served) == "stand-in"
    stand_in = (served / "fullchain.pem").read_bytes()
    for path in (tmp_path / "letsencrypt", served / "privkey.pem", tmp_path / "webroot"):
        assert (path.stat().st_uid, path.stat().st_gid) == (101, 101), path
    assert stat.S_IMODE((served / "privkey.pem").stat().st_mode) & 0o077 == 0

    # nginx starts on it: `nginx -t` as each image runs its conf, with the volume where the stand-in is.
    for target in ("compose", "compose-uwsgi", "swarm"):
        run = tmp_path / "run" / target
        conf = container_conf(trees[target], run, http=free_port(), https=free_port())
        conf.write_text(conf.read_text().replace(str(run / "letsencrypt"), str(tmp_path / "letsencrypt")))
        run_tool([shutil.which("nginx") or "nginx", "-t", "-q", "-p", f"{run}/", "-c", str(conf)])
        run_tool([tool("gixy"), str(trees[target].path / "nginx" / "nginx.conf")])
        text = trees[target].files["nginx/nginx.conf"]
        assert "ssl_certificate /etc/letsencrypt/served/fullchain.pem;" in text
        assert f'add_header Strict-Transport-Security "{HSTS}" always;' in text
        # The client came to port 443 (published to the container's 8443): the redirect names no port.
        assert "return 308 https://$host$request_uri;" in text

    # A second start keeps the stand-in, and once certbot pointed nginx at its lineage, keeps that.
    run_tool(["sh", "-c", init])
    assert (served / "fullchain.pem").read_bytes() == stand_in
    live = tmp_path / "letsencrypt" / "live" / "shop.example.com"
    live.mkdir(parents=True)
    for name in ("fullchain.pem", "privkey.pem"):
        shutil.copy(tmp_path / "letsencrypt" / "stand-in" / name, live / name)
    os.remove(served)
    os.symlink("live/shop.example.com", served)
    run_tool(["sh", "-c", init])
    assert os.readlink(served) == "live/shop.example.com"


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_compose_certbot_and_nginx_loops_get_and_serve_a_certificate(
    pebble: Pebble, tmp_path: Path, echo: int
) -> None:
    """The three scripts the Compose services run, run here against pebble: the init step's stand-in, nginx
    with its reload loop (every second instead of every minute), certbot's loop; nginx ends up serving the
    certificate pebble issued, with no signal from certbot. The image's health check passes all along."""
    settings = {**SETTINGS, "proxy.server_name": ACME_NAME, "tls.acme_server": pebble.directory}
    tree = build_tree(write_project(tmp_path / "project"), "compose", settings, ("tls",))
    services = resolved(tree)["services"]
    for name in ("letsencrypt", "webroot"):
        (tmp_path / name).mkdir()
    run_tool(["sh", "-c", native_script(as_run(services["certbot-init"]["command"][0]), tmp_path)])
    https = free_port()
    conf = container_conf(tree, tmp_path / "run", http=pebble.http_port, https=https, upstream=f"127.0.0.1:{echo}")
    conf.write_text(conf.read_text().replace(str(tmp_path / "run" / "letsencrypt"), str(tmp_path / "letsencrypt"))
                    .replace(str(tmp_path / "run" / "webroot"), str(tmp_path / "webroot")))  # fmt: skip
    nginx_cmd = f"{shutil.which('nginx')} -p {tmp_path / 'run'}/ -c {conf}"
    loop = native_script(as_run(services["nginx"]["command"][2]), tmp_path)
    loop = re.sub(r"\bnginx (?=-t |-s |-g )", f"{nginx_cmd} ", loop).replace("sleep 60", "sleep 1")
    work = tmp_path / "certbot"
    certbot_loop = native_script(as_run(services["certbot"]["command"][0]), tmp_path).replace(
        "certbot certonly",
        f"{tool('certbot')} certonly --config-dir {tmp_path / 'letsencrypt'} --work-dir {work}/work "
        f"--logs-dir {work}/logs",
    )
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(pebble.listener_ca)}
    with ExitStack() as stack:
        nginx_log = stack.enter_context((tmp_path / "nginx.log").open("wb"))
        nginx = subprocess.Popen(["sh", "-c", loop], stdout=nginx_log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        stack.callback(stop_group, nginx)
        wait_for(lambda: nginx.poll() is not None or tls_accepts(https), timeout=20, what="nginx on the stand-in")
        assert nginx.poll() is None, (tmp_path / "nginx.log").read_text()
        assert health_check(tree, https) == 200
        stand_in = served_certificate(https, ACME_NAME)
        certbot_log = stack.enter_context((tmp_path / "certbot.log").open("wb"))
        certbot = subprocess.Popen(["sh", "-c", certbot_loop], stdout=certbot_log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)  # fmt: skip
        stack.callback(stop_group, certbot)
        issued = wait_for(
            lambda: (der := served_certificate(https, ACME_NAME)) != stand_in and der,
            timeout=120,
            what=f"nginx to serve the issued certificate: {(tmp_path / 'certbot.log')}",
        )
        assert certbot.poll() is None, (tmp_path / "certbot.log").read_text()
        assert health_check(tree, https) == 200
    served = tmp_path / "letsencrypt" / "served"
    assert os.readlink(served) == f"live/{ACME_NAME}"
    assert ssl.DER_cert_to_PEM_cert(issued) in (served / "fullchain.pem").read_text()


def health_check(tree: Tree, port: int) -> int:
    """The nginx image's HEALTHCHECK as busybox wget sends it (to an address: no SNI; its Host header; the
    certificate unverified), to nginx's HTTPS port here; the status it got."""
    line = next(line for line in tree.files["nginx/Dockerfile"].splitlines() if line.strip().startswith("CMD "))
    argv = json.loads(line.strip().removeprefix("CMD "))
    assert argv[:4] == ["wget", "-q", "-O", "/dev/null"] and "--no-check-certificate" in argv
    host = argv[argv.index("--header") + 1].removeprefix("Host: ")
    url = urllib.parse.urlsplit(argv[-1])
    assert (url.scheme, url.hostname, url.port) == ("https", "127.0.0.1", tls.NGINX_TLS_PORT)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ssl._create_unverified_context())
    try:
        conn.request("GET", url.path, headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


# --- Kubernetes -------------------------------------------------------------------------------------------------


def kustomized_docs(tree: Tree) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(run_tool(["kubectl", "kustomize", str(tree.path)])))


def test_kustomize_builds_the_issuer_and_the_ingress_with_its_certificate(trees: dict[str, Tree]) -> None:
    docs = kustomized_docs(trees["k8s"])
    by_kind = {doc["kind"]: doc for doc in docs}
    issuer, ingress = by_kind["Issuer"], by_kind["Ingress"]
    # What cert-manager's CRD requires of an ACME Issuer (kubernetes-validate has no schema for it).
    assert issuer["apiVersion"] == "cert-manager.io/v1"
    assert issuer["metadata"] == {**issuer["metadata"], "name": "shop-letsencrypt", "namespace": "shop-prod"}
    acme = issuer["spec"]["acme"]
    assert acme["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert acme["email"] == "ops@example.com"
    assert acme["privateKeySecretRef"]["name"] == "shop-letsencrypt-account"
    assert acme["solvers"] == [{"http01": {"ingress": {}}}]
    assert set(issuer["spec"]) == {"acme"}
    # The Ingress asks that Issuer for a certificate of every name it routes.
    assert ingress["metadata"]["annotations"]["cert-manager.io/issuer"] == "shop-letsencrypt"
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert ingress["spec"]["tls"] == [{"hosts": hosts, "secretName": "shop-tls"}]
    assert hosts == ["shop.example.com", "www.shop.example.com"]


def test_kubernetes_validate_accepts_the_core_objects(trees: dict[str, Tree], tmp_path: Path) -> None:
    docs = kustomized_docs(trees["k8s"])
    core = [doc for doc in docs if not doc["apiVersion"].startswith("cert-manager.io/")]
    assert len(core) == len(docs) - 1
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    output = run_tool([tool("kubernetes-validate"), "--strict", "-k", "1.30.0", str(path)])
    assert output.count(" passed for resource ") == len(core), output


def test_yamllint_and_checkov_accept_the_manifests(trees: dict[str, Tree]) -> None:
    tree = trees["k8s"]
    manifests = sorted(str(p) for p in tree.path.glob("*.yaml"))
    assert str(tree.path / "issuer.yaml") in manifests
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, *manifests])
    summary = checkov(tree.path, "kubernetes", skip=list(CHECKOV_SKIPS))
    assert summary["failed"] == 0 and summary["resource_count"] >= 8


def test_nginx_and_gixy_accept_the_pod_conf(trees: dict[str, Tree], tmp_path: Path) -> None:
    conf = trees["k8s"].path / "nginx" / "nginx.conf"
    run_tool([shutil.which("nginx") or "nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(conf)])
    run_tool([tool("gixy"), str(conf)])
    text = conf.read_text()
    assert "ssl_certificate" not in text  # TLS ends at the Ingress
    assert "set_real_ip_from 10.0.0.0/8;" in text
    # Without the extra, the pod's nginx believes no one.
    plain = render_k8s_tree(tmp_path / "plain", PRODUCTION)
    assert "set_real_ip_from" not in plain.files["nginx/nginx.conf"]
    assert "HTTP_X_FORWARDED_PROTO $scheme;" in plain.files["nginx/nginx.conf"]
    assert "$flaskprod_scheme" not in plain.files["nginx/nginx.conf"]


def test_without_an_email_the_account_has_none(tmp_path: Path) -> None:
    settings = {**SETTINGS, "tls.email": ""}
    d = make_deployment(tmp_path / "project", spec=make_spec(**settings), extras=("tls",))
    args = tls.certonly_args(d, webroot="/w")
    assert "--register-unsafely-without-email" in args and "--email" not in args
    issuer = render_k8s_tree(tmp_path / "k8s", settings, extras=("tls",))
    acme = yaml.safe_load(issuer.files["issuer.yaml"])["spec"]["acme"]
    assert "email" not in acme


class _Echo(BaseHTTPRequestHandler):
    """The app behind nginx: answers with the request headers it got, and an HSTS header of its own."""

    def do_GET(self) -> None:
        body = json.dumps(dict(self.headers.items())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Strict-Transport-Security", "max-age=1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def pod_nginx(tmp_path: Path, settings: Mapping[str, str], echo: int) -> tuple[subprocess.Popen[bytes], str]:
    """The pod's nginx of a k8s --with tls tree, forwarding to the echo app; its URL."""
    tree = render_k8s_tree(tmp_path / "tree", {**PRODUCTION, **SETTINGS, **settings}, server="gunicorn",
                           extras=("tls",))  # fmt: skip
    conf = tree.files["nginx/nginx.conf"]
    run = tmp_path / "run"
    port = free_port()
    conf = conf.replace("/tmp", str(run / "tmp")).replace("/etc/nginx", str(run))
    conf = re.sub(r"server unix:\S+ ", f"server 127.0.0.1:{echo} ", conf).replace("0.0.0.0:8080", f"127.0.0.1:{port}")
    (run / "tmp").mkdir(parents=True)
    write_tree(run, {"nginx.conf": as_this_user(conf), "mime.types": tree.files["nginx/mime.types"]})
    proc = start_nginx(run / "nginx.conf", run, tmp_path / "nginx.log")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: proc.poll() is not None or through(url).status_code, timeout=20, what="nginx")
    assert proc.poll() is None, (tmp_path / "nginx.log").read_text()
    return proc, url


def through(url: str, **headers: str) -> requests.Response:
    return requests.get(f"{url}/api", headers={"Host": "shop.example.com", **headers}, timeout=5)


@pytest.mark.integration
def test_the_pod_nginx_believes_the_ingress_alone(tmp_path: Path, echo: int) -> None:
    """From the Ingress's addresses (here loopback, by tls.ingress_ranges), the app sees the client and https,
    and nginx sends HSTS once (the app's own dropped); from anyone else, the same headers count for nothing."""
    nginx, url = pod_nginx(tmp_path / "trusted", {"tls.ingress_ranges": "127.0.0.1/32"}, echo)
    try:
        answer = through(url, **{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
        seen = answer.json()
        assert seen["X-Forwarded-Proto"] == "https"
        assert seen["X-Real-IP"] == "203.0.113.9"
        assert seen["X-Forwarded-For"].split(",")[-1].strip() == "203.0.113.9"
        assert answer.headers["Strict-Transport-Security"] == HSTS
        # What reached the Ingress over plain HTTP gets no HSTS (ingress-nginx redirects it anyway).
        plain = through(url, **{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "http"})
        assert plain.json()["X-Forwarded-Proto"] == "http"
        assert "Strict-Transport-Security" not in plain.headers
    finally:
        stop_group(nginx)

    # The default ranges are the pod networks': loopback is not among them.
    nginx, url = pod_nginx(tmp_path / "untrusted", {}, echo)
    try:
        answer = through(url, **{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
        seen = answer.json()
        assert seen["X-Forwarded-Proto"] == "http"
        assert seen["X-Real-IP"] == "127.0.0.1"
        assert seen["X-Forwarded-For"].split(",")[-1].strip() == "127.0.0.1"
        assert "Strict-Transport-Security" not in answer.headers
    finally:
        stop_group(nginx)


def test_the_hsts_nginx_sends_is_the_apps(tmp_path: Path) -> None:
    tree = render_k8s_tree(tmp_path, {**SETTINGS, "security.hsts_max_age": "600"}, extras=("tls",))
    value = hsts_value(tree.d.spec)
    assert value == "max-age=600; includeSubDomains"
    assert f'https "{value}";' in tree.files["nginx/nginx.conf"]
    off = render_k8s_tree(tmp_path / "off", {**SETTINGS, "security.headers": "false"}, extras=("tls",))
    assert "Strict-Transport-Security" not in off.files["nginx/nginx.conf"]


# --- systemd ----------------------------------------------------------------------------------------------------


def test_systemd_analyze_verify_finds_nothing_in_the_units(tmp_path: Path) -> None:
    spec = make_spec(**SETTINGS, **{"deploy.http_port": "8080"})
    d = make_deployment(tmp_path / "project", spec=spec, server="uwsgi", extras=("tls",))
    files = render_units(d, verifiable_layout(d.name))
    units = write_tree(tmp_path / "units", files)
    assert verify(units / "shop.service", units / "shop-nginx.service") == []
    # The plain port needs no capability, HTTPS on 443 does.
    _, nginx = units_of(files)
    assert nginx.value("AmbientCapabilities") == "CAP_NET_BIND_SERVICE"


def test_the_readme_installs_the_hook_and_gets_the_certificate(trees: dict[str, Tree]) -> None:
    tree = trees["systemd"]
    readme = tree.files["README.md"]
    mentioned = set(re.findall(rf"(?<![\w/]){re.escape(tree.d.out)}/([\w./-]+)", readme))
    assert mentioned == set(tree.files) - {"README.md"}
    assert "install -m 0755 deploy/systemd/certbot-deploy-hook /etc/shop/certbot-deploy-hook" in readme
    assert "--deploy-hook /etc/shop/certbot-deploy-hook" in readme
    assert "certbot.timer" in readme and "apt-get install -y" in readme and " certbot openssl" in readme
    conf = tree.files["nginx/nginx.conf"]
    assert "ssl_certificate /etc/letsencrypt/live/shop.example.com/fullchain.pem;" in conf
    assert "ssl_certificate_key /etc/letsencrypt/live/shop.example.com/privkey.pem;" in conf
    assert "root /var/www/shop-acme;" in conf
    hook = tree.files["certbot-deploy-hook"]
    assert hook.startswith("#!/bin/sh\n") and hook.rstrip().endswith("systemctl reload shop-nginx.service")
    run_tool(["sh", "-n", str(tree.path / "certbot-deploy-hook")])


def test_nginx_t_and_gixy_accept_the_systemd_conf_with_a_certificate(tmp_path: Path) -> None:
    d = make_deployment(tmp_path / "srv" / "shop", spec=make_spec(**SETTINGS), server="uwsgi", extras=("tls",))
    layout = tls_layout(tmp_path)
    certificate = host_certificate(d, Paths(name=d.name, layout=layout))
    assert certificate is not None
    for argv in certificate.stand_in_commands():
        run_tool(argv)
    installed = Installed(tmp_path, d, layout)
    # As the unit checks it (ExecStartPre=), with the stand-in where the certificate will be.
    done = nginx_t(installed)
    assert done.returncode == 0, done.stderr
    run_tool([tool("gixy"), str(Path(layout.conf_dir) / "nginx" / "nginx.conf")])
    assert installed.files["nginx/nginx.conf"].count(f"ssl_certificate {certificate.cert};") == 1


def tls_layout(root: Path) -> Layout:
    base = layout_under(root, "shop")
    return Layout(**{**base.__dict__, "letsencrypt": str(root / "letsencrypt"), "www_root": str(root / "www")})


def fake_systemctl(bin_dir: Path, log: Path, nginx: Started) -> None:
    """systemctl as the hook calls it: `reload <name>-nginx.service` runs the unit's ExecReload= lines."""
    reloads = [
        shlex.join(command(line, nginx.specifiers, {"MAINPID": str(nginx.proc.pid)}))
        for line in nginx.unit.values("ExecReload")
    ]
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {shlex.quote(str(log))}\n'
        '[ "$*" = "reload shop-nginx.service" ] || exit 1\n'
        + "".join(f"{line} || exit 1\n" for line in reloads)
    )
    script.chmod(0o755)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_vm_gets_serves_and_renews_the_certificate(pebble: Pebble, tmp_path: Path) -> None:
    """The README's steps with the rendered files: the stand-in, both units, the hook, certbot's command against
    pebble; the deploy hook's reload makes nginx serve the issued certificate, and a renewal the next one."""
    https = free_port()
    project = tmp_path / "srv" / "shop"
    spec = spec_from_toml(project, f'[app]\nname = "shop"\n\n[server]\nworkers = 2\nthreads = 2\n\n'
                                   f'[proxy]\nhost = "127.0.0.1"\nserver_name = "{ACME_NAME}"\n\n'
                                   f'[tls]\nemail = "ops@flaskprod.test"\nacme_server = "{pebble.directory}"\n\n'
                                   f"[deploy]\nhttp_port = {pebble.http_port}\nhttps_port = {https}\n")  # fmt: skip
    d = make_deployment(project, spec=spec, server="uwsgi", extras=("tls",))
    (project / "wsgi.py").write_text(APP)
    layout = tls_layout(tmp_path)
    certificate = host_certificate(d, Paths(name=d.name, layout=layout))
    assert certificate is not None
    installed = Installed(tmp_path, d, layout)
    hook = Path(certificate.hook)
    hook.write_text(installed.files["certbot-deploy-hook"])
    hook.chmod(0o755)
    for argv in certificate.stand_in_commands():
        run_tool(argv)
    calls = tmp_path / "systemctl.log"
    certbot_env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "REQUESTS_CA_BUNDLE": str(pebble.listener_ca),
    }
    dirs = ["--config-dir", layout.letsencrypt, "--work-dir", str(tmp_path / "certbot-work"),
            "--logs-dir", str(tmp_path / "certbot-logs")]  # fmt: skip
    root = pebble.issuing_root(tmp_path / "pebble-root.pem")
    with ExitStack() as stack:
        app, nginx = start_units(installed, tmp_path, stack)
        wait_for(lambda: nginx.proc.poll() is not None or tls_accepts(https), timeout=30, what="nginx on the stand-in")
        assert nginx.proc.poll() is None, (tmp_path / "nginx.log").read_text()
        stand_in = served_certificate(https, ACME_NAME)
        fake_systemctl(tmp_path / "bin", calls, nginx)

        run_tool(certificate.clear_stand_in_command())
        argv = certificate.certonly_command(d)
        assert argv[0] == "certbot"
        run_tool([tool("certbot"), *argv[1:], *dirs], env=certbot_env)
        assert calls.read_text() == "reload shop-nginx.service\n"
        issued = wait_for(lambda: (der := served_certificate(https, ACME_NAME)) != stand_in and der, timeout=20,
                          what="nginx to serve the issued certificate")  # fmt: skip
        assert ssl.DER_cert_to_PEM_cert(issued) in Path(certificate.cert).read_text()
        # As a browser checks it: the chain up to pebble's root, the name; HSTS on every HTTPS answer.
        page = verified_get(https, root, "/healthz")
        assert page.status == 200 and page.headers["Strict-Transport-Security"] == HSTS
        # The plain port redirects to HTTPS, naming the port clients reach it on.
        plain = requests.get(f"http://127.0.0.1:{pebble.http_port}/healthz", headers={"Host": ACME_NAME},
                             allow_redirects=False, timeout=5)  # fmt: skip
        assert plain.status_code == 308 and plain.headers["Location"] == f"https://{ACME_NAME}:{https}/healthz"
        # The hook let nginx's group, and no one else, read the key.
        key = Path(certificate.key).resolve()
        assert key.stat().st_gid == grp.getgrnam("www-data").gr_gid
        assert stat.S_IMODE(key.stat().st_mode) == 0o640
        for directory in ("live", "archive"):
            assert stat.S_IMODE((Path(layout.letsencrypt) / directory).stat().st_mode) == 0o755

        # certbot.timer's `certbot renew` uses what certonly stored: the webroot, the server, the hook.
        run_tool([tool("certbot"), "renew", "--force-renewal", "--no-random-sleep-on-renew", "--non-interactive",
                  *dirs], env=certbot_env)  # fmt: skip
        assert calls.read_text() == "reload shop-nginx.service\n" * 2
        renewed = wait_for(lambda: (der := served_certificate(https, ACME_NAME)) != issued and der, timeout=20,
                           what="nginx to serve the renewed certificate")  # fmt: skip
        assert ssl.DER_cert_to_PEM_cert(renewed) in Path(certificate.cert).read_text()
        assert verified_get(https, root, "/healthz").status == 200
        for unit in (nginx, app):
            unit.stop()


# --- mistakes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "single"], "--with tls is not available for --target single (it takes none): use --target "
                                 "compose, compose-uwsgi, swarm, k8s or systemd, or end TLS at a load balancer"),
        (["--target", "compose", "--set", "proxy.server_name=localhost"],
         "must list the site's public DNS names, not localhost: e.g. --set proxy.server_name="),
        (["--target", "k8s", "--set", "proxy.server_name=shop.example.com 127.0.0.1"], "DNS names, not 127.0.0.1:"),
        (["--target", "systemd", "--set", "proxy.server_name=*.example.com"], "DNS names, not *.example.com:"),
        (["--target", "swarm", "--set", "proxy.server_name=.example.com"], "DNS names, not .example.com:"),
        (["--target", "compose", "--set", "proxy.server_name=shop.example.com", "--set", "deploy.https_port=80"],
         "deploy.https_port 80 is deploy.http_port too: HTTPS needs a port of its own"),
        (["--target", "k8s", "--set", "proxy.server_name=shop.example.com", "--set", "tls.ingress_ranges=10.0.0.0/33"],
         "invalid value '10.0.0.0/33' for tls.ingress_ranges: expected auto, or addresses or CIDR ranges"),
    ],
)
def test_mistakes_are_one_line_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    project = write_project(tmp_path / "project")
    done = subprocess.run([str(BIN / "flaskprod"), "build", *args, "--with", "tls", "--set", "app.name=shop"],
                          cwd=project, env=clean_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("Error: ") and message in errors[0], done.stderr
    assert not (project / "deploy").exists()
