"""nginx.conf from the spec: one template for `flaskprod up` and every container target."""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import jinja2

from ..errors import SpecError
from ..sizing import Derived, responder_bind
from ..spec import Spec

Protocol = Literal["http", "uwsgi"]

# Worker classes whose kept connections nginx reuses. Gunicorn's sync worker closes after every response, so an
# upstream keepalive pool would only hold dead connections. A greenlet worker (gevent's) accepts every connection
# it is offered, and those nginx kept stayed with the worker that took them: paired (4 rounds), `/` and `/api/cpu`
# had p99 at 1.1 to 1.3 s and 19 to 41 requests a round past wrk's 2 s; a new connection per request goes to the
# worker in accept, and p99/p50 was 1.27 and 1.36, with none past 2 s, for 0.80x the requests (0.70x on `/api/ping`).
KEEPALIVE_WORKER_CLASSES = frozenset({"gthread"})
# Seconds nginx keeps using a static file it holds open before it looks at the path again (open_file_cache_valid):
# a file changed in place, or a serving link repointed at another release by `up`'s switch, is seen within it.
STATIC_REVALIDATE = 1
# Compressed when larger than proxy.gzip_min_length; text/html is always included by nginx.
GZIP_TYPES = (
    "text/css",
    "text/plain",
    "text/xml",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/manifest+json",
    "image/svg+xml",
)
# Headers the app sees from nginx; with proxy.trusted_hops = 1 its ProxyFix trusts exactly these.
# X-Forwarded-Host/Port/Prefix are dropped (an empty value is not sent), whatever the client
# sent: Host already carries the name and port the client used ($flaskprod_host: the name nginx
# matched, and a port only when it is digits), and a port nginx would add is wrong behind a port
# mapping (a container's 80 published as 8080).
_FORWARDED_HEADERS = (
    ("Host", "$flaskprod_host"),
    ("X-Real-IP", "$remote_addr"),
    # The client's own X-Forwarded-For is kept but nginx appends the address it saw, and the app
    # trusts only that last entry: a spoofed value never becomes remote_addr.
    ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
    ("X-Forwarded-Proto", "$scheme"),
    ("X-Forwarded-Host", '""'),
    ("X-Forwarded-Port", '""'),
    ("X-Forwarded-Prefix", '""'),
)
# When nginx passed the request on: the app counts the wait before it starts the request
# (http_request_queue_seconds), in the header's usual form (seconds, millisecond steps).
REQUEST_START = ("X-Request-Start", '"t=${msec}"')
# The CGI variables a WSGI server needs over the uwsgi protocol (what /etc/nginx/uwsgi_params
# holds), written here so a run directory or an image does not depend on the system's copy.
_UWSGI_CGI_PARAMS = (
    ("QUERY_STRING", "$query_string"),
    ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"),
    ("CONTENT_LENGTH", "$content_length"),
    ("REQUEST_URI", "$request_uri"),
    ("PATH_INFO", "$document_uri"),
    ("DOCUMENT_ROOT", "$document_root"),
    ("SERVER_PROTOCOL", "$server_protocol"),
    ("REQUEST_SCHEME", "$scheme"),
    ("HTTPS", "$https if_not_empty"),
    ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"),
    ("SERVER_ADDR", "$server_addr"),
    ("SERVER_PORT", "$server_port"),
    ("SERVER_NAME", "$server_name"),
    # nginx has read a chunked body whole and counts it in CONTENT_LENGTH; the hop-by-hop header it came
    # with would make the app (werkzeug) wait for a chunked stream's end instead, and read nothing.
    ("HTTP_TRANSFER_ENCODING", '"" if_not_empty'),
)
# Mozilla's intermediate profile (TLS 1.2 ciphers; TLS 1.3 ones are fixed by OpenSSL): ECDHE key
# exchange and AEAD ciphers only. The guide's "EECDH+AESGCM:EDH+AESGCM:..." also admits finite-field
# DHE, which needs dhparams nginx is not given.
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
# The errors nginx answers itself rather than the app: a metrics address not allowed (403), a static file missing or
# the metrics guard (404), a static file asked for with POST or any request with TRACE (405), a body past
# client_max_body_size (413), the rate limit (429), a temp file it cannot write (500), an unsupported
# Transfer-Encoding (501), an app server down, failing or too slow (502, 503, 504). The app's own answers with these
# codes pass through as they are (proxy_intercept_errors is off). The last is the default page.
NGINX_ERROR_CODES = (403, 404, 405, 413, 429, 501, 502, 503, 504, 500)
# A request nginx cannot read past its request line: a malformed header (400), or one past large_client_header_buffers
# (nginx's 494, which it sends as 400).
MALFORMED_REQUEST_CODE = 400
HEADER_TOO_LARGE_CODE = 494
# What nginx rejects in the default server, before a Host header could choose the app's: a bad request line (400), a
# URI past large_client_header_buffers (414), HTTP/2.0 over plain HTTP (505), HTTP/1.1 with no Host, a malformed header
# before the Host (400, 494), and TRACE with no Host (405, HTTP/1.0). An unsupported Transfer-Encoding (501) comes
# there only with a Host it does not serve (on HTTP/1.0 it is a 400), and is closed, as these are with one.
UNROUTED_ERROR_CODES = (MALFORMED_REQUEST_CODE, 405, 414, 501, 505)
# The Retry-After of nginx's own 503. nginx answers one itself only for a module's refusal, and none here refuses
# with it (limit_req answers 429; an app server down or refusing is a 502): one second, as nginx marks no app server
# down (fail_timeout=0) and tries it again at the next request.
UNAVAILABLE_RETRY_AFTER = 1
# Where error_page sends them: one named location per format (@flaskprod_error_json, ..._html). A named location
# is no URL, so it shadows none of the app's routes, and no client can ask for it.
ERROR_LOCATION = "@flaskprod_error"
# The default server's: a named location takes the request's URI, which nginx has not read when the request line is
# bad ("empty URI in redirect to named location", a 500). That server serves no URL of the app's to shadow.
UNROUTED_ERROR_LOCATION = "/flaskprod_error"
# The Accept item a media type matches, as werkzeug's MIMEAccept does: exactly, with no parameter but a valid q.
_ACCEPT_ITEM = r"(?:^|,)\s*{media}\s*{q}\s*(?:,|$)"
_Q_ONE = r"(?:;\s*q=0*1(?:\.0+)?)?"  # none, or q=1 (1.0, 1.000)
# q=0.<tenths>x, its digits after the tenths to the last non-zero one in $1 (one there when the tenths are 0); q=0.
_Q_TENTHS = r";\s*q=0+\.{tenths}(\d*[1-9]){optional}0*"
_Q_ZERO = r";\s*q=0+(?:\.0+)?"
_DIGITS = "0123456789"


