"""Security checks: debug and testing modes, the SECRET_KEY, and the session cookie's flags."""

from __future__ import annotations

import ast
import functools
import json
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from flask import Flask

from ..dotenv import bindings
from ..runtime.headers import ProductionSessionInterface
from ..runtime.secrets import FIX, HOW_TO_GENERATE, secret_key_problem
from ..spec import ENV_PREFIX
from . import dockerfiles
from .compose import development_lines, env_files
from .constants import Assigned, Scope, constant_through, is_literal, literals, modules
from .context import (
    MAX_FILE_BYTES,
    Context,
    ProjectFile,
    call_name,
    deployment_files,
    for_development,
    is_main_guard,
    variable_read,
    walk,
)
from .environ_reads import dynaconf_switches, left_to_development_default
from .registry import ERROR, WARNING, Found, app_check, check


@check(
    "FP-S001",
    ERROR,
    "debug mode is on: errors propagate instead of answering 500, templates are re-read on every request, and "
    "under app.run() the Werkzeug debugger runs code for whoever reaches it",
    hint="unset FLASK_DEBUG and DEBUG in the production config; use `flask run --debug` for local development",
)
def debug_mode(context: Context) -> Iterator[Found]:
    app = context.app
    if app is not None and app.debug:
        yield _debug_source(context)
    for item, settings in context.once(_deployment_settings):
        testing = next((s for s in settings if s.testing and s.on and _read_into_config(s, context)), None)
        for setting in settings:
            if not setting.testing and setting.on:
                text = _debug_deployed(setting, context, testing)
                yield Found(obj=item.at(setting.line), text=text, hint=_DEBUG_FIX.format(name=setting.name))


_DEBUG_BY_DEFAULT_CONFIG = (
    "{choice.variable} (read at {choice.read_at}) picks the config the app loads (app.config.from_object at "
    "{choice.loaded_at}) and is unset where check runs, so the app loaded the code's default, {choice.default!r}, "
    "which turns debug on: set {choice.variable} to the production config wherever the app runs, and where check "
    "runs to audit that config, or make production the code's default; leave the development config's DEBUG as it is"
)
_DYNACONF_DEVELOPMENT = (
    "FlaskDynaconf ({at}) picks its settings environment by {variable}, unset where check runs, so it loaded "
    "[development], which turns debug on: set {variable}=production wherever the app runs, and where check runs to "
    "audit that environment"
)
_DEBUG_IN_CODE = (
    "the app turns debug on itself, not FLASK_DEBUG: remove `DEBUG = True`, `app.debug = True` or "
    "`app.config[\"DEBUG\"] = True` from its production code; use `flask run --debug` for local development"
)


def _debug_source(context: Context) -> Found:
    """Where debug comes from, and the fix: FLASK_DEBUG (the check's own hint), a variable the app's
    from_prefixed_env("MYAPP") reads (MYAPP_DEBUG), a variable left unset that picks the config (the code's
    development default loaded, as FP-C021 reads the choice), or the app's own code."""
    names, from_dotenv = _debug_from_loaded_dotenv(context)
    value = context.environ.get("FLASK_DEBUG", "")
    if value and value.lower() not in ("0", "false", "no"):  # as Flask reads it
        # The shell's, unless the load of a .env that sets it put it there.
        return Found(obj=context.app_label, hint=from_dotenv if "FLASK_DEBUG" in names else None)
    for prefix in _custom_prefixes(context):
        name = f"{prefix}_DEBUG"
        if name in context.environ and _Setting(line=0, name=name, value=context.environ[name]).on:
            return Found(obj=context.app_label, hint=_PREFIXED_DEBUG.format(name=name, prefix=prefix))
    for variable, at in context.once(dynaconf_switches):
        if variable not in context.environ:  # dynaconf's [development], its default: the switch is what to set
            return Found(obj=_set_at(context, "DEBUG"), hint=_DYNACONF_DEVELOPMENT.format(variable=variable, at=at))
    choice = left_to_development_default(context)
    # The development config turns debug on, as it should: the variable is what to set.
    if choice is not None:
        return Found(obj=_set_at(context, "DEBUG"), hint=_DEBUG_BY_DEFAULT_CONFIG.format(choice=choice))
    where = _set_at(context, "DEBUG")
    # A line of the code's own that turns it on is the cause; else what the loaded .env sets for development.
    hint = _DEBUG_IN_CODE if where != context.app_label or from_dotenv is None else from_dotenv
    return Found(obj=where, hint=hint)


# The names a development .env turns debug on by: Flask's, a settings class's (pydantic-settings' debug: bool), the
# environment name an app derives it from (cookiecutter-flask's DEBUG = ENV == "development").
_DEBUG_NAMES = frozenset({"FLASK_DEBUG", "DEBUG", "APP_DEBUG"})
_ENV_NAMES = frozenset({"FLASK_ENV", "ENV", "APP_ENV"})
_DOTENV_DEBUG = (
    "{file} sets {names} ({lines}), and the app's own code loads {file} ({loaded_at}): `flaskprod up` links it into "
    "its release, so debug is on there too (the built targets leave {file} out); remove {them} from {file} and use "
    "`flask run --debug` for local development"
)


def _debug_from_loaded_dotenv(context: Context) -> tuple[list[str], str | None]:
    """The names, and FP-S001's hint, when a dotenv file the app's own code loads, and the built targets leave out,
    turns debug on (FLASK_DEBUG=1, DEBUG=true, FLASK_ENV=development); none when none does. Its FLASK_DEBUG counts
    unless the environment check runs in holds another value (the shell's, then)."""
    from . import dotenv_files  # it reads this module's deployment files

    loaders = dotenv_files.loaders(context)
    for item in dotenv_files.flask_dotenv_files(context):
        loaded_at = loaders.get(item.path.name)
        if loaded_at is None or not dotenv_files.left_out_of_builds(item.path.name):
            continue
        found = [b for b in bindings(item.text) if b.value is not None and _turns_debug_on(b.name, b.value)]
        shell = context.environ.get("FLASK_DEBUG")
        if shell is not None and all(b.value != shell for b in found if b.name == "FLASK_DEBUG"):
            found = [b for b in found if b.name != "FLASK_DEBUG"]
        if found:
            return [b.name for b in found], _DOTENV_DEBUG.format(
                file=item.rel,
                names=", ".join(b.name for b in found),
                lines=", ".join(item.at(b.line) for b in found),
                loaded_at=loaded_at,
                them="it" if len(found) == 1 else "them",
            )
    return [], None


def _turns_debug_on(name: str, value: str) -> bool:
    if name in _DEBUG_NAMES:
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return name in _ENV_NAMES and value.strip().lower() in ("development", "dev", "debug")


def _set_at(context: Context, name: str) -> str:
    """Where the app's code turns DEBUG or TESTING (name) on (app.config["DEBUG"] = True, app.debug = True,
    DEBUG = True in a config class): the one such line outside files named for development, else the app (several:
    which one is in effect is the app's to say)."""
    found = [
        item.at(line)
        for item, tree, _ in config_modules(context)
        if name in item.text or name.lower() in item.text
        if not for_development(item.rel)
        for line in _lines_turning_on(tree, name)
    ]
    return found[0] if len(found) == 1 else context.app_label


