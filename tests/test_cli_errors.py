"""A first-time user's mistakes, through the real command: one line naming the problem and the fix, exit 2,
no traceback, and nothing written."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.support import BIN, readable, run_flaskprod

APP = "from flask import Flask\n\napp = Flask(__name__)\n"
PRODUCTION_APP = APP.replace("\n\napp", "\n\nfrom flaskprod import Production\n\napp") + "Production(app)\n"
FACTORY = "from flask import Flask\n\n\ndef create_app():\n    return Flask(__name__)\n"
# A file every process may open and none may read (EIO): a config file the user cannot read, even as root.
UNREADABLE = Path("/proc/self/mem")


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_flaskprod(*args, cwd=cwd, env={"FLASK_SECRET_KEY": secrets.token_hex(32), **(env or {})})


def make(root: Path, files: dict[str, str | None]) -> None:
    """Write files under root: text, or None for a folder by that name."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            path.mkdir()
        else:
            path.write_text(text)


def assert_one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert readable(result.stderr).splitlines() == [expected], result.stderr  # serve's is a JSON record on a pipe


@pytest.mark.parametrize(
    ("files", "args", "env", "expected"),
    [
        # pyproject.toml: a value where [tool.flaskprod] goes was a traceback (AttributeError).
        (
            {"pyproject.toml": "[tool]\nflaskprod = 3\n"},
            ["config"],
            {},
            "Error: {root}/pyproject.toml: tool.flaskprod must hold tables of settings, such as "
            "[tool.flaskprod.server]",
        ),
        (
            {"pyproject.toml": "[tool.flaskprod]\nserver = 3\n"},
            ["config"],
            {},
            "Error: {root}/pyproject.toml: 'server' is a section, not a value: write [tool.flaskprod.server] with "
            "its settings on the lines below it",
        ),
        # A setting above every [section] was told to become a table named after itself.
        (
            {"flaskprod.toml": "workers = 3\n"},
            ["config"],
            {},
            "Error: {root}/flaskprod.toml: 'workers' is outside any section: put it under [server] (the setting "
            "server.workers)",
        ),
        (
            {"flaskprod.toml": "sever = 3\n"},
            ["config"],
            {},
            "Error: {root}/flaskprod.toml: 'sever' is outside any section; did you mean the section [server]?",
        ),
        # Values as TOML wrote them, not as Python prints them (True, datetime.date(1979, 5, 27)).
        (
            {"flaskprod.toml": "[server]\nthreads = true\n"},
            ["config"],
            {},
            "Error: file {root}/flaskprod.toml: invalid value true for server.threads: expected integer",
        ),
        (
            {"flaskprod.toml": "[server]\ntimeout = 1979-05-27\n"},
            ["config"],
            {},
            "Error: file {root}/flaskprod.toml: invalid value 1979-05-27 for server.timeout: expected integer",
        ),
        # A folder named flaskprod.toml was passed over in silence: every setting meant for it was lost.
        (
            {"flaskprod.toml": None},
            ["config"],
            {},
            "Error: {root}/flaskprod.toml: cannot read config file: Is a directory; make it a file you can read, "
            "or pass another with --config",
        ),
        # An empty --config (an unset shell variable) read as no --config: another file's settings applied.
        (
            {"flaskprod.toml": "[server]\nthreads = 2\n"},
            ["config", "--config", ""],
            {},
            "Error: --config '': no file named; give the config file's path, or leave --config out",
        ),
        ({}, ["config", "--set", "=3"], {}, "Error: --set '=3': expected KEY=VALUE, such as --set server.threads=4"),
        (
            {},
            ["config"],
            {"FLASKPROD_SERVER_WORKERS": "3"},
            "Error: environment variable FLASKPROD_SERVER_WORKERS: expected FLASKPROD_SECTION__NAME; did you mean "
            "FLASKPROD_SERVER__WORKERS?",
        ),
        # float() reads "1_0" as ten.
        (
            {},
            ["config"],
            {"FLASKPROD_DEPLOY__CPUS": "1_0"},
            "Error: env FLASKPROD_DEPLOY__CPUS: invalid value '1_0' for deploy.cpus: expected number",
        ),
        # Past what a C int and nginx's sizes hold: nginx refused its own config, uWSGI overflowed, in their words.
        (
            {},
            ["config", "--timeout", "999999999999999999"],
            {},
            "Error: flag --timeout: invalid value '999999999999999999' for server.timeout: expected integer >= 1 and "
            "at most 2147483647",
        ),
        (
            {},
            ["config"],
            {"FLASKPROD_DEPLOY__CPUS": "1e300"},
            "Error: env FLASKPROD_DEPLOY__CPUS: invalid value '1e300' for deploy.cpus: expected number >= 0.1 and at "
            "most 2147483647",
        ),
        (
            {"flaskprod.toml": '[proxy]\nmax_body_size = "9999999999G"\n'},
            ["config"],
            {},
            "Error: file {root}/flaskprod.toml: invalid value '9999999999G' for proxy.max_body_size: expected a size "
            "such as 10M, 512k or 1048576",
        ),
        # click's usage errors were four lines, and eleven with the list of targets.
        (
            {},
            ["build"],
            {},
            "Error: Missing option '--target' / '-t'. Choose from: single, compose, compose-uwsgi, swarm, k8s, "
            "systemd (see 'flaskprod build --help')",
        ),
        ({}, ["confg"], {}, "Error: No such command 'confg'. Did you mean 'config'? (see 'flaskprod --help')"),
        ({}, ["serve", "--port", "80"], {}, "Error: No such option '--port' (see 'flaskprod serve --help')"),
        # A project's folder was imported as an empty namespace package: "Failed to find Flask application".
        (
            {"shop/wsgi.py": APP},
            ["check", "shop"],
            {},
            "Error: app 'shop' is a folder, not a module: run flaskprod in it, where it finds wsgi.py, or pass "
            "shop/wsgi.py",
        ),
        (
            {},
            ["check", "shop/app.py"],
            {},
            "Error: app 'shop/app.py': no such file {root}/shop/app.py; pass APP such as 'module:app' or "
            "'module:create_app()'",
        ),
        # "Use 'module:name' to specify one." to someone who had.
        (
            {"app.py": FACTORY},
            ["check", "app:application"],
            {},
            "Error: module 'app' has no attribute 'application'; it holds 'app:create_app()': pass it instead",
        ),
        (
            {},
            ["check", "nosuchmodule"],
            {},
            "Error: could not import 'nosuchmodule': No module named 'nosuchmodule'; check its name, or run "
            "flaskprod in the folder that holds it",
        ),
    ],
)
def test_mistake_is_one_line_with_its_fix(
    tmp_path: Path, files: dict[str, str | None], args: list[str], env: dict[str, str], expected: str
) -> None:
    make(tmp_path, files)
    assert_one_line(run_cli(*args, cwd=tmp_path, env=env), expected.format(root=tmp_path))