@dataclass(frozen=True, kw_only=True)
class NginxMap:
    """An nginx `map` the template writes as it is: regexes (tried in order) and their values, each one argument."""

    comment: str
    source: str
    variable: str
    default: str
    entries: tuple[tuple[str, str], ...]


def accept_rank_map(media_type: str, variable: str) -> NginxMap:
    """How much an Accept header wants media_type, as werkzeug's best_match weighs it: the q of the item naming it
    most exactly (the type itself, then type/*, then */*, whatever their order; the highest q of an item named
    twice, to its tenths: 0.91 beside 0.95 is the leftmost of the two), and how exactly, as
    "<q>/<exactness>": q=1 is "1", q=0.x is "0x" without trailing zeros; exactness 2, 1 or 0. So one rank sorts
    after another as strings exactly when werkzeug would prefer it ('/' sorts before every digit)."""
    family = media_type.split("/")[0]
    ranges = ((re.escape(media_type), 2), (re.escape(f"{family}/*"), 1), (re.escape("*/*"), 0))
    entries: list[tuple[str, str]] = []
    for media, exactness in ranges:
        # A type named twice counts at its highest q, as werkzeug's (its items sorted by q): the first regex that
        # matches wins, so the q values are tried from 1 down by their tenths; a match is the leftmost item of those.
        entries.append((_ACCEPT_ITEM.format(media=media, q=_Q_ONE), f"1/{exactness}"))
        for tenths in reversed(_DIGITS):
            q = _Q_TENTHS.format(tenths=tenths, optional="" if tenths == "0" else "?")
            entries.append((_ACCEPT_ITEM.format(media=media, q=q), f"0{tenths}$1/{exactness}"))
        entries.append((_ACCEPT_ITEM.format(media=media, q=_Q_ZERO), f"0/{exactness}"))
    return NginxMap(
        comment=f"How much Accept wants {media_type}: <q>/<2 named, 1 by {family}/*, 0 by */*>; q=0 when unnamed.",
        source="$http_accept",
        variable=variable,
        default="0/0",
        entries=tuple((_regex("~*" + pattern), f'"{value}"') for pattern, value in entries),
    )


