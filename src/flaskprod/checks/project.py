"""Checks on the project's files: the app module, Dockerfile, Compose, Gunicorn, uWSGI, nginx, logging, metrics."""

from __future__ import annotations

import ast
import fnmatch
import json
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from ..errors import BuildError
from ..render.requirements import (
    FLASKPROD,
    FLASKPROD_SOURCES,
    LocalPathError,
    canonical,
    lacks_flaskprod,
    read_requirements,
    requirements_file,
)
from ..sizing import worker_class
from . import nginx
from .compose import development_lines
from .context import (
    MAX_FILES,
    Context,
    ProjectFile,
    call_name,
    deployment_files,
    for_development,
    is_main_guard,
    walk,
)
from .dockerfiles import dockerfiles, instructions
from .outbound import calls_without_timeout, connections_without_statement_timeout
from .registry import ERROR, INFO, WARNING, Found, check


class _ImportTimeCalls(ast.NodeVisitor):
    """The calls a module makes when imported: not those in functions, classes or the __main__ block."""

    def __init__(self) -> None:
        self.calls: list[ast.Call] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return

    def visit_If(self, node: ast.If) -> None:
        if is_main_guard(node.test):
            for stmt in node.orelse:
                self.visit(stmt)
        else:
            self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self.calls.append(node)
        self.generic_visit(node)


# How many of a module's own functions a call is followed into: enough for main() -> serve() -> run(), and an end
# to a module of thousands.
_FOLLOWED_FUNCTIONS = 50


def _calls_reached(tree: ast.Module, roots: Iterable[ast.AST]) -> list[ast.Call]:
    """The calls roots make as they run (not those of functions or classes they define), and those of the module's
    own functions they call by name, transitively: each function followed once (recursion ends), at most
    _FOLLOWED_FUNCTIONS of them. A function is found wherever the module defines it, after its use too."""
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions[stmt.name] = stmt  # the last definition wins, as when the module runs
    visitor = _ImportTimeCalls()
    for root in roots:
        visitor.visit(root)
    calls, followed = visitor.calls, set[str]()
    for call in calls:  # grows as functions are followed
        name = call.func.id if isinstance(call.func, ast.Name) else None
        if name in functions and name not in followed and len(followed) < _FOLLOWED_FUNCTIONS:
            followed.add(name)
            for stmt in functions[name].body:
                visitor.visit(stmt)
    return calls


_APP_FACTORIES = frozenset({"Flask", "create_app", "make_app"})


def _app_names(tree: ast.Module, context: Context) -> set[str]:
    """Names the module's app goes by: app, application, the attribute named in APP, X = Flask(...)."""
    names = {"app", "application"}
    attribute = (context.ref.name or "").split("(", 1)[0].strip()
    if attribute.isidentifier():
        names.add(attribute)
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and isinstance(stmt.value, ast.Call)
            and call_name(stmt.value) in _APP_FACTORIES
        ):
            names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
    return names


_UNGUARDED = (
    'app.run() is called when the module is imported, outside `if __name__ == "__main__":`: under Gunicorn '
    "or uWSGI each worker starts Flask's development server instead of serving (flaskprod serve and up ignore "
    "the call, as flask run does)"
)
# What FP-P004 says of the same call in a script a deployment runs.
_DEBUGGER = ", with the Werkzeug debugger on: whoever reaches it runs code on the server"


@check(
    "FP-P001",
    ERROR,
    _UNGUARDED,
    hint='move the call under `if __name__ == "__main__":`, or delete it and start the app with `flaskprod serve`',
)
def unguarded_run(context: Context) -> Iterator[Found]:
    found: dict[str, ast.Call | None] = {}
    item = context.app_file
    if item is not None and item.tree is not None:
        names = _app_names(item.tree, context)
        for call in _calls_reached(item.tree, [item.tree]):
            func = call.func
            receiver = func.value if isinstance(func, ast.Attribute) and func.attr == "run" else None
            if isinstance(receiver, ast.Name) and receiver.id in names:
                found.setdefault(item.at(call.lineno), call)
    # The calls the import made (another module's, create_app().run()): where the source alone does not show them.
    by_path = {file.path: file for file in context.files}
    for path, line in context.runs:
        where = f"{path.relative_to(context.root).as_posix() if path.is_relative_to(context.root) else path}:{line}"
        if found.get(where) is None:
            found[where] = _run_call_at(by_path.get(path), line)
    for where, run in found.items():
        yield Found(obj=where, text=_UNGUARDED + _DEBUGGER if run is not None and _debugger_on(run) else None)


def _run_call_at(item: ProjectFile | None, line: int) -> ast.Call | None:
    """The .run() call on line of a project file, when the source shows one there."""
    if item is None or item.tree is None:
        return None
    for node in walk(item.tree):
        if isinstance(node, ast.Call) and call_name(node) == "run" and node.lineno <= line <= (node.end_lineno or 0):
            return node
    return None


def _debugger_on(run: ast.Call) -> bool:
    """Whether app.run(...) turns the Werkzeug debugger on: use_debugger=True, or debug=True that
    use_debugger=False does not turn off (Flask defaults use_debugger, and use_reloader, to debug)."""
    given = {kw.arg: kw.value.value for kw in run.keywords if kw.arg and isinstance(kw.value, ast.Constant)}
    return given.get("use_debugger", given.get("debug")) is True


_COMPOSE = ("docker-compose*.yml", "docker-compose*.yaml", "compose*.yml", "compose*.yaml")
_STACK = ("docker-stack*.yml", "docker-stack*.yaml", "stack*.yml", "stack*.yaml", "*.stack.yml", "*.stack.yaml")
_VERSION = re.compile(r"^version\s*:")


@check(
    "FP-P002",
    INFO,
    "the Compose file's top-level `version:` is obsolete: Compose ignores it and warns on every command",
    hint="delete the `version:` line",
)
def compose_version(context: Context) -> Iterator[Found]:
    for item in context.files_named(*_COMPOSE):
        for line, text in item.lines():
            if _VERSION.match(text):
                yield Found(obj=item.at(line))


@check(
    "FP-P003",
    INFO,
    "`depends_on` in a stack file is ignored by `docker stack deploy`: services start in any order",
    hint="make each service wait for what it needs (retry on start, readiness probes); depends_on only "
    "orders `docker compose up`",
)
def stack_depends_on(context: Context) -> Iterator[Found]:
    yield from _lines_matching(context.files_named(*_STACK), re.compile(r"^\s*depends_on\s*:"))


