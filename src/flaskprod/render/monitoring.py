"""Prometheus, Alertmanager and Grafana files for a deployment: scrape config, alerts with their promtool unit
tests, where the alerts go, a dashboard.

Every query reads the series flaskprod's Production(app) exports (runtime/metrics.py), and every
threshold with a number in the spec comes from it: the slow-request bound from server.timeout and
the histogram's real bucket bounds, the saturation line from the derived workers and threads, the
readiness window from server.drain_delay. Each alert ships with a promtool unit test that shows it
firing on one series and quiet on another, so a threshold edited by hand is caught by
`promtool test rules`. Prometheus sends what fires to Alertmanager, which groups it and posts it to the
webhook monitoring.alert_webhook_url_file names, or keeps it in its UI and API when none is set.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import BuildError
from ..plural import counted
from ..runtime.metrics import BUCKETS, DURATION, IN_PROGRESS, LE_LABELS, QUEUED, REQUESTS
from ..sizing import GREENLET_CLASSES, Derived
from ..spec import Spec
from . import logs
from .deployment import Deployment, ServerKind
from .yamlfile import dump_yaml, generated_header

__all__ = [
    "ALERTMANAGER_CONFIG_DIR",
    "ALERTMANAGER_PORT",
    "GRAFANA_DASHBOARDS_DIR",
    "GRAFANA_PROVISIONING_DIR",
    "PROMETHEUS_CONFIG_DIR",
    "PROMETHEUS_PORT",
    "PROMETHEUS_URL",
    "WEBHOOK_SECRET",
    "Monitored",
    "Receiver",
    "Scrape",
    "alert_files",
    "alert_groups",
    "alertmanager_file",
    "dashboard_json",
    "monitoring_files",
    "prometheus_files",
    "refuse_unscrapable",
    "route_timing",
]

# Where the containers expect the files (the official images' defaults, except the dashboards
# folder, which the provider file below names): the renderers mount prometheus/ and grafana/ there.
PROMETHEUS_PORT = 9090
PROMETHEUS_CONFIG_DIR = "/etc/prometheus"
GRAFANA_PROVISIONING_DIR = "/etc/grafana/provisioning"
GRAFANA_DASHBOARDS_DIR = "/var/lib/grafana/dashboards"
# Grafana reaches Prometheus by its service name: the renderers name the service `prometheus`.
PROMETHEUS_URL = f"http://prometheus:{PROMETHEUS_PORT}"
ALERTMANAGER_PORT = 9093
ALERTMANAGER_CONFIG_DIR = "/etc/alertmanager"
# The containers' Prometheus reaches Alertmanager by its service name.
ALERTMANAGER_TARGET = f"alertmanager:{ALERTMANAGER_PORT}"
# The secret holding the webhook's URL, mounted at /run/secrets/<this> in Compose and Swarm, and its key in the
# Kubernetes Secret: the URL often carries the receiver's token, so it is never in a generated file.
WEBHOOK_SECRET = "alert_webhook_url"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}

# The exported series (runtime/metrics.py), by the names Prometheus sees.
REQUESTS_TOTAL = f"{REQUESTS[0]}_total"
DURATION_BUCKET = f"{DURATION[0]}_bucket"
DURATION_COUNT = f"{DURATION[0]}_count"
IN_FLIGHT = IN_PROGRESS[0]
QUEUE_BUCKET = f"{QUEUED[0]}_bucket"
APP_INFO = "app_info"

# No spec setting says how many errors are too many: one request in twenty failing is an outage
# to a user, well above the background of a healthy app.
ERROR_RATIO = 0.05
# "Slow" is a share of the request deadline (server.timeout): past half of it a request is at
# risk of the app's 504; the bound is then rounded down to a bucket bound the histogram has.
SLOW_SHARE = 0.5
SLOW_QUANTILE = 0.99
# In-flight requests over this share of the threads every worker has: new requests queue in the backlog.
SATURATION = 0.9
# A wait between nginx and the app that a user feels, a bucket bound of the histogram: a healthy stack
# under full load waits milliseconds (p99 13 ms on the benchmarks' smallest request, docs/defaults-log.md).
QUEUED_LE = "0.25"
# More than one request in ten waiting that long: not a burst, the workers are too few.
QUEUED_SHARE = 0.1
# A readiness probe failing for more than half of the window: more than a drain (server.drain_delay)
# explains, as the window is at least four drains long.
READINESS_FAILING = 0.5
# The rules sum by namespace too: Kubernetes' series carry it (the Prometheus Operator adds it), so one app
# deployed to two namespaces (staging, production) alerts for each apart; elsewhere no series has it. And by
# release: `flaskprod up` labels each release's series with its number, so a canary is judged on its own requests
# (all of 2% failing is an outage of the canary, not 2% of the job's); a container's series have no release.
BY = "namespace, job, release"
BY_INSTANCE = "namespace, job, instance, release"
# Seconds of the rate() windows and of `for`: 20 scrapes at the default interval, so one missed
# scrape or a short burst does not page anyone.
WINDOW = 300
# How often DNS discovery looks again; AppDown waits longer, so a container a rolling update
# removed leaves the targets before it could page.
DNS_REFRESH = 30
DOWN_FOR = 60
# Share of scrapes answered over WINDOW below which ScrapesFailing fires: one in ten failing is no blip (a switch
# of releases costs one or two of the 60 scrapes `up` makes in it).
SCRAPES_ANSWERED = 0.9
# Alertmanager's routing: one notification per alert and deployment (namespace, job), not one per container, a
# first one half a minute after the first alert of a group fires (its fellows then come with it), again when the
# group changes, and a reminder every few hours while it keeps firing (resolved alerts are sent too).
GROUP_BY = ("alertname", "namespace", "job")
GROUP_WAIT = 30
GROUP_INTERVAL = 300
REPEAT_INTERVAL = 4 * 3600
# The receiver that sends nowhere: alerts are kept, grouped, in Alertmanager's UI and API.
NOWHERE = "ui-only"
WEBHOOK = "webhook"
# Grafana 12's dashboard schema; later migrations touch nothing this dashboard uses.
DASHBOARD_SCHEMA_VERSION = 42

Severity = Literal["critical", "warning"]


@dataclass(frozen=True, kw_only=True)
class Scrape:
    """How Prometheus finds the app's metrics: static host:port targets and/or DNS A-record names
    (the Compose service `app`, Swarm's `tasks.app`, a headless Kubernetes Service), each record an
    app container answering HTTP on port. interval is the scrape and rule evaluation interval."""

    job: str
    targets: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    port: int | None = None  # for dns_names; None = the app server's port (deploy.app_port)
    interval: int = 15  # seconds
    # `flaskprod up`: a file of targets (file_sd, which Prometheus watches) that it writes again as releases start
    # and stop, one per running release at targets' address, each labelled with its release. prometheus.yml then
    # names the file instead of targets.
    target_file: str | None = None

    def __post_init__(self) -> None:
        if not self.targets and not self.dns_names:
            raise ValueError("Scrape needs targets or dns_names")
        if self.interval < 1:
            raise ValueError("Scrape.interval is in seconds, at least 1")


@dataclass(frozen=True, kw_only=True)
class Monitored:
    """What the alert rules and Prometheus's config are drawn from: the spec, one app server's derived sizes
    and kind, and app_port, where dns_names targets are scraped unless Scrape.port says. A Deployment gives
    one (Monitored.of); `flaskprod up --with monitoring` makes its own."""

    name: str  # the rule group's
    spec: Spec
    derived: Derived
    server: ServerKind
    app_port: int
    logs: bool = False  # Loki holds the containers' output (--with logging): the dashboard shows the app's warnings
    # Something asks the readiness path every few seconds (Kubernetes' readiness probe), so its answers are counted
    # and ReadinessFailing can see them. Compose's and Swarm's health checks ask the liveness path, and `up` and
    # systemd ask readiness only while starting a release: there the alert would have nothing to read.
    readiness_probed: bool = False

    @classmethod
    def of(cls, d: Deployment, *, readiness_probed: bool = False) -> Monitored:
        return cls(
            name=d.name, spec=d.spec, derived=d.derived, server=d.server, app_port=d.app_port,
            logs="logging" in d.extras, readiness_probed=readiness_probed,
        )


@dataclass(frozen=True, kw_only=True)
class Receiver:
    """Where Alertmanager posts the alerts: a file holding the URL (url_file: Alertmanager 0.26 and later, as the
    containers' image), the URL itself (Debian 12's Alertmanager 0.25 reads no url_file: it goes into a file only
    Alertmanager's user reads), or neither: the alerts wait in Alertmanager's UI and API."""

    url: str | None = None
    url_file: str | None = None

    def __post_init__(self) -> None:
        if self.url is not None and self.url_file is not None:
            raise ValueError("Receiver takes url or url_file, not both")


def prometheus_files(
    d: Monitored,
    scrape: Scrape,
    *,
    itself: str = f"localhost:{PROMETHEUS_PORT}",
    alertmanager: str | None = None,
    by: Literal["build", "up"] = "build",
) -> dict[str, str]:
    """prometheus.yml, the alerts.yml it loads from its own directory, by file name, and alerts.test.yml; itself
    is the address Prometheus scrapes its own metrics at, alertmanager the host:port it sends firing alerts to.
    The containers mount them (monitoring_files); `flaskprod up` runs them."""
    return {
        "prometheus.yml": _yaml("prometheus.yml", _prometheus_config(d, scrape, itself, alertmanager), by=by),
        **alert_files(d, scrape, by=by),
    }


def alertmanager_file(
    receiver: Receiver, *, group_wait: int = GROUP_WAIT, by: Literal["build", "up"] = "build", extra: str = ""
) -> str:
    """alertmanager.yml: every alert grouped by GROUP_BY and posted to receiver's webhook (`amtool check-config`)."""
    return _yaml("alertmanager.yml", alertmanager_config(receiver, group_wait=group_wait), extra, by=by)


def alertmanager_config(receiver: Receiver, *, group_wait: int = GROUP_WAIT) -> dict[str, Any]:
    hook: dict[str, Any] | None = None
    if receiver.url is not None:
        hook = {"url": receiver.url}
    elif receiver.url_file is not None:
        hook = {"url_file": receiver.url_file}
    name = NOWHERE if hook is None else WEBHOOK
    # The webhook's JSON carries the alerts of one group; send_resolved: the receiver learns it is over.
    target: dict[str, Any] = {"name": name}
    if hook is not None:
        target["webhook_configs"] = [{**hook, "send_resolved": True}]
    return {
        "route": {"receiver": name, "group_by": list(GROUP_BY), **route_timing(group_wait)},
        # A deployment that is down (critical: AppDown) is also slow and failing: its warnings add nothing.
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["namespace", "job"],
            }
        ],
        "receivers": [target],
    }