def api_paths(mount_prefixes: Iterable[str]) -> list[str]:
    """The request URIs the app's wants_json takes for its API (request.path under /api/), each one nginx.conf
    argument: under each prefix the app mounts itself under too, where its request.path leaves the prefix out."""
    return [_regex(f"~^{re.escape(prefix)}/api/") for prefix in ("", *mount_prefixes)]


def error_accept_maps() -> tuple[NginxMap, ...]:
    """$flaskprod_error_accept: json when Accept prefers application/json to text/html as the app's wants_json
    (werkzeug's best_match) does, html otherwise: for no Accept, */*, a tie, or neither named. A q of more than three
    decimals, or a type named twice with q values alike in their tenths, may be weighed otherwise than by werkzeug."""
    json_rank, html_rank = "$flaskprod_accept_json", "$flaskprod_accept_html"
    # JSON when its rank sorts after HTML's: at the first character where they differ, JSON's is the greater.
    greater = tuple(
        (_regex(rf"~^([^:]*){digit}[^:]*:\1[/{_DIGITS[:i]}]"), "json") for i, digit in enumerate(_DIGITS)
    )
    return (
        accept_rank_map("text/html", html_rank),
        accept_rank_map("application/json", json_rank),
        NginxMap(
            comment="JSON when Accept ranks it above HTML, as werkzeug's best_match; never when JSON's q is 0.",
            source=f'"{json_rank}:{html_rank}"',
            variable="$flaskprod_error_accept",
            default="html",
            entries=(('"~^0/"', "html"), *greater),
        ),
    )
# Listen addresses that mean "every interface": they name no host a client would send.
_WILDCARDS = frozenset({"0.0.0.0", "::", "*"})
# A host name or IPv4 address nginx.conf can hold unquoted; an IPv6 address is bracketed and checked apart.
_PLAIN_HOST = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?")
# A path nginx.conf can hold as it is; any other is written in double quotes.
_BARE_PATH = re.compile(r"[A-Za-z0-9_./:@%+,=-]+")
# An `include` naming any of these is a pattern for glob(3), which takes a backslash before one (or before a
# backslash) as the character itself.
_GLOB = re.compile(r"[*?[]")


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """HTTPS on port, with the certificate chain and key nginx reads; acme_webroot serves HTTP-01 challenges."""

    port: int
    cert: str
    key: str
    acme_webroot: str | None = None
    # The port clients reach HTTPS on, when a port mapping (a container's 443 -> 8443) makes it another one:
    # the plain port's redirect names it.
    public_port: int | None = None


@dataclass(frozen=True, kw_only=True)
class StaticMount:
    """A folder of static files nginx serves from disk at a URL prefix, as a Flask static route does.

    endpoint is that route's: `static` for the app's own, `admin.static` for blueprint admin's.
    url has no trailing slash (`/static`, `/admin/static`); the location is url + "/".
    """

    endpoint: str
    url: str
    folder: str