def _lines_matching(items: Iterable[ProjectFile], pattern: re.Pattern[str]) -> Iterator[Found]:
    for item in items:
        for line, text in item.lines():
            if pattern.search(text):
                yield Found(obj=item.at(line))


# A published port with a host address: "127.0.0.1:9090:9090" (an IPv6 one in brackets), or host_ip in the long form.
_PORT_ON_ADDRESS = re.compile(
    r"""^\s*-\s*["']?(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d+(?:-\d+)?:\d+|^\s*host_ip\s*:"""
)


@check(
    "FP-P013",
    WARNING,
    "a stack file publishes a port on one host address: `docker stack deploy` ignores the address and publishes "
    "the port on every node's every address (moby/moby#32299), so a service meant for this host is public",
    hint="publish only what is meant to be public; let the others be reached over the stack's network "
    "(Grafana reaches Prometheus there), or behind a login",
)
def stack_port_on_address(context: Context) -> Iterator[Found]:
    yield from _lines_matching(context.files_named(*_STACK), _PORT_ON_ADDRESS)


def _image_commands(item: ProjectFile) -> Iterator[tuple[int, str]]:
    """(line, command) of a Dockerfile's CMD and ENTRYPOINT, but those of a development stage."""
    for instruction in instructions(item):
        if instruction.keyword in ("CMD", "ENTRYPOINT") and not for_development(instruction.stage):
            yield instruction.line, instruction.arguments


def _commands(context: Context) -> Iterator[tuple[ProjectFile, int, str]]:
    """(file, line, command) of every command a deployment starts: Dockerfile CMD and ENTRYPOINT, Procfile
    processes, Compose command and entrypoint (but a development profile's service's), systemd ExecStart."""
    for item in dockerfiles(context):
        for line, command in _image_commands(item):
            yield item, line, command
    for item in deployment_files(context.files_named("Procfile*")):
        for line, text in item.lines():
            match = re.match(r"\s*[\w-]+\s*:\s*(.*)", text)
            if match:
                yield item, line, match[1]
    for item in deployment_files(context.files_named(*_COMPOSE, *_STACK)):
        development = development_lines(item)
        for line, text in item.lines():
            match = re.match(r"\s*(?:command|entrypoint)\s*:\s*(.*)", text)
            if match and line not in development:
                yield item, line, match[1]
    for item in deployment_files(context.files_named("*.service")):
        for line, text in item.logical_lines():
            match = re.match(r"\s*ExecStart\s*=\s*(.*)", text)
            if match:
                yield item, line, match[1]


def _words(command: str) -> str:
    """The command with JSON/YAML list punctuation turned into spaces: ["flask", "run"] -> flask run."""
    return " " + re.sub(r"[\"'\[\],]", " ", command) + " "


_FLASK_RUN = re.compile(r"[\s/;&|]flask(?:\s+-{1,2}[\w-]+(?:[=\s]+[^\s-]\S*)?)*\s+run\b")


# A production server started by an image: what a health check would watch.
_SERVES = re.compile(r"[\s/](?:gunicorn|uwsgi|waitress-serve|flaskprod\s+serve)\s")
_PROBES = re.compile(r"^\s*(?:healthcheck|livenessProbe|readinessProbe)\s*:")


@check(
    "FP-P016",
    INFO,
    "the image starts the app server, and nothing checks its health: no HEALTHCHECK, no Compose healthcheck, "
    "no Kubernetes probe, so a hung app stays in service and nothing restarts it",
    hint="add `HEALTHCHECK CMD python -m flaskprod.servers.healthcheck` (it asks the app's /healthz), or a "
    "Compose healthcheck or Kubernetes probes on /healthz and /readyz; `flaskprod build` writes them",
)
def unchecked_health(context: Context) -> Iterator[Found]:
    yamls = context.files_named("*.yml", "*.yaml")
    if any(_PROBES.match(text) for item in yamls for _, text in item.lines()):
        return
    for item in dockerfiles(context):
        if re.search(r"^\s*HEALTHCHECK\s", item.text, re.MULTILINE | re.IGNORECASE):
            continue
        serving = [line for line, command in _image_commands(item) if _SERVES.search(_words(command))]
        if serving:
            yield Found(obj=item.at(serving[0]))


_DEV_SERVER_COST = "): single process, no worker management, not hardened for the internet"


@check(
    "FP-P004",
    ERROR,
    "the deployment starts Flask's development server (`flask run`): single process, no worker management, "
    "not hardened for the internet",
    hint="start a production server instead: `flaskprod serve` (or gunicorn/uWSGI)",
)
def dev_server_in_deployment(context: Context) -> Iterator[Found]:
    for item, line, command in _commands(context):
        words = _words(command)
        if _FLASK_RUN.search(words):
            yield Found(obj=item.at(line))
            continue
        started = _script_run(context, item, words)
        if started is not None:
            script, run = started
            cost = f"{_DEBUGGER})" if _debugger_on(run) else _DEV_SERVER_COST
            text = (
                f"the deployment runs {script.rel}, which starts Flask's development server (app.run() at "
                f"{script.at(run.lineno)}{cost}"
            )
            yield Found(obj=item.at(line), text=text)


_RELOAD_FLAG = re.compile(r"\s--(?:reload|py-autoreload(?:[=\s]+[1-9]\d*)?|python-autoreload(?:[=\s]+[1-9]\d*)?)\s")
_UWSGI_RELOAD = re.compile(r"^\s*(?:py|python)-autoreload\s*=\s*[1-9]")


@check(
    "FP-P018",
    WARNING,
    "the app server reloads the app when a source file changes (Gunicorn's reload, uWSGI's py-autoreload): a "
    "development option: it watches every module of the app and restarts the workers whenever one changes, "
    "also on code a deploy has only half written",
    hint="remove --reload (reload = True in the Gunicorn config, py-autoreload in the uWSGI ini) from the "
    "deployment; ship new code with a restart, or `flaskprod deploy` with no request lost",
)
def reload_in_deployment(context: Context) -> Iterator[Found]:
    for item, line, command in _commands(context):
        words = _words(command)
        if re.search(r"[\s/](?:gunicorn|uwsgi)\s", words) and _RELOAD_FLAG.search(words):
            yield Found(obj=item.at(line))
    for item, tree in _gunicorn_configs(context):
        stmt = _assigned(tree).get("reload")
        if stmt is not None and isinstance(stmt.value, ast.Constant) and stmt.value.value is True:
            yield Found(obj=item.at(stmt.lineno))
    for item in deployment_files(context.files_named("*.ini")):
        for line, text in item.lines():
            if _UWSGI_RELOAD.match(text):
                yield Found(obj=item.at(line))


