"""Checks on what a deploy runs before the new code takes requests: deploy.release_command."""

from __future__ import annotations

import ast
import functools
import inspect
import re
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    if not waits_for_created_tables(app) or context.spec.deploy.release_argv:
        return
    if not context.effective_spec.database.migration_check:
        return  # the app said it makes its tables itself: readiness does not wait for them
    reached: set[tuple[Path, int]] = set()
    commands = list(table_commands(app, context.root, reached))
    handlers = list(serving_creators(app, context.root, reached))
    at_start, scripts = _creates_elsewhere(context, reached)
    if at_start:
        return  # the app makes its tables itself as it starts (create_all in its factory, at import)
    if handlers:
        for handler in handlers:
            yield Found(obj=handler.where, text=_handler_text(handler), hint=_handler_hint(commands))
        return
    if not commands and not scripts:
        yield Found(obj=context.app_label)
        return
    for script in scripts:
        yield Found(obj=script.where, text=_script_text(script), hint=_script_hint(script))
    for command in commands:
        yield Found(obj=command.where, text=_command_text(command), hint=_command_hint(command))


def waits_for_created_tables(app: Flask) -> bool:
    """Whether the app's tables are made by no migration while readiness waits for them: its Flask-SQLAlchemy
    models map tables (as runtime/migrations.tables_check reads them), and it has no Flask-Migrate."""
    ext = app.extensions.get("sqlalchemy")
    if ext is None or "migrate" in app.extensions:
        return False
    return any(metadata.tables for metadata in getattr(ext, "metadatas", {}).values())


def _handler_text(handler: ServingCreator) -> str:
    return (
        f"`{handler.name}` ({handler.kind}) calls db.create_all(), so the app's tables are made only as it serves a "
        "request: /readyz answers 503 until they exist (it runs no hook or view), so `flaskprod up` stops after "
        "proxy.ready_timeout unless a request happens to come first, and `deploy` and an orchestrator's readiness "
        "probe send no request to a release that is not ready: it never turns ready"
    )


def _handler_hint(commands: list[TableCommand]) -> str:
    safe = creates_only(commands)
    release = (
        f'set deploy.release_command = "{safe.invocation}"'
        if safe is not None
        else "set deploy.release_command to a command that calls db.create_all()"
    )
    return (
        "create the tables as the app starts instead: `with app.app_context(): db.create_all()` once its models are "
        f"defined (in create_app() for a factory; create_all only adds what is missing); or {release} in "
        "flaskprod.toml's [deploy], which each deploy runs before the release takes requests"
    )


def _script_text(script: ScriptCommand) -> str:
    return (
        f"the app's tables are missing until its command `{script.name}` runs (it calls db.create_all(); a click "
        "command outside app.cli, which `flask` does not list), and deploy.release_command is unset: /readyz answers "
        "503 until then, so `flaskprod up` never turns ready and no built target takes traffic"
    )


def _script_hint(script: ScriptCommand) -> str:
    run = f'"{script.run}"' if script.run else "the command line that runs it"
    if script.drops:
        return (
            f"run `{script.run or script.name}` once by hand against the production database before the first "
            "deploy; do not make it deploy.release_command: it drops tables too, so each deploy would empty the "
            "database"
        )
    return (
        f"set deploy.release_command = {run} in flaskprod.toml's [deploy]: db.create_all() only creates the tables "
        "that are missing, so each deploy may run it before the new release takes requests"
    )


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


def release_table_commands(app: Flask, root: Path) -> list[TableCommand]:
    """table_commands of an app whose readiness waits for tables no migration makes (FP-R002's), for `flaskprod init`
    to pick deploy.release_command from (through the probe, which has the app loaded); none for any other app."""
    return list(table_commands(app, root, set())) if waits_for_created_tables(app) else []


def creates_only(commands: list[TableCommand]) -> TableCommand | None:
    """The command a deploy can run before each release (flaskprod init sets it as deploy.release_command): the first
    that creates the tables and drops none, as create_all only adds what is missing."""
    return next((command for command in commands if not command.drops), None)


@dataclass(frozen=True, kw_only=True)
class ServingCreator:
    """A function the app runs only as it serves a request (a hook, a view) that calls db.create_all()."""

    name: str  # its function's name, as the source spells it
    kind: str  # what registered it: "a before_request hook", "a view"
    where: str  # as a message names it: "app.py:14"


def serving_creators(app: Flask, root: Path, reached: set[tuple[Path, int]]) -> Iterator[ServingCreator]:
    """The app's request hooks and views whose function, or a project function it calls by name, calls create_all()
    (a `before_request` table maker, with or without a first-request flag); reached gets what they read, as in
    table_commands."""
    seen: set[types.CodeType] = set()
    for kind, handler in _serving_functions(app):
        function = inspect.unwrap(handler)
        code = getattr(function, "__code__", None)
        if not isinstance(code, types.CodeType) or code in seen:
            continue
        seen.add(code)
        found = _Reading(root)
        found.read(function, depth=0)
        reached |= found.definitions
        if found.creates:
            yield ServingCreator(name=function.__name__, kind=kind, where=_where(function, root))


