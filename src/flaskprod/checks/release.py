"""Checks on what a deploy runs before the new code takes requests: deploy.release_command."""

from __future__ import annotations

import ast
import functools
import inspect
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click
from flask import Flask

from .context import Context, ProjectFile, call_name, is_main_guard, project_files, walk
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
    made = tables_made(app, context.root, context.files)
    if made.at_start:
        return  # the app makes its tables itself as it starts (create_all in its factory, at import)
    if made.handlers:
        for handler in made.handlers:
            yield Found(obj=handler.where, text=_handler_text(handler), hint=_handler_hint(made.commands))
        return
    if not made.commands:
        yield Found(obj=context.app_label)
        return
    for command in made.commands:
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


def _handler_hint(commands: Sequence[TableCommand]) -> str:
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


def _command_text(command: TableCommand) -> str:
    named, outside = (f"`{command.invocation}`", "") if command.listed else (f"its command `{command.name}`", _UNLISTED)
    return (
        f"the app's tables are missing until {named} runs (it calls db.create_all(){outside}), and "
        "deploy.release_command is unset: /readyz answers 503 until then, so `flaskprod up` never turns ready and no "
        "built target takes traffic"
    )


_UNLISTED = "; a click command outside app.cli, which `flask` does not list"


def _command_hint(command: TableCommand) -> str:
    if command.drops:
        return (
            f"run `{command.invocation or command.name}` once by hand against the production database before the "
            f"first deploy; do not make it deploy.release_command: it drops tables too ({command.drops}), so each "
            "deploy would empty the database"
        )
    run = f'"{command.invocation}"' if command.invocation else "the command line that runs it"
    return (
        f"set deploy.release_command = {run} in flaskprod.toml's [deploy]: db.create_all() only creates the tables "
        "that are missing, so each deploy may run it before the new release takes requests"
    )


@dataclass(frozen=True, kw_only=True)
class TableCommand:
    """One of the app's click commands that calls db.create_all(), read from its source: app.cli's, which `flask`
    runs, or one outside app.cli which only the source shows (a manage.py's FlaskGroup, run as
    `python manage.py create_db`)."""

    name: str  # as click names it: "init-db", "admin create-tables"
    invocation: str | None  # as it is run: "flask init-db"; None for a script's whose file runs no command line
    listed: bool  # on app.cli, so `flask` lists and runs it
    where: str  # its function, as a message names it: "app.py:14"
    drops: str  # what drops tables on its way ("drop_all()", "DROP in schema.sql"); "" when nothing does


@dataclass(frozen=True, kw_only=True)
class TablesMade:
    """Where the app's source calls db.create_all(), as FP-R002 and `flaskprod init` read it."""

    at_start: bool  # in its factory or at import: it makes its tables itself as it starts
    commands: tuple[TableCommand, ...]  # app.cli's, then the scripts'
    handlers: tuple[ServingCreator, ...]  # hooks and views: it makes its tables only as it serves a request


def tables_made(app: Flask, root: Path, files: Iterable[ProjectFile]) -> TablesMade:
    """Where the app (loaded) and the project's files create the tables. A function its commands, hooks or views
    reach is theirs, unless the app also calls it as it starts."""
    reached = _Reached()
    commands = list(table_commands(app, root, reached))
    handlers = tuple(serving_creators(app, root, reached))
    at_start, scripts = _creates_elsewhere(files, root, reached)
    return TablesMade(at_start=at_start, commands=(*commands, *scripts), handlers=handlers)


@dataclass
class _Reached:
    """The project functions read from the app's commands, hooks and views."""

    definitions: set[tuple[Path, int, int]] = field(default_factory=set)  # (resolved file, line, column) of each
    # Those that call create_all() or one that does, each (its module's own name, its name): ("tables", "make")
    creators: set[tuple[str, str]] = field(default_factory=set)


