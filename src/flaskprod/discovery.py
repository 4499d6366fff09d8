"""Find the user's Flask app the way `flask --app` does, with one-line errors that say what to do."""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DiscoveryError, FlaskprodError

if TYPE_CHECKING:
    from flask import Flask

# Files tried, in order, when no app is named; the same as `flask run`.
DEFAULT_FILES = ("wsgi.py", "app.py")
HINT = "pass APP such as 'module:app' or 'module:create_app()'"


@dataclass(frozen=True, kw_only=True)
class AppRef:
    """Where the app lives: a module, an optional attribute or factory call, and the sys.path entry."""

    module: str
    name: str | None  # attribute or call such as "create_app()"; None = Flask's find_best_app
    path: str  # directory that must be on sys.path for the module to import

    @property
    def import_string(self) -> str:
        return self.module if self.name is None else f"{self.module}:{self.name}"


def _split(target: str) -> tuple[str, str | None]:
    # A colon followed by a slash belongs to a Windows path, as in Flask's own parsing.
    parts = re.split(r":(?![\\/])", target, maxsplit=1)
    name = parts[1].strip() if len(parts) > 1 else None
    return parts[0].strip(), name or None


def _ref_for(path_or_module: str, name: str | None, cwd: Path) -> AppRef:
    """Flask's prepare_import rules (a file path or dotted module, relative to cwd), without touching sys.path."""
    path = os.path.realpath(cwd / path_or_module)
    base, ext = os.path.splitext(path)
    if ext == ".py":
        path = base
    if os.path.basename(path) == "__init__":
        path = os.path.dirname(path)
    parts = []
    # Walk up out of the package so the module is imported by its full dotted name.
    while True:
        path, part = os.path.split(path)
        parts.append(part)
        if not os.path.exists(os.path.join(path, "__init__.py")):
            break
    return AppRef(module=".".join(reversed(parts)), name=name, path=path)


def resolve(target: str | None, cwd: str | os.PathLike[str] | None = None) -> AppRef:
    """The app reference for an import string, or wsgi.py then app.py in cwd; imports nothing."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    if target is not None and target.strip():
        module, name = _split(target)
        if not module:
            raise DiscoveryError(f"app {target!r} names no module; {HINT}")
        return _ref_for(module, name, base)
    for filename in DEFAULT_FILES:
        if (base / filename).is_file():
            return _ref_for(filename, None, base)
    tried = ", ".join(DEFAULT_FILES)
    raise DiscoveryError(f"no Flask app found: tried {tried} in {base}; {HINT}")


def _missing_is_target(exc: ImportError, module: str) -> bool:
    """True when the import failed because the module itself (or a parent package) does not exist."""
    missing = exc.name
    return missing is not None and (module == missing or module.startswith(missing + "."))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load(ref: AppRef) -> Flask:
    """Import ref's module and return its Flask app; every failure is one DiscoveryError line.

    A FlaskprodError raised by the app itself (a ConfigurationError for a weak SECRET_KEY) passes
    through unchanged; any other exception from the user's code becomes a DiscoveryError whose
    __cause__ keeps the traceback for whoever wants to print it.
    """
    from flask.cli import NoAppException, find_app_by_string, find_best_app

    if ref.path not in sys.path:
        sys.path.insert(0, ref.path)
    try:
        module = importlib.import_module(ref.module)
    except ImportError as exc:
        if _missing_is_target(exc, ref.module):
            raise DiscoveryError(f"could not import {ref.module!r}: {exc}") from None
        # A missing dependency: the one line names it, a traceback would add nothing.
        raise DiscoveryError(f"error while importing {ref.module!r}: {_one_line(exc)}") from None
    except FlaskprodError:
        raise
    except Exception as exc:
        raise DiscoveryError(f"error while importing {ref.module!r}: {_one_line(exc)}") from exc

    try:
        if ref.name is None:
            return find_best_app(module)
        attr = ref.name.split("(", 1)[0].strip()
        if attr.isidentifier() and not hasattr(module, attr):
            raise DiscoveryError(
                f"module {ref.module!r} has no attribute {attr!r}; Use 'module:name' to specify one."
            )
        return find_app_by_string(module, ref.name)
    except NoAppException as exc:
        raise DiscoveryError(" ".join(str(exc).split())) from None
    except FlaskprodError:
        raise
    except Exception as exc:
        raise DiscoveryError(f"error while loading {ref.import_string!r}: {_one_line(exc)}") from exc


def find_app(target: str | None, cwd: str | os.PathLike[str] | None = None) -> Flask:
    """resolve() then load(): the Flask app named by target, or found in cwd."""
    return load(resolve(target, cwd))
