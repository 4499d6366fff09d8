"""What the names of the project's modules hold, read without running them: the constants each module assigns at its
top level, and those it imports from the project's other modules (`from .keys import KEY`, `from settings import *`,
`keys.KEY` after `from . import keys`), so that SECRET_KEY = KEY is followed to the string wherever it is written."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .context import Context, ProjectFile, call_name, walk

# A name as read in one module: the module's scope, the name.
_Seen = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Assigned:
    """One assignment of a module-level name: the module (scope) it is written in, the name there, its value."""

    scope: Scope
    name: str
    line: int
    value: ast.expr

    @property
    def at(self) -> str:
        return self.scope.item.at(self.line)


def module_constants(tree: ast.Module) -> dict[str, list[tuple[int, ast.expr]]]:
    """The names tree assigns at its top level alone, with their values: what SECRET_KEY = KEY there can be. A name
    also assigned anywhere else (in a function, a loop, +=) is left out: its value where it is read is not written
    in one place."""
    top: dict[str, list[tuple[int, ast.expr]]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                top.setdefault(target.id, []).append((node.lineno, value))
    stores = _stores(tree)
    return {name: values for name, values in top.items() if stores.get(name) == len(values)}


def _stores(tree: ast.Module) -> dict[str, int]:
    stores: dict[str, int] = {}
    for inner in walk(tree):
        if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
            stores[inner.id] = stores.get(inner.id, 0) + 1
    return stores


class Scope:
    """A module's names: its own constants, and what its imports bind (found in the project's modules on use)."""

    def __init__(self, item: ProjectFile, tree: ast.Module, module: str | None, modules: Modules | None) -> None:
        self.item, self.tree, self._modules = item, tree, modules
        self.own = module_constants(tree)
        # local name -> (module, name in it); the name is None for `import a.b as x`, which binds the module.
        self._imports: dict[str, tuple[str, str | None]] = {}
        self._star: list[str] = []
        self._read_imports(tree, module)

    def _read_imports(self, tree: ast.Module, module: str | None) -> None:
        bound: dict[str, set[tuple[str, str | None]]] = {}
        package = None if module is None else module if self.item.path.name == "__init__.py" else _parent(module)
        for node in walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:  # import a.b binds a; import a.b as x binds x to a.b
                    name = alias.asname or alias.name.split(".")[0]
                    bound.setdefault(name, set()).add((alias.name if alias.asname else name, None))
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, package)
                if source is None:
                    continue
                for alias in node.names:
                    if alias.name == "*":
                        self._star.append(source)
                    else:
                        bound.setdefault(alias.asname or alias.name, set()).add((source, alias.name))
        stores = _stores(tree)
        # One import of the name and no other assignment: what it holds is the imported name's value.
        self._imports = {
            name: next(iter(targets)) for name, targets in bound.items() if len(targets) == 1 and name not in stores
        }

    def assigned(self, name: str, seen: _Seen = frozenset()) -> Iterator[Assigned]:
        """The assignments of name as this module reads it: its own, else the imported module's."""
        if (self.item.rel, name) in seen:
            return
        seen = seen | {(self.item.rel, name)}
        if name in self.own:
            for line, value in self.own[name]:
                yield Assigned(self, name, line, value)
            return
        target = self._imports.get(name)
        if target is not None:
            module, original = target
            scope = self._scope(module)
            if scope is not None and original is not None:
                yield from scope.assigned(original, seen)
            return
        for module in self._star:
            scope = self._scope(module)
            found = [] if scope is None or name.startswith("_") else list(scope.assigned(name, seen))
            if found:
                yield from found
                return

    def module(self, node: ast.expr) -> Scope | None:
        """The project module a name or dotted name reads (keys after `from . import keys`, myapp.keys after
        `import myapp.keys`), if any."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.insert(0, node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        target = self._imports.get(node.id)
        if target is None:
            return None
        module, original = target
        dotted = ".".join([module, *([original] if original is not None else []), *parts])
        return self._scope(dotted)

    def named(self, node: ast.expr) -> tuple[Scope, str] | None:
        """The module and name node reads: KEY, or keys.KEY through an imported module."""
        if isinstance(node, ast.Name):
            return self, node.id
        if isinstance(node, ast.Attribute):
            owner = self.module(node.value)
            return None if owner is None else (owner, node.attr)
        return None

    def values(self, node: ast.expr, seen: _Seen) -> Iterator[tuple[Assigned, _Seen]]:
        """The assignments node, a name, can take its value from, each with seen grown by it (for recursion)."""
        named = self.named(node)
        if named is None:
            return
        owner, name = named
        for assigned in owner.assigned(name):
            key = (assigned.scope.item.rel, assigned.name)
            if key not in seen:
                yield assigned, seen | {key}

    def _scope(self, module: str) -> Scope | None:
        return None if self._modules is None else self._modules.scope(module)


def _parent(module: str) -> str:
    return module.rpartition(".")[0]


def _absolute(node: ast.ImportFrom, package: str | None) -> str | None:
    """The module an ImportFrom names, made absolute against the importing module's package."""
    if node.level == 0:
        return node.module
    if package is None:
        return None
    base = package
    for _ in range(node.level - 1):
        base = _parent(base)
    if not base:
        return None
    return f"{base}.{node.module}" if node.module else base