def monitoring_files(deployment: Deployment, scrape: Scrape, *, prefix: str = "") -> dict[str, str]:
    """The monitoring files of deployment, keyed by path relative to the output directory, under prefix:

    prometheus/prometheus.yml, prometheus/alerts.yml, prometheus/alerts.test.yml (`promtool test rules`),
    alertmanager/alertmanager.yml, grafana/provisioning/datasources/prometheus.yml,
    grafana/provisioning/dashboards/<name>.yml and grafana/dashboards/<name>.json. Mount prometheus/ at
    PROMETHEUS_CONFIG_DIR, alertmanager/ at ALERTMANAGER_CONFIG_DIR (and the webhook's URL, when the spec has
    one, as the secret WEBHOOK_SECRET), grafana/provisioning/ at GRAFANA_PROVISIONING_DIR and grafana/dashboards/
    at GRAFANA_DASHBOARDS_DIR.
    """
    d = Monitored.of(deployment)
    refuse_unscrapable(d, scrape)
    name = d.name
    prometheus = prometheus_files(d, scrape, alertmanager=ALERTMANAGER_TARGET)
    files = {
        **{f"prometheus/{path}": text for path, text in prometheus.items()},
        "alertmanager/alertmanager.yml": alertmanager_file(container_receiver(d.spec)),
        "grafana/provisioning/datasources/prometheus.yml": _yaml("datasource", _datasource(scrape)),
        f"grafana/provisioning/dashboards/{name}.yml": _yaml("dashboard provider", _dashboard_provider(name)),
        f"grafana/dashboards/{name}.json": dashboard_json(d, scrape),
    }
    base = prefix.rstrip("/")
    return {f"{base}/{path}" if base else path: text for path, text in files.items()}