def _starts_server(command: str) -> bool:
    """True when the command starts the app's server (Gunicorn, uWSGI, flaskprod serve, flask run): the process a
    signal from `docker stop` must reach, and that should not run as root."""
    words = _words(command)
    return bool(_SERVES.search(words) or _FLASK_RUN.search(words))


_SHELL_SEPARATOR = re.compile(r"&&|\|\||;|\|")


@check(
    "FP-P022",
    WARNING,
    "the image runs the app server as root (no USER, or USER root, in its last stage): a flaw in the app or a "
    "library gives whoever exploits it root in the container, and on files a volume shares with the host",
    hint="create a user and switch to it before CMD: `RUN useradd --create-home app` then `USER app` (or let the "
    "server drop root: Gunicorn's --user, uWSGI's uid =); `flaskprod build` writes an image that runs as a user. A "
    "base image that already sets a non-root USER is fine: distroless's :nonroot tags, Chainguard's (cgr.dev, but "
    "wolfi-base and chainguard-base), Red Hat's UBI Python images and Docker Hardened Images' runtime ones (dhi.io, "
    "not -dev) pass; for another such base, silence FP-P022",
)
def image_runs_as_root(context: Context) -> Iterator[Found]:
    if _user_set_elsewhere(context):
        return
    for item in dockerfiles(context):
        image = _final_stage(item)
        if image is None or not image.as_root or not image.runs:
            continue
        command = " ".join(text for _, text in image.runs)
        if _starts_server(command) and not _server_drops_root(context, command):
            yield Found(obj=item.at(image.runs[-1][0]))


@dataclass(frozen=True, kw_only=True)
class _Stage:
    """What a Dockerfile stage's image runs, and as whom: USER ("" when none is set) and the ENTRYPOINT and CMD in
    effect, each (line, arguments), inherited from the stage it is built on."""

    user: str = ""  # a known non-root base image's ("nonroot") until a USER of its own
    entrypoint: tuple[tuple[int, str], ...] = ()
    command: tuple[tuple[int, str], ...] = ()

    @property
    def as_root(self) -> bool:
        """No USER (the base images' root), or USER root / 0 / root:group."""
        return self.user.partition(":")[0] in ("", "root", "0")

    @property
    def runs(self) -> tuple[tuple[int, str], ...]:
        return self.entrypoint + self.command


def _final_stage(item: ProjectFile) -> _Stage | None:
    """The image `docker build` makes of the Dockerfile (its last stage); None when that stage is development's."""
    stages: dict[str, _Stage] = {}
    name, current = "", _Stage()
    for instruction in instructions(item):
        keyword = instruction.keyword
        if keyword == "FROM":
            base = instruction.base.lower()
            name, current = instruction.stage, stages.get(base, _Stage(user=_base_user(base)))
        elif keyword == "USER":
            current = replace(current, user=instruction.arguments.split()[0] if instruction.arguments.split() else "")
        elif keyword == "ENTRYPOINT":
            current = replace(current, entrypoint=((instruction.line, instruction.arguments),), command=())
        elif keyword == "CMD":
            current = replace(current, command=((instruction.line, instruction.arguments),))
        if name:
            stages[name.lower()] = current
    return None if for_development(name) else current


# Base images known to set a non-root USER themselves, as their makers' sources say:
_NON_ROOT_BASE = re.compile(
    # A name or tag that says so: distroless's :nonroot and :debug-nonroot (its :debug runs as root, as its
    # default tag does: GoogleContainerTools/distroless README, "Debug Images").
    r"(?:^|[/:._-])(?:nonroot|non-root|rootless)(?:$|[/:._-])"
    # Chainguard's: apko's run-as 65532 (nonroot), the -dev variants too (chainguard-images/images,
    # images/python/configs/latest-dev.apko.yaml).
    r"|^cgr\.dev/"
    # Red Hat's UBI and SCL Python images: USER 1001 (sclorg/s2i-python-container, 3.11/Dockerfile.rhel9).
    r"|(?:^|/)ubi\d+/python-|(?:^|/)sclorg/python-"
    # Docker Hardened Images' runtime variants run as nonroot (docs.docker.com/dhi, "Image variants").
    r"|^dhi\.io/"
)
# ...but for these, which run as root: Chainguard's wolfi-base (run-as = 0, images/wolfi-base/config/main.tf) and
# chainguard-base (its test: `whoami` is root), and Docker Hardened Images' build-time variants, -dev in the tag
# (dhi.io/python:3.13-dev, 3.13-debian13-dev: "Run as the root user").
_ROOT_BASE = re.compile(
    r"^cgr\.dev/(?:[^/:@]+/)*(?:wolfi|chainguard)-base(?:[:@]|$)|^dhi\.io/[^:@]+:(?:[^@]*[-._])?dev(?:[-._@]|$)"
)


def _base_user(base: str) -> str:
    """The USER an image FROM base (lower case) starts with: "" (root, as most bases: python:*, bitnami/python)
    unless it is a known non-root one."""
    return "nonroot" if _NON_ROOT_BASE.search(base) and not _ROOT_BASE.search(base) else ""


_DROPS_ROOT = re.compile(r"(?:^|[\s/])(?:gosu|su-exec|setpriv|runuser|chpst|setuidgid)\s")
_NON_ROOT_DEPLOYED = re.compile(
    r"""^\s*(?:user\s*:\s*["']?(?!root\b|0\b|["']?\s*$)\S|runAsNonRoot\s*:\s*true|runAsUser\s*:\s*[1-9])"""
)


def _user_set_elsewhere(context: Context) -> bool:
    """True when the deployment runs the container as another user than the image's: Compose's `user:`, a
    Kubernetes securityContext (runAsNonRoot, runAsUser), or an entrypoint script that drops root (gosu, su-exec)."""
    for item in deployment_files(context.files_named("*.yml", "*.yaml")):
        if any(_NON_ROOT_DEPLOYED.match(text) for _, text in item.lines()):
            return True
    return any(_DROPS_ROOT.search(item.text) for item in deployment_files(context.files_named("*.sh")))


def _server_drops_root(context: Context, command: str) -> bool:
    """True when the server itself switches to another user: Gunicorn's --user (user = in its config), uWSGI's
    --uid (uid = in its ini)."""
    words = _words(command)
    if re.search(r"\s(?:--user|-u|--uid)[=\s]", words) or _DROPS_ROOT.search(words):
        return True
    if re.search(r"[\s/]gunicorn\s", words):
        return any("user" in _assigned(tree) for _, tree in _gunicorn_configs(context))
    if re.search(r"[\s/]uwsgi\s", words):
        inis = deployment_files(context.files_named("*.ini", "*.yml", "*.yaml", "*.xml"))
        return any(re.match(r"\s*uid\s*[=:]\s*\S", text) for item in inis for _, text in item.lines())
    return False


