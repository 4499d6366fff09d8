"""The spec: precedence of sources, origins, and every kind of bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from flaskprod.errors import SpecError
from flaskprod.reference import settings_reference
from flaskprod.spec import SETTINGS, Spec, load_spec, parse_size
from tests.support import BIN, ROOT


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
    assert load_spec(project, environ={}, flags=flags).app.name == name
    # Any source that sets it wins over the project.
    write(project / "flaskprod.toml", '[app]\nname = "mine"\n')
    spec = load_spec(project, environ={}, flags=flags)
    assert (spec.app.name, spec.origins["app.name"]) == ("mine", f"file {project / 'flaskprod.toml'}")
    env = {"FLASKPROD_APP__NAME": "theirs"}
    assert load_spec(project, environ=env, flags=flags).app.name == "theirs"


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


def test_flaskprod_toml_wins_over_pyproject(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.flaskprod.proxy]\ntrusted_hops = 1\n")
    write(tmp_path / "flaskprod.toml", "[proxy]\ntrusted_hops = 2\n")
    assert load_spec(tmp_path, environ={}).proxy.trusted_hops == 2


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


def test_optional_value_can_be_unset_from_env(tmp_path: Path) -> None:
    write(tmp_path / "flaskprod.toml", "[server]\nworker_cap = 3\n")
    assert load_spec(tmp_path, environ={"FLASKPROD_SERVER__WORKER_CAP": "none"}).server.worker_cap is None


@pytest.mark.parametrize(
    ("kwargs", "files", "message"),
    [
        (
            {"flags": {"server.workerz": 2}},
            {},
            "flag --set server.workerz: unknown setting 'server.workerz'; did you mean server.workers?",
        ),
        ({"flags": {"workers": 2}}, {}, "unknown setting 'workers'; did you mean server.workers?"),
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
        ({"flags": {"proxy.max_body_size": "ten megs"}}, {}, "expected a size such as 10M, 512k or 1048576"),
        ({"flags": {"proxy.rate_limit": "fast"}}, {}, "expected a rate such as 10r/s or 300r/m"),
        ({}, {"flaskprod.toml": "[server]\nworkers = true\n"}, "invalid value True for server.workers"),
        ({}, {"flaskprod.toml": "[server\n"}, "flaskprod.toml: not valid TOML"),
        (
            {},
            {"flaskprod.toml": "workers = 3\n"},
            "'workers' must be a table such as [workers]; did you mean server.workers?",
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


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [str(BIN / "flaskprod"), *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


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