class Modules:
    """The project's Python modules by dotted name, as the app's sys.path entry imports them; scopes made on use."""

    def __init__(self, context: Context) -> None:
        self._files: dict[str, tuple[ProjectFile, ast.Module]] = {}
        self._names: dict[str, str] = {}  # file rel -> module name
        base = Path(context.ref.path).resolve()
        for item, tree in context.python_files():
            try:
                parts = item.path.resolve().relative_to(base).with_suffix("").parts
            except ValueError:
                continue  # not importable from where the app is
            if parts and parts[-1] == "__init__":
                parts = parts[:-1]
            if parts and all(part.isidentifier() for part in parts):
                name = ".".join(parts)
                self._files[name] = (item, tree)
                self._names[item.rel] = name
        self._scopes: dict[str, Scope] = {}
        self._loose: dict[str, Scope] = {}

    def scope(self, module: str) -> Scope | None:
        if module not in self._scopes:
            found = self._files.get(module)
            if found is None:
                return None
            item, tree = found
            self._scopes[module] = Scope(item, tree, module, self)
        return self._scopes[module]

    def of(self, item: ProjectFile, tree: ast.Module) -> Scope:
        """The scope of a module of the project, or of a file from_pyfile runs (no module: absolute imports only)."""
        name = self._names.get(item.rel)
        if name is not None:
            scope = self.scope(name)
            if scope is not None and scope.tree is tree:
                return scope
        if item.rel not in self._loose:
            self._loose[item.rel] = Scope(item, tree, None, self)
        return self._loose[item.rel]


def modules(context: Context) -> Modules:
    """The project's modules, read once for all checks."""
    (found,) = context.once(_modules)
    return found


def _modules(context: Context) -> Iterator[Modules]:
    yield Modules(context)


def literals(node: ast.expr, scope: Scope, seen: _Seen = frozenset()) -> Iterator[str | bytes]:
    """The strings written in the source that node can evaluate to, as 'dev' in `env.get(...) or 'dev'`, and
    through a module constant (KEY = 'dev'; SECRET_KEY = KEY), also one imported from another module."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (str, bytes)) and node.value not in ("", b""):
            yield node.value
    elif isinstance(node, (ast.Name, ast.Attribute)):
        for assigned, inner in scope.values(node, seen):
            yield from literals(assigned.value, assigned.scope, inner)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            yield from literals(value, scope, seen)
    elif isinstance(node, ast.IfExp):
        yield from literals(node.body, scope, seen)
        yield from literals(node.orelse, scope, seen)
    # os.environ.get("SECRET_KEY", "dev"), os.getenv("SECRET_KEY", default="dev"): the default is the literal.
    elif isinstance(node, ast.Call) and call_name(node) in ("get", "getenv", "setdefault"):
        for value in node.args[1:2] + [kw.value for kw in node.keywords if kw.arg == "default"]:
            yield from literals(value, scope, seen)


def is_literal(node: ast.expr, scope: Scope, seen: _Seen = frozenset()) -> bool:
    """True when node is a string written in the source, itself or through module constants: no fallback."""
    if isinstance(node, (ast.Name, ast.Attribute)):
        values = list(scope.values(node, seen))
        return bool(values) and all(is_literal(a.value, a.scope, inner) for a, inner in values)
    return isinstance(node, ast.Constant)


def constant_through(node: ast.expr, scope: Scope) -> Assigned | None:
    """The module constant node takes a string written in the source through (KEY in SECRET_KEY = KEY), where it is
    assigned: in this module or in the one it is imported from."""
    for inner in ast.walk(node):
        if isinstance(inner, (ast.Name, ast.Attribute)):
            for assigned, seen in scope.values(inner, frozenset()):
                if any(literals(assigned.value, assigned.scope, seen)):
                    return assigned
    return None