@dataclass(frozen=True, kw_only=True)
class NginxContext:
    """Where this nginx runs: what differs between `flaskprod up` and a container, nothing else.

    upstream is an nginx server address: `unix:/path/app.sock` or `host:port`.
    """

    host: str
    port: int
    upstream: str
    protocol: Protocol
    conf_dir: str  # holds nginx.conf and mime.types
    pid_file: str
    temp_dir: str
    access_log: str
    error_log: str
    user: str | None = None
    # The app's static folder and its blueprints': nginx picks the longest matching location, as Flask's router
    # picks the longer rule, so /admin/static/ may sit under /static/ too.
    static: tuple[StaticMount, ...] = ()
    # A second listener for the scraper alone (containers, `up --with monitoring`): it serves the metrics
    # path to monitoring.metrics_allow whatever the Host header, so Prometheus needs no server name.
    metrics_port: int | None = None
    metrics_host: str | None = None  # None = host; `up` keeps it on loopback, beside its Prometheus
    # HTTPS: the app is served there, and the plain port only redirects to it.
    tls: TlsFiles | None = None
    # Addresses of a proxy in front that ends TLS (a Kubernetes Ingress controller): nginx believes the client
    # address (X-Forwarded-For) and scheme (X-Forwarded-Proto) they send, and adds HSTS to what came over HTTPS.
    trusted_proxies: tuple[str, ...] = ()
    # `flaskprod deploy --canary N`: a second upstream server, and the percent of requests it takes.
    canary: tuple[str, int] | None = None
    # `up --with monitoring`: a folder holding, for each running release N, N/app.prom, a link to its app server's
    # metrics responder. The metrics listener serves each release's own metrics at release_metrics_path through it,
    # so Prometheus scrapes every release, a canary too, as a target of its own, labelled with its number; and the
    # config names no release, so a switch between releases needs no reload. Needs responders.
    release_scrapes: str | None = None
    # The app servers answer scrapes beside their workers (monitoring.metrics_responder), each at the address
    # sizing.responder_bind derives from its own (upstream's, canary's): nginx passes scrapes there.
    responders: bool = False
    # Names the app itself answers to (app_server_names: its Flask SERVER_NAME's host), which nginx answers too.
    app_names: tuple[str, ...] = ()
    # The app has WebSocket routes (AppInfo.websocket_routes): nginx passes a handshake's Upgrade on to the app server.
    websockets: bool = False
    # The prefixes the app's routes are reached under (AppInfo.mount_prefixes), the root aside: its metrics answer
    # there too, beside the metrics path nginx guards, so nginx answers those 404.
    mount_prefixes: tuple[str, ...] = ()
    # Seconds nginx reuses one kept connection to the app server before closing it after a request (its upstream
    # keepalive_time, nginx 1.19.10 and later): `up` bounds by it how long nginx goes on using connections to an
    # app server it has switched away from. None: nginx's own (an hour).
    upstream_keepalive_time: int | None = None
    # A DNS server nginx asks for upstream's name at request time (Docker's embedded one, for Compose), in place of
    # the upstream blocks, which resolve it once at start: a recreated or scaled app service gets new addresses.
    # Its cost: no upstream keepalive, no canary.
    resolver: str | None = None
    worker_processes: int | Literal["auto"] = "auto"
    worker_connections: int = 1024


def listen_address(host: str, port: int) -> str:
    """host:port as nginx's listen wants it, with brackets around an IPv6 address."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def server_names(spec: Spec, host: str, app_names: tuple[str, ...] = ()) -> list[str]:
    """The configured names, plus the listen address itself when it is one a client can type, plus the names the
    app answers to (app_names) that none of those matches."""
    names = spec.proxy.server_name.split()
    if host not in _WILDCARDS and host not in names:
        names.append(host if ":" not in host else f"[{host}]")
    for name in app_names:
        # .host is host and every name under it: one a name beneath stands for.
        hosts = (name[1:], f"flaskprod{name}") if name.startswith(".") else (name,)
        if not all(any(answers(host, entry) for entry in names) for host in hosts):
            # nginx warns of a conflict when a name stands beside the .name that holds it.
            names = [entry for entry in names if entry.lower() != hosts[0]] + [name]
    return names


def answers(host: str, name: str) -> bool:
    """Whether an nginx server_name entry matches host: exact, *.suffix, .suffix (and the name itself),
    prefix.* or a ~regex, as nginx reads them (case-insensitively)."""
    host, name = host.lower(), name.lower()
    if name.startswith("~"):
        return re.search(name[1:], host) is not None
    if name.startswith("*."):
        return host.endswith(name[1:])
    if name.startswith("."):
        return host == name[1:] or host.endswith(name)
    if name.endswith(".*"):
        return host.startswith(name[:-1])
    return host == name


def probe_host(names: Iterable[str]) -> str | None:
    """A Host header for a health check to send, which the first of these server_name entries that is no ~regex
    matches: the name, probe.example.com for *.example.com, example.com for .example.com, www.probe for www.*. The
    entry itself is no host (nginx closes a request naming one it does not serve). None when all are ~regexes."""
    for name in names:
        if name.startswith("~"):
            continue
        if name.startswith("*."):
            return f"probe{name[1:]}"
        if name.endswith(".*"):
            return f"{name[:-2]}.probe"
        return name.removeprefix(".")
    return None


def server_name_host(server_name: str) -> str | None:
    """The host of a Flask SERVER_NAME as nginx's server_name names it: without the port (nginx matches the Host
    header's name alone), an IPv6 address in brackets; None when it is no plain host name or address."""
    host = server_name.strip().lower()
    if host.startswith("["):
        address, bracket, port = host[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and port[1:].isdigit())):
            return None
        try:
            return f"[{ipaddress.IPv6Address(address)}]"
        except ValueError:
            return None
    host, colon, port = host.partition(":")
    return host if _PLAIN_HOST.fullmatch(host) and (not colon or port.isdigit()) else None


