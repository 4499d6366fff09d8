"""The PostgreSQL `flaskprod build --with postgres` runs beside the app, as every target that offers it agrees.

Compose, Swarm and Kubernetes each shape its service their own way (compose.py, kubernetes.py) from what
is here: the image, where its data and password live, the settings it starts with, and what the app is
told to reach it. max_connections is every app process's pool at its fullest, and the app is told the
very workers and pool it was counted from, so the server's budget and the pools cannot drift apart.
"""

from __future__ import annotations

from ..errors import BuildError
from ..plural import counted
from ..sizing import ADMIN_CONNECTIONS, MIB, max_connections
from ..spec import parse_size
from .deployment import Deployment

VERSION = "16.15"
# Pinned to the release and the Alpine base: a rebuild of the tag gets security fixes, never a new major.
IMAGE = f"postgres:{VERSION}-alpine3.24"
PORT = 5432
# The image's own postgres user: it exists in /etc/passwd, so the entrypoint runs initdb as it unchanged.
UID = 70
# The image's volume; the cluster lives in a directory of its own inside it, because the volume's root
# belongs to whoever mounts it and initdb insists on owning its directory (mode 0700).
DATA_DIR = "/var/lib/postgresql/data"
PGDATA = f"{DATA_DIR}/pgdata"
# Where the server puts its socket and lock file, and the entrypoint its temporary files: with a
# read-only root filesystem both are scratch mounts (by a name Kubernetes can use).
SCRATCH_DIRS = {"run": "/var/run/postgresql", "tmp": "/tmp"}
# A fast shutdown (the image's STOPSIGNAL, SIGINT) ends sessions, then writes a checkpoint: a large
# one takes a while, and a kill before it ends means crash recovery at the next start.
STOP_SECONDS = 60
# Where parallel queries share their work: Docker's and Kubernetes' default 64 MB fails them ("could not resize
# shared memory segment"), so every target mounts a memory file system of shm_bytes there.
SHM_DIR = "/dev/shm"
# The Secret key (Kubernetes) holding the password the server is created with and the app logs in with.
PASSWORD_KEY = "POSTGRES_PASSWORD"


def check(d: Deployment) -> None:
    """Refuse what would let the app's pools outgrow max_connections."""
    if not d.spec.database.engine_options:
        raise BuildError(
            "--with postgres sizes the database for the pools the app is told, which reach SQLAlchemy through "
            "database.engine_options, and it is false; set it to true or build without postgres"
        )


def shm_bytes(d: Deployment) -> int:
    """A quarter of the memory limit, as shared_buffers is, never less than Docker's default (what is written
    there counts against the memory limit all the same)."""
    return max(64 * MIB, parse_size(d.spec.deploy.postgres_memory) // 4)


def role(d: Deployment) -> str:
    """The login role and the database the app uses: the image creates both, named after the app."""
    return d.name.replace("-", "_")


def app_processes(d: Deployment, containers: int) -> int:
    """App server processes holding a pool when containers app containers run at once."""
    return containers * d.derived.workers


def server_settings(d: Deployment, containers: int) -> dict[str, str]:
    """What the server starts with (`postgres -c name=value`): room for every pool of containers app
    containers at once, and shared_buffers a quarter of its memory limit, as PostgreSQL's docs advise."""
    memory = parse_size(d.spec.deploy.postgres_memory)
    return {
        "max_connections": str(max_connections(d.derived.pool, app_processes(d, containers))),
        "shared_buffers": f"{max(1, memory // 4 // MIB)}MB",
    }


def server_command(d: Deployment, containers: int) -> list[str]:
    """The image's command with the settings: its entrypoint passes them to the server, and to the
    temporary server it runs initdb's set-up on, so both start within the same limits."""
    args = ["postgres"]
    for name, value in server_settings(d, containers).items():
        args += ["-c", f"{name}={value}"]
    return args


def server_env(d: Deployment, password_file: str) -> dict[str, str]:
    """The image's environment: it creates the role and the database at first start, the password read
    from password_file (a mounted secret), never from a variable."""
    name = role(d)
    return {"POSTGRES_USER": name, "POSTGRES_DB": name, "POSTGRES_PASSWORD_FILE": password_file, "PGDATA": PGDATA}


def ready_command(d: Deployment) -> list[str]:
    """pg_isready over TCP: the image's set-up server listens on its socket only, so this passes once the
    real server accepts the app's connections, not while initdb's scripts run."""
    name = role(d)
    return ["pg_isready", "-h", "127.0.0.1", "-p", str(PORT), "-U", name, "-d", name]


def app_env(d: Deployment, *, host: str, password_file: str) -> dict[str, str]:
    """The app's side: the URL without its password and the file the password is in (the same secret the
    server was created with). The workers and pool max_connections was counted from are in every app
    container's environment already (Deployment.app_env)."""
    db = d.spec.database
    name = role(d)
    return {db.url_env: f"postgresql://{name}@{host}:{PORT}/{name}", db.password_file_env: password_file}


def budget_note(d: Deployment, containers: int) -> str:
    """max_connections and where it comes from, for the header of the file that sets it."""
    pool = d.derived.pool
    total = server_settings(d, containers)["max_connections"]
    return (
        f"PostgreSQL's max_connections {total}: {counted(containers, 'app container')} x "
        f"{counted(d.derived.workers, 'worker')} x "
        f"({pool.size} + {pool.overflow} overflow) pooled connections + {ADMIN_CONNECTIONS} for administration."
    )
