"""The nginx renderer: values come from the spec and its derived chain, and real nginx accepts the result."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flaskprod.errors import SpecError
from flaskprod.render import NginxContext, render_nginx, render_nginx_conf
from flaskprod.render.nginx import (
    Protocol,
    StaticMount,
    app_server_names,
    listen_address,
    routed_host_names,
    server_names,
)
from flaskprod.servers.probe import AppInfo
from flaskprod.sizing import Derived, Machine, derive
from flaskprod.spec import Spec, load_spec

MACHINE = Machine(cpus=2, memory=4 * 1024**3)


def make_spec(**flags: object) -> Spec:
    return load_spec(environ={}, config=None, root="/nonexistent", flags=flags)


# The app's own static folder, and two blueprints': one with a url_prefix, one under the app's URL.
BLUEPRINTS = (("admin.static", "/admin/static", "admin"), ("docs.static", "/static/docs", "docs"))


def context(
    tmp_path: Path,
    protocol: Protocol = "http",
    *,
    static: bool = True,
    host: str = "127.0.0.1",
    static_url: str = "/static",
    blueprints: bool = False,
) -> NginxContext:
    mounts = [("static", static_url, "static"), *(BLUEPRINTS if blueprints else ())] if static else []
    for _, _, folder in mounts:
        (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return NginxContext(
        host=host,
        port=18080,
        upstream=f"unix:{tmp_path}/app.sock",
        protocol=protocol,
        static=tuple(StaticMount(endpoint=e, url=url, folder=str(tmp_path / f)) for e, url, f in mounts),
        conf_dir=str(tmp_path),
        pid_file=f"{tmp_path}/nginx.pid",
        temp_dir=f"{tmp_path}/tmp",
        access_log=f"{tmp_path}/access.log",
        error_log="stderr",
    )


def rendered(spec: Spec, ctx: NginxContext, derived: Derived | None = None) -> str:
    return render_nginx_conf(spec, derived or derive(spec, MACHINE), ctx)


def directive(text: str, name: str) -> list[str]:
    """The distinct arguments of `name ...;` lines (the app's locations repeat the same pass block)."""
    found = [m[1] for m in re.finditer(rf"^\s*{re.escape(name)}\s+(.*?);\s*$", text, re.MULTILINE)]
    return list(dict.fromkeys(found))


def test_body_limit_is_the_bytes_the_app_uses(tmp_path: Path) -> None:
    spec = make_spec(**{"proxy.max_body_size": "3M"})
    text = rendered(spec, context(tmp_path))
    assert directive(text, "client_max_body_size") == [str(3 * 1024 * 1024)]
    assert derive(spec, MACHINE).max_body_bytes == 3 * 1024 * 1024


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
def test_read_timeout_sits_between_the_deadline_and_the_kill(tmp_path: Path, protocol: Protocol) -> None:
    spec = make_spec(**{"server.timeout": "7"})
    derived = derive(spec, MACHINE)
    text = rendered(spec, context(tmp_path, protocol), derived)
    prefix = "proxy" if protocol == "http" else "uwsgi"
    # Every request's but one that accepts server-sent events (test_a_request_for_server_sent_events_...).
    assert directive(text, f"{prefix}_read_timeout") == [f"{derived.timeouts.proxy_read}s", "3600s"]
    assert derived.timeouts.server > derived.timeouts.proxy_read > derived.timeouts.request == 7
    assert directive(text, f"{prefix}_connect_timeout") == [f"{derived.timeouts.proxy_connect}s"]
    assert directive(text, "worker_shutdown_timeout") == [f"{derived.timeouts.graceful}s"]


def test_client_timeouts_and_buffers_come_from_the_spec(tmp_path: Path) -> None:
    spec = make_spec(
        **{
            "proxy.client_header_timeout": "3",
            "proxy.client_body_timeout": "4",
            "proxy.send_timeout": "5",
            "proxy.keepalive_timeout": "6",
            "proxy.client_body_buffer_size": "64k",
            "proxy.client_header_buffer_size": "2k",
        }
    )
    text = rendered(spec, context(tmp_path))
    assert directive(text, "client_header_timeout") == ["3s"]
    assert directive(text, "client_body_timeout") == ["4s"]
    assert directive(text, "send_timeout") == ["5s"]
    # The first is the clients'; a second, in the upstream block, is towards the app server.
    assert directive(text, "keepalive_timeout")[0] == "6s"
    assert directive(text, "client_body_buffer_size") == ["64k"]
    assert directive(text, "client_header_buffer_size") == ["2k"]


def test_http_upstream_forwards_the_trusted_headers(tmp_path: Path) -> None:
    text = rendered(make_spec(), context(tmp_path))
    assert directive(text, "server") == [f"unix:{tmp_path}/app.sock fail_timeout=0"]
    assert directive(text, "proxy_pass") == ["http://flaskprod_app"]
    assert directive(text, "proxy_http_version") == ["1.1"]
    headers = dict(h.split(None, 1) for h in directive(text, "proxy_set_header"))
    assert headers == {
        "Connection": '""',
        "Host": "$flaskprod_host",
        "X-Real-IP": "$remote_addr",
        "X-Forwarded-For": "$proxy_add_x_forwarded_for",
        "X-Forwarded-Proto": "$scheme",
        "X-Forwarded-Host": '""',
        "X-Forwarded-Port": '""',
        "X-Forwarded-Prefix": '""',
        "X-Request-Start": '"t=${msec}"',
        "X-Request-ID": "$flaskprod_request_id",
    }
    assert "uwsgi_pass" not in text


@pytest.mark.parametrize("off", ["monitoring.queue_time", "monitoring.metrics"])
@pytest.mark.parametrize("soft_timeout", [True, False])
def test_request_start_is_sent_while_the_deadline_or_the_wait_s_histogram_reads_it(
    tmp_path: Path, off: str, soft_timeout: bool
) -> None:
    for protocol, directive_name in (("http", "proxy_set_header"), ("uwsgi", "uwsgi_param")):
        spec = make_spec(**{off: False, "server.soft_timeout": soft_timeout})
        text = rendered(spec, context(tmp_path, protocol))
        sent = [line.split(None, 1)[0] for line in directive(text, directive_name)]
        assert ("X-Request-Start" in sent or "HTTP_X_REQUEST_START" in sent) == soft_timeout
        assert "X-Request-ID" in sent or "HTTP_X_REQUEST_ID" in sent


def test_uwsgi_upstream_passes_cgi_params_and_the_same_headers(tmp_path: Path) -> None:
    text = rendered(make_spec(), context(tmp_path, "uwsgi"))
    assert directive(text, "uwsgi_pass") == ["flaskprod_app"]
    params = dict(p.split(None, 1) for p in directive(text, "uwsgi_param"))
    for cgi in ("REQUEST_METHOD", "QUERY_STRING", "PATH_INFO", "CONTENT_LENGTH", "CONTENT_TYPE", "REMOTE_ADDR"):
        assert cgi in params
    assert params["HTTP_X_FORWARDED_FOR"] == "$proxy_add_x_forwarded_for"
    assert params["HTTP_X_REQUEST_ID"] == "$flaskprod_request_id"
    assert params["HTTP_X_FORWARDED_HOST"] == '"" if_not_empty'
    assert params["HTTP_X_REQUEST_START"] == '"t=${msec}"'
    assert "proxy_pass" not in text
    # The uwsgi protocol closes after every response: a keepalive pool would never be reused.
    assert directive(text, "keepalive") == []


@pytest.mark.parametrize(
    ("threads", "worker_class", "expected"), [(1, "auto", []), (4, "auto", ["12"]), (4, "gevent", [])]
)
def test_upstream_keepalive_only_where_the_worker_reuses_connections(
    tmp_path: Path, threads: int, worker_class: str, expected: list[str]
) -> None:
    spec = make_spec(**{"server.threads": str(threads), "server.workers": "3", "server.worker_class": worker_class})
    derived = derive(spec, MACHINE)
    text = rendered(spec, context(tmp_path), derived)
    assert directive(text, "keepalive") == expected
    if expected:
        assert f"keepalive_timeout {derived.timeouts.upstream_keepalive}s;" in text
        assert derived.timeouts.upstream_keepalive < derived.timeouts.keepalive
    # nginx's own lifetime for a kept connection (an hour) unless up bounds it; never without keepalive.
    assert directive(text, "keepalive_time") == []
    bounded = rendered(spec, dataclasses.replace(context(tmp_path), upstream_keepalive_time=5), derived)
    assert directive(bounded, "keepalive_time") == (["5s"] if expected else [])


def test_an_app_with_websocket_routes_gets_no_kept_upstream_connections(tmp_path: Path) -> None:
    """A request on a connection kept to a worker whose threads all hold conversations would wait there; a new one
    goes to a worker with a thread free (servers/freethreads.py)."""
    spec = make_spec(**{"server.threads": "4", "server.workers": "3"})
    text = rendered(spec, dataclasses.replace(context(tmp_path), websockets=True, upstream_keepalive_time=5))
    assert directive(text, "keepalive") == directive(text, "keepalive_time") == []
    assert re.search(r'map \$http_upgrade \$flaskprod_connection \{\s*default upgrade;\s*"" close;\s*\}', text)
    assert directive(text, "proxy_set_header").count("Connection $flaskprod_connection") == 1


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
def test_a_request_for_server_sent_events_waits_for_them_unbuffered(tmp_path: Path, protocol: Protocol) -> None:
    spec = make_spec(**{"proxy.event_stream_timeout": "900", "proxy.rate_limit": "5r/s"})
    text = rendered(spec, context(tmp_path, protocol))
    prefix = "uwsgi" if protocol == "uwsgi" else "proxy"
    derived = derive(spec, MACHINE)
    root = app_location(text)
    assert 'if ($http_accept ~* "text/event-stream") {' in root and "error_page 418 = @flaskprod_events;" in root
    assert f"{prefix}_read_timeout {derived.timeouts.proxy_read}s;" in root
    [events] = re.findall(r"location @flaskprod_events \{(.*?)\n        \}", text, re.DOTALL)
    assert f"{prefix}_read_timeout 900s;" in events and f"{prefix}_buffering off;" in events
    assert f"{prefix}_pass" in events and "limit_req zone=flaskprod_per_ip" in events  # passed on as the rest are


def test_request_id_header_follows_the_logging_setting(tmp_path: Path) -> None:
    text = rendered(make_spec(**{"logging.request_id_header": "X-Correlation-ID"}), context(tmp_path))
    assert "map $http_x_correlation_id $flaskprod_request_id" in text
    assert "proxy_set_header X-Correlation-ID $flaskprod_request_id;" in text


def test_static_location_only_with_a_static_dir(tmp_path: Path) -> None:
    spec = make_spec(**{"proxy.static_max_age": "600"})
    text = rendered(spec, context(tmp_path, static_url="/assets"))
    assert "location /assets/ {" in text
    assert f"alias {tmp_path}/static/;" in text
    assert "try_files $uri =404;" in text
    assert 'default "public, max-age=600";' in text
    assert "immutable" in text
    assert "alias" not in rendered(spec, context(tmp_path, static=False))


def static_blocks(text: str) -> dict[str, str]:
    """location prefix -> the body of each location that serves files from disk."""
    found = re.finditer(r"^\s*location (\S+) \{\n(\s*alias .*?)^\s*\}", text, re.MULTILINE | re.DOTALL)
    return {m[1]: m[2] for m in found}


def test_each_blueprint_folder_gets_a_location_with_the_same_headers(tmp_path: Path) -> None:
    text = rendered(make_spec(), context(tmp_path, blueprints=True))
    blocks = static_blocks(text)
    assert list(blocks) == ["/static/", "/admin/static/", "/static/docs/"]
    assert [block.splitlines()[0].strip() for block in blocks.values()] == [
        f"alias {tmp_path}/static/;",
        f"alias {tmp_path}/admin/;",
        f"alias {tmp_path}/docs/;",
    ]
    # One block, from one macro: the caching and headers past the alias line are the same everywhere.
    assert len({block.split("\n", 1)[1] for block in blocks.values()}) == 1
    assert "add_header Cache-Control $flaskprod_static_cache;" in blocks["/admin/static/"]


def test_rate_limit_only_when_set(tmp_path: Path) -> None:
    assert "limit_req" not in rendered(make_spec(), context(tmp_path))
    text = rendered(make_spec(**{"proxy.rate_limit": "5r/s", "proxy.rate_limit_burst": "7"}), context(tmp_path))
    assert directive(text, "limit_req_zone") == ["$binary_remote_addr zone=flaskprod_per_ip:10m rate=5r/s"]
    assert directive(text, "limit_req_status") == ["429"]
    assert directive(text, "limit_req") == ["zone=flaskprod_per_ip burst=7 nodelay"]
    no_burst = rendered(make_spec(**{"proxy.rate_limit": "5r/s", "proxy.rate_limit_burst": "0"}), context(tmp_path))
    assert directive(no_burst, "limit_req") == ["zone=flaskprod_per_ip"]


def test_gzip_follows_the_spec(tmp_path: Path) -> None:
    text = rendered(make_spec(**{"proxy.gzip_min_length": "256"}), context(tmp_path))
    assert directive(text, "gzip") == ["on"]
    assert directive(text, "gzip_min_length") == ["256"]
    assert "gzip " not in rendered(make_spec(**{"proxy.gzip": "false"}), context(tmp_path))


def test_unknown_hosts_are_closed_and_no_version_is_shown(tmp_path: Path) -> None:
    text = rendered(make_spec(), context(tmp_path))
    assert directive(text, "server_tokens") == ["off"]
    assert directive(text, "listen") == ["127.0.0.1:18080 default_server", "127.0.0.1:18080"]
    # 418: on to the events' location, never sent; 200: an error page, sent with the error's status.
    assert directive(text, "return") == ["444", "200 $flaskprod_error_json", "200 $flaskprod_error_html", "418"]
    assert "escape=json" in text


def test_nothing_outside_the_prefix_is_referenced(tmp_path: Path) -> None:
    for protocol in ("http", "uwsgi"):
        text = rendered(make_spec(), context(tmp_path, protocol))
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        # Absolute paths as directive arguments; the URL locations /static/, /metrics and / are not files, nor the
        # default server's error pages.
        urls = {"/static/", "/metrics", "/", "/flaskprod_error_", "/flaskprod_error_json", "/flaskprod_error_html"}
        paths = set(re.findall(r"(?<=\s)/[\w./-]+", "\n".join(lines))) - urls
        assert paths
        assert all(p.startswith(str(tmp_path)) for p in paths), paths


def test_server_names_add_the_listen_host_a_client_can_type() -> None:
    spec = make_spec(**{"proxy.server_name": "example.org www.example.org"})
    assert server_names(spec, "127.0.0.1") == ["example.org", "www.example.org", "127.0.0.1"]
    assert server_names(spec, "0.0.0.0") == ["example.org", "www.example.org"]
    assert server_names(spec, "::1") == ["example.org", "www.example.org", "[::1]"]
    assert listen_address("::1", 80) == "[::1]:80"
    assert listen_address("0.0.0.0", 80) == "0.0.0.0:80"


@pytest.mark.parametrize(
    ("server_name", "subdomains", "names"),
    [
        (None, False, ()),
        ("shop.example.com:8443", False, ("shop.example.com",)),  # nginx matches the name without the port
        ("Shop.Example.com", True, (".shop.example.com",)),  # Flask's subdomain matching: every name under it too
        ("127.0.0.1:5000", False, ("127.0.0.1",)),
        ("[::1]:8000", True, ("[::1]",)),
        ("https://shop.example.com", False, ()),  # no host: nothing nginx could match
        ("shop.example.com:port", False, ()),
        ("[::1]x", False, ()),
        ("shop example.com", False, ()),  # nothing unquoted in nginx.conf could hold
    ],
)
def test_app_server_names_are_the_hosts_nginx_matches(
    server_name: str | None, subdomains: bool, names: tuple[str, ...]
) -> None:
    assert app_server_names(server_name, subdomains=subdomains) == names


@pytest.mark.parametrize(
    ("hosts", "names"),
    [
        (("api.example.com", "API.example.com"), ("api.example.com",)),
        (("static.example.com:8080", "example.com:<int:port>"), ("static.example.com", "example.com")),
        (("<tenant>.shop.example.com",), ("*.shop.example.com",)),  # a converter matches dots too, as * does
        (("api.<region>.example.com",), (r"~^api\..+\.example\.com$",)),
        (("<a>-<b>.example.com",), (r"~^.+\-.+\.example\.com$",)),
        (("[::1]:8000", "127.0.0.1"), ("[::1]", "127.0.0.1")),
        (("shop example.com", "shop;.example.com", "<x>.ex{1}.com"), ()),  # nothing nginx.conf could hold unquoted
    ],
)
def test_routed_hosts_become_the_server_names_nginx_matches(hosts: tuple[str, ...], names: tuple[str, ...]) -> None:
    assert routed_host_names(hosts) == names
    for name in names:
        if name.startswith("~"):
            for host in (h.lower() for h in hosts if "<" in h):
                example = re.sub(r"<[^>]*>", "x1", host).split(":")[0]
                assert re.fullmatch(name[2:-1], example), (name, example)


def test_an_app_is_answered_by_the_hosts_it_routes_as_well_as_its_server_name() -> None:
    info = AppInfo(
        rss_mb=None, static_folder=None, static_url_path=None, import_string="app:app", server_name="example.com",
        routed_hosts=("example.com", "<tenant>.example.com"),
    )  # fmt: skip
    assert info.nginx_names == ("example.com", "*.example.com")


def test_server_names_add_the_apps_host_unless_a_configured_name_answers_it() -> None:
    spec = make_spec(**{"proxy.server_name": "example.org *.example.net"})
    assert server_names(spec, "0.0.0.0", ("shop.example.com",)) == ["example.org", "*.example.net", "shop.example.com"]
    assert server_names(spec, "0.0.0.0", ("www.example.net",)) == ["example.org", "*.example.net"]
    # .example.org is example.org and the names under it, which example.org alone does not answer.
    assert server_names(spec, "0.0.0.0", (".example.org",)) == ["*.example.net", ".example.org"]
    assert server_names(spec, "0.0.0.0", (".example.net",)) == ["example.org", "*.example.net", ".example.net"]
    assert server_names(spec, "127.0.0.1", ("127.0.0.1",)) == ["example.org", "*.example.net", "127.0.0.1"]


@pytest.mark.parametrize(
    ("app_names", "names"),
    [
        (("shop.example.com",), "localhost 127.0.0.1 shop.example.com"),
        ((".localhost",), "127.0.0.1 .localhost"),
        (("[::1]",), "localhost 127.0.0.1 [::1]"),
        (("*.shop.example.com", r"~^api\..+\.example\.com$"),
         r"localhost 127.0.0.1 *.shop.example.com ~^api\..+\.example\.com$"),  # a host_matching app's
    ],
)
def test_nginx_accepts_the_apps_names_beside_the_configured_ones(
    tmp_path: Path, app_names: tuple[str, ...], names: str
) -> None:
    spec = make_spec()
    ctx = dataclasses.replace(context(tmp_path), app_names=app_names)
    files = render_nginx(spec, derive(spec, MACHINE), ctx)
    assert directive(files["nginx.conf"], "server_name") == ["_", names]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = nginx_test(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warnings either


def nginx_test(conf_dir: Path) -> subprocess.CompletedProcess[str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return subprocess.run(
        [nginx, "-t", "-q", "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
@pytest.mark.parametrize("blueprints", [False, True], ids=["app-static", "blueprint-static"])
@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"proxy.rate_limit": "10r/s", "server.threads": "4"},
        # No burst: nginx refuses burst=0 ("invalid burst value"), so the directive leaves it out.
        {"proxy.rate_limit": "10r/s", "proxy.rate_limit_burst": "0"},
        {"proxy.gzip": "false", "logging.request_id_header": "X-Correlation-ID"},
    ],
    ids=["defaults", "rate-limit-gthread", "rate-limit-no-burst", "no-gzip-other-id-header"],
)
def test_nginx_accepts_the_rendered_config(
    tmp_path: Path, protocol: Protocol, blueprints: bool, flags: dict[str, str]
) -> None:
    spec = make_spec(**flags)
    ctx = context(tmp_path, protocol, blueprints=blueprints)
    for name, text in render_nginx(spec, derive(spec, MACHINE), ctx).items():
        (tmp_path / name).write_text(text)
    result = nginx_test(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warnings either


def test_metrics_are_only_for_the_allowed_addresses(tmp_path: Path) -> None:
    text = rendered(make_spec(**{"monitoring.metrics_allow": "127.0.0.1 10.0.0.0/8"}), context(tmp_path))
    block = text[text.index("location = /metrics {") :]
    block = block[: block.index("}")]
    assert [line.strip() for line in block.splitlines() if line.strip().startswith(("allow", "deny"))] == [
        "allow 127.0.0.1;",
        "allow 10.0.0.0/8;",
        "deny all;",
    ]
    assert "proxy_pass http://flaskprod_app;" in block
    assert "location = /metrics" not in rendered(make_spec(**{"monitoring.metrics_allow": "none"}), context(tmp_path))
    assert "location = /metrics" not in rendered(make_spec(**{"monitoring.metrics": "false"}), context(tmp_path))


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
@pytest.mark.parametrize("scraper_port", [None, 19100], ids=["public-path", "scraper-port"])
def test_during_a_canary_metrics_come_from_one_release(
    tmp_path: Path, protocol: Protocol, scraper_port: int | None
) -> None:
    """Requests are split between the releases; scrapes taking turns between two sets of counters would read
    as resets, so the metrics path goes to the release that takes most requests, alone."""
    canary = f"unix:{tmp_path}/app-2.sock"
    ctx = dataclasses.replace(context(tmp_path, protocol), canary=(canary, 20), metrics_port=scraper_port)
    spec = make_spec()
    files = render_nginx(spec, derive(spec, MACHINE), ctx)
    text = files["nginx.conf"]
    passes = "uwsgi_pass " if protocol == "uwsgi" else "proxy_pass http://"
    block = text[text.rindex("location = /metrics {") :]  # the scraper's port, where it has one
    assert f"{passes}flaskprod_primary;" in block[: block.index("}")]
    assert f"{passes}flaskprod_app;" in app_location(text)
    primary = text[text.index("upstream flaskprod_primary {") :]
    assert primary[: primary.index("}")].split("\n")[1].strip() == f"server unix:{tmp_path}/app.sock fail_timeout=0;"
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    result = nginx_test(tmp_path)
    assert (result.returncode, result.stderr) == (0, "")


def app_location(text: str) -> str:
    """The first `location / {` block, to its own closing brace (it holds an `if` block)."""
    start = text.index("        location / {")
    return text[start : text.index("\n        }", start)]


def location(text: str, path: str, *, last: bool = False) -> str:
    """The block of `location = path` (the scraper's port's, the last one, with last)."""
    start = (text.rindex if last else text.index)(f"location = {path} {{")
    return text[start : text.index("}", start)]


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
@pytest.mark.parametrize("canary", [False, True], ids=["one-release", "canary"])
def test_scrapes_go_to_each_app_servers_metrics_responder(tmp_path: Path, protocol: Protocol, canary: bool) -> None:
    """With responders, nothing a scraper asks queues behind requests: the public metrics path, the scraper's port
    and each release's path are passed over HTTP to the responder beside that release's app server."""
    second = f"unix:{tmp_path}/app-2.sock"
    ctx = dataclasses.replace(
        context(tmp_path, protocol),
        responders=True,
        canary=(second, 20) if canary else None,
        release_scrapes=f"{tmp_path}/scrapes",
    )
    spec = make_spec()
    public = rendered(spec, ctx)
    assert "proxy_pass http://flaskprod_responder;" in location(public, "/metrics")
    assert "deny all;" in location(public, "/metrics")
    files = render_nginx(spec, derive(spec, MACHINE), dataclasses.replace(ctx, metrics_port=19100))
    text = files["nginx.conf"]
    assert "return 404;" in location(text, "/metrics")  # the public port, beside the scraper's
    assert "proxy_pass http://flaskprod_responder;" in location(text, "/metrics", last=True)
    assert f'proxy_pass "http://unix:{tmp_path}/scrapes/$flaskprod_release/app.prom:";' in text
    servers = dict(re.findall(r"upstream (flaskprod_\w+) \{\n(?:\s*#.*\n)*\s*server (\S+)", text))
    # The responder of the release that takes most requests; each release's own at its path, through its link.
    assert servers["flaskprod_responder"] == f"unix:{tmp_path}/app.prom"
    assert "flaskprod_primary" not in text
    # Requests still go to the app servers, in their protocol.
    assert ("uwsgi_pass " if protocol == "uwsgi" else "proxy_pass http://") + "flaskprod_app;" in app_location(text)
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    result = nginx_test(tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    # Without metrics there is no responder to send anything to.
    assert "flaskprod_responder" not in rendered(make_spec(**{"monitoring.metrics": "false"}), ctx)


def test_an_open_metrics_path_goes_to_the_responder_too(tmp_path: Path) -> None:
    ctx = dataclasses.replace(context(tmp_path), responders=True)
    text = rendered(make_spec(**{"monitoring.metrics_allow": "none"}), ctx)
    block = location(text, "/metrics")
    assert "proxy_pass http://flaskprod_responder;" in block
    assert "allow" not in block and "deny" not in block


def test_nginx_takes_paths_with_spaces_quotes_and_pattern_characters(tmp_path: Path) -> None:
    """Every path nginx.conf names is one argument, whatever it holds: the run dir of a project in "My Projects",
    a static folder named "my assets"."""
    odd = tmp_path / 'my "odd" \\ dir [1]; {#}'
    odd.mkdir()
    ctx = dataclasses.replace(context(odd), canary=(f"unix:{odd}/app-2.sock", 20))
    spec = make_spec()
    files = render_nginx(spec, derive(spec, MACHINE), ctx)
    text = files["nginx.conf"]
    quoted = str(odd).replace("\\", "\\\\").replace('"', '\\"')
    assert directive(text, "pid") == [f'"{quoted}/nginx.pid"']
    assert directive(text, "alias") == [f'"{quoted}/static/"']
    assert directive(text, "server")[0] == f'"unix:{quoted}/app.sock" weight=80 fail_timeout=0'
    for name, content in files.items():
        (odd / name).write_text(content)
    result = nginx_test(odd)
    assert (result.returncode, result.stderr) == (0, "")
    # The include names mime.types itself, not a pattern that matches nothing (which nginx would take silently).
    with (odd / "mime.types").open("a") as mime:
        mime.write("not_a_directive;\n")
    assert 'unknown directive "not_a_directive"' in nginx_test(odd).stderr


def test_plain_paths_are_written_as_they_are(tmp_path: Path) -> None:
    text = rendered(make_spec(), context(tmp_path))
    assert directive(text, "pid") == [f"{tmp_path}/nginx.pid"]
    assert directive(text, "include") == [f"{tmp_path}/mime.types"]


def test_a_path_with_a_dollar_is_refused_in_one_line(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    folder = f"{tmp_path}/price$list"
    ctx = dataclasses.replace(ctx, static=(StaticMount(endpoint="static", url="/static", folder=folder),))
    with pytest.raises(SpecError) as info:
        rendered(make_spec(), ctx)
    assert str(info.value) == (
        f"nginx.conf cannot name the path {folder}/: nginx reads the '$' in it as a variable; rename or move it "
        "to a path without '$'"
    )
