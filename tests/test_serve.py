"""`flaskprod serve`: the printed settings, a real Gunicorn and uWSGI, and each user mistake as one line."""

from __future__ import annotations

import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from flaskprod.discovery import NOT_FOUND_FIX
from flaskprod.errors import ServerError
from flaskprod.servers.uwsgi import find_uwsgi, render_ini
from flaskprod.sizing import KILL_MARGIN
from tests.support import BIN, ROOT, free_port, readable, running, wait_for

FLASKPROD = str(BIN / "flaskprod")
SERVERS = ["gunicorn", "uwsgi"]


def clean_env(**extra: str) -> dict[str, str]:
    """No FLASK_/FLASKPROD_ settings from the developer's shell, and a strong random secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK", "PROMETHEUS_MULTIPROC_DIR", "GUNICORN"))}
    env["FLASK_SECRET_KEY"] = secrets.token_hex(32)
    env.update(extra)
    return env


def flaskprod(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLASKPROD, *args], env=env or clean_env(), cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def print_config(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> dict[str, Any]:
    result = flaskprod("serve", *args, "--print-config", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    settings: dict[str, Any] = json.loads(result.stdout)
    return settings


@dataclass
class Served:
    """A running `flaskprod serve` and where its output goes."""

    proc: subprocess.Popen[str]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, timeout: float = 10) -> requests.Response:
        return requests.get(self.url(path), timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serving(tmp_path: Path, server: str, *args: str, app: str = "tests.apps.basic:app",
            env: dict[str, str] | None = None) -> Iterator[Served]:
    """`flaskprod serve APP --server S --bind 127.0.0.1:PORT ARGS`, up and answering, stopped at the end."""
    port = free_port()
    log = tmp_path / f"serve-{server}-{port}.log"
    command = [FLASKPROD, "serve", app, "--server", server, "--bind", f"127.0.0.1:{port}", *args]
    # A file, not a pipe: a full pipe would block the server once it has logged 64 KiB.
    with log.open("w") as out, running(command, env=env or clean_env(), cwd=ROOT, stdout=out, stderr=out) as proc:
        served = Served(proc=proc, port=port, log=log)

        def up() -> bool:
            assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{served.output()}"
            return served.get("/healthz", timeout=2).status_code == 200

        wait_for(up, timeout=30, what=f"{server} to answer /healthz")
        yield served


# --- --print-config ---------------------------------------------------------------------------------------


def test_print_config_follows_flags() -> None:
    settings = print_config("tests.apps.factory:create_app()", "--workers", "3", "--threads", "4",
                            "--timeout", "20", "--bind", "127.0.0.1:9999", "--server", "uwsgi")
    assert settings["app"] == "tests.apps.factory:create_app()"
    assert settings["pythonpath"] == str(ROOT)
    assert settings["server"] == "uwsgi"
    assert settings["bind"] == "127.0.0.1:9999"
    assert (settings["workers"], settings["threads"], settings["worker_class"]) == (3, 4, "gthread")
    # The app answers 504 at the request deadline; the server's hard timeout comes KILL_MARGIN later.
    assert (settings["request_timeout"], settings["timeout"]) == (20, 20 + KILL_MARGIN)
    assert settings["accesslog"] is None and settings["errorlog"] == "-"


def test_print_config_env_under_flags() -> None:
    env = clean_env(FLASKPROD_SERVER__GRACEFUL_TIMEOUT="7", FLASKPROD_SERVER__WORKERS="5",
                    FLASKPROD_SERVER__MAX_REQUESTS="0")
    settings = print_config("tests.apps.factory", "--workers", "2", env=env)
    assert settings["graceful_timeout"] == 7
    assert settings["workers"] == 2  # the flag wins over the environment
    assert (settings["max_requests"], settings["max_requests_jitter"]) == (0, 0)
    assert (settings["threads"], settings["worker_class"]) == (12, "gthread")  # the default


def test_print_config_auto_workers_measure_the_app() -> None:
    settings = print_config("tests.apps.factory")
    assert settings["worker_memory_mb"] > 5
    assert 1 <= settings["workers"] <= max(2, int(settings["cpus"]))  # threaded workers: CPUs, at least 2


def test_print_config_finds_wsgi_py(tmp_path: Path) -> None:
    (tmp_path / "wsgi.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    settings = print_config(cwd=tmp_path)
    assert (settings["app"], settings["pythonpath"]) == ("wsgi", str(tmp_path.resolve()))


def test_uwsgi_ini_from_the_same_settings() -> None:
    settings = print_config("tests.apps.factory", "--workers", "4", "--threads", "2", "--timeout", "25")
    ini = render_ini(settings, listen_max=1024)
    lines = set(ini.splitlines())
    expected = {"master = true", "processes = 4", "threads = 2", "listen = 1024",
                "http-socket = 127.0.0.1:8000", "worker-reload-mercy = 30", "max-requests = 10000",
                "max-requests-delta = 1250", "lazy-apps = false", "need-app = true", "disable-logging = true",
                "hook-master-start = unix_signal:15 gracefully_kill_them_all",
                "env = FLASKPROD_APP__TARGET=tests.apps.factory"}
    assert expected <= lines, ini
    # The hard kill is for single-threaded workers: harakiri would take a threaded worker's every request.
    assert not [line for line in lines if line.startswith("harakiri")], ini
    single = render_ini({**settings, "threads": 1}, listen_max=1024)
    assert f"harakiri = {25 + KILL_MARGIN}" in single.splitlines(), single
    behind_nginx = render_ini({**settings, "bind": "unix:/run/app.sock"}, protocol="uwsgi")
    assert "socket = /run/app.sock" in behind_nginx.splitlines()


def test_uwsgi_recycles_by_memory_by_default_and_the_supervisor_not_uwsgi_checks_it() -> None:
    settings = print_config("tests.apps.factory", "--server", "uwsgi")
    lines = render_ini(settings).splitlines()
    assert settings["max_requests"] == 0 and not [line for line in lines if line.startswith("max-requests")]
    # The bound is the supervisor's (servers/memorybound.py): reload-on-rss would read /proc after every request.
    assert settings["recycle_memory_mb"] >= 512 and not [line for line in lines if line.startswith("reload-on")]
    told = print_config("tests.apps.factory", "--server", "uwsgi", "--set", "server.max_requests=3000",
                        "--set", "server.recycle_memory_mb=0")
    assert "max-requests = 3000" in render_ini(told).splitlines() and told["recycle_memory_mb"] == 0


def test_uwsgi_ini_tells_its_entry_whether_to_pin_workers() -> None:
    off = print_config("tests.apps.factory", "--server", "uwsgi", "--set", "server.cpu_affinity=false")
    assert "env = FLASKPROD_SERVER__CPU_AFFINITY=false" in render_ini(off).splitlines()
    on = print_config("tests.apps.factory", "--server", "uwsgi", "--set", "server.cpu_affinity=true")
    assert on["cpu_affinity"] is True
    assert "env = FLASKPROD_SERVER__CPU_AFFINITY=true" in render_ini(on).splitlines()


def test_uwsgi_ini_tells_its_entry_whether_to_freeze_the_loaded_app() -> None:
    default = print_config("tests.apps.factory", "--server", "uwsgi")
    assert default["gc_freeze"] is True
    assert "env = FLASKPROD_SERVER__GC_FREEZE=true" in render_ini(default).splitlines()
    off = print_config("tests.apps.factory", "--server", "uwsgi", "--set", "server.gc_freeze=false")
    assert "env = FLASKPROD_SERVER__GC_FREEZE=false" in render_ini(off).splitlines()


def test_uwsgi_accept_lock_is_off_unless_asked_for() -> None:
    settings = print_config("tests.apps.factory", "--server", "uwsgi")
    assert settings["accept_lock"] is False
    assert not [line for line in render_ini(settings).splitlines() if line.startswith("thunder-lock")]
    locked = print_config("tests.apps.factory", "--server", "uwsgi", "--set", "server.accept_lock=true")
    assert "thunder-lock = true" in render_ini(locked).splitlines()


def test_uwsgi_protocol_behind_nginx() -> None:
    env = clean_env(FLASKPROD_SERVER__PROTOCOL="uwsgi")
    settings = print_config("tests.apps.factory", "--server", "uwsgi", env=env)
    assert settings["protocol"] == "uwsgi"
    assert "socket = 127.0.0.1:8000" in render_ini(settings).splitlines()
    result = flaskprod("serve", "tests.apps.factory", "--server", "gunicorn", env=env)
    _assert_one_line_error(result, "server.protocol 'uwsgi' needs --server uwsgi")


def test_uwsgi_unix_socket_is_group_writable_for_nginx() -> None:
    settings = print_config("tests.apps.factory", "--server", "uwsgi", "--bind", "unix:/run/app/app.sock")
    lines = render_ini(settings).splitlines()
    assert "socket = /run/app/app.sock" in lines or "http-socket = /run/app/app.sock" in lines
    assert "chmod-socket = 660" in lines
    tcp = print_config("tests.apps.factory", "--server", "uwsgi", "--bind", "127.0.0.1:8000")
    assert not any(line.startswith("chmod-socket") for line in render_ini(tcp).splitlines())


# --- real servers -------------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("server", SERVERS)
def test_serves_the_app(tmp_path: Path, server: str) -> None:
    with serving(tmp_path, server, "--workers", "2") as served:
        response = served.get("/")
        assert (response.status_code, response.text) == (200, "hello from basic")
        assert served.get("/readyz").status_code == 200


@pytest.mark.integration
@pytest.mark.parametrize("server", SERVERS)
def test_the_scheme_is_the_connections_unless_a_trusted_proxy_names_it(tmp_path: Path, server: str) -> None:
    """Only the app reads X-Forwarded-Proto, from proxy.trusted_hops proxies: HSTS goes on HTTPS answers alone."""

    def hsts(served: Served, headers: dict[str, str]) -> bool:
        response = requests.get(served.url("/"), headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return "Strict-Transport-Security" in response.headers

    # No proxy trusted: a client's header claims nothing, whichever of the two the servers used to read.
    with serving(tmp_path, server, "--workers", "1") as served:
        assert not hsts(served, {"X-Forwarded-Proto": "https"})
        assert not hsts(served, {"X-Forwarded-Ssl": "on"})
    with serving(tmp_path, server, "--workers", "1", "--set", "proxy.trusted_hops=1") as served:
        assert hsts(served, {"X-Forwarded-Proto": "https"})
        # What nginx passes on plain HTTP when the client sent X-Forwarded-Ssl itself: not a 400.
        assert not hsts(served, {"X-Forwarded-Proto": "http", "X-Forwarded-Ssl": "on"})


@pytest.mark.integration
@pytest.mark.parametrize("server", SERVERS)
def test_a_client_reusing_its_connection_gets_every_answer(tmp_path: Path, server: str) -> None:
    """HTTP/1.1 keeps a connection open unless the answer says Connection: close; the client then opens another."""
    with serving(tmp_path, server, "--workers", "1") as served:
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
        try:
            for _ in range(3):
                connection.request("GET", "/")
                response = connection.getresponse()
                assert (response.status, response.read()) == (200, b"hello from basic")
        finally:
            connection.close()
    if server == "uwsgi":
        assert print_config("tests.apps.factory", "--server", "uwsgi")["keepalive"] == 0  # as it runs


def test_print_config_says_uwsgi_loads_the_app_in_its_master() -> None:
    """lazy-apps is off: what the workers share (connections the app opened as it loaded) depends on it."""
    settings = print_config("tests.apps.factory", "--server", "uwsgi")
    assert settings["preload"] is True and "lazy-apps = false" in render_ini(settings).splitlines()
    assert print_config("tests.apps.factory", "--server", "gunicorn")["preload"] is False


@pytest.mark.integration
def test_drain_file_named_by_a_supervisor(tmp_path: Path) -> None:
    """Under `flaskprod up` the parent names the drain file; creating it turns every worker's readiness to 503."""
    drain = tmp_path / "draining"
    with serving(tmp_path, "gunicorn", "--workers", "2", env=clean_env(FLASKPROD_DRAIN_FILE=str(drain))) as served:
        assert served.get("/readyz").status_code == 200
        drain.touch()
        assert {served.get("/readyz").status_code for _ in range(6)} == {503}
        assert served.get("/").status_code == 200


