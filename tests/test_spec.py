"""The spec: precedence of sources, origins, and every kind of bad input."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from flaskprod.errors import SpecError
from flaskprod.reference import settings_reference
from flaskprod.spec import SETTINGS, Spec, find_config_file, load_spec, parse_size
from tests.support import BIN, ROOT, run_flaskprod


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_given(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    spec = load_spec(project, environ={})
    assert spec == Spec().replace(**{"app.name": "shop"})
    assert spec.origins["app.name"] == "project"
    assert {origin for key, origin in spec.origins.items() if key != "app.name"} == {"default"}
    assert len(spec.origins) == len(SETTINGS)


@pytest.mark.parametrize(
    ("pyproject", "target", "name"),
    [
        ('[project]\nname = "inventory"\n', "wsgi:app", "inventory"),  # the declared name first
        (None, "storefront:create_app()", "storefront"),  # then the app's top-level package
        (None, "storefront.web:app", "storefront"),
        (None, "wsgi:app", "shop"),  # an entry file names nothing: the directory does
        (None, None, "shop"),
        ("not toml [", "app", "shop"),  # a broken pyproject is the build tool's to report
    ],
)
def test_the_name_comes_from_the_project_when_no_source_sets_it(
    tmp_path: Path, pyproject: str | None, target: str | None, name: str
) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    if pyproject is not None:
        write(project / "pyproject.toml", pyproject)
    flags = {"app.target": target} if target else {}
    loaded = load_spec(project, environ={}, flags=flags)
    assert loaded.app.name == name
    assert loaded.app.version == "0.0.0"  # no [project] version in any of these
    # Any source that sets it wins over the project.
    write(project / "flaskprod.toml", '[app]\nname = "mine"\n')
    spec = load_spec(project, environ={}, flags=flags)
    assert (spec.app.name, spec.origins["app.name"]) == ("mine", f"file {project / 'flaskprod.toml'}")
    env = {"FLASKPROD_APP__NAME": "theirs"}
    assert load_spec(project, environ=env, flags=flags).app.name == "theirs"


def test_the_version_comes_from_pyproject_when_no_source_sets_it(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "shop"\nversion = "2.4.1"\n')
    spec = load_spec(tmp_path, environ={})
    assert (spec.app.name, spec.app.version, spec.origins["app.version"]) == ("shop", "2.4.1", "project")
    assert load_spec(tmp_path, environ={"FLASKPROD_APP__VERSION": "3.0.0"}).app.version == "3.0.0"


def test_a_directory_without_a_usable_name_leaves_the_fallback_name(tmp_path: Path) -> None:
    odd = tmp_path / "--"
    odd.mkdir()
    assert load_spec(odd, environ={}).app.name == "flaskapp"


def test_precedence_default_file_env_flag(tmp_path: Path) -> None:
    write(tmp_path / "flaskprod.toml", "[server]\nworkers = 3\nthreads = 2\ntimeout = 40\n")
    env = {"FLASKPROD_SERVER__THREADS": "4", "FLASKPROD_SERVER__TIMEOUT": "50"}
    spec = load_spec(tmp_path, environ=env, flags={"server.timeout": "60"})
    assert (spec.server.workers, spec.server.threads, spec.server.timeout) == (3, 4, 60)
    assert spec.server.keepalive == 5
    origins = spec.origins
    assert origins["server.workers"] == f"file {tmp_path / 'flaskprod.toml'}"
    assert (origins["server.threads"], origins["server.timeout"], origins["server.keepalive"]) == (
        "env",
        "flag",
        "default",
    )


def test_pyproject_tool_table(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n\n[tool.flaskprod.proxy]\ntrusted_hops = 1\n')
    spec = load_spec(tmp_path, environ={})
    assert spec.proxy.trusted_hops == 1


@pytest.mark.parametrize(
    "pyproject",
    [
        "[tool]\nflaskprod = { proxy = { trusted_hops = 1 } }\n",  # TOML's other spellings of the same table
        "[tool.flaskprod]\nproxy = { trusted_hops = 1 }\n",
        '[tool."flaskprod".proxy]\ntrusted_hops = 1\n',
    ],
)
def test_pyproject_tool_table_however_it_is_spelled(tmp_path: Path, pyproject: str) -> None:
    write(tmp_path / "pyproject.toml", pyproject)
    assert load_spec(tmp_path, environ={}).proxy.trusted_hops == 1


def test_a_pyproject_that_only_mentions_flaskprod_is_not_a_config(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\ndescription = """\n[tool.flaskprod] is read"""\n')
    assert find_config_file(tmp_path) is None


def test_flaskprod_toml_wins_over_pyproject(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.flaskprod.proxy]\ntrusted_hops = 1\n")
    write(tmp_path / "flaskprod.toml", "[proxy]\ntrusted_hops = 2\n")
    assert load_spec(tmp_path, environ={}).proxy.trusted_hops == 2


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "flaskprod.toml").write_bytes(b'[app]\nname = "caf\xe9"\n')
    with pytest.raises(SpecError) as refused:
        load_spec(tmp_path, environ={})
    assert str(refused.value) == (
        f"{tmp_path / 'flaskprod.toml'}: not UTF-8 (byte 17), which TOML must be; save it as UTF-8"
    )


@pytest.mark.parametrize("documented_first", [True, False])
def test_the_documented_spelling_wins_over_another(tmp_path: Path, documented_first: bool) -> None:
    """flaskprod gives its children (serve's workers, up's app servers) the documented spelling over the user's own:
    refusing the pair stopped every child of a user who wrote FLASKPROD_server__workers."""
    pair = [("FLASKPROD_SERVER__THREADS", "2"), ("FLASKPROD_server__threads", "4")]
    environ = dict(pair if documented_first else pair[::-1])
    assert load_spec(tmp_path, environ=environ).server.threads == 2


def test_explicit_config_path_from_env(tmp_path: Path) -> None:
    path = write(tmp_path / "other.toml", '[logging]\nlevel = "debug"\n')
    spec = load_spec(tmp_path / "elsewhere", environ={"FLASKPROD_CONFIG": str(path)})
    assert spec.logging.level == "DEBUG"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("auto", "auto"), ("4", 4), (4, 4)],
)
def test_auto_or_int(tmp_path: Path, raw: object, expected: object) -> None:
    assert load_spec(tmp_path, environ={}, flags={"server.workers": raw}).server.workers == expected


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("0", False), ("off", False), ("auto", "auto")])
def test_bool_or_auto_from_strings(tmp_path: Path, raw: str, expected: object) -> None:
    spec = load_spec(tmp_path, environ={"FLASKPROD_LOGGING__ACCESS_LOG": raw})
    assert spec.logging.access_log == expected


@pytest.mark.parametrize("raw", ["none", "", "unset", "UNSET", " Unset "])
def test_optional_value_can_be_unset_from_env(tmp_path: Path, raw: str) -> None:
    # "unset" is how errors and `flaskprod config` name the value, so it is one a user types.
    write(tmp_path / "flaskprod.toml", "[server]\nworker_cap = 3\n[proxy]\nrate_limit = \"5r/s\"\n")
    env = {"FLASKPROD_SERVER__WORKER_CAP": raw, "FLASKPROD_PROXY__RATE_LIMIT": raw}
    spec = load_spec(tmp_path, environ=env, flags={"monitoring.metrics_allow": raw})
    assert (spec.server.worker_cap, spec.proxy.rate_limit, spec.monitoring.metrics_allow) == (None, None, None)


def test_unset_is_no_value_for_a_setting_that_needs_one(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path, environ={"FLASKPROD_SERVER__THREADS": "unset"})
    assert str(info.value) == (
        "env FLASKPROD_SERVER__THREADS: invalid value 'unset' for server.threads: expected integer"
    )


@pytest.mark.parametrize(
    ("kwargs", "files", "message"),
    [
        (
            {"flags": {"server.workerz": 2}},
            {},
            "flag --set server.workerz: unknown setting 'server.workerz'; did you mean server.workers?",
        ),
        ({"flags": {"workers": 2}}, {}, "unknown setting 'workers'; did you mean server.workers?"),
        # Within a known section the name alone is compared: "server." made any name look like server.kind.
        (
            {"flags": {"server.nope": 1}},
            {},
            "flag --set server.nope: unknown setting 'server.nope'; see `flaskprod config` for every setting",
        ),
        ({"flags": {"proxy.workers": 2}}, {}, "unknown setting 'proxy.workers'; did you mean server.workers?"),
        (
            {"environ": {"FLASKPROD_SERVR__WORKERS": "2"}},
            {},
            "env FLASKPROD_SERVR__WORKERS: unknown setting 'servr.workers'; did you mean server.workers?",
        ),
        (
            {"environ": {"FLASKPROD_WORKERS": "2"}},
            {},
            "environment variable FLASKPROD_WORKERS: expected FLASKPROD_SECTION__NAME",
        ),
        (
            {"flags": {"server.workers": "many"}},
            {},
            "flag --workers: invalid value 'many' for server.workers: expected integer | \"auto\"",
        ),
        (
            {"flags": {"server.workers": "0"}},
            {},
            "invalid value '0' for server.workers: expected integer | \"auto\" >= 1",
        ),
        (
            {"flags": {"server.kind": "nginx"}},
            {},
            'invalid value \'nginx\' for server.kind: expected "auto" | "gunicorn" | "uwsgi"',
        ),
        (
            {"environ": {"FLASKPROD_PROXY__GZIP": "maybe"}},
            {},
            "env FLASKPROD_PROXY__GZIP: invalid value 'maybe' for proxy.gzip: expected boolean",
        ),
        # Named as spelled: the section and name are read in any case.
        (
            {"environ": {"FLASKPROD_proxy__gzip": "maybe"}},
            {},
            "env FLASKPROD_proxy__gzip: invalid value 'maybe' for proxy.gzip: expected boolean",
        ),
        (
            {"environ": {"FLASKPROD_Server__Threads": "2", "FLASKPROD_server__threads": "4"}},
            {},
            "environment variables FLASKPROD_Server__Threads and FLASKPROD_server__threads both set server.threads: "
            "unset one of them",
        ),
        ({"flags": {"proxy.max_body_size": "ten megs"}}, {}, "expected a size such as 10M, 512k or 1048576"),
        ({"flags": {"proxy.rate_limit": "fast"}}, {}, "expected a rate above 0 such as 10r/s or 300r/m"),
        ({"flags": {"proxy.rate_limit": "0r/s"}}, {}, "expected a rate above 0 such as 10r/s or 300r/m"),
        ({}, {"flaskprod.toml": "[server]\nworkers = true\n"}, "invalid value true for server.workers"),
        ({}, {"flaskprod.toml": "[server\n"}, "flaskprod.toml: not valid TOML"),
        (
            {},
            {"flaskprod.toml": "workers = 3\n"},
            "'workers' is outside any section: put it under [server] (the setting server.workers)",
        ),
        (
            {},
            {"flaskprod.toml": "[proxy]\ntrusted_hop = 1\n"},
            "unknown setting 'proxy.trusted_hop'; did you mean proxy.trusted_hops?",
        ),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, kwargs: dict, files: dict, message: str) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    kwargs.setdefault("environ", {})
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path, **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def refusal(tmp_path: Path, key: str, raw: object) -> str:
    """The message `--set key=raw` (or the setting's own flag) stops with."""
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path, environ={}, flags={key: raw})
    message = str(info.value)
    assert "\n" not in message
    return message


