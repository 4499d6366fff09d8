"""The app servers behind one call: serve(spec) runs Gunicorn or uWSGI with the derived settings."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import discovery
from ..errors import ServerError
from ..sizing import derive
from ..spec import LOG_RELAY_ENV, PROBE_RECORD_ENV, STARTUP_TOLD_ENV, Spec, env_for
from .common import DRAIN_FILE_ENV, MULTIPROC_ENV, RunDir, check_bind
from .greenlets import missing_worker
from .jsonrelay import Relay, say
from .settings import logs_as_json, server_settings, stderr_is_terminal
from .websockets import for_conversations, websocket_problem

__all__ = ["resolve_kind", "serve", "server_settings"]


def resolve_kind(spec: Spec, *, behind_nginx: bool) -> Spec:
    """The spec with server.kind "auto" made concrete.

    Behind nginx the uwsgi protocol over a unix socket served the most requests per second in
    the benchmarks (docs/benchmarks), so uWSGI is chosen when it is installed. Facing HTTP clients
    directly, Gunicorn's HTTP handling (keep-alive, slow clients) is the safer choice. An app with
    WebSocket routes gets Gunicorn either way, once it is loaded (websockets.py).
    """
    if spec.server.kind != "auto":
        return spec
    kind = "gunicorn"
    if behind_nginx:
        from .uwsgi import find_uwsgi

        try:
            find_uwsgi()
            kind = "uwsgi"
        except ServerError:
            pass  # Gunicorn is a dependency; uWSGI an optional extra
    return spec.replace(**{"server.kind": kind})


def worker_environ(spec: Spec, app: discovery.AppRef) -> dict[str, str]:
    """FLASKPROD_* variables that give workers the spec this process sees: its flags, and the app found."""
    flags = spec.flagged()
    flags["app.target"] = app.target_from(os.getcwd())
    flags["app.name"] = spec.app.name
    return env_for(flags)


def serve(spec: Spec, *, print_config: bool = False) -> int:
    """Find the app, derive the settings, and run the configured server until it stops; the exit status."""
    # Imported here: `python -m flaskprod.servers.probe` must not find itself already imported.
    from .probe import master_alone, probe

    spec = resolve_kind(spec, behind_nginx=spec.server.protocol == "uwsgi")
    app = discovery.resolve(spec.app.target)
    env = worker_environ(spec, app)
    # The probe must not write metrics into (or see a drain file of) a directory it does not own.
    probe_env = {k: v for k, v in os.environ.items() if k not in (MULTIPROC_ENV, DRAIN_FILE_ENV, PROBE_RECORD_ENV)}
    record = os.environ.pop(PROBE_RECORD_ENV, None)  # `up`'s: what this release's app loaded as (its SERVER_NAME)
    with _relayed_as_json(spec):
        info = probe(app, {**probe_env, **env}, bound=spec.proxy.ready_timeout, record=Path(record) if record else None)
    spec = for_conversations(spec, info.websocket_paths, socketio=info.socketio_mode)
    problem = websocket_problem(spec, info.websocket_paths, socketio=info.socketio_mode)
    if problem:
        raise ServerError(problem)
    worker_mb = info.rss_mb
    settings = server_settings(spec, derive(spec, worker_mb=worker_mb), app, worker_mb=worker_mb)
    if print_config:
        print(json.dumps(settings, indent=2))
        return 0
    if settings["preload"] and info.background_threads:
        say(master_alone(settings["server"], info.background_threads), as_json=settings["log_json"])
    if settings["protocol"] == "uwsgi" and settings["server"] != "uwsgi":
        raise ServerError("server.protocol 'uwsgi' needs --server uwsgi: Gunicorn speaks HTTP only")
    if settings["server"] == "gunicorn" and (missing := missing_worker(settings["worker_class"])):
        raise ServerError(missing)
    check_bind(settings["bind"])
    if settings["metrics_bind"]:
        check_bind(settings["metrics_bind"], instead="another --bind (the metrics responder listens beside it)")
    run_dir = RunDir.create(spec.app.name, spec.monitoring.multiproc_dir)
    os.environ.update(env)
    os.environ.update(run_dir.environ())
    if settings["log_json"]:  # every line the workers write is relayed as JSON: the app's loggers write JSON too
        os.environ[LOG_RELAY_ENV] = "json"
    # The probe loaded the app first and told its start-up warnings: the server's processes, each loading it (Gunicorn's
    # workers, uWSGI's master at start and at every reload), keep quiet.
    os.environ[STARTUP_TOLD_ENV] = "1"
    return _runner(settings)(settings, app, run_dir)


@contextlib.contextmanager
def _relayed_as_json(spec: Spec) -> Iterator[None]:
    """The probe's output (the app's prints as it is imported, the traceback of an app that fails to) relayed as
    JSON, as the server's is after it, where that output is a log: under `up`, a deploy's traceback was the one
    run of plain lines in up's JSON log. A person at a terminal, or logging.format text, reads it as printed."""
    as_json = logs_as_json(spec) and not stderr_is_terminal()
    relay = Relay("stderr") if as_json else None
    if relay is not None:
        relay.take_over()
    try:
        yield
    finally:
        if relay is not None:
            relay.give_back()


Runner = Callable[[dict[str, Any], discovery.AppRef, RunDir], int]


def _runner(settings: dict[str, Any]) -> Runner:
    if settings["server"] == "uwsgi":
        from .uwsgi import run as run_uwsgi

        return run_uwsgi
    from .gunicorn import run as run_gunicorn

    return run_gunicorn
