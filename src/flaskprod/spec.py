"""The typed spec: every setting declared once, and the one function that layers its sources."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib
import ipaddress
import math
import os
import re
import shlex
import stat
import tomllib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from .errors import SpecError
from .project import project_name, project_version

Auto = Literal["auto"]
ENV_PREFIX = "FLASKPROD_"
CONFIG_FILE = "flaskprod.toml"
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def setting(default: Any, doc: str, *, flag: str | None = None, minimum: float | None = None) -> Any:
    """Declare one setting: its default, what it means, and optionally its CLI flag and lower bound."""
    meta = {"doc": doc, "flag": flag, "minimum": minimum}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class AppSettings:
    target: str | None = setting(
        None,
        "Import string of the Flask app, as for `flask --app`: `module:name`, `module:create_app()` "
        "or a module; unset = FLASK_APP (the environment, .env, .flaskenv), else wsgi.py/app.py.",
        flag="APP",  # every command's argument, not an option; under `flask --app X prod`, Flask's own --app
    )
    name: str = setting(
        "flaskapp",
        "Short name of the service, used for process titles, metrics, files and the deployment's names; "
        "unset, the project's: pyproject.toml's [project] name, else the app's top-level package, else the "
        "directory (flaskapp when none gives one).",
    )
    version: str = setting(
        "0.0.0",
        "Version reported by the `app_info` metric and the image tag; unset, pyproject.toml's [project] version.",
    )
    env_config: bool = setting(True, "Load FLASK_* environment variables and FLASK_*_FILE secrets into app.config.")


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    kind: Literal["auto", "gunicorn", "uwsgi"] = setting(
        "auto",
        "Application server; auto = uWSGI behind nginx (`up`, when installed: the fastest measured), "
        "Gunicorn where the app server faces HTTP clients itself (`serve`) or the app has WebSocket routes "
        "(flask-sock), whose connection uWSGI cannot hand over.",
        flag="--server",
    )
    bind: str = setting(
        "127.0.0.1:8000",
        "Address the app server listens on: host:port ([::1]:port for IPv6) or unix:/absolute/path.",
        flag="--bind",
    )
    protocol: Literal["http", "uwsgi"] = setting(
        "http",
        "What the app server speaks on bind: http, or uwsgi (uWSGI only: what nginx's uwsgi_pass speaks; "
        "`flaskprod up --server uwsgi` sets it).",
    )
    workers: int | Auto = setting(
        "auto",
        "Worker processes; auto = CPUs (at least 2) with threads, 2 x CPUs + 1 single-threaded; capped by memory.",
        flag="--workers",
        minimum=1,
    )
    worker_cap: int | None = setting(None, "Upper bound on auto-sized workers.", minimum=1)
    worker_memory_mb: int | Auto = setting(
        "auto",
        "Resident memory one worker needs, in MiB, which caps the worker count; auto = the loaded app as "
        "`flaskprod serve` measures it where it sizes its own workers, 128 where the count is fixed ahead "
        "(`up`; `build`, whose files must not change with what this machine measures).",
        minimum=1,
    )
    threads: int = setting(
        12,
        "Threads per worker: 12 keep 24 requests in flight on 2 CPUs while they wait on I/O (docs/defaults.md); "
        "more than 1 selects the gthread worker, 1 the sync worker.",
        flag="--threads",
        minimum=1,
    )
    conversation_threads: int | Auto = setting(
        "auto",
        "Threads each threaded worker runs beyond server.threads for conversations (WebSockets, streams of "
        "server-sent events), each of which holds a thread for as long as it lasts; auto = 100 for an app with "
        "WebSocket routes, as flask-sock's and Flask-SocketIO's docs give Gunicorn, else none (set it for an app "
        "that streams events).",
        minimum=0,
    )
    worker_class: Literal["auto", "sync", "gthread", "gevent", "eventlet"] = setting(
        "auto",
        "Gunicorn worker class; auto = gthread when threads > 1, else sync, and gevent for a Flask-SocketIO app "
        "that runs on gevent.",
    )
    timeout: int = setting(
        30,
        "Seconds a request may run: then the app answers 504; nginx answers 504 2 s later for a request "
        "the app could not stop (asleep in one C call), and a single-threaded worker still busy 5 s after "
        "the deadline is killed.",
        flag="--timeout",
        minimum=1,
    )
    soft_timeout: bool = setting(
        True,
        "Answer 504 from the app when a request passes timeout (counted from when nginx passed it on, its "
        "X-Request-Start, behind a trusted proxy), instead of only killing the worker.",
    )
    graceful_timeout: int = setting(
        30, "Seconds workers get to finish in-flight requests on shutdown or reload.", minimum=1
    )
    drain_delay: int = setting(
        0,
        "Seconds the server keeps accepting after SIGTERM while /readyz answers 503, so a load balancer "
        "takes it out of rotation before it stops listening.",
        minimum=0,
    )
    keepalive: int = setting(
        5,
        "Seconds an idle client connection is kept open by the app server (Gunicorn; uWSGI answers one request a "
        "connection and says Connection: close).",
        minimum=0,
    )
    max_requests: int | Auto = setting(
        "auto",
        "Requests after which a worker is recycled (bounds slow leaks); 0 = never; auto = 10000 on Gunicorn, "
        "0 on uWSGI, which recycles by memory instead (recycle_memory_mb): uWSGI staggers request-count "
        "restarts by worker id, so under steady load they line up, and every worker was gone at once for "
        "0.7 s (docs/defaults.md).",
        minimum=0,
    )
    max_requests_jitter: int = setting(
        5000,
        "Spread added to max_requests so workers do not restart together: Gunicorn adds a random "
        "amount up to it per worker and cycle, uWSGI a fixed step per worker id (max-requests-delta).",
        minimum=0,
    )
    recycle_memory_mb: int | Auto = setting(
        "auto",
        "A worker whose resident memory passes this many MiB is recycled gracefully (it finishes the "
        "requests it holds), once it has run 10 s: a leak bound that leaves healthy workers be; 0 = never; "
        "auto = 4 x the loaded app's memory, at least 512. The process that supervises the workers reads "
        "their memory once a second (uWSGI's reload-on-rss read it after every request: docs/defaults.md).",
        minimum=0,
    )
    backlog: int = setting(2048, "Pending connections the listening socket holds.", minimum=1)
    accept_lock: bool = setting(
        False,
        "uWSGI only: one lock around accept() shared by every worker and thread (uWSGI's thunder-lock). "
        "Off: behind nginx, which opens a connection per request, handing the lock over left cores idle "
        "(docs/defaults.md); it may pay with many workers on many cores.",
    )
    cpu_affinity: bool | Auto = setting(
        "auto",
        "Pin each worker process to a CPU of its own: its threads then hand the interpreter lock over on "
        "one core instead of across cores (2 CPUs, 8 alternated rounds: 1.16x to 1.40x the requests/s, "
        "docs/defaults.md); auto = when workers have threads and there are no more workers than CPUs, "
        "which this process has whole (no CPU quota below its CPU set).",
    )
    gc_freeze: bool = setting(
        True,
        "Freeze the objects the app made while loading (gc.freeze) where it was loaded, before workers "
        "are forked when the master loads it: the garbage collector never walks them again (a full "
        "collection of the reference app took 34 ms, in which a worker's threads all wait), so forked "
        "workers keep sharing those pages: 42 against 49 MiB PSS per uWSGI worker, requests/s unchanged "
        "in 8 alternated rounds (docs/defaults.md).",
    )
    fair_gil: bool = setting(
        True,
        "Threads take turns for the interpreter lock: a request entering the app first lets the threads "
        "already waiting for the lock go ahead (os.sched_yield). Off, the thread that just answered takes the "
        "lock back before the waiter it woke runs, and a request can wait while dozens that came later pass. "
        "8 alternated rounds at 64 connections: p99/p50 1.98 against 4.04 on /api/ping and 1.81 against 2.75 "
        "on /; requests/s 1.13x to 1.19x on /, /api/cpu and a PostgreSQL read, 0.82x on the smallest JSON "
        "response (docs/defaults.md). Only with threads.",
    )
    worker_tmp_dir: str | Auto = setting(
        "auto", "Directory for worker heartbeat files; auto = /dev/shm when present (not an overlay disk)."
    )
    preload: bool = setting(False, "Import the app in the master before forking workers.")


@dataclass(frozen=True, kw_only=True)
class ProxySettings:
    trusted_hops: int = setting(
        0,
        "Proxies in front of the app whose X-Forwarded-* headers are trusted; 0 = none. "
        "Where nginx is in front (`flaskprod up`, and `build`'s targets but the single image, which has 0) it is "
        "1, and more is refused: nginx rate-limits, guards the metrics path and logs by the address that reaches "
        "it, so it cannot see through a proxy in front of it. `build` refuses 0 too; `up` keeps an explicit 0 for "
        "an app whose own ProxyFix reads nginx's headers.",
        minimum=0,
    )
    host: str = setting(
        "127.0.0.1", "Address nginx listens on in `flaskprod up`; 0.0.0.0 for every interface.", flag="--host"
    )
    port: int = setting(8000, "Port nginx listens on in `flaskprod up`.", flag="--port", minimum=1)
    nginx: str = setting("nginx", "nginx binary `flaskprod up` runs: a name looked up on PATH or a path.")
    run_dir: str = setting(
        ".flaskprod/run", "Directory of `flaskprod up`'s config, sockets, pid files, logs and temp files."
    )
    ready_timeout: int = setting(
        60,
        "Seconds `flaskprod up` waits for /readyz through nginx (and, with --with monitoring, for Prometheus's "
        "/-/ready) before it gives up; `flaskprod check` gives the app as long to load.",
        minimum=1,
    )
    server_name: str = setting(
        "localhost",
        "Host name(s) nginx answers to, space separated: example.com, *.example.com, .example.com (it and "
        "every name under it), an address (127.0.0.1, [::1]) or a ~regex. The app's own SERVER_NAME host, and "
        "under host_matching the hosts its routes name, are answered too; TLS certificates and a Kubernetes Ingress "
        "cover these names alone.",
    )
    static_url: str = setting(
        "/static", "URL prefix of the app's static files, such as /static; not / itself, the app's."
    )
    static_dir: str | None = setting(
        None,
        "Directory of the app's static files; unset = its static folder. Blueprints' static folders are served "
        "at the URLs Flask gives them.",
    )
    max_body_size: str = setting(
        "10M",
        "Largest request body: Flask's MAX_CONTENT_LENGTH unless the app sets its own. nginx's "
        "client_max_body_size is the app's value as it loaded, so it follows the app's own; this for an app "
        "with none (None: nginx still bounds what it spools to disk).",
    )
    gzip: bool = setting(True, "Compress text responses.")
    gzip_min_length: int = setting(1000, "Smallest response, in bytes, that is compressed.", minimum=0)
    client_header_timeout: int = setting(10, "Seconds to receive the request headers.", minimum=1)
    client_body_timeout: int = setting(10, "Seconds between two reads of the request body.", minimum=1)
    send_timeout: int = setting(10, "Seconds between two writes of the response.", minimum=1)
    keepalive_timeout: int = setting(65, "Seconds an idle client keep-alive connection stays open.", minimum=0)
    event_stream_timeout: int = setting(
        3600,
        "Seconds nginx waits for the next bytes of a request that accepts text/event-stream (server-sent events, "
        "as a browser's EventSource asks) before it ends the stream; other requests wait server.timeout + 2.",
        minimum=1,
    )
    client_body_buffer_size: str = setting("128k", "Request body bytes held in memory before spilling to disk.")
    client_header_buffer_size: str = setting(
        "1k", "Buffer for request headers; longer header lines use 4 buffers of 8k."
    )
    static_max_age: int = setting(
        86400,
        "Seconds browsers cache static files whose names carry no content hash; fingerprinted names "
        "(app.3f2a1b9c.css) are cached for a year as immutable.",
        minimum=0,
    )
    rate_limit: str | None = setting(None, "Requests per client IP, e.g. `10r/s`; unset = no limit.")
    rate_limit_burst: int = setting(20, "Requests over the rate a client may burst before 429.", minimum=0)


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    url_env: str = setting("DATABASE_URL", "Environment variable that holds the database URL.")
    password_file_env: str = setting(
        "DATABASE_PASSWORD_FILE",
        "Environment variable naming a file that holds the database password (a Docker or Kubernetes secret, "
        "the file PostgreSQL's image reads as POSTGRES_PASSWORD_FILE): it is put into the URL from url_env, "
        "which then names a user and no password. Trailing newlines are dropped, as that image does.",
    )
    pool_size: int | Auto = setting(
        "auto", "Connections each process keeps; auto = fitted to connection_budget.", minimum=1
    )
    max_overflow: int = setting(2, "Extra connections a process may open under bursts.", minimum=0)
    connection_budget: int = setting(
        80, "Connections all app processes together may hold (stay under the server's max_connections).", minimum=1
    )
    pool_recycle: int = setting(1800, "Seconds after which a pooled connection is replaced.", minimum=1)
    pool_timeout: int = setting(10, "Seconds to wait for a free pooled connection.", minimum=1)
    pre_ping: bool = setting(True, "Test each pooled connection before use.")
    connect_timeout: int = setting(5, "Seconds to wait when opening a database connection.", minimum=1)
    statement_timeout: float | Auto | None = setting(
        "auto",
        "Seconds one SQL statement may run on PostgreSQL or MariaDB before the server cancels it (PostgreSQL's "
        "QueryCanceled, MariaDB's max_statement_time exceeded), so a "
        "runaway query does not hold its connection and locks after its request is gone; auto = server.timeout "
        "(a statement that long belongs to a request past its deadline, and stops before the app server kills "
        "the worker); 0 or unset = none. Set with SET statement_timeout on each connection of "
        "Flask-SQLAlchemy's engine and of pool_options(url)'s the first time a request uses it, which works "
        "through PgBouncer (the options startup parameter does not); migrations, CLI commands and jobs outside "
        "a request run without it. Behind PgBouncer in transaction mode a session setting leaks "
        "into other clients' transactions and misses later ones of this client: set 0 and give the role its own "
        "(ALTER ROLE app SET statement_timeout = '30s'). MariaDB's is max_statement_time, set the same way. "
        "SQLite has none; on MySQL nothing is set (its max_execution_time stops SELECTs only): set it on the server.",
        minimum=0,
    )
    engine_options: bool = setting(
        True,
        "Set SQLALCHEMY_ENGINE_OPTIONS (pre-ping, recycle, pool sized from the workers); dispose pools after fork.",
    )
    migration_check: bool = setting(
        True,
        "For an app using Flask-Migrate: /readyz fails (503, naming `flask db upgrade` and deploy.release_command) "
        "while the database's Alembic revision is behind the migration scripts' heads, or it has no alembic_version "
        "table (with multidb scripts, `flask db init --multidb`, each bind's database too); a revision the scripts do "
        "not know (a newer release migrated ahead) passes. Read once per process; "
        "once the database is at the heads, later probes query nothing. Without Flask-Migrate, a Flask-SQLAlchemy "
        "app's /readyz fails while tables of its models (db.metadatas) are missing, naming them: its db.create_all() "
        "command never ran; once each was seen, probes query nothing. False for an app that makes its tables "
        "itself once serving (at a first request), or with Flask-Migrate another way (db.create_all) and never "
        "stamps them.",
    )
    local_dir: str = setting(
        ".flaskprod/postgres",
        "Directory of the PostgreSQL `flaskprod up --with postgres` runs: its data (kept between runs) and its "
        "socket. Run as root, the server runs as the postgres user, which must be able to reach it.",
    )
    postgres_bin_dir: str = setting(
        "auto",
        "Directory of the PostgreSQL server programs (initdb, postgres, psql) `up --with postgres` runs; "
        "auto = the newest under /usr/lib/postgresql/*/bin, as Debian's postgresql package installs them.",
    )


@dataclass(frozen=True, kw_only=True)
class SecuritySettings:
    hsts: bool = setting(True, "Send Strict-Transport-Security on HTTPS responses.")
    hsts_max_age: int = setting(31536000, "HSTS max-age in seconds.", minimum=0)
    frame_options: Literal["DENY", "SAMEORIGIN"] = setting("DENY", "X-Frame-Options value.")
    referrer_policy: str = setting("strict-origin-when-cross-origin", "Referrer-Policy value.")
    content_security_policy: str | None = setting(None, "Content-Security-Policy value; unset = not sent.")
    session_cookie_secure: bool | Auto = setting(
        "auto", "Secure flag on the session cookie; auto = set when the request came over HTTPS."
    )
    session_cookie_samesite: Literal["Lax", "Strict", "None"] = setting("Lax", "SameSite flag on the session cookie.")
    secret_min_length: int = setting(
        32,
        "Shortest SECRET_KEY accepted outside debug and testing, in characters; a key of random bytes "
        "(os.urandom) needs half as many, each carrying a hex digit's bits twice.",
        minimum=16,
    )
    refuse_unsafe: bool = setting(
        True, "Refuse to start outside testing with debug on or a missing, short, repetitive or published SECRET_KEY."
    )
    headers: bool = setting(True, "Add security headers (nosniff, frame options, referrer policy, CSP, HSTS).")
    error_pages: bool = setting(True, "Answer errors with a small JSON or HTML body that never shows a traceback.")


@dataclass(frozen=True, kw_only=True)
class MonitoringSettings:
    metrics: bool = setting(True, "Expose Prometheus metrics.")
    queue_time: bool = setting(
        True,
        "Count how long each request waited between nginx and the app (http_request_queue_seconds, from the "
        "X-Request-Start nginx sends); behind a trusted proxy only. False saves about 5,600 instructions a "
        "request (0.9% of a small JSON response; docs/defaults-log.md).",
    )
    health: bool = setting(True, "Serve the liveness and readiness endpoints.")
    metrics_path: str = setting(
        "/metrics", "Path of the Prometheus metrics endpoint; one of its own, as for health_path."
    )
    health_path: str = setting(
        "/healthz",
        "Path of the liveness endpoint (no dependencies). Each endpoint needs a path of its own, outside the URLs "
        "of the static files (nginx answers those from disk).",
    )
    ready_path: str = setting(
        "/readyz", "Path of the readiness endpoint (runs the registered checks); one of its own, as for health_path."
    )
    metrics_responder: bool = setting(
        False,
        "`flaskprod serve` answers the metrics path itself, outside the worker pool, from the workers' metric "
        "files (HTTP, that path alone): beside a unix socket on one of its own (app.prom beside app.sock), beside "
        "a TCP port on the next port. A scrape then never waits behind requests for a worker: one queued behind "
        "busy workers timed out, and an overload read as the app being down. `up` and the built targets behind "
        "nginx turn it on, and nginx sends scrapes there; off, the app's own metrics path answers them (facing "
        "clients: serve, the single image).",
    )
    metrics_allow: str | None = setting(
        "127.0.0.1 ::1",
        "Addresses or CIDR ranges that may read the metrics path (nginx's allow list; the app's own where it faces "
        "clients: serve, the single image) and why a readiness check fails (others get each check's status "
        "alone), space separated, or all; unset = anyone.",
    )
    check_timeout: float = setting(2.0, "Seconds each readiness check may take.", minimum=0.01)
    multiproc_dir: str | None = setting(
        None, "Directory for multi-process metrics; unset = a fresh one per server start."
    )
    prometheus_host: str = setting(
        "127.0.0.1",
        "Address the Prometheus of `flaskprod up --with monitoring` listens on; it asks for no password, "
        "so the default keeps it to this machine.",
    )
    prometheus_port: int = setting(
        9090, "Port the Prometheus of `flaskprod up --with monitoring` listens on.", minimum=1
    )
    alertmanager_port: int = setting(
        9093,
        "Port the Alertmanager of `flaskprod up --with monitoring` listens on, on 127.0.0.1 alone (it asks for no "
        "password either); its cluster listener is off.",
        minimum=1,
    )
    metrics_port: int = setting(
        9117,
        "Port of nginx's listener for the scraper, the metrics path alone, with `--with monitoring`: on loopback "
        "under `flaskprod up` and `build --target systemd`, in each pod under `build --target k8s` (not 8080, the "
        "pod's nginx port; 1024 or above: that nginx runs unprivileged); nginx's public port then answers 404 there.",
        minimum=1,
    )
    retention_days: int = setting(
        15,
        "Days Prometheus keeps its samples (`--with monitoring` of `up`, compose, swarm and systemd; on Kubernetes "
        "the Prometheus resource's own retention); older ones are deleted.",
        minimum=1,
    )
    alert_webhook_url_file: str | None = setting(
        None,
        "File holding the URL Alertmanager posts alerts to, firing and resolved (its webhook JSON: a chat or "
        "paging bridge); unset = no receiver: alerts wait in Alertmanager's UI and API, grouped by alert, "
        "namespace and job. The URL is never written into `build`'s files: compose mounts this file as a secret, "
        "swarm and k8s read it from the secret their steps create from it, systemd's README installs it for "
        "Debian's Alertmanager; `up --with monitoring` reads it at start and at each SIGHUP into a config only its "
        "user reads in proxy.run_dir (Debian's Alertmanager 0.25 reads no url_file).",
    )


@dataclass(frozen=True, kw_only=True)
class LoggingSettings:
    format: Literal["json", "text"] = setting("json", "Log line format on stdout (json = Elastic Common Schema).")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting("INFO", "Lowest level logged.", flag="--log-level")
    access_log: bool | Auto = setting(
        "auto", "Log a line per request from the app; auto = only when no proxy in front logs it."
    )
    request_id_header: str = setting("X-Request-ID", "Header carrying the request id.")
    configure: bool = setting(
        True, "Send the app's log records to stdout in logging.format with the request id; false leaves logging alone."
    )
    retention_days: int = setting(
        14, "Days Loki keeps every container's log lines (`flaskprod build --with logging`); older lines are deleted.",
        minimum=1,
    )


@dataclass(frozen=True, kw_only=True)
class CheckSettings:
    silenced: str | None = setting(
        None,
        "IDs of the `flaskprod check` findings not to report (they are counted as silenced), space or comma "
        "separated, e.g. `FP-P002 FP-C003`; docs/checks.md lists them.",
    )


@dataclass(frozen=True, kw_only=True)
class TlsSettings:
    mode: Literal["off", "self-signed", "files", "acme"] = setting(
        "off",
        "HTTPS in `flaskprod up`: self-signed = a certificate made at start for proxy.server_name and the app's "
        "SERVER_NAME (for trying it out; browsers warn), files = tls.cert and tls.key, acme = a certificate from "
        "Let's Encrypt (tls.acme_server) for proxy.server_name, got and renewed by certbot; the plain port then "
        "redirects to HTTPS.",
        flag="--tls",
    )
    port: int = setting(8443, "Port nginx serves HTTPS on in `flaskprod up`.", flag="--tls-port", minimum=1)
    cert: str | None = setting(None, "PEM certificate chain nginx presents (tls.mode = files).")
    key: str | None = setting(None, "PEM private key of tls.cert (tls.mode = files); keep it readable by you only.")
    email: str | None = setting(
        None, "Address the ACME server writes to about the certificate (tls.mode = acme); unset = no account email."
    )
    acme_server: str = setting(
        "https://acme-v02.api.letsencrypt.org/directory",
        "ACME directory URL (tls.mode = acme): Let's Encrypt; its staging directory "
        "(https://acme-staging-v02.api.letsencrypt.org/directory) for trials, or a private CA's.",
    )
    acme_ca: str | None = setting(
        None, "PEM CA bundle that tls.acme_server's HTTPS certificate chains to (a private CA); unset = the system's."
    )
    acme_dir: str = setting(
        ".flaskprod/acme",
        "Directory of certbot's account, certificates and challenge files (tls.mode = acme); kept between runs, "
        "so a restart reuses the certificate.",
    )
    ingress_ranges: str | Auto = setting(
        "auto",
        "Addresses or CIDR ranges, space separated, the Ingress controller reaches the pods from "
        "(`build --target k8s --with tls`, where TLS ends at the Ingress): the pods' nginx believes the "
        "X-Forwarded-For and X-Forwarded-Proto they send, so the app sees the client and https; auto = the "
        "private ranges pod networks use.",
    )


@dataclass(frozen=True, kw_only=True)
class DeploySettings:
    image: str = setting(
        "auto",
        "Image name and tag the deployment files build and run, e.g. registry.example.com/shop:1.2.3 (a tag, "
        "not a digest: they build it); auto = `<app.name>:<app.version>`.",
    )
    replicas: int = setting(
        2, "App containers (Compose, Swarm, Kubernetes); each has deploy.cpus and deploy.memory.", minimum=1
    )
    max_replicas: int = setting(
        6, "Most app pods the Kubernetes autoscaler runs; the database budget is shared among them.", minimum=1
    )
    cpus: float = setting(
        1.0,
        "CPUs one app container (or systemd service) may use, its limit; its workers are sized from it at start.",
        minimum=0.1,
    )
    memory: str = setting(
        "512M", "Memory one app container (or systemd service) may use, its limit, e.g. 512M or 1G; at least 64M."
    )
    app_port: int = setting(
        8000,
        "Port the app server listens on inside its container (single, Compose, Swarm), in HTTP or, for uWSGI behind "
        "nginx, the uwsgi protocol; Kubernetes and systemd put it on a unix socket nginx shares.",
        minimum=1,
    )
    http_port: int = setting(80, "Port the deployment publishes nginx on (Compose, Swarm, systemd).", minimum=1)
    https_port: int = setting(
        443,
        "Port the deployment publishes nginx's HTTPS on with `build --with tls` (Compose, Swarm, systemd).",
        minimum=1,
    )
    python: str = setting("3.11", "Python version of the image (the python:<version>-slim base).")
    requirements: str | Auto = setting(
        "auto", "Requirements file the image installs, relative to the project; auto = requirements.txt."
    )
    namespace: str | None = setting(None, "Kubernetes namespace of every object; unset = the kubectl context's.")
    ingress_class: str | None = setting(
        None,
        "IngressClass of the Kubernetes Ingress and of cert-manager's ACME solver, e.g. nginx (its annotations "
        "are ingress-nginx's); unset = the cluster's default class. ingress-nginx takes no Ingress without a "
        "class unless its class is the default.",
    )
    postgres_cpus: float = setting(
        1.0, "CPUs the PostgreSQL of `build --with postgres` may use, its limit.", minimum=0.1
    )
    postgres_memory: str = setting(
        "1G",
        "Memory the PostgreSQL of `build --with postgres` may use, its limit; a quarter of it is its shared_buffers; "
        "at least 64M.",
    )
    postgres_storage: str = setting(
        "10G", "Size of the PostgreSQL data volume Kubernetes claims (`build --target k8s --with postgres`)."
    )
    release_command: str | None = setting(
        None,
        "Command run once per deploy before the new code takes requests, e.g. `flask db upgrade`, with the app's "
        "environment (its database, its secret key) and FLASK_APP naming the app: `up` and `deploy` run it in the "
        "new release before its app server starts (if it fails, the running release serves on); the built "
        "targets run it as a one-off job the app waits for (Compose, Kubernetes) or before the service starts "
        "(systemd). Words split as a shell splits them, without a shell (`sh -c '...'` for one); a bare "
        "program name is found in the app's virtualenv. Unset = none.",
    )
    release_timeout: int = setting(
        300,
        "Seconds deploy.release_command may run; past them it is stopped and the start or deploy fails.",
        minimum=1,
    )

    @property
    def release_argv(self) -> tuple[str, ...]:
        """deploy.release_command as the words it runs; () when unset."""
        return tuple(shlex.split(self.release_command)) if self.release_command else ()


@dataclass(frozen=True, kw_only=True)
class ReleaseSettings:
    keep: int = setting(
        5,
        "Releases `flaskprod up` keeps under proxy.run_dir/releases for `flaskprod rollback`, the running ones "
        "included.",
        minimum=2,
    )
    exclude: str | None = setting(
        None,
        "Paths of the project a release leaves out besides the built-in ones (.git, virtualenvs, caches, "
        ".flaskprod, the folders `flaskprod build` wrote), gitignore-style patterns, space or comma separated, "
        "e.g. `data media`.",
    )
    max_mb: int = setting(
        500,
        "Largest project, in MiB once excluded paths are left out, a release copies; over it `up` and "
        "`deploy` stop and name the largest folders and files to exclude.",
        minimum=1,
    )


@dataclass(frozen=True, kw_only=True)
class Spec:
    app: AppSettings = field(default_factory=AppSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    checks: CheckSettings = field(default_factory=CheckSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    deploy: DeploySettings = field(default_factory=DeploySettings)
    release: ReleaseSettings = field(default_factory=ReleaseSettings)
    # Where each value came from, by dotted key: default, file (with its path), env or flag.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def get(self, key: str) -> Any:
        section, name = key.split(".", 1)
        return getattr(getattr(self, section), name)

    def flagged(self) -> dict[str, Any]:
        """The values given as command-line flags: a child process has no flags, so they travel as env."""
        return {key: self.get(key) for key, origin in self.origins.items() if origin == "flag"}

    def replace(self, **values: Any) -> Spec:
        """A copy with dotted keys set to already-valid values, e.g. replace(**{"proxy.trusted_hops": 1})."""
        changed: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            section, name = key.split(".", 1)
            changed.setdefault(section, {})[name] = value
        sections = {s: dataclasses.replace(getattr(self, s), **v) for s, v in changed.items()}
        return dataclasses.replace(self, **sections)


@dataclass(frozen=True)
class SettingInfo:
    """One setting as the docs, the CLI and `flaskprod config` see it."""

    key: str
    type: Any
    default: Any
    doc: str
    flag: str | None
    minimum: float | None

    @property
    def env(self) -> str:
        section, name = self.key.split(".", 1)
        return f"{ENV_PREFIX}{section.upper()}__{name.upper()}"

    @property
    def type_name(self) -> str:
        return describe_type(self.type)


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Spec)
    return {f.name: hints[f.name] for f in dataclasses.fields(Spec) if f.name != "origins"}


def settings() -> Iterator[SettingInfo]:
    """Every setting, in declaration order."""
    for section, cls in _section_types().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield SettingInfo(
                key=f"{section}.{f.name}",
                type=hints[f.name],
                default=f.default,
                doc=f.metadata["doc"],
                flag=f.metadata["flag"],
                minimum=f.metadata["minimum"],
            )


SETTINGS: dict[str, SettingInfo] = {s.key: s for s in settings()}


def describe_type(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(f'"{a}"' for a in typing.get_args(tp))
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " | ".join(describe_type(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "unset"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}[tp]


def parse_size(text: str) -> int:
    """'10M' -> bytes; raises ValueError for anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[bB]?\s*", text)
    if not match or int(match[1]) * SIZE_UNITS[match[2].lower()] > MAX_SIZE:
        raise ValueError(text)
    return int(match[1]) * SIZE_UNITS[match[2].lower()]


