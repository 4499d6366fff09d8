"""Load the app once in a throwaway interpreter: validate it, measure a worker's memory, find its static files
and where Flask put its instance folder."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import secrets
import sys
import sysconfig
import tempfile
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..discovery import AppRef, load, unread_dotenv, with_origin
from ..errors import DiscoveryError, FlaskprodError
from ..render.nginx import StaticMount, app_server_names, routed_host_names
from ..runtime.mounted import mount_prefixes, served_under
from ..spec import STARTUP_TOLD_ENV
from .loading import ended_message, exit_child, exit_message, load_in_child, project_root, write_answer
from .memorybound import resident_mb

# Exit status of the probe when the app failed to load; its message is in the result file.
FAILED = 2


@dataclass(frozen=True, kw_only=True)
class InstanceFacts:
    """Where Flask put app.instance_path here, and why: a deployment derives its own place from these
    (render.deployment.instance_folder), since the app's package may be imported from elsewhere there."""

    path: str  # app.instance_path here
    chosen: bool  # the app passed instance_path itself: Flask's auto_find_instance_path would give another
    # The sys.path entry holding the app's top-level module or package, as Flask's find_package finds it; None when
    # no module has the app's import name (Flask(name) with a name of its own): Flask then takes the working directory.
    package_path: str | None
    installed: bool  # find_package found a prefix (a venv, the system): the folder is <prefix>/var/<name>-instance
    name: str  # app.name, which names an installed app's folder


@dataclass(frozen=True, kw_only=True)
class AppInfo:
    """What the layers above need to know of the loaded app."""

    rss_mb: float | None  # resident memory of a process that loaded it: one worker's size
    static_folder: str | None
    static_url_path: str | None
    import_string: str  # "module:name" naming exactly the app found, even when only a module was given
    # Paths it answers GET on with no URL arguments: Production(app)'s probes and metrics, and its own routes.
    served_paths: frozenset[str] = frozenset()
    # Each registered blueprint's static route, in registration order (render.deployment.app_static picks).
    blueprint_static: tuple[StaticMount, ...] = ()
    instance: InstanceFacts | None = None  # None: not learned (an AppInfo made by hand); Flask's default applies
    server_name: str | None = None  # the app's Flask SERVER_NAME, as it loaded
    subdomain_matching: bool = False  # Flask(subdomain_matching=True): it routes the names under SERVER_NAME too
    # Flask(host_matching=True): the hosts its rules route, as Werkzeug writes them (<tenant>.example.com)
    routed_hosts: tuple[str, ...] = ()
    # The app's MAX_CONTENT_LENGTH as it loaded (after Production(app)): nginx's body limit (sizing.max_body_bytes).
    max_content_length: int | None = None
    # Every URL prefix the app's routes are reached under (runtime.mounted.mount_prefixes), "" for the root: its
    # static and blueprint URLs are under the one it is served under (mount_prefix), and its metrics under each.
    mount_prefixes: tuple[str, ...] = ()
    async_views: tuple[str, ...] = ()  # async_views(app): what Flask can run only with asgiref installed
    websocket_routes: tuple[str, ...] = ()  # websocket_routes(app): served by a server that hands over its socket
    socketio_path: str | None = None  # socketio_path(app): where Flask-SocketIO answers, when the app uses it
    socketio_mode: str | None = None  # socketio_mode(app): the async_mode Flask-SocketIO loaded in, here
    socketio_mode_set: str | None = None  # the async_mode SocketIO() was given; None: it picked what is installed
    migrate_command: str | None = None  # Flask-Migrate's command group (`flask db`), when the app uses it
    # checks.release.release_table_commands: the app's click commands that create its tables (no migration does),
    # each (how it is run, what on its way drops tables or ""), for `flaskprod init`'s deploy.release_command
    table_commands: tuple[tuple[str, str], ...] = ()
    # background_threads(): the app's own threads running once it was imported, which run in the process that imports
    # it alone (uWSGI's master, Gunicorn's with preload), not in the workers forked from it
    background_threads: tuple[str, ...] = ()

    @property
    def websocket_paths(self) -> tuple[str, ...]:
        """Where the app holds WebSocket conversations: its WebSocket routes, and Flask-SocketIO's path."""
        return self.websocket_routes + ((self.socketio_path,) if self.socketio_path else ())

    @property
    def mount_prefix(self) -> str:
        """The prefix the app is served under: "" at the root."""
        return served_under(self.mount_prefixes)

    @property
    def nginx_names(self) -> tuple[str, ...]:
        """The names nginx must answer for the app to be reached by the names it calls itself (its SERVER_NAME) and,
        with host matching, routes."""
        own = app_server_names(self.server_name, subdomains=self.subdomain_matching)
        return own + tuple(name for name in routed_host_names(self.routed_hosts) if name not in own)


