"""`flaskprod init`: find the app and write a commented flaskprod.toml that names it and explains the rest."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import discovery
from .errors import BuildError
from .project import project_name, project_version
from .render.writer import Change, write_files
from .spec import CONFIG_ENV, CONFIG_FILE, ENV_PREFIX, Spec, find_config_file, read_file_layer


@dataclass(frozen=True, kw_only=True)
class Detected:
    """What init found in the project, each value as flaskprod.toml will say it."""

    target: str
    name: str
    version: str
    requirements: str | None  # what the image installs the app's packages from
    # What each release runs before it takes requests: a Flask-Migrate app's upgrade, or the app's own command that
    # creates its tables (db.create_all()) and drops none; None: left to the user, as the comment below suggests.
    release_command: str | None
    release_comment: str  # why, beside the setting (or its commented line)
    suggested_release: str  # the commented line's command, when release_command is None


def detect(target: str | None, root: Path, environ: Mapping[str, str]) -> Detected:
    """Import the app named by target (or found in root) once, in a child interpreter, to learn its exact
    import string.

    The child sees flaskprod's defaults, as the file init writes will leave them: no FLASKPROD_* variable
    and no config file, so neither the flaskprod.toml being replaced nor a bad variable in the shell is
    blamed on the app.
    """
    from .servers.probe import probe_to_learn

    ref = discovery.resolve(target, root)
    env = {name: value for name, value in environ.items() if not name.startswith(ENV_PREFIX)}
    env[CONFIG_ENV] = os.devnull  # an empty config: Production(app) would otherwise read ./flaskprod.toml
    # The default bound, as every setting here: init writes the file the user would raise it in.
    info = probe_to_learn(
        ref, env, bound=Spec().proxy.ready_timeout, if_slow="write flaskprod.toml by hand: init takes no settings"
    )
    release_command, release_comment, suggested_release = _release(info.migrate_command, info.table_commands)
    return Detected(
        target=info.import_string,
        name=project_name(root, info.import_string),
        version=project_version(root) or Spec().app.version,  # none invented: what config shows without a file
        requirements=next((n for n in ("requirements.txt", "pyproject.toml") if (root / n).is_file()), None),
        release_command=release_command,
        release_comment=release_comment,
        suggested_release=suggested_release,
    )


def _release(migrate_command: str | None, table_commands: tuple[tuple[str, str], ...]) -> tuple[str | None, str, str]:
    """Detected's release_command, release_comment and suggested_release.

    A command that creates the tables (as check's FP-R002 read them, in the probe: app.cli's as `flask NAME`, then a
    script's click group, a manage.py FlaskGroup's, as `python manage.py NAME`) is safe on every deploy when it drops
    nothing, as create_all only adds what is missing; one that drops tables too (db.drop_all(), the Flask
    tutorial's schema.sql) would empty the database at each deploy, so it is only named, to run once by hand."""
    if migrate_command:
        return f"flask {migrate_command} upgrade", _MIGRATE, ""
    creates_only = next((command for command, drops in table_commands if not drops), None)
    if creates_only is not None:
        return creates_only, _CREATES, ""
    if table_commands:
        command, drops = table_commands[0]
        why = f"not set: it drops tables too ({drops}), so each deploy would empty the database: run it once by hand"
        return None, why, command
    return None, "run once per release, before it takes requests", "flask db upgrade"


_MIGRATE = "Flask-Migrate: before each release takes requests"
_CREATES = "db.create_all(), which only adds missing tables: before each release takes requests"


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """text as a TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _comment(text: str) -> str:
    """text fit for a TOML comment, which ends at a newline and may hold no other control character."""
    return "".join(char if char.isprintable() else "?" for char in text)


def render_config(found: Detected) -> str:
    """flaskprod.toml: what was found, set; the choices a deployment usually makes, commented with their defaults."""
    missing = (
        ""
        if found.requirements
        else "\n# No requirements.txt was found: `flaskprod build` needs one (pip freeze > requirements.txt)\n"
        "# or a pyproject.toml that installs the app.\n"
    )
    release = (
        f"release_command = {toml_string(found.release_command)}  # {_comment(found.release_comment)}"
        if found.release_command
        else f"# release_command = {toml_string(found.suggested_release)}  # {_comment(found.release_comment)}"
    )
    return f"""\
# flaskprod settings for {_comment(found.name)}, written by `flaskprod init`. Every setting, its default
# and its FLASKPROD_SECTION__NAME variable: `flaskprod config`, or docs/settings.md.
# Precedence: defaults < this file < FLASKPROD_* environment < command-line flags.
{missing}
[app]
target = {toml_string(found.target)}
name = {toml_string(found.name)}
version = {toml_string(found.version)}

[server]
# workers = "auto"     # CPUs (at least 2) with threads, from the cgroup limits, capped by memory
# threads = 12         # 1 = single-threaded (sync) workers
# timeout = 30         # the app answers 504 past it; nginx and the hard kill follow from it
# graceful_timeout = 30

[proxy]
# server_name = "localhost"   # the host names nginx answers to; others are closed (set your domain)
# max_body_size = "10M"       # nginx's client_max_body_size and Flask's MAX_CONTENT_LENGTH, unless the app sets its own

[database]
# url_env = "DATABASE_URL"    # SQLAlchemy's pool is sized from the workers within connection_budget
# connection_budget = 80

[deploy]
{release}
# image = "auto"              # {_comment(f"{found.name}:{found.version}")}
# replicas = 2
# cpus = 1.0                  # each container's limit; its workers are sized from it
# memory = "512M"
"""


def pyproject_settings(root: Path) -> Path | None:
    """The pyproject.toml whose [tool.flaskprod] flaskprod reads in root, which a flaskprod.toml would replace."""
    found = find_config_file(root)
    return found if found is not None and found.name == "pyproject.toml" else None


def init_project(target: str | None, root: Path, environ: Mapping[str, str], *, force: bool) -> tuple[Detected, Change]:
    """Write flaskprod.toml for the app; refuse, before importing it, to hide pyproject.toml's [tool.flaskprod],
    and, before writing, to replace a flaskprod.toml with other content, unless force."""
    pyproject = pyproject_settings(root)
    if pyproject is not None and not force:
        read_file_layer(pyproject)  # one that does not parse is named as such, not as settings to keep
        raise BuildError(
            f"{pyproject} already holds flaskprod's settings ([tool.flaskprod]): nothing was written; keep them "
            f"there, or pass --force to write {CONFIG_FILE}, which then replaces them"
        )
    found = detect(target, root, environ)
    hint = "edit it, or pass --force to replace it"
    (change,) = write_files(root, {CONFIG_FILE: render_config(found)}, force=force, hint=hint, elsewhere="")
    return found, change
