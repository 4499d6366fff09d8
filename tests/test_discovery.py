"""App discovery: every form `flask --app` accepts, and each mistake as the one line a user sees."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from flaskprod.discovery import AppRef, find_app, load, resolve
from flaskprod.errors import ConfigurationError, DiscoveryError
from tests.support import ROOT


@pytest.fixture(autouse=True)
def isolated_imports() -> Iterator[None]:
    """Modules and sys.path entries a test adds are gone afterwards, so 'wsgi' in one tmp dir is not reused."""
    modules, path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


def write(directory: Path, name: str, source: str) -> None:
    (directory / name).write_text(textwrap.dedent(source))


APP_SOURCE = """
    from flask import Flask
    app = Flask("{name}")
"""


@pytest.mark.parametrize(
    ("target", "module", "name"),
    [
        ("tests.apps.factory", "tests.apps.factory", None),
        ("tests.apps.factory:create_app", "tests.apps.factory", "create_app"),
        ("tests.apps.factory:create_app('x')", "tests.apps.factory", "create_app('x')"),
        ("tests/apps/factory.py:create_app()", "tests.apps.factory", "create_app()"),
        ("tests/apps/__init__.py", "tests.apps", None),
    ],
)
def test_resolve_forms(target: str, module: str, name: str | None) -> None:
    assert resolve(target, ROOT) == AppRef(module=module, name=name, path=str(ROOT))


@pytest.mark.parametrize(
    ("target", "app_name"),
    [
        ("tests.apps.factory", "factory"),  # a bare module with only a create_app factory
        ("tests.apps.factory:create_app", "factory"),
        ("tests.apps.factory:create_app()", "factory"),
        ("tests.apps.factory:create_app('custom')", "custom"),
        ("tests.apps.factory:create_app(name='kw')", "kw"),
        ("tests.apps.application_name", "tests.apps.application_name"),
        ("tests.apps.make", "made"),
        ("tests/apps/make.py", "made"),
    ],
)
def test_load_forms(target: str, app_name: str) -> None:
    app = find_app(target, ROOT)
    assert isinstance(app, Flask)
    assert app.name == app_name


def test_no_target_prefers_wsgi_py(tmp_path: Path) -> None:
    write(tmp_path, "wsgi.py", APP_SOURCE.format(name="from-wsgi"))
    write(tmp_path, "app.py", APP_SOURCE.format(name="from-app"))
    assert resolve(None, tmp_path) == AppRef(module="wsgi", name=None, path=str(tmp_path.resolve()))
    assert find_app(None, tmp_path).name == "from-wsgi"


def test_no_target_falls_back_to_app_py(tmp_path: Path) -> None:
    write(tmp_path, "app.py", APP_SOURCE.format(name="from-app"))
    assert find_app(None, tmp_path).name == "from-app"


def test_no_app_found_says_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError) as info:
        resolve(None, tmp_path)
    assert str(info.value) == (
        f"no Flask app found: tried wsgi.py, app.py in {tmp_path}; "
        "pass APP such as 'module:app' or 'module:create_app()'"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nosuchmod", "could not import 'nosuchmod': No module named 'nosuchmod'"),
        ("tests.apps.nosuch:app", "could not import 'tests.apps.nosuch': No module named 'tests.apps.nosuch'"),
        (
            "tests.apps.factory:nope",
            "module 'tests.apps.factory' has no attribute 'nope'; Use 'module:name' to specify one.",
        ),
        (
            "tests.apps.factory:nope()",
            "module 'tests.apps.factory' has no attribute 'nope'; Use 'module:name' to specify one.",
        ),
        (
            "tests.apps.empty",
            "Failed to find Flask application or factory in module 'tests.apps.empty'. "
            "Use 'tests.apps.empty:name' to specify one.",
        ),
        (
            "tests.apps.empty:VALUE",
            "A valid Flask application was not obtained from 'tests.apps.empty:VALUE'.",
        ),
        (
            "tests.apps.factory:create_app(1, 2, 3)",
            "The factory 'create_app(1, 2, 3)' in module 'tests.apps.factory' could not be called "
            "with the specified arguments.",
        ),
        (
            "tests.apps.broken_import",
            "error while importing 'tests.apps.broken_import': "
            "ModuleNotFoundError: No module named 'flaskprod_no_such_dependency'",
        ),
        ("tests.apps.factory:create_app(", "Failed to parse 'create_app(' as an attribute name or function call."),
    ],
)
def test_errors_are_one_line(target: str, message: str) -> None:
    with pytest.raises(DiscoveryError) as info:
        find_app(target, ROOT)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_bug_in_app_keeps_its_cause() -> None:
    with pytest.raises(DiscoveryError) as info:
        find_app("tests.apps.buggy", ROOT)
    assert str(info.value) == "error while importing 'tests.apps.buggy': ZeroDivisionError: division by zero"
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_bug_in_factory_is_reported_as_loading_error(tmp_path: Path) -> None:
    write(tmp_path, "factorybug.py", """
        def create_app():
            raise RuntimeError("database unreachable")
    """)
    with pytest.raises(DiscoveryError) as info:
        find_app("factorybug:create_app()", tmp_path)
    assert str(info.value) == "error while loading 'factorybug:create_app()': RuntimeError: database unreachable"


def test_app_refusing_to_start_passes_through() -> None:
    with pytest.raises(ConfigurationError, match="SECRET_KEY is missing"):
        load(resolve("tests.apps.refuses", ROOT))


def test_empty_module_part_is_rejected() -> None:
    with pytest.raises(DiscoveryError, match="names no module"):
        resolve(":app", ROOT)