def routed_hosts(app: Any) -> list[str]:
    """The hosts a host_matching app's rules route, as Werkzeug writes them (<tenant>.example.com); none without."""
    if not app.url_map.host_matching:
        return []
    return sorted({rule.host for rule in app.url_map.iter_rules() if rule.host})


def probe(
    ref: AppRef,
    env: Mapping[str, str],
    *,
    bound: int,
    if_slow: str | None = None,
    record: Path | None = None,
    check: Callable[[], None] | None = None,
    told_later: bool = False,
) -> AppInfo:
    """Load ref in a child interpreter with env; what it learned, or the load error raised as one line.

    A child, not this process: the app server's master then forks workers that have not imported the
    app (unless preload is on), and the app's import-time side effects stay out of the supervisor. The
    load is given bound seconds (the caller's proxy.ready_timeout, as `check` gives it); if_slow is the
    advice for an app that is only slow (see load_in_child). With record, what it learned is also written there
    (in one step) for read_record: `up` learns what each release's app server loaded (its SERVER_NAME) from it.
    check is called while the app loads: what it raises (`up` told to stop) ends the load there.
    told_later: the app's start-up warnings (runtime.proxy.told_at_start) are left to the probe of the serve that
    follows (`up` learning the app before it starts each release's serve), so a start tells them once.
    """
    label = ref.import_string
    with tempfile.TemporaryDirectory(prefix="flaskprod-probe-") as tmp:
        result_path = Path(tmp) / "result.json"
        args = [sys.executable, "-m", "flaskprod.servers.probe", ref.module, ref.name or "", ref.path, str(result_path)]
        # The app's own output while importing goes to stderr, with the server's; stdout stays for
        # what the command prints (the settings, `up`'s table).
        child_env = {**env, STARTUP_TOLD_ENV: "1"} if told_later else env
        status = load_in_child(args, label=label, bound=bound, env=child_env, if_slow=if_slow, check=check)
        try:
            text = result_path.read_text()
            result = json.loads(text)
        except (OSError, ValueError):
            raise DiscoveryError(with_origin(ended_message(label, status), ref)) from None
    if "error" in result:
        raise DiscoveryError(with_origin(result["error"], ref))
    info = _app_info(result)
    if record is not None:
        staged = record.with_name(f".{record.name}.new")
        staged.write_text(text)
        staged.replace(record)
    return info


