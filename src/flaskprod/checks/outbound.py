"""The app's outbound HTTP calls that wait for their server without a limit (FP-P019)."""

from __future__ import annotations

import ast
from collections.abc import Iterator

# requests' functions that send a request, on the module and on a Session; all wait forever without a timeout.
_REQUESTS_CALLS = frozenset({"get", "post", "put", "patch", "delete", "head", "options", "request"})


def calls_without_timeout(tree: ast.Module) -> Iterator[ast.Call]:
    """The calls in a module that send an HTTP request with requests or urllib and wait for it without a limit."""
    names = _Names(tree)
    for node in ast.walk(tree):
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
        for node in ast.walk(tree):
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
        for node in ast.walk(tree):
            value, targets = _binding(node)
            if value is not None and self._makes_session(value, session_classes):
                self.sessions.update(targets)

    @staticmethod
    def _imports_from(tree: ast.Module, module: str, name: str) -> bool:
        return any(
            isinstance(node, ast.ImportFrom) and node.module == module and any(a.name == name for a in node.names)
            for node in ast.walk(tree)
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
