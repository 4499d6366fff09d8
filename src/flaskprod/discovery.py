"""Find the user's Flask app the way `flask --app` does, with one-line errors that say what to do."""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from . import dotenv
from .errors import DiscoveryError, FlaskprodError

if TYPE_CHECKING:
    from flask import Flask

# Files tried, in order, when no app is named; the same as `flask run`.
DEFAULT_FILES = ("wsgi.py", "app.py")
# Where `flask run` reads the app's name before trying those files: the environment, then the project's
# dotenv files (dotenv.FILES).
APP_VARIABLE = "FLASK_APP"
# The prefix of the variables app.config.from_prefixed_env() reads by default, each as the key after it.
PREFIXED_ENV = "FLASK_"
# Names Flask calls, when no app is named, to get one from the module.
FACTORY_NAMES = ("create_app", "make_app")
# Files that make a directory a project `pip install -e` can install.
PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
HINT = "pass APP such as 'module:app' or 'module:create_app()'"
# What to do about a module that is not there: the name is wrong, or it is looked for from the wrong folder.
NOT_FOUND_FIX = "; check its name, or run flaskprod in the folder that holds it"


@dataclass(frozen=True, kw_only=True)
class AppRef:
    """Where the app lives: a module, an optional attribute or factory call, and the sys.path entry."""

    module: str
    name: str | None  # attribute or call such as "create_app()"; None = Flask's find_best_app
    path: str  # directory that must be on sys.path for the module to import
    origin: str | None = field(default=None, compare=False)  # where an unnamed app's name came from, for errors

    @property
    def import_string(self) -> str:
        return self.module if self.name is None else f"{self.module}:{self.name}"

    def target_from(self, cwd: str | os.PathLike[str]) -> str:
        """What names this app to a process working in cwd: its import string when cwd is its folder, else its path
        (/srv/app/src/web/app:app), as `flask --app src/web/app` names it, so a module of its name in cwd, which
        comes first on sys.path, is not imported for it."""
        if os.path.realpath(cwd) == os.path.realpath(self.path):
            return self.import_string
        located = os.path.join(self.path, *self.module.split("."))
        return located if self.name is None else f"{located}:{self.name}"


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


def _check_text(target: str) -> None:
    """Refuse what no module, path or Python literal can hold, before it reaches the filesystem or a parser."""
    # repr() escapes control characters; a byte that was not UTF-8 arrives from argv or the environment
    # as a lone surrogate (PEP 383), shown as the byte it was.
    shown = re.sub(r"\\udc([89a-f][0-9a-f])", r"\\x\1", repr(target))
    undecoded = sorted({f"\\x{ord(c) - 0xDC00:02x}" for c in target if "\udc80" <= c <= "\udcff"})
    if undecoded:
        raise DiscoveryError(
            f"app {shown} is not valid UTF-8 ({'byte' if len(undecoded) == 1 else 'bytes'} {', '.join(undecoded)}); "
            f"pass UTF-8 text, or a Python escape such as \"{undecoded[0]}\" inside a quoted argument"
        )
    if "\0" in target:
        raise DiscoveryError(f"app {shown} contains a NUL character; remove it")