def read_record(path: Path) -> AppInfo | None:
    """What a probe given record=path learned; None when there is no such record (yet) or it cannot be read."""
    try:
        return _app_info(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _app_info(result: dict[str, Any]) -> AppInfo:
    return AppInfo(
        rss_mb=result["rss_mb"],
        static_folder=result["static_folder"],
        static_url_path=result["static_url_path"],
        import_string=result["import_string"],
        served_paths=frozenset(result["served_paths"]),
        mount_prefixes=tuple(result.get("mount_prefixes", ())),  # absent from a record an older flaskprod wrote
        blueprint_static=tuple(StaticMount(**mount) for mount in result["blueprint_static"]),
        instance=InstanceFacts(**result["instance"]),
        server_name=result["server_name"],
        subdomain_matching=result["subdomain_matching"],
        routed_hosts=tuple(result.get("routed_hosts", ())),  # absent from a record an older flaskprod wrote
        max_content_length=result["max_content_length"],
        async_views=tuple(result["async_views"]),
        websocket_routes=tuple(result.get("websocket_routes", ())),  # absent from a record an older flaskprod wrote
        socketio_path=result.get("socketio_path"),
        socketio_mode=result.get("socketio_mode"),  # these two are absent from a record an older flaskprod wrote
        socketio_mode_set=result.get("socketio_mode_set"),
        migrate_command=result["migrate_command"],
        table_commands=tuple((command, drops) for command, drops in result.get("table_commands", ())),
        background_threads=tuple(result.get("background_threads", ())),  # absent from a record an older flaskprod wrote
    )


def probe_to_learn(
    ref: AppRef, environ: Mapping[str, str], *, bound: int, if_slow: str | None = None
) -> AppInfo:
    """probe() for a command that only reads the app (build, init), with a throwaway key in place of whatever the
    shell holds: nothing the app signs outlives the probe, and what it writes must not depend on the builder's
    secrets. A developer's FLASK_SECRET_KEY=dev (or a FLASK_SECRET_KEY_FILE only the servers have) made Production
    refuse the app, and the build with it."""
    env = {name: value for name, value in environ.items() if name != "FLASK_SECRET_KEY_FILE"}
    env["FLASK_SECRET_KEY"] = secrets.token_hex(32)
    return probe(ref, env, bound=bound, if_slow=if_slow)


# Libraries' schedulers whose thread is the app's background work all the same, by the name they give it.
_SCHEDULER_THREADS = frozenset({"APScheduler"})


def background_threads() -> list[str]:
    """The names of the threads running the app's own code (or a scheduler's, _SCHEDULER_THREADS) once it is loaded.

    A library's threads are left out: those that matter re-create themselves after a fork (OpenTelemetry's, Sentry's),
    and a threading.Timer (Flask-Limiter's memory storage) starts again in the worker that needs it."""
    paths = ("stdlib", "platstdlib", "purelib", "platlib")
    library_dirs = {str(Path(sysconfig.get_path(name)).resolve()) for name in paths}
    library_dirs.add(str(Path(__file__).resolve().parent.parent))  # flaskprod's own
    names = []
    for thread in threading.enumerate():
        if thread is threading.main_thread() or isinstance(thread, threading.Timer):
            continue
        if thread.name in _SCHEDULER_THREADS or _runs_code_outside(thread, library_dirs):
            names.append(thread.name)
    return sorted(names)


def master_alone(server: str, threads: tuple[str, ...]) -> str:
    """The warning for the app's threads started as it was imported, where the master imports it and forks."""
    master = "uWSGI's master" if server == "uwsgi" else "Gunicorn's master (server.preload)"
    named = ", ".join(f"'{name}'" for name in threads)
    which = f"thread {named}, started by the app as it was imported, runs" if len(threads) == 1 else (
        f"threads {named}, started by the app as it was imported, run"
    )
    return (
        f"flaskprod: {which} in {master} alone, where no request sees what it does; start it in each worker "
        "(on the first request, or with os.register_at_fork(after_in_child=...))"
    )


def _runs_code_outside(thread: threading.Thread, library_dirs: set[str]) -> bool:
    """Whether thread's target (or its class's run) is defined in a file under none of library_dirs."""
    target = getattr(thread, "_target", None) or type(thread).run
    code = getattr(inspect.unwrap(target), "__code__", None)
    if code is None:
        return False  # a builtin, or a callable object: not the app's loop to name
    filename = str(Path(code.co_filename).resolve())
    return not code.co_filename.startswith("<") and not any(filename.startswith(d) for d in library_dirs)


def print_user_traceback(exc: BaseException) -> None:
    """exc's traceback on stderr from the user's first frame (flaskprod's and importlib's above it left out)."""
    if isinstance(exc, SyntaxError):
        # Python's own display, file, line and caret, as `check` shows it: every frame above it is importlib's.
        traceback.print_exception(type(exc), exc, None, file=sys.stderr)
        return
    package = str(Path(__file__).resolve().parent.parent)
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not (filename.startswith(package) or filename.startswith("<frozen") or "importlib" in filename):
            break
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)