# The largest number and size taken: what a C int and nginx's off_t hold. Beyond them nginx refuses its own
# config ("invalid value") and uWSGI overflows, late and in their words, not the setting's.
MAX_NUMBER = 2**31 - 1
MAX_SIZE = 2**63 - 1

_TRUE = {"1", "true", "yes", "on"}
# What a string source (env, --set) writes for an optional setting left unset; "unset" as errors name it.
_UNSET = {"", "none", "null", "unset"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(value: Any, tp: Any) -> Any:
    """Convert a TOML value or a string from env/CLI to tp; raise ValueError when it does not fit."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        # Unset first ("", "none" or "unset" clears an optional string), then the declared order, so "auto"
        # stays a string and "4" becomes an int.
        args = sorted(typing.get_args(tp), key=lambda a: a is not type(None))
        for arg in args:
            try:
                return _coerce(value, arg)
            except ValueError:
                continue
        raise ValueError(value)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        if isinstance(value, str):
            for a in allowed:  # case-insensitive match, returning the declared spelling
                if isinstance(a, str) and a.lower() == value.lower():
                    return a
        raise ValueError(value)
    if tp is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in _UNSET):
            return None
        raise ValueError(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(value)
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise ValueError(value)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, (int, float)):
            return float(value)
        # float() also reads "1_0" as ten: no one writes a number so in a variable or a flag, and int refuses it.
        if isinstance(value, str) and "_" not in value:
            return float(value)
        raise ValueError(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(value)
    raise TypeError(f"unsupported setting type {tp!r}")


class _Expected(ValueError):
    """A value a check refuses, with what it expects instead of the setting's general description."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


_PORT = "a port from 1 to 65535"


def _endpoint_path(example: str) -> str:
    return f"a URL path beginning with /, such as {example}, without spaces or ;{{}}\"'"

# The smallest memory limit taken: below it no app server or PostgreSQL starts, and the limit kills it.
MIN_MEMORY = "64M"
_MEMORY = f"a size of at least {MIN_MEMORY}, such as 512M or 1G"

_LISTEN_HOST = "an address such as 127.0.0.1 or ::1 (no brackets), 0.0.0.0 or :: for every interface, or a host name"
_FOLDER = "a folder's path, such as .flaskprod/run (relative to the project)"
_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# The Referrer-Policy header's values (W3C Referrer Policy); a list is read as its last one the browser knows.
REFERRER_POLICIES = (
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
)


_EXTRA_CHECKS: dict[str, tuple[Any, str]] = {
    "server.bind": (
        lambda v: _bind(v),
        "host:port such as 127.0.0.1:8000 or [::1]:8000 (port 1 to 65535), or unix:/absolute/path.sock",
    ),
    "proxy.max_body_size": (parse_size, "a size such as 10M, 512k or 1048576"),
    "proxy.client_body_buffer_size": (parse_size, "a size such as 128k"),
    # 0 passed nginx -t, then nginx reset every connection: a SIGHUP to it took the site down.
    "proxy.client_header_buffer_size": (lambda v: _at_least_size(v, "1k"), "a size of at least 1k, such as 1k"),
    "proxy.port": (lambda v: _at_most(v, 65535), _PORT),
    # Written unquoted into nginx.conf's listen (and Prometheus's --web.listen-address): one word, or nginx fails.
    "proxy.host": (lambda v: _listen_host(v), _LISTEN_HOST),
    "monitoring.prometheus_host": (lambda v: _listen_host(v), _LISTEN_HOST),
    # Empty, each was read as the current folder.
    "proxy.run_dir": (lambda v: _folder(v), _FOLDER),
    "database.local_dir": (lambda v: _folder(v), _FOLDER),
    "tls.acme_dir": (lambda v: _folder(v), _FOLDER),
    # nginx reads it as $http_<name>, and a space or ; in it broke nginx.conf's map.
    "logging.request_id_header": (
        lambda v: _match(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*", v),
        "a header name of letters, digits and -, such as X-Request-ID",
    ),
    # Sent on every response: a line break in one made each a 500 ("Invalid response header").
    "security.referrer_policy": (
        lambda v: _referrer_policy(v),
        f"one or more of {', '.join(REFERRER_POLICIES)}, separated by commas",
    ),
    "security.content_security_policy": (
        lambda v: _match(r"[\x20-\x7e]+", v),
        "a policy such as default-src 'self', on one line of printable ASCII (unset for none)",
    ),
    # Names of environment variables, which a Compose file or a Kubernetes manifest sets.
    "database.url_env": (lambda v: _match(_ENV_NAME, v), "an environment variable's name, such as DATABASE_URL"),
    "database.password_file_env": (
        lambda v: _match(_ENV_NAME, v),
        "an environment variable's name, such as DATABASE_PASSWORD_FILE",
    ),
    "tls.email": (lambda v: _match(r"[^@\s]+@[^@\s]+\.[^@\s]+", v), "an email address such as ops@example.com"),
    "tls.acme_server": (
        lambda v: _match(r"https?://[^\s\"'<>]+", v),
        "an ACME directory URL such as https://acme-v02.api.letsencrypt.org/directory",
    ),
    "proxy.server_name": (
        lambda v: _server_names(v),
        "host names separated by spaces, such as example.com www.example.com, *.example.com, .example.com, "
        "127.0.0.1 or [::1]",
    ),
    "proxy.static_url": (
        lambda v: _match(URL_PATH, v),
        "a URL path such as /static or /assets/ (not / alone: that is the app's), without spaces or ;{}\"'",
    ),
    # Above 0: nginx refuses rate=0r/s.
    "proxy.rate_limit": (lambda v: _match(r"0*[1-9]\d*r/[sm]", v), "a rate above 0 such as 10r/s or 300r/m"),
    # Each is a location nginx.conf names and a route the app registers: a path, as proxy.static_url is.
    "monitoring.health_path": (lambda v: _match(URL_PATH, v), _endpoint_path("/healthz")),
    "monitoring.ready_path": (lambda v: _match(URL_PATH, v), _endpoint_path("/readyz")),
    "monitoring.metrics_path": (lambda v: _match(URL_PATH, v), _endpoint_path("/metrics")),
    "monitoring.metrics_allow": (
        lambda v: _addresses(v, word="all"),
        "all, or addresses or CIDR ranges separated by spaces, such as 127.0.0.1 ::1 10.0.0.0/8; unset = anyone",
    ),
    "tls.port": (lambda v: _at_most(v, 65535), _PORT),
    "monitoring.prometheus_port": (lambda v: _at_most(v, 65535), _PORT),
    "monitoring.metrics_port": (lambda v: _at_most(v, 65535), _PORT),
    "deploy.image": (
        lambda v: _image(v),
        "auto, or an image name such as shop:1.2.3 or registry.example.com:5000/team/shop:1.2.3 "
        "(a lowercase repository path, an optional :tag)",
    ),
    "deploy.memory": (lambda v: _at_least_size(v, MIN_MEMORY), _MEMORY),
    "deploy.postgres_memory": (lambda v: _at_least_size(v, MIN_MEMORY), _MEMORY),
    "deploy.postgres_storage": (parse_size, "a size such as 10G"),
    # The app server's metrics responder listens on the next port (sizing.responder_bind).
    "deploy.app_port": (lambda v: _at_most(v, 65534), "a port from 1 to 65534"),
    "deploy.http_port": (lambda v: _at_most(v, 65535), _PORT),
    "deploy.https_port": (lambda v: _at_most(v, 65535), _PORT),
    "tls.ingress_ranges": (
        lambda v: _addresses(v, word="auto"),
        "auto, or addresses or CIDR ranges such as 10.0.0.0/8",
    ),
    "deploy.python": (lambda v: _match(r"3\.\d+", v), "a Python version such as 3.11"),
    "deploy.release_command": (
        lambda v: _command(v),
        "a command such as `flask db upgrade`, its quotes closed (unset for none)",
    ),
    "deploy.namespace": (
        # An RFC 1123 label, as Kubernetes names a namespace.
        lambda v: _match(r"(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?", v),
        "a Kubernetes namespace such as shop-prod: at most 63 lowercase letters, digits and -, beginning and "
        "ending with a letter or digit",
    ),
    "deploy.ingress_class": (
        # A DNS-1123 subdomain, as Kubernetes names objects.
        lambda v: _match(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", v),
        "an IngressClass name such as nginx (lowercase letters, digits, - and .)",
    ),
}

# One DNS label as resolvers and nginx take it (underscores too: Compose service names have them).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_NAME = rf"{_LABEL}(?:\.{_LABEL})*"
# nginx's server_name forms: a name (or address), *.name, .name (it and every name under it), name.*
_SERVER_NAME = re.compile(rf"(?:\*\.|\.)?{_HOST_NAME}|{_HOST_NAME}\.\*")
# What ends or quotes a word in nginx.conf, where these values are written unquoted.
_NGINX_SPECIAL = re.compile(r"[\s;{}\"']")
# A location prefix: segments of URL path characters, an optional trailing slash (nginx.conf adds one).
URL_PATH = r"(?:/[A-Za-z0-9._~!$&()*+,=:@%-]+)+/?"
# Docker's reference grammar (distribution/reference), without the digest: [host[:port]/]path[:tag].
_DOMAIN_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?/)?"
    rf"{_PATH_PART}(?:/{_PATH_PART})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
)


def _match(pattern: str, value: str) -> None:
    if not re.fullmatch(pattern, value):
        raise ValueError(value)


def _at_most(value: int, limit: int) -> None:
    if value > limit:
        raise ValueError(value)


def _at_least_size(value: str, minimum: str) -> None:
    if parse_size(value) < parse_size(minimum):
        raise ValueError(value)


def _addresses(value: str, *, word: str) -> None:
    """word, or addresses or CIDR ranges, space separated, in the forms nginx's allow and set_real_ip_from take."""
    if value == word:
        return
    if not value.split():
        raise ValueError(value)
    for item in value.split():
        address, slash, prefix = item.partition("/")
        if "%" in address:  # a scope id (fe80::1%eth0): Python reads it, nginx does not
            raise ValueError(item)
        version = ipaddress.ip_address(address).version
        if slash and not (re.fullmatch(r"[0-9]{1,3}", prefix) and int(prefix) <= (32 if version == 4 else 128)):
            raise ValueError(item)


def _bind(value: str) -> None:
    """host:port, [v6]:port or unix:/absolute/path, as the app servers and servers/common.parse_bind read it."""
    if value.startswith("unix:"):
        # A space is taken: nginx.conf quotes the path (`up` in a project whose path has one listens there).
        if not re.fullmatch(r"unix:/[^\x00-\x1f\x7f;{}\"']*", value) or value.endswith("/"):
            raise ValueError(value)
        return
    host, colon, port = value.rpartition(":")
    if not colon or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) <= 65535:
        raise ValueError(value)
    if host.startswith("[") and host.endswith("]"):
        if ipaddress.ip_address(host[1:-1]).version != 6:
            raise ValueError(value)
    elif host and not re.fullmatch(_HOST_NAME, host):  # an empty host is every interface, as parse_bind reads it
        raise ValueError(value)


