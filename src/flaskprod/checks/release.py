"""Checks on what a deploy runs before the new code takes requests: deploy.release_command."""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click
from flask import Flask

from .context import Context, ProjectFile, call_name, deployment_files, is_main_guard, project_files, walk
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
        own = _own_release_step(context)
        hint = None
        if own is not None:  # Flasky's boot.sh runs `flask deploy`, which upgrades and more: not `flask db upgrade`
            command, where = own
            hint = (
                f"set deploy.release_command = {_toml_string(command)} in flaskprod.toml's [deploy], the release "
                f"step the project already runs ({where}): each deploy runs it once, before the new release takes "
                "requests"
            )
        yield Found(obj=context.app_label, hint=hint)


# The scripts a container or a VM starts the app with, which run the app's release step before they serve.
_START_SCRIPTS = ("boot.sh", "entrypoint.sh", "docker-entrypoint.sh")
# A script's line that runs one of the app's own flask commands: not the server, a shell or a listing.
_FLASK_COMMAND = re.compile(r"^\s*(?:exec\s+)?(flask\s+(?!(?:run|shell|routes)\b)\w[^;&|#]*)")
_PROCFILE_RELEASE = re.compile(r"^\s*release\s*:\s*(\S.*?)\s*$")


def _own_release_step(context: Context) -> tuple[str, str] | None:
    """(command, file:line) of the release step the project already runs: a Procfile's `release:` process (Heroku
    runs it before each release), else the first of the app's flask commands a boot.sh or entrypoint.sh runs."""
    for item in deployment_files(context.files_named("Procfile")):
        for line, text in item.lines():
            if match := _PROCFILE_RELEASE.match(text):
                return match[1], item.at(line)
    for item in deployment_files(context.files_named(*_START_SCRIPTS)):
        for line, text in item.lines():
            if match := _FLASK_COMMAND.match(text):
                return match[1].strip(), item.at(line)
    return None


def _toml_string(text: str) -> str:
    """text as a TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
    """Where the app (loaded) and the project's files create the tables. A function is judged by where it is called:
    as the app starts, by its commands, hooks or views, or by nothing the source shows."""
    files = tuple(files)
    # Read as text first: most projects call create_all nowhere, and then nothing below finds anything.
    source = _Source(files if any(item.path.suffix == ".py" and "create_all" in item.text for item in files) else ())
    at_start = _made_at_start(source)  # first: it reads the modules that call create_all(), where scripts are found
    reached = _Reached()
    commands = list(table_commands(app, root, reached, source))
    handlers = tuple(serving_creators(app, root, reached, source))
    scripts = tuple(_script_commands(source, root, reached))
    return TablesMade(at_start=at_start, commands=(*commands, *scripts), handlers=handlers)


@dataclass
class _Reached:
    """The project functions read from the app's loaded commands, hooks and views."""

    definitions: set[_DefKey] = field(default_factory=set)  # (resolved file, line, column) of each


def table_commands(app: Flask, root: Path, reached: _Reached, source: _Source) -> Iterator[TableCommand]:
    """The app's click commands (app.cli's, blueprints' among them) whose function, or a function of the project it
    calls by name, calls create_all(); each with what on its way drops tables. reached gets every project function
    read from a command; source finds a function the loaded module does not bind (imported inside the command)."""
    for words, command in _commands(app.cli, ()):
        if command.callback is None:
            continue
        function = inspect.unwrap(command.callback)  # under with_appcontext and click's pass_* decorators
        found = _Reading(root, reached, source)
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


