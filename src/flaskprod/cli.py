"""The command line, thin: parse flags into spec layers, call the layer that does the work, print."""

# The imports follow Ctrl-C's handler for the time they take.
# ruff: noqa: E402
from __future__ import annotations

# _signal, the C module under signal: `import signal` first builds its enums, milliseconds (tens on a busy host) in
# which Ctrl-C was still Python's and printed a KeyboardInterrupt's traceback from inside signal.py.
import _signal
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing, as flaskprod/__init__.py does
if TYPE_CHECKING:
    from pathlib import Path
    from types import FrameType

    from .render.writer import Change, State


def _interrupted(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C before a command's own handling (_user_errors) is in place: while the command line loads (click,
    Flask, the spec: a tenth of a second) and while click reads the arguments. The command's words and status,
    where Python printed a KeyboardInterrupt's traceback and click its "Aborted!" with status 1.

    os._exit, not SystemExit: raised while Python compiles a module (a first run, no .pyc yet) it lost its status
    (exit 0 or 1); and nothing has started yet that an exit should clean up."""
    sys.stdout.flush()
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    os._exit(130)


def _ctrl_c(handler: Callable[[int, FrameType | None], Any]) -> None:
    """Ctrl-C raises what handler does (_interrupted's exit, or KeyboardInterrupt), where Ctrl-C is Python's own or
    ours in the main thread: a handler another installed, or SIG_IGN a parent set, stays."""
    if _signal.getsignal(_signal.SIGINT) in (_signal.default_int_handler, _interrupted):
        try:  # not contextlib.suppress: importing contextlib would take 3 ms before Ctrl-C is handled  # noqa: SIM105
            _signal.signal(_signal.SIGINT, handler)
        except ValueError:  # not the main thread: a program's thread imported this module
            pass


_ctrl_c(_interrupted)

import functools
import json
import signal
import tomllib
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .checks.registry import Level
from .errors import FlaskprodError, SpecError
from .plural import counted
from .render.targets import TARGETS
from .spec import (
    CONFIG_ENV,
    CONFIG_FILE,
    SETTINGS,
    Spec,
    find_config_file,
    load_setting,
    load_spec,
    spec_as_dict,
    validate,
)

F = TypeVar("F", bound=Callable[..., Any])
TARGET_NAMES = {name: target.summary for name, target in TARGETS.items()}


def _user_errors(fn: F) -> F:
    """A user's mistake is one line on stderr and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            _ctrl_c(signal.default_int_handler)  # from here, KeyboardInterrupt: what the command started ends
            _in_a_folder()
            return fn(*args, **kwargs)
        except FlaskprodError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            # 128 + SIGINT, as a shell reports it: click's "Aborted!" exits 1, which `check` uses for findings.
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _in_a_folder() -> None:
    """Every command reads or writes the project in the current folder: one deleted under the shell is named."""
    try:
        os.getcwd()
    except FileNotFoundError:
        raise SpecError(
            "the current folder no longer exists (deleted or replaced since this shell entered it): cd into the "
            "project again"
        ) from None


def _parse_set(values: tuple[str, ...]) -> dict[str, str]:
    flags = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {item!r}: expected KEY=VALUE, such as --set server.threads=4")
        flags[key.strip()] = value
    return flags


def spec_options(*, without: frozenset[str] = frozenset(), hidden: frozenset[str] = frozenset()) -> Callable[[F], F]:
    """Add a CLI option for every setting that declares a flag (but those in without), plus --config and --set.

    The options are generated from the spec, so a flag exists in one place: its setting. A hidden one is
    accepted but not listed: the command refuses it with a line saying what to use instead.
    """

    def decorate(fn: F) -> F:
        for info in reversed(list(SETTINGS.values())):
            if info.flag and info.key != "app.target" and info.key not in without:
                fn = click.option(
                    info.flag,
                    f"opt__{info.key.replace('.', '__')}",
                    default=None,
                    metavar=_metavar(info.type_name),
                    help=f"{info.doc} [{info.key}; env {info.env}]",
                    hidden=info.key in hidden,
                )(fn)
        fn = click.option(
            "--set",
            "set_values",
            multiple=True,
            metavar="KEY=VALUE",
            help="Set any setting, e.g. --set proxy.gzip=false.",
        )(fn)
        return click.option(
            "--config",
            "config_path",
            default=None,
            metavar="PATH",
            help="Config file (default: ./flaskprod.toml or [tool.flaskprod] in pyproject.toml).",
        )(fn)

    return decorate


def _metavar(type_name: str) -> str:
    """How --help shows what a flag takes: INTEGER, or its choices as [auto|gunicorn|uwsgi] and [INTEGER|auto]."""
    parts = [part.strip('"') if part.startswith('"') else part.upper() for part in type_name.split(" | ")]
    return parts[0] if len(parts) == 1 else "[" + "|".join(parts) + "]"


# nginx's address and HTTPS belong to `up`; the app server's own address is chosen by `up` (a unix socket).
NGINX_FLAGS = frozenset({"proxy.host", "proxy.port", "tls.mode", "tls.port"})


def resolve_spec(
    kwargs: dict[str, Any], app: str | None = None, notice: Callable[[str], None] | None = None
) -> Spec:
    """Turn the generated options into the flag layer and load the spec with it. notice says what the user should
    know of the config files (stderr by default)."""
    set_flags = _parse_set(kwargs.pop("set_values", ()))
    flags: dict[str, Any] = {}
    for name in [k for k in kwargs if k.startswith("opt__")]:
        value = kwargs.pop(name)
        if value is not None:
            flags[name[len("opt__") :].replace("__", ".")] = value
    app = app or _flask_app_option()
    if app:
        flags["app.target"] = app
    config = _config_path(kwargs.pop("config_path", None))
    spec = load_spec(config=config, flags=flags, set_flags=set_flags)
    if not config and not os.environ.get(CONFIG_ENV) and (unread := _unread_pyproject_settings()):
        (notice or functools.partial(click.echo, err=True))(unread)
    return spec


def _unread_pyproject_settings() -> str | None:
    """The warning for settings in pyproject.toml's [tool.flaskprod] beside a flaskprod.toml, which alone is read:
    an edit to them changed nothing, and nothing said so."""
    from pathlib import Path

    root = Path.cwd()
    if find_config_file(root) != root / CONFIG_FILE:
        return None
    try:
        table = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("tool", {}).get("flaskprod")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
        return None
    if not table:
        return None
    return (
        f"Warning: pyproject.toml's [tool.flaskprod] is not read, since {CONFIG_FILE} is: move its settings into "
        f"{CONFIG_FILE} and delete the table"
    )


def _config_path(config: str | None) -> str | None:
    if config is not None and not config.strip():
        # An unset shell variable (--config "$CONFIG"): read as no --config, another file's settings would apply.
        raise SpecError("--config '': no file named; give the config file's path, or leave --config out")
    return config


def _flask_app_option() -> str | None:
    """Under `flask --app X prod ...`, Flask's own --app names the app."""
    ctx = click.get_current_context(silent=True)
    info = ctx.find_object(_script_info_type()) if ctx and _script_info_type() else None
    return getattr(info, "app_import_path", None)


@functools.cache
def _script_info_type() -> Any:
    try:
        from flask.cli import ScriptInfo
    except ImportError:  # pragma: no cover - flask is a dependency
        return None
    return ScriptInfo


class _UsageLine(click.ClickException):
    """A mistake in the command line, on one line: click's own form is four lines, and more for a list of choices."""

    exit_code = 2


def _usage_line(exc: click.UsageError) -> _UsageLine:
    message = " ".join(exc.format_message().split()).rstrip(".")
    help_hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return _UsageLine(message + help_hint)


class _Commands(click.Group):
    """flaskprod's commands, whose usage mistakes (a missing option, a bad choice) are one line, as every other."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage_line(exc) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="flaskprod", prog_name="flaskprod")
def cli() -> None:
    """Take a Flask app to production: serve it, run the production topology, audit it, deploy it."""


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@spec_options()
@_user_errors
def config(fmt: str, **kwargs: Any) -> None:
    """Show every effective setting and where it came from (default, the project, file, env, flag)."""
    spec = resolve_spec(kwargs)
    values = spec_as_dict(spec)
    if fmt == "json":
        rows = {k: {"value": v, "source": spec.origins[k], "env": SETTINGS[k].env} for k, v in values.items()}
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(map(len, values))
    for key, value in values.items():
        shown = "unset" if value is None else json.dumps(value) if isinstance(value, (bool, str)) else str(value)
        click.echo(f"{key:<{width}}  {shown:<34} {spec.origins[key]}")


@cli.command()
@click.argument("app", required=False)
@click.option("--print-config", is_flag=True, help="Print the effective server settings as JSON and exit.")
@spec_options(without=NGINX_FLAGS)
@_user_errors
def serve(app: str | None, print_config: bool, **kwargs: Any) -> None:
    """Run APP under the production app server (Gunicorn or uWSGI) with derived settings.

    APP is an import string as for `flask --app`: module:name, module:create_app() or a module;
    without it, FLASK_APP names it (the environment, .env, .flaskenv), else wsgi.py or app.py.
    """
    from .servers import serve as run_server
    from .servers.jsonrelay import refuse, say
    from .servers.settings import refusals_as_json
    from .spec import PROBE_RECORD_ENV

    record = os.environ.get(PROBE_RECORD_ENV)  # `up`'s, which serve takes from the environment as it starts
    config, set_values = kwargs.get("config_path"), kwargs.get("set_values", ())  # resolve_spec takes them
    def notice(message: str) -> None:
        if not record:  # under up, which said it as it started
            say(message, as_json=refusals_as_json(config, set_values))

    try:
        spec = resolve_spec(kwargs, app, notice)
        status = run_server(spec, print_config=print_config)
    except FlaskprodError as exc:
        if record:
            _record_refusal(record, str(exc))
        if refusals_as_json(config, set_values):
            # serve's stderr is a JSON log (up's, the journal, a container's): an error record, not one plain line.
            refuse(str(exc))
            sys.exit(exc.exit_code)
        raise
    if status < 0:
        _die_of(-status)
    sys.exit(status)


def _record_refusal(record: str, error: str) -> None:
    """Under `up`, the one line serve refuses to start with goes where its app's record would: a deploy's client
    is told it (stack.deploy.refusal), where it would read only an exit status."""
    from pathlib import Path

    path = Path(record)
    staged = path.with_name(f".{path.name}.new")
    try:
        staged.write_text(json.dumps({"error": error}))
        staged.replace(path)
    except OSError:  # up's run dir gone: nobody is left to tell
        pass


def _die_of(number: int) -> None:
    """End this process by signal number, as uWSGI's master (which serve runs as its child) was ended: the parent
    (`up`, systemd) then reads the signal, where sys.exit(-9) reports an exit status of 247."""
    sys.stdout.flush()
    sys.stderr.flush()
    if number not in (signal.SIGKILL, signal.SIGSTOP):  # which no process can handle
        signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    sys.exit(128 + number)  # a signal whose default action is not to end a process


@cli.command()
@click.argument("app", required=False)
@click.option(
    "--with",
    "extras",
    multiple=True,
    metavar="EXTRA",
    help="Add parts: monitoring (a real Prometheus scraping the app, with the alert rules `build` writes, and "
    "Alertmanager), "
    "postgres (a real PostgreSQL for the app, on a unix socket, its data kept between runs).",
)
@spec_options(hidden=frozenset({"server.bind"}))  # up chooses the app server's socket; --bind gets a hint
@_user_errors
def up(app: str | None, extras: tuple[str, ...], **kwargs: Any) -> None:
    """Run APP in the production topology on this machine: nginx in front, the app server behind it.

    nginx serves static files and forwards the rest to Gunicorn or uWSGI (--server) on a unix
    socket; both are supervised. Ctrl-C or SIGTERM stops gracefully, SIGHUP reloads both.
    """
    from .stack import up as run_stack

    config_path = kwargs.get("config_path")
    given = dict(kwargs)  # resolve_spec consumes its argument; SIGHUP resolves the same flags again
    spec = resolve_spec(kwargs, app)
    sys.exit(
        run_stack(spec, config_path=config_path, reload_spec=lambda: resolve_spec(dict(given), app), extras=extras)
    )


# The one setting deploy and rollback take: where the running `up` is. The rest are the running up's own, read from
# flaskprod.toml (which a deploy ships with the release); a --set of them here would change nothing.
RUN_DIR = "proxy.run_dir"


def _run_dir_options(fn: F) -> F:
    """deploy and rollback talk to the `up` whose proxy.run_dir the config names; nothing else of the spec applies."""
    fn = click.option(
        "--set",
        "set_values",
        multiple=True,
        metavar=f"{RUN_DIR}=DIR",
        help=f"The running up's run dir, e.g. --set {RUN_DIR}=/srv/run; the only setting taken: the others are "
        "the running up's, from flaskprod.toml, which deploy ships with the release.",
    )(fn)
    return click.option(
        "--config", "config_path", default=None, metavar="PATH", help="Config file naming proxy.run_dir."
    )(fn)


def _ask_up(command: str, options: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """Send command to the running `up`; its progress to stderr, its verdict to stdout (exit 1 if it failed)."""
    from pathlib import Path

    from .stack.control import send

    set_flags = _parse_set(kwargs.get("set_values", ()))
    for key, value in set_flags.items():  # first: an unknown key or a bad value is named as anywhere else
        validate(key, value, f"flag --set {key}")
    others = [key for key in set_flags if key != RUN_DIR]
    if others:
        raise SpecError(
            f"{command} takes --set {RUN_DIR} alone: the running up's settings come from flaskprod.toml, which "
            f"deploy ships with the release; put {others[0]} there"
        )
    config = _config_path(kwargs.get("config_path"))
    try:
        run_dir = load_setting(RUN_DIR, config=config, set_flags=set_flags)
    except SpecError as exc:  # a file that does not parse: proxy.run_dir can still be named
        if command == "deploy" and not options.get("promote"):
            # up reads the file again for the new release (as SIGHUP does) and would refuse it all the same.
            raise SpecError(
                f"{exc}; the running up reads it again for the release a deploy starts (rollback and deploy "
                f"--promote take --set {RUN_DIR}=DIR meanwhile)"
            ) from None
        raise SpecError(f"{exc}; to {command} meanwhile, name the running up's run dir: --set {RUN_DIR}=DIR") from None
    control = Path(run_dir).resolve() / "control.sock"
    try:
        for answer in send(control, command, options):
            if "log" in answer:
                click.echo(f"flaskprod {command}: {answer['log']}", err=True)
            elif "ok" not in answer:
                continue  # the bound alone (control.send reads it)
            elif answer["ok"]:
                click.echo(answer["message"])
            else:
                click.echo(f"Error: {answer['error']}", err=True)
                sys.exit(1)
    except KeyboardInterrupt:
        # up sees the connection close (stack.deploy.ClientGone): what it does then is worth a word.
        click.echo(f"interrupted: flaskprod up cancels the {command} unless its release was ready", err=True)
        sys.exit(130)


@cli.command()
@click.option(
    "--canary",
    type=click.IntRange(1, 99),
    metavar="PERCENT",
    help="Send the new release this share of the requests, beside the running one.",
)
@click.option("--promote", is_flag=True, help="Send the running canary every request; drain the release before it.")
@_run_dir_options
@_user_errors
def deploy(canary: int | None, promote: bool, **kwargs: Any) -> None:
    """Ship the project's current state to the running `flaskprod up`, without dropping a request.

    The project is copied into a new release, whose app server starts beside the running one; once it
    answers its readiness path, nginx sends it the requests (its link repointed; nginx reloads only when its
    config changed, or for a canary), and the old one is drained.
    """
    if canary is not None and promote:
        raise SpecError("--canary starts a canary and --promote ends one: give one of them")
    _ask_up("deploy", {"canary": canary, "promote": promote}, kwargs)


@cli.command()
@click.option(
    "--to", "to", type=click.IntRange(1), metavar="N", help="The release to return to [default: the one before]."
)
@_run_dir_options
@_user_errors
def rollback(to: int | None, **kwargs: Any) -> None:
    """Return the running `flaskprod up` to the release before (or stop its canary), as deploy switches."""
    _ask_up("rollback", {"to": to}, kwargs)


@cli.command()
@click.argument("app", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--fail-level",
    type=click.Choice([level.name for level in Level], case_sensitive=False),
    default="ERROR",
    show_default=True,
    help="Exit 1 when a finding at this level or above is not silenced.",
)
@click.option(
    "--silence",
    multiple=True,
    metavar="ID",
    help="Do not report this check ID (repeatable, or comma separated); also the checks.silenced setting.",
)
@spec_options()
@_user_errors
def check(app: str | None, fmt: str, fail_level: str, silence: tuple[str, ...], **kwargs: Any) -> None:
    """Audit APP for production pitfalls: its config, its security settings and the project's files.

    Findings carry stable IDs (docs/checks.md). Exit 0 when nothing is at --fail-level or above,
    1 when something is, 2 when the app cannot be found, exits, crashes or hangs while loading, or an ID
    is unknown.
    """
    from .checks import as_json, as_text, audit, exit_code

    try:
        spec = resolve_spec(kwargs, app)
        messages = audit(spec, silence)
    except FlaskprodError as exc:
        if fmt == "json":  # a job that parses stdout reads why there is no report, beside the line on stderr
            click.echo(json.dumps({"error": str(exc), "exit_code": exc.exit_code}))
        raise
    level = Level[fail_level.upper()]
    click.echo(as_json(messages, level) if fmt == "json" else as_text(messages))
    sys.exit(exit_code(messages, level))


@cli.command()
@click.argument("app", required=False)
@click.option(
    "--force",
    is_flag=True,
    help="Write flaskprod.toml over one that differs from what init would write, or over pyproject.toml's "
    "[tool.flaskprod], which it then replaces.",
)
@click.option("--dry-run", is_flag=True, help="Print the file instead of writing it.")
@_user_errors
def init(app: str | None, force: bool, dry_run: bool) -> None:
    """Find APP (or FLASK_APP, or wsgi.py/app.py here) and write a commented flaskprod.toml that names it.

    The app is imported once, in a separate interpreter, to check it loads and to learn its exact
    import string; no existing config (or FLASKPROD_* variable) takes part, so a broken one can be
    replaced. An existing flaskprod.toml with other content, or settings in pyproject.toml's
    [tool.flaskprod], are kept unless --force.
    """
    import os
    from pathlib import Path

    from .initconfig import detect, init_project, pyproject_settings, render_config

    app = app or _flask_app_option()
    root = Path.cwd()
    if dry_run:
        click.echo(render_config(detect(app, root, os.environ)), nl=False)
        return
    replaced = pyproject_settings(root)
    found, change = init_project(app, root, os.environ, force=force)
    click.echo(f"flaskprod init: {change.state} {change.path.name} for {found.target} ({found.name} {found.version})")
    if replaced is not None:
        click.echo(f"  {replaced.name}'s [tool.flaskprod] is no longer read: {change.path.name} replaces it")
    if not found.requirements:
        click.echo("  no requirements.txt: `flaskprod build` needs one (pip freeze > requirements.txt)")
    click.echo("next: flaskprod check, then flaskprod up")


@cli.command()
@click.argument("app", required=False)
@click.option(
    "--target",
    "-t",
    required=True,
    type=click.Choice(list(TARGET_NAMES)),
    help="What to write: " + "; ".join(f"{name}: {summary}" for name, summary in TARGET_NAMES.items()) + ".",
)
@click.option("--out", "-o", metavar="DIR", help="Folder inside the project to write to [default: deploy/TARGET].")
@click.option(
    "--with",
    "extras",
    multiple=True,
    metavar="EXTRA",
    help="Add parts: monitoring (Prometheus, Grafana), logging (every container's output in Loki, shipped by "
    "Grafana Alloy, read in Grafana), postgres (PostgreSQL sized for the app's pools), tls (a Let's Encrypt "
    "certificate for proxy.server_name: certbot, cert-manager on k8s).",
)
@click.option("--force", is_flag=True, help="Overwrite, or remove, files changed by hand since flaskprod wrote them.")
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@spec_options(without=NGINX_FLAGS | {"server.bind"})
@_user_errors
def build(
    app: str | None, target: str, out: str | None, extras: tuple[str, ...], force: bool, dry_run: bool, **kwargs: Any
) -> None:
    """Write the deployment files for APP: images, Compose, Swarm, Kubernetes or systemd, from the spec.

    Every number two layers share (a grace period, a timeout, CPU and memory limits, a port) comes
    from the same derived value. Building again after the spec changed replaces flaskprod's own files
    and removes the ones it no longer writes; a file changed by hand stops it until --force.
    """
    import os

    from .build import build as run_build

    spec = resolve_spec(kwargs, app)
    built = run_build(spec, target=target, extras=extras, out=out, force=force, dry_run=dry_run, environ=os.environ)
    d = built.deployment
    limits = f"{d.spec.deploy.cpus:g} CPU, {d.spec.deploy.memory}"
    unit = "service" if target == "systemd" else "container"
    each = f"{counted(d.derived.workers, 'worker')} x {counted(d.derived.threads, 'thread')}"
    sized = f"{d.server}, {each} per {unit} at {limits}"
    click.echo(f"flaskprod build: {target} for {d.spec.app.name} in {d.out} ({sized})")
    for change in built.changes:
        click.echo(_change_line(change, d.project.root, dry_run=dry_run, force=force))
    if built.refusal:
        raise built.refusal  # the real build's one line and status, after the plan it stops
    click.echo(f"next: {built.next_step}")


def _change_line(change: Change, root: Path, *, dry_run: bool, force: bool) -> str:
    """One file of build's list; a dry run also names each file changed since this target wrote it."""
    verb = _DRY_RUN_VERBS[change.state] if dry_run else change.state
    gone = change.state == "kept" or (dry_run and change.state == "removed" and change.by_hand)  # by --force
    why = "changed by hand, no longer written by flaskprod" if gone else ""
    changed = "changed by hand" if change.by_hand else f"--target {change.theirs}'s" if change.theirs else ""
    if dry_run and changed and change.state == "updated":
        verb, why = ("would overwrite", changed) if force else (verb, f"{changed}: build stops here unless --force")
    return f"  {verb:<12} {change.path.relative_to(root)}" + (f"  ({why})" if why else "")


_DRY_RUN_VERBS: dict[State, str] = {
    "created": "would create",
    "updated": "would update",
    "removed": "would remove",
    "kept": "would keep",
    "identical": "identical",
}


def main() -> None:
    _ctrl_c(_interrupted)  # as click reads the arguments, until the command takes over (_user_errors)
    cli(prog_name="flaskprod")


# Imported by a program (a test) rather than run: Ctrl-C is Python's again once the command line has loaded.
_ctrl_c(signal.default_int_handler)