@check(
    "FP-P023",
    WARNING,
    "the image starts the app server in CMD's shell form: /bin/sh -c runs it as a child (Debian's dash does not exec "
    "it), so `docker stop`'s SIGTERM reaches the shell, not the server, which never shuts down gracefully and is "
    "killed mid-request 10 s later",
    hint='write the command in exec form, CMD ["gunicorn", "app:app"] (JSON, with double quotes), or start the '
    "server with exec in the shell form: CMD flask db upgrade && exec gunicorn app:app",
)
def server_under_shell(context: Context) -> Iterator[Found]:
    for item in dockerfiles(context):
        for line, command in _image_commands(item):
            if _exec_form(command) or not _starts_server(command):
                continue
            if not any(_starts_server(part) and part.split()[:1] == ["exec"] for part in _parts(command)):
                text = None
                if command.lstrip().startswith("["):
                    text = (
                        "the image's CMD looks like exec form but is not valid JSON (single quotes?), so Docker runs "
                        "it with /bin/sh -c, the server as a child: `docker stop`'s SIGTERM reaches the shell, not "
                        "the server, which never shuts down gracefully and is killed mid-request 10 s later"
                    )
                yield Found(obj=item.at(line), text=text)


def _exec_form(arguments: str) -> bool:
    """True when Docker reads CMD or ENTRYPOINT as exec form: a JSON array of strings."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return False
    return isinstance(value, list) and all(isinstance(word, str) for word in value)


def _parts(command: str) -> list[str]:
    """A shell command's simple commands: `a && exec b; c` -> ["a", "exec b", "c"]."""
    return [part.strip() for part in _SHELL_SEPARATOR.split(command)]


@check(
    "FP-P019",
    WARNING,
    "an outbound HTTP call has no timeout (requests and urllib wait forever by default): a thread waiting for a "
    "slow or silent server sits in a socket read, where the request's deadline cannot reach it, so it stays held "
    "after nginx has answered 504, and as many such calls as the app has threads stop it answering anything",
    hint="pass a timeout below server.timeout, e.g. requests.get(url, timeout=(3.05, 10)) or "
    "urlopen(url, timeout=10)",
)
def outbound_call_without_timeout(context: Context) -> Iterator[Found]:
    for item, tree in context.python_files():
        for call in calls_without_timeout(tree):
            yield Found(obj=item.at(call.lineno))


@check(
    "FP-P020",
    WARNING,
    "a PostgreSQL connection opened with psycopg2 or pg8000 outside SQLAlchemy has no statement timeout: psycopg2 "
    "waits for the answer inside libpq and pg8000 in a socket read, where the request's deadline cannot stop them, "
    "so a slow query holds its thread (or runs on in the database) after nginx has answered 504; flaskprod sets one "
    "on SQLAlchemy's connections alone",
    hint="set one at or below server.timeout on the connection: psycopg2.connect(dsn, "
    "options='-c statement_timeout=30s') or pg8000.connect(..., startup_params={'statement_timeout': '30s'}); or "
    "for the database's role, ALTER ROLE app SET statement_timeout = '30s'",
)
def connection_without_statement_timeout(context: Context) -> Iterator[Found]:
    if worker_class(context.effective_spec) == "gevent":
        return  # psycopg2 waits in gevent's loop there, where flaskprod cancels at the deadline (servers/greenlets.py)
    for item, tree in context.python_files():
        for call in connections_without_statement_timeout(tree):
            yield Found(obj=item.at(call.lineno))


# `python app.py`, `python3 -u src/run.py`, `python -m myapp`: a script of the project that a command starts.
_PYTHON_SCRIPT = re.compile(r"[\s/;&|]python[\d.]*\s+((?:-(?!m\s)[A-Za-z]+\s+)*)(-m\s+)?([\w./-]+)")


def _script_run(context: Context, item: ProjectFile, words: str) -> tuple[ProjectFile, ast.Call] | None:
    """The project script a command runs with python, and its app.run() call, when it makes one."""
    match = _PYTHON_SCRIPT.search(words)
    if match is None:
        return None
    target = match[3]
    if match[2]:
        stem = target.replace(".", "/")
        candidates = [f"{stem}.py", f"{stem}/__main__.py"]
    elif target.endswith(".py"):
        candidates = [target]
    else:
        return None
    by_path = {found.path: found for found in context.files}
    for candidate in candidates:
        # A path inside the image (/app/app.py, with WORKDIR /app) ends with the project's path to the file.
        pieces = [piece for piece in candidate.split("/") if piece not in ("", ".")]
        for start in range(len(pieces)):
            tail = Path(*pieces[start:])
            for base in (item.path.parent, context.root, context.root / "src"):
                script = by_path.get(base / tail)
                if script is not None and script.tree is not None:
                    run = next(_app_runs(script.tree, context), None)
                    return None if run is None else (script, run)
    return None


def _app_runs(tree: ast.Module, context: Context) -> Iterator[ast.Call]:
    """The app.run() calls a module makes when run as a script: at import time or in its __main__ block, or in
    the module's functions those call (`if __name__ == "__main__": main()`)."""
    names = _app_names(tree, context)
    guarded = [
        inner for stmt in tree.body if isinstance(stmt, ast.If) and is_main_guard(stmt.test) for inner in stmt.body
    ]
    for call in _calls_reached(tree, [tree, *guarded]):
        func = call.func
        receiver = func.value if isinstance(func, ast.Attribute) and func.attr == "run" else None
        if (isinstance(receiver, ast.Name) and receiver.id in names) or (
            isinstance(receiver, ast.Call) and call_name(receiver) in _APP_FACTORIES
        ):
            yield call


_GUNICORN_SETTINGS = frozenset(
    {
        "bind",
        "workers",
        "threads",
        "worker_class",
        "timeout",
        "worker_tmp_dir",
        "accesslog",
        "errorlog",
        "loglevel",
        "preload_app",
        "keepalive",
        "graceful_timeout",
        "max_requests",
        "wsgi_app",
        "reload",
    }
)


def _assigned(tree: ast.Module) -> dict[str, ast.Assign]:
    """Module-level `name = value` statements by name (the last one wins, as when the file runs)."""
    found: dict[str, ast.Assign] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = stmt
    return found


