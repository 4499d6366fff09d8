"""`flaskprod build --target systemd`: the units judged by systemd-analyze, nginx.conf by `nginx -t`, and
both run here as the units say.

systemd is not PID 1 on these machines, so the run does what systemd would: it creates the unit's
RuntimeDirectory=, LogsDirectory= and CacheDirectory=, hands over LoadCredential= files, builds the
environment from Environment=, starts ExecStartPre= and ExecStart= in WorkingDirectory= with UMask=, and
stops with KillSignal= to the main process (KillMode=mixed) within TimeoutStopSec=. Only the roots of
those directories differ from a VM (they are under tmp_path), through the renderer's Layout.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from flaskprod.errors import BuildError
from flaskprod.render.deployment import Deployment, InstanceFolder, ServerKind
from flaskprod.render.nginx import StaticMount
from flaskprod.render.systemd import Layout, environment_value, exec_word, render_systemd, render_units
from flaskprod.render.targets import TARGETS
from flaskprod.sizing import MIB, derive, detect_machine
from flaskprod.spec import Spec, load_spec, parse_size
from tests.buildkit import make_deployment, make_spec, tool, write_tree
from tests.support import BIN, free_port, stop_group, wait_for

SERVERS: tuple[ServerKind, ...] = ("uwsgi", "gunicorn")
# The CPU period systemd writes to cpu.max with CPUQuota= (CPUQuotaPeriodSec= unset): 100 ms.
CPU_PERIOD_USEC = 100_000
PAGE = 4096
# What systemd-analyze security may find exposed at most: 2.0 on its 0-10 scale ("OK"), times ten.
EXPOSURE_THRESHOLD = 20
APP = """\
from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/")
def index() -> str:
    return "shop\\n"
"""


# --- reading a unit as systemd does ------------------------------------------------------------------


class Unit:
    """A unit file's assignments by section; a key may repeat (Environment=, ExecReload=)."""

    def __init__(self, text: str) -> None:
        self.sections: dict[str, list[tuple[str, str]]] = {}
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            assert not line.endswith("\\"), f"continuation lines are not rendered: {line}"
            if line.startswith("["):
                section = line.strip("[]")
                self.sections.setdefault(section, [])
                continue
            key, sep, value = line.partition("=")
            assert sep, f"not an assignment: {line!r}"
            self.sections[section].append((key.strip(), value.strip()))

    def values(self, key: str, section: str = "Service") -> list[str]:
        return [v for k, v in self.sections.get(section, []) if k == key]

    def value(self, key: str, section: str = "Service") -> str:
        found = self.values(key, section)
        assert len(found) == 1, f"{key}= appears {len(found)} times in [{section}]"
        return found[0]

    def environment(self) -> dict[str, str]:
        """Environment= assignments, unquoted; specifiers (%d) left for the caller."""
        env = {}
        for line in self.values("Environment"):
            for word in shlex.split(line):
                name, _, value = word.partition("=")
                env[name] = value
        return env


def expand(text: str, specifiers: dict[str, str]) -> str:
    """%x specifiers as systemd expands them; an unknown one fails the test (it would be a rendering bug)."""
    return re.sub(r"%(.)", lambda m: "%" if m[1] == "%" else specifiers[m[1]], text)


def command(line: str, specifiers: dict[str, str], variables: dict[str, str] | None = None) -> list[str]:
    """An Exec*= line as the argv systemd runs: words unquoted, $VAR and $$ and %x expanded."""
    assert line[:1] not in "-@+!:", f"an Exec prefix the test does not emulate: {line}"
    words = []
    for word in shlex.split(line):
        word = re.sub(r"\$(\$|\w+)", lambda m: "$" if m[1] == "$" else (variables or {})[m[1]], word)
        words.append(expand(word, specifiers))
    return words


def verify(*units: Path) -> list[str]:
    """What `systemd-analyze verify` finds in the units; [] when nothing.

    It exits 0 on an unknown key or a value it cannot parse (it warns and ignores the line), so every
    line it prints is a finding, and a non-zero exit one more.
    """
    done = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", "--generators=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode != 0:
        findings.append(f"exit status {done.returncode}")
    return findings


# --- deployments -----------------------------------------------------------------------------------


def verifiable_layout(name: str) -> Layout:
    """The standard layout with the venv this test runs in: verify checks that ExecStart= exists."""
    return dataclasses.replace(Layout.standard(name), venv=str(BIN.parent), nginx=tool("nginx"))


def layout_under(root: Path, name: str) -> Layout:
    """Every path of the install under root, except the venv (this one) and nginx (the system's)."""
    return Layout(
        app_dir=str(root / "srv" / name),
        venv=str(BIN.parent),
        conf_dir=str(root / "etc" / name),
        run_root=str(root / "run"),
        log_root=str(root / "log"),
        cache_root=str(root / "cache"),
        nginx=tool("nginx"),
    )


def units_of(files: dict[str, str], name: str = "shop") -> tuple[Unit, Unit]:
    return Unit(files[f"{name}.service"]), Unit(files[f"{name}-nginx.service"])


def deployment(tmp_path: Path, spec: Spec, server: ServerKind = "gunicorn") -> Deployment:
    return make_deployment(tmp_path / "project", spec=spec, server=server)


