"""The two images every container target builds: the app under `flaskprod serve`, and nginx with its conf."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from importlib import metadata

from ..errors import BuildError
from .deployment import APP_DIR, APP_UID, IMAGE_VENV, NGINX_CONF_DIR, NGINX_IMAGE, NGINX_PORT, NGINX_UID, Deployment
from .nginx import TlsFiles, _environment
from .requirements import SSH_PORT, SshHost, canonical, names_installed, ssh_hosts_installed, vcs_installed

# Pinned in the image so a rebuild installs what was tested; this checkout's own when installed.
UWSGI_FALLBACK_VERSION = "2.0.31"
# The Debian package with each VCS tool pip runs for a git+, hg+ or svn+ URL. Debian 12 has no `bzr` command, only
# Breezy's `brz` (its bzr package is an empty transitional one), so a bzr+ URL is refused.
VCS_PACKAGES = {"git": "git", "hg": "mercurial", "svn": "subversion"}
# What git runs for a git+ssh:// URL (`ssh`), with ssh-keyscan, which reads the hosts' keys into known_hosts.
SSH_PACKAGES = ("openssh-client",)
# Lends `docker build` the builder's SSH agent under BuildKit's default id, which RUN --mount=type=ssh mounts.
SSH_BUILD_FLAG = "--ssh default"
# What uWSGI's build needs, and tini, the uWSGI image's PID 1.
UWSGI_BUILD_PACKAGES = ("gcc", "libc6-dev", "tini")
# Never sent to the build: caches, local state, secrets, and the deployment files themselves.
DOCKERIGNORE = """\
# Written by `flaskprod build`: what the image never needs.
.git
.gitignore
.venv
venv
env
**/__pycache__
**/*.py[cod]
.pytest_cache
.mypy_cache
.ruff_cache
.flaskprod
instance
*.db
*.sqlite
*.sqlite3
.env
.env.*
*.pem
*.key
node_modules
dist
build
*.egg-info
Dockerfile*
compose*.y*ml
docker-compose*.y*ml
"""


_PLAIN = re.compile(r"[A-Za-z0-9_./:@,+=-]*")


def env_value(value: str) -> str:
    """A value as Dockerfile ENV reads it back: quoted when Docker would otherwise split it at a space or
    strip its quotes (`create_app('prod')` would run as `create_app(prod)`)."""
    if _PLAIN.fullmatch(value):
        return value
    return '"' + re.sub(r'(["\\$])', r"\\\1", value) + '"'


def copy_instruction(source: str, target: str) -> str:
    """COPY, in its JSON form when a path holds a space, which the plain form would split."""
    if any(ch.isspace() or ch in "\"'" for ch in source + target):
        return f"COPY {json.dumps([source, target])}"
    return f"COPY {source} {target}"


def app_ignores(d: Deployment) -> str:
    """The app image's .dockerignore: DOCKERIGNORE, and the folders `flaskprod build` writes (pip installing the
    project would find them a second top-level package), and the app's instance folder where it is not the root's
    instance/ (local data and secrets), but never a static folder the app serves (dist/)."""
    # deploy/ holds every target's folder by default; another --out is left out alone.
    written = ["deploy"] if d.out.split("/", 1)[0] == "deploy" else [d.out]
    if d.instance.base == "project" and d.instance.path != "instance":
        written.append(d.instance.path)
    kept = [f"!{mount.folder}" for mount in d.project.static]
    header = "# What flaskprod build writes, and the static folders the app serves:\n"
    return DOCKERIGNORE + header + "".join(f"{line}\n" for line in [*written, *kept])


def nginx_ignores(d: Deployment) -> str:
    """The nginx image's .dockerignore: everything but what it copies (its conf, the static folders)."""
    kept = [f"{d.out}/nginx", *(mount.folder for mount in d.project.static)]
    header = "# Written by `flaskprod build`: the nginx image copies its conf and the static folders, nothing else.\n"
    return header + "*\n" + "".join(f"!{path}\n" for path in kept)


def never_shipped(d: Deployment) -> list[str]:
    """The app image's ignore patterns as rsync filters, for a VM's copy of the project to leave out what the
    image does: `**/x` matches at any depth (a bare name, for rsync), any other from the project root (`/x`);
    an exception (`!x`) is an include, placed first, since rsync takes the first filter that matches."""
    lines = [line.strip() for line in app_ignores(d).splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    ignored = [p for p in patterns if not p.startswith("!")]
    kept = [p[1:] for p in patterns if p.startswith("!")]
    # rsync never enters a folder it excluded, where Docker looks inside for an exception (build/static): the
    # folder (and each between it and the exception) is let in, and what else it holds kept out, after every
    # exception's own include and deepest first.
    entered: set[str] = set()
    for path in kept:
        parents = ["/".join(path.split("/")[:depth]) for depth in range(1, path.count("/") + 1)]
        left_out = [i for i, folder in enumerate(parents) if any(_ignores(p, folder) for p in ignored)]
        entered.update(parents[left_out[0] :] if left_out else [])
    folders = sorted(entered, key=lambda folder: (-folder.count("/"), folder))
    return [
        *(f"--include=/{path}/***" for path in kept),
        *(rule for folder in folders for rule in (f"--include=/{folder}/", f"--exclude=/{folder}/*")),
        *(f"--exclude={_rsync(p)}" for p in ignored),
    ]


def _rsync(pattern: str) -> str:
    return pattern.removeprefix("**/") if pattern.startswith("**/") else f"/{pattern}"


def _ignores(pattern: str, path: str) -> bool:
    """Whether a .dockerignore pattern matches path itself (relative, POSIX), as Docker matches: * within one part."""
    if pattern.startswith("**/"):
        pattern, path = pattern[3:], path.rsplit("/", 1)[-1]
    wanted, parts = pattern.split("/"), path.split("/")
    return len(wanted) == len(parts) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True))


def uwsgi_version() -> str:
    try:
        return metadata.version("uwsgi")
    except metadata.PackageNotFoundError:
        return UWSGI_FALLBACK_VERSION


def uwsgi_requirement(d: Deployment) -> str | None:
    """The uWSGI the image (and a VM) installs for server uwsgi, on its own before the requirements: None when
    they install uWSGI themselves (pip refuses two pins of one package) or the server is Gunicorn."""
    if d.server != "uwsgi":
        return None
    names = names_installed(d.project.root, d.project.requirements)
    if names is not None and canonical("uwsgi") in names:
        return None
    return f"uwsgi=={uwsgi_version()}"


def vcs_tools(d: Deployment) -> list[str]:
    """The VCS tools pip runs to install the requirements (git for `flaskprod @ git+https://...`), which the image
    installs in its build stage and a VM before pip; a BuildError for bzr+, which neither can check out."""
    tools = sorted(vcs_installed(d.project.root, d.project.requirements))
    if "bzr" in tools:
        raise BuildError(
            f"{d.project.requirements or 'pyproject.toml'} installs from a bzr+ URL, which pip checks out with "
            "`bzr`, and Debian 12 (the images' base, and the VM's) has none, only Breezy's `brz`: name the "
            "package with a version pip can download, or a git URL"
        )
    return tools


def vcs_packages(tools: list[str]) -> list[str]:
    """The Debian packages that have these VCS tools."""
    return [VCS_PACKAGES[tool] for tool in tools]


def ssh_hosts(d: Deployment) -> list[SshHost]:
    """The hosts pip checks the requirements out from over SSH (github.com for `x @ git+ssh://git@github.com/...`):
    the image's build reaches them with the builder's SSH agent, never a key of its own."""
    return sorted(ssh_hosts_installed(d.project.root, d.project.requirements))


def docker_build_flags(d: Deployment) -> str:
    """What `docker build` needs beyond -f and -t, with a space before it: the SSH agent for git+ssh:// URLs."""
    return f" {SSH_BUILD_FLAG}" if ssh_hosts(d) else ""