# --- mistakes: one line on stderr, exit 2 ---------------------------------------------------------------------


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = readable(result.stderr).strip().splitlines()  # serve's refusal is a JSON record on a pipe
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nosuchmod"], ["Error: could not import 'nosuchmod': No module named 'nosuchmod'" + NOT_FOUND_FIX]),
        (
            ["tests.apps.basic:nope"],
            ["module 'tests.apps.basic' has no attribute 'nope'", "it holds 'tests.apps.basic:app'"],
        ),
        (["tests.apps.basic", "--server", "nginx"], ["--server", "nginx", "gunicorn"]),
        (["tests.apps.refuses"], ["refused to start", "SECRET_KEY is missing"]),
        (["tests.apps.late_config:create_app()"], ["refused to start", "the app set it after Production(app)"]),
        (["tests.apps.broken_import"], ["No module named 'flaskprod_no_such_dependency'"]),
    ],
    ids=["import-error", "attribute-missing", "unknown-server", "refuses-to-start", "late-key", "missing-dependency"],
)
def test_bad_input_is_one_line(args: list[str], expected: list[str]) -> None:
    _assert_one_line_error(flaskprod("serve", *args, "--bind", f"127.0.0.1:{free_port()}"), *expected)


def test_no_app_found_is_one_line(tmp_path: Path) -> None:
    result = flaskprod("serve", cwd=tmp_path)
    _assert_one_line_error(result, f"no Flask app found: tried FLASK_APP, wsgi.py, app.py in {tmp_path}")