def table_commands(app: Flask, root: Path, reached: _Reached) -> Iterator[TableCommand]:
    """The app's click commands (app.cli's, blueprints' among them) whose function, or a function of the project it
    calls by name, calls create_all(); each with what on its way drops tables. reached gets every project function
    read from a command."""
    for words, command in _commands(app.cli, ()):
        if command.callback is None:
            continue
        function = inspect.unwrap(command.callback)  # under with_appcontext and click's pass_* decorators
        found = _Reading(root, reached)
        if found.read(function, depth=0):
            yield TableCommand(
                name=" ".join(words),
                invocation=" ".join(("flask", *words)),
                listed=True,
                where=_where(function, root),
                drops=", ".join(found.drops),
            )


def release_table_commands(app: Flask, root: Path) -> list[tuple[str, str]]:
    """The commands FP-R002 names, each (the command line that runs it, what drops tables on its way or ""), for
    `flaskprod init` to pick deploy.release_command from (through the probe, which has the app loaded): app.cli's,
    then a script's that runs them (manage.py's FlaskGroup). None for an app whose readiness waits for no tables that
    only create_all makes."""
    if not waits_for_created_tables(app):
        return []
    made = tables_made(app, root, project_files(root))
    return [(command.invocation, command.drops) for command in made.commands if command.invocation]


def creates_only(commands: Sequence[TableCommand]) -> TableCommand | None:
    """The command a deploy can run before each release (flaskprod init sets it as deploy.release_command): the first
    that creates the tables, drops none (as create_all only adds what is missing) and has a known command line."""
    return next((command for command in commands if not command.drops and command.invocation), None)


@dataclass(frozen=True, kw_only=True)
class ServingCreator:
    """A function the app runs only as it serves a request (a hook, a view) that calls db.create_all()."""

    name: str  # its function's name, as the source spells it
    kind: str  # what registered it: "a before_request hook", "a view"
    where: str  # as a message names it: "app.py:14"


def serving_creators(app: Flask, root: Path, reached: _Reached) -> Iterator[ServingCreator]:
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
        if _Reading(root, reached).read(function, depth=0):
            yield ServingCreator(name=_shown_name(function, root), kind=kind, where=_where(function, root))


def _shown_name(function: types.FunctionType, root: Path) -> str:
    """A function's name as a message shows it; a lambda's source (`lambda: db.create_all()`) when short."""
    if function.__name__ != "<lambda>":
        return function.__name__
    node = _definition(function, root)
    shown = ast.unparse(node) if node is not None else ""
    return shown if shown and len(shown) <= 60 else "lambda"


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
    """What a command's (a hook's, a view's) function and the project functions it calls do to the tables."""

    def __init__(self, root: Path, reached: _Reached) -> None:
        self.root = root.resolve()
        self.reached = reached
        self.drops: list[str] = []
        self._read: dict[types.CodeType, bool] = {}  # each function read, and whether it creates the tables

    def read(self, function: object, depth: int) -> bool:
        """Whether function, or a project function it calls by name, calls create_all(); drops gets what drops
        tables on the way."""
        code = getattr(function, "__code__", None)
        if not isinstance(function, types.FunctionType) or not isinstance(code, types.CodeType):
            return False
        if code in self._read:
            return self._read[code]
        self._read[code] = False  # while it is read: a call back into it (recursion) adds nothing
        node = _definition(function, self.root)
        if node is None:
            return False  # not the project's source (a library's command), or not found in it
        self.reached.definitions.add(_key(Path(code.co_filename).resolve(), node))
        creates = False
        for child in ast.walk(node):
            if isinstance(child, ast.Call):
                creates = self._call(child, function, depth) or creates
            elif isinstance(child, ast.Constant) and isinstance(child.value, str):
                dropped = _dropped_by(child.value, (Path(code.co_filename).parent, self.root))
                if dropped is not None and dropped not in self.drops:
                    self.drops.append(dropped)
        if creates and not isinstance(node, ast.Lambda):
            self.reached.creators.add((_module_name(Path(code.co_filename)), function.__name__))
        self._read[code] = creates
        return creates

    def _call(self, call: ast.Call, function: types.FunctionType, depth: int) -> bool:
        name = call_name(call)
        if name == "create_all":
            return True
        if name == "drop_all":
            if "drop_all()" not in self.drops:
                self.drops.append("drop_all()")
            return False
        return depth < _CALLS_FOLLOWED and self.read(_called(call.func, function), depth + 1)