def _serving_functions(app: Flask) -> Iterator[tuple[str, Callable[..., object]]]:
    """What Flask calls on a request's way, each with what registered it. A blueprint's hooks (before_app_request's
    too) are in the app's registries, under the blueprint's name or None."""
    hooks: dict[str, Mapping[str | None, Sequence[Callable[..., object]]]] = {
        "a before_request hook": app.before_request_funcs,
        "an after_request hook": app.after_request_funcs,
        "a teardown_request hook": app.teardown_request_funcs,
    }
    for kind, registry in hooks.items():
        for functions in registry.values():
            for function in functions:
                yield kind, function
    # Flask before 2.3 kept before_first_request's hooks apart.
    for function in getattr(app, "before_first_request_funcs", ()):
        yield "a before_first_request hook", function
    for view in app.view_functions.values():
        view_class = getattr(view, "view_class", None)  # a class-based view: its method handlers are the user's
        methods = view_class.methods or () if view_class is not None else ()
        handlers = [getattr(view_class, method.lower(), None) for method in methods] if view_class else [view]
        for handler in handlers:
            if callable(handler):
                yield "a view", handler


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
    if "site-packages" in path.parts:
        return None  # a library installed in a virtualenv inside the project (its views and hooks are many)
    return path if path.suffix == ".py" and path.is_file() else None


def _definition(function: types.FunctionType, root: Path) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    path = _source_path(function, root)
    if path is None:
        return None
    stat = path.stat()
    tree = _parsed(path, stat.st_mtime_ns, stat.st_size)
    if tree is None:
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


@functools.lru_cache(maxsize=64)
def _parsed(path: Path, mtime_ns: int, size: int) -> ast.Module | None:
    """path's tree, parsed once for all the views and hooks defined in it (keyed by mtime and size: rewritten, read
    again)."""
    try:
        return ast.parse(path.read_text(errors="replace"))
    except (SyntaxError, ValueError, RecursionError, MemoryError, OSError):
        return None


def _where(function: types.FunctionType, root: Path) -> str:
    path = _source_path(function, root)
    if path is None:
        return function.__qualname__
    return f"{path.resolve().relative_to(root.resolve()).as_posix()}:{function.__code__.co_firstlineno}"


def _creates_elsewhere(context: Context, reached: set[tuple[Path, int]]) -> tuple[bool, list[ScriptCommand]]:
    """Whether a project module calls create_all() outside the functions the app's commands reach, outside a
    script's `if __name__ == "__main__":` and outside a click command: in its app factory or at import, so the app
    makes its tables as it starts (the example taskboard's create_schema()). With the click commands that call it
    which app.cli does not hold (a manage.py's FlaskGroup), which run only by hand."""
    scripts: list[ScriptCommand] = []
    at_start = False
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
            if innermost is not None and (path, innermost.lineno) in reached:
                continue
            command = None if innermost is None else _click_name(innermost)
            if innermost is None or command is None:
                at_start = True
                continue
            first = min([innermost.lineno, *(decorator.lineno for decorator in innermost.decorator_list)])
            where = f"{item.rel}:{first}"  # as the app's commands are named: from the first decorator's line
            if not any(script.where == where for script in scripts):
                run = f"python {item.rel} {command}" if by_hand else None
                scripts.append(ScriptCommand(name=command, where=where, run=run, drops=_drops_in(innermost)))
    return at_start, scripts


@dataclass(frozen=True, kw_only=True)
class ScriptCommand:
    """A click command that calls db.create_all() which only the source shows: not on app.cli, so `flask` does not
    run it (a manage.py's FlaskGroup, run as `python manage.py create-db`)."""

    name: str  # as click names it
    where: str  # its def, as a message names it: "manage.py:12"
    run: str | None  # how it is run, when its file runs a command line under its main guard
    drops: bool  # whether its own body drops tables (drop_all(), a DROP TABLE statement)


def _click_name(function: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """The name click gives the command a function's decorator makes (`@cli.command()`, `@click.command("x")`), by
    click's rule: its name= or first argument, else the function's, dashed, less a _command or _cmd suffix. None for
    a function no command decorator makes."""
    for decorator in function.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call is not None else decorator
        if not (isinstance(target, ast.Attribute) and target.attr == "command"):
            continue
        named = _name_given(call) if call is not None else None
        if named is not None:
            return named
        base, dash, suffix = function.name.lower().replace("_", "-").rpartition("-")
        return base if dash and suffix in {"command", "cmd"} else function.name.lower().replace("_", "-")
    return None


def _drops_in(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(
        (isinstance(node, ast.Call) and call_name(node) == "drop_all")
        or (isinstance(node, ast.Constant) and isinstance(node.value, str) and _DROP.search(node.value) is not None)
        for node in ast.walk(function)
    )


def _name_given(call: ast.Call) -> str | None:
    """The command name a decorator's call spells: `command("init-db")` or `command(name="init-db")`."""
    given = [*call.args[:1], *(keyword.value for keyword in call.keywords if keyword.arg == "name")]
    return next((arg.value for arg in given if isinstance(arg, ast.Constant) and isinstance(arg.value, str)), None)


def _within(inner: ast.AST, outer: ast.stmt) -> bool:
    line = getattr(inner, "lineno", 0)
    return outer.lineno <= line <= (outer.end_lineno or outer.lineno)