def _import_string(ref: AppRef, app: object) -> str:
    """ref's import string with the name Flask's discovery settled on: the attribute holding app, or its factory."""
    if ref.name is not None:
        return ref.import_string
    module = sys.modules[ref.module]
    for name, value in vars(module).items():
        if value is app and not name.startswith("_"):
            return f"{ref.module}:{name}"
    factory = next((f for f in ("create_app", "make_app") if callable(getattr(module, f, None))), "create_app")
    return f"{ref.module}:{factory}()"


def _served_paths(app: Any) -> list[str]:
    from ..runtime.extension import installed_on

    paths = {rule.rule for rule in app.url_map.iter_rules() if not rule.arguments and "GET" in (rule.methods or ())}
    installed = installed_on(app)
    return sorted(paths | (installed.probe_paths if installed is not None else set()))


# The tail of every static route's rule: Flask's own, and what Blueprint.register adds for each blueprint.
_STATIC_RULE_TAIL = "/<path:filename>"


def blueprint_static(app: Any) -> list[dict[str, str]]:
    """Each blueprint's static route as the app's router has it, url_prefix and nesting applied: its endpoint,
    the URL before /<path:filename>, and the blueprint's folder. A route nginx could not match by path alone
    (on a subdomain or host, or with a variable in its URL) is left out: the app serves it."""
    mounts = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.endswith(".static"):
            continue
        blueprint = app.blueprints.get(rule.endpoint.removesuffix(".static"))
        url = rule.rule.removesuffix(_STATIC_RULE_TAIL)
        if blueprint is None or blueprint.static_folder is None or url == rule.rule:
            continue
        if "<" in url or rule.subdomain or rule.host:
            continue
        mounts.append({"endpoint": rule.endpoint, "url": url, "folder": blueprint.static_folder})
    return mounts


def _handlers(view: Any) -> list[Any]:
    """What Flask calls for a view: the function, or a class-based view's dispatch_request and method handlers."""
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return [view]
    methods = (getattr(view_class, method.lower(), None) for method in view_class.methods or ())
    return [view_class.dispatch_request, *methods]


def migrate_command(app: Any) -> str | None:
    """Flask-Migrate's command group (Migrate(command=...), "db" by default), when the app registered it."""
    config = app.extensions.get("migrate")
    command = getattr(getattr(config, "migrate", None), "command", None)
    return command if isinstance(command, str) else None


def table_commands(app: Any, root: Path) -> list[tuple[str, str]]:
    """AppInfo.table_commands, read as check's FP-R002 reads them."""
    from ..checks.release import release_table_commands  # the checks' package: only in the probe's child

    return release_table_commands(app, root)


def websocket_routes(app: Any) -> list[str]:
    """The rules that match WebSocket requests alone (Werkzeug's Rule(websocket=True), which flask-sock's routes
    are): their view takes the client's connection over from the server, as Gunicorn and Werkzeug let it and uWSGI
    does not, and keeps it for as long as the conversation lasts."""
    return sorted({rule.rule for rule in app.url_map.iter_rules() if getattr(rule, "websocket", False)})


def socketio_path(app: Any) -> str | None:
    """Where Flask-SocketIO's middleware answers (/socket.io/ unless SocketIO(path=...) says), when the app uses it:
    its clients poll there, then upgrade to a WebSocket."""
    socketio = app.extensions.get("socketio")
    path = getattr(getattr(socketio, "sockio_mw", None), "engineio_path", None)
    return path if isinstance(path, str) else None


def socketio_mode(app: Any) -> str | None:
    """The async_mode Flask-SocketIO runs in, when the app uses it: the one SocketIO() was given, or else the first
    of eventlet, gevent and threading that is installed (so installing eventlet changes it)."""
    mode = getattr(app.extensions.get("socketio"), "async_mode", None)
    return mode if isinstance(mode, str) and socketio_path(app) else None


def socketio_mode_set(app: Any) -> str | None:
    """The async_mode the app gave SocketIO(), or None when it left Flask-SocketIO to pick."""
    options = getattr(app.extensions.get("socketio"), "server_options", None)
    mode = options.get("async_mode") if isinstance(options, dict) else None
    return mode if isinstance(mode, str) and socketio_path(app) else None