def spec_from_toml(project: Path, toml: str) -> Spec:
    project.mkdir(parents=True, exist_ok=True)
    (project / "flaskprod.toml").write_text(toml)
    return load_spec(project, config=None, environ={})


# --- the units, judged by systemd ----------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
def test_systemd_analyze_verify_finds_nothing_in_the_units(tmp_path: Path, server: ServerKind) -> None:
    d = make_deployment(tmp_path / "project", server=server)
    units = write_tree(tmp_path / "units", render_units(d, verifiable_layout(d.name)))
    assert verify(units / "shop.service", units / "shop-nginx.service") == []


@pytest.mark.parametrize(
    ("unit", "good", "bad", "finding"),
    [
        ("shop.service", "KillMode=mixed", "KillMode=mixd", "Failed to parse kill mode"),
        ("shop.service", "TimeoutStopSec=", "TimeoutStopSecs=", "Unknown key"),
        ("shop.service", "CPUQuota=100%", "CPUQuota=100", "CPU quota"),
        ("shop.service", "/bin/flaskprod serve", "/bin/flaskprd serve", "is not executable"),
        ("shop-nginx.service", "KillSignal=SIGQUIT", "KillSignal=SIGQIUT", "Failed to parse signal name"),
        ("shop-nginx.service", "SupplementaryGroups=shop", "SupplementaryGroups=sh:op", "Invalid user/group name"),
    ],
)
def test_a_broken_unit_fails_verify(tmp_path: Path, unit: str, good: str, bad: str, finding: str) -> None:
    """The verify test above can fail: each corruption is reported."""
    d = make_deployment(tmp_path / "project")
    units = write_tree(tmp_path / "units", render_units(d, verifiable_layout(d.name)))
    text = (units / unit).read_text()
    assert good in text
    (units / unit).write_text(text.replace(good, bad, 1))
    findings = verify(units / "shop.service", units / "shop-nginx.service")
    assert any(finding in line for line in findings), findings


