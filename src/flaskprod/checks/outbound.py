"""The app's outbound calls that wait for their server without a limit: HTTP (FP-P019), and PostgreSQL connections
made without SQLAlchemy and with no statement timeout (FP-P020)."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from .context import walk

# requests' functions that send a request, on the module and on a Session; all wait forever without a timeout.
_REQUESTS_CALLS = frozenset({"get", "post", "put", "patch", "delete", "head", "options", "request"})


# Where psycopg2 and pg8000 open PostgreSQL connections: (module, name) as the module exports them. psycopg (3) is
# not among them: the request's deadline reaches its waits (runtime/interrupted_queries.py).
_CONNECTS = frozenset({
    ("psycopg2", "connect"),
    ("psycopg2.pool", "SimpleConnectionPool"),
    ("psycopg2.pool", "ThreadedConnectionPool"),
    ("pg8000", "connect"),
    ("pg8000.dbapi", "connect"),
    ("pg8000.native", "Connection"),
})  # fmt: skip
# The arguments that can carry server settings: psycopg2's libpq options, pg8000's startup parameters.
_SETTINGS_ARGUMENTS = frozenset({"options", "startup_params"})


def connections_without_statement_timeout(tree: ast.Module) -> Iterator[ast.Call]:
    """The calls in a module that open a PostgreSQL connection (or pool) with psycopg2 or pg8000 and set no
    statement timeout on it: none of its arguments names statement_timeout, and none could (a variable passed as
    options, **settings)."""
    bound = _imported_names(tree)
    for node in walk(tree):
        if isinstance(node, ast.Call) and _dotted(node.func) in bound and not _may_set_a_statement_timeout(node):
            yield node


def _imported_names(tree: ast.Module) -> set[str]:
    """The names that stand for one of _CONNECTS in a module, as it imported them: `psycopg2.connect`,
    `pool.ThreadedConnectionPool` after `from psycopg2 import pool`, `connect` after `from pg8000 import connect`."""
    modules = {module for module, _ in _CONNECTS}
    names: set[str] = set()
    for node in walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:  # import psycopg2.pool as pools: the module itself under another name
                    names.update(f"{alias.asname}.{n}" for m, n in _CONNECTS if m == alias.name)
                else:  # import psycopg2.pool binds psycopg2, through which every dotted path is reached
                    names.update(f"{m}.{n}" for m, n in _CONNECTS if m.split(".")[0] == alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                as_name = alias.asname or alias.name
                if (node.module, alias.name) in _CONNECTS:
                    names.add(as_name)
                elif f"{node.module}.{alias.name}" in modules:  # from psycopg2 import pool
                    names.update(f"{as_name}.{n}" for m, n in _CONNECTS if m == f"{node.module}.{alias.name}")
    return names


def _may_set_a_statement_timeout(call: ast.Call) -> bool:
    arguments = [*call.args, *(keyword.value for keyword in call.keywords)]
    if any(keyword.arg is None for keyword in call.keywords):
        return True  # **settings may carry one
    if any(keyword.arg in _SETTINGS_ARGUMENTS and not _is_literal(keyword.value) for keyword in call.keywords):
        return True  # options built elsewhere
    return any(
        isinstance(node, ast.Constant) and isinstance(node.value, str) and "statement_timeout" in node.value
        for argument in arguments
        for node in ast.walk(argument)
    )


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return False
    return True


def calls_without_timeout(tree: ast.Module) -> Iterator[ast.Call]:
    """The calls in a module that send an HTTP request with requests or urllib and wait for it without a limit."""
    names = _Names(tree)
    for node in walk(tree):
        if isinstance(node, ast.Call) and names.waits_forever(node):
            yield node


class _Names:
    """What a module's names stand for: requests and urllib.request, their functions, and requests Sessions."""

    def __init__(self, tree: ast.Module) -> None:
        self.requests: set[str] = set()  # requests, as imported
        self.urllib_request: set[str] = set()  # urllib.request, as imported (`import urllib.request` binds urllib)
        self.functions: set[str] = set()  # requests.get and the rest, imported by name
        self.urlopens: set[str] = set()  # urllib.request.urlopen, imported by name
        self.sessions: set[str] = set()  # names given a requests Session, anywhere in the module
        session_classes = {"Session"} if self._imports_from(tree, "requests", "Session") else set()
        for node in walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "requests":
                        self.requests.add(alias.asname or "requests")
                    elif alias.name == "urllib.request":
                        self.urllib_request.add(alias.asname or "urllib.request")
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    bound = alias.asname or alias.name
                    if node.module == "requests" and alias.name in _REQUESTS_CALLS:
                        self.functions.add(bound)
                    elif node.module == "urllib.request" and alias.name == "urlopen":
                        self.urlopens.add(bound)
                    elif node.module == "urllib" and alias.name == "request":
                        self.urllib_request.add(bound)
        for node in walk(tree):
            value, targets = _binding(node)
            if value is not None and self._makes_session(value, session_classes):
                self.sessions.update(targets)

    @staticmethod
    def _imports_from(tree: ast.Module, module: str, name: str) -> bool:
        return any(
            isinstance(node, ast.ImportFrom) and node.module == module and any(a.name == name for a in node.names)
            for node in walk(tree)
        )

    def _makes_session(self, value: ast.expr, session_classes: set[str]) -> bool:
        if not isinstance(value, ast.Call):
            return False
        func = value.func
        if isinstance(func, ast.Name):
            return func.id in session_classes
        return (
            isinstance(func, ast.Attribute)
            and func.attr in ("Session", "session")
            and _dotted(func.value) in self.requests
        )

    def waits_forever(self, call: ast.Call) -> bool:
        """Whether call sends a request that waits without a limit: no timeout, or timeout=None."""
        if not self._sends(call):
            return False
        if any(keyword.arg is None for keyword in call.keywords):
            return False  # **options may carry one
        timeout = next((keyword.value for keyword in call.keywords if keyword.arg == "timeout"), None)
        if timeout is None:
            # urlopen(url, data, timeout) takes it third by position.
            return not (self._is_urlopen(call) and len(call.args) >= 3)
        return isinstance(timeout, ast.Constant) and timeout.value is None

    def _sends(self, call: ast.Call) -> bool:
        func = call.func
        if isinstance(func, ast.Name):
            return func.id in self.functions or func.id in self.urlopens
        if not isinstance(func, ast.Attribute):
            return False
        owner = _dotted(func.value)
        if func.attr in _REQUESTS_CALLS and (owner in self.requests or owner in self.sessions):
            return True
        return self._is_urlopen(call)

    def _is_urlopen(self, call: ast.Call) -> bool:
        func = call.func
        if isinstance(func, ast.Name):
            return func.id in self.urlopens
        return isinstance(func, ast.Attribute) and func.attr == "urlopen" and _dotted(func.value) in self.urllib_request


def _binding(node: ast.AST) -> tuple[ast.expr | None, list[str]]:
    """(value, names bound to it) of `x = ...`, `self.x = ...` and `with ... as x`; (None, []) for anything else."""
    if isinstance(node, ast.Assign):
        return node.value, [name for target in node.targets if (name := _dotted(target))]
    if isinstance(node, ast.AnnAssign) and node.value is not None:
        name = _dotted(node.target)
        return node.value, [name] if name else []
    if isinstance(node, ast.withitem) and node.optional_vars is not None:
        name = _dotted(node.optional_vars)
        return node.context_expr, [name] if name else []
    return None, []


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for a chain of names and attributes; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""