def route_timing(group_wait: int = GROUP_WAIT) -> dict[str, str]:
    """How long Alertmanager waits before a group's first notification, between its updates, and before a reminder."""
    return {
        "group_wait": _duration(group_wait),
        "group_interval": _duration(GROUP_INTERVAL),
        "repeat_interval": _interval(REPEAT_INTERVAL),
    }


def container_receiver(spec: Spec) -> Receiver:
    """The containers' receiver: the webhook's URL in the secret mounted at /run/secrets/WEBHOOK_SECRET."""
    if spec.monitoring.alert_webhook_url_file is None:
        return Receiver()
    return Receiver(url_file=f"/run/secrets/{WEBHOOK_SECRET}")


def alert_files(d: Monitored, scrape: Scrape, *, by: Literal["build", "up"] = "build") -> dict[str, str]:
    """alerts.yml and alerts.test.yml, its promtool unit tests (`promtool test rules alerts.test.yml`)."""
    alerts = _alerts(d, scrape)
    return {
        "alerts.yml": _yaml("alerts.yml", _rules(d.name, alerts), by=by),
        "alerts.test.yml": _yaml(
            "alerts.test.yml", _rule_tests(alerts), "Run: promtool test rules alerts.test.yml", by=by
        ),
    }


def alert_groups(d: Monitored, scrape: Scrape) -> list[dict[str, Any]]:
    """The rule groups of alerts.yml, for a PrometheusRule's spec."""
    groups: list[dict[str, Any]] = _rules(d.name, _alerts(d, scrape))["groups"]
    return groups


def prometheus_retention(spec: Spec) -> str:
    """The flag that keeps Prometheus's samples for monitoring.retention_days: every Prometheus flaskprod starts."""
    return f"--storage.tsdb.retention.time={spec.monitoring.retention_days}d"


