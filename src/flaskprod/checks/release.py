"""Checks on what a deploy runs before the new code takes requests: deploy.release_command."""

from __future__ import annotations

import ast
import inspect
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from flask import Flask

from .context import Context, call_name, is_main_guard, walk
from .registry import WARNING, Found, app_check


@app_check(
    "FP-R001",
    WARNING,
    "the app migrates its database with Flask-Migrate, and deploy.release_command is unset: `flaskprod up`, "
    "`deploy` and every built target start the new code on the old schema, which nothing migrates: /readyz "
    "answers 503 until someone runs the migration, so `up` never turns ready and no target takes traffic "
    "(with database.migration_check = false, each request to a new table answers 500 instead)",
    hint='set deploy.release_command = "flask db upgrade" in flaskprod.toml\'s [deploy]: each deploy runs it once, '
    "before the new release takes requests",
)
def migrations_not_run(app: Flask, context: Context) -> Iterator[Found]:
    # Flask-Migrate registers itself as app.extensions["migrate"].
    if "migrate" in app.extensions and not context.spec.deploy.release_argv:
        yield Found(obj=context.app_label)


@app_check(
    "FP-R002",
    WARNING,
    "the app's Flask-SQLAlchemy models map tables, it has no Flask-Migrate, and deploy.release_command is unset: "
    "/readyz answers 503 while those tables are missing from the database, so `flaskprod up` never turns ready and "
    "no built target takes traffic until the app's command that creates them (db.create_all()) runs",
    hint="set deploy.release_command in flaskprod.toml's [deploy] to the app's command that calls db.create_all() "
    "when it is safe on every deploy (create_all only adds what is missing); a command that drops tables too: "
    "run it once by hand before the first deploy instead; or set database.migration_check = false when the app "
    "makes its tables itself once serving",
)
def tables_never_created(app: Flask, context: Context) -> Iterator[Found]:
    ext = app.extensions.get("sqlalchemy")
    if ext is None or "migrate" in app.extensions or context.spec.deploy.release_argv:
        return
    if not context.effective_spec.database.migration_check:
        return  # the app said it makes its tables itself: readiness does not wait for them
    if not any(metadata.tables for metadata in getattr(ext, "metadatas", {}).values()):
        return  # as runtime/migrations.tables_check: no mapped table, nothing waited for
    reached: set[tuple[Path, int]] = set()
    commands = list(table_commands(app, context.root, reached))
    if _creates_elsewhere(context, reached):
        return  # the app makes its tables itself as it starts (create_all in its factory, at import)
    if not commands:
        yield Found(obj=context.app_label)
        return
    for command in commands:
        yield Found(obj=command.where, text=_command_text(command), hint=_command_hint(command))


def _command_text(command: TableCommand) -> str:
    return (
        f"the app's tables are missing until `{command.invocation}` runs (it calls db.create_all()), and "
        "deploy.release_command is unset: /readyz answers 503 until then, so `flaskprod up` never turns ready and no "
        "built target takes traffic"
    )


def _command_hint(command: TableCommand) -> str:
    if command.drops:
        return (
            f"run `{command.invocation}` once by hand against the production database before the first deploy; do "
            f"not make it deploy.release_command: it drops tables too ({command.drops}), so each deploy would empty "
            "the database"
        )
    return (
        f'set deploy.release_command = "{command.invocation}" in flaskprod.toml\'s [deploy]: db.create_all() only '
        "creates the tables that are missing, so each deploy may run it before the new release takes requests"
    )


@dataclass(frozen=True, kw_only=True)
class TableCommand:
    """One of the app's CLI commands that calls db.create_all(), read from its source."""

    invocation: str  # as it is run: "flask init-db", "flask admin create-tables"
    where: str  # its function, as a message names it: "app.py:14"
    drops: str  # what drops tables on its way ("db.drop_all()", "DROP TABLE in schema.sql"); "" when nothing does


def table_commands(app: Flask, root: Path, reached: set[tuple[Path, int]]) -> Iterator[TableCommand]:
    """The app's click commands (app.cli's, blueprints' among them) whose function, or a function of the project it
    calls by name, calls create_all(); each with what on its way drops tables. reached gets the (file, def line) of
    every project function read from a command."""
    for words, command in _commands(app.cli, ("flask",)):
        if command.callback is None:
            continue
        function = inspect.unwrap(command.callback)  # under with_appcontext and click's pass_* decorators
        found = _Reading(root)
        found.read(function, depth=0)
        reached |= found.definitions
        if found.creates:
            where = _where(function, root)
            yield TableCommand(invocation=" ".join(words), where=where, drops=", ".join(found.drops))


