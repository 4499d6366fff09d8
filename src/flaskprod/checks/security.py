"""Security checks: debug and testing modes, the SECRET_KEY, and the session cookie's flags."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from ..runtime.headers import ProductionSessionInterface
from ..runtime.secrets import FIX, HOW_TO_GENERATE, secret_key_problem
from .compose import development_lines
from .context import Context, ProjectFile, call_name, deployment_files, variable_read
from .registry import ERROR, WARNING, Found, app_check, check


@app_check(
    "FP-S001",
    ERROR,
    "debug mode is on: errors propagate instead of answering 500, templates are re-read on every request, and "
    "under app.run() the Werkzeug debugger runs code for whoever reaches it",
    hint="unset FLASK_DEBUG and DEBUG in the production config; use `flask run --debug` for local development",
)
def debug_mode(app: Flask, context: Context) -> Iterator[Found]:
    if app.debug:
        yield Found(obj=context.app_label, hint=None if _debug_from_environment(context) else _DEBUG_IN_CODE)


_DEBUG_IN_CODE = (
    "the app turns debug on itself, not FLASK_DEBUG: remove `DEBUG = True`, `app.debug = True` or "
    "`app.config[\"DEBUG\"] = True` from its production code; use `flask run --debug` for local development"
)


def _debug_from_environment(context: Context) -> bool:
    """True when FLASK_DEBUG turns debug on, as Flask reads it."""
    value = context.environ.get("FLASK_DEBUG", "")
    return bool(value) and value.lower() not in ("0", "false", "no")


@app_check(
    "FP-S002",
    ERROR,
    "TESTING is on: errors propagate instead of answering 500, and Production(app) skips its safety refusal",
    hint="set TESTING only in the test configuration (TESTING = False in production)",
)
def testing_mode(app: Flask, context: Context) -> Iterator[Found]:
    if app.testing:
        yield Found(obj=context.app_label)


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
    if problem:
        yield Found(obj=context.app_label, text=_without_fix(problem), hint=_unread_key_hint(app, context))
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
    found = _key_variable(context)
    key = app.config.get("SECRET_KEY")
    if found is None and context.production is None:
        return _own_variable_hint(context)
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


def _literals(node: ast.expr) -> Iterator[str | bytes]:
    """The strings written in the source that node can evaluate to, as 'dev' in `env.get(...) or 'dev'`."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (str, bytes)) and node.value not in ("", b""):
            yield node.value
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            yield from _literals(value)
    elif isinstance(node, ast.IfExp):
        yield from _literals(node.body)
        yield from _literals(node.orelse)
    # os.environ.get("SECRET_KEY", "dev"), os.getenv("SECRET_KEY", default="dev"): the default is the literal.
    elif isinstance(node, ast.Call) and call_name(node) in ("get", "getenv", "setdefault"):
        for value in node.args[1:2] + [kw.value for kw in node.keywords if kw.arg == "default"]:
            yield from _literals(value)


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
    for node in ast.walk(tree):
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


def _development_lines(tree: ast.Module) -> set[int]:
    """Lines of classes and functions that turn DEBUG or TESTING on: a fixed key there is not a production key."""
    if _sets_true(tree.body, ("DEBUG", "TESTING")):  # a development or test settings module
        last = tree.body[-1].end_lineno or tree.body[-1].lineno
        return set(range(1, last + 1))
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and _sets_true(
            node.body, ("DEBUG", "TESTING")
        ):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def _instance_folders(context: Context) -> tuple[Path, ...]:
    """The app's instance folder (and ./instance, Flask's default beside the app): where Flask's docs put the
    production key (`SECRET_KEY = '...'` in instance/config.py, read by from_pyfile), a folder kept out of the
    code's repository."""
    folders = {(context.root / "instance").resolve()}
    if context.app is not None:
        folders.add(Path(context.app.instance_path).resolve())
    return tuple(folders)


@check(
    "FP-S004",
    WARNING,
    "SECRET_KEY falls back to a string written in the source: anyone who can read the code can sign sessions",
    hint="read it from the environment or a secret file only (FLASK_SECRET_KEY / FLASK_SECRET_KEY_FILE) "
    "and fail when it is missing",
)
def secret_key_in_source(context: Context) -> Iterator[Found]:
    for key in _keys_in_source(context):
        if not key.in_effect and not key.development:
            # `SECRET_KEY = "..."` is no fallback: the string is the key.
            yield Found(obj=key.obj, text=_KEY_IN_SOURCE if key.is_literal else None)