def dashboard_json(d: Monitored, scrape: Scrape) -> str:
    """The Grafana dashboard, on the datasource uid `prometheus` (the one these files and kube-prometheus-stack
    provision)."""
    return json.dumps(_dashboard(d, scrape), indent=2) + "\n"


def refuse_unscrapable(d: Monitored, scrape: Scrape) -> None:
    """A BuildError when the app exports no metrics, or Prometheus would scrape a port speaking the uwsgi protocol."""
    if not d.spec.monitoring.metrics:
        raise BuildError(
            "--with monitoring needs the app's metrics, and monitoring.metrics is false; set it to true "
            "or build without monitoring"
        )
    # dns_names are the app containers themselves (Swarm's tasks.app), each asked on the app server's own port.
    if d.server == "uwsgi" and scrape.dns_names and _port(scrape, d) == d.app_port:
        raise BuildError(
            f"Prometheus would scrape each app container on port {d.app_port}, where uWSGI speaks the uwsgi protocol, "
            "not HTTP: pass --server gunicorn, or use --target k8s or systemd, whose Prometheus scrapes nginx"
        )


def _port(scrape: Scrape, d: Monitored) -> int:
    return scrape.port if scrape.port is not None else d.app_port


def _yaml(name: str, data: Any, extra: str = "", *, by: Literal["build", "up"] = "build") -> str:
    return dump_yaml(data, generated_header(name, extra, by=by))


def _duration(seconds: int) -> str:
    """Seconds as a Prometheus duration: 300 -> 5m, 90 -> 90s."""
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def _interval(seconds: int) -> str:
    """Seconds as a Prometheus duration in hours when whole: 14400 -> 4h."""
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else _duration(seconds)


def _number(value: float) -> str:
    return f"{value:g}"


def _quote(text: str) -> str:
    # A JSON string is a valid PromQL string literal: both take Go's escapes in double quotes.
    return json.dumps(text)


# --- the queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queries:
    """The selectors every query shares, for one job."""

    job: str
    probe_paths: tuple[str, ...]  # answered by the app's probes, not by its views: left out of traffic

    def sel(self, *matchers: str, traffic: bool = True) -> str:
        """A label selector: the job, the probe endpoints left out when traffic, then matchers."""
        parts = [f"job={_quote(self.job)}"]
        if traffic:
            parts += [f"endpoint!={_quote(p)}" for p in self.probe_paths]
        return "{" + ", ".join([*parts, *matchers]) + "}"


def _queries(d: Monitored, scrape: Scrape) -> Queries:
    mon = d.spec.monitoring
    # Probes are counted under their path (runtime/pipeline.py): /metrics once per scrape, /readyz
    # once per orchestrator probe, /healthz per health check; they would dilute ratios and latency.
    paths = tuple(dict.fromkeys((mon.health_path, mon.ready_path, mon.metrics_path)))
    return Queries(job=scrape.job, probe_paths=paths)


def slow_bound(timeout: int) -> tuple[float, str]:
    """The slow-request bound for server.timeout: the largest histogram bucket bound at most SLOW_SHARE
    of it, with its `le` label as the runtime writes it. Above the top finite bound (10 s), the
    histogram cannot tell durations apart, so the bound stops there."""
    index = max(0, sum(1 for b in BUCKETS if b <= SLOW_SHARE * timeout) - 1)
    return BUCKETS[index], LE_LABELS[index]


def capacity(d: Monitored) -> int | None:
    """Requests one app container serves at once: workers x threads; None for gevent/eventlet, whose
    concurrency is not bounded by threads."""
    if d.server == "gunicorn" and d.derived.worker_class in GREENLET_CLASSES:
        return None
    return d.derived.workers * d.derived.threads


# --- alerts, each with its proof -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Case:
    """Input series for promtool and the labels the alert then carries (None: it must stay quiet)."""

    series: Mapping[str, str]  # series selector -> promtool values notation, one sample a minute
    fires: Mapping[str, str] | None  # the alert's labels besides alertname and severity; None: quiet


@dataclass(frozen=True, kw_only=True)
class Alert:
    name: str
    expr: str
    hold: int  # seconds the condition holds before the alert fires (`for`)
    window: int  # longest range in expr, seconds: the unit tests evaluate after window + hold
    severity: Severity
    summary: str
    description: str
    fires: Case
    quiet: Case

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": _duration(self.hold),
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "description": self.description},
        }


def _series(metric: str, labels: Mapping[str, str]) -> str:
    """A promtool input series: metric{label="value", ...}."""
    return metric + "{" + ", ".join(f"{k}={_quote(v)}" for k, v in labels.items()) + "}"


def _counter(per_minute: float) -> str:
    """promtool values of a counter growing per_minute each minute ({n}: how many minutes)."""
    return f"0+{_number(per_minute)}x{{n}}"