def _commands(group: click.Group, words: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*words, name))
        else:
            yield (*words, name), command


# A SQL statement that removes what create_all made: the Flask tutorial's schema.sql begins with DROP TABLE.
_DROP = re.compile(r"\bDROP\s+(?:TABLE|SCHEMA|DATABASE)\b", re.IGNORECASE)
_CALLS_FOLLOWED = 4  # how deep a command's helpers are read (init_db_command -> init_db -> ...)


class _Reading:
    """What a command's function and the project functions it calls do to the tables."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.creates = False
        self.drops: list[str] = []
        self._read: set[types.CodeType] = set()
        self.definitions: set[tuple[Path, int]] = set()  # (resolved file, def line) of each function read

    def read(self, function: object, depth: int) -> None:
        code = getattr(function, "__code__", None)
        if not isinstance(function, types.FunctionType) or code is None or code in self._read:
            return
        self._read.add(code)
        node = _definition(function, self.root)
        if node is None:
            return  # not the project's source (a library's command), or not found in it
        self.definitions.add((Path(function.__code__.co_filename).resolve(), node.lineno))
        for child in ast.walk(node):
            if isinstance(child, ast.Call):
                self._call(child, function, depth)
            elif isinstance(child, ast.Constant) and isinstance(child.value, str):
                self._string(child.value, function)

    def _call(self, call: ast.Call, function: types.FunctionType, depth: int) -> None:
        name = call_name(call)
        if name == "create_all":
            self.creates = True
        elif name == "drop_all":
            self._drop("drop_all()")
        elif depth < _CALLS_FOLLOWED:
            self.read(_called(call.func, function), depth + 1)

    def _string(self, value: str, function: types.FunctionType) -> None:
        if _DROP.search(value):
            self._drop(_DROP.search(value)[0].upper())  # type: ignore[index]  # searched just above
        elif value.endswith(".sql") and "\n" not in value:
            for folder in (Path(function.__code__.co_filename).parent, self.root):
                script = folder / value
                if script.is_file() and _DROP.search(script.read_text(errors="replace")):
                    self._drop(f"DROP in {value}")
                    return

    def _drop(self, what: str) -> None:
        if what not in self.drops:
            self.drops.append(what)


def _called(func: ast.expr, caller: types.FunctionType) -> object:
    """The function a call names, as the caller's module binds it: init_db() or models.init_db()."""
    if isinstance(func, ast.Name):
        return caller.__globals__.get(func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        module = caller.__globals__.get(func.value.id)
        return getattr(module, func.attr, None) if isinstance(module, types.ModuleType) else None
    return None


def _source_path(function: types.FunctionType, root: Path) -> Path | None:
    path = Path(function.__code__.co_filename)
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    return path if path.suffix == ".py" and path.is_file() else None


def _definition(function: types.FunctionType, root: Path) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    path = _source_path(function, root)
    if path is None:
        return None
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    first = function.__code__.co_firstlineno  # the first decorator's line, or the def's
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name == function.__name__
            and min([node.lineno, *(d.lineno for d in node.decorator_list)]) == first
        ):
            return node
    return None


def _where(function: types.FunctionType, root: Path) -> str:
    path = _source_path(function, root)
    if path is None:
        return function.__qualname__
    return f"{path.resolve().relative_to(root.resolve()).as_posix()}:{function.__code__.co_firstlineno}"


def _creates_elsewhere(context: Context, reached: set[tuple[Path, int]]) -> bool:
    """Whether a project module calls create_all() outside the functions the app's commands reach and outside a
    script's `if __name__ == "__main__":`: in its app factory or at import, so the app makes its tables as it starts
    (the example taskboard's create_schema())."""
    for item, tree in context.python_files():
        calls = [node for node in walk(tree) if isinstance(node, ast.Call) and call_name(node) == "create_all"]
        if not calls:
            continue
        defs = [node for node in walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        by_hand = [node for node in walk(tree) if isinstance(node, ast.If) and is_main_guard(node.test)]
        path = item.path.resolve()
        for call in calls:
            if any(_within(call, node) for node in by_hand):
                continue
            enclosing = [node for node in defs if _within(call, node)]
            innermost = max(enclosing, key=lambda node: node.lineno, default=None)
            if innermost is None or (path, innermost.lineno) not in reached:
                return True
    return False


def _within(inner: ast.AST, outer: ast.stmt) -> bool:
    line = getattr(inner, "lineno", 0)
    return outer.lineno <= line <= (outer.end_lineno or outer.lineno)
