"""systemd units for a plain VM: the app server and nginx, run as `flaskprod up` runs them, each a hardened service.

`<name>.service` runs `flaskprod serve` on a unix socket in its RuntimeDirectory; `<name>-nginx.service`
runs nginx under its own prefix in front of it. The stop timeouts, the CPU and memory limits the app
server's worker count was fixed for, and the socket both sides name come from the one Deployment.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import shlex
from dataclasses import dataclass

from ..discovery import APP_VARIABLE
from ..errors import BuildError
from ..servers.common import loopback_for
from ..sizing import MIB
from ..spec import parse_size
from .deployment import Deployment
from .image import never_shipped, uwsgi_requirement, vcs_packages, vcs_tools
from .monitoring import (
    ALERTMANAGER_PORT,
    PROMETHEUS_PORT,
    WEBHOOK_SECRET,
    Monitored,
    Receiver,
    Scrape,
    alertmanager_file,
    dashboard_json,
    prometheus_files,
    prometheus_retention,
    refuse_unscrapable,
)
from .nginx import NginxContext, StaticMount, _environment, listen_address
from .tls import HostCertificate, check_ports, shell_words, tls_names

# nginx's workers run as Debian's web server user; the app socket's group is added to this unit alone.
NGINX_USER = "www-data"
# Ports below this need CAP_NET_BIND_SERVICE, granted to the unprivileged nginx unit only then.
PRIVILEGED_PORTS = 1024
# systemd and shadow-utils refuse longer user names (utmp holds 32 bytes with the NUL).
MAX_USER_NAME = 31
SECRET_CREDENTIAL = "secret_key"
# certbot's deploy hook with --with tls: the file's name in the output and in the install's conf_dir.
CERTBOT_HOOK = "certbot-deploy-hook"
# Debian's Prometheus package: where it reads its config, and the address it is told to keep to.
PROMETHEUS_CONF_DIR = "/etc/prometheus"
PROMETHEUS_LISTEN = f"127.0.0.1:{PROMETHEUS_PORT}"
# Debian's Alertmanager: it reads PROMETHEUS_CONF_DIR/alertmanager.yml, and is told to keep to this VM too.
ALERTMANAGER_LISTEN = f"127.0.0.1:{ALERTMANAGER_PORT}"
# Debian's node exporter, which its prometheus package recommends (so `apt-get install` brings it): every address.
NODE_EXPORTER_PORT = 9100
# Where the install puts the webhook's URL, for Alertmanager's user (prometheus) alone.
WEBHOOK_URL_FILE = f"{PROMETHEUS_CONF_DIR}/{WEBHOOK_SECRET}"
# systemd's own PATH for services, which the release command's search continues with after the virtualenv's bin.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Seconds TimeoutStartSec= adds to deploy.release_timeout, which the release command may take: the app's own start.
RELEASE_START_MARGIN = 30
# Characters that make an ExecStart= word need quotes; $ and % are escaped in any case.
_NEEDS_QUOTES = re.compile(r"""[\s"'\\;]""")


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where an install puts things on the VM: every absolute path the units and nginx.conf name.

    RuntimeDirectory=, LogsDirectory= and CacheDirectory= are names systemd creates under run_root,
    log_root and cache_root; a test runs the same files with these roots under a temporary directory.
    """

    app_dir: str  # the project's files, owned by root: WorkingDirectory
    venv: str  # the virtualenv flaskprod and the app's requirements are installed in
    conf_dir: str  # nginx/, the secret key and the optional env file
    run_root: str = "/run"
    log_root: str = "/var/log"
    cache_root: str = "/var/cache"
    nginx: str = "/usr/sbin/nginx"
    kill: str = "/bin/kill"
    env: str = "/usr/bin/env"  # runs the release command's program found on a PATH it is given
    letsencrypt: str = "/etc/letsencrypt"  # certbot's --config-dir
    www_root: str = "/var/www"  # the ACME challenge's webroot is a folder here

    @classmethod
    def standard(cls, name: str) -> Layout:
        return cls(app_dir=f"/srv/{name}", venv=f"/opt/{name}/venv", conf_dir=f"/etc/{name}")


@dataclass(frozen=True, kw_only=True)
class Paths:
    """The files of one install of the app `name` laid out as layout says."""

    name: str
    layout: Layout

    @property
    def runtime_dir(self) -> str:
        return f"{self.layout.run_root}/{self.name}"

    @property
    def app_socket(self) -> str:
        return f"{self.runtime_dir}/app.sock"

    @property
    def nginx_name(self) -> str:
        return f"{self.name}-nginx"

    @property
    def nginx_conf_dir(self) -> str:
        return f"{self.layout.conf_dir}/nginx"

    @property
    def nginx_conf(self) -> str:
        return f"{self.nginx_conf_dir}/nginx.conf"

    @property
    def nginx_pid(self) -> str:
        return f"{self.layout.run_root}/{self.nginx_name}/nginx.pid"

    @property
    def nginx_temp(self) -> str:
        # On disk rather than in /run (RAM): request bodies up to the app's MAX_CONTENT_LENGTH spill here.
        return f"{self.layout.cache_root}/{self.nginx_name}"

    @property
    def access_log(self) -> str:
        return f"{self.layout.log_root}/{self.name}/access.log"

    @property
    def secret_file(self) -> str:
        return f"{self.layout.conf_dir}/{SECRET_CREDENTIAL}"

    @property
    def env_file(self) -> str:
        return f"{self.layout.conf_dir}/env"

    @property
    def acme_webroot(self) -> str:
        return f"{self.layout.www_root}/{self.name}-acme"

    @property
    def certbot_hook(self) -> str:
        return f"{self.layout.conf_dir}/{CERTBOT_HOOK}"


def exec_word(word: str) -> str:
    """One word of an Exec*= command line: $ and % escaped (systemd expands both), quoted when needed."""
    word = word.replace("%", "%%").replace("$", "$$")
    if not word or _NEEDS_QUOTES.search(word):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def exec_line(args: list[str]) -> str:
    return " ".join(exec_word(arg) for arg in args)


def environment_value(name: str, value: str) -> str:
    """The value of one Environment= line: quoted, with % escaped (a specifier) and backslashes and quotes."""
    text = f"{name}={value}".replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def cpu_quota(cpus: float) -> str:
    """deploy.cpus as CPUQuota=: 100% per CPU, which systemd writes to the cgroup's cpu.max."""
    return f"{round(cpus * 100, 2):g}%"