def serving_creators(app: Flask, root: Path, reached: _Reached, source: _Source) -> Iterator[ServingCreator]:
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
        if _Reading(root, reached, source).read(function, depth=0):
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
    """What a command's (a hook's, a view's) function and the project functions it calls do to the tables. A loaded
    function's call goes to what its module binds to the name; a name bound only inside the function (an import
    there), and each call of a function known only from the source (a script's, which nothing imports), to the
    project function the module's imports name."""

    def __init__(self, root: Path, reached: _Reached, source: _Source) -> None:
        self.root = root.resolve()
        self.reached = reached
        self.source = source
        self.drops: list[str] = []
        self._read: dict[_DefKey, bool] = {}  # each function read, and whether it creates the tables
        self._loaded: dict[types.CodeType, bool] = {}  # the same by code, before its source is looked up

    def read(self, function: object, depth: int) -> bool:
        """Whether function (loaded), or a project function it calls by name, calls create_all(); drops gets what
        drops tables on the way."""
        if not isinstance(function, types.FunctionType):
            return False
        code = function.__code__
        if code in self._loaded:
            return self._loaded[code]
        self._loaded[code] = False  # while it is read: a call back into it (recursion) adds nothing
        node = _definition(function, self.root)
        if node is None:
            return False  # not the project's source (a library's command), or not found in it
        path = Path(code.co_filename).resolve()
        self.reached.definitions.add(_key(path, node))
        self._loaded[code] = self._body(node, path, depth, function, self.source.module_at(path))
        return self._loaded[code]

    def read_source(self, function: _Function, depth: int) -> bool:
        """read(), for a function known only from the source."""
        return self._body(function.node, function.module.path, depth, None, function.module)

    def _body(
        self, node: _Scope, path: Path, depth: int, loaded: types.FunctionType | None, module: _Module | None
    ) -> bool:
        key = _key(path, node)
        if key in self._read:
            return self._read[key]
        self._read[key] = False  # while it is read: a call back into it (recursion) adds nothing
        creates = False
        for child in ast.walk(node):
            if isinstance(child, ast.Call):
                creates = self._call(child, depth, loaded, module) or creates
            elif isinstance(child, ast.Constant) and isinstance(child.value, str):
                self._drop(_dropped_by(child.value, (path.parent, self.root)))
        self._read[key] = creates
        return creates

    def _call(self, call: ast.Call, depth: int, loaded: types.FunctionType | None, module: _Module | None) -> bool:
        name = call_name(call)
        if name == "create_all":
            return True
        if name == "drop_all":
            self._drop("drop_all()")
            return False
        if depth >= _CALLS_FOLLOWED:
            return False
        if loaded is not None and _bound(call.func, loaded):
            return self.read(_called(call.func, loaded), depth + 1)
        # A loaded function's method calls go to what its objects are, which the loaded module says (a view's
        # query.get() is no project method named get); one read from the source has only names to go by.
        methods = loaded is None
        creates = False
        for function in self.source.callees(call.func, module, methods=methods) if module is not None else ():
            creates = self.read_source(function, depth + 1) or creates  # each read: what drops is wanted too
        return creates

    def _drop(self, dropped: str | None) -> None:
        if dropped is not None and dropped not in self.drops:
            self.drops.append(dropped)


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
    """The function a call names, as the caller's module binds it: init_db(), models.init_db() or
    shop.models.init_db()."""
    if isinstance(func, ast.Name):
        return caller.__globals__.get(func.id)
    if isinstance(func, ast.Attribute):
        module = _called(func.value, caller)
        return getattr(module, func.attr, None) if isinstance(module, types.ModuleType) else None
    return None


def _bound(func: ast.expr, caller: types.FunctionType) -> bool:
    """Whether the caller's loaded module binds the name a call begins with; one it does not is bound inside the
    function (`from tables import init_db` there), which only the source shows."""
    while isinstance(func, ast.Attribute):
        func = func.value
    return not isinstance(func, ast.Name) or func.id in caller.__globals__ or hasattr(builtins, func.id)


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
_DefKey = tuple[Path, int, int]  # a function read: its resolved file, and where its def (or lambda) begins


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


def _key(path: Path, node: _Scope) -> _DefKey:
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


_WORD = re.compile(r"[^\W\d]\w*")  # a name, as Python spells one
_DEF = re.compile(r"\bdef\s+([^\W\d]\w*)")
_METHODS_SHARED = 3  # how many defs of one name a method call by that name alone may be read into
_FACTORY_NAMES = frozenset({"create_app", "make_app"})  # what Flask's discovery calls, which no project code does


@dataclass(frozen=True, kw_only=True)
class _Call:
    """A call in a module's source, with the innermost function its code runs in."""

    node: ast.Call
    scope: _DefKey | None  # its def's or lambda's; None: run at import (a class body's calls too)
    by_hand: bool  # under a script's `if __name__ == "__main__":`


@dataclass(frozen=True, kw_only=True, eq=False)  # eq=False: a function and its module refer to each other
class _Function:
    """A def in the project's source."""

    module: _Module
    node: ast.FunctionDef | ast.AsyncFunctionDef
    key: _DefKey
    names: tuple[tuple[str, str], ...]  # how a call reaches it, as _callees spells them
    command: str | None  # the click command its decorator makes, as click names it
    factory: bool  # it makes the app (calls Flask()), or Flask's discovery calls it by its name