def keyscan_args(host: SshHost) -> str:
    """ssh-keyscan's arguments for a host: its port only when not 22, as known_hosts then names it [host]:port."""
    name, port = host
    return shlex.join([*(["-p", str(port)] if port != SSH_PORT else []), name])


def toml_module(python: str) -> str:
    """The TOML reader the image's Python has: tomllib from 3.11, else the tomli that pip vendors."""
    major, minor = (int(part) for part in python.split(".")[:2])
    return "tomllib" if (major, minor) >= (3, 11) else "pip._vendor.tomli"


def dockerfile(d: Deployment, *, bind: str | None = None, behind_nginx: bool = True) -> str:
    """The app image; bind overrides where the server listens (a unix socket in a pod). Without nginx
    in front the app trusts no X-Forwarded-* header: a client could forge them."""
    vcs = vcs_tools(d)
    over_ssh = ssh_hosts(d)
    return _environment().get_template("docker/Dockerfile.j2").render(
        name=d.name,
        out=d.out,
        image=d.image,
        python=d.spec.deploy.python,
        server=d.server,
        uwsgi=uwsgi_requirement(d),
        build_packages=[
            *(UWSGI_BUILD_PACKAGES if d.server == "uwsgi" else ()),
            *vcs_packages(vcs),
            *(SSH_PACKAGES if over_ssh else ()),
        ],
        vcs=vcs,
        build_flags=docker_build_flags(d),
        ssh_hosts=[host for host, _ in over_ssh],
        keyscans=[keyscan_args(host) for host in over_ssh],
        # pip's RUN alone gets the agent: the socket is mounted for it, in no layer.
        ssh_mount="--mount=type=ssh " if over_ssh else "",
        workers=d.derived.workers,
        workers_set=d.spec.server.workers != "auto",
        cpus=f"{d.spec.deploy.cpus:g}",
        memory=d.spec.deploy.memory,
        toml_module=toml_module(d.spec.deploy.python),
        requirements=d.project.requirements,
        includes=list(d.project.requirement_includes),
        uid=APP_UID,
        venv=IMAGE_VENV,
        instance_dir=d.instance_dir,
        env=[(key, env_value(value)) for key, value in sorted(image_env(d, behind_nginx, bind).items())],
        port=d.app_port,
        grace=d.derived.timeouts.graceful,
    )