_KEY_IN_SOURCE = "SECRET_KEY is a string written in the source: anyone who can read the code can sign sessions"


@dataclass(frozen=True, kw_only=True)
class _KeyInSource:
    """A SECRET_KEY assignment that can take a string written in the source."""

    obj: str  # file:line
    value: ast.expr
    development: bool  # in a class, function or module that turns DEBUG or TESTING on
    in_effect: bool  # the loaded app's key is that string

    @property
    def is_literal(self) -> bool:
        return isinstance(self.value, ast.Constant)


def _keys_in_source(context: Context) -> Iterator[_KeyInSource]:
    """Each SECRET_KEY assignment that can take a string written in the source, but those in the instance folder."""
    instance = _instance_folders(context)
    key = None if context.app is None else context.app.config.get("SECRET_KEY")
    for item, tree in context.python_files():
        if any(item.path.resolve().is_relative_to(folder) for folder in instance):
            continue
        exempt = _development_lines(tree)
        for line, value in _secret_assignments(tree):
            literals = list(_literals(value))
            if literals:
                in_effect = key is not None and key in literals
                yield _KeyInSource(obj=item.at(line), value=value, development=line in exempt, in_effect=in_effect)


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


_RANDOM_PER_PROCESS = frozenset({"urandom", "token_hex", "token_bytes", "token_urlsafe", "uuid4", "getrandbits"})


def _is_random_call(node: ast.expr) -> bool:
    if isinstance(node, ast.BoolOp):
        return any(_is_random_call(value) for value in node.values)
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("hex", "decode"):
        node = node.func.value  # os.urandom(24).hex()
    if isinstance(node, ast.Call):
        return call_name(node) in _RANDOM_PER_PROCESS
    return isinstance(node, ast.JoinedStr) and any(
        isinstance(part, ast.FormattedValue) and _is_random_call(part.value) for part in node.values
    )


@check(
    "FP-S008",
    WARNING,
    "SECRET_KEY is generated at start-up: each worker signs with its own key, so sessions fail at random "
    "and every restart logs everyone out",
    hint="generate the key once and give it to every worker: FLASK_SECRET_KEY or FLASK_SECRET_KEY_FILE",
)
def secret_key_per_process(context: Context) -> Iterator[Found]:
    for item, tree in context.python_files():
        exempt = _development_lines(tree)
        for line, value in _secret_assignments(tree):
            if line not in exempt and _is_random_call(value):
                yield Found(obj=item.at(line))


# NAME=value in a Compose list, an ENV or ARG line, a systemd Environment=; NAME: value in a Compose or app.yaml
# map; a Kubernetes env entry's name (its value follows on a line of its own). The name is any *SECRET_KEY.
_SECRET_NAME = r"[A-Z0-9_]*SECRET_KEY"
_SECRET_ASSIGNED = re.compile(
    rf"""^\s*(?:-\s*|ENV\s+|ARG\s+|Environment\s*=\s*)?["']?({_SECRET_NAME})(?:\s*[=:]\s*|\s+(?=\S))(.*)$"""
)
_K8S_NAME = re.compile(rf"""^\s*-?\s*name\s*:\s*["']?({_SECRET_NAME})["']?\s*$""")
_K8S_VALUE = re.compile(r"^\s*value\s*:\s*(.*)$")
# ${VAR}, $VAR, ${VAR:?error}: taken from the environment where the file is used. ${VAR:-default} is not, when
# the default is not empty.
_REFERENCE = re.compile(r"^\$(?:\w+|\{\w+\}|\{\w+:?\?[^}]*\}|\{\w+:?-\})$")


def _literal(value: str) -> str:
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
                if value and _literal(value[1]):
                    yield line
            continue
        assigned = _SECRET_ASSIGNED.match(text)
        if assigned and not text.lstrip().startswith("#") and _literal(assigned[2]):
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
    for key in _keys_in_source(context):
        if not key.in_effect or key.development:
            continue  # a development config in effect is FP-S001's or FP-S002's to name
        if key.is_literal:
            yield Found(obj=key.obj, text=_IN_EFFECT.format(what="is a string", unset=""))
            continue
        name = _variable_read(key.value)
        unset = f" ({name} is not set)" if name is not None and name not in context.environ else ""
        yield Found(obj=key.obj, text=_IN_EFFECT.format(what="falls back to a string", unset=unset))


_IN_EFFECT = (
    "SECRET_KEY {what} written in the source, and the app is running with it right now{unset}: anyone who can read "
    "the code can sign its sessions"
)