def test_weak_secret_key_is_refused() -> None:
    result = flaskprod("serve", "tests.apps.weak_secret", env=clean_env(FLASK_SECRET_KEY="hard-to-guess-string"))
    _assert_one_line_error(result, "SECRET_KEY")


def test_a_key_in_dot_env_that_flaskprod_does_not_load_is_named(tmp_path: Path) -> None:
    # flask run loads .env, so a developer's key is often there; the refusal said only "set FLASK_SECRET_KEY".
    (tmp_path / "app.py").write_text("from flask import Flask\n\nfrom flaskprod import Production\n\n"
                                     "app = Flask(__name__)\nProduction(app)\n")
    (tmp_path / ".env").write_text(f"FLASK_APP=app:app\nFLASK_SECRET_KEY={secrets.token_hex(32)}\n")
    env = {k: v for k, v in clean_env().items() if k != "FLASK_SECRET_KEY"}
    assert refused("serve", cwd=tmp_path, env=env) == (
        "Error: app 'app:app' refused to start: SECRET_KEY is missing: set FLASK_SECRET_KEY or FLASK_SECRET_KEY_FILE "
        "to a random value, e.g. python -c 'import secrets; print(secrets.token_hex(32))'; FLASK_SECRET_KEY is set "
        "in .env, which flask run loads and production servers do not: export it where flaskprod runs (the app "
        "FLASK_APP in .env names)"
    )