def _past_bound_cases(total: str, within: str, share: float, per_minute: float, job: str) -> tuple[Case, Case]:
    """An alert on the share of requests past a bucket bound: firing at twice the share, quiet at half."""
    return (
        Case(series={total: _counter(per_minute), within: _counter(per_minute * (1 - 2 * share))}, fires={"job": job}),
        Case(series={total: _counter(per_minute), within: _counter(per_minute * (1 - share / 2))}, fires=None),
    )


def _alerts(d: Monitored, scrape: Scrape) -> list[Alert]:
    q = _queries(d, scrape)
    job, spec = scrape.job, d.spec
    instance = scrape.targets[0] if scrape.targets else f"{scrape.dns_names[0]}:{_port(scrape, d)}"
    where = {"job": job, "instance": instance}
    route = {**where, "method": "GET", "endpoint": "/"}
    window = _duration(WINDOW)
    per_minute = 1000  # requests a minute in the unit tests' series
    up = _series("up", where)

    alerts = [
        Alert(
            name="AppDown",
            expr=f"up{q.sel(traffic=False)} == 0",
            hold=DOWN_FOR,
            window=0,
            severity="critical",
            summary="{{ $labels.job }}: {{ $labels.instance }} is down",
            description=f"Prometheus has not scraped {{{{ $labels.instance }}}} for {_duration(DOWN_FOR)}: the "
            "container is stopped, restarting or not answering on its metrics path.",
            fires=Case(series={up: "0x{n}"}, fires=where),
            quiet=Case(series={up: "1x{n}"}, fires=None),
        ),
        Alert(
            # With DNS discovery, no container means no target and no `up` series for AppDown to see.
            name="AppTargetsMissing",
            expr=f"absent(up{q.sel(traffic=False)})",
            hold=DOWN_FOR,
            window=0,
            severity="critical",
            summary="{{ $labels.job }}: no app container to scrape",
            description="Prometheus finds no target for the job: no container answers to the service's DNS "
            "name (scaled to zero, or every task failing to start).",
            fires=Case(series={_series("up", {"job": "prometheus", "instance": "localhost:9090"}): "1x{n}"},
                       fires={"job": job}),
            quiet=Case(series={up: "1x{n}"}, fires=None),
        ),
        Alert(
            # A worker that dies on every request, or a queue longer than the scrape timeout, answers some scrapes
            # and not others: `up` flaps and AppDown, which waits for a minute of failures in a row, never fires,
            # while nginx answers the clients 502 or 504, which no app counter sees.
            name="ScrapesFailing",
            expr=f"avg_over_time(up{q.sel(traffic=False)}[{window}]) < {_number(SCRAPES_ANSWERED)}",
            hold=DOWN_FOR,
            window=WINDOW,
            severity="warning",
            summary="{{ $labels.job }}: {{ $labels.instance }} fails scrapes on and off",
            description=f"More than {1 - SCRAPES_ANSWERED:.0%} of the scrapes of {{{{ $labels.instance }}}} failed "
            f"over {window}: its app server is crashing and restarting workers, or too busy to answer its metrics "
            "path in time. nginx's 502s and 504s meanwhile reach no app counter: see its access log.",
            fires=Case(series={up: " ".join(["1 0"] * 20)}, fires=where),
            quiet=Case(series={up: "0 1x{n}"}, fires=None),
        ),
    ]

    errors = q.sel('status=~"5.."')
    ok = _series(REQUESTS_TOTAL, {**route, "status": "200"})
    failed = _series(REQUESTS_TOTAL, {**route, "status": "500"})
    alerts.append(
        Alert(
            name="HighErrorRatio",
            expr=f"sum by ({BY}) (rate({REQUESTS_TOTAL}{errors}[{window}]))"
            f" / sum by ({BY}) (rate({REQUESTS_TOTAL}{q.sel()}[{window}])) > {_number(ERROR_RATIO)}",
            hold=WINDOW,
            window=WINDOW,
            severity="critical",
            summary=f"{{{{ $labels.job }}}}: more than {ERROR_RATIO:.0%} of requests fail",
            description=f"Over {window}, more than {ERROR_RATIO:.0%} of requests were answered with a 5xx "
            f"(504: past server.timeout = {spec.server.timeout}s). The app's logs carry each one's request id.",
            fires=Case(
                series={ok: _counter(per_minute), failed: _counter(per_minute * ERROR_RATIO * 2)},
                fires={"job": job},
            ),
            quiet=Case(series={ok: _counter(per_minute), failed: _counter(per_minute * ERROR_RATIO / 2)}, fires=None),
        )
    )

    bound, le = slow_bound(spec.server.timeout)
    share = 1 - SLOW_QUANTILE
    fast = q.sel(f"le={_quote(le)}")
    within = _series(DURATION_BUCKET, {**route, "le": le})
    count = _series(DURATION_COUNT, route)
    slow_fires, slow_quiet = _past_bound_cases(count, within, share, per_minute, job)
    alerts.append(
        Alert(
            # The share of requests slower than a bucket bound is exact where histogram_quantile
            # interpolates, and it still rises past the top finite bound, where the quantile cannot.
            name="SlowRequests",
            expr=f"1 - sum by ({BY}) (rate({DURATION_BUCKET}{fast}[{window}]))"
            f" / sum by ({BY}) (rate({DURATION_COUNT}{q.sel()}[{window}])) > {_number(share)}",
            hold=WINDOW,
            window=WINDOW,
            severity="warning",
            summary=f"{{{{ $labels.job }}}}: p{SLOW_QUANTILE * 100:g} latency above {_number(bound)}s",
            description=f"More than {share:.0%} of requests took longer than {_number(bound)}s over {window}, "
            f"on the way to the {spec.server.timeout}s deadline (server.timeout) where the app answers 504.",
            fires=slow_fires,
            quiet=slow_quiet,
        )
    )

    cap = capacity(d)
    if cap is not None:
        line = SATURATION * cap
        gauge = _series(IN_FLIGHT, route)
        alerts.append(
            Alert(
                name="WorkersSaturated",
                expr=f"sum by ({BY_INSTANCE}) (avg_over_time({IN_FLIGHT}{q.sel(traffic=False)}[{window}]))"
                f" >= {_number(line)}",
                hold=WINDOW,
                window=WINDOW,
                severity="warning",
                summary="{{ $labels.job }}: {{ $labels.instance }} is busy on nearly every thread",
                description=f"On average over {window} at least {_number(line)} of its {cap} request slots "
                f"({counted(d.derived.workers, 'worker')} x {counted(d.derived.threads, 'thread')}) were in use: "
                "new requests wait in "
                "the listen backlog. Add replicas, or CPUs and memory per container (deploy.cpus, deploy.memory).",
                fires=Case(series={gauge: f"{cap}x{{n}}"}, fires=where),
                quiet=Case(series={gauge: f"{math.ceil(line) - 1}x{{n}}"}, fires=None),
            )
        )

    if spec.monitoring.queue_time:
        waited = _series(QUEUE_BUCKET, {**where, "le": "+Inf"})
        soon = _series(QUEUE_BUCKET, {**where, "le": QUEUED_LE})
        soon_sel = q.sel(f"le={_quote(QUEUED_LE)}", traffic=False)
        all_sel = q.sel(f"le={_quote('+Inf')}", traffic=False)
        queued_fires, queued_quiet = _past_bound_cases(waited, soon, QUEUED_SHARE, per_minute, job)
        alerts.append(
            Alert(
                # The share past a bucket bound, as SlowRequests: exact where a quantile would interpolate.
                name="RequestsQueued",
                # Two lines (PromQL reads a newline as a space): the metric's long name leaves YAML no
                # place to fold one. The +Inf bucket is the count.
                expr=f"1 - sum by ({BY}) (rate({QUEUE_BUCKET}{soon_sel}[{window}]))\n"
                f"  / sum by ({BY}) (rate({QUEUE_BUCKET}{all_sel}[{window}])) > {_number(QUEUED_SHARE)}",
                hold=WINDOW,
                window=WINDOW,
                severity="warning",
                summary=f"{{{{ $labels.job }}}}: requests wait over {QUEUED_LE}s for the app",
                description=f"Over {window}, more than {QUEUED_SHARE:.0%} of requests waited longer than "
                f"{QUEUED_LE}s between nginx passing them on and the app starting them "
                "(http_request_queue_seconds): every worker thread was busy. Add replicas, or CPUs and memory "
                "per container (deploy.cpus, deploy.memory), or threads if the requests mostly wait on I/O.",
                fires=queued_fires,
                quiet=queued_quiet,
            )
        )

    if spec.monitoring.health and d.readiness_probed:
        ready = spec.monitoring.ready_path
        seconds = max(WINDOW, 4 * d.derived.timeouts.drain)
        probe_window = _duration(seconds)
        probes = q.sel(f"endpoint={_quote(ready)}", traffic=False)
        failing = q.sel(f"endpoint={_quote(ready)}", 'status!~"2.."', traffic=False)
        probe = {**where, "method": "GET", "endpoint": ready}
        answered, refused = (_series(REQUESTS_TOTAL, {**probe, "status": s}) for s in ("200", "503"))
        alerts.append(
            Alert(
                name="ReadinessFailing",
                expr=f"sum by ({BY_INSTANCE}) (rate({REQUESTS_TOTAL}{failing}[{probe_window}]))"
                f" / sum by ({BY_INSTANCE}) (rate({REQUESTS_TOTAL}{probes}[{probe_window}]))"
                f" > {_number(READINESS_FAILING)}",
                hold=WINDOW,
                window=seconds,
                severity="warning",
                summary="{{ $labels.job }}: {{ $labels.instance }} reports not ready",
                description=f"{ready} answered most probes with an error over {probe_window}: a readiness check "
                "(a database ping or one the app registered) fails, so the container gets no traffic. "
                "The endpoint's body names the failing check.",
                fires=Case(series={refused: "0+6x{n}", answered: "0+0x{n}"}, fires=where),
                quiet=Case(series={refused: "0+2x{n}", answered: "0+4x{n}"}, fires=None),
            )
        )
    return alerts