def app_server_names(server_name: str | None, *, subdomains: bool = False) -> tuple[str, ...]:
    """What nginx must answer for an app with this SERVER_NAME: its host, and with Flask's subdomain matching
    every name under it (.host). Empty when SERVER_NAME is unset or names no host nginx can match."""
    host = server_name_host(server_name) if server_name else None
    if host is None:
        return ()
    return (f".{host}",) if subdomains and not host.startswith("[") else (host,)


# A Werkzeug rule's placeholder (<name> or <converter(args):name>) and a port at the end of its host.
PLACEHOLDER = re.compile(r"<[^>]*>")
_HOST_PORT = re.compile(r":(?:\d+|<[^>]*>)$")
_HOST_CHARS = re.compile(r"[a-z0-9_.-]*")


def routed_host_names(hosts: Iterable[str]) -> tuple[str, ...]:
    """server_name entries for the hosts a host_matching app's rules route (Rule.host, static_host's included):
    a literal host as itself, <sub>.example.com as *.example.com, any other pattern as a ~regex. nginx lets them
    through and the app routes them exactly; a host nginx cannot match is left out."""
    names: list[str] = []
    for host in hosts:
        host = _HOST_PORT.sub("", host.strip().lower())  # nginx matches the Host header's name alone
        parts = PLACEHOLDER.split(host)
        if len(parts) == 1:
            name = server_name_host(host)
        elif len(parts) == 2 and not parts[0] and parts[1].startswith(".") and _PLAIN_HOST.fullmatch(parts[1][1:]):
            name = f"*{parts[1]}"
        elif all(_HOST_CHARS.fullmatch(part) for part in parts):
            # Werkzeug's host converters match dots too; nginx warns of a '/' in a name, so .+ rather than [^/]+.
            name = "~^" + ".+".join(re.escape(part) for part in parts) + "$"
        else:
            name = None
        if name is not None and name not in names:
            names.append(name)
    return tuple(names)


def conf_path(path: str) -> str:
    """path as one nginx.conf argument: bare when it can be, else in double quotes with `"` and `\\` escaped.

    A `$` is refused (SpecError): alias, root, access_log and ssl_certificate read it as a variable, and nginx has
    no escape for it.
    """
    if "$" in path:
        raise SpecError(
            f"nginx.conf cannot name the path {path}: nginx reads the '$' in it as a variable; "
            "rename or move it to a path without '$'"
        )
    if _BARE_PATH.fullmatch(path):
        return path
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def include_path(path: str) -> str:
    """path as `include`'s argument: pattern characters in it stand for themselves."""
    if _GLOB.search(path):
        path = re.sub(r"([*?[\\])", r"\\\1", path)
    return conf_path(path)


def release_metrics_path(spec: Spec, release: int) -> str:
    """Where the metrics listener serves one release's metrics (NginxContext.release_scrapes): /releases/3/metrics.
    A path per release number, not per role: a scrape names the release whose counters it reads, before, during
    and after nginx switches releases."""
    return f"/releases/{release}{spec.monitoring.metrics_path}"