@pytest.mark.parametrize("server", SERVERS)
def test_port_in_use_is_one_line(server: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = flaskprod("serve", "tests.apps.factory", "--server", server, "--bind", f"127.0.0.1:{port}")
    _assert_one_line_error(
        result, f"127.0.0.1:{port} is already in use: stop what holds it or pass --bind 127.0.0.1:PORT"
    )


def test_an_address_this_machine_does_not_have_is_one_line_with_one_it_has() -> None:
    """192.0.2.1 is TEST-NET-1 (RFC 5737), no interface's here; the line was the kernel's words alone."""
    result = flaskprod("serve", "tests.apps.factory", "--bind", "192.0.2.1:8000")
    _assert_one_line_error(
        result,
        "cannot listen on 192.0.2.1:8000: Cannot assign requested address, since no interface of this machine has "
        "that address; pass one it has, such as 127.0.0.1:8000, or 0.0.0.0:8000 for every interface",
    )


def refused(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    """`flaskprod ARGS` in a session of its own, expected to refuse: its one line on stderr, once exit status 2,
    no traceback and an empty process group (nothing it started is left running) are checked."""
    with running([FLASKPROD, *args], env=env or clean_env(), cwd=cwd, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE) as proc:
        _, stderr = proc.communicate(timeout=30)
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = readable(stderr).strip().splitlines()  # serve's refusal is a JSON record on a pipe
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A directory under /tmp for unix sockets: pytest's tmp_path can be longer than a socket path may be."""
    path = Path(tempfile.mkdtemp(prefix="fp-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _unusable_socket(case: str, directory: Path, stack: ExitStack) -> tuple[Path, str]:
    """A socket path no server can listen on, made so; and serve's line for it."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    path = directory / "app.sock"
    if case == "missing-directory":
        path = directory / "gone" / "app.sock"
        problem = f"directory {directory}/gone does not exist; create it"
    elif case == "not-writable":
        path = Path("/sys/flaskprod.sock")  # sysfs refuses a new file to every user, root included
        problem = f"directory /sys is not writable by user {user}; give {user} write access"
    elif case == "a-file":
        path.write_text("the user's data\n")
        problem = f"{path} exists and is not a socket; move it away"
    elif case == "a-directory":
        path.mkdir()
        return path, f"Error: cannot listen on unix:{path}: {path} is a directory; name a socket in it: " \
            f"--bind unix:{path}/app.sock"
    elif case == "too-long":
        path = directory / f"{'a' * 100}.sock"
        return path, f"Error: cannot listen on unix:{path}: the path is {len(str(path))} bytes, over the 107 a " \
            "unix socket takes; pass --bind unix:PATH with a shorter path"
    else:
        assert case == "in-use"
        holder = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        holder.bind(str(path))
        holder.listen()
        return path, f"Error: unix:{path} is already in use: stop what holds it or pass --bind unix:PATH"
    return path, f"Error: cannot listen on unix:{path}: {problem} or pass --bind unix:PATH"


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("case", ["missing-directory", "not-writable", "a-file", "a-directory", "too-long", "in-use"])
def test_unusable_unix_socket_is_one_line_before_the_server_starts(sock_dir: Path, server: str, case: str) -> None:
    with ExitStack() as stack:
        path, line = _unusable_socket(case, sock_dir, stack)
        existed = os.path.lexists(path)
        assert refused("serve", "tests.apps.basic:app", "--server", server, "--bind", f"unix:{path}",
                       "--workers", "1") == line
    assert os.path.lexists(path) == existed  # the check leaves no socket of its own behind
    if case == "a-file":  # uWSGI used to replace it with its socket, and remove that when it stopped
        assert path.read_text() == "the user's data\n"


def _unix_get(path: Path, url: str) -> str:
    """The status line of GET url from the HTTP server on the unix socket at path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(f"GET {url} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        return sock.makefile("rb").readline().decode().strip()


@pytest.mark.integration
@pytest.mark.parametrize("server", SERVERS)
def test_a_dead_servers_socket_is_replaced_by_one_for_its_group(tmp_path: Path, sock_dir: Path, server: str) -> None:
    path = sock_dir / "app.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # closed without removing the file, as a killed server leaves it
    log = tmp_path / "serve.log"
    command = [FLASKPROD, "serve", "tests.apps.basic:app", "--server", server, "--bind", f"unix:{path}",
               "--workers", "1"]
    with log.open("w") as out, running(command, env=clean_env(), cwd=ROOT, stdout=out, stderr=out) as proc:

        def answers() -> bool:
            assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{log.read_text()}"
            return _unix_get(path, "/healthz").endswith(" 200 OK")

        wait_for(answers, timeout=30, what=f"{server} to answer on {path}")
        # Its owner and group (nginx's) alone may send it requests: not any local user, past nginx.
        assert stat.S_IMODE(path.stat().st_mode) & 0o067 == 0o060, oct(path.stat().st_mode)


SRC_LAYOUT_HINT = (
    "Error: could not import 'mypkg': No module named 'mypkg'; it is in src/mypkg, which is not on the import "
    "path (a src layout): install the project with `pip install -e .`, or run with PYTHONPATH=src"
)


@pytest.mark.parametrize("command", [["serve"], ["check"], ["init", "--dry-run"]])
def test_uninstalled_src_layout_says_how_to_import_it(tmp_path: Path, command: list[str]) -> None:
    package = tmp_path / "src" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from flask import Flask\n\n\ndef create_app():\n    return Flask(__name__)\n"
    )
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mypkg"\nversion = "0.1"\n')
    assert refused(*command, "mypkg:create_app", cwd=tmp_path) == SRC_LAYOUT_HINT
    if command == ["serve"]:  # and the fix it names works
        settings = print_config("mypkg:create_app", env=clean_env(PYTHONPATH="src"), cwd=tmp_path)
        assert settings["app"] == "mypkg:create_app"


@pytest.mark.parametrize(
    ("target", "line"),
    [
        ("app:aplication", "Error: module 'app' has no attribute 'aplication'; did you mean 'application'?"),
        ("app:create_ap()", "Error: module 'app' has no attribute 'create_ap'; did you mean 'create_app'?"),
        (
            'app:create_app("\udcff")',  # the raw byte 0xff on the command line, as a shell passes $'\xff'
            """Error: app 'app:create_app("\\xff")' is not valid UTF-8 (byte \\xff); """
            """pass UTF-8 text, or a Python escape such as "\\xff" inside a quoted argument""",
        ),
        ("app:create_app({[]: 1})", "Error: Failed to parse arguments as literal values: 'create_app({[]: 1})'."),
    ],
    ids=["attribute-typo", "factory-typo", "byte-not-utf8", "unhashable-literal"],
)
def test_mistyped_target_is_one_line(tmp_path: Path, target: str, line: str) -> None:
    (tmp_path / "app.py").write_text(
        "from flask import Flask\n\napplication = Flask(__name__)\n\n\n"
        "def create_app(name='app'):\n    return Flask(name)\n"
    )
    assert refused("serve", target, "--workers", "1", cwd=tmp_path) == line


def test_bug_in_app_shows_its_traceback_then_one_error_line() -> None:
    result = flaskprod("serve", "tests.apps.buggy")
    assert result.returncode == 2
    assert 'tests/apps/buggy.py", line' in readable(result.stderr)
    assert readable(result.stderr).strip().splitlines()[-1] == (
        "Error: error while importing 'tests.apps.buggy': ZeroDivisionError: division by zero"
    )


@pytest.mark.integration
@pytest.mark.parametrize("server", SERVERS)
def test_worker_boot_failure_stops_serve(tmp_path: Path, server: str) -> None:
    """An app that loads in the probe but not in the workers: serve exits non-zero, not a restart loop."""
    log = tmp_path / "serve.log"
    command = [FLASKPROD, "serve", "tests.apps.fails_in_worker", "--server", server,
               "--bind", f"127.0.0.1:{free_port()}", "--workers", "1"]
    with log.open("w") as out, running(command, env=clean_env(), cwd=ROOT, stdout=out, stderr=out) as proc:
        started = time.monotonic()
        code = proc.wait(30)
    output = log.read_text()
    assert code != 0, output
    assert "only fails where the server runs it" in output
    assert time.monotonic() - started < 30


@pytest.mark.integration
@pytest.mark.parametrize("server", SERVERS)
def test_a_worker_that_cannot_load_the_app_after_another_did_is_replaced_not_fatal(tmp_path: Path, server: str) -> None:
    """The app's database restarts while a worker is being replaced: the server waits it out, as a
    restart of the whole server would not, instead of stopping every worker."""
    down = tmp_path / "database-down"
    env = clean_env(FAIL_WHILE=str(down))
    with serving(tmp_path, server, "--workers", "2", app="tests.apps.fails_while_flagged:app", env=env) as served:

        def answering() -> set[int]:
            assert served.proc.poll() is None, f"serve exited with {served.proc.returncode}:\n{served.output()}"
            return {int(served.get("/pid", timeout=5).text) for _ in range(30)}

        def both_answering() -> set[int] | None:
            pids = answering()
            return pids if len(pids) == 2 else None

        # Both must have loaded the app first: Gunicorn forks the second a moment after the first answers.
        victim = next(iter(wait_for(both_answering, timeout=10, what="both workers answering")))
        down.touch()
        os.kill(victim, signal.SIGKILL)
        if server == "gunicorn":  # uWSGI forks replacements from its master, which holds the loaded app
            wait_for(lambda: served.output().count("retrying in 1s") >= 2, timeout=20, what="two loads retried")
        assert victim not in answering()  # the other worker serves meanwhile, and the server is still up
        down.unlink()
        wait_for(lambda: len(answering() - {victim}) == 2, timeout=20, what="the replacement worker to serve")


EXITING_APP = """
import os
import sys

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/exit/<int:status>")
def exit_with(status: int) -> None:
    sys.exit(status)


@app.get("/os-exit/<int:status>")
def os_exit_with(status: int) -> None:
    os._exit(status)  # no SystemExit a worker could catch: only the status reaches the server
"""


@pytest.mark.integration
@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("status", [3, 4])
@pytest.mark.parametrize("how", ["exit", "os-exit"])
def test_a_request_that_exits_its_worker_gets_it_replaced_not_the_server_stopped(
    tmp_path: Path, server: str, status: int, how: str
) -> None:
    """Gunicorn takes a worker's exit status 3 or 4 for a failed boot and stops every worker with it."""
    (tmp_path / "exits.py").write_text(EXITING_APP)
    port, log = free_port(), tmp_path / "serve.log"
    command = [FLASKPROD, "serve", "exits:app", "--server", server, "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    with log.open("w") as out, running(command, env=clean_env(), cwd=tmp_path, stdout=out, stderr=out) as proc:

        def answers() -> bool:
            assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{log.read_text()}"
            with suppress(requests.ConnectionError):
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            return False

        wait_for(answers, timeout=30, what=f"{server} to answer")
        with suppress(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/{how}/{status}", timeout=10)
        wait_for(answers, timeout=30, what="a replacement worker to answer")
        if server == "gunicorn":
            assert f"had booted when it exited {status}, which Gunicorn reads as a failed boot" in log.read_text()


FAILING_IN_WORKERS = """
import os
from pathlib import Path

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)
first = Path(__file__).with_name("first.pid")
if not first.exists():
    first.write_text(str(os.getpid()))  # serve's own check of the app loads it
elif first.read_text() != str(os.getpid()):
    raise RuntimeError("no worker can load this app")
"""


@pytest.mark.integration
def test_a_gunicorn_worker_that_never_booted_still_stops_the_server(tmp_path: Path) -> None:
    """The other side of the replaced worker above: a replacement would fail alike, so Gunicorn's halt stands."""
    (tmp_path / "fails.py").write_text(FAILING_IN_WORKERS)
    command = [FLASKPROD, "serve", "fails:app", "--server", "gunicorn", "--bind", f"127.0.0.1:{free_port()}",
               "--workers", "1", "--set", "server.preload=false"]  # fmt: skip
    done = subprocess.run(command, env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "no worker can load this app" in done.stderr and "Worker failed to boot" in done.stderr
    assert "had booted" not in done.stderr


def test_missing_uwsgi_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerError, match=r"^uwsgi not found: pip install 'flaskprod\[uwsgi\]'$"):
        find_uwsgi()


def test_auto_server_kind_is_uwsgi_behind_nginx_and_gunicorn_facing_clients() -> None:
    from flaskprod.servers import resolve_kind
    from flaskprod.spec import Spec

    assert resolve_kind(Spec(), behind_nginx=False).server.kind == "gunicorn"
    assert resolve_kind(Spec(), behind_nginx=True).server.kind == "uwsgi"  # installed by the test extras
    chosen = Spec().replace(**{"server.kind": "gunicorn"})
    assert resolve_kind(chosen, behind_nginx=True).server.kind == "gunicorn"
    assert print_config("tests.apps.factory")["server"] == "gunicorn"


@pytest.mark.integration
@pytest.mark.parametrize("server", SERVERS)
def test_an_app_run_called_at_import_is_ignored_as_flask_run_does(tmp_path: Path, server: str) -> None:
    # Before, the worker started Flask's development server there and never served; up waited ready_timeout.
    with serving(tmp_path, server, "--workers", "1", app="tests.apps.runs_at_import:app") as served:
        assert served.get("/").text == "served by the production server"
        said = (
            f"flaskprod: ignored the call to app.run() at {ROOT / 'tests/apps/runs_at_import.py'}:16, made while the "
            "app was imported: it starts Flask's development server; put it under `if __name__ == \"__main__\":` "
            "(flaskprod check: FP-P001)"
        )
        assert said in readable(served.output())
        assert "Running on http" not in served.output()


@pytest.mark.integration
def test_an_app_logger_disabled_by_dictconfig_after_production_logs_its_errors(tmp_path: Path) -> None:
    # Before, the 500's traceback went nowhere: dictConfig had disabled the logger Production(app) made.
    with serving(tmp_path, "gunicorn", "--workers", "1", app="tests.apps.dictconfig_after:create_app()") as served:
        assert served.get("/boom").status_code == 500
        wait_for(lambda: "kaboom" in served.output(), timeout=10, what="the 500 to be logged")
    assert "Exception on /boom [GET]" in served.output()
    assert "logging.config.dictConfig disabled the app's logger after Production(app) set it up" in served.output()