def memory_max(memory: str) -> str:
    """deploy.memory as MemoryMax=, in systemd's 1024-based units when exact, else in bytes."""
    size = parse_size(memory)
    for unit, factor in (("G", 1024 * MIB), ("M", MIB), ("K", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def user_name(d: Deployment) -> str:
    if len(d.name) > MAX_USER_NAME:
        raise BuildError(
            f"app.name {d.spec.app.name!r} makes the user name {d.name!r}, longer than {MAX_USER_NAME} "
            "characters: the app server runs as a system user of that name; set a shorter app.name"
        )
    return d.name


def listen(d: Deployment) -> tuple[str, int]:
    """Where nginx listens on the VM: every interface unless proxy.host was set, on deploy.http_port.

    proxy.host and proxy.port default to a loopback address for `flaskprod up` on a workstation; a VM
    publishes nginx like the container targets do.
    """
    host = d.spec.proxy.host if d.spec.origins.get("proxy.host", "default") != "default" else "0.0.0.0"
    return host, d.spec.deploy.http_port


def host_certificate(d: Deployment, paths: Paths) -> HostCertificate | None:
    """With --with tls, the certificate the VM's certbot keeps for proxy.server_name; else None."""
    if "tls" not in d.extras:
        return None
    check_ports(d)
    return HostCertificate(
        names=tuple(tls_names(d)),
        letsencrypt=paths.layout.letsencrypt,
        webroot=paths.acme_webroot,
        hook=paths.certbot_hook,
        group=NGINX_USER,
        nginx_unit=f"{paths.nginx_name}.service",
    )


def check_vm_ports(d: Deployment) -> None:
    """BuildError when two of what the install runs on the VM would listen on one port: nginx's public (and HTTPS)
    port, and with --with monitoring its listener for the scraper and the Prometheus, Alertmanager and node exporter
    the README installs. With nginx's public port and its scraper's one port, the VM's own requests reached the
    scraper's listener (404 on all but the metrics path); a server's port fails whichever of the two starts second."""
    settings = {"deploy.http_port": d.spec.deploy.http_port}
    if "tls" in d.extras:
        settings["deploy.https_port"] = d.spec.deploy.https_port
    servers: dict[str, int] = {}
    if "monitoring" in d.extras:
        settings["monitoring.metrics_port"] = d.spec.monitoring.metrics_port
        servers = {
            f"the port of Debian's Prometheus ({PROMETHEUS_LISTEN}, as the README runs it)": PROMETHEUS_PORT,
            f"the port of Debian's Alertmanager ({ALERTMANAGER_LISTEN}, as the README runs it)": ALERTMANAGER_PORT,
            "the port of the node exporter that Debian's prometheus package brings": NODE_EXPORTER_PORT,
        }
    listeners = [*settings.items(), *servers.items()]
    for i, (name, port) in enumerate(listeners):
        for other, taken in listeners[:i]:
            if port == taken:
                # A server's port is the README's, and a setting left at its default the other's: move the one set.
                key, clash = (name, other) if name in settings else (other, name)
                if clash in settings and d.spec.origins.get(key, "default") == "default":
                    key, clash = clash, key
                fix = "one of them" if clash in settings else key
                raise BuildError(
                    f"{key} {port} is also {clash}: each listener on the VM needs a port of its own; "
                    f"set {fix} to another port"
                )


def static_on_vm(d: Deployment, paths: Paths) -> tuple[StaticMount, ...]:
    """The static mounts nginx serves from the VM's copy of the project."""
    return tuple(dataclasses.replace(m, folder=f"{paths.layout.app_dir}/{m.folder}") for m in d.project.static)


def nginx_files(d: Deployment, paths: Paths) -> dict[str, str]:
    host, port = listen(d)
    certificate = host_certificate(d, paths)
    ctx = NginxContext(
        host=host,
        port=port,
        upstream=f"unix:{paths.app_socket}",
        protocol=d.protocol,
        static=static_on_vm(d, paths),
        conf_dir=paths.nginx_conf_dir,
        pid_file=paths.nginx_pid,
        temp_dir=paths.nginx_temp,
        access_log=paths.access_log,
        # nginx writes "stderr" itself (no /dev/stderr open): its errors go to the journal.
        error_log="stderr",
        tls=certificate.tls_files(d.spec.deploy.https_port) if certificate else None,
        # The scraper's own listener, on loopback beside the VM's Prometheus; the public port answers 404 there.
        metrics_port=d.spec.monitoring.metrics_port if "monitoring" in d.extras else None,
        metrics_host="127.0.0.1",
    )
    return d.render_nginx(ctx)


def scrape(d: Deployment) -> Scrape:
    """How the VM's Prometheus reaches the app's metrics: nginx's loopback listener for it."""
    return Scrape(job=d.name, targets=(listen_address("127.0.0.1", d.spec.monitoring.metrics_port),))


def monitoring_files(d: Deployment) -> dict[str, str]:
    """monitoring/: prometheus.yml (scraping nginx's listener and itself), the alert rules with their tests, and
    the dashboard every target gets, for a Grafana the VM runs."""
    monitored, scraped = Monitored.of(d), scrape(d)
    refuse_unscrapable(monitored, scraped)
    files = prometheus_files(monitored, scraped, itself=PROMETHEUS_LISTEN, alertmanager=ALERTMANAGER_LISTEN)
    hook = d.spec.monitoring.alert_webhook_url_file
    files["alertmanager.yml"] = alertmanager_file(Receiver(url_file=WEBHOOK_URL_FILE if hook else None))
    files[f"{d.name}.json"] = dashboard_json(monitored, scraped)
    return {f"monitoring/{name}": text for name, text in files.items()}


def nginx_args(paths: Paths) -> list[str]:
    # -e stderr: errors before the config is read go to the journal, not the build's default log path.
    return [paths.layout.nginx, "-p", f"{paths.nginx_conf_dir}/", "-c", paths.nginx_conf, "-e", "stderr"]


def release_argv(d: Deployment, layout: Layout) -> list[str]:
    """deploy.release_command as ExecStartPre= runs it, as `up` does: the virtualenv's bin first on its PATH
    (flask, alembic; a script's `flask` too), then the system's (sh). systemd itself looks a bare name up in its
    own fixed path alone, and takes no relative path: env runs the program, a relative one from WorkingDirectory=."""
    program, *rest = d.spec.deploy.release_argv
    if "/" in program:
        program = posixpath.normpath(posixpath.join(layout.app_dir, program))
    return [layout.env, f"PATH={layout.venv}/bin:{SYSTEM_PATH}", program, *rest]


def render_units(d: Deployment, layout: Layout) -> dict[str, str]:
    """Every file of the systemd target for an install laid out as layout says."""
    paths = Paths(name=d.name, layout=layout)
    user = user_name(d)
    host, port = listen(d)
    certificate = host_certificate(d, paths)
    check_vm_ports(d)
    https_port = d.spec.deploy.https_port
    metrics_port = d.spec.monitoring.metrics_port if "monitoring" in d.extras else None
    env = d.app_env(behind_nginx=True, bind=f"unix:{paths.app_socket}")
    vcs = vcs_tools(d)
    if d.spec.deploy.release_argv:
        env[APP_VARIABLE] = d.project.app_target  # for `flask db upgrade`; `flaskprod serve` reads its own
    if d.project.import_dir:
        # A src layout the venv does not install: imported from the copy of the project, as the image does.
        env["PYTHONPATH"] = f"{layout.app_dir}/{d.project.import_dir}"
    template_values = {
        "name": d.name,
        "user": user,
        "server": d.server,
        "out": d.out,
        "paths": paths,
        "layout": layout,
        "derived": d.derived,
        "grace": d.derived.timeouts.shutdown_grace,
        "cpu_quota": cpu_quota(d.spec.deploy.cpus),
        "memory_max": memory_max(d.spec.deploy.memory),
        "environment": [environment_value(k, v) for k, v in sorted(env.items())],
        "secret_credential": SECRET_CREDENTIAL,
        "app_exec": exec_line([f"{layout.venv}/bin/flaskprod", "serve"]),
        "release_exec": exec_line(release_argv(d, layout)) if d.spec.deploy.release_argv else None,
        "release_timeout": d.spec.deploy.release_timeout,
        "release_start_timeout": d.spec.deploy.release_timeout + RELEASE_START_MARGIN,
        # Flask's instance folder as the VM imports the app: in the copy of the project, or in the venv it installs.
        "instance_dir": d.instance.at(app_dir=layout.app_dir, venv=layout.venv),
        "nginx_check": exec_line([*nginx_args(paths), "-t", "-q"]),
        "nginx_exec": exec_line([*nginx_args(paths), "-g", "daemon off;"]),
        "kill": exec_word(layout.kill),
        "nginx_user": NGINX_USER,
        "privileged_port": min(port, https_port if certificate else port, metrics_port or port) < PRIVILEGED_PORTS,
        "listen": listen_address(host, port),
        "tls_listen": listen_address(host, https_port) if certificate else None,
        "metrics_listen": listen_address("127.0.0.1", metrics_port) if metrics_port else None,
        "tls": certificate,
        "tls_stand_in": [shell_words(c, indent="") for c in certificate.stand_in_commands()] if certificate else [],
        "tls_clear_stand_in": shlex.join(certificate.clear_stand_in_command()) if certificate else None,
        "tls_certonly": shell_words(certificate.certonly_command(d), indent="") if certificate else None,
        "tls_check": _tls_check(certificate, host, https_port, d.spec.monitoring.health_path) if certificate else None,
        "certbot_hook": CERTBOT_HOOK,
        "spec_acme_server": d.spec.tls.acme_server,
        "http_port": port,
        # Where the README's check reaches nginx from the VM itself.
        "check_address": listen_address(loopback_for(host), port),
        "check_host": d.probe_host("the README's check"),
        "health_path": d.spec.monitoring.health_path,
        "ready_path": d.spec.monitoring.ready_path,
        "requirements": d.project.requirements,
        "uwsgi": uwsgi_requirement(d),
        # The tools pip checks VCS URLs out with (git for `flaskprod @ git+https://...`), installed before it.
        "vcs": vcs,
        "vcs_packages": vcs_packages(vcs),
        # Secrets and local state stay behind, as from the images; excluded, what the VM has is not deleted.
        "rsync_copy": shell_words(
            [
                *("rsync", "-a", "--delete", "--chown=root:root", "--chmod=D755,F644"),
                *never_shipped(d),
                *("./", f"{layout.app_dir}/"),
            ],
            indent="",
        ),
        "static": static_on_vm(d, paths),
        "monitoring": "monitoring" in d.extras,
        "prometheus_conf_dir": PROMETHEUS_CONF_DIR,
        "prometheus_listen": PROMETHEUS_LISTEN,
        "prometheus_retention": prometheus_retention(d.spec),
        "alertmanager_listen": ALERTMANAGER_LISTEN,
        "alert_webhook": d.spec.monitoring.alert_webhook_url_file,
        "webhook_url_file": WEBHOOK_URL_FILE,
    }
    environment = _environment()
    files = {
        f"{d.name}.service": environment.get_template("systemd/app.service.j2").render(template_values),
        f"{paths.nginx_name}.service": environment.get_template("systemd/nginx.service.j2").render(template_values),
        f"{d.name}.sysusers.conf": environment.get_template("systemd/sysusers.conf.j2").render(template_values),
        "README.md": environment.get_template("systemd/README.md.j2").render(template_values),
    }
    files.update({f"nginx/{name}": text for name, text in nginx_files(d, paths).items()})
    if certificate:
        files[CERTBOT_HOOK] = certificate.hook_script()
    if "monitoring" in d.extras:
        files.update(monitoring_files(d))
    return files


def _tls_check(certificate: HostCertificate, host: str, port: int, path: str) -> str:
    """The README's check over HTTPS from the VM itself: the name resolved to nginx's address, as a client sends it."""
    name = certificate.names[0]
    url = f"https://{name}{'' if port == 443 else f':{port}'}{path}"
    address = loopback_for(host)
    address = f"[{address}]" if ":" in address else address
    return shlex.join(["curl", "--resolve", f"{name}:{port}:{address}", url])


def render_systemd(d: Deployment) -> dict[str, str]:
    """The units, nginx.conf, a sysusers.d entry and the install steps for /srv/<name> on a Debian VM."""
    return render_units(d, Layout.standard(d.name))