def _rules(name: str, alerts: list[Alert]) -> dict[str, Any]:
    return {"groups": [{"name": name, "rules": [a.rule() for a in alerts]}]}


def _expand(template: str, labels: Mapping[str, str]) -> str:
    """An annotation as Prometheus renders it for labels (the templates use only $labels.<name>)."""
    for key, value in labels.items():
        template = template.replace(f"{{{{ $labels.{key} }}}}", value)
    return template


def _rule_tests(alerts: list[Alert]) -> dict[str, Any]:
    minutes = max(math.ceil((a.window + a.hold) / 60) for a in alerts) + 5
    tests = []
    for alert in alerts:
        for case in (alert.fires, alert.quiet):
            expected = []
            if case.fires is not None:
                labels = {**case.fires, "severity": alert.severity}
                expected.append(
                    {
                        "exp_labels": labels,
                        "exp_annotations": {
                            "summary": _expand(alert.summary, labels),
                            "description": _expand(alert.description, labels),
                        },
                    }
                )
            tests.append(
                {
                    "name": f"{alert.name} {'fires' if case.fires is not None else 'stays quiet'}",
                    "interval": "1m",
                    "input_series": [
                        {"series": s, "values": v.format(n=minutes + 5)} for s, v in case.series.items()
                    ],
                    "alert_rule_test": [{"eval_time": f"{minutes}m", "alertname": alert.name, "exp_alerts": expected}],
                }
            )
    return {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests}