FLOAT_SETTINGS = [key for key, info in SETTINGS.items() if info.type is float]


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
@pytest.mark.parametrize("key", FLOAT_SETTINGS)
def test_every_number_setting_refuses_what_is_not_finite(tmp_path: Path, key: str, raw: str) -> None:
    # nan passed the minimum (every comparison with it is false) and reached compose.yaml as `cpus: nan`.
    minimum = SETTINGS[key].minimum
    env = SETTINGS[key].env
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path, environ={env: raw})
    assert str(info.value) == f"env {env}: invalid value {raw!r} for {key}: expected a finite number >= {minimum:g}"


def test_a_config_file_cannot_give_toml_nan_or_inf(tmp_path: Path) -> None:
    path = write(tmp_path / "flaskprod.toml", "[deploy]\ncpus = inf\n")
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path, environ={})
    assert str(info.value) == f"file {path}: invalid value inf for deploy.cpus: expected a finite number >= 0.1"


SERVER_NAMES = (
    "expected host names separated by spaces, such as example.com www.example.com, *.example.com, .example.com, "
    "127.0.0.1 or [::1]"
)
SERVER_NAME_REGEX = "expected a ~regex without ;{}\"' (nginx.conf holds it unquoted), or names such as example.com"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("example.com;evil", SERVER_NAMES),  # ends the directive: what follows would be one of its own
        ("example.com { return 200; }", SERVER_NAMES),
        ("example.com}", SERVER_NAMES),
        ('"example.com"', SERVER_NAMES),
        ("'example.com'", SERVER_NAMES),
        ("", SERVER_NAMES),
        ("   ", SERVER_NAMES),
        ("example.com:8080", SERVER_NAMES),  # nginx matches the name without the port
        ("*", SERVER_NAMES),
        ("www.*.example.com", SERVER_NAMES),
        ("-.example.com", SERVER_NAMES),
        ("[10.0.0.1]", SERVER_NAMES),
        ("~", SERVER_NAME_REGEX),
        ("example.com _", "expected the names this site answers to, such as example.com: _ is the catch-all "
         "flaskprod's nginx keeps for closing requests to other names"),
        ("~^www\\d{1,3}\\.example\\.com$", SERVER_NAME_REGEX),
        ("example.com ~^a;b", SERVER_NAME_REGEX),
    ],
)
def test_server_name_refuses_what_nginx_would_not_read_as_names(tmp_path: Path, raw: str, expected: str) -> None:
    assert refusal(tmp_path, "proxy.server_name", raw) == (
        f"flag --set proxy.server_name: invalid value {raw!r} for proxy.server_name: {expected}"
    )