@dataclass(kw_only=True, eq=False)
class _Module:
    """A .py file of the project, read without importing it (a manage.py is run, never imported)."""

    item: ProjectFile
    path: Path  # resolved
    name: str  # its own name, as the last part of an import spells it
    imports: Mapping[str, tuple[str, str]]
    calls: tuple[_Call, ...] = ()
    functions: dict[_DefKey, _Function] = field(default_factory=dict)  # in source order
    guarded: bool = False  # it has a main guard: run as a script (`python manage.py create_db`)


class _Source:
    """The project's Python modules, read as source when a question needs them (most never are: a module is read
    when its text holds the name asked for), each function found by the names its calls go by, through the caller's
    module's imports to the project's own function."""

    def __init__(self, files: Iterable[ProjectFile]) -> None:
        self._files = tuple(item for item in files if item.path.suffix == ".py")
        self._read: dict[Path, _Module | None] = {}

    @functools.cached_property
    def _at(self) -> dict[Path, ProjectFile]:
        return {item.path.resolve(): item for item in self._files}

    @functools.cached_property
    def _words(self) -> dict[str, list[ProjectFile]]:
        """The files each word of their text is in: each file's text read once, however many names are asked."""
        words: dict[str, list[ProjectFile]] = {}
        for item in self._files:
            for word in set(_WORD.findall(item.text)):
                words.setdefault(word, []).append(item)
        return words

    def modules(self) -> list[_Module]:
        """The modules read so far, in the files' order."""
        return [module for item in self._files if (module := self._read.get(item.path)) is not None]

    def holding(self, word: str) -> list[_Module]:
        """The modules whose text holds word."""
        return self.modules_of(self._words.get(word, ()))

    def modules_of(self, items: Iterable[ProjectFile]) -> list[_Module]:
        return [module for item in items if (module := self.module(item)) is not None]

    def module(self, item: ProjectFile) -> _Module | None:
        if item.path not in self._read:
            self._read[item.path] = _read_module(item)
        return self._read[item.path]

    def module_at(self, path: Path) -> _Module | None:
        """The module of a loaded function's file (resolved)."""
        item = self._at.get(path)
        return self.module(item) if item is not None else None

    @functools.cached_property
    def _defined(self) -> dict[str, list[ProjectFile]]:
        """The files that define a function of each name, once for each def: only they can hold one a call reaches."""
        defined: dict[str, list[ProjectFile]] = {}
        for item in self._files:
            for name in _DEF.findall(item.text):
                defined.setdefault(name, []).append(item)
        return defined

    def callees(self, func: ast.expr, module: _Module, *, methods: bool) -> list[_Function]:
        """The project functions a call in module may reach by its name; methods: a method of its name too, when
        few share it (obj.get() says nothing of which of a dozen get methods runs)."""
        found: list[_Function] = []
        for owner, name in _callees(func, module.name, module.imports):
            defined = self._defined.get(name, [])
            if owner == "*" and (not methods or len(defined) > _METHODS_SHARED):
                continue
            items = [item for item in dict.fromkeys(defined) if owner == "*" or _module_name(item.path) == owner]
            for held in self.modules_of(items):
                found += [function for function in held.functions.values() if (owner, name) in function.names]
        return found


def _read_module(item: ProjectFile) -> _Module | None:
    tree = item.tree
    if tree is None:
        return None
    path = item.path.resolve()
    module = _Module(item=item, path=path, name=_module_name(item.path), imports=_imports(walk(tree), path.parent.name))
    calls: list[_Call] = []
    defs: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str | None]] = []  # each with its class, for a method
    pending: list[tuple[ast.AST, _DefKey | None, bool, str | None]] = [(tree, None, False, None)]
    while pending:  # by hand, not recursion: a long expression nests deeper than Python's recursion limit
        node, scope, by_hand, owner = pending.pop()
        if isinstance(node, ast.Call):
            calls.append(_Call(node=node, scope=scope, by_hand=by_hand))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defs.append((node, owner))
            outside = [*node.decorator_list, node.args, *([node.returns] if node.returns else [])]
            pending += [(child, scope, by_hand, None) for child in outside]  # run where the def is
            pending += [(child, _key(path, node), by_hand, None) for child in node.body]
        elif isinstance(node, ast.Lambda):
            pending += [(node.args, scope, by_hand, None), (node.body, _key(path, node), by_hand, None)]
        elif isinstance(node, ast.ClassDef):
            pending += [(child, scope, by_hand, None) for child in (*node.decorator_list, *node.bases, *node.keywords)]
            pending += [(child, scope, by_hand, node.name) for child in node.body]
        elif isinstance(node, ast.If) and scope is None and is_main_guard(node.test):
            module.guarded = True
            pending += [(node.test, scope, by_hand, None), *((child, scope, by_hand, None) for child in node.orelse)]
            pending += [(child, scope, True, None) for child in node.body]
        else:
            pending += [(child, scope, by_hand, None) for child in ast.iter_child_nodes(node)]
    module.calls = tuple(calls)
    making = {call.scope for call in calls if call_name(call.node) == "Flask"}
    for node, owner in sorted(defs, key=lambda found: _start(found[0])):
        key = _key(path, node)
        names = [(module.name, node.name)] if owner is None else [("*", node.name)]  # a method: by its name alone
        if owner is not None and node.name == "__init__":
            names.append((module.name, owner))  # Store() runs Store.__init__
        factory = key in making or (owner is None and node.name in _FACTORY_NAMES)
        module.functions[key] = _Function(
            module=module, node=node, key=key, names=tuple(names), command=_click_name(node), factory=factory
        )
    return module