def unread_dotenv(text: str, base: Path) -> str:
    """'; what to do' when text (why the app refused to start or failed to load) names a variable that is unset
    here but set in a dotenv file in base: `flask run` loads those files, and a developer's key often lives there;
    flaskprod, like Gunicorn and uWSGI, reads FLASK_APP from them and nothing else. A config key the text names
    (KeyError: 'UPLOAD_DIR') counts as its FLASK_ variable too, which app.config.from_prefixed_env() reads."""
    for found in dict.fromkeys(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", text)):
        for name in (found, f"{PREFIXED_ENV}{found}"):
            if name == APP_VARIABLE or name in os.environ:
                continue
            if filename := _dotenv_holding(base, name):
                return (
                    f"; {name} is set in {filename}, which flask run loads and production servers do not: export it "
                    "where flaskprod runs"
                )
    return ""


def _dotenv_holding(base: Path, name: str) -> str | None:
    """The first dotenv file in base that sets name."""
    return next((f for f in dotenv.FILES if dotenv.value_in(base / f, name) is not None), None)


def _named_by_flask(base: Path) -> tuple[str, str] | None:
    """FLASK_APP as `flask run` would read it here, and where it was found."""
    if value := os.environ.get(APP_VARIABLE, "").strip():
        return value, f"${APP_VARIABLE}"
    for filename in dotenv.FILES:
        if value := (dotenv.value_in(base / filename, APP_VARIABLE) or "").strip():
            return value, f"{APP_VARIABLE} in {filename}"
    return None


def resolve(target: str | None, cwd: str | os.PathLike[str] | None = None) -> AppRef:
    """The app reference for an import string, else FLASK_APP, else wsgi.py then app.py in cwd; imports nothing."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    origin = None
    if not (target and target.strip()) and (named := _named_by_flask(base)):
        target, origin = named
    if target is not None and target.strip():
        _check_text(target)
        module, name = _split(target)
        ref = _ref_for(module, name, base) if module else None
        shown = f"{target!r} ({origin})" if origin else repr(target)
        # An empty part ('/', '.hidden', 'a..b') is no module importlib can look for: it would raise from its own code.
        if ref is None or not all(ref.module.split(".")):
            raise DiscoveryError(f"app {shown} names no module; {HINT}")
        _check_path(module, shown, base)
        return replace(ref, origin=origin)
    for filename in DEFAULT_FILES:
        if (base / filename).is_file():
            return _ref_for(filename, None, base)
    tried = ", ".join((APP_VARIABLE, *DEFAULT_FILES))
    found = apps_in(base)
    hint = f"pass APP such as {' or '.join(found)}, which this folder holds" if found else HINT
    raise DiscoveryError(f"no Flask app found: tried {tried} in {base}; {hint}")


# A module larger than this is no app's entry point worth parsing for an error message.
_LARGEST_SCANNED = 1 << 20


def apps_in(base: Path) -> list[str]:
    """Import strings for the Flask apps and factories the modules and packages at base's top level define, read
    without importing them (at most three): what to pass for an app in server.py, the tutorial's flaskr package
    or a src layout's package, which `flask run` also finds only when named."""
    modules = [(p.stem, p) for p in sorted(base.glob("*.py")) if p.stem.isidentifier()]
    # A src layout's package too: imported once the project is installed (`pip install -e .`), as its error says.
    packages = [*sorted(base.glob("*/__init__.py")), *sorted(base.glob("src/*/__init__.py"))]
    modules += [(p.parent.name, p) for p in packages if p.parent.name.isidentifier()]
    apps: list[str] = []
    factories: list[str] = []
    for module, path in modules:
        names, made_by = _defined_apps(path)
        apps += [f"'{module}:{name}'" for name in names]
        factories += [f"'{module}:{name}()'" for name in made_by]
    return (apps + factories)[:3]


def _defined_apps(path: Path) -> tuple[list[str], list[str]]:
    """The names a module's top level binds to Flask(...), and its factories Flask would call (create_app)."""
    try:
        if path.stat().st_size > _LARGEST_SCANNED:
            return [], []
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return [], []
    names: list[str] = []
    factories: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in FACTORY_NAMES:
            factories.append(node.name)
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        value: ast.expr | None = node.value
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if isinstance(value, ast.Call) and _called_name(value.func) == "Flask":
            names += [target.id for target in targets if isinstance(target, ast.Name)]
    return names, factories


def _called_name(func: ast.expr) -> str | None:
    """'Flask' for Flask(...) and flask.Flask(...)."""
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _check_path(module: str, shown: str, base: Path) -> None:
    """Refuse a path that names no file, and a folder that is no package (a project's), which Python would import
    as an empty namespace package: no app can be in one."""
    is_path = "/" in module or os.sep in module or module.endswith(".py")
    path = base / (module if is_path else module.replace(".", os.sep))
    if path.is_dir() and not (path / "__init__.py").is_file():
        folder = module.rstrip("/" + os.sep)
        found = next((name for name in DEFAULT_FILES if (path / name).is_file()), None)
        fix = (
            f"run flaskprod in it, where it finds {found}, or pass {folder}/{found}"
            if found
            else f"pass the Python file that makes the app, such as {folder}/app.py"
        )
        raise DiscoveryError(f"app {shown} is a folder, not a module: {fix}")
    # A dotted module name may be installed anywhere: its import says what is wrong.
    if is_path and not (path.exists() or path.with_name(path.name + ".py").exists()):
        raise DiscoveryError(f"app {shown}: no such file {path}; {HINT}")


def _missing_is_target(exc: ImportError, module: str) -> bool:
    """True when the import failed because the module itself (or a parent package) does not exist; not when a
    name could not be imported from it (a circular import, whose message says so)."""
    missing = exc.name
    found = isinstance(exc, ModuleNotFoundError)
    return found and missing is not None and (module == missing or module.startswith(missing + "."))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_on_sys_path(path: str) -> bool:
    """Put path first on sys.path, as Flask's prepare_import does, unless it is: later (PYTHONPATH's), the working
    folder or a server's entries ahead of it would import a module of the app's name from there (the project
    root's app.py for src/web/app.py). Whether it was added."""
    if sys.path and sys.path[0] == path:
        return False
    sys.path.insert(0, path)
    return True


def import_root(ref: AppRef) -> Path | None:
    """The folder Python imports ref's top-level module from, as the app's import would find it (ref.path first),
    without running it: the project's src/ for a src layout installed with `pip install -e .`; None when it is not
    found, or has no folder of its own (a namespace package, a built-in)."""
    top = ref.module.partition(".")[0]
    added = _first_on_sys_path(ref.path)
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    finally:
        if added:
            sys.path.remove(ref.path)  # the first one: the one added
    if spec is None or not spec.has_location or spec.origin is None:
        return None
    origin = Path(spec.origin).absolute()
    return origin.parent.parent if spec.submodule_search_locations is not None else origin.parent


def _src_layout_hint(ref: AppRef, missing: str | None) -> str:
    """'; what to do' when the package that is missing sits in the project's src/, which is not on sys.path."""
    top = ref.module.split(".", 1)[0]
    root = Path(ref.path)
    found = next((p for p in (root / "src" / top, root / "src" / f"{top}.py") if p.exists()), None)
    if missing != top or found is None:
        return ""
    # Paths as the user would type them from here: relative when here is the project.
    here = Path.cwd().resolve() == root.resolve()
    src = "src" if here else str(root / "src")
    fix = f"run with PYTHONPATH={src}"
    if any((root / name).is_file() for name in PROJECT_FILES):
        fix = f"install the project with `pip install -e {'.' if here else root}`, or {fix}"
    return f"; it is in {src}/{found.name}, which is not on the import path (a src layout): {fix}"


def _attribute_named(name: str) -> str | None:
    """The module attribute name refers to ('create_app' in 'create_app(1)'); None for a shape Flask itself refuses.

    Parsed here, in Flask's words, before Flask parses it: Flask catches only SyntaxError and ValueError, so
    arguments no literal can hold ({[]: 1}) would escape its parser as a traceback from Flask's own code.
    """
    try:
        expr = ast.parse(name.strip(), mode="eval").body
    except Exception:
        raise DiscoveryError(
            f"Failed to parse {name!r} as an attribute name or function call: write one such as 'app' or "
            "'create_app()', after the module and a colon"
        ) from None
    if isinstance(expr, ast.Call):
        try:
            for node in (*expr.args, *(kw.value for kw in expr.keywords if kw.arg is not None)):
                ast.literal_eval(node)
        except Exception:
            raise DiscoveryError(f"Failed to parse arguments as literal values: {name!r}.") from None
        expr = expr.func
    return expr.id if isinstance(expr, ast.Name) else None


def _no_attribute(module: ModuleType, attr: str) -> str:
    """The line for a name the module lacks, suggesting its Flask app or factory that is spelt most like it."""
    from flask import Flask

    package = module.__name__.split(".", 1)[0]

    def is_factory(key: str, value: object) -> bool:
        # One of the module's own functions (or its package's), or one Flask itself would call.
        if not inspect.isfunction(value):
            return False
        return key in FACTORY_NAMES or (value.__module__ or "").split(".", 1)[0] == package

    candidates = [
        key
        for key, value in vars(module).items()
        if not key.startswith("_") and (isinstance(value, Flask) or is_factory(key, value))
    ]
    problem = f"module {module.__name__!r} has no attribute {attr!r}"
    close = difflib.get_close_matches(attr, candidates, n=1)
    if close:
        return f"{problem}; did you mean {close[0]!r}?"
    # "Use 'module:name'" says nothing to someone who wrote one: show the names that would work.
    apps = [f"'{module.__name__}:{key}'" for key in candidates if isinstance(vars(module)[key], Flask)]
    factories = [f"'{module.__name__}:{key}()'" for key in FACTORY_NAMES if key in candidates]
    if not apps + factories:
        return f"{problem}; name the module's Flask app or factory, as in '{module.__name__}:app'"
    names = (apps + factories)[:3]
    return f"{problem}; it holds {' and '.join(names)}: pass {'it' if len(names) == 1 else 'one of them'} instead"


# The fix for a WSGI app that wraps Flask apps (Flask's "Application Dispatching" pattern): flaskprod reads the
# Flask app itself (its config, static folders, routes), and the app can mount the others in its own wsgi_app.
_NAME_THE_FLASK_APP = (
    "name the Flask app itself ('module:app'), and mount other WSGI apps on it: "
    "app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {'/prefix': other})"
)


def _is_other_wsgi_app(value: object) -> bool:
    """True for a WSGI callable that is no Flask app (middleware, another framework), not for a factory."""
    from flask import Flask

    return callable(value) and not isinstance(value, (Flask, type)) and not inspect.isroutine(value)


def _is_blueprint(value: object) -> bool:
    from flask import Blueprint

    return isinstance(value, Blueprint)


def _blueprint_named(ref: AppRef) -> str:
    """The line for a Blueprint named as the app (Flask said only that no valid app was obtained), suggesting the
    app or factory of the Blueprint's top-level package when it has one, as a project's __init__.py does."""
    from flask import Flask

    top = ref.module.partition(".")[0]
    package = vars(sys.modules[top]) if top in sys.modules else {}
    found = [f"'{top}:{name}()'" for name in FACTORY_NAMES if inspect.isfunction(package.get(name))]
    found += [f"'{top}:{name}'" for name, value in package.items() if isinstance(value, Flask)]
    fix = f"pass {found[0]}" if found else "name the Flask app that registers it, or its factory (module:create_app())"
    return f"{ref.import_string!r} is a Blueprint, not a Flask app: {fix}"


def with_origin(message: str, ref: AppRef) -> str:
    """message about loading ref, saying where its name came from when the user named no app (FLASK_APP)."""
    return message if ref.origin is None else f"{message} (the app {ref.origin} names)"


def load(ref: AppRef, *, runs_ignored: bool = True) -> Flask:
    """Import ref's module and return its Flask app; every failure is one DiscoveryError line.

    A FlaskprodError raised by the app itself (a ConfigurationError for a weak SECRET_KEY) passes
    through unchanged, and so does the refusal of an app that made itself unsafe after Production(app);
    any other exception from the user's code becomes a DiscoveryError whose __cause__ keeps the traceback
    for whoever wants to print it. An app.run() the import calls is ignored with a line on stderr, as
    `flask run` does (runs_ignored=False leaves Flask.run to the caller: check records each call).
    """
    try:
        with _runs_ignored() if runs_ignored else contextlib.nullcontext():
            app = _load(ref)
    except DiscoveryError as exc:
        if ref.origin is None:
            raise
        raise DiscoveryError(with_origin(str(exc), ref)) from exc.__cause__
    from .runtime.extension import settle_as_loaded  # the app's runtime, loaded with the app
    from .runtime.mounted import probes_at_root

    settle_as_loaded(app)
    probes_at_root(app)
    return app


def _refuse_shadowed(ref: AppRef, imported: ModuleType) -> None:
    """A DiscoveryError when the app's top-level name was a module Python had imported before the app's import (one
    it imports as it starts: site, io, encodings), other than the project's own of that name, which is then never
    imported: what followed was "has no attribute 'create_app'", about Python's module."""
    top = ref.module.partition(".")[0]
    root = Path(ref.path)
    local = next((p for p in (root / top / "__init__.py", root / f"{top}.py") if p.is_file()), None)
    where = getattr(imported, "__file__", None)
    if local is None or (where is not None and Path(where).resolve().is_relative_to(root.resolve())):
        return  # the project's own, imported before (built in place: app.cpython-311-x86_64-linux-gnu.so)
    raise DiscoveryError(
        f"{top!r} names a module Python had already imported ({where or 'built in'}), so the project's "
        f"{local.relative_to(root)} is never imported: rename the project's {top} (and its imports)"
    )


@contextlib.contextmanager
def runs_replaced(called: Callable[[Path, int], None]) -> Iterator[None]:
    """Flask.run, for the duration, a stand-in that tells called the file and line it was called from, and
    returns: what an app.run() made while the app is imported becomes is the caller's to say."""
    from flask import Flask

    def run(self: Flask, *args: object, **kwargs: object) -> None:
        caller = sys._getframe(1)
        called(Path(caller.f_code.co_filename).absolute(), caller.f_lineno)

    original = Flask.run
    Flask.run = run  # type: ignore[method-assign]
    try:
        yield
    finally:
        Flask.run = original  # type: ignore[method-assign]


def _runs_ignored() -> contextlib.AbstractContextManager[None]:
    """Flask.run ignored with a line saying where it was called: an app.run() outside an `if __name__ ==
    "__main__":` guard would start Flask's development server inside the production one, which then waited for it
    until proxy.ready_timeout and blamed a database."""

    def say(path: Path, line: int) -> None:
        print(
            f"flaskprod: ignored the call to app.run() at {path}:{line}, made while the app was imported: it starts "
            "Flask's development server; put it under `if __name__ == \"__main__\":` (flaskprod check: FP-P001)",
            file=sys.stderr,
            flush=True,
        )

    return runs_replaced(say)


def _load(ref: AppRef) -> Flask:
    from flask.cli import NoAppException, find_app_by_string, find_best_app

    _first_on_sys_path(ref.path)
    imported = sys.modules.get(ref.module.partition(".")[0])  # before the app's import: Python's own, if any
    try:
        module = importlib.import_module(ref.module)
    except ImportError as exc:
        if _missing_is_target(exc, ref.module):
            fix = _src_layout_hint(ref, exc.name) or NOT_FOUND_FIX
            raise DiscoveryError(f"could not import {ref.module!r}: {exc}{fix}") from None
        # A missing dependency: the one line names it, a traceback would add nothing.
        raise DiscoveryError(f"error while importing {ref.module!r}: {_one_line(exc)}") from None
    except FlaskprodError:
        raise
    except Exception as exc:
        raise DiscoveryError(f"error while importing {ref.module!r}: {_one_line(exc)}{_unread(exc)}") from exc
    if imported is not None:
        _refuse_shadowed(ref, imported)

    attr: str | None = None
    try:
        if ref.name is None:
            return find_best_app(module)
        attr = _attribute_named(ref.name)
        if attr is not None and not hasattr(module, attr):
            raise DiscoveryError(_no_attribute(module, attr))
        if attr == ref.name.strip() and _is_other_wsgi_app(found := getattr(module, attr)):
            raise DiscoveryError(
                f"{ref.import_string!r} is a {type(found).__name__}, not a Flask app; {_NAME_THE_FLASK_APP}"
            )
        if attr == ref.name.strip() and _is_blueprint(getattr(module, attr)):
            raise DiscoveryError(_blueprint_named(ref))
        return find_app_by_string(module, ref.name)
    except NoAppException as exc:
        message = " ".join(str(exc).split())
        # A factory that returned something else: its wrapper of the Flask app, most likely.
        if message.startswith("A valid Flask application was not obtained") and "(" in (ref.name or ""):
            factory = getattr(module, attr) if attr is not None else None
            if factory is not None and _returns_nothing(factory):
                message = f"{message.rstrip('.')}: {attr}() returns None; end it with `return app`"
            else:
                message = f"{message.rstrip('.')}; {_NAME_THE_FLASK_APP}"
        elif message.startswith("A valid Flask application was not obtained") and attr == (ref.name or "").strip():
            # A name bound to no app (None, a number, a database object): Flask's line names no fix.
            kind = type(value := getattr(module, attr or "")).__name__
            found = "None" if value is None else f"a{'n' * (kind[0] in 'aeiou')} {kind}"
            message = (f"{ref.import_string!r} is {found}, not a Flask app: name the module's Flask app or "
                       f"factory instead, as in '{module.__name__}:create_app()'")  # fmt: skip
        elif message.endswith("could not be called with the specified arguments.") and attr is not None:
            message = f"{message.rstrip('.')}: it takes {_signature(getattr(module, attr))}; pass arguments that fit"
        raise DiscoveryError(message) from None
    except FlaskprodError:
        raise
    except Exception as exc:
        raise DiscoveryError(f"error while loading {ref.import_string!r}: {_one_line(exc)}{_unread(exc)}") from exc


def _unread(exc: Exception) -> str:
    """'; what to do' when the app's own error names a setting only a dotenv file here holds (a KeyError for the
    config key from_prefixed_env() would have read from it), which `flask run` loads and flaskprod does not, or a
    variable it read with os.environ[...] that is set nowhere here."""
    return unread_dotenv(_one_line(exc), Path.cwd()) or _unset_variable(exc)


def _unset_variable(exc: Exception) -> str:
    """'; what to do' for a KeyError os.environ raised: a DATABASE_URL that `up --with postgres` or the deployment
    gives the app, unset in the shell that runs init or build, which only import the app to learn its shape."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if not isinstance(exc, KeyError) or tb is None or tb.tb_frame.f_code is not os._Environ.__getitem__.__code__:
        return ""
    return (
        f"; the app reads the environment variable {exc.args[0]}, which is not set here: export it where flaskprod "
        "runs (init and build only import the app: any value it accepts will do)"
    )


def _returns_nothing(factory: object) -> bool:
    """True when factory's source returns nothing but None (a `return app` forgotten); False when unknown."""
    try:
        tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(factory)))  # type: ignore[arg-type]
    except (OSError, TypeError, SyntaxError, ValueError):
        return False
    function = tree.body[0] if tree.body else None
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
    pending: list[ast.AST] = list(function.body)
    while pending:  # the factory's own statements, not those of functions defined in it (its views)
        node = pending.pop()
        if isinstance(node, ast.Return) and not (node.value is None or _is_none(node.value)):
            return False
        if not isinstance(node, nested):
            pending.extend(ast.iter_child_nodes(node))
    return True


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _signature(factory: object) -> str:
    """factory's parameters, e.g. create_app(config_name='production'), without annotations (which a module under
    `from __future__ import annotations` would show quoted); "other arguments" when they cannot be read."""
    try:
        signature = inspect.signature(factory)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "other arguments"
    bare = signature.replace(
        parameters=[p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()],
        return_annotation=inspect.Signature.empty,
    )
    return f"{getattr(factory, '__name__', 'it')}{bare}"


def find_app(target: str | None, cwd: str | os.PathLike[str] | None = None) -> Flask:
    """resolve() then load(): the Flask app named by target, or found in cwd."""
    return load(resolve(target, cwd))