@pytest.mark.parametrize(
    "raw",
    [
        "localhost",
        "example.com www.example.com",
        "*.example.com .example.org www.example.*",
        "127.0.0.1 [::1] my_service",
        "~^api\\. *.shop.io",  # a regex: the Kubernetes target skips it for the probe and the Ingress
        "\texample.com  \n",
    ],
)
def test_server_name_takes_the_forms_nginx_reads(tmp_path: Path, raw: str) -> None:
    assert load_spec(tmp_path, environ={}, flags={"proxy.server_name": raw}).proxy.server_name == raw


@pytest.mark.parametrize(
    ("key", "bad", "good"),
    [
        # Each bad value went into nginx.conf (`listen :80`, `listen a;b:80`, a broken map) or onto every response
        # (a 500 for each), or was read as the current folder; `check` said "no issues" and `build` exited 0.
        ("proxy.host", ["", "a;b", "[::1]", "local host"], ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost"]),
        # 0 passed nginx -t, then every connection was reset: a SIGHUP with it took the site down.
        ("proxy.client_header_buffer_size", ["0", "512"], ["1k", "4k"]),
        ("monitoring.prometheus_host", ["", "a;b"], ["127.0.0.1", "::1", "prometheus"]),
        ("proxy.run_dir", ["", "  ", "run\ndir"], [".flaskprod/run", "/srv/run dir"]),
        ("database.local_dir", [""], [".flaskprod/postgres"]),
        ("tls.acme_dir", [" "], [".flaskprod/acme"]),
        ("logging.request_id_header", ["X Req", "X;Y", "X_Req", "-X", ""], ["X-Request-ID", "X-Correlation-ID"]),
        ("security.referrer_policy", ["a\nX-Evil: 1", "nope", ""], ["no-referrer", "no-referrer, strict-origin"]),
        ("security.content_security_policy", ["a\nX-Evil: 1", "default-src \u00e9"], ["default-src 'self'"]),
        ("database.url_env", ["DB URL", "1DB", ""], ["DATABASE_URL", "shop_db"]),
        ("database.password_file_env", ["A-B"], ["DATABASE_PASSWORD_FILE"]),
        ("tls.email", ["ops", "ops @example.com", "ops@example"], ["ops@example.com"]),
        ("tls.acme_server", ["acme.example.com/dir", "https://a b"], ["https://127.0.0.1:14000/dir"]),
    ],
)
def test_values_written_into_nginx_conf_headers_or_paths_are_checked_as_settings_are_read(
    tmp_path: Path, key: str, bad: list[str], good: list[str]
) -> None:
    for raw in bad:
        said = refusal(tmp_path, key, raw)
        assert re.match(rf"flag --[a-z-]+( {key})?: invalid value {re.escape(repr(raw))} for {key}: expected ", said)
    for raw in good:
        assert load_spec(tmp_path, environ={}, flags={key: raw}).get(key) == raw


def test_a_long_bad_value_is_shown_by_its_start_and_length(tmp_path: Path) -> None:
    """A 6,000-character value was repeated whole."""
    said = refusal(tmp_path, "proxy.host", "a;" * 3000)
    assert said.startswith(f"flag --host: invalid value {'a;' * 100!r}... (6,000 characters) for proxy.host: ")


STATIC_URL = (
    "expected a URL path such as /static or /assets/ (not / alone: that is the app's), without spaces or ;{}\"'"
)


@pytest.mark.parametrize(
    "raw", ["/", "//", "", "static", "static/", "/static files", "/static;", "/static{", "/st}", '/"s"', "/'s'", "//s"]
)
def test_static_url_refuses_what_is_no_location_of_its_own(tmp_path: Path, raw: str) -> None:
    assert refusal(tmp_path, "proxy.static_url", raw) == (
        f"flag --set proxy.static_url: invalid value {raw!r} for proxy.static_url: {STATIC_URL}"
    )


@pytest.mark.parametrize("raw", ["/static", "/assets/", "/static/v2", "/_static-files.1"])
def test_static_url_is_kept_as_given(tmp_path: Path, raw: str) -> None:
    # nginx.conf writes it with one trailing slash either way, so the value itself is not rewritten.
    assert load_spec(tmp_path, environ={}, flags={"proxy.static_url": raw}).proxy.static_url == raw


@pytest.mark.parametrize(("key", "example"), [("monitoring.health_path", "/healthz"),
                                              ("monitoring.ready_path", "/readyz"),
                                              ("monitoring.metrics_path", "/metrics")])
@pytest.mark.parametrize("raw", ["healthz", "", "/", "/health z", "/live;", "//live"])
def test_probe_and_metrics_paths_are_url_paths(tmp_path: Path, key: str, example: str, raw: str) -> None:
    # Without its slash the health check asked http://127.0.0.1:8080healthz, and a Kubernetes probe path: readyz.
    assert refusal(tmp_path, key, raw) == (
        f"flag --set {key}: invalid value {raw!r} for {key}: expected a URL path beginning with /, such as "
        f"{example}, without spaces or ;{{}}\"'"
    )
    assert getattr(load_spec(tmp_path, environ={}, flags={key: "/-/probe"}).monitoring, key.split(".")[1]) == "/-/probe"


@pytest.mark.parametrize(
    ("moved", "value", "kept", "default"),
    [
        ("monitoring.health_path", "/readyz", "monitoring.ready_path", "/healthz"),
        ("monitoring.ready_path", "/healthz", "monitoring.health_path", "/readyz"),
        ("monitoring.metrics_path", "/healthz", "monitoring.health_path", "/metrics"),
        ("monitoring.ready_path", "/metrics", "monitoring.metrics_path", "/readyz"),
    ],
)
def test_two_endpoints_on_one_path_are_refused(
    tmp_path: Path, moved: str, value: str, kept: str, default: str
) -> None:
    # The app kept one of them there: liveness answered by the readiness checks restarted every replica whose
    # database was down, and the health path the checks asked was gone.
    assert refusal(tmp_path, moved, value) == (
        f"flag --set {moved}: {moved} {value} is {kept} too: each endpoint needs a path of its own, or the app "
        f"answers only one of them there; set {moved} to another path, such as {default}"
    )
    (tmp_path / "flaskprod.toml").write_text(f'[monitoring]\n{moved.split(".")[1]} = "{value}"\n')
    with pytest.raises(SpecError, match=f"^file {tmp_path / 'flaskprod.toml'}: {moved} {value} is {kept} too"):
        load_spec(tmp_path, environ={})


def test_a_path_of_an_endpoint_that_is_off_may_be_another_s(tmp_path: Path) -> None:
    spec = load_spec(tmp_path, environ={}, flags={"monitoring.metrics": "false", "monitoring.metrics_path": "/healthz"})
    assert spec.monitoring.metrics_path == spec.monitoring.health_path
    both = {"monitoring.health": "false", "monitoring.ready_path": "/metrics", "monitoring.health_path": "/metrics"}
    assert load_spec(tmp_path, environ={}, flags=both).monitoring.ready_path == "/metrics"


NAMESPACE = (
    "expected a Kubernetes namespace such as shop-prod: at most 63 lowercase letters, digits and -, beginning and "
    "ending with a letter or digit"
)


@pytest.mark.parametrize("raw", ["Bad_NS", "Shop", "shop.prod", "-shop", "shop-", "a" * 64, "shop prod"])
def test_namespace_is_one_kubernetes_takes(tmp_path: Path, raw: str) -> None:
    # Written into kustomization.yaml and every object, where kubectl refused it at apply time.
    assert refusal(tmp_path, "deploy.namespace", raw) == (
        f"flag --set deploy.namespace: invalid value {raw!r} for deploy.namespace: {NAMESPACE}"
    )


@pytest.mark.parametrize("raw", ["shop", "shop-prod-2", "a" * 63, "0"])
def test_namespace_takes_rfc_1123_labels(tmp_path: Path, raw: str) -> None:
    assert load_spec(tmp_path, environ={}, flags={"deploy.namespace": raw}).deploy.namespace == raw


METRICS_ALLOW = (
    "expected all, or addresses or CIDR ranges separated by spaces, such as 127.0.0.1 ::1 10.0.0.0/8; unset = anyone"
)


@pytest.mark.parametrize(
    "raw",
    [
        "nothing",
        "127.0.0.1,::1",  # one word to nginx's allow
        "127.0.0.1;",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/255.0.0.0",  # Python reads a netmask, nginx does not
        "10.0.0.0/",
        "fe80::1%eth0",
        "all 127.0.0.1",
        "ALL",
    ],
)
def test_metrics_allow_refuses_what_nginx_allow_would_not_take(tmp_path: Path, raw: str) -> None:
    assert refusal(tmp_path, "monitoring.metrics_allow", raw) == (
        f"flag --set monitoring.metrics_allow: invalid value {raw!r} for monitoring.metrics_allow: {METRICS_ALLOW}"
    )


@pytest.mark.parametrize("raw", ["all", "127.0.0.1 ::1", "10.0.0.0/8 fc00::/7 192.168.1.7/32", " 10.1.2.3 "])
def test_metrics_allow_takes_all_or_addresses(tmp_path: Path, raw: str) -> None:
    assert load_spec(tmp_path, environ={}, flags={"monitoring.metrics_allow": raw}).monitoring.metrics_allow == raw


BIND = "expected host:port such as 127.0.0.1:8000 or [::1]:8000 (port 1 to 65535), or unix:/absolute/path.sock"


@pytest.mark.parametrize(
    "raw",
    [
        "nonsense",
        "127.0.0.1",
        "8000",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:80x",
        "::1:8000",  # an IPv6 address needs its brackets
        "[127.0.0.1]:8000",
        "[::1]",
        "my host:8000",
        "unix:app.sock",
        "unix:",
        "unix:/run/",
        "unix:/run/my;app.sock",
        "unix:/run/my\napp.sock",
    ],
)
def test_bind_refuses_what_no_server_can_listen_on(tmp_path: Path, raw: str) -> None:
    assert refusal(tmp_path, "server.bind", raw) == f"flag --bind: invalid value {raw!r} for server.bind: {BIND}"


@pytest.mark.parametrize(
    "raw",
    [
        "127.0.0.1:8000", "0.0.0.0:80", "localhost:65535", "app_server:8000", "[::1]:8000", ":8000", "unix:/run/a.sock",
        "unix:/run/my app.sock",  # nginx.conf quotes it
    ],
)
def test_bind_takes_addresses_and_unix_sockets(tmp_path: Path, raw: str) -> None:
    assert load_spec(tmp_path, environ={}, flags={"server.bind": raw}).server.bind == raw


IMAGE = (
    "expected auto, or an image name such as shop:1.2.3 or registry.example.com:5000/team/shop:1.2.3 "
    "(a lowercase repository path, an optional :tag)"
)
IMAGE_DIGEST = (
    "expected a :tag, not an @digest: the deployment files build and tag this image and name its -nginx image "
    "after it, e.g. registry.example.com/shop:1.2.3"
)
DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Shop:1.0", IMAGE),
        ("registry.example.com/Team/shop", IMAGE),
        ("", IMAGE),
        ("shop:", IMAGE),
        ("shop:-rc1", IMAGE),
        ("shop:1.0 ", IMAGE),
        ("-shop", IMAGE),
        ("shop/", IMAGE),
        ("shop:1.0:2", IMAGE),
        ("shop:" + "1" * 129, IMAGE),
        (f"shop@{DIGEST}", IMAGE_DIGEST),  # its -nginx image came out as shop@sha256-nginx:000...
        (f"registry.example.com/shop:1.2@{DIGEST}", IMAGE_DIGEST),
    ],
)
def test_image_refuses_what_docker_build_cannot_tag(tmp_path: Path, raw: str, expected: str) -> None:
    assert refusal(tmp_path, "deploy.image", raw) == (
        f"flag --set deploy.image: invalid value {raw!r} for deploy.image: {expected}"
    )


