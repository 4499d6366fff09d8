"""Where the project's source makes an SQLAlchemy engine the loaded app holds: the create_engine() call's line."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .context import Context, ProjectFile, call_name, walk

_MAKERS = frozenset({"create_engine", "create_async_engine"})


def where_made(context: Context, url: Any) -> str | None:
    """file:line of the call in the project's imported modules that made the engine for url (a sqlalchemy URL),
    or None when no call, or more than one, could have: a call whose URL is written in the source (a string, or
    a module-level name assigned one) made it when that URL is url; one whose URL is not written may have."""
    exact: list[str] = []
    possible: list[str] = []
    for item, call, written in _engine_calls(context):
        if written is None:
            possible.append(item.at(call.lineno))
        elif _same_url(written, url):
            exact.append(item.at(call.lineno))
    if exact:
        return exact[0] if len(exact) == 1 else None
    return possible[0] if len(possible) == 1 else None


def _engine_calls(context: Context) -> Iterator[tuple[ProjectFile, ast.Call, str | None]]:
    """(file, call, URL written in the source or None) of each engine-making call in a module this process
    imported: a script nobody imports made none of the app's engines."""
    files = (getattr(module, "__file__", None) for module in list(sys.modules.values()))
    imported = {Path(path).resolve() for path in files if path}
    for item, tree in context.python_files():
        if item.path.resolve() not in imported:
            continue
        for node in walk(tree):
            if isinstance(node, ast.Call) and call_name(node) in _MAKERS:
                yield item, node, _written_url(node, tree)


def _written_url(call: ast.Call, tree: ast.Module) -> str | None:
    url = call.args[0] if call.args else next((kw.value for kw in call.keywords if kw.arg == "url"), None)
    if isinstance(url, ast.Name):  # URL = "postgresql://..." at module level, then create_engine(URL)
        assigned = [
            stmt.value
            for stmt in tree.body
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == url.id for t in stmt.targets)
        ]
        url = assigned[-1] if assigned else None
    return url.value if isinstance(url, ast.Constant) and isinstance(url.value, str) else None


def _same_url(written: str, url: Any) -> bool:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return bool(make_url(written) == url)
    except ArgumentError:
        return False