def _listen_host(value: str) -> None:
    """An IP address (IPv6 without brackets: nginx.conf and Prometheus add them) or a host name."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        _match(_HOST_NAME, value)


def _folder(value: str) -> None:
    if not value.strip() or re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError(value)


def _referrer_policy(value: str) -> None:
    if not all(token.strip() in REFERRER_POLICIES for token in value.split(",")):
        raise ValueError(value)


def _server_names(value: str) -> None:
    """proxy.server_name: names nginx's server_name takes, written unquoted into nginx.conf."""
    names = value.split()
    if not names:
        raise ValueError(value)
    for name in names:
        if name == "_":
            raise _Expected(
                "the names this site answers to, such as example.com: _ is the catch-all flaskprod's nginx "
                "keeps for closing requests to other names"
            )
        if name.startswith("~"):
            if len(name) == 1 or _NGINX_SPECIAL.search(name):
                raise _Expected("a ~regex without ;{}\"' (nginx.conf holds it unquoted), or names such as example.com")
        elif name.startswith("[") and name.endswith("]"):
            if ipaddress.ip_address(name[1:-1]).version != 6:
                raise ValueError(value)
        elif not _SERVER_NAME.fullmatch(name):
            raise ValueError(value)


# Words a shell would act on, which a command run without one passes to the program as arguments.
_SHELL_OPERATORS = frozenset({"&&", "||", "|", ";", "&", ">", ">>", "<", "2>&1"})
# NAME=value before the program: a shell sets the variable, a command run without one runs no program by that name.
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def _command(value: str) -> None:
    """deploy.release_command: words shlex can split, none of them a shell operator."""
    words = shlex.split(value)  # ValueError on an unclosed quote
    operators = [word for word in words if word in _SHELL_OPERATORS]
    if operators:
        raise _Expected(
            f"one command, run without a shell, so {operators[0]} would reach it as an argument: for several, "
            "write them in a script and name it, or give sh -c '...'"
        )
    if words and _ASSIGNMENT.match(words[0]):
        raise _Expected(
            f"a program first, run without a shell, so {words[0]} would be run as one: give env {shlex.join(words)} "
            "(env sets the variable), or set it in the app's environment"
        )


