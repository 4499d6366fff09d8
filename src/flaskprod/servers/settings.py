"""The effective server settings: one pure function of the spec, its derived values and the app."""

from __future__ import annotations

import os
import sys
from typing import Any

from ..discovery import AppRef
from ..errors import FlaskprodError
from ..sizing import Derived, responder_bind
from ..spec import SETTINGS, Spec, load_setting


def server_settings(spec: Spec, derived: Derived, app: AppRef, *, worker_mb: float | None = None) -> dict[str, Any]:
    """Everything the app server is started with; Gunicorn's config and uWSGI's ini both read this dict.

    Keys follow Gunicorn's setting names where one exists, so the JSON printed by
    `serve --print-config` reads like the server's own documentation.
    """
    server = spec.server
    return {
        "server": server.kind,
        "app": app.target_from(os.getcwd()),  # the app's path where the server runs elsewhere (see target_from)
        "pythonpath": app.path,
        "bind": server.bind,
        "protocol": server.protocol,
        # Where this process answers scrapes beside the workers (servers/responder.py); None: the app's own path does.
        "metrics_bind": (
            responder_bind(server.bind) if spec.monitoring.metrics and spec.monitoring.metrics_responder else None
        ),
        "metrics_path": spec.monitoring.metrics_path,
        "workers": derived.workers,
        "threads": derived.threads,
        "worker_class": derived.worker_class,
        "request_timeout": derived.timeouts.request,
        "timeout": derived.timeouts.server,
        "graceful_timeout": derived.timeouts.graceful,
        # uWSGI closes every connection after its response (servers/uwsgi.py): it keeps none alive.
        "keepalive": 0 if server.kind == "uwsgi" else derived.timeouts.keepalive,
        "max_requests": derived.max_requests,
        "max_requests_jitter": derived.max_requests_jitter,
        "recycle_memory_mb": derived.recycle_memory_mb,
        "worker_tmp_dir": derived.worker_tmp_dir,
        "backlog": server.backlog,
        "accept_lock": server.accept_lock,
        "cpu_affinity": derived.cpu_affinity,
        "gc_freeze": server.gc_freeze,
        "fair_gil": server.fair_gil,
        # uWSGI always loads the app in its master and forks the workers from it (lazy-apps off: servers/uwsgi.py).
        "preload": True if server.kind == "uwsgi" else server.preload,
        "drain_delay": server.drain_delay,
        "proc_name": spec.app.name,
        "loglevel": spec.logging.level.lower(),
        # The app writes its own access log (JSON, with the request id) when it faces clients.
        "accesslog": None,
        "errorlog": "-",
        # The server's own lines (start, workers, signals, a request it failed) as the app's are written.
        "log_json": logs_as_json(spec),
        "worker_memory_mb": None if worker_mb is None else round(worker_mb, 1),
        "cpus": derived.machine.cpus,
        "memory_mb": derived.machine.memory // (1024 * 1024),
    }


def logs_as_json(spec: Spec) -> bool:
    """Whether serve writes every line of the app server's output (the server's own, the app's, a traceback) as a
    JSON record, as the app's loggers write theirs."""
    return spec.logging.configure and spec.logging.format == "json"


def refusals_as_json(config: str | None, set_values: tuple[str, ...]) -> bool:
    """Whether serve's refusal to start is one JSON record: where its output is JSON (logs_as_json) and stderr no
    terminal, as the probe's relay decides. Read setting by setting, from the layers serve reads them from (the
    config file, FLASKPROD_* variables, --set; neither has a flag of its own), since the spec it refuses with may
    not load: a setting that is itself wrong counts as its default."""
    sets = {key.strip(): value for key, _, value in (item.partition("=") for item in set_values)}
    values = {key: _setting_or_default(key, config, sets) for key in ("logging.configure", "logging.format")}
    return logs_as_json(Spec().replace(**values)) and not stderr_is_terminal()


def _setting_or_default(key: str, config: str | None, set_flags: dict[str, str]) -> Any:
    try:
        return load_setting(key, config=config or None, set_flags=set_flags)
    except FlaskprodError:
        return SETTINGS[key].default


def stderr_is_terminal() -> bool:
    try:
        return os.isatty(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # a stream with no descriptor (a test runner's)
        return False