def image_env(d: Deployment, behind_nginx: bool, bind: str | None) -> dict[str, str]:
    """The app image's environment: the app's settings, and the project folder its package is imported from (a src
    layout the image does not install), which only the builder's PYTHONPATH or editable install put on sys.path."""
    env = d.app_env(behind_nginx=behind_nginx, bind=bind)
    if d.project.import_dir:
        env["PYTHONPATH"] = f"{APP_DIR}/{d.project.import_dir}"
    return env


def nginx_dockerfile(d: Deployment, *, tls_port: int | None = None) -> str:
    """The nginx image; tls_port: it serves HTTPS there too, and its health check asks there."""
    return _environment().get_template("docker/nginx.Dockerfile.j2").render(
        name=d.name,
        out=d.out,
        nginx_image=d.nginx_image,
        base=NGINX_IMAGE,
        conf_dir=NGINX_CONF_DIR,
        static_copies=[
            copy_instruction(mount.folder, baked.folder)
            for mount, baked in zip(d.project.static, d.image_static, strict=True)
        ],
        port=NGINX_PORT,
        tls_port=tls_port,
        uid=NGINX_UID,
        host=d.probe_host("the nginx image's health check"),
        health_path=d.spec.monitoring.health_path,
    )


def image_files(
    d: Deployment, upstream: str, *, bind: str | None = None, tls: TlsFiles | None = None, resolver: str | None = None
) -> dict[str, str]:
    """Both images' files, nginx forwarding to upstream (host:port or unix:path), and serving HTTPS as tls says;
    resolver, the DNS server nginx asks for upstream's name at each request's time (NginxContext.resolver)."""
    files = {
        "Dockerfile": dockerfile(d, bind=bind),
        "Dockerfile.dockerignore": app_ignores(d),
        "nginx/Dockerfile": nginx_dockerfile(d, tls_port=tls.port if tls else None),
        "nginx/Dockerfile.dockerignore": nginx_ignores(d),
    }
    files.update({f"nginx/{name}": text for name, text in d.nginx_files(upstream, tls=tls, resolver=resolver).items()})
    return files


def render_single(d: Deployment) -> dict[str, str]:
    """One image: the app server faces clients itself."""
    return {"Dockerfile": dockerfile(d, behind_nginx=False), "Dockerfile.dockerignore": app_ignores(d)}