# --- Prometheus ------------------------------------------------------------------------------------


def _prometheus_config(d: Monitored, scrape: Scrape, itself: str, alertmanager: str | None) -> dict[str, Any]:
    interval = _duration(scrape.interval)
    app: dict[str, Any] = {"job_name": scrape.job, "metrics_path": d.spec.monitoring.metrics_path}
    if scrape.target_file is not None:
        app["file_sd_configs"] = [{"files": [scrape.target_file]}]
    elif scrape.targets:
        app["static_configs"] = [{"targets": list(scrape.targets)}]
    if scrape.dns_names:
        # A records: one target per container, so each replica is scraped itself, not one behind a VIP.
        app["dns_sd_configs"] = [
            {
                "names": list(scrape.dns_names),
                "type": "A",
                "port": _port(scrape, d),
                "refresh_interval": _duration(DNS_REFRESH),
            }
        ]
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": ["alerts.yml"],
    }
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    config["scrape_configs"] = [
        app,
        {"job_name": "prometheus", "static_configs": [{"targets": [itself]}]},
    ]
    return config


# --- Grafana ---------------------------------------------------------------------------------------


def _datasource(scrape: Scrape) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": DATASOURCE["uid"],
                "type": DATASOURCE["type"],
                "access": "proxy",
                "url": PROMETHEUS_URL,
                "isDefault": True,
                "editable": False,
                # The scrape interval: Grafana's $__rate_interval then spans enough samples for rate().
                "jsonData": {"timeInterval": _duration(scrape.interval)},
            }
        ],
    }


def _dashboard_provider(name: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": name,
                "type": "file",
                "disableDeletion": True,
                # The file is the source of truth: flaskprod build writes it again.
                "allowUiUpdates": False,
                "options": {"path": GRAFANA_DASHBOARDS_DIR},
            }
        ],
    }


def dashboard_uid(name: str) -> str:
    """A uid that stays the same for an app name across builds (Grafana allows 40 characters)."""
    uid = f"flaskprod-{name}"
    if len(uid) <= 40:
        return uid
    return f"{uid[:29]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def _target(ref: str, expr: str, legend: str, *, instant: bool = False) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
    }


def _thresholds(line: float | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if line is not None:
        steps.append({"color": "red", "value": line})
    return {"mode": "absolute", "steps": steps}


def _timeseries(
    title: str, description: str, targets: list[dict[str, Any]], unit: str, *, line: float | None = None
) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "thresholds": _thresholds(line),
                "custom": {"thresholdsStyle": {"mode": "line" if line is not None else "off"}},
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def _stat(title: str, description: str, targets: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": "none", "thresholds": _thresholds(None)}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
            "colorMode": "none",
            "graphMode": "none",
        },
    }


def _app_warnings(d: Monitored) -> dict[str, Any]:
    """The app's warning and error lines from Loki, below the graphs they explain: a 5xx's traceback is here."""
    loki = {"type": "loki", "uid": logs.DATASOURCE_UID}
    warnings = logs.selector(d.name, service="app", level=logs.WARNING_OR_WORSE)
    return {
        "type": "logs",
        "title": "App warnings and errors",
        "description": "Lines the app logged at warning or above, newest first, each with its request id.",
        "datasource": loki,
        "targets": [{"refId": "A", "datasource": loki, "expr": warnings}],
        "options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending", "enableLogDetails": True},
    }