def test_systemd_analyze_security_rates_both_units_ok(tmp_path: Path) -> None:
    d = make_deployment(tmp_path / "project")
    units = write_tree(tmp_path / "units", render_units(d, verifiable_layout(d.name)))
    for unit in ("shop.service", "shop-nginx.service"):
        done = subprocess.run(
            [tool("systemd-analyze"), "security", "--offline=yes", f"--threshold={EXPOSURE_THRESHOLD}",
             str(units / unit)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        overall = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
        assert done.returncode == 0 and overall, done.stdout[-3000:] + done.stderr
        assert float(overall[1]) <= EXPOSURE_THRESHOLD / 10


def test_the_sysusers_entry_creates_the_user_the_app_runs_as(tmp_path: Path) -> None:
    d = make_deployment(tmp_path / "project")
    files = render_systemd(d)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    conf = write_tree(tmp_path / "out", files) / "shop.sysusers.conf"
    done = subprocess.run([tool("systemd-sysusers"), f"--root={root}", str(conf)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    app, nginx = units_of(files)
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0] for line in (root / "etc/group").read_text().splitlines()}
    user = app.value("User")
    assert passwd[user][6] == "/usr/sbin/nologin"
    assert app.value("Group") in groups
    assert nginx.value("SupplementaryGroups") == app.value("Group")



@pytest.mark.parametrize(
    ("instance", "path"),
    [
        (InstanceFolder(), "/srv/shop/instance"),
        # A package pip installs from the project's pyproject.toml (a src layout): Flask's <prefix>/var/<name>-instance.
        (InstanceFolder(base="venv", path="var/shop-instance"), "{venv}/var/shop-instance"),
        (InstanceFolder(base="absolute", path="/var/lib/shop"), "/var/lib/shop"),
    ],
)
def test_the_app_may_write_to_flasks_instance_folder_where_the_vms_install_puts_it(
    tmp_path: Path, instance: InstanceFolder, path: str
) -> None:
    """ProtectSystem=strict leaves the app one folder to write to: the one its Flask computes on the VM, which for an
    installed package is in the venv under /opt, not the copy of the project in /srv."""
    d = dataclasses.replace(make_deployment(tmp_path / "project"), instance=instance)
    layout = verifiable_layout(d.name)
    files = render_units(d, layout)
    expected = path.format(venv=layout.venv)
    app, _ = units_of(files)
    assert app.value("ReadWritePaths") == f"-{expected}"
    assert f"install -d -o shop -g shop -m 0750 {expected}\n" in files["README.md"]
    units = write_tree(tmp_path / "units", files)
    assert verify(units / "shop.service", units / "shop-nginx.service") == []


# --- consistency: every number from one derived value --------------------------------------------------


def test_stop_timeouts_are_the_derived_shutdown_grace(tmp_path: Path) -> None:
    spec = make_spec(**{"app.name": "shop", "server.drain_delay": 7, "server.graceful_timeout": 20})
    d = deployment(tmp_path, spec)
    app, nginx = units_of(render_systemd(d))
    assert d.derived.timeouts.shutdown_grace == 7 + 20 + 5
    for unit in (app, nginx):
        assert unit.value("TimeoutStopSec") == str(d.derived.timeouts.shutdown_grace)
        assert unit.value("KillMode") == "mixed"
    assert app.value("KillSignal") == "SIGTERM"
    assert nginx.value("KillSignal") == "SIGQUIT"
    conf = render_systemd(d)["nginx/nginx.conf"]
    assert f"worker_shutdown_timeout {d.derived.timeouts.graceful}s;" in conf


def cgroup_root(tmp_path: Path, unit: Unit) -> Path:
    """A /proc and /sys/fs/cgroup as systemd sets them for the unit: cpu.max from CPUQuota=, memory.max
    from MemoryMax= (rounded down to a page by the kernel), on a machine with plenty of memory."""
    root = tmp_path / "root"
    cgroup = root / "sys/fs/cgroup/system.slice/shop.service"
    cgroup.mkdir(parents=True)
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text("0::/system.slice/shop.service\n")
    (root / "proc/meminfo").write_text(f"MemTotal:       {64 * 1024 * 1024} kB\n")
    percent = float(unit.value("CPUQuota").removesuffix("%"))
    (cgroup / "cpu.max").write_text(f"{round(percent * CPU_PERIOD_USEC / 100)} {CPU_PERIOD_USEC}\n")
    units = {"K": 1024, "M": MIB, "G": 1024 * MIB}
    memory = unit.value("MemoryMax")
    size = int(memory[:-1]) * units[memory[-1]] if memory[-1] in units else int(memory)
    (cgroup / "memory.max").write_text(f"{size // PAGE * PAGE}\n")
    return root


@pytest.mark.parametrize(("cpus", "memory"), [(1.0, "512M"), (1.5, "768M"), (0.5, "1G"), (2.0, "300M"), (3.0, "4G")])
def test_the_limits_give_serve_the_sizing_it_was_built_for(tmp_path: Path, cpus: float, memory: str) -> None:
    """What `flaskprod serve` detects in the unit's cgroup at start sizes it as the build did."""
    spec = make_spec(**{"app.name": "shop", "deploy.cpus": cpus, "deploy.memory": memory})
    d = deployment(tmp_path, spec)
    app, _ = units_of(render_systemd(d))
    machine = detect_machine(cgroup_root(tmp_path, app), affinity=8)
    assert machine.cpus == cpus
    assert machine.memory == parse_size(memory)
    # The worker count is the build's whatever serve measures of the app (the unit pins it): both assume
    # server.worker_memory_mb, or its default, per worker.
    at_start = derive(spec, machine)
    # What the units and nginx.conf carry (the upstream keepalive is workers x threads); the database
    # pool is the app's own to size per process, and appears in no file here.
    assert (at_start.workers, at_start.threads, at_start.worker_class, at_start.cpu_affinity, at_start.timeouts) == (
        d.derived.workers,
        d.derived.threads,
        d.derived.worker_class,
        d.derived.cpu_affinity,
        d.derived.timeouts,
    )


@pytest.mark.parametrize("server", SERVERS)
def test_nginx_forwards_to_the_socket_the_app_server_binds(tmp_path: Path, server: ServerKind) -> None:
    d = deployment(tmp_path, make_spec(**{"app.name": "shop"}), server=server)
    files = render_systemd(d)
    app, nginx = units_of(files)
    env = app.environment()
    upstream = re.search(r"upstream flaskprod_app \{[^}]*?\n\s*server (\S+) ", files["nginx/nginx.conf"])
    assert upstream and upstream[1] == env["FLASKPROD_SERVER__BIND"] == "unix:/run/shop/app.sock"
    # The socket is in the directory systemd makes for the app unit, which nginx's unit may enter.
    assert f"/run/{app.value('RuntimeDirectory')}/app.sock" == "/run/shop/app.sock"
    assert app.value("RuntimeDirectoryMode") == "0750"
    assert nginx.value("SupplementaryGroups") == app.value("Group")
    assert env["FLASKPROD_SERVER__KIND"] == server
    assert env["FLASKPROD_PROXY__TRUSTED_HOPS"] == "1"
    if server == "uwsgi":
        assert env["FLASKPROD_SERVER__PROTOCOL"] == "uwsgi"
        assert "uwsgi_pass flaskprod_app;" in files["nginx/nginx.conf"]
    else:
        assert "FLASKPROD_SERVER__PROTOCOL" not in env
        assert "proxy_pass http://flaskprod_app;" in files["nginx/nginx.conf"]
    assert "After=network.target shop.service" in files["shop-nginx.service"]


def test_no_secret_value_in_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = "do-not-render-" + os.urandom(8).hex()
    monkeypatch.setenv("FLASK_SECRET_KEY", sentinel)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{sentinel}@db/app")
    files = render_systemd(deployment(tmp_path, make_spec(**{"app.name": "shop"})))
    assert not [name for name, text in files.items() if sentinel in text]
    app, nginx = units_of(files)
    for unit in (app, nginx):
        secret_like = [k for k in unit.environment() if re.search(r"SECRET|PASSWORD|TOKEN|KEY|DATABASE_URL", k)]
        assert all(k.endswith("_FILE") for k in secret_like), secret_like
    # The key reaches the app as a credential file only this service can read.
    assert app.environment()["FLASK_SECRET_KEY_FILE"] == "%d/secret_key"
    assert app.value("LoadCredential") == "secret_key:/etc/shop/secret_key"
    assert app.value("EnvironmentFile") == "-/etc/shop/env"


def test_a_privileged_port_gets_the_one_capability_it_needs(tmp_path: Path) -> None:
    default = make_spec(**{"app.name": "shop"})
    files = render_systemd(deployment(tmp_path, default))
    _, nginx = units_of(files)
    assert default.deploy.http_port == 80
    assert nginx.value("AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
    assert nginx.value("CapabilityBoundingSet") == "CAP_NET_BIND_SERVICE"
    assert "listen 0.0.0.0:80;" in files["nginx/nginx.conf"]

    files = render_systemd(deployment(tmp_path, make_spec(**{"app.name": "shop", "deploy.http_port": 8080})))
    _, nginx = units_of(files)
    assert nginx.values("AmbientCapabilities") == []
    assert nginx.value("CapabilityBoundingSet") == ""
    assert "listen 0.0.0.0:8080;" in files["nginx/nginx.conf"]

    chosen = make_spec(**{"app.name": "shop", "proxy.host": "10.0.0.5"})
    assert "listen 10.0.0.5:80;" in render_systemd(deployment(tmp_path, chosen))["nginx/nginx.conf"]


def test_a_privileged_scraper_port_gets_the_capability_too(tmp_path: Path) -> None:
    spec = make_spec(**{"app.name": "shop", "deploy.http_port": 8080, "monitoring.metrics_port": 917})
    d = make_deployment(tmp_path / "project", spec=spec, extras=("monitoring",))
    files = render_systemd(d)
    _, nginx = units_of(files)
    assert nginx.value("AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
    assert "listen 127.0.0.1:917;" in files["nginx/nginx.conf"]


VM_PORT_CLASH = "each listener on the VM needs a port of its own"


@pytest.mark.parametrize(
    ("settings", "extras", "message"),
    [
        # The reviewer's VM: nginx's loopback requests reached the scraper's listener, and the README's check got 404.
        ({"deploy.http_port": 9117}, ("monitoring",),
         f"deploy.http_port 9117 is also monitoring.metrics_port: {VM_PORT_CLASH}; set one of them to another port"),
        ({"monitoring.metrics_port": 80}, ("monitoring",),
         f"monitoring.metrics_port 80 is also deploy.http_port: {VM_PORT_CLASH}; set one of them to another port"),
        ({"deploy.http_port": 9090}, ("monitoring",),
         "deploy.http_port 9090 is also the port of Debian's Prometheus (127.0.0.1:9090, as the README runs it): "
         f"{VM_PORT_CLASH}; set deploy.http_port to another port"),
        ({"monitoring.metrics_port": 9093}, ("monitoring",),
         "monitoring.metrics_port 9093 is also the port of Debian's Alertmanager (127.0.0.1:9093, as the README runs "
         f"it): {VM_PORT_CLASH}; set monitoring.metrics_port to another port"),
        ({"deploy.https_port": 9100, "proxy.server_name": "shop.example.com"}, ("monitoring", "tls"),
         "deploy.https_port 9100 is also the port of the node exporter that Debian's prometheus package brings: "
         f"{VM_PORT_CLASH}; set deploy.https_port to another port"),
        ({"deploy.https_port": 9117, "proxy.server_name": "shop.example.com"}, ("monitoring", "tls"),
         f"deploy.https_port 9117 is also monitoring.metrics_port: {VM_PORT_CLASH}; set one of them to another port"),
    ],
)
def test_two_listeners_on_one_port_of_the_vm_are_refused(
    tmp_path: Path, settings: dict[str, object], extras: tuple[str, ...], message: str
) -> None:
    d = make_deployment(tmp_path / "project", spec=make_spec(**{"app.name": "shop", **settings}), extras=extras)
    with pytest.raises(BuildError) as refused:
        render_systemd(d)
    assert str(refused.value) == message


@pytest.mark.parametrize("settings", [{"deploy.http_port": 9117}, {"deploy.http_port": 9090}])
def test_a_port_only_monitoring_listens_on_is_free_without_it(tmp_path: Path, settings: dict[str, object]) -> None:
    d = make_deployment(tmp_path / "project", spec=make_spec(**{"app.name": "shop", **settings}))
    assert f"listen 0.0.0.0:{settings['deploy.http_port']};" in render_systemd(d)["nginx/nginx.conf"]


def test_the_units_comment_names_the_readiness_path_that_drains(tmp_path: Path) -> None:
    spec = make_spec(**{"app.name": "shop", "monitoring.ready_path": "/rz", "server.drain_delay": 5})
    unit = render_systemd(deployment(tmp_path, spec))["shop.service"]
    assert "# SIGTERM to the main process only: /rz turns 503 for server.drain_delay (5 s)" in unit
    assert "/readyz" not in unit


@pytest.mark.parametrize(
    ("port", "says"),
    [
        (80, ["# the names' DNS must point at this VM, and port 80 reach it."]),
        # HTTP-01 connects to port 80 alone: the README said port 8088 should reach the VM, and certbot then failed.
        (8088, ["# the names' DNS must point at this VM, and its port 80 reach nginx on port 8088: Let's Encrypt's",
                "# HTTP-01 check connects to port 80 alone, so forward 80 to 8088 (a load balancer, or a firewall's "
                "redirect)."]),
    ],
)
def test_the_readme_says_lets_encrypt_comes_to_port_80(tmp_path: Path, port: int, says: list[str]) -> None:
    spec = make_spec(**{"app.name": "shop", "proxy.server_name": "shop.example.com", "deploy.http_port": port})
    readme = render_systemd(make_deployment(tmp_path / "project", spec=spec, extras=("tls",)))["README.md"]
    lines = readme.splitlines()
    step = lines.index("# 6. The certificate, from https://acme-v02.api.letsencrypt.org/directory:")
    assert lines[step + 1 : step + 1 + len(says)] == says


def test_the_readme_installs_exactly_the_rendered_files(tmp_path: Path) -> None:
    d = deployment(tmp_path, make_spec(**{"app.name": "shop"}))
    files = render_systemd(d)
    readme = files["README.md"]
    mentioned = set(re.findall(rf"(?<![\w/]){re.escape(d.out)}/([\w./-]+)", readme))
    assert mentioned == set(files) - {"README.md"}
    assert "install -m 0644 deploy/shop.service deploy/shop-nginx.service /etc/systemd/system/" in readme
    assert "/etc/shop/secret_key" in readme and "umask 077" in readme
    assert "systemctl enable --now shop.service shop-nginx.service" in readme
    assert "curl -H 'Host: localhost' http://127.0.0.1:80/healthz" in readme


@pytest.mark.parametrize(
    ("names", "host"), [("*.example.com", "probe.example.com"), (".shop.test www.shop.test", "shop.test")]
)
def test_the_readmes_check_sends_a_host_nginx_serves(tmp_path: Path, names: str, host: str) -> None:
    # It sent the first entry as written (*.example.com), which nginx closes: the check could never pass.
    readme = render_systemd(deployment(tmp_path, make_spec(**{"app.name": "shop", "proxy.server_name": names})))
    assert f"curl -H 'Host: {host}' http://127.0.0.1:80/healthz" in readme["README.md"]


def test_flaskprod_build_writes_the_target(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    make_deployment(project)
    blueprint = 'app.register_blueprint(Blueprint("admin", __name__, static_folder="admin"))\n'  # at /admin
    (project / "wsgi.py").write_text(f"from flask import Blueprint\n{APP}{blueprint}")
    (project / "admin").mkdir()
    (project / "admin" / "admin.css").write_text("admin\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK", "PROMETHEUS_MULTIPROC_DIR"))}
    done = subprocess.run([str(BIN / "flaskprod"), "build", "--target", "systemd", "--set", "app.name=shop"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = project / "deploy" / "systemd"
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == {"README.md", "shop.service", "shop-nginx.service", "shop.sysusers.conf", "nginx/nginx.conf",
                       "nginx/mime.types", ".flaskprod-systemd.sha256"}  # fmt: skip
    # The app's static folder and its blueprint's, from the VM's copy of the project.
    conf = (out / "nginx/nginx.conf").read_text()
    assert re.findall(r"location (\S+) \{\n\s*alias (\S+);", conf) == [
        ("/static/", "/srv/shop/static/"),
        ("/admin/", "/srv/shop/admin/"),
    ]
    readme = (out / "README.md").read_text()
    assert "static files from `/srv/shop/static` and `/srv/shop/admin`, everything else" in readme
    assert "see deploy/systemd/README.md" in done.stdout

    # The README's copy of the code, run for real: secrets and local state stay behind, as from the images.
    for relative in (".env", "key.pem", ".flaskprod/secret_key", "instance/app.db", "shop.db", ".venv/pyvenv.cfg",
                     "pkg/__pycache__/a.cpython-311.pyc", "pkg/build/steps.py", "pkg/views.py"):  # fmt: skip
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text("x")
    readme = (out / "README.md").read_text()
    copy = re.search(r"^rsync .*?/srv/shop/$", readme, re.M | re.S)
    assert copy, readme
    dest = tmp_path / "srv-shop"
    words = shlex.split(copy.group(0).replace("\\\n", " "))
    argv = [*(a for a in words[:-1] if not a.startswith("--chown")), f"{dest}/"]
    subprocess.run(argv, cwd=project, check=True, timeout=60)
    shipped = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert {"wsgi.py", "pkg/views.py", "pkg/build/steps.py"} <= shipped  # only the root's build/ is a build folder
    assert not [path for path in shipped if path.startswith("deploy/")]  # a second top-level package to pip
    assert not shipped & {".env", "key.pem", ".flaskprod/secret_key", "instance/app.db", "shop.db",
                          ".venv/pyvenv.cfg", "pkg/__pycache__/a.cpython-311.pyc"}  # fmt: skip


def test_the_registered_target_renders_these_files(tmp_path: Path) -> None:
    d = deployment(tmp_path, make_spec(**{"app.name": "shop"}), server="uwsgi")
    assert TARGETS["systemd"].render(d) == render_systemd(d)


def test_a_name_too_long_for_a_user_is_refused(tmp_path: Path) -> None:
    d = deployment(tmp_path, make_spec(**{"app.name": "a-very-long-application-name-for-users"}))
    with pytest.raises(BuildError, match=r"longer than 31 characters: .* set a shorter app.name"):
        render_systemd(d)


@pytest.mark.parametrize("value", ["plain", 'a "quoted" word', "back\\slash", "50% off", "$HOME; rm", "tab\there"])
def test_quoting_round_trips(value: str) -> None:
    """Exec and Environment words read back as written, with systemd's $ and % expansion undone."""
    assert command(exec_word(value), {}) == [value]
    (word,) = shlex.split(environment_value("X", value))
    assert expand(word, {}) == f"X={value}"


# --- nginx.conf, judged by nginx -------------------------------------------------------------------------


def as_this_user(conf: str) -> str:
    """Started as root outside systemd, nginx's workers would run as nobody, who cannot read pytest's
    private temp dirs; under the unit, master and workers run as one unprivileged user, as this does."""
    return f"user {getpass.getuser()};\n{conf}" if os.geteuid() == 0 else conf


class Installed:
    """The target's files installed under root as the README says, and the units emulated as systemd runs them."""

    def __init__(self, root: Path, d: Deployment, layout: Layout | None = None) -> None:
        self.root = root
        self.layout = layout or layout_under(root, d.name)
        self.files = render_units(d, self.layout)
        self.app, self.nginx = units_of(self.files, d.name)
        conf_dir = Path(self.layout.conf_dir)
        write_tree(conf_dir / "nginx", {k.removeprefix("nginx/"): v for k, v in self.files.items()
                                        if k.startswith("nginx/")})  # fmt: skip
        conf = conf_dir / "nginx" / "nginx.conf"
        conf.write_text(as_this_user(conf.read_text()))
        (conf_dir / "secret_key").write_text(os.urandom(32).hex() + "\n")
        (conf_dir / "secret_key").chmod(0o600)

    def start_environment(self, unit: Unit, name: str) -> tuple[dict[str, str], dict[str, str]]:
        """The directories, credentials and environment systemd gives the unit: (environment, specifiers)."""
        for key, base in (
            ("RuntimeDirectory", self.layout.run_root),
            ("LogsDirectory", self.layout.log_root),
            ("CacheDirectory", self.layout.cache_root),
        ):
            for directory in unit.values(key):
                (Path(base) / directory).mkdir(parents=True, exist_ok=True)
        mode = unit.values("RuntimeDirectoryMode")
        for directory in unit.values("RuntimeDirectory"):
            (Path(self.layout.run_root) / directory).chmod(int(mode[0], 8) if mode else 0o755)
        credentials = self.root / "credentials" / name
        credentials.mkdir(parents=True)
        for entry in unit.values("LoadCredential"):
            credential, _, source = entry.partition(":")
            shutil.copyfile(source, credentials / credential)
            (credentials / credential).chmod(0o400)
        private_tmp = self.root / "private-tmp" / name  # PrivateTmp=yes
        private_tmp.mkdir(parents=True)
        specifiers = {"d": str(credentials)}
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "TMPDIR": str(private_tmp),
               "CREDENTIALS_DIRECTORY": str(credentials)}  # fmt: skip
        for line in unit.values("EnvironmentFile"):
            path = Path(expand(line.removeprefix("-"), specifiers))
            assert line.startswith("-") or path.exists(), f"EnvironmentFile {path} is required but missing"
        env.update({k: expand(v, specifiers) for k, v in unit.environment().items()})
        return env, specifiers


def nginx_t(installed: Installed) -> subprocess.CompletedProcess[str]:
    env, specifiers = installed.start_environment(installed.nginx, "nginx-check")
    (pre,) = installed.nginx.values("ExecStartPre")
    return subprocess.run(command(pre, specifiers), env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("server", SERVERS)
def test_nginx_accepts_the_conf_as_the_unit_checks_it(tmp_path: Path, server: ServerKind) -> None:
    d = make_deployment(tmp_path / "srv" / "shop", server=server)
    done = nginx_t(Installed(tmp_path, d))
    assert done.returncode == 0, done.stderr


def test_nginx_t_in_the_unit_rejects_a_broken_conf(tmp_path: Path) -> None:
    installed = Installed(tmp_path, make_deployment(tmp_path / "srv" / "shop"))
    conf = Path(installed.layout.conf_dir) / "nginx" / "nginx.conf"
    conf.write_text(conf.read_text().replace("worker_connections", "worker_connectionz", 1))
    done = nginx_t(installed)
    assert done.returncode != 0 and "worker_connectionz" in done.stderr


# --- the units, run ------------------------------------------------------------------------------------


class Started:
    """One unit's main process, started as systemd would, in a session of its own (its 'cgroup')."""

    def __init__(self, installed: Installed, unit: Unit, name: str, log: IO[str]) -> None:
        self.unit = unit
        self.name = name
        self.env, self.specifiers = installed.start_environment(unit, name)
        cwd = unit.values("WorkingDirectory")
        umask = unit.values("UMask")
        for pre in unit.values("ExecStartPre"):
            done = subprocess.run(command(pre, self.specifiers), env=self.env, capture_output=True, text=True,
                                  timeout=60)  # fmt: skip
            assert done.returncode == 0, f"{name}: ExecStartPre={pre} failed: {done.stderr}"
        self.proc: subprocess.Popen[Any] = subprocess.Popen(
            command(unit.value("ExecStart"), self.specifiers),
            env=self.env,
            cwd=cwd[0] if cwd else "/",
            umask=int(umask[0], 8) if umask else 0o022,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    def reload(self) -> None:
        """ExecReload= lines in turn, with $MAINPID; a failing one fails the reload (and the test)."""
        for line in self.unit.values("ExecReload"):
            argv = command(line, self.specifiers, {"MAINPID": str(self.proc.pid)})
            done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, f"{self.name}: ExecReload={line} failed: {done.stderr}"

    def stop(self) -> float:
        """KillSignal= to the main process alone (KillMode=mixed); seconds until it and its group were gone."""
        assert self.unit.value("KillMode") == "mixed"
        timeout = float(self.unit.value("TimeoutStopSec"))
        started = time.monotonic()
        self.proc.send_signal(signal.Signals[self.unit.value("KillSignal")])
        code = self.proc.wait(timeout)
        # What is left in the group, systemd would SIGKILL: a clean stop leaves nothing.
        wait_for(lambda: not group_alive(self.proc.pid), timeout=max(0.1, timeout - (time.monotonic() - started)),
                 what=f"{self.name}'s processes to exit")  # fmt: skip
        assert code == 0, f"{self.name} exited with status {code}"
        return time.monotonic() - started


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def socket_accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Installed, Started, Started, str]]:
    """The app unit, then the nginx unit (After=), started from the rendered files; yields nginx's URL."""
    server: ServerKind = request.param
    port = free_port()
    project = tmp_path / "srv" / "shop"
    # The settings live in the project's flaskprod.toml, read by the build and by `flaskprod serve` alike.
    spec = spec_from_toml(project, f'[app]\nname = "shop"\n\n[server]\nworkers = 2\nthreads = 2\n\n'
                                   f"[deploy]\nhttp_port = {port}\n")  # fmt: skip
    d = make_deployment(project, spec=spec, server=server)
    (project / "wsgi.py").write_text(APP)
    installed = Installed(tmp_path, d)
    with ExitStack() as stack:
        app, nginx = start_units(installed, tmp_path, stack)
        yield installed, app, nginx, f"http://127.0.0.1:{port}"


def start_units(installed: Installed, tmp_path: Path, stack: ExitStack) -> tuple[Started, Started]:
    """The app unit, once its socket accepts, then the nginx unit (After=); both stopped when stack closes."""
    bind = installed.app.environment()["FLASKPROD_SERVER__BIND"].removeprefix("unix:")
    app_log = stack.enter_context((tmp_path / "app.log").open("w"))
    nginx_log = stack.enter_context((tmp_path / "nginx.log").open("w"))
    app = Started(installed, installed.app, "shop.service", app_log)
    stack.callback(stop_group, app.proc)
    # A server that exited ends the wait at once; the assertion below shows why it did.
    wait_for(lambda: app.proc.poll() is not None or socket_accepts(bind), timeout=30, what="the app's socket")
    assert app.proc.poll() is None, (tmp_path / "app.log").read_text()
    nginx = Started(installed, installed.nginx, "shop-nginx.service", nginx_log)
    stack.callback(stop_group, nginx.proc)
    return app, nginx


def get(url: str, path: str) -> requests.Response:
    return requests.get(f"{url}{path}", headers={"Host": "localhost"}, timeout=5)


@pytest.mark.integration
@pytest.mark.parametrize("stack", SERVERS, indirect=True)
def test_the_units_run_the_app_behind_nginx_reload_and_stop_in_time(
    stack: tuple[Installed, Started, Started, str], tmp_path: Path
) -> None:
    installed, app, nginx, url = stack
    wait_for(lambda: nginx.proc.poll() is not None or get(url, "/healthz").status_code == 200, timeout=30,
             what="/healthz through nginx")  # fmt: skip
    assert nginx.proc.poll() is None, (tmp_path / "nginx.log").read_text()
    assert get(url, "/readyz").status_code == 200
    assert get(url, "/").text == "shop\n"
    static = get(url, "/static/app.css")
    assert static.status_code == 200 and static.text == "body { margin: 0 }\n"

    # systemctl reload, both: the config is checked, then SIGHUP; the site keeps answering.
    app.reload()
    nginx.reload()
    wait_for(lambda: get(url, "/").text == "shop\n", timeout=30, what="the app after a reload")

    # systemctl stop: nginx first (it is ordered After= the app), then the app server.
    for unit in (nginx, app):
        seconds = unit.stop()
        assert seconds < float(unit.unit.value("TimeoutStopSec")), f"{unit.name} took {seconds:.1f}s"
    log = Path(installed.layout.log_root) / "shop" / "access.log"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"/healthz", "/static/app.css"} <= {line["uri"] for line in lines}


# --- with monitoring: the VM's Prometheus ---------------------------------------------------------------


def test_monitoring_files_are_installed_by_the_readme_and_judged_by_promtool(tmp_path: Path) -> None:
    d = make_deployment(tmp_path / "project", spec=make_spec(**{"app.name": "shop"}), extras=["monitoring"])
    files = render_systemd(d)
    readme = files["README.md"]
    mentioned = set(re.findall(rf"(?<![\w/]){re.escape(d.out)}/([\w./-]+)", readme))
    assert mentioned == set(files) - {"README.md"}
    assert {"monitoring/prometheus.yml", "monitoring/alerts.yml", "monitoring/alerts.test.yml"} <= set(files)
    out = write_tree(tmp_path / "out", files)
    subprocess.run([tool("promtool"), "check", "config", str(out / "monitoring/prometheus.yml")], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    tested = subprocess.run([tool("promtool"), "test", "rules", "alerts.test.yml"], cwd=out / "monitoring",
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # nginx's listener for the scraper is on loopback, where the README keeps Prometheus too.
    assert f"listen 127.0.0.1:{d.spec.monitoring.metrics_port};" in files["nginx/nginx.conf"]
    assert 'ARGS="--web.listen-address=127.0.0.1:9090 --storage.tsdb.retention.time=15d"' in readme
    # Without the extra, no listener and no files.
    plain = render_systemd(deployment(tmp_path / "plain", make_spec(**{"app.name": "shop"})))
    assert not any(name.startswith("monitoring/") for name in plain)
    assert str(d.spec.monitoring.metrics_port) not in plain["nginx/nginx.conf"]


@pytest.mark.integration
def test_the_vms_prometheus_scrapes_the_units_through_nginx(tmp_path: Path) -> None:
    """The units run as systemd would, and a real Prometheus with the rendered prometheus.yml and alerts.yml
    (only its listen address and storage are this test's) scrapes the app through nginx's listener."""
    port, metrics_port, prometheus_port = free_port(), free_port(), free_port()
    project = tmp_path / "srv" / "shop"
    toml = (f'[app]\nname = "shop"\n\n[server]\nworkers = 2\nthreads = 2\n\n[deploy]\nhttp_port = {port}\n\n'
            f"[monitoring]\nmetrics_port = {metrics_port}\n")  # fmt: skip
    spec = spec_from_toml(project, toml)
    d = make_deployment(project, spec=spec, extras=["monitoring"])
    (project / "wsgi.py").write_text(APP)
    installed = Installed(tmp_path, d)
    monitoring = {k.removeprefix("monitoring/"): v for k, v in installed.files.items() if k.startswith("monitoring/")}
    prometheus_dir = write_tree(tmp_path / "etc-prometheus", monitoring)
    url = f"http://127.0.0.1:{port}"
    api = f"http://127.0.0.1:{prometheus_port}/api/v1/query"

    def query(expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = requests.get(api, params={"query": expr}, timeout=5).json()["data"]["result"]
        return result

    with ExitStack() as stack:
        start_units(installed, tmp_path, stack)
        wait_for(lambda: get(url, "/healthz").status_code == 200, timeout=30, what="/healthz through nginx")
        for _ in range(5):
            assert get(url, "/").status_code == 200
        prometheus_log = stack.enter_context((tmp_path / "prometheus.log").open("w"))
        command = [
            tool("prometheus"),
            f"--config.file={prometheus_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ]
        prometheus = subprocess.Popen(command, stdout=prometheus_log, stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(stop_group, prometheus)

        def scraped() -> bool:
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()
            return [r["value"][1] for r in query('up{job="shop"}')] == ["1"]

        wait_for(scraped, timeout=60, what="Prometheus to scrape the app through nginx")
        served = query('sum(http_requests_total{job="shop", endpoint="/"})')
        assert served and float(served[0]["value"][1]) >= 5
        # The rules loaded are the rendered ones, every alert of alerts.yml.
        groups = requests.get(f"http://127.0.0.1:{prometheus_port}/api/v1/rules", timeout=5).json()["data"]["groups"]
        loaded = {rule["name"] for group in groups for rule in group["rules"]}
        assert loaded and loaded == set(re.findall(r"alert: (\w+)", (prometheus_dir / "alerts.yml").read_text()))


@pytest.mark.parametrize("folder", ["build/static", "dist/assets/css", "public"])
def test_the_readmes_copy_keeps_a_static_folder_inside_a_folder_it_leaves_out(tmp_path: Path, folder: str) -> None:
    """A bundler's output (build/static) sits in a folder the copy leaves out: rsync never enters an excluded folder,
    so nginx on the VM would answer 404 for every file in it, where Docker's context looks inside for the exception."""
    project = tmp_path / "project"
    d = make_deployment(project, static=False)
    parent = folder.split("/", 1)[0]
    mounts = []
    for served in (folder, f"{parent}/media"):  # a blueprint's folder beside it
        (project / served).mkdir(parents=True, exist_ok=True)
        (project / served / "site.css").write_text("body {}\n")
        mounts.append(StaticMount(endpoint=f"{len(mounts)}.static", url=f"/{len(mounts)}", folder=served))
    (project / parent / "stale.js").write_text("x\n")  # the rest of the excluded folder stays behind
    d = dataclasses.replace(d, project=dataclasses.replace(d.project, static=tuple(mounts)))
    readme = render_systemd(d)["README.md"]
    copy = re.search(r"^rsync .*?/srv/shop/$", readme, re.M | re.S)
    assert copy, readme
    dest = tmp_path / "srv-shop"
    words = shlex.split(copy.group(0).replace("\\\n", " "))
    subprocess.run([*(a for a in words[:-1] if not a.startswith("--chown")), f"{dest}/"], cwd=project, check=True)
    shipped = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert {f"{folder}/site.css", f"{parent}/media/site.css"} <= shipped
    assert (f"{parent}/stale.js" in shipped) == (parent == "public")
    assert "requirements.txt" in shipped and "wsgi.py" in shipped