def _gunicorn_configs(context: Context) -> Iterator[tuple[ProjectFile, ast.Module]]:
    """Python files named like gunicorn's config that set at least one of its settings."""
    for item in context.files_named("*gunicorn*.py"):
        if item.tree is not None and _GUNICORN_SETTINGS & _assigned(item.tree).keys():
            yield item, item.tree


@check(
    "FP-P005",
    WARNING,
    "the Gunicorn config sizes workers from cpu_count(), which counts the host's cores, not the container's "
    "CPU limit, and ignores memory: a small container on a big host starts dozens of workers",
    hint="let `flaskprod serve` size workers from the cgroup CPU and memory limits, or set workers explicitly",
)
def gunicorn_cpu_count(context: Context) -> Iterator[Found]:
    for item, tree in _gunicorn_configs(context):
        bindings = _module_bindings(tree)
        for line, value in bindings.get("workers", ()):
            # cpu_count() sizing threads, or a bound on them, is no worker count.
            if _fed_by_cpu_count(value, bindings, {"workers"}):
                yield Found(obj=item.at(line))


Binding = tuple[int, ast.AST]  # (line, what a name is bound to there: a value, or a function's definition)


def _module_bindings(tree: ast.Module) -> dict[str, list[Binding]]:
    """What each module-level name is bound to, in every branch: a config may size workers in an if/else, from
    another name, or through a helper function."""
    bindings: dict[str, list[Binding]] = {}

    def bind(target: ast.expr, value: ast.expr, line: int) -> None:
        if (
            isinstance(target, (ast.Tuple, ast.List))
            and isinstance(value, (ast.Tuple, ast.List))
            and len(target.elts) == len(value.elts)
        ):
            # workers, threads = 2, cpu_count(): each name gets its own value.
            for one, other in zip(target.elts, value.elts, strict=True):
                bind(one, other, line)
            return
        for name in ast.walk(target):
            if isinstance(name, ast.Name):
                bindings.setdefault(name.id, []).append((line, value))

    pending: list[ast.AST] = list(tree.body)
    while pending:
        stmt = pending.pop(0)
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                bind(target, stmt.value, stmt.lineno)
        elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)) and stmt.value is not None:
            bind(stmt.target, stmt.value, stmt.lineno)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            bindings.setdefault(stmt.name, []).append((stmt.lineno, stmt))
        elif isinstance(stmt, (ast.If, ast.Try, ast.With, ast.For, ast.While, ast.ExceptHandler)):
            pending.extend(c for c in ast.iter_child_nodes(stmt) if isinstance(c, (ast.stmt, ast.ExceptHandler)))
    return bindings