def _dropped_by(value: str, folders: Sequence[Path]) -> str | None:
    """What a string of the source drops: its SQL's DROP TABLE, or that of the .sql file it names in one of folders
    (the Flask tutorial's schema.sql); None for anything else."""
    statement = _DROP.search(value)
    if statement is not None:
        return statement[0].upper()
    if value.endswith(".sql") and "\n" not in value:
        for folder in folders:
            script = folder / value
            if script.is_file() and _DROP.search(script.read_text(errors="replace")):
                return f"DROP in {value}"
    return None


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


_Scope = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda  # what a function's code is compiled from


def _definition(function: types.FunctionType, root: Path) -> _Scope | None:
    path = _source_path(function, root)
    if path is None:
        return None
    stat = path.stat()
    tree = _parsed(path, stat.st_mtime_ns, stat.st_size)
    if tree is None:
        return None
    if function.__name__ == "<lambda>":
        return _lambda(function.__code__, tree)
    first = function.__code__.co_firstlineno  # the first decorator's line, or the def's
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name == function.__name__
            and min([node.lineno, *(d.lineno for d in node.decorator_list)]) == first
        ):
            return node
    return None


def _lambda(code: types.CodeType, tree: ast.Module) -> ast.Lambda | None:
    """The lambda code was compiled from: the one on its first line; of several there (`before_request(lambda: ...)`
    twice on a line), the innermost whose body holds where its instructions are."""
    lambdas = [node for node in ast.walk(tree) if isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno]
    if len(lambdas) > 1:
        spots = [(line, column) for line, _, column, _ in code.co_positions() if line and column is not None]
        lambdas = [node for node in lambdas if any(_holds(node.body, spot) for spot in spots)]
    return max(lambdas, key=_start, default=None)


def _start(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 0), getattr(node, "col_offset", 0)


def _holds(node: ast.AST, spot: tuple[int, int]) -> bool:
    end = (getattr(node, "end_lineno", None) or 0, getattr(node, "end_col_offset", None) or 0)
    return _start(node) <= spot < end


def _key(path: Path, node: _Scope) -> tuple[Path, int, int]:
    """A function read, as _Reached.definitions holds it: its file, and where its def (or lambda) begins."""
    return path, node.lineno, node.col_offset


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


