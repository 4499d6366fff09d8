"""The two images every container target builds: the app under `flaskprod serve`, and nginx with its conf."""

from __future__ import annotations

from importlib import metadata

from .deployment import APP_UID, NGINX_CONF_DIR, NGINX_IMAGE, NGINX_PORT, NGINX_UID, STATIC_DIR, Deployment
from .nginx import TlsFiles, _environment

# Pinned in the image so a rebuild installs what was tested; this checkout's own when installed.
UWSGI_FALLBACK_VERSION = "2.0.31"
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


def uwsgi_version() -> str:
    try:
        return metadata.version("uwsgi")
    except metadata.PackageNotFoundError:
        return UWSGI_FALLBACK_VERSION


def dockerfile(d: Deployment, *, bind: str | None = None, behind_nginx: bool = True) -> str:
    """The app image; bind overrides where the server listens (a unix socket in a pod). Without nginx
    in front the app trusts no X-Forwarded-* header: a client could forge them."""
    return _environment().get_template("docker/Dockerfile.j2").render(
        name=d.name,
        out=d.out,
        image=d.image,
        python=d.spec.deploy.python,
        server=d.server,
        uwsgi_version=uwsgi_version(),
        requirements=d.project.requirements,
        includes=list(d.project.requirement_includes),
        uid=APP_UID,
        env=sorted(d.app_env(behind_nginx=behind_nginx, bind=bind).items()),
        port=d.app_port,
        grace=d.derived.timeouts.graceful,
    )


def nginx_dockerfile(d: Deployment, *, tls_port: int | None = None) -> str:
    """The nginx image; tls_port: it serves HTTPS there too, and its health check asks there."""
    return _environment().get_template("docker/nginx.Dockerfile.j2").render(
        name=d.name,
        out=d.out,
        nginx_image=d.nginx_image,
        base=NGINX_IMAGE,
        conf_dir=NGINX_CONF_DIR,
        static_dir=d.project.static_dir,
        static_target=STATIC_DIR,
        port=NGINX_PORT,
        tls_port=tls_port,
        uid=NGINX_UID,
        host=d.spec.proxy.server_name.split()[0],
        health_path=d.spec.monitoring.health_path,
    )


def image_files(
    d: Deployment, upstream: str, *, bind: str | None = None, tls: TlsFiles | None = None
) -> dict[str, str]:
    """Both images' files, nginx forwarding to upstream (host:port or unix:path), and serving HTTPS as tls says."""
    files = {
        "Dockerfile": dockerfile(d, bind=bind),
        "Dockerfile.dockerignore": DOCKERIGNORE,
        "nginx/Dockerfile": nginx_dockerfile(d, tls_port=tls.port if tls else None),
        "nginx/Dockerfile.dockerignore": DOCKERIGNORE,
    }
    files.update({f"nginx/{name}": text for name, text in d.nginx_files(upstream, tls=tls).items()})
    return files


def render_single(d: Deployment) -> dict[str, str]:
    """One image: the app server faces clients itself."""
    return {"Dockerfile": dockerfile(d, behind_nginx=False), "Dockerfile.dockerignore": DOCKERIGNORE}