def _lines_turning_on(tree: ast.Module, name: str) -> Iterator[int]:
    """Lines that set name (DEBUG, TESTING; or app.debug, app.testing) to True as the module is imported: not under
    `if __name__ == "__main__"`, which a server's import does not run."""
    guarded: set[int] = set()
    for node in walk(tree):
        if isinstance(node, ast.If) and is_main_guard(node.test):
            guarded.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    for node in walk(tree):
        lines: list[int] = []
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and _is_true(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            lines += [node.lineno] if any(_is_config_target(t, name) for t in targets) else []
        elif isinstance(node, ast.Call):
            lines += [kw.value.lineno for kw in node.keywords if kw.arg == name and _is_true(kw.value)]
        elif isinstance(node, ast.Dict):
            pairs = zip(node.keys, node.values, strict=True)
            lines += [v.lineno for k, v in pairs if isinstance(k, ast.Constant) and k.value == name and _is_true(v)]
        yield from (line for line in lines if line not in guarded)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _is_config_target(node: ast.expr, name: str) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in (name, name.lower())
    return _is_named(node, (name,))


_PREFIXED_DEBUG = (
    "{name} turns debug on: the app's app.config.from_prefixed_env(\"{prefix}\") reads it into DEBUG; unset it "
    "where the app runs, and use `flask run --debug` for local development"
)


@check(
    "FP-S002",
    ERROR,
    "TESTING is on: errors propagate instead of answering 500, and Production(app) skips its safety refusal",
    hint="set TESTING only in the test configuration (TESTING = False in production)",
)
def testing_mode(context: Context) -> Iterator[Found]:
    if context.app is not None and context.app.testing:
        yield Found(obj=context.app_label if _testing_from_environ(context) else _set_at(context, "TESTING"))
    deployed = [
        (item, setting)
        for item, settings in context.once(_deployment_settings)
        for setting in settings
        if setting.testing and setting.on and _read_into_config(setting, context)
    ]
    for item, setting in deployed:
        text = _TESTING_DEPLOYED.format(setting=setting, prefix=setting.prefix)
        yield Found(obj=item.at(setting.line), text=text, hint=_TESTING_FIX.format(name=setting.name))


def _testing_from_environ(context: Context) -> bool:
    """True when a variable here can have turned TESTING on (FLASK_TESTING, MYAPP_TESTING read by the app's
    from_prefixed_env): then no line of the code is where it was."""
    for prefix in ("FLASK", *_custom_prefixes(context)):
        name = f"{prefix}_TESTING"
        setting = _Setting(line=0, name=name, value=context.environ.get(name, ""))
        if setting.on and _read_into_config(setting, context):
            return True
    return False


_DEBUG_FIX = (
    "remove {name} from the deployment (or set it to 0); keep debug to development: `flask run --debug`, "
    "docker-compose.override.yml, a service under a dev profile or a development stage of the Dockerfile"
)
_TESTING_DEPLOYED = (
    "{setting} turns TESTING on where this file deploys the app (it reads {prefix}_* variables into its config): "
    "errors propagate instead of answering 500, and Production(app) skips its safety refusal"
)
_TESTING_FIX = (
    "remove {name} from the deployment (or set it to false); set TESTING only in the test configuration"
)


def _debug_deployed(setting: _Setting, context: Context, testing: _Setting | None) -> str:
    """What FLASK_DEBUG in a deployment file does to the app: Production(app) refuses to start it, unless
    TESTING, set there too, makes it skip its refusal; without Production(app) it serves in debug mode."""
    deployed = f"{setting} turns debug mode on where this file deploys the app"
    # The check's own load of a refused app turns the refusal off (stand_in_environ): refused says it was on.
    refuses = context.production is not None and (
        context.refused is not None or context.effective_spec.security.refuse_unsafe
    )
    if refuses and not testing:
        return f"{deployed}, and Production(app) refuses to start in debug mode: the app will not start there"
    skipped = f", and {testing.name} there makes Production(app) skip its refusal" if refuses and testing else ""
    return (
        f"{deployed}{skipped}: errors propagate instead of answering 500, templates are re-read on every request, "
        "and under app.run() the Werkzeug debugger runs code for whoever reaches it"
    )


def _read_into_config(setting: _Setting, context: Context) -> bool:
    """True when the app reads the variable into its config. Flask itself reads FLASK_DEBUG alone: FLASK_TESTING
    only from_prefixed_env reads (Production(app)'s too), and MYAPP_TESTING the app's from_prefixed_env("MYAPP")."""
    return setting.prefix != "FLASK" or _reads_flask_variables(context)


def _custom_prefixes(context: Context) -> tuple[str, ...]:
    """The prefixes other than FLASK the app gives app.config.from_prefixed_env() ("MYAPP" reads MYAPP_DEBUG into
    DEBUG), as written in its source."""
    return context.once(_prefixes_given)


def _prefixes_given(context: Context) -> Iterator[str]:
    found: set[str] = set()
    for item, tree in context.python_files():
        if "from_prefixed_env" not in item.text:
            continue
        for node in walk(tree):
            if isinstance(node, ast.Call) and call_name(node) == "from_prefixed_env" and _on_config(node):
                given = _argument(node, 0, "prefix")
                scope = modules(context).of(item, tree)
                strings = [] if given is None else [s for s in literals(given, scope) if isinstance(s, str)]
                found.update(s for s in strings if s != "FLASK" and re.fullmatch(r"[A-Za-z0-9_]+", s))
    yield from sorted(found)


def _reads_flask_variables(context: Context) -> bool:
    """True when the app reads FLASK_* variables into its config (FLASK_TESTING=true into TESTING): Production(app)
    with app.env_config on, or the app's own app.config.from_prefixed_env()."""
    if context.production is not None and context.effective_spec.app.env_config:
        return True
    return any(
        isinstance(node, ast.Call) and call_name(node) == "from_prefixed_env"
        for item, tree in context.python_files()
        if "from_prefixed_env" in item.text
        for node in walk(tree)
    )


@dataclass(frozen=True, kw_only=True)
class _Setting:
    """FLASK_DEBUG or FLASK_TESTING (or MYAPP_DEBUG, MYAPP_TESTING for from_prefixed_env("MYAPP")) given a value in
    a deployment file."""

    line: int
    name: str
    value: str

    def __str__(self) -> str:
        return f"{self.name}={self.value}"

    @property
    def prefix(self) -> str:
        return self.name.rpartition("_")[0]

    @property
    def testing(self) -> bool:
        return self.name.endswith("_TESTING")

    @property
    def on(self) -> bool:
        value = self.value.strip().lower()
        if self.name == "FLASK_DEBUG":  # as Flask's get_debug_flag reads it
            return value not in ("", "0", "false", "no")
        return value not in ("", "0", "false", "no", "off", "null")  # from_prefixed_env's JSON, then flaskprod's


@functools.lru_cache(maxsize=8)
def _setting_patterns(prefixes: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The settings' names for the prefixes (FLASK, and those the app gives from_prefixed_env); NAME=value in a
    Compose list, a systemd Environment= or before a command (env NAME=1 gunicorn ...), NAME: value in a Compose or
    app.yaml map; a Kubernetes env entry's name."""
    return _assignment_patterns("|".join(f"{re.escape(prefix)}_(?:DEBUG|TESTING)" for prefix in prefixes))


def _assignment_patterns(names: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """A variable's name (names: a regex of them); its assignment in a Compose file, a systemd unit or a command;
    its Kubernetes env entry's name."""
    return (
        re.compile(names),
        re.compile(rf"""(?:^\s*-?\s*|\s|=)["']?({names})["']?\s*[=:]\s*(.*)$"""),
        re.compile(rf"""^\s*-?\s*name\s*:\s*["']?({names})["']?\s*$"""),
    )


def _deployment_settings(context: Context) -> Iterator[tuple[ProjectFile, list[_Setting]]]:
    """FLASK_DEBUG and FLASK_TESTING (and a from_prefixed_env prefix's) with a value in each deployment file: a
    Dockerfile's ENV (but a development
    stage's), Compose and Kubernetes env (but a development profile's service), systemd Environment=. Not in
    files named for development (docker-compose.override.yml) nor dot-files (.gitlab-ci.yml: a CI job's tests)."""
    yield from _settings_in_deployment(context, _setting_patterns(("FLASK", *_custom_prefixes(context))))


def deployed_values(context: Context, name: str) -> Iterator[tuple[ProjectFile, int, str]]:
    """(file, line, value) of each literal value a deployment file gives the variable name, read where FP-S001 reads
    FLASK_DEBUG: a Dockerfile's ENV (but a development stage's), Compose and Kubernetes env (but a development
    profile's service), systemd Environment=; and in the project's files that Compose's env_file: and systemd's
    EnvironmentFile= give the app. What the app runs with there, which check's own environment lacks
    (FLASKPROD_PROXY__TRUSTED_HOPS set for the service in compose.yaml). A FLASKPROD_* name is matched as the spec
    reads it: the prefix as written, the section and name in any case."""
    names = _spellings(name)
    for item, settings in _settings_in_deployment(context, _assignment_patterns(names)):
        for setting in settings:
            yield item, setting.line, setting.value
    assigned = re.compile(rf"""^\s*(?:export\s+)?({names})\s*=\s*(.*)$""")
    for item in context.once(env_files_read):
        for line, text in item.lines():
            found = assigned.match(text)
            if found and literal_value(found[2]):
                yield item, line, literal_value(found[2])


def _spellings(name: str) -> str:
    """A regex of the spellings of name that set it: FLASKPROD_PROXY__trusted_hops too, as spec.read_env_layer
    reads the section and name in any case."""
    if name.startswith(ENV_PREFIX):
        return re.escape(ENV_PREFIX) + "(?i:" + re.escape(name.removeprefix(ENV_PREFIX)) + ")"
    return re.escape(name)


def env_files_read(context: Context) -> Iterator[ProjectFile]:
    """The project's files the deployment reads into the app's environment: Compose's env_file: (but a development
    profile's service's), relative to the Compose file; systemd's EnvironmentFile=, an absolute path on the server,
    found as the longest tail of it that is a file in the project (/srv/notes/deploy/notes.env: deploy/notes.env)."""
    root = context.root.resolve()
    seen: set[Path] = set()
    for item in deployment_files(context.files_named("*.yml", "*.yaml", "*.service")):
        if item.path.name.startswith("."):
            continue
        if item.path.suffix == ".service":
            written = [m[1] for _, text in item.lines() if (m := _ENVIRONMENT_FILE.match(text))]
            candidates = [_project_tail(root, Path(path)) for path in written]
        else:
            candidates = [item.path.parent / path for path in env_files(item)]
        for candidate in candidates:
            path = None if candidate is None else _project_file(root, candidate)
            if path is not None and path not in seen:
                seen.add(path)
                yield ProjectFile(path, path.relative_to(root).as_posix())


# EnvironmentFile=/etc/app.env, or =-/etc/app.env (missing is fine): one file to a line.
_ENVIRONMENT_FILE = re.compile(r"""^\s*EnvironmentFile\s*=\s*-?["']?([^"'\s]+)""")


def _project_tail(root: Path, path: Path) -> Path | None:
    """The project's file a server's path names: the path as written when relative, else its longest tail that is
    a file under root."""
    if not path.is_absolute():
        return root / path
    parts = path.parts[1:]
    return next((root.joinpath(*parts[i:]) for i in range(len(parts)) if root.joinpath(*parts[i:]).is_file()), None)


def _project_file(root: Path, path: Path) -> Path | None:
    """path resolved, when it is a file of the project no larger than the checks read."""
    try:
        resolved = path.resolve()
        if resolved.is_relative_to(root) and resolved.is_file() and resolved.stat().st_size <= MAX_FILE_BYTES:
            return resolved
    except (OSError, ValueError):
        pass
    return None


def _settings_in_deployment(
    context: Context, patterns: tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]
) -> Iterator[tuple[ProjectFile, list[_Setting]]]:
    for item in deployment_files(context.files_named("*.yml", "*.yaml", "*.service", *dockerfiles.NAMES)):
        if item.path.name.startswith("."):
            continue
        if dockerfiles.is_dockerfile(item):
            settings = list(_image_settings(item, patterns[0]))
        else:
            settings = list(_file_settings(item, *patterns[1:]))
            if settings and item.path.suffix in (".yml", ".yaml"):
                development = development_lines(item)  # a dev profile's service, as FP-P004's
                settings = [setting for setting in settings if setting.line not in development]
        if settings:
            yield item, settings


def _image_settings(item: ProjectFile, names: re.Pattern[str]) -> Iterator[_Setting]:
    """ENV FLASK_DEBUG=1 (ENV A=1 B=2, ENV NAME value) in effect in a Dockerfile's stages but development's: set
    there, or in the stage one is built on (FROM development AS production keeps its ENV). ARG is not in the
    container's environment."""
    built: dict[str, dict[str, _Setting | None]] = {}  # each named stage's settings so far, by variable
    stage, settings = "", dict[str, _Setting | None]()
    found: dict[tuple[int, str], _Setting] = {}

    def close() -> None:
        if not for_development(stage):
            found.update({(s.line, s.name): s for s in settings.values() if s is not None})

    for instruction in dockerfiles.instructions(item):
        if instruction.keyword == "FROM":
            close()
            stage, settings = instruction.stage, dict(built.get(instruction.base.lower(), {}))
        elif instruction.keyword == "ENV":
            for name, value in env_pairs(instruction.arguments):
                if names.fullmatch(name):  # a later ENV replaces an earlier, a reference ($X) too
                    literal = literal_value(value)
                    settings[name] = _Setting(line=instruction.line, name=name, value=literal) if literal else None
        if stage:
            built[stage.lower()] = settings
    close()
    yield from found.values()


def env_pairs(arguments: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a Dockerfile ENV: ENV A=1 B="2 3", or the older ENV NAME value."""
    try:
        words = shlex.split(arguments, comments=True)
    except ValueError:
        return []
    if words and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]
    return [(name, value) for name, _, value in (word.partition("=") for word in words)]


def _file_settings(item: ProjectFile, assigned_to: re.Pattern[str], k8s_name: re.Pattern[str]) -> Iterator[_Setting]:
    lines = list(item.lines())
    for index, (line, text) in enumerate(lines):
        if text.lstrip().startswith("#"):
            continue
        named = k8s_name.match(text)
        if named:
            for _, following in lines[index + 1 : index + 3]:
                value = _K8S_VALUE.match(following)
                if value and literal_value(value[1]):
                    yield _Setting(line=line, name=named[1], value=literal_value(value[1]))
            continue
        assigned = assigned_to.search(text)
        if assigned and "#" not in text[: assigned.start()]:
            words = literal_value(assigned[2]).split()  # the first word: FLASK_DEBUG=1 gunicorn app:app
            if words:
                yield _Setting(line=line, name=assigned[1], value=words[0])


def _without_fix(problem: str) -> str:
    # secret_key_problem ends each reason with the fix; here the fix is the hint.
    return problem.removesuffix(FIX).rstrip(":; ")


@app_check(
    "FP-S003",
    ERROR,
    "SECRET_KEY is missing, short, repetitive or a published default: sessions can be forged",
    hint=FIX,
)
def secret_key(app: Flask, context: Context) -> Iterator[Found]:
    min_length = context.effective_spec.security.secret_min_length
    problem = secret_key_problem(app.config.get("SECRET_KEY"), min_length)
    written = [key for key in context.once(_keys_in_source) if key.in_effect]
    if problem and not any(_reported_in_effect(key) for key in written):  # else FP-S010 reports it, at its line
        where = written[0].obj if written else context.app_label
        yield Found(obj=where, text=_without_fix(problem), hint=_unread_key_hint(app, context))
    for index, fallback in enumerate(app.config.get("SECRET_KEY_FALLBACKS") or ()):
        problem = secret_key_problem(fallback, min_length)
        if problem:
            text = _without_fix(problem).replace("SECRET_KEY", f"SECRET_KEY_FALLBACKS[{index}]", 1)
            yield Found(obj=context.app_label, text=text)


def _key_variable(context: Context) -> tuple[str, str] | None:
    """The variable that sets the key (FLASK_SECRET_KEY_FILE wins, as in Production(app)) and its value, if any."""
    for name in ("FLASK_SECRET_KEY_FILE", "FLASK_SECRET_KEY"):
        raw = context.environ.get(name)
        if raw:
            if not name.endswith("_FILE"):
                return name, raw
            try:
                return name, Path(raw).read_text(encoding="utf-8").strip()
            except OSError:
                return None  # FP-C001 names an unreadable file when Production(app) reads it
    return None


def _unread_key_hint(app: Flask, context: Context) -> str | None:
    """The fix when the environment sets a key and the app's SECRET_KEY is another: the usual one would say to
    set the variable that is already set."""
    if _key_variable(context) is None and context.production is None:
        return _own_variable_hint(context)
    return _ignored_variable_hint(app, context)


def _ignored_variable_hint(app: Flask, context: Context) -> str | None:
    """The fix when FLASK_SECRET_KEY (or _FILE) is set and the app runs with another key: why it does not reach it."""
    found = _key_variable(context)
    key = app.config.get("SECRET_KEY")
    if found is None or key == found[1] or str(key) == found[1]:
        return None  # the variable is the key: making it strong is the fix
    name = found[0]
    production = context.production
    if production is None:
        by_hand = "read the file into SECRET_KEY" if name.endswith("_FILE") else "call app.config.from_prefixed_env()"
        return f"{name} is set, but the app does not read it: add Production(app) (it reads {name}), or {by_hand}"
    if not context.effective_spec.app.env_config:
        return f"{name} is set, but app.env_config is off, so Production(app) does not read it: turn app.env_config on"
    return f"{name} is set, but the app replaces the key Production(app) read from it: remove its own SECRET_KEY"


def _own_variable_hint(context: Context) -> str | None:
    """The fix for an app without Production(app) whose code reads the key from a variable of its own name
    (os.environ.get('SECRET_KEY')): setting FLASK_SECRET_KEY would not reach it."""
    for item, tree in context.python_files():
        for line, value in _secret_assignments(tree):
            name = _variable_read(value)
            if name is not None and name != "FLASK_SECRET_KEY":
                return f"set {name}, the variable the app reads the key from ({item.at(line)}), to a random value, " + (
                    f"e.g. {HOW_TO_GENERATE}"
                )
    return None


def _variable_read(node: ast.expr) -> str | None:
    """The first environment variable an expression reads."""
    return next((name for inner in ast.walk(node) if (name := variable_read(inner)) is not None), None)


def _is_secret_target(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "SECRET_KEY"
    if isinstance(node, ast.Attribute):
        return node.attr in ("SECRET_KEY", "secret_key")
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "SECRET_KEY"
    return False


def _secret_assignments(tree: ast.AST) -> Iterator[tuple[int, ast.expr]]:
    """(line, value) of each SECRET_KEY assignment: `SECRET_KEY = v`, `config["SECRET_KEY"] = v`,
    `from_mapping(SECRET_KEY=v)` and `{"SECRET_KEY": v}`."""
    for node in walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is not None and any(_is_secret_target(t) for t in targets):
                yield node.lineno, node.value
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "SECRET_KEY":
                    yield kw.value.lineno, kw.value
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "SECRET_KEY":
                    yield value.lineno, value


def _sets_true(body: list[ast.stmt], names: tuple[str, ...]) -> bool:
    """True when body assigns True to one of names (DEBUG = True in a development config class)."""
    for node in body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and node.value.value is True
            and any(_is_named(t, names) for t in node.targets)
        ):
            return True
    return False


def _is_named(node: ast.expr, names: tuple[str, ...]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value in names
    return False


def development_exempt_lines(item: ProjectFile, tree: ast.Module, context: Context) -> set[int]:
    """Lines where a fixed or generated key is development's, not production's: classes and functions that turn
    DEBUG or TESTING on (class DevelopmentConfig), and a whole module that does when it is named for development
    (config/dev.py, local_settings.py) or the app runs with debug or testing on. A module's own DEBUG = True that
    the app does not run with (app.run(debug=DEBUG) under __main__) makes no key of its a development one."""
    if _sets_true(tree.body, ("DEBUG", "TESTING")) and (for_development(item.rel) or _development_in_effect(context)):
        last = tree.body[-1].end_lineno or tree.body[-1].lineno
        return set(range(1, last + 1))
    lines: set[int] = set()
    for node in walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and _sets_true(
            node.body, ("DEBUG", "TESTING")
        ):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def _development_in_effect(context: Context) -> bool:
    """True when the loaded app runs with debug or testing on: some development config is the one in effect."""
    app = context.app
    return app is not None and (app.debug or app.testing)


def instance_folders(context: Context) -> tuple[Path, ...]:
    """The app's instance folder (and ./instance, Flask's default beside the app): where Flask's docs put the
    production key (`SECRET_KEY = '...'` in instance/config.py, read by from_pyfile), a folder kept out of the
    code's repository."""
    folders = {(context.root / "instance").resolve()}
    if context.app is not None:
        folders.add(Path(context.app.instance_path).resolve())
    return tuple(folders)


def relative_folder(folder: Path, root: Path) -> str:
    """How a fix names the folder: relative to the project (instance), else as it is."""
    try:
        return folder.relative_to(root.resolve()).as_posix()
    except ValueError:
        return folder.as_posix()


def tracked_instance_files(context: Context) -> Iterator[Path]:
    """The instance folders' files that git tracks: committed (or added), so in the repository whatever .gitignore
    says now. None when git is missing or the project is no git repository: the folder is trusted, as Flask's docs
    keep it."""
    for folder in instance_folders(context):
        try:
            listed = subprocess.run(
                ["git", "ls-files", "-z", "--", str(folder)],
                cwd=context.root,
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return  # no git to ask
        if listed.returncode == 0:  # else no repository here, or the folder is outside it
            names = listed.stdout.decode("utf-8", "surrogateescape").split("\0")
            yield from ((context.root / name).resolve() for name in names if name)


@check(
    "FP-S004",
    WARNING,
    "SECRET_KEY falls back to a string written in the source: anyone who can read the code can sign sessions",
    hint="read it from the environment or a secret file only (FLASK_SECRET_KEY / FLASK_SECRET_KEY_FILE) "
    "and fail when it is missing",
)
def secret_key_in_source(context: Context) -> Iterator[Found]:
    for key in context.once(_keys_in_source):
        if not key.in_effect and not key.development:
            # `SECRET_KEY = "..."` is no fallback: the string is the key.
            what = "is a string" if key.literal else "falls back to a string"
            text = f"SECRET_KEY {what} written in {key.where}: anyone who can read the code can sign sessions"
            yield Found(obj=key.obj, text=text, hint=_loaded_file_hint(key, in_effect=False))


# A config file the app loads by name: Flask's docs keep such a file, with the key, in the instance folder.
_LOADED_FILE_HINT = (
    "keep the file out of the repository, in the instance folder (instance_relative_config=True) as Flask's docs "
    "do; or remove SECRET_KEY from it and set FLASK_SECRET_KEY or FLASK_SECRET_KEY_FILE"
)
_LOADED_FILE_IN_EFFECT_HINT = (
    "give the app a new random key (the written one is public) from a config file kept out of the repository "
    "(the instance folder, as Flask's docs do) or from FLASK_SECRET_KEY / FLASK_SECRET_KEY_FILE; then remove "
    "SECRET_KEY from this file"
)


# A config file an environment variable names: the deployment can name one it keeps out of the repository.
_NAMED_FILE_HINT = (
    "keep the file {name} names out of the repository: point {name} at one the deployment provides (a mounted "
    "secret, the instance folder); or remove SECRET_KEY from it and set FLASK_SECRET_KEY or FLASK_SECRET_KEY_FILE"
)
_NAMED_FILE_IN_EFFECT_HINT = (
    "give the app a new random key (the written one is public) in a file kept out of the repository, which {name} "
    "names where the app runs (a mounted secret), or from FLASK_SECRET_KEY / FLASK_SECRET_KEY_FILE; then remove "
    "SECRET_KEY from this file"
)


# A file of the instance folder that git tracks: the folder Flask's docs keep out of the repository is in it.
_TRACKED_INSTANCE_HINT = (
    "take the instance folder out of the repository: `git rm --cached -r {folder}/` and add `{folder}/` to "
    ".gitignore; the key stays in the repository's history, so give the app a new random key in the untracked file "
    "(or FLASK_SECRET_KEY / FLASK_SECRET_KEY_FILE)"
)


def _loaded_file_hint(key: _KeyInSource, *, in_effect: bool) -> str | None:
    """The fix for a key in a config file the app loads by name or in a tracked instance folder; None (the check's
    own) for one in a module."""
    if key.tracked_instance is not None:
        return _TRACKED_INSTANCE_HINT.format(folder=key.tracked_instance)
    if key.named_by is not None:
        return (_NAMED_FILE_IN_EFFECT_HINT if in_effect else _NAMED_FILE_HINT).format(name=key.named_by)
    if not key.loaded:
        return None
    return _LOADED_FILE_IN_EFFECT_HINT if in_effect else _LOADED_FILE_HINT


@dataclass(frozen=True, kw_only=True)
class _KeyInSource:
    """A SECRET_KEY assignment that can take a string written in the source or in a config file the app loads."""

    obj: str  # file:line
    literal: bool  # the string is the key, not a fallback
    development: bool  # in a class, function or module that turns DEBUG or TESTING on
    in_effect: bool  # the loaded app's key is that string
    where: str = "the source"  # where the string is written, for the message
    variable: str | None = None  # the environment variable it falls back from
    loaded: bool = False  # in a config file the app loads by name (from_pyfile, from_file, from_envvar)
    named_by: str | None = None  # the variable that names the file, for one from_envvar loads
    tracked_instance: str | None = None  # the instance folder (relative) git tracks the file in


@dataclass(frozen=True, kw_only=True)
class _LoadedFile:
    """A project file the app's config loads by name: from_pyfile (and from_envvar, through it) runs it as Python,
    whatever its extension; from_file reads it with its load function (json.load, tomllib.load)."""

    item: ProjectFile
    method: str  # from_pyfile, from_envvar or from_file
    load: str  # the load function as written, "" when none is given
    variable: str | None = None  # the environment variable the file's name is read from (from_envvar's)

    @property
    def python(self) -> bool:
        return self.method in ("from_pyfile", "from_envvar")

    @property
    def loader(self) -> str:
        """How a message names the call: from_pyfile(), from_envvar("SETTINGS")."""
        return f'from_envvar("{self.variable}")' if self.method == "from_envvar" else f"{self.method}()"


_LOADERS = ("from_pyfile", "from_file", "from_envvar")


def _on_config(call: ast.Call) -> bool:
    """Whether call is made on a Flask config (app.config.from_file(...), config.from_pyfile(...)), not on another
    library's from_file (python-magic's magic.from_file names a file to look at, not a config)."""
    receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
    if isinstance(receiver, ast.Attribute):
        return receiver.attr.lower().endswith("config")
    return isinstance(receiver, ast.Name) and receiver.id.lower().endswith("config")


def _argument(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    given = [*call.args[index : index + 1], *(kw.value for kw in call.keywords if kw.arg == keyword)]
    return given[0] if given else None


def _file_names(context: Context, call: ast.Call, scope: Scope) -> Iterator[tuple[str, str | None]]:
    """The file names a config call can load, each with the variable it came from: the names written in the
    source (from_pyfile("settings.cfg"), the default of os.environ.get("SETTINGS", "settings.cfg")) and, for a
    name read from a variable set here (from_envvar("SETTINGS"), from_pyfile(os.environ["SETTINGS"])), its value.
    A variable's default given with os.environ.setdefault("SETTINGS", "...") counts as written."""
    if call_name(call) == "from_envvar":
        given = _argument(call, 0, "variable_name")
        strings = [] if given is None else [s for s in literals(given, scope) if isinstance(s, str)]
        variable = strings[0] if len(strings) == 1 and strings[0].isidentifier() else None
        names = [] if variable is None else _variable_defaults(context, variable)
    else:
        given = _argument(call, 0, "filename")
        variable = None if given is None else _variable_read(given)
        names = [] if given is None else [s for s in literals(given, scope) if isinstance(s, str)]
    if variable is not None and context.environ.get(variable):
        names.insert(0, context.environ[variable])
    for name in names:
        yield name, variable


def _variable_defaults(context: Context, variable: str) -> list[str]:
    """The paths the project's code gives variable when it is unset: os.environ.setdefault("SETTINGS", "...")."""
    return [
        default
        for item, tree in context.python_files()
        if variable in item.text
        for node in walk(tree)
        if isinstance(node, ast.Call) and (default := _environ_default(node, variable)) is not None
    ]


def _environ_default(call: ast.Call, variable: str) -> str | None:
    """The string os.environ.setdefault(variable, "...") gives variable."""
    if call_name(call) != "setdefault" or not isinstance(call.func, ast.Attribute) or len(call.args) != 2:
        return None
    if not ast.unparse(call.func.value).endswith("environ"):
        return None
    name, default = (arg.value if isinstance(arg, ast.Constant) else None for arg in call.args)
    return default if name == variable and isinstance(default, str) else None


def _loaded_files(context: Context) -> Iterator[_LoadedFile]:
    """The project's files the app's config loads by name (app.config.from_pyfile("settings.cfg"),
    from_file("config.json", load=json.load), from_envvar("SETTINGS") with SETTINGS set here or given a default),
    found as Flask finds them: against the loaded app's config root (its root_path, or its instance folder with
    instance_relative_config), else the calling module's folder. The .py files the scan reads anyway are left out,
    and so are files outside the project: the deployment's own, kept out of the repository."""
    calls = [
        (item, tree, node)
        for item, tree in context.python_files()
        if any(method in item.text for method in _LOADERS)
        for node in walk(tree)
        if isinstance(node, ast.Call) and call_name(node) in _LOADERS and _on_config(node)
    ]
    if not calls:
        return
    root = context.root.resolve()
    config_root = None if context.app is None else Path(context.app.config.root_path)
    scanned = {item.path.resolve() for item, _ in context.python_files()}
    for item, tree, node in calls:
        load = _argument(node, 1, "load") if call_name(node) == "from_file" else None
        for name, variable in _file_names(context, node, modules(context).of(item, tree)):
            try:
                path = ((config_root or item.path.parent) / name).resolve()
                if path in scanned or not path.is_relative_to(root) or not path.is_file():
                    continue
                if path.stat().st_size > MAX_FILE_BYTES:
                    continue
            except (OSError, ValueError):
                continue  # not there: Flask fails, or silent=True skips it
            scanned.add(path)
            yield _LoadedFile(
                item=ProjectFile(path, path.relative_to(root).as_posix()),
                method=call_name(node),
                load="" if load is None else ast.unparse(load),
                variable=variable,
            )


def config_modules(context: Context) -> Iterator[tuple[ProjectFile, ast.Module, _LoadedFile | None]]:
    """The project's Python modules, and the files from_pyfile or from_envvar load as Python (settings.cfg), each
    with how it is loaded (None for a module)."""
    for item, tree in context.python_files():
        yield item, tree, None
    for loaded in context.once(_loaded_files):
        if loaded.python:
            try:
                yield loaded.item, ast.parse(loaded.item.text, filename=str(loaded.item.path)), loaded
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue


def _keys_in_source(context: Context) -> Iterator[_KeyInSource]:
    """Each SECRET_KEY assignment that can take a string written in the source or in a config file the app
    loads (also through a constant imported from another module), but those in the instance folder."""
    instance = instance_folders(context)
    tracked = set(context.once(tracked_instance_files))
    key = None if context.app is None else context.app.config.get("SECRET_KEY")

    def kept(item: ProjectFile) -> bool:
        """Whether the file is the repository's: outside the instance folder, or in it but tracked by git."""
        path = item.path.resolve()
        return path in tracked or not any(path.is_relative_to(folder) for folder in instance)

    def tracked_in(item: ProjectFile) -> str | None:
        """The instance folder (relative to the project) git tracks item in; None for a file outside it."""
        path = item.path.resolve()
        folders = [folder for folder in instance if path in tracked and path.is_relative_to(folder)]
        return relative_folder(folders[0], context.root) if folders else None

    for item, tree, loaded in config_modules(context):
        assignments = list(_secret_assignments(tree))
        if not assignments or not kept(item):
            continue
        scope = modules(context).of(item, tree)
        exempt = development_exempt_lines(item, tree, context)
        file = "the source" if loaded is None else f"a config file the app loads with {loaded.loader}"
        folder = tracked_in(item)
        if folder is not None:
            file = f"{item.rel}, a file of the instance folder that git tracks"
        for line, value in assignments:
            strings = list(literals(value, scope))
            through = constant_through(value, scope)
            if not strings or (through is not None and not kept(through.scope.item)):
                continue  # none, or written in the instance folder
            if through is not None and _reported_where_written(through, context):
                continue  # SECRET_KEY = SECRET_KEY imported from a module whose own assignment is reported
            yield _KeyInSource(
                obj=item.at(line),
                literal=is_literal(value, scope),
                development=line in exempt,
                in_effect=key is not None and key in strings,
                where=file if through is None else f"{file} (the constant {through.name}, {through.at})",
                variable=_variable_read(value),
                loaded=loaded is not None,
                named_by=None if loaded is None else loaded.variable,
                tracked_instance=folder or (None if through is None else tracked_in(through.scope.item)),
            )
    for loaded in context.once(_loaded_files):
        written = _written_key(loaded) if loaded.method == "from_file" and kept(loaded.item) else None
        if written is not None:
            line, string, development = written
            folder = tracked_in(loaded.item)
            where = "a config file the app loads with from_file()"
            yield _KeyInSource(
                obj=loaded.item.at(line),
                literal=True,
                # As a module's: a file that turns DEBUG or TESTING on, named for development or in effect.
                development=development and (for_development(loaded.item.rel) or _development_in_effect(context)),
                in_effect=key == string,
                where=where if folder is None else f"{loaded.item.rel}, a file of the instance folder that git tracks",
                loaded=True,
                named_by=loaded.variable,
                tracked_instance=folder,
            )


def _forwarded(value: ast.expr, scope: Scope) -> Assigned | None:
    """The one assignment a bare name takes its value from (SECRET_KEY after `from .keys import SECRET_KEY`)."""
    if not isinstance(value, (ast.Name, ast.Attribute)):
        return None
    values = list(scope.values(value, frozenset()))
    return values[0][0] if len(values) == 1 else None


def _reported_where_written(through: Assigned, context: Context) -> bool:
    """True when the constant a key comes through is another module's SECRET_KEY, which the checks report where it
    is written (`from .secrets import SECRET_KEY` then app.secret_key = SECRET_KEY): one finding for one string.
    Not when that module is development's (config/dev.py) and so exempt there."""
    scope = through.scope
    if through.name != "SECRET_KEY" or scope.item.path.suffix != ".py":
        return False
    return through.line not in development_exempt_lines(scope.item, scope.tree, context)


def _written_key(loaded: _LoadedFile) -> tuple[int, str, bool] | None:
    """The line and value of the SECRET_KEY string in a file from_file loads (JSON, TOML or YAML, by its load
    function, else by its extension), and whether the file turns DEBUG or TESTING on."""
    suffix = loaded.item.path.suffix.lstrip(".").replace("yml", "yaml")
    kind = next((kind for kind in ("toml", "yaml", "json") if kind in loaded.load.lower()), suffix)
    text = loaded.item.text
    try:
        data = (
            tomllib.loads(text) if kind == "toml" else yaml.safe_load(text) if kind == "yaml"
            else json.loads(text) if kind == "json" else None
        )
    except (ValueError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("SECRET_KEY")
    if not isinstance(value, str) or not value:
        return None
    line = next((line for line, line_text in loaded.item.lines() if "SECRET_KEY" in line_text), 1)
    return line, value, data.get("DEBUG") is True or data.get("TESTING") is True


def _cookie_secure(app: Flask) -> bool:
    if app.config.get("SESSION_COOKIE_SECURE"):
        return True
    # Production(app) with session_cookie_secure = "auto" sets the flag on every request that came over HTTPS.
    session = app.session_interface
    return isinstance(session, ProductionSessionInterface) and session.auto_secure


@app_check(
    "FP-S005",
    WARNING,
    "the session cookie is sent without the Secure flag, so also over plain HTTP",
    hint="install Production(app) (it sets Secure on HTTPS requests) or set SESSION_COOKIE_SECURE = True",
)
def cookie_secure(app: Flask, context: Context) -> Iterator[Found]:
    if not _cookie_secure(app):
        yield Found(obj=context.app_label)


@app_check(
    "FP-S006",
    WARNING,
    "the session cookie is readable by JavaScript (SESSION_COOKIE_HTTPONLY is off)",
    hint="set SESSION_COOKIE_HTTPONLY = True (Flask's default)",
)
def cookie_httponly(app: Flask, context: Context) -> Iterator[Found]:
    if not app.config.get("SESSION_COOKIE_HTTPONLY"):
        yield Found(obj=context.app_label)


@app_check(
    "FP-S007",
    WARNING,
    "the session cookie has no SameSite attribute, so other sites' forms send it along (CSRF)",
    hint="install Production(app) (it sets SameSite=Lax) or set SESSION_COOKIE_SAMESITE = 'Lax'",
)
def cookie_samesite(app: Flask, context: Context) -> Iterator[Found]:
    if not app.config.get("SESSION_COOKIE_SAMESITE"):
        yield Found(obj=context.app_label)


_RANDOM_PER_PROCESS = frozenset({
    "urandom", "token_hex", "token_bytes", "token_urlsafe", "uuid4", "uuid1", "getrandbits", "randbytes",
    "choice", "choices", "sample", "get_random_string",
})
# Calls that make their result from their arguments or the object they are called on: random in, random out.
_WRAPPERS = frozenset({
    "str", "bytes", "hex", "decode", "encode", "hexlify", "b2a_hex", "b64encode", "urlsafe_b64encode", "b32encode",
    "join", "format", "lower", "upper", "strip", "sha256", "sha512", "sha1", "md5", "blake2b", "digest", "hexdigest",
})


def _generated(node: ast.expr, scope: Scope, seen: frozenset[tuple[str, str]] = frozenset()) -> bool:
    """True when node can be a value made at random where the process evaluates it: os.urandom(24).hex(),
    str(uuid4()) + str(uuid4()), f"{token_hex()}", also as a variable's default or fallback
    (os.getenv("SECRET_KEY", token_hex()), os.environ.get("SECRET_KEY") or token_hex()) or through a module
    constant, also one imported from another module."""
    parts: list[ast.expr] = []
    if isinstance(node, (ast.Name, ast.Attribute)) and scope.named(node) is not None:
        return any(_generated(assigned.value, assigned.scope, inner) for assigned, inner in scope.values(node, seen))
    if isinstance(node, ast.BoolOp):
        parts = node.values
    elif isinstance(node, ast.IfExp):
        parts = [node.body, node.orelse]
    elif isinstance(node, ast.BinOp):
        parts = [node.left, node.right]
    elif isinstance(node, ast.JoinedStr):
        parts = [part.value for part in node.values if isinstance(part, ast.FormattedValue)]
    elif isinstance(node, (ast.GeneratorExp, ast.ListComp)):
        parts = [node.elt]
    elif isinstance(node, ast.Call):
        name = call_name(node)
        if name in _RANDOM_PER_PROCESS:
            return True
        if name in ("get", "getenv", "setdefault"):
            parts = node.args[1:2] + [kw.value for kw in node.keywords if kw.arg == "default"]
        elif name in _WRAPPERS:
            parts = [*node.args, *(kw.value for kw in node.keywords)]
            parts += [node.func.value] if isinstance(node.func, ast.Attribute) else []
    return any(_generated(part, scope, seen) for part in parts)


@check(
    "FP-S008",
    WARNING,
    "SECRET_KEY is generated at start-up: each worker signs with its own key, so sessions fail at random "
    "and every restart logs everyone out",
    hint="generate the key once and give it to every worker: FLASK_SECRET_KEY or FLASK_SECRET_KEY_FILE",
)
def secret_key_per_process(context: Context) -> Iterator[Found]:
    for item, tree, _ in config_modules(context):
        assignments = list(_secret_assignments(tree))
        if not assignments:
            continue
        scope = modules(context).of(item, tree)
        exempt = development_exempt_lines(item, tree, context)
        for line, value in assignments:
            if line in exempt or not _generated(value, scope):
                continue
            forwarded = _forwarded(value, scope)
            if forwarded is not None and _reported_where_written(forwarded, context):
                continue  # SECRET_KEY imported from a module whose own assignment is reported
            name = _variable_read(value)
            if name is None:
                yield Found(obj=item.at(line))
            else:
                text, hint = _GENERATED_FALLBACK.format(name=name), _GENERATED_FALLBACK_FIX.format(name=name)
                yield Found(obj=item.at(line), text=text, hint=hint)


_GENERATED_FALLBACK = (
    "SECRET_KEY falls back to a key generated at start-up when {name} is unset: each worker then signs with its "
    "own key, so sessions fail at random and every restart logs everyone out"
)
_GENERATED_FALLBACK_FIX = (
    "set {name} (or FLASK_SECRET_KEY / FLASK_SECRET_KEY_FILE) to one key for every worker, and fail when it is "
    "missing (os.environ[\"{name}\"]) instead of generating one"
)


# NAME=value in a Compose list, an ENV or ARG line, a systemd Environment=; NAME: value in a Compose or app.yaml
# map; a Kubernetes env entry's name (its value follows on a line of its own). The name is any *SECRET_KEY.
SECRET_NAME = r"[A-Z0-9_]*SECRET_KEY"
_SECRET_ASSIGNED = re.compile(
    rf"""^\s*(?:-\s*|ENV\s+|ARG\s+|Environment\s*=\s*)?["']?({SECRET_NAME})(?:\s*[=:]\s*|\s+(?=\S))(.*)$"""
)
_K8S_NAME = re.compile(rf"""^\s*-?\s*name\s*:\s*["']?({SECRET_NAME})["']?\s*$""")
_K8S_VALUE = re.compile(r"^\s*value\s*:\s*(.*)$")
# ${VAR}, $VAR, ${VAR:?error}: taken from the environment where the file is used. ${VAR:-default} is not, when
# the default is not empty.
_REFERENCE = re.compile(r"^\$(?:\w+|\{\w+\}|\{\w+:?\?[^}]*\}|\{\w+:?-\})$")


def literal_value(value: str) -> str:
    """The value written in the file, without quotes and comments; "" when it is none or a reference."""
    value = value.strip()
    quoted = value[:1] in ("'", '"')
    value = value[1:].split(value[0], 1)[0] if quoted else value.split(" #", 1)[0].strip().strip("\"'")
    default = re.fullmatch(r"\$\{\w+:?-(.+)\}", value)
    if default:
        return default[1]
    return "" if not value or _REFERENCE.match(value) or value.startswith(("$(", "{{")) else value


def _secret_lines(item: ProjectFile) -> Iterator[int]:
    lines = list(item.lines())
    for index, (line, text) in enumerate(lines):
        named = _K8S_NAME.match(text)
        if named:
            for _, following in lines[index + 1 : index + 3]:
                value = _K8S_VALUE.match(following)
                if value and literal_value(value[1]):
                    yield line
            continue
        assigned = _SECRET_ASSIGNED.match(text)
        if assigned and not text.lstrip().startswith("#") and literal_value(assigned[2]):
            yield line


@check(
    "FP-S009",
    WARNING,
    "a secret key is written in a deployment file: whoever can read the repository can sign sessions, and the "
    "key cannot change without a commit",
    hint="pass it in from where the file is used: SECRET_KEY=${SECRET_KEY} in Compose, a Kubernetes Secret through "
    "valueFrom.secretKeyRef, or FLASK_SECRET_KEY_FILE naming a mounted secret file",
)
def secret_key_in_deployment(context: Context) -> Iterator[Found]:
    dockerfiles = ("Dockerfile*", "Containerfile*", "*.dockerfile")
    items = context.files_named("*.yml", "*.yaml", "*.service", *dockerfiles)
    for item in deployment_files(items):
        if item.path.name.startswith("."):  # .gitlab-ci.yml and the like: a CI job's test key
            continue
        in_image = any(item.path.match(pattern) for pattern in dockerfiles)
        yaml_file = item.path.suffix in (".yml", ".yaml")
        kinds = _manifest_kinds(item) if yaml_file else {}
        development = development_lines(item) if yaml_file else set()  # a dev profile's service, as FP-P004's
        for line in _secret_lines(item):
            if line in development:
                continue
            kind = kinds.get(line)
            if kind == "SealedSecret":
                continue  # encrypted for the cluster's key alone: what the hint for a Secret asks for
            text = (
                "a secret key is written in the Dockerfile: every copy of the image carries it (docker history "
                "shows it), and whoever can read the repository can sign sessions"
                if in_image
                else None
            )
            yield Found(obj=item.at(line), text=text, hint=_SECRET_MANIFEST_HINT if kind == "Secret" else None)


# The usual hint sends the key to a Kubernetes Secret: a Secret manifest in the repository needs its value kept out.
_SECRET_MANIFEST_HINT = (
    "keep the value out of the repository: create the Secret in the cluster from a file that is not committed "
    "(kubectl create secret generic app --from-file=FLASK_SECRET_KEY=./secret_key), or commit it encrypted as a "
    "SealedSecret (sealed-secrets), or sync it from a secret store (External Secrets); the Deployment reads it "
    "through valueFrom.secretKeyRef"
)
_KIND = re.compile(r"""^kind\s*:\s*["']?(\w+)""")


def _manifest_kinds(item: ProjectFile) -> dict[int, str]:
    """The top-level `kind:` of the YAML document each line is in (documents split by `---`), where it has one."""
    kinds: dict[int, str] = {}
    document: list[int] = []
    kind = ""
    for line, text in [*item.lines(), (0, "---")]:
        if text.startswith("---"):
            kinds.update(dict.fromkeys(document, kind) if kind else {})
            document, kind = [], ""
            continue
        document.append(line)
        match = _KIND.match(text)
        kind = match[1] if match else kind
    return kinds


@check(
    "FP-S010",
    ERROR,
    "the app is running right now with a SECRET_KEY written in the source: anyone who can read the code can sign "
    "its sessions",
    hint="give the app a new random key (the written one is public) from the environment or a secret file: the "
    "variable its code reads, or FLASK_SECRET_KEY / FLASK_SECRET_KEY_FILE; then remove the string from the source, "
    "so that a missing key fails instead of falling back",
)
def secret_key_in_source_in_effect(context: Context) -> Iterator[Found]:
    string, anyone, weak = _weakness(context)
    # Production(app) read FLASK_SECRET_KEY, and the app put its own string over it: setting the variable is no fix.
    app = context.app
    replaced = None if app is None or context.production is None else _ignored_variable_hint(app, context)
    for key in context.once(_keys_in_source):
        if not _reported_in_effect(key):
            continue  # a development config in effect is FP-S001's or FP-S002's to name
        hint = _loaded_file_hint(key, in_effect=True) or replaced or _unread_variable_hint(key, context)
        name = None if key.literal else key.variable
        unset = f" ({name} is not set)" if name is not None and name not in context.environ else ""
        what = f"is {string}" if key.literal else f"falls back to {string}"
        text = _IN_EFFECT.format(what=what, where=key.where, unset=unset, anyone=anyone) + weak
        yield Found(obj=key.obj, text=text, hint=hint)


def _unread_variable_hint(key: _KeyInSource, context: Context) -> str | None:
    """FP-S010's fix for an app without Production(app) checked with FLASK_SECRET_KEY (or _FILE) set, as the quick
    start says (the Flask tutorial's from_mapping(SECRET_KEY='dev'), Flasky's os.environ.get('SECRET_KEY') or ...):
    the app does not read it, so the usual 'or FLASK_SECRET_KEY' would be no fix. None for another app."""
    found = _key_variable(context)
    app = context.app
    if found is None or app is None or context.production is not None:
        return None
    then = "; then remove the string from the source, so that a missing key fails instead of falling back"
    name = found[0]
    if key.variable is not None and key.variable != "FLASK_SECRET_KEY":
        return (
            f"{name} is set, but the app does not read it: its code reads the key from {key.variable}: set "
            f"{key.variable} to a new random value wherever the app runs, or add Production(app) (it reads {name})"
            + then
        )
    unread = _ignored_variable_hint(app, context)
    return None if unread is None else unread + then


def _reported_in_effect(key: _KeyInSource) -> bool:
    """True when FP-S010 reports the key: the app runs with it, and it is no development config's. FP-S003 then
    leaves a weak one to it, so that one string is one finding, at its line."""
    return key.in_effect and not key.development


def _weakness(context: Context) -> tuple[str, str, str]:
    """How FP-S010 names the key the app runs with, who can sign with it, and what more FP-S003 would say of it:
    a published default ('dev') anyone can sign with; a string whoever reads the code can, which may be too short
    as well."""
    key = None if context.app is None else context.app.config.get("SECRET_KEY")
    problem = _without_fix(secret_key_problem(key, context.effective_spec.security.secret_min_length) or "")
    published = re.match(r"SECRET_KEY (is|contains) a published default \((.+?)\)", problem)
    if published is not None:
        named = f"a published default ({published[2]})"
        return named if published[1] == "is" else f"a string containing {named}", "anyone can", ""
    rest = problem.removeprefix("SECRET_KEY ")
    also = "" if not rest else "; it " + ("is also " + rest.removeprefix("is ") if rest.startswith("is ") else rest)
    return "a string", "anyone who can read the code can", also


_IN_EFFECT = (
    "SECRET_KEY {what} written in {where}, and the app is running with it right now{unset}: {anyone} sign its "
    "sessions"
)