def async_views(app: Any) -> list[str]:
    """The endpoints whose view is a coroutine function, and the other functions Flask calls through ensure_sync
    that are (request and app context hooks, error handlers, context processors; by qualified name): Flask runs
    each with asgiref's async_to_sync, and without asgiref answers 500 ("Install Flask with the 'async' extra in
    order to use async views")."""
    found = [
        endpoint
        for endpoint, view in app.view_functions.items()
        if any(inspect.iscoroutinefunction(handler) for handler in _handlers(view))
    ]
    for f in _hooks(app):
        if inspect.iscoroutinefunction(f) and f.__qualname__ not in found:
            found.append(f.__qualname__)
    return found


def _hooks(app: Any) -> list[Any]:
    """Every function besides views that Flask calls through ensure_sync. A registered blueprint's are in the
    app's own registries, under its name."""
    per_name = (
        app.before_request_funcs,
        app.after_request_funcs,
        app.teardown_request_funcs,
        app.template_context_processors,
    )
    hooks = [f for registry in per_name for funcs in registry.values() for f in funcs]
    # error_handler_spec: {blueprint name: {status code: {exception class: handler}}}
    hooks += [f for codes in app.error_handler_spec.values() for by_class in codes.values() for f in by_class.values()]
    return [*hooks, *app.teardown_appcontext_funcs]


def instance_facts(app: Any) -> dict[str, object]:
    """What InstanceFacts holds, read by Flask's own rule (Flask.auto_find_instance_path)."""
    from flask.sansio.scaffold import find_package

    prefix, package_path = find_package(app.import_name)
    top = app.import_name.partition(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # Flask's own catch: no such module, or __main__
        found = False
    return {
        "path": app.instance_path,
        "chosen": app.instance_path != app.auto_find_instance_path(),
        "package_path": package_path if found else None,
        "installed": prefix is not None,
        "name": app.name,
    }


def main(argv: list[str]) -> int:
    module, name, path, result_path = argv
    ref = AppRef(module=module, name=name or None, path=path)
    try:
        app = load(ref)
    except FlaskprodError as exc:
        if exc.__cause__ is not None:
            # A bug in the user's code: its traceback is what they need to fix it, from their first frame.
            print_user_traceback(exc.__cause__)
        if isinstance(exc, DiscoveryError):
            message = str(exc)
        else:
            message = f"app {ref.import_string!r} refused to start: {exc}{unread_dotenv(str(exc), Path.cwd())}"
        write_answer(Path(result_path), {"error": message})
        return FAILED
    except BaseException as exc:  # SystemExit, KeyboardInterrupt: the app's own, not the probe's to obey
        # Imported here, on failure only: the probe measures what a worker holds once it has loaded the app.

        message = exit_message(ref.import_string, exc, project_root(ref, Path.cwd()))
        write_answer(Path(result_path), {"error": message})
        return FAILED
    info = {
        "import_string": _import_string(ref, app),
        "rss_mb": resident_mb(os.getpid()),
        "static_folder": app.static_folder,
        "static_url_path": app.static_url_path,
        "served_paths": _served_paths(app),
        "mount_prefixes": mount_prefixes(app),
        "blueprint_static": blueprint_static(app),
        "instance": instance_facts(app),
        # A value the app set that is no string (a misconfiguration) names no host nginx could answer.
        "server_name": server_name if isinstance(server_name := app.config.get("SERVER_NAME"), str) else None,
        "subdomain_matching": bool(app.subdomain_matching),
        "routed_hosts": routed_hosts(app),
        # As the request pipeline reads it: anything but a number of bytes sets no limit.
        "max_content_length": limit if isinstance(limit := app.config.get("MAX_CONTENT_LENGTH"), int) else None,
        "async_views": async_views(app),
        "websocket_routes": websocket_routes(app),
        "socketio_path": socketio_path(app),
        "socketio_mode": socketio_mode(app),
        "socketio_mode_set": socketio_mode_set(app),
        "migrate_command": migrate_command(app),
        "table_commands": table_commands(app, project_root(ref, Path.cwd())),
        "background_threads": background_threads(),
    }
    write_answer(Path(result_path), info)
    return 0


if __name__ == "__main__":
    exit_child(main(sys.argv[1:]))