def _fed_by_cpu_count(node: ast.AST, bindings: dict[str, list[Binding]], seen: set[str]) -> bool:
    """True when node calls cpu_count(), or reads a module-level name (or calls a function) that does."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.Call) and call_name(inner) == "cpu_count":
            return True
        if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Load) and inner.id not in seen:
            seen.add(inner.id)
            if any(_fed_by_cpu_count(value, bindings, seen) for _, value in bindings.get(inner.id, ())):
                return True
    return False


@check(
    "FP-P006",
    WARNING,
    "Gunicorn keeps its worker heartbeat files in the default temp dir: on a container's overlay disk a slow "
    "write makes the arbiter kill healthy workers as timed out",
    hint='set worker_tmp_dir = "/dev/shm" (or --worker-tmp-dir /dev/shm); `flaskprod serve` does so itself',
)
def gunicorn_tmp_dir(context: Context) -> Iterator[Found]:
    configs = list(_gunicorn_configs(context))
    for item, tree in configs:
        assignment = _assigned(tree).get("worker_tmp_dir")
        if assignment is None:
            yield Found(obj=item.at())
            continue
        value = assignment.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str) and not value.value.startswith("/dev/shm"):
            yield Found(
                obj=item.at(assignment.lineno),
                text=f"worker_tmp_dir is {value.value!r}, not /dev/shm: "
                "on a container's disk a slow write makes the arbiter kill healthy workers as timed out",
            )
    if configs:
        return  # gunicorn reads ./gunicorn.conf.py by default, so the commands below use it
    for item, line, command in _commands(context):
        words = _words(command)
        in_container = not item.path.name.endswith(".service")
        if (
            in_container
            and re.search(r"[\s/]gunicorn\s", words)
            and not re.search(r"\s(?:-c|--config)[\s=]", words)
            and "worker-tmp-dir" not in item.text  # a flag, or GUNICORN_CMD_ARGS in the same file
        ):
            yield Found(obj=item.at(line))


# Where a server's log is a stream, not a file.
_STREAMS = frozenset({"-", "", "/dev/stdout", "/dev/stderr"})
_GUNICORN_LOG_SETTINGS = ("accesslog", "errorlog")
_GUNICORN_LOG_FLAG = re.compile(r"\s--(?:access-logfile|error-logfile|log-file)(?:=|\s+)(\S+)")
_UWSGI_LOG_FILE = re.compile(r"^\s*(?:logto2?|daemonize)\s*=\s*(\S+)|^\s*(?:req-)?logger\s*=\s*(?:\S+\s+)?file:(\S+)")


@check(
    "FP-P015",
    WARNING,
    "the app server writes its log to a file: in a container the file is lost with the container, neither "
    "`docker logs` nor a log collector reads it, and nothing rotates it until the disk is full",
    hint='log to stdout and stderr: Gunicorn\'s accesslog and errorlog = "-", uWSGI without logto or daemonize '
    "(flaskprod serve does both); `flaskprod build --with logging` then ships them",
)
def server_log_file(context: Context) -> Iterator[Found]:
    """Where Gunicorn (its config or flags) or uWSGI (its ini) is told to write its log to a file."""
    for item, tree in _gunicorn_configs(context):
        assigned = _assigned(tree)
        for name in _GUNICORN_LOG_SETTINGS:
            stmt = assigned.get(name)
            value = stmt.value if stmt is not None else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value not in _STREAMS:
                yield Found(obj=item.at(value.lineno))
    for item, line, command in _commands(context):
        # The journal keeps a unit's output: a file there is a choice, not a loss.
        in_container = not item.path.name.endswith(".service")
        if in_container and any(path not in _STREAMS for path in _GUNICORN_LOG_FLAG.findall(_words(command))):
            yield Found(obj=item.at(line))
    for item in context.files_named("*.ini"):
        for line, text in item.lines():
            match = _UWSGI_LOG_FILE.match(text)
            if match and (match[1] or match[2]) not in _STREAMS:
                yield Found(obj=item.at(line))


_PICKLING_HANDLERS = frozenset({"SocketHandler", "DatagramHandler"})
_PICKLING_IN_CONFIG = re.compile(r"\bhandlers\.(?:Socket|Datagram)Handler\b")
_FILE_HANDLERS = frozenset({"FileHandler", "RotatingFileHandler", "TimedRotatingFileHandler", "WatchedFileHandler"})
# dictConfig's "class": "logging.FileHandler" (in Python or YAML), and fileConfig's class=FileHandler.
_FILE_IN_CONFIG = re.compile(r"\b(?:logging|handlers)\.(?:Rotating|TimedRotating|Watched)?FileHandler\b")
_FILE_IN_INI = re.compile(r"^\s*class\s*=\s*(?:Rotating|TimedRotating|Watched)?FileHandler\b")


def _makes_handler(node: ast.expr, calls: frozenset[str], config: re.Pattern[str]) -> bool:
    """A call to one of calls, or a string naming such a class for dictConfig."""
    if isinstance(node, ast.Call):
        return call_name(node) in calls
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(config.search(node.value))


def _log_handlers(
    context: Context, calls: frozenset[str], config: re.Pattern[str], ini: re.Pattern[str] | None = None
) -> Iterator[Found]:
    """Where a logging handler is made: a call to one of calls in Python, or a config naming its class (config:
    a dictConfig string in Python, or a line of another file such as a YAML dictConfig; ini: a fileConfig line)."""
    for item in context.files:
        if item.tree is not None:
            for node in walk(item.tree):
                if isinstance(node, ast.expr) and _makes_handler(node, calls, config):
                    yield Found(obj=item.at(node.lineno))
        elif item.path.suffix != ".py":
            for line, text in item.lines():
                if config.search(text) or (ini is not None and ini.search(text)):
                    yield Found(obj=item.at(line))


@check(
    "FP-P007",
    WARNING,
    "logging.handlers.SocketHandler sends pickled records: Logstash cannot read them, and a receiver that "
    "unpickles them runs code for anyone who can connect",
    hint="log JSON lines to stdout (Production(app) does) and ship them with a collector (`flaskprod build "
    "--with logging` writes Loki and Grafana Alloy), or send JSON to a Logstash json_lines input",
)
def pickling_log_handler(context: Context) -> Iterator[Found]:
    # fileConfig's class=handlers.SocketHandler matches the dictConfig pattern too.
    yield from _log_handlers(context, _PICKLING_HANDLERS, _PICKLING_IN_CONFIG)


@check(
    "FP-P012",
    WARNING,
    "the app writes its log records to a file: in a container the file is lost with the container and "
    "neither `docker logs` nor a log collector reads it (flaskprod's images, whose root is read-only, cannot "
    "open it), and a rotating handler in each worker process rotates the one file under the others, losing lines",
    hint="log to stdout (Production(app) does) and let the platform keep the lines: `flaskprod build --with "
    "logging` ships every container's to Loki; under systemd they go to the journal",
)
def file_log_handler(context: Context) -> Iterator[Found]:
    yield from _log_handlers(context, _FILE_HANDLERS, _FILE_IN_CONFIG, _FILE_IN_INI)


def _imports_module(tree: ast.Module, module: str) -> bool:
    for node in walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == module:
            return True
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == module for a in node.names):
            return True
    return False


@check(
    "FP-P008",
    WARNING,
    "prometheus_flask_exporter's PrometheusMetrics counts in each worker process: with several workers "
    "/metrics answers from whichever worker takes the scrape, and the counters jump",
    hint="use Production(app)'s /metrics (multi-process safe), or GunicornPrometheusMetrics with "
    "PROMETHEUS_MULTIPROC_DIR wiped at start and mark_process_dead on worker exit",
)
def single_process_metrics(context: Context) -> Iterator[Found]:
    for item, tree in context.python_files():
        if not _imports_module(tree, "prometheus_flask_exporter"):
            continue
        for node in walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            # PrometheusMetrics(app) and PrometheusMetrics.for_app_factory()
            owner = func.value if isinstance(func, ast.Attribute) and func.attr == "for_app_factory" else func
            name = owner.attr if isinstance(owner, ast.Attribute) else owner.id if isinstance(owner, ast.Name) else ""
            if name == "PrometheusMetrics":
                yield Found(obj=item.at(node.lineno))


def _nginx_files(context: Context) -> Iterator[ProjectFile]:
    return context.files_named("*.conf", "nginx.conf*")


def _directive_lines(item: ProjectFile, name: str) -> Iterator[tuple[int, str]]:
    """(line, `name args`) of each directive called name, wherever it is written (`location / { proxy_pass ...; }`
    on one line too)."""
    return nginx.named(item, name)


_FORWARDED = {"X-Forwarded-For": "client's address", "X-Forwarded-Proto": "scheme (https behind TLS)"}


@check(
    "FP-P009",
    WARNING,
    "nginx proxies to the app without setting X-Forwarded-For and X-Forwarded-Proto: even with ProxyFix the "
    "app sees nginx's address and http behind TLS",
    hint="add `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;` and "
    "`proxy_set_header X-Forwarded-Proto $scheme;` beside proxy_pass (or `include proxy_params;`)",
)
def nginx_forwarded_headers(context: Context) -> Iterator[Found]:
    for item in _nginx_files(context):
        for directive, outer in nginx.directives(item):
            if directive.name != "proxy_pass":
                continue
            missing = _forwarded_missing(nginx.levels(item, outer))
            if missing:
                lost = " or ".join(_FORWARDED[header] for header in missing)
                unset = " and ".join(missing)
                text = f"nginx proxies to the app without setting {unset}: the app cannot see the {lost}"
                yield Found(obj=item.at(directive.line), text=text)
                break  # one finding a file: the first proxy_pass without them


def _forwarded_missing(levels: list[tuple[nginx.Directive, ...]]) -> list[str]:
    """The X-Forwarded-* headers a proxy_pass seeing levels (innermost first) does not set: proxy_set_header
    applies from the innermost level that has one, as nginx inherits it; an include there (Debian's proxy_params)
    may set them, and is not ours to read."""
    for level in levels:
        if any(d.name == "include" and any("proxy" in arg for arg in d.args) for d in level):
            return []
        headers = {d.args[0].lower() for d in level if d.name == "proxy_set_header" and d.args}
        if headers:
            return [header for header in _FORWARDED if header.lower() not in headers]
    return list(_FORWARDED)


_OLD_TLS = re.compile(r"\b(?:SSLv2|SSLv3|TLSv1|TLSv1\.1)(?=[\s;])")


@check(
    "FP-P017",
    WARNING,
    "nginx accepts TLS 1.0 or 1.1 (or SSL): protocols the major browsers dropped in 2020 and RFC 8996 "
    "deprecated, whose weaker ciphers an attacker can force a connection down to",
    hint="`ssl_protocols TLSv1.2 TLSv1.3;` (Mozilla's intermediate profile, which flaskprod's nginx.conf uses)",
)
def nginx_old_tls(context: Context) -> Iterator[Found]:
    for item in _nginx_files(context):
        for line, text in _directive_lines(item, "ssl_protocols"):
            if _OLD_TLS.search(text):
                yield Found(obj=item.at(line))


def _has_static_files(folder: str | None) -> bool:
    if not folder or not Path(folder).is_dir():
        return False
    return any(path.is_file() for path in Path(folder).rglob("*"))


@check(
    "FP-P014",
    WARNING,
    "nginx passes every request to the app, its static files too: each one holds a Python worker that "
    "a page could use, and gets none of nginx's sendfile, caching headers or open-file cache",
    hint="serve the app's static folders (its own, its blueprints') from disk beside proxy_pass: `location "
    "/static/ { alias /path/to/static/; }` (flaskprod up and the images flaskprod builds do)",
)
def static_through_app(context: Context) -> Iterator[Found]:
    from ..servers.probe import blueprint_static

    app = context.app
    if app is None:
        return
    # The app's static folder and each blueprint's, where they hold files, as nginx could serve them.
    mounts = [(app.static_url_path, app.static_folder)] if app.static_url_path else []
    mounts += [(mount["url"], mount["folder"]) for mount in blueprint_static(app)]
    urls = [url for url, folder in mounts if _has_static_files(folder)]
    for item in _nginx_files(context):
        passes = [*_directive_lines(item, "proxy_pass"), *_directive_lines(item, "uwsgi_pass")]
        if not passes:
            continue
        locations = [text for _, text in _directive_lines(item, "location")]
        missing = [f"{url}/" for url in urls if not any(url in text for text in locations)]
        if missing:
            text = (
                f"nginx passes every request to the app, {', '.join(missing)} too: each static file holds a Python "
                "worker that a page could use, and gets none of nginx's sendfile, caching headers or open-file cache"
            )
            yield Found(obj=item.at(passes[0][0]), text=text)


_UWSGI_SOCKET = re.compile(r"^\s*(?:socket|uwsgi-socket|shared-socket)\s*=\s*(/\S+)")


def _uwsgi_sockets(context: Context) -> Iterator[tuple[ProjectFile, int, str]]:
    """(ini file, line, path) of each unix socket in a [uwsgi] section."""
    for item in context.files_named("*.ini"):
        section = ""
        for line, text in item.lines():
            header = re.match(r"^\s*\[([^\]]+)\]", text)
            if header:
                section = header[1].strip()
                continue
            match = _UWSGI_SOCKET.match(text)
            if section == "uwsgi" and match:
                yield item, line, match[1]


def _mounted(compose: list[ProjectFile], directory: str) -> bool:
    """True when a Compose volume puts something at directory (short `src:dir` or long `target: dir` syntax)."""
    short = re.compile(rf":{re.escape(directory)}/?(?::\w+)?[\"']?\s*$")
    long = re.compile(rf"^\s*target\s*:\s*[\"']?{re.escape(directory)}/?[\"']?\s*$")
    return any(short.search(text) or long.match(text) for item in compose for _, text in item.lines())


@check(
    "FP-P010",
    WARNING,
    "uWSGI listens on a unix socket inside its container, and nginx in another container looks for it at the "
    "same path: no volume shares it, so every request fails with 502",
    hint="share the socket's directory as a volume mounted in both services, or use the uwsgi protocol over "
    "TCP (socket = :3031 and uwsgi_pass app:3031)",
)
def unshared_uwsgi_socket(context: Context) -> Iterator[Found]:
    compose = list(context.files_named(*_COMPOSE, *_STACK))
    if not compose:
        return
    passes = " ".join(text for item in _nginx_files(context) for _, text in _directive_lines(item, "uwsgi_pass"))
    for item, line, path in _uwsgi_sockets(context):
        if path in passes and not _mounted(compose, posixpath.dirname(path)):
            yield Found(obj=item.at(line))


# pip run to install: pip, pip3.12, /usr/local/bin/pip, python -m pip, uv pip; its arguments up to the next command.
_PIP_INSTALL = re.compile(r"[\s;&|(/](?:pip[\d.]*|python[\d.]*\s+-m\s+pip|uv\s+pip)\s+install\s([^;&|]*)")
_PIP_REQUIREMENT = re.compile(r"^(?:-r|--requirement=?)(\S*)$")
# pip install's options whose value is the next word, and no package to install.
_PIP_VALUED = frozenset(
    {
        *("-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-t", "--target"),
        *("--prefix", "--root", "--trusted-host", "--platform", "--python-version", "--implementation", "--abi"),
        *("--cache-dir", "--src", "--upgrade-strategy", "--only-binary", "--no-binary", "-C", "--config-settings"),
        *("--progress-bar", "--report", "--log", "--timeout", "--retries", "--python"),
    }
)
Copy = tuple[str, str, bool]  # (path in the image, path in the build context, whether a directory's content)


def _copied_from(copies: Iterable[Copy], path: str) -> str | None:
    """Where in the build context the file at path in the image came from, by the last copy that put it there."""
    for image, source, directory in reversed(list(copies)):
        if directory and (path == image or path.startswith(image.rstrip("/") + "/")):
            return posixpath.normpath(posixpath.join(source, posixpath.relpath(path, image)))
        if not directory and fnmatch.fnmatchcase(path, image):
            # COPY requirements*.txt ./ copies each match under its own name.
            globbed = any(char in source for char in "*?[")
            return posixpath.join(posixpath.dirname(source), posixpath.basename(path)) if globbed else source
    return None


def _copies(sources: list[str], dest: str, workdir: str, is_dir: Callable[[str], bool]) -> Iterator[Copy]:
    """What COPY sources dest puts where: a directory's content under dest, a file into dest as a directory
    (dest/, ., WORKDIR, several sources) or as the file dest (Docker decides by what is in the image: both)."""
    target = posixpath.normpath(posixpath.join(workdir, dest))
    into = dest.endswith("/") or len(sources) > 1 or target == workdir
    for source in sources:
        source = posixpath.normpath(source.lstrip("/"))
        if is_dir(source):
            yield target, source, True
            continue
        yield posixpath.join(target, posixpath.basename(source)), source, False
        if not into:
            yield target, source, False


def _bind_mounts(flags: Iterable[str], workdir: str, is_dir: Callable[[str], bool]) -> Iterator[Copy]:
    """RUN --mount=type=bind,source=requirements.txt,target=requirements.txt: the build context's file there."""
    for flag in flags:
        options = dict(part.partition("=")[::2] for part in flag.split(","))
        target = options.get("target") or options.get("dst") or options.get("destination")
        if options.get("type", "bind") == "bind" and "from" not in options and target:
            yield from _copies([options.get("source") or options.get("src") or "."], target, workdir, is_dir)


def _pip_installs(words: str) -> tuple[list[str], bool]:
    """The requirements files (-r) pip installs in a command, and whether it installs something that is or may be
    flaskprod besides (flaskprod itself, a path, a URL, a variable: what cannot be named is given the doubt)."""
    files: list[str] = []
    maybe_flaskprod = False
    for match in _PIP_INSTALL.finditer(words):
        arguments = iter(match[1].split())
        for word in arguments:
            requirement = _PIP_REQUIREMENT.match(word)
            if requirement:
                files.append(requirement[1] or next(arguments, ""))
            elif word in _PIP_VALUED:
                next(arguments, None)
            elif word in ("-e", "--editable"):
                maybe_flaskprod = True
            elif not word.startswith("-"):
                try:
                    maybe_flaskprod |= canonical(Requirement(word).name) == FLASKPROD or "$" in word
                except InvalidRequirement:
                    maybe_flaskprod = True
    return [name for name in files if name and "$" not in name], maybe_flaskprod


def _installed_requirements(context: Context, item: ProjectFile) -> tuple[list[tuple[int, str]], bool]:
    """(line, path in the project) of each requirements file a Dockerfile's pip installs with -r, traced back
    through the COPY (or ADD, or bind mount) that put it in the image; and whether the Dockerfile also installs
    what may be flaskprod itself. A development stage's are left out."""
    bases = [item.path.parent, context.root]  # the build context: the Dockerfile's directory, or the project's

    def is_dir(source: str) -> bool:
        return any((base / source).is_dir() for base in bases)

    def in_project(source: str) -> str | None:
        for base in bases:
            path = Path(posixpath.normpath((base / source).as_posix()))
            if path.is_file() and path.is_relative_to(context.root):
                return path.relative_to(context.root).as_posix()
        return None

    stages: dict[str, tuple[str, list[Copy]]] = {}
    workdir, copies, stage = "/", list[Copy](), ""
    found: list[tuple[int, str]] = []
    maybe_flaskprod = False
    for instruction in instructions(item):
        keyword, text, line = instruction.keyword, instruction.arguments, instruction.line
        if keyword == "FROM":
            inherited = stages.get(instruction.base.lower())
            workdir, copies = (inherited[0], list(inherited[1])) if inherited else ("/", [])
            stage = instruction.stage
        elif keyword == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(workdir, text.strip().strip("\"'")))
        elif keyword in ("COPY", "ADD"):
            arguments = _words(text).split()
            if any(word.startswith("--from") for word in arguments):
                continue  # from another stage or image, not the build context
            paths = [word for word in arguments if not word.startswith(("--", "<<"))]
            if len(paths) > 1 and "$" not in text:
                copies.extend(_copies(paths[:-1], paths[-1], workdir, is_dir))
        elif keyword == "RUN" and not for_development(stage):  # a development stage's installs are not deployed
            flags = re.findall(r"--mount=(\S+)", text)
            files, maybe = _pip_installs(_words(re.sub(r"--mount=\S+", "", text)))
            maybe_flaskprod |= maybe
            mounted = [*copies, *_bind_mounts(flags, workdir, is_dir)]
            for name in files:
                source = _copied_from(mounted, posixpath.normpath(posixpath.join(workdir, name)))
                rel = in_project(source) if source is not None else None
                if rel is not None and (line, rel) not in found:
                    found.append((line, rel))
        if stage:
            stages[stage.lower()] = (workdir, copies)
    return found, maybe_flaskprod