@pytest.mark.parametrize(
    "raw",
    ["auto", "shop", "shop:1.2.3", "registry.example.com:5000/team/shop:1.2.3", "localhost:5000/shop",
     "ghcr.io/org/my-app__x.y:v1.2-rc.1_B"],
)  # fmt: skip
def test_image_takes_docker_references(tmp_path: Path, raw: str) -> None:
    assert load_spec(tmp_path, environ={}, flags={"deploy.image": raw}).deploy.image == raw


@pytest.mark.parametrize("key", ["deploy.memory", "deploy.postgres_memory"])
@pytest.mark.parametrize("raw", ["1k", "63M", "67108863", "0"])
def test_memory_limits_have_a_floor(tmp_path: Path, key: str, raw: str) -> None:
    assert refusal(tmp_path, key, raw) == (
        f"flag --set {key}: invalid value {raw!r} for {key}: expected a size of at least 64M, such as 512M or 1G"
    )
    assert load_spec(tmp_path, environ={}, flags={key: "64M"}).get(key) == "64M"


def test_missing_config_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.toml: config file not found"):
        load_spec(tmp_path, config=tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize(
    ("text", "size"), [("10M", 10 * 1024**2), ("512k", 512 * 1024), ("1048576", 1048576), ("1g", 1024**3)]
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_replace_keeps_other_values() -> None:
    spec = Spec().replace(**{"proxy.trusted_hops": 1, "server.threads": 4})
    assert (spec.proxy.trusted_hops, spec.server.threads, spec.server.timeout) == (1, 4, 30)


def test_settings_reference_is_current() -> None:
    page = (ROOT / "docs" / "settings.md").read_text()
    assert page == settings_reference(), "docs/settings.md is stale: run `make docs`"
    for key in SETTINGS:
        assert f"`{key.split('.', 1)[1]}`" in page


run_cli = run_flaskprod


def test_config_command_shows_values_and_sources(tmp_path: Path) -> None:
    write(tmp_path / "flaskprod.toml", "[server]\nthreads = 2\n")
    result = run_cli(
        "config", "--format", "json", "--workers", "3", cwd=tmp_path, env={"FLASKPROD_SERVER__TIMEOUT": "45"}
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows["server.workers"] == {"value": 3, "source": "flag", "env": "FLASKPROD_SERVER__WORKERS"}
    assert rows["server.timeout"]["value"] == 45 and rows["server.timeout"]["source"] == "env"
    assert rows["server.threads"]["source"].startswith("file ")
    assert rows["proxy.gzip"] == {"value": True, "source": "default", "env": "FLASKPROD_PROXY__GZIP"}
    text = run_cli("config", "--set", "proxy.trusted_hops=1", cwd=tmp_path)
    line = next(row for row in text.stdout.splitlines() if row.startswith("proxy.trusted_hops"))
    assert line.split() == ["proxy.trusted_hops", "1", "flag"]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--workers", "lots"], {}, "Error: flag --workers: invalid value 'lots' for server.workers"),
        (["--set", "threads"], {}, "Error: --set 'threads': expected KEY=VALUE"),
        ([], {"FLASKPROD_SERVER__THREDS": "2"}, "did you mean server.threads?"),
        (["--config", "missing.toml"], {}, "missing.toml: config file not found"),
        # Values each accepted once and then broke the files or servers made from them.
        ([], {"FLASKPROD_DEPLOY__CPUS": "nan"}, "Error: env FLASKPROD_DEPLOY__CPUS: invalid value 'nan' for deploy"),
        (["--set", "proxy.server_name=a;b"], {}, "Error: flag --set proxy.server_name: invalid value 'a;b' for proxy"),
        (["--bind", "nonsense"], {}, "Error: flag --bind: invalid value 'nonsense' for server.bind: expected host"),
        # --set is named as the user wrote it, and checked even when a named flag sets the same setting.
        (["--set", "server.workers="], {}, "Error: flag --set server.workers: invalid value '' for server.workers"),
        (["--set", "server.workers=x", "--workers", "4"], {}, "Error: flag --set server.workers: invalid value 'x'"),
    ],
)
def test_config_command_bad_input(tmp_path: Path, args: list[str], env: dict[str, str], message: str) -> None:
    result = run_cli("config", *args, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_flask_prod_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "flask"), "prod", "config", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["server.kind"]["value"] == "auto"
