"""What the checks look at: the spec, the loaded app (when it loads), the environment and the project's files."""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import sys
import tokenize
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .. import discovery
from ..errors import ConfigurationError, DiscoveryError, FlaskprodError
from ..servers.loading import exit_message, project_root
from ..spec import Spec, env_for

if TYPE_CHECKING:
    from flask import Flask

    from ..runtime import Production
    from ..runtime.extension import Installed

T = TypeVar("T")

# Directories that are not the project's own files: environments, caches, dependencies, build output, tests.
SKIP_DIRS = frozenset(
    {"node_modules", "__pycache__", "site-packages", "build", "dist", "htmlcov", "venv", "tests", "test"}
)
# Only files a deployment reads; documentation (which may name a pitfall to warn about it) is not scanned.
SCANNED_SUFFIXES = frozenset(
    {".py", ".yml", ".yaml", ".conf", ".ini", ".cfg", ".toml", ".env", ".flaskenv", ".sh", ".service", ".dockerfile"}
)
SCANNED_NAMES = ("Dockerfile", "Containerfile", "Procfile", ".env", ".flaskenv")
MAX_FILE_BYTES = 1_000_000
MAX_FILES = 5_000


def _skipped_dir(path: Path) -> bool:
    name = path.name
    return (
        name.startswith(".")
        or name in SKIP_DIRS
        or name.endswith(".egg-info")
        or (path / "pyvenv.cfg").exists()  # a virtualenv, whatever its name
    )


def _scanned_file(name: str) -> bool:
    if name.startswith(("test_", "conftest")) or name.endswith("_test.py"):
        return False
    return name.startswith(SCANNED_NAMES) or Path(name).suffix in SCANNED_SUFFIXES


def call_name(node: ast.Call) -> str:
    """The called name: `run` for app.run(...), `getenv` for getenv(...); "" for anything else."""
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def variable_read(node: ast.AST) -> str | None:
    """The environment variable node reads, when it is os.environ.get('X'), os.getenv('X'), os.environ['X'] or
    env.str('X') (environs)."""
    if isinstance(node, ast.Call) and call_name(node) in ("get", "getenv", "str") and node.args:
        first = node.args[0]
    elif isinstance(node, ast.Subscript) and isinstance(node.value, (ast.Attribute, ast.Name)):
        environ = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
        if environ != "environ":
            return None
        first = node.slice
    else:
        return None
    if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.isidentifier():
        return first.value
    return None


# Each module's nodes, walked once: a dozen checks each walk every module, and on a project of 2,000 modules
# those walks were most of check's time (16 of 23 s). Keyed by id, with the tree kept so the id stays its own.
_WALKED: dict[int, tuple[ast.Module, tuple[ast.AST, ...]]] = {}


def walk(tree: ast.AST) -> Iterable[ast.AST]:
    """ast.walk(tree): the same nodes in the same order, remembered for a whole module."""
    if not isinstance(tree, ast.Module):
        return ast.walk(tree)
    walked = _WALKED.get(id(tree))
    if walked is None:
        walked = _WALKED[id(tree)] = (tree, tuple(ast.walk(tree)))
    return walked[1]


@dataclass(frozen=True)
class ProjectFile:
    """A file of the project, by its path relative to the project directory."""

    path: Path
    rel: str

    @cached_property
    def text(self) -> str:
        """The file's text; a .py file decoded as Python reads it, by its coding line (PEP 263)."""
        try:
            data = self.path.read_bytes()
        except OSError:
            return ""
        encoding = "utf-8"
        if self.path.suffix == ".py":
            with contextlib.suppress(SyntaxError, LookupError):
                encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        try:
            return data.decode(encoding, errors="replace")
        except LookupError:
            return data.decode("utf-8", errors="replace")

    @cached_property
    def tree(self) -> ast.Module | None:
        """The parsed module for a .py file; None for other files and for source that does not parse (or nests
        deeper than the parser goes)."""
        if self.path.suffix != ".py":
            return None
        try:
            return ast.parse(self.text, filename=str(self.path))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None

    def at(self, line: int | None = None) -> str:
        """How a message names this file (and line)."""
        return self.rel if line is None else f"{self.rel}:{line}"

    def lines(self) -> Iterator[tuple[int, str]]:
        """(line number, line) pairs, numbered from 1."""
        return enumerate(self.text.splitlines(), start=1)

    def logical_lines(self) -> Iterator[tuple[int, str]]:
        """Lines with backslash continuations joined, numbered by their first (Dockerfiles, unit files)."""
        start = 0
        parts: list[str] = []
        for line, text in self.lines():
            if not parts:
                start = line
            elif not text.strip() or text.lstrip().startswith("#"):
                continue  # a comment or empty line inside a continued one: Docker and systemd drop it
            if text.rstrip().endswith("\\"):
                parts.append(text.rstrip()[:-1])
                continue
            parts.append(text)
            yield start, " ".join(parts)
            parts = []
        if parts:
            yield start, " ".join(parts)


