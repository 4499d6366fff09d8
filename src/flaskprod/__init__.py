"""flaskprod: take a Flask app to production the way the guide describes, correct by construction."""

from __future__ import annotations

import importlib

# typing.TYPE_CHECKING without importing typing (8 ms): mypy and pyright read a TYPE_CHECKING of its own as true.
TYPE_CHECKING = False
if TYPE_CHECKING:  # what the names below are, for type checkers; imported on first use at run time
    from typing import Any

    from .errors import ConfigurationError, DiscoveryError, FlaskprodError, ServerError, SpecError
    from .runtime import Production
    from .runtime.db import pool_options
    from .spec import Spec, load_spec

    version: str

# Each public name and the module that holds it, imported on first use (PEP 562): `import flaskprod`, which every
# command's first line does, loads neither Flask nor the runtime, so the command's own handling of Ctrl-C (exit
# 130, no traceback) is in place in milliseconds, and a child that only needs the CLI starts faster.
_LAZY = {
    "ConfigurationError": ".errors",
    "DiscoveryError": ".errors",
    "FlaskprodError": ".errors",
    "ServerError": ".errors",
    "SpecError": ".errors",
    "Production": ".runtime",
    "pool_options": ".runtime.db",
    "Spec": ".spec",
    "load_spec": ".spec",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("flaskprod")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0"


def __getattr__(name: str) -> Any:
    if name == "version":
        value: Any = _version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "ConfigurationError",
    "DiscoveryError",
    "FlaskprodError",
    "Production",
    "ServerError",
    "Spec",
    "SpecError",
    "load_spec",
    "pool_options",
    "version",
]