def _image(value: str) -> None:
    """deploy.image: auto, or a reference `docker build -t` takes."""
    if value == "auto":
        return
    if "@" in value:
        raise _Expected(
            "a :tag, not an @digest: the deployment files build and tag this image and name its -nginx image "
            "after it, e.g. registry.example.com/shop:1.2.3"
        )
    if not _IMAGE.fullmatch(value):
        raise ValueError(value)


def validate(key: str, value: Any, source: str) -> Any:
    """The value for key, converted and checked, or a SpecError naming key (unknown too), value, allowed and source."""
    _check_key(key, source)
    info = SETTINGS[key]
    allowed = info.type_name
    try:
        result = _coerce(value, info.type)
        numeric = isinstance(result, (int, float)) and not isinstance(result, bool)
        at_least = f" >= {info.minimum:g}" if info.minimum is not None else ""
        # nan passes every comparison and inf overflows what is derived from it: neither is a limit or a time.
        if isinstance(result, float) and not math.isfinite(result):
            raise _Expected(f"a finite {allowed}{at_least}")
        if info.minimum is not None and numeric and result < info.minimum:
            raise _Expected(f"{allowed}{at_least}")
        if numeric and result > MAX_NUMBER:
            raise _Expected(f"{allowed}{at_least} and at most {MAX_NUMBER}")
        if key in _EXTRA_CHECKS:
            check, allowed = _EXTRA_CHECKS[key]
            if result is not None:
                check(result)
    except _Expected as exc:
        allowed = exc.expected
    except ValueError:
        pass
    else:
        return result
    raise SpecError(f"{source}: invalid value {_shown(value)} for {key}: expected {allowed}")