def upstream_keepalive(derived: Derived, protocol: Protocol, websockets: bool = False) -> int:
    """Idle connections nginx keeps to the app server; 0 where they cannot be reused, or must not be.

    The uwsgi protocol ends every response by closing the connection, and Gunicorn's sync
    worker does the same; otherwise one per worker thread is as many as can be busy at once.
    An app with WebSocket routes gets none: a worker whose threads all hold conversations takes no new
    connection (servers/freethreads.py), but a request nginx sent on one it kept to that worker would wait
    there until a conversation ended.
    """
    if protocol == "uwsgi" or derived.worker_class not in KEEPALIVE_WORKER_CLASSES or websockets:
        return 0
    return derived.workers * derived.threads


# Seconds nginx keeps an answer of the resolver's (NginxContext.resolver), over the TTL it came with (Docker's is
# 600 s): a replaced or added app container is reached within it (nginx counts it in whole seconds, so within 2 s;
# 0 would mean the TTL). Each worker holding the old address answers 502 until then: with a DNS responder in
# tests/test_build_compose_dns.py, the last 502 after the name's address changed came 3.1 s later at valid=5s (up to
# 6), 0.6 s later at 1 s; nginx asked 0.25 queries a second at 5 s, 1 to 1.5 at 1 s (2 workers), one small UDP
# exchange each with Docker's embedded DNS in the container.
RESOLVER_VALID = 1


def resolved_addresses(ctx: NginxContext, responder: str | None) -> dict[str, str]:
    """{variable: host:port} nginx resolves at request time, where ctx has a resolver: each stands in for the upstream
    block of that name, which would resolve its server's name once at start."""
    if ctx.resolver is None:
        return {}
    if ctx.canary:
        raise ValueError("a canary needs its weighted upstream block, which a resolver replaces")
    addresses = {"flaskprod_app": ctx.upstream}
    if responder is not None:
        addresses["flaskprod_responder"] = responder
    return addresses


def _header_variable(header: str) -> str:
    """X-Request-ID -> http_x_request_id: the nginx variable holding a request header."""
    return "http_" + header.lower().replace("-", "_")


def _cgi_name(header: str) -> str:
    """X-Request-ID -> HTTP_X_REQUEST_ID: the WSGI environ key of a request header."""
    return "HTTP_" + header.upper().replace("-", "_")


def forwarded_headers(spec: Spec, scheme: str = "$scheme") -> list[tuple[str, str]]:
    """The headers nginx sets for the app; scheme is the variable X-Forwarded-Proto carries."""
    headers = [(name, scheme if name == "X-Forwarded-Proto" else value) for name, value in _FORWARDED_HEADERS]
    # When nginx passed the request on: the app's deadline counts from then, and its wait is counted.
    if spec.server.soft_timeout or (spec.monitoring.metrics and spec.monitoring.queue_time):
        headers.append(REQUEST_START)
    return [*headers, (spec.logging.request_id_header, "$flaskprod_request_id")]