def _creates_elsewhere(
    files: Iterable[ProjectFile], root: Path, reached: _Reached
) -> tuple[bool, list[TableCommand]]:
    """Whether a project module calls create_all(), or a function the app's commands, hooks or views reach that
    calls it, as the app starts: outside the functions they reach, outside a script's `if __name__ == "__main__":`
    and outside a click command; in its app factory or at import (the example taskboard's create_schema()). With the
    click commands calling create_all() which app.cli does not hold (a manage.py's FlaskGroup): run only by hand."""
    scripts: list[TableCommand] = []
    at_start = False
    wanted = {"create_all", *(name for _, name in reached.creators)}
    for item in files:
        if item.path.suffix != ".py" or not any(name in item.text for name in wanted):
            continue  # read as text first: most modules call none of them
        tree = item.tree
        nodes = walk(tree) if tree is not None else ()
        here = _module_name(item.path)
        imports = _imports(nodes, item.path.parent.name)
        calls = [
            node
            for node in nodes
            if isinstance(node, ast.Call)
            and (call_name(node) == "create_all" or _callee(node.func, here, imports) in reached.creators)
        ]
        if not calls:
            continue
        scopes = [node for node in nodes if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
        by_hand = [node for node in nodes if isinstance(node, ast.If) and is_main_guard(node.test)]
        path = item.path.resolve()
        for call in calls:
            if any(_within(call, node) for node in by_hand):
                continue
            innermost = max((node for node in scopes if _within(call, node)), key=_start, default=None)
            if innermost is not None and _key(path, innermost) in reached.definitions:
                continue  # a command's, a hook's: the app runs it when they run, unless it is called at start too
            command = None if innermost is None or isinstance(innermost, ast.Lambda) else _click_name(innermost)
            if innermost is None or isinstance(innermost, ast.Lambda) or command is None:
                at_start = True
                continue
            if call_name(call) != "create_all":
                continue  # a script's command calling a helper: only create_all in its own body is read
            first = min([innermost.lineno, *(decorator.lineno for decorator in innermost.decorator_list)])
            where = f"{item.rel}:{first}"  # as the app's commands are named: from the first decorator's line
            if not any(script.where == where for script in scripts):
                run = f"python {item.rel} {command}" if by_hand else None
                drops = _drops_in(innermost, (item.path.parent, root))
                scripts.append(TableCommand(name=command, invocation=run, listed=False, where=where, drops=drops))
    return at_start, scripts


def _module_name(path: Path) -> str:
    """A module's own name, as the last part of an import spells it: tables for tables.py, shop for
    shop/__init__.py."""
    return path.parent.name if path.stem == "__init__" else path.stem


def _imports(nodes: Iterable[ast.AST], package: str) -> dict[str, tuple[str, str]]:
    """What each name a module's imports bind stands for: (module, name) for `from shop.tables import make`,
    (module, "") for `import tables`; package is the module's own package, what `from . import x` reads."""
    bound: dict[str, tuple[str, str]] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                module = alias.name.rpartition(".")[2] if alias.asname else alias.name.partition(".")[0]
                bound[alias.asname or module] = (module, "")
        elif isinstance(node, ast.ImportFrom):
            module = node.module.rpartition(".")[2] if node.module else package
            for alias in node.names:
                bound[alias.asname or alias.name] = (module, alias.name)
    return bound


def _callee(func: ast.expr, here: str, imports: Mapping[str, tuple[str, str]]) -> tuple[str, str] | None:
    """The (module, function) a call names, as _Reached.creators holds them: make() defined in the module here or
    imported by name, tables.make() of an imported module. A name only matches the project's own: an app command
    named init is not sentry_sdk.init()."""
    if isinstance(func, ast.Name):
        return imports.get(func.id, (here, func.id))
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in imports:
        module, name = imports[func.value.id]
        return name or module, func.attr  # `from shop import tables` binds a module by name
    return None


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


def _drops_in(function: ast.FunctionDef | ast.AsyncFunctionDef, folders: Sequence[Path]) -> str:
    """What in a function's own body drops tables, as TableCommand.drops says it."""
    found: list[str] = []
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and call_name(node) == "drop_all":
            dropped: str | None = "drop_all()"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            dropped = _dropped_by(node.value, folders)
        else:
            continue
        if dropped is not None and dropped not in found:
            found.append(dropped)
    return ", ".join(found)


def _name_given(call: ast.Call) -> str | None:
    """The command name a decorator's call spells: `command("init-db")` or `command(name="init-db")`."""
    given = [*call.args[:1], *(keyword.value for keyword in call.keywords if keyword.arg == "name")]
    return next((arg.value for arg in given if isinstance(arg, ast.Constant) and isinstance(arg.value, str)), None)


def _within(inner: ast.AST, outer: ast.AST) -> bool:
    """Whether inner's source lies in outer's: by line and column, as two lambdas may share a line."""
    end = (getattr(inner, "end_lineno", None) or 0, getattr(inner, "end_col_offset", None) or 0)
    return _start(outer) <= _start(inner) and _holds(outer, (end[0], end[1] - 1))
