"""`flaskprod init`: find the app and write a commented flaskprod.toml that names it and explains the rest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import discovery
from .project import project_name, project_version
from .render.writer import Change, write_files
from .spec import CONFIG_FILE, Spec


@dataclass(frozen=True, kw_only=True)
class Detected:
    """What init found in the project, each value as flaskprod.toml will say it."""

    target: str
    name: str
    version: str
    requirements: str | None  # what the image installs the app's packages from


def detect(spec: Spec, root: Path, environ: Mapping[str, str]) -> Detected:
    """Import the app once, in a child interpreter, to learn its exact import string and static folder."""
    from .servers.probe import probe_to_learn

    ref = discovery.resolve(spec.app.target, root)
    info = probe_to_learn(ref, environ)
    return Detected(
        target=info.import_string,
        name=project_name(root, info.import_string),
        version=project_version(root) or "0.1.0",
        requirements=next((n for n in ("requirements.txt", "pyproject.toml") if (root / n).is_file()), None),
    )


def render_config(found: Detected) -> str:
    """flaskprod.toml: what was found, set; the choices a deployment usually makes, commented with their defaults."""
    missing = (
        ""
        if found.requirements
        else "\n# No requirements.txt was found: `flaskprod build` needs one (pip freeze > requirements.txt)\n"
        "# or a pyproject.toml that installs the app.\n"
    )
    return f"""\
# flaskprod settings for {found.name}, written by `flaskprod init`. Every setting, its default
# and its FLASKPROD_SECTION__NAME variable: `flaskprod config`, or docs/settings.md.
# Precedence: defaults < this file < FLASKPROD_* environment < command-line flags.
{missing}
[app]
target = "{found.target}"
name = "{found.name}"
version = "{found.version}"

[server]
# workers = "auto"     # CPUs (at least 2) with threads, from the cgroup limits, capped by memory
# threads = 12         # 1 = single-threaded (sync) workers
# timeout = 30         # the app answers 504 past it; nginx and the hard kill follow from it
# graceful_timeout = 30

[proxy]
# server_name = "localhost"   # the host names nginx answers to; others are closed (set your domain)
# max_body_size = "10M"       # nginx's client_max_body_size and Flask's MAX_CONTENT_LENGTH

[database]
# url_env = "DATABASE_URL"    # SQLAlchemy's pool is sized from the workers within connection_budget
# connection_budget = 80

[deploy]
# image = "auto"              # {found.name}:{found.version}
# replicas = 2
# cpus = 1.0                  # each container's limit; its workers are sized from it
# memory = "512M"
"""


def init_project(
    spec: Spec, root: Path, environ: Mapping[str, str], *, force: bool = False, dry_run: bool = False
) -> tuple[Detected, Change]:
    found = detect(spec, root, environ)
    hint = "edit it, or pass --force to replace it"
    (change,) = write_files(root, {CONFIG_FILE: render_config(found)}, force=force, dry_run=dry_run, hint=hint)
    return found, change