def _dashboard(d: Monitored, scrape: Scrape) -> dict[str, Any]:
    q = _queries(d, scrape)
    span = "[$__rate_interval]"
    errors = q.sel('status=~"5.."')
    bound, _ = slow_bound(d.spec.server.timeout)
    cap = capacity(d)
    latency = [
        _target(
            ref,
            f"histogram_quantile({quantile}, sum by (le) (rate({DURATION_BUCKET}{q.sel()}{span})))",
            f"p{quantile * 100:g}",
        )
        for ref, quantile in (("A", 0.5), ("B", 0.95), ("C", SLOW_QUANTILE))
    ]
    in_flight = [_target("A", f"sum by (instance) ({IN_FLIGHT}{q.sel(traffic=False)})", "{{instance}}")]
    if cap is not None:
        in_flight.append(_target("B", f"vector({cap})", "capacity per container"))
    version = _stat(
        "Version",
        "Containers per app version (app_info): two versions during a rolling update.",
        [_target("A", f"count by (version) ({APP_INFO}{q.sel(traffic=False)})", "{{version}}", instant=True)],
    )
    containers = _stat(
        "Containers up",
        "Scrape targets answering, of those Prometheus found.",
        [
            _target("A", f"sum(up{q.sel(traffic=False)})", "up", instant=True),
            _target("B", f"count(up{q.sel(traffic=False)})", "found", instant=True),
        ],
    )
    requests = _timeseries(
        "Requests per second by status",
        "Requests answered by the app, probes left out.",
        [_target("A", f"sum by (status) (rate({REQUESTS_TOTAL}{q.sel()}{span}))", "{{status}}")],
        "reqps",
    )
    error_ratio = _timeseries(
        "Error ratio (5xx)",
        f"Share of requests answered with a 5xx; the HighErrorRatio alert fires above {ERROR_RATIO:.0%}.",
        [
            _target(
                "A",
                # `or vector(0)`: no 5xx at all is a ratio of 0, not a gap in the graph.
                f"(sum(rate({REQUESTS_TOTAL}{errors}{span})) or vector(0))"
                f" / sum(rate({REQUESTS_TOTAL}{q.sel()}{span}))",
                "5xx ratio",
            )
        ],
        "percentunit",
        line=ERROR_RATIO,
    )
    durations = _timeseries(
        "Latency",
        f"Request duration quantiles; SlowRequests fires when p{SLOW_QUANTILE * 100:g} passes {_number(bound)}s "
        f"(server.timeout is {d.spec.server.timeout}s).",
        latency,
        "s",
        line=bound,
    )
    saturation = _timeseries(
        "Requests in flight vs capacity",
        "Requests being handled per container, against its workers x threads.",
        in_flight,
        "short",
        line=None if cap is None else SATURATION * cap,
    )
    waiting = _timeseries(
        "Waiting for the app",
        "Time from nginx passing a request on (X-Request-Start) to the app starting it: when it grows while "
        "requests in flight sit at capacity, the workers or threads are too few.",
        [
            _target(
                ref,
                f"histogram_quantile({quantile}, sum by (le) (rate({QUEUE_BUCKET}{q.sel(traffic=False)}{span})))",
                f"p{quantile * 100:g}",
            )
            for ref, quantile in (("A", 0.5), ("B", 0.99))
        ],
        "s",
    )
    # Grafana's grid is 24 columns wide: two short stats, the four graphs two by two, then the wait.
    layout = [
        (version, 0, 0, 12, 4),
        (containers, 12, 0, 12, 4),
        (requests, 0, 4, 12, 8),
        (error_ratio, 12, 4, 12, 8),
        (durations, 0, 12, 12, 8),
        (saturation, 12, 12, 12, 8),
    ]
    if d.spec.monitoring.queue_time:
        layout.append((waiting, 0, 20, 24, 8))
    if d.logs:
        layout.append((_app_warnings(d), 0, 28, 24, 10))
    panels = [
        {"id": number, "gridPos": {"h": h, "w": w, "x": x, "y": y}, **panel}
        for number, (panel, x, y, w, h) in enumerate(layout, start=1)
    ]
    return {
        "uid": dashboard_uid(d.name),
        "title": f"{d.spec.app.name} (flaskprod)",
        "description": "Requests, errors, latency and saturation of the app, from flaskprod's metrics.",
        "tags": ["flaskprod", d.name],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "schemaVersion": DASHBOARD_SCHEMA_VERSION,
        "version": 1,
        "annotations": {"list": []},
        "templating": {"list": []},
        "links": [],
        "panels": panels,
    }