# Words that mark a file, a directory or a Dockerfile stage as development's (Procfile.dev, Dockerfile.dev,
# docker-compose.override.yml, which `docker compose up` adds for local work, `FROM base AS development`):
# a dev server, a reloader or a fixed key there is where it belongs.
_DEVELOPMENT = frozenset({"dev", "devel", "develop", "development", "local", "debug", "test", "testing", "override"})


def for_development(name: str) -> bool:
    """True when a file, directory or stage name says it is for development."""
    return any(word in _DEVELOPMENT for word in re.split(r"[^a-z0-9]+", name.lower()))


def deployment_files(items: Iterable[ProjectFile]) -> Iterator[ProjectFile]:
    """The files of items that are not development's by their name or a directory's."""
    for item in items:
        if not any(for_development(part) for part in item.rel.split("/")):
            yield item


# The header every file `flaskprod build` and `up` render opens with. Those files are consistent with
# the spec by construction (the same spec set the app's side); the audit is for files people wrote.
_GENERATED_MARKERS = (b"written by `flaskprod build", b"written by `flaskprod up", b"rendered by flaskprod")


def _written_by_flaskprod(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(400)
    return any(marker in head for marker in _GENERATED_MARKERS)


def project_files(root: Path, limit: int = MAX_FILES) -> tuple[ProjectFile, ...]:
    """The files under root a deployment is made of, skipping environments, caches, build output and tests; the
    first limit of them, in walk order (a folder's files, then its folders, each by name)."""
    found: list[ProjectFile] = []
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        dirs[:] = sorted(d for d in dirs if not _skipped_dir(here / d))
        for name in sorted(files):
            path = here / name
            if not _scanned_file(name) or not path.is_file():
                continue
            with contextlib.suppress(OSError):
                if path.stat().st_size > MAX_FILE_BYTES or _written_by_flaskprod(path):
                    continue
            found.append(ProjectFile(path, path.relative_to(root).as_posix()))
            if len(found) >= limit:
                return tuple(found)
    return tuple(found)


@dataclass(frozen=True, kw_only=True)
class SettingsUnread:
    """app.config.from_envvar() failing as the app loads: its variable unset, or naming a file it cannot read."""

    variable: str
    where: str | None  # file:line of the call, in the project
    value: str | None = None  # what the variable names; None when it is unset
    reason: str = ""  # why that file could not be read


def settings_unread(exc: BaseException, root: Path) -> SettingsUnread | None:
    """What failed when exc comes from app.config.from_envvar(): the app's start depends on a variable of the
    environment it runs in, which is not check's to name (Flask's docs' own pattern: a config file named by a
    variable). None for any other failure."""
    tb, where, call = exc.__traceback__, None, None
    while tb is not None and call is None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "from_envvar" and frame.f_globals.get("__name__") == "flask.config":
            call = frame
        else:
            path = Path(frame.f_code.co_filename)
            if path.is_absolute() and path.is_relative_to(root) and "site-packages" not in path.parts:
                where = f"{path.relative_to(root).as_posix()}:{tb.tb_lineno}"
        tb = tb.tb_next
    variable = None if call is None else call.f_locals.get("variable_name")
    if not isinstance(variable, str):
        return None
    value = os.environ.get(variable) or None
    if value is None and isinstance(exc, RuntimeError):
        return SettingsUnread(variable=variable, where=where)
    if value is not None and isinstance(exc, OSError):
        # from_pyfile wraps the reason: "Unable to load configuration file (No such file or directory)".
        reason = str(exc.strerror or exc).removeprefix("Unable to load configuration file (").removesuffix(")")
        return SettingsUnread(variable=variable, where=where, value=value, reason=reason)
    return None


@dataclass(frozen=True, kw_only=True)
class VariableUnset:
    """os.environ["NAME"] failing as the app loads: the app needs a variable this environment does not set."""

    variable: str
    where: str | None  # file:line of the read, in the project


def variable_unset(exc: BaseException, root: Path) -> VariableUnset | None:
    """What failed when exc is the KeyError of os.environ["NAME"] read as the app loads (the usual way to fail on a
    missing SECRET_KEY or DATABASE_URL): a variable of the environment it runs in, which check cannot know. None for
    any other failure."""
    if not isinstance(exc, KeyError) or len(exc.args) != 1 or not isinstance(exc.args[0], str):
        return None
    tb, where, last = exc.__traceback__, None, None
    while tb is not None:
        frame = tb.tb_frame
        path = Path(frame.f_code.co_filename)
        if path.is_absolute() and path.is_relative_to(root) and "site-packages" not in path.parts:
            where = f"{path.relative_to(root).as_posix()}:{tb.tb_lineno}"
        last, tb = frame, tb.tb_next
    raised_by_environ = last is not None and last.f_globals.get("__name__") == "os" and last.f_code.co_name == (
        "__getitem__"
    )
    if not raised_by_environ or exc.args[0] in os.environ:
        return None
    return VariableUnset(variable=exc.args[0], where=where)


@dataclass(frozen=True, kw_only=True)
class Context:
    """Everything a check may look at; app is None when the app refused to start (see refused)."""

    spec: Spec
    ref: discovery.AppRef
    root: Path  # the project directory whose files are scanned
    app: Flask | None
    refused: str | None = None  # the ConfigurationError the app raised instead of starting
    unloaded: str | None = None  # why, loaded again with that refusal off, it did not load either (see runner)
    environ: Mapping[str, str] = field(default_factory=dict)
    runs: tuple[tuple[Path, int], ...] = ()  # (file, line) of each app.run() the import called
    settings_unread: SettingsUnread | None = None  # from_envvar() failed, so the app did not load
    variable_unset: VariableUnset | None = None  # os.environ["NAME"] failed, so the app did not load

    @property
    def app_label(self) -> str:
        return self.ref.import_string

    @cached_property
    def _scanned(self) -> tuple[ProjectFile, ...]:
        return project_files(self.root, MAX_FILES + 1)  # one more: were there more than MAX_FILES?

    @cached_property
    def files(self) -> tuple[ProjectFile, ...]:
        """The project's files the checks read: the first MAX_FILES, in walk order."""
        return self._scanned[:MAX_FILES]

    @property
    def files_cut(self) -> bool:
        """Whether there were files after the first MAX_FILES, which the checks did not read."""
        return len(self._scanned) > MAX_FILES

    @cached_property
    def app_file(self) -> ProjectFile | None:
        """The source file of the app's module, found without importing it."""
        base = Path(self.ref.path, *self.ref.module.split("."))
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                try:
                    rel = path.relative_to(self.root).as_posix()
                except ValueError:
                    rel = str(path)
                return ProjectFile(path, rel)
        return None

    @property
    def production(self) -> Production | None:
        """The Production extension installed on the app, if any."""
        from ..runtime.extension import EXTENSION_KEY

        return None if self.app is None else self.app.extensions.get(EXTENSION_KEY)

    @property
    def installed(self) -> Installed | None:
        """What Production's init_app made for the app (its spec, metrics, checks); None without it."""
        from ..runtime.extension import installed_on

        return None if self.app is None else installed_on(self.app)

    @property
    def effective_spec(self) -> Spec:
        """The spec the app runs with: what Production's init_app ran with for it when installed, else the one given
        to check."""
        installed = self.installed
        return installed.spec if installed is not None else self.spec

    def once(self, derive: Callable[[Context], Iterable[T]]) -> tuple[T, ...]:
        """derive(self), worked out on first use: what several checks read (the keys written in every module, the
        settings in every deployment file) is read from the files once."""
        done: dict[Any, tuple[Any, ...]] = self.__dict__.setdefault("_once", {})
        if derive not in done:
            done[derive] = tuple(derive(self))
        return done[derive]

    def python_files(self) -> Iterator[tuple[ProjectFile, ast.Module]]:
        for item in self.files:
            if item.tree is not None:
                yield item, item.tree

    def files_named(self, *patterns: str) -> Iterator[ProjectFile]:
        """Project files whose name matches one of the glob patterns (case-insensitive)."""
        for item in self.files:
            name = item.path.name.lower()
            if any(Path(name).match(pattern.lower()) for pattern in patterns):
                yield item


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """os.environ with values set (None: unset) for the duration, then as it was."""
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def stand_in_environ() -> dict[str, str | None]:
    """What a refused app is loaded with to read the rest of its config: Production(app)'s refusal off, and
    nothing else changed, so that the checks see the key and debug mode the app really has (a throwaway key
    or FLASK_DEBUG=false would hide a weak key or debug set in its code) and name each."""
    return {"FLASKPROD_SECURITY__REFUSE_UNSAFE": "false"}


def load_context(
    spec: Spec, *, cwd: str | os.PathLike[str] | None = None, refused: str | None = None
) -> Context:
    """Find and load the app named by the spec; a DiscoveryError when there is none, or when it cannot be
    imported or exits while importing; refused when it will not start.

    The app is imported the way a server would, with the spec's command-line flags as FLASKPROD_*
    variables (as `serve` passes them on). Whatever the import prints goes to stderr so --format json
    stays parseable. A stray app.run() returns at once instead of serving (see recording_runs).
    refused is why the app refused to start as configured: it is then loaded with stand_in_environ(), so
    that its other checks still run, and the context says it refused.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    ref = discovery.resolve(spec.app.target, base)
    root = project_root(ref, base)
    app: Flask | None = None
    unread: SettingsUnread | None = None
    unset: VariableUnset | None = None
    env: dict[str, str | None] = {**env_for(spec.flagged()), "FLASK_RUN_FROM_CLI": "true"}
    if refused is not None:
        env.update(stand_in_environ())
    runs: list[tuple[Path, int]] = []
    with patched_environ(env), contextlib.redirect_stdout(sys.stderr), recording_runs(runs):
        try:
            app = discovery.load(ref, runs_ignored=False)  # recording_runs records them
        except ConfigurationError as exc:
            refused = refused or str(exc)
        except DiscoveryError as exc:
            # A config file from_envvar() cannot load: a finding (FP-C017) beside the files' checks, not a crash.
            unread = None if exc.__cause__ is None else settings_unread(exc.__cause__, root)
            unset = None if exc.__cause__ is None or unread is not None else variable_unset(exc.__cause__, root)
            if unread is None and unset is None:
                raise
        except FlaskprodError:
            raise
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: the app's own, not check's to obey
            raise DiscoveryError(exit_message(ref.import_string, exc, root)) from None
    return Context(
        spec=spec,
        ref=ref,
        root=root,
        app=app,
        refused=refused,
        environ=dict(os.environ),
        runs=tuple(runs),
        settings_unread=unread,
        variable_unset=unset,
    )


def unloaded_context(spec: Spec, cwd: Path, *, refused: str, unloaded: str) -> Context:
    """The context of an app that refused to start and could not be loaded past its refusal either (unloaded says
    why): the refusal, the spec and the project's files, no app."""
    ref = discovery.resolve(spec.app.target, cwd)
    root = project_root(ref, cwd)
    environ = dict(os.environ)
    return Context(spec=spec, ref=ref, root=root, app=None, refused=refused, unloaded=unloaded, environ=environ)


def recording_runs(runs: list[tuple[Path, int]]) -> contextlib.AbstractContextManager[None]:
    """Flask.run replaced, for the duration, by a stand-in that records its caller's file and line in runs and
    returns. Flask's own returns too under FLASK_RUN_FROM_CLI (kept as a backstop), but prints a line about
    ignoring the call that would only repeat, below the report, what FP-P001 reports with its place."""
    return discovery.runs_replaced(lambda path, line: runs.append((path, line)))


def is_main_guard(test: ast.expr) -> bool:
    """`__name__ == "__main__"`, either way round."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
    )
