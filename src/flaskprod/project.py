"""What a project says about itself when flaskprod.toml does not: its name and version."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

FALLBACK_NAME = "flaskapp"
# Entry files that name nothing: the project is better named by its directory ("taskboard", not "wsgi").
_ENTRY_MODULES = {"wsgi", "app", "application", "main", "asgi", "server", "run"}


def pyproject_table(root: Path) -> Mapping[str, object]:
    """pyproject.toml's [project] table, or nothing: a broken pyproject is the build tool's to report."""
    try:
        with (root / "pyproject.toml").open("rb") as fh:
            project = tomllib.load(fh).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return project if isinstance(project, dict) else {}


def project_name(root: Path, target: str | None) -> str:
    """The name a project goes by, as Compose names a project by its directory: pyproject's [project] name,
    else the app's top-level package, else the directory."""
    declared = pyproject_table(root).get("name")
    if isinstance(declared, str) and declared.strip():
        return _cleaned(declared.strip())
    module = (target or "").split(":", 1)[0].split(".", 1)[0].strip()
    if not module or module in _ENTRY_MODULES or not module.isidentifier():
        module = root.resolve().name
    return _cleaned(module)


def project_version(root: Path) -> str | None:
    version = pyproject_table(root).get("version")
    return version if isinstance(version, str) and version.strip() else None


def _cleaned(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or FALLBACK_NAME