def uwsgi_params(spec: Spec, scheme: str = "$scheme") -> list[tuple[str, str]]:
    # Setting HTTP_<NAME> also stops nginx from passing the client's header of that name.
    pairs = forwarded_headers(spec, scheme)
    headers = [(_cgi_name(name), value.replace('""', '"" if_not_empty')) for name, value in pairs]
    return [*_UWSGI_CGI_PARAMS, *headers]


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("flaskprod", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.filters["path"] = conf_path
    environment.filters["include_path"] = include_path
    return environment


def metrics_allow(spec: Spec) -> list[str] | None:
    """Who may read the metrics path through nginx; None when metrics are off or open to all."""
    allowed = spec.monitoring.metrics_allow
    if not spec.monitoring.metrics or allowed is None:
        return None
    return allowed.split()


# The release number the scraper's location for each release captures (release_metrics_location).
RELEASE_VARIABLE = "flaskprod_release"


def release_metrics_location(spec: Spec, scrapes: str) -> tuple[str, str, str]:
    """The regex location serving release_metrics_path for any release number, the folder its release must have in
    scrapes (NginxContext.release_scrapes) to be passed on, and the proxy_pass address of its link: each one
    nginx.conf argument."""
    conf_path(scrapes)  # refuses a '$'
    digits = f"(?<{RELEASE_VARIABLE}>[1-9][0-9]{{0,8}})"
    pattern = f"^/releases/{digits}{re.escape(spec.monitoring.metrics_path)}$"  # release_metrics_path's
    folder = f"{scrapes}/${RELEASE_VARIABLE}"
    return _quoted(pattern), _quoted(folder), _quoted(f"http://unix:{folder}/app.prom:")


def _quoted(argument: str) -> str:
    """argument in double quotes, as nginx.conf reads it back: its variables are read, `"` and `\\` are escaped."""
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def hsts_value(spec: Spec) -> str | None:
    """The Strict-Transport-Security value nginx sends over HTTPS: the same one the app would send."""
    from ..runtime.headers import hsts_headers

    if not spec.security.headers:
        return None
    return dict(hsts_headers(spec)).get("Strict-Transport-Security")


@dataclass(frozen=True, kw_only=True)
class ErrorPage:
    """One error nginx answers itself, as the app's error pages would: each body one nginx.conf argument, whose
    ${flaskprod_request_id} nginx fills in."""

    code: int
    json: str
    html: str


def error_pages(spec: Spec) -> tuple[ErrorPage, ...]:
    """The app's JSON and HTML pages (runtime/errorpages.py) for each of UNROUTED_ERROR_CODES and NGINX_ERROR_CODES
    (the last the default), with Werkzeug's name and description; none when security.error_pages is off, where nginx
    keeps its own."""
    from werkzeug.exceptions import default_exceptions

    from ..runtime.errorpages import error_body

    if not spec.security.error_pages:
        return ()
    pages = []
    for code in sorted(set(UNROUTED_ERROR_CODES) - set(NGINX_ERROR_CODES)) + list(NGINX_ERROR_CODES):
        error = default_exceptions[code]()
        name, message = error.name, error.description or error.name
        rid = "${flaskprod_request_id}"
        bodies = [error_body(code, name, message, rid, as_json=as_json)[0] for as_json in (True, False)]
        pages.append(ErrorPage(code=code, json=_quoted_text(bodies[0]), html=_quoted_text(bodies[1])))
    return tuple(pages)


def rate_limit_retry_after(rate: str) -> int:
    """Seconds until limit_req at rate (10r/s, 300r/m) takes a client's next request once it has refused one: the
    excess past the burst drains by one request each period/count, at least the one second Retry-After can say."""
    count, _, unit = rate.partition("r/")
    period = 60 if unit == "m" else 1
    return max(1, math.ceil(period / int(count)))


def retry_after(spec: Spec) -> dict[int, int]:
    """{status: seconds} for the Retry-After of nginx's own 429 and 503, which a client or load balancer backing off
    waits for; the app's own 429 and 503 pass through with theirs."""
    seconds = {503: UNAVAILABLE_RETRY_AFTER}
    if spec.proxy.rate_limit:
        seconds[429] = rate_limit_retry_after(spec.proxy.rate_limit)
    return dict(sorted(seconds.items()))


def security_header_args(spec: Spec) -> list[tuple[str, str]]:
    """The security headers the app adds to every answer (runtime/headers.py's) when security.headers is on, for what
    nginx answers itself; each value one nginx.conf argument. HSTS is apart: only HTTPS servers add it."""
    from ..runtime.headers import security_headers

    if not spec.security.headers:
        return []
    return [(name, _quoted(value)) for name, value in security_headers(spec)]


def error_headers(spec: Spec) -> list[tuple[str, str]]:
    """The headers the app adds to every answer, for nginx's own errors: its request id, and its security headers
    when security.headers is on (HSTS is the server's, added beside them); each value one nginx.conf argument."""
    # A 405 names the methods allowed, as the app's does (Werkzeug's MethodNotAllowed): nginx's static files take GET
    # and HEAD. Empty on any other status, and on TRACE's, where nginx sends no Allow.
    allow = ("Allow", "$flaskprod_error_allow")
    # On nginx's 429 and 503 (retry_after); empty, so not sent, on the rest.
    retry = ("Retry-After", "$flaskprod_error_retry_after")
    return [(spec.logging.request_id_header, "$flaskprod_request_id"), allow, retry, *security_header_args(spec)]


def unrouted_error_headers(spec: Spec) -> list[tuple[str, str]]:
    """error_headers for the default server's pages, without Allow: its one 405 is TRACE's, which no list of methods
    is true for (the app's routes each take their own), and the redirect to a URI location made its method GET."""
    return [(name, value) for name, value in error_headers(spec) if name != "Allow"]


def _regex(pattern: str) -> str:
    """pattern as one nginx.conf argument: nginx keeps a backslash before any character but `"`, `'`, `\\`, t, r, n."""
    assert '"' not in pattern and not re.search(r"\\[\\trn\"']", pattern), pattern
    return f'"{pattern}"'


def _quoted_text(text: str) -> str:
    """text as one nginx.conf argument, its newlines written \\n; a '$' in it is nginx's variable."""
    return _quoted(text).replace("\n", "\\n")


def render_nginx_conf(spec: Spec, derived: Derived, ctx: NginxContext) -> str:
    """The nginx.conf text for spec and its derived values, run as ctx says."""
    template = _environment().get_template("nginx/nginx.conf.j2")
    responders = ctx.responders and spec.monitoring.metrics
    metrics_upstream = "flaskprod_responder" if responders else "flaskprod_primary" if ctx.canary else "flaskprod_app"
    # Behind a proxy that ends TLS, the scheme is the one it reports (when it is one of the trusted addresses).
    scheme = "$flaskprod_scheme" if ctx.trusted_proxies else "$scheme"
    public_tls_port = (ctx.tls.public_port or ctx.tls.port) if ctx.tls else None
    responder = responder_bind(ctx.upstream) if responders else None
    resolved = resolved_addresses(ctx, responder)
    return template.render(
        spec=spec,
        derived=derived,
        ctx=ctx,
        app_name=spec.app.name,
        listen=listen_address(ctx.host, ctx.port),
        server_names=server_names(spec, ctx.host, ctx.app_names),
        metrics_listen=listen_address(ctx.metrics_host or ctx.host, ctx.metrics_port) if ctx.metrics_port else None,
        metrics_upstream=metrics_upstream,
        responders=responders,
        responder=responder,
        resolved=resolved,
        resolver_valid=RESOLVER_VALID,
        release_metrics=(
            release_metrics_location(spec, ctx.release_scrapes) if responders and ctx.release_scrapes else None
        ),
        max_body_bytes=derived.max_body_bytes,
        static_revalidate=STATIC_REVALIDATE,
        gzip_types=GZIP_TYPES,
        request_id_header=spec.logging.request_id_header,
        request_id_variable=_header_variable(spec.logging.request_id_header),
        # A name resolved per request has no upstream block to keep connections in.
        upstream_keepalive=0 if resolved else upstream_keepalive(derived, ctx.protocol, ctx.websockets),
        proxy_headers=forwarded_headers(spec, scheme),
        uwsgi_params=uwsgi_params(spec, scheme),
        metrics_allow=metrics_allow(spec),
        tls=ctx.tls,
        tls_listen=listen_address(ctx.host, ctx.tls.port) if ctx.tls else None,
        # The client came to the standard port when it is 443, so the redirect names no port.
        tls_port_suffix="" if public_tls_port in (None, 443) else f":{public_tls_port}",
        tls_ciphers=TLS_CIPHERS,
        hsts=hsts_value(spec) if ctx.tls else None,
        proxied_hsts=hsts_value(spec) if ctx.trusted_proxies and not ctx.tls else None,
        error_pages=error_pages(spec),
        error_codes=NGINX_ERROR_CODES,
        malformed_codes=(MALFORMED_REQUEST_CODE, HEADER_TOO_LARGE_CODE),
        unrouted_codes=UNROUTED_ERROR_CODES,
        security_headers=security_header_args(spec),
        error_headers=error_headers(spec),
        unrouted_error_headers=unrouted_error_headers(spec),
        error_retry_after=retry_after(spec),
        error_location=ERROR_LOCATION,
        unrouted_error_location=UNROUTED_ERROR_LOCATION,
        error_accept_maps=error_accept_maps(),
        api_paths=api_paths(ctx.mount_prefixes),
    )


def mime_types() -> str:
    return resources.files("flaskprod").joinpath("templates/nginx/mime.types").read_text(encoding="utf-8")


def render_nginx(spec: Spec, derived: Derived, ctx: NginxContext) -> dict[str, str]:
    """{file name: text} for ctx.conf_dir: nginx.conf and the mime.types it includes."""
    return {"nginx.conf": render_nginx_conf(spec, derived, ctx), "mime.types": mime_types()}