def _shown(value: Any) -> str:
    """A value as the user wrote it: TOML's true and 1979-05-27, not Python's True and datetime.date(...)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(_shown, value)) + "]"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, str) and len(value) > SHOWN_AT_MOST:  # a whole file pasted into one: its start tells it
        return f"{value[:SHOWN_AT_MOST]!r}... ({len(value):,} characters)"
    return repr(value)


# How much of a bad value an error repeats.
SHOWN_AT_MOST = 200


def _suggest(key: str) -> str:
    section, _, name = key.rpartition(".")
    if any(k.rpartition(".")[0] == section for k in SETTINGS):
        # Within a known section the name alone decides: the "server." every key there shares made server.nope
        # look like server.kind.
        names = [k.rpartition(".")[2] for k in SETTINGS if k.rpartition(".")[0] == section]
        close = [f"{section}.{n}" for n in difflib.get_close_matches(name, names, n=1, cutoff=0.6)]
    else:
        close = difflib.get_close_matches(key, SETTINGS, n=1, cutoff=0.6)
    if not close:
        # A bare name is often meant within its section: "workers" -> "server.workers".
        close = [k for k in SETTINGS if k.rpartition(".")[2] == name][:1]
    return f"; did you mean {close[0]}?" if close else "; see `flaskprod config` for every setting"


def _check_key(key: str, source: str) -> None:
    if key not in SETTINGS:
        raise SpecError(f"{source}: unknown setting {key!r}{_suggest(key)}")


def find_config_file(root: Path) -> Path | None:
    """flaskprod.toml, else a pyproject.toml with a [tool.flaskprod] table, in root."""
    candidate = root / CONFIG_FILE
    if candidate.is_file() or candidate.exists() or candidate.is_symlink():
        # A folder or a dangling link by that name too: passed over, every setting meant for it would be lost
        # in silence; read_file_layer says what is wrong with it.
        return candidate
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        text = pyproject.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return pyproject  # unreadable: read_file_layer says why
    try:
        tool = tomllib.loads(text).get("tool", {})
    except tomllib.TOMLDecodeError:
        # Broken: if it means to hold the settings, read_file_layer says what is wrong with it.
        return pyproject if re.search(r"^\s*\[\s*tool\.flaskprod", text, re.M) else None
    return pyproject if isinstance(tool, dict) and "flaskprod" in tool else None


# A config file holds a few dozen settings; more than this is some other file, or a device that never ends.
MAX_CONFIG_BYTES = 2**20


def read_file_layer(path: Path) -> dict[str, Any]:
    """The dotted settings in a flaskprod.toml or a pyproject.toml's [tool.flaskprod]."""
    with contextlib.suppress(OSError):  # else opening it says why
        if stat.S_ISFIFO(path.stat().st_mode):  # its open waits for a writer, if one ever comes
            raise SpecError(f"{path}: a pipe, not a config file; pass a file with --config")
    try:
        with path.open("rb") as fh:
            text = fh.read(MAX_CONFIG_BYTES + 1)  # /dev/zero, read whole, ended in a MemoryError
        if len(text) > MAX_CONFIG_BYTES:
            raise SpecError(
                f"{path}: more than {MAX_CONFIG_BYTES // 2**20} MiB, which no config file is; pass the file with "
                "--config"
            )
        data = tomllib.loads(text.decode())
    except FileNotFoundError:
        raise SpecError(f"{path}: config file not found; create it or pass another with --config") from None
    except OSError as exc:
        raise SpecError(
            f"{path}: cannot read config file: {exc.strerror}; make it a file you can read, or pass another with "
            "--config"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}; fix the file") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 (byte {exc.start}), which TOML must be; save it as UTF-8") from None
    prefix = ""
    if path.name == "pyproject.toml":
        prefix = "tool.flaskprod."
        tool = data.get("tool", {})
        data = tool.get("flaskprod", {}) if isinstance(tool, dict) else {}
        if not isinstance(data, dict):
            raise SpecError(f"{path}: tool.flaskprod must hold tables of settings, such as [tool.flaskprod.server]")
    values: dict[str, Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise SpecError(f"{path}: {_not_a_table(section, prefix)}")
        for name, value in table.items():
            values[f"{section}.{name}"] = value
    return values


def _not_a_table(key: str, prefix: str) -> str:
    """What is wrong with a value at the top level of the settings, where only [section] tables go."""
    if key in _section_types():
        return f"{key!r} is a section, not a value: write [{prefix}{key}] with its settings on the lines below it"
    owners = [k for k in SETTINGS if k.split(".", 1)[1] == key]
    if owners:
        section = owners[0].split(".", 1)[0]
        return f"{key!r} is outside any section: put it under [{prefix}{section}] (the setting {owners[0]})"
    outside = f"{key!r} is outside any section"
    if close := difflib.get_close_matches(key, _section_types(), n=1):
        return f"{outside}; did you mean the section [{prefix}{close[0]}]?"
    return f"{outside}: settings go in sections such as [{prefix}server]; see `flaskprod config` for every setting"


class EnvLayer(dict[str, str]):
    """FLASKPROD_SECTION__NAME variables as dotted settings, each with its variable as spelled (errors name it)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, str] = {}


def read_env_layer(environ: Mapping[str, str]) -> EnvLayer:
    """FLASKPROD_SECTION__NAME variables as dotted settings; the section and name in any case.

    Where a setting is spelled twice, its documented spelling (capitals) wins: flaskprod writes that one for its
    children (`up`'s app servers, serve's workers) over what they inherit. Two other spellings are refused."""
    values = EnvLayer()
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _ENV_NOT_SETTINGS:
            continue
        rest = name[len(ENV_PREFIX) :]
        if "__" not in rest:
            raise SpecError(f"environment variable {name}: expected {ENV_PREFIX}SECTION__NAME{_env_hint(rest)}")
        section, key = rest.lower().split("__", 1)
        dotted = f"{section}.{key}"
        if (other := values.names.get(dotted)) is not None:
            documented = SETTINGS[dotted].env if dotted in SETTINGS else None
            if documented not in (name, other):
                raise SpecError(f"environment variables {other} and {name} both set {dotted}: unset one of them")
            if other == documented:
                continue
        values[dotted], values.names[dotted] = value, name
    return values


def _env_hint(rest: str) -> str:
    """The variable meant by FLASKPROD_WORKERS or FLASKPROD_SERVER_WORKERS, else an example."""
    words = rest.lower()
    meant = [info for info in SETTINGS.values() if words in (info.key.split(".", 1)[1], info.key.replace(".", "_"))]
    example = meant[0].env if meant else f"{ENV_PREFIX}SERVER__WORKERS"
    return f"; did you mean {example}?" if meant else f", such as {example}"


# Variables with the prefix that are not settings: the path of the config file itself, the
# file whose existence tells every worker to report "draining" (see runtime/draining.py), and where
# `flaskprod serve` records what its probe learned of the app for `up` (servers/probe.py), and what tells the
# app's workers that serve relays their stdout and stderr as JSON (runtime/logs.py).
CONFIG_ENV = "FLASKPROD_CONFIG"
DRAIN_FILE_ENV = "FLASKPROD_DRAIN_FILE"
PROBE_RECORD_ENV = "FLASKPROD_PROBE_RECORD"
LOG_RELAY_ENV = "FLASKPROD_LOG_RELAY"
STARTUP_TOLD_ENV = "FLASKPROD_STARTUP_TOLD"  # serve's probe told the app's start-up warnings (runtime/proxy.py)
_ENV_NOT_SETTINGS = {CONFIG_ENV, DRAIN_FILE_ENV, PROBE_RECORD_ENV, LOG_RELAY_ENV, STARTUP_TOLD_ENV}


def load_spec(
    root: str | os.PathLike[str] | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    set_flags: Mapping[str, Any] | None = None,
) -> Spec:
    """The effective spec: defaults < config file < FLASKPROD_* env < CLI flags, each checked.

    set_flags are the --set KEY=VALUE flags, beneath the named ones (--workers) and named so in errors.
    Every layer is validated before anything is used, so a bad value anywhere is one SpecError.
    """
    environ = os.environ if environ is None else environ
    base = Path(root) if root is not None else Path.cwd()
    values: dict[str, Any] = {}
    origins = {key: "default" for key in SETTINGS}
    for source, layer in _layers(base, config, environ, flags, set_flags):
        for key, raw in layer.items():
            values[key] = validate(key, raw, _describe_source(source, key, layer))  # an unknown key too
            origins[key] = "flag" if source.startswith("flag") else source
    if "app.name" not in values:
        # As Compose names a project by its directory: "shop", not one name shared by every app.
        values["app.name"] = project_name(base, values.get("app.target"))
        origins["app.name"] = "project"
    if "app.version" not in values and (version := project_version(base)):
        values["app.version"] = version
        origins["app.version"] = "project"
    spec = dataclasses.replace(Spec().replace(**values), origins=origins)
    _check_endpoints_apart(spec)
    return spec


def served_endpoints(spec: Spec) -> tuple[str, ...]:
    """The settings of the paths Production(app) serves: health and readiness, metrics, each when on."""
    health = ("monitoring.health_path", "monitoring.ready_path") if spec.monitoring.health else ()
    return (*health, *(("monitoring.metrics_path",) if spec.monitoring.metrics else ()))


def _check_endpoints_apart(spec: Spec) -> None:
    """SpecError when two endpoints share a path: the app keeps one of them there, and the other is gone (liveness
    answered by the readiness checks, so a database outage restarts every replica)."""
    served = served_endpoints(spec)
    for i, key in enumerate(served):
        for other in served[:i]:
            if spec.get(key) != spec.get(other):
                continue
            # The one the user moved is the one to move back: the other is at its default.
            blamed, kept = (other, key) if spec.origins.get(key, "default") == "default" else (key, other)
            default = SETTINGS[blamed].default
            example = "" if default in {spec.get(k) for k in served} else f", such as {default}"
            source = _describe_source(spec.origins.get(blamed, "default"), blamed)
            raise SpecError(
                f"{source}: {blamed} {spec.get(blamed)} is {kept} too: each endpoint needs a path of its own, "
                f"or the app answers only one of them there; set {blamed} to another path{example}"
            )


def refuse_endpoints_under(spec: Spec, static: Iterable[tuple[str, str]]) -> None:
    """SpecError when an endpoint's path is under a URL nginx serves static files at: nginx answers it from disk
    (404), so the probe or scraper never reaches the app. static: (URL without its trailing slash, the Flask
    endpoint of its folder: `static`, `admin.static`), as `build` and `up` learn them from the loaded app."""
    static = tuple(static)
    served = served_endpoints(spec)
    for key in served:
        path = spec.get(key)
        for url, endpoint in static:
            if not path.startswith(f"{url}/"):
                continue
            whose = "the app's" if endpoint == "static" else f"blueprint {endpoint.rpartition('.')[0]}'s"
            default = SETTINGS[key].default
            taken = {spec.get(k) for k in served}
            clear = default not in taken and not any(default.startswith(f"{u}/") for u, _ in static)
            raise SpecError(
                f"{key} {path} is under {url}/, where nginx serves {whose} static files from disk, so it never "
                f"reaches the app; set {key} to a path outside it{f', such as {default}' if clear else ''}"
            )


def _layers(
    base: Path,
    config: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    flags: Mapping[str, Any] | None,
    set_flags: Mapping[str, Any] | None,
) -> list[tuple[str, Mapping[str, Any]]]:
    """The spec's layers, lowest first: the config file, FLASKPROD_* env, --set flags, named flags."""
    config = config or environ.get(CONFIG_ENV)
    path = Path(config) if config else find_config_file(base)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if path is not None:
        layers.append((f"file {path}", read_file_layer(path)))
    layers.append(("env", read_env_layer(environ)))
    layers.append(("flag --set", dict(set_flags or {})))
    layers.append(("flag", {k: v for k, v in (flags or {}).items() if v is not None}))
    return layers


def load_setting(
    key: str, *, config: str | os.PathLike[str] | None = None, set_flags: Mapping[str, Any] | None = None
) -> Any:
    """One setting as load_spec layers it, the others neither read nor checked: deploy and rollback need
    proxy.run_dir alone, and a flaskprod.toml that is wrong elsewhere (why one rolls back) must not stop them.
    A --set of the key wins without the file being read, so even a file that does not parse is no obstacle."""
    if set_flags and key in set_flags:
        return validate(key, set_flags[key], _describe_source("flag --set", key))
    value = SETTINGS[key].default
    for source, layer in _layers(Path.cwd(), config, os.environ, None, None):
        if key in layer:
            value = validate(key, layer[key], _describe_source(source, key, layer))
    return value


def _describe_source(source: str, key: str, layer: Mapping[str, Any] | None = None) -> str:
    """How an error names where a value came from: the file, the variable (as spelled, when layer has it) or the
    flag."""
    if source == "env":
        section, _, name = key.partition(".")
        spelled = layer.names.get(key) if isinstance(layer, EnvLayer) else None
        return f"env {spelled or f'{ENV_PREFIX}{section.upper()}__{name.upper()}'}"
    if source == "flag --set":
        return f"flag --set {key}"
    if source == "flag":
        info = SETTINGS.get(key)
        return f"flag {info.flag}" if info and info.flag else f"flag --set {key}"
    return source


def spec_as_dict(spec: Spec) -> dict[str, Any]:
    """Every effective value by dotted key."""
    return {key: spec.get(key) for key in SETTINGS}


def env_for(values: Mapping[str, Any]) -> dict[str, str]:
    """FLASKPROD_* variables that carry these dotted settings to a child process."""
    out = {}
    for key, value in values.items():
        text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        out[SETTINGS[key].env] = text
    return out