@check(
    "FP-P011",
    ERROR,
    "the app imports flaskprod, but the requirements its deployment installs do not: the app fails to "
    "import in the image or the server's virtualenv",
    hint=f"add flaskprod to the requirements file (or pyproject.toml's dependencies): {FLASKPROD_SOURCES}",
)
def flaskprod_not_required(context: Context) -> Iterator[Found]:
    if not any(_imports_module(tree, "flaskprod") for _, tree in context.python_files()):
        return
    named: set[str] = set()
    try:
        name = requirements_file(context.spec.deploy.requirements, context.root)
        found = read_requirements(context.root, name) if name is not None else None
        if lacks_flaskprod(context.root, found):
            named.add(name or "pyproject.toml")
            yield Found(obj=name or "pyproject.toml")
    except LocalPathError as local:  # pip freeze's `-e /path` after `pip install -e`: build refuses the file
        yield Found(
            obj=f"{local.file}:{local.line}", text=f"{local.problem}: `flaskprod build` refuses it", hint=local.fix
        )
    except BuildError:
        pass  # no requirements, an include that is missing, a pyproject.toml pip cannot read: build names it
    # What the project's own images install, which build does not read.
    for item in dockerfiles(context):
        installs, maybe_flaskprod = _installed_requirements(context, item)
        for line, rel in installs if not maybe_flaskprod else ():
            try:
                lacking = rel not in named and lacks_flaskprod(context.root, read_requirements(context.root, rel))
            except BuildError:
                continue  # an include that is missing, a local path: pip fails there, or might install it
            if lacking:
                named.add(rel)
                yield Found(
                    obj=rel,
                    text=f"the app imports flaskprod, but {rel}, which {item.at(line)} installs, does not: the app "
                    "fails to import in the image",
                )


@check(
    "FP-P021",
    WARNING,
    f"the project holds more than {MAX_FILES:,} files a deployment reads: those after the first {MAX_FILES:,}, in "
    "the order check walks the folders (a folder's files, then its folders, by name), were not checked",
    hint="run check in the project's own folder, not one holding several; move what no deployment reads (data, "
    "generated code) under a folder check skips: a dot-folder, build, dist, node_modules, tests",
)
def scan_cut_short(context: Context) -> Iterator[Found]:
    if context.files_cut:
        yield Found(obj=context.files[-1].rel)  # the last file checked