@pytest.mark.parametrize("name", ["flaskprod.toml", "pyproject.toml"])
def test_config_file_that_cannot_be_read_is_one_line(tmp_path: Path, name: str) -> None:
    """An unreadable pyproject.toml was a traceback (PermissionError as a user, here EIO)."""
    (tmp_path / name).symlink_to(UNREADABLE)
    assert_one_line(
        run_cli("config", cwd=tmp_path),
        f"Error: {tmp_path}/{name}: cannot read config file: Input/output error; make it a file you can read, or "
        "pass another with --config",
    )


@pytest.mark.parametrize("out", ["notes.txt", "notes.txt/deploy"])
def test_build_into_a_file_names_it_and_writes_nothing(tmp_path: Path, out: str) -> None:
    """The message was "cannot write ...: File exists"."""
    make(tmp_path, {"app.py": PRODUCTION_APP, "requirements.txt": "flask\nflaskprod\n", "notes.txt": "mine\n"})
    result = run_cli("build", "--target", "compose", "--out", out, cwd=tmp_path)
    assert_one_line(
        result,
        f"Error: {tmp_path}/notes.txt is a file where flaskprod needs a folder (for {tmp_path}/{out}/Dockerfile): "
        "nothing was written; move it away, or write elsewhere (--out)",
    )
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["__pycache__", "app.py", "notes.txt", "requirements.txt"]