def _made_at_start(source: _Source) -> bool:
    """Whether the project calls create_all() as the app starts: at import (outside a script's main guard), in its
    factory, or in a function either calls, through any depth of calls (the example taskboard's create_schema(),
    called in its create_app()). A function only the app's commands, hooks or views call, or none that the source
    shows, is not run at start. Read from create_all() back to its callers, which only its callers' modules hold
    (each read: _script_commands looks for commands there)."""
    at_start = False
    makers: set[_DefKey] = set()  # the functions that call create_all(), or one that does
    pending = [(module, call) for module in source.holding("create_all") for call in module.calls]
    pending = [(module, call) for module, call in pending if call_name(call.node) == "create_all"]
    while pending:
        module, call = pending.pop()
        if call.scope is None:
            at_start = at_start or not call.by_hand
            continue
        maker = module.functions.get(call.scope)  # None for a lambda: what calls it, no name shows
        if maker is None or maker.command is not None or maker.key in makers:
            continue  # a click command's work is the command's (`flask init-db`): run by hand, not at start
        at_start = at_start or maker.factory
        makers.add(maker.key)
        names = set(maker.names)
        for caller in (caller for text in {name for _, name in names} for caller in source.holding(text)):
            for called in caller.calls:
                if names & set(_callees(called.node.func, caller.name, caller.imports)):
                    pending.append((caller, called))
    return at_start


def _script_commands(source: _Source, root: Path, reached: _Reached) -> Iterator[TableCommand]:
    """The click commands outside app.cli (a manage.py's FlaskGroup) whose function, or a project function it calls,
    calls create_all(); each with what on its way drops tables. Run only by hand: `python manage.py create_db` when
    its script has a main guard. Only modules that call create_all(), or a function that does, can hold one: those
    _made_at_start read."""
    for module in source.modules():
        for function in module.functions.values():
            if function.command is None or function.key in reached.definitions:
                continue  # not a command, or one of app.cli's, read as loaded
            found = _Reading(root, reached, source)
            if not found.read_source(function, depth=0):
                continue
            first = min([function.node.lineno, *(decorator.lineno for decorator in function.node.decorator_list)])
            yield TableCommand(
                name=function.command,
                invocation=f"python {module.item.rel} {function.command}" if module.guarded else None,
                listed=False,
                where=f"{module.item.rel}:{first}",  # as the app's commands are named: from the first decorator's line
                drops=", ".join(found.drops),
            )


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


def _callees(func: ast.expr, here: str, imports: Mapping[str, tuple[str, str]]) -> list[tuple[str, str]]:
    """The (module, function) names a call may reach, as _Function.names holds them: make() defined in the module
    here or imported by name, tables.make() (shop.tables.make()) of an imported module, and any method of its name
    for obj.make(). A name only matches the project's own: an app command named init is not sentry_sdk.init()."""
    if isinstance(func, ast.Name):
        return [imports.get(func.id, (here, func.id))]
    if not isinstance(func, ast.Attribute):
        return []
    names = [("*", func.attr)]
    head = func.value
    while isinstance(head, ast.Attribute):
        head = head.value
    if isinstance(head, ast.Name) and head.id in imports:
        module, name = imports[head.id]
        owner = func.value.attr if isinstance(func.value, ast.Attribute) else name or module
        names.append((owner, func.attr))  # `from shop import tables` binds a module by name
    return names


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


def _name_given(call: ast.Call) -> str | None:
    """The command name a decorator's call spells: `command("init-db")` or `command(name="init-db")`."""
    given = [*call.args[:1], *(keyword.value for keyword in call.keywords if keyword.arg == "name")]
    return next((arg.value for arg in given if isinstance(arg, ast.Constant) and isinstance(arg.value, str)), None)