def test_help_lists_a_flags_choices(tmp_path: Path) -> None:
    """--server VALUE said nothing of gunicorn and uwsgi."""
    result = run_cli("serve", "--help", cwd=tmp_path)
    assert result.returncode == 0
    flags = [line.split()[0:2] for line in result.stdout.splitlines() if line.startswith("  --")]
    assert ["--server", "[auto|gunicorn|uwsgi]"] in flags
    assert ["--workers", "[INTEGER|auto]"] in flags
    assert ["--threads", "INTEGER"] in flags


@pytest.mark.parametrize("command", ["config", "check", "build --target compose", "init", "deploy", "serve", "up"])
def test_a_current_folder_deleted_under_the_shell_is_one_line(tmp_path: Path, command: str) -> None:
    """Each was a FileNotFoundError traceback from Path.cwd()."""
    gone = tmp_path / "gone"
    gone.mkdir()
    # A process cannot be started in a folder that is gone: the shell enters it, deletes it, then runs flaskprod.
    result = subprocess.run(
        ["sh", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "$0" {command}', str(BIN / "flaskprod")],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert_one_line(
        result,
        "Error: the current folder no longer exists (deleted or replaced since this shell entered it): cd into "
        "the project again",
    )


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ("/dev/zero", "more than 1 MiB, which no config file is; pass the file with --config"),
        ("FIFO", "a pipe, not a config file; pass a file with --config"),
    ],
)
def test_a_config_that_never_ends_is_refused(tmp_path: Path, config: str, said: str) -> None:
    """/dev/zero was read until a MemoryError; a pipe with no writer blocked the command for good."""
    if config == "FIFO":
        config = str(tmp_path / "settings.toml")
        os.mkfifo(config)
    assert_one_line(run_cli("config", "--config", config, cwd=tmp_path), f"Error: {config}: {said}")


def test_dev_null_is_a_config_of_no_settings(tmp_path: Path) -> None:
    result = run_cli("config", "--config", "/dev/null", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--out", ""], "Error: --out '': no folder named; give one inside the project, such as deploy/compose, or "
                        "leave --out out"),
        (["--with", ""], "Error: --with '': no part named; name one such as monitoring, or leave --with out"),
        (["--with", " , "], "Error: --with ' , ': no part named; name one such as monitoring, or leave --with out"),
    ],
)
def test_an_empty_value_an_unset_variable_gives_is_refused_not_read_as_none(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    """--out '' wrote to deploy/compose and --with '' added nothing, both exiting 0."""
    make(tmp_path, {"app.py": PRODUCTION_APP, "requirements.txt": "flask\nflaskprod\n"})
    assert_one_line(run_cli("build", "--target", "compose", *args, cwd=tmp_path), expected)
    assert not (tmp_path / "deploy").exists()


@pytest.mark.parametrize("command", [["check"], ["build", "--target", "compose"], ["init"], ["serve"], ["up"]])
def test_an_app_named_by_flask_app_that_fails_says_where_its_name_came_from(
    tmp_path: Path, command: list[str]
) -> None:
    """Only check said it; the commands that load the app in a child process gave the name alone."""
    make(tmp_path, {".flaskenv": "FLASK_APP=nosuch\n", "requirements.txt": "flask\nflaskprod\n"})
    assert_one_line(
        run_cli(*command, cwd=tmp_path, env={"PATH": "/usr/sbin:/usr/bin:/bin"}),  # up's nginx is in /usr/sbin
        "Error: could not import 'nosuch': No module named 'nosuch'; check its name, or run flaskprod in the folder "
        "that holds it (the app FLASK_APP in .flaskenv names)",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [".flaskenv", "requirements.txt"]
