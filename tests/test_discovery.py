"""App discovery: every form `flask --app` accepts, and each mistake as the one line a user sees."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from flaskprod.discovery import HINT, NOT_FOUND_FIX, AppRef, find_app, load, resolve
from flaskprod.errors import ConfigurationError, DiscoveryError
from tests.support import ROOT


@pytest.fixture(autouse=True)
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Modules and sys.path entries a test adds are gone afterwards, so 'wsgi' in one tmp dir is not reused;
    no FLASK_APP comes in from the shell that runs the tests."""
    monkeypatch.delenv("FLASK_APP", raising=False)
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


def test_flask_app_in_flaskenv_names_the_app_as_flask_run_reads_it(tmp_path: Path) -> None:
    # Miguel Grinberg's microblog: the app in microblog.py, named only by .flaskenv.
    write(tmp_path, "microblog.py", APP_SOURCE.format(name="microblog"))
    write(tmp_path, "app.py", APP_SOURCE.format(name="not-this-one"))
    write(tmp_path, ".flaskenv", "# for flask run\nFLASK_DEBUG=0\nFLASK_APP=microblog.py\n")
    ref = resolve(None, tmp_path)
    assert ref == AppRef(module="microblog", name=None, path=str(tmp_path.resolve()))
    assert ref.origin == "FLASK_APP in .flaskenv"
    assert find_app(None, tmp_path).name == "microblog"


@pytest.mark.parametrize(
    ("line", "target"),
    [
        ("FLASK_APP=shop:create_app()", "shop:create_app()"),
        ("export FLASK_APP = 'shop:create_app(\"prod\")'", 'shop:create_app("prod")'),
        ('FLASK_APP="shop:create_app(\\"prod\\")"', 'shop:create_app("prod")'),
        ('FLASK_APP="shop.wsgi"  # the factory', "shop.wsgi"),
        ("FLASK_APP=shop.wsgi # the factory", "shop.wsgi"),
    ],
)
def test_dotenv_lines_as_python_dotenv_reads_them(tmp_path: Path, line: str, target: str) -> None:
    write(tmp_path, ".flaskenv", f"FLASK_APP=old:app\n{line}\n")
    assert resolve(None, tmp_path).import_string == target


def test_the_environment_then_env_then_flaskenv_and_a_named_app_before_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, ".flaskenv", "FLASK_APP=from_flaskenv\n")
    write(tmp_path, ".env", "FLASK_APP=from_env\n")
    assert (resolve(None, tmp_path).module, resolve(None, tmp_path).origin) == ("from_env", "FLASK_APP in .env")
    monkeypatch.setenv("FLASK_APP", "from_shell:app")
    assert (resolve(None, tmp_path).import_string, resolve(None, tmp_path).origin) == ("from_shell:app", "$FLASK_APP")
    assert resolve("named:app", tmp_path).import_string == "named:app"


def test_a_flask_app_that_fails_says_where_its_name_came_from(tmp_path: Path) -> None:
    write(tmp_path, ".flaskenv", "FLASK_APP=microblog.py\n")
    with pytest.raises(DiscoveryError) as info:
        find_app(None, tmp_path)
    assert str(info.value) == (
        f"app 'microblog.py' (FLASK_APP in .flaskenv): no such file {tmp_path}/microblog.py; " + HINT
    )
    write(tmp_path, ".flaskenv", "FLASK_APP=microblog\n")
    with pytest.raises(DiscoveryError) as info:
        find_app(None, tmp_path)
    assert str(info.value) == (
        "could not import 'microblog': No module named 'microblog'; check its name, or run flaskprod in the folder "
        "that holds it (the app FLASK_APP in .flaskenv names)"
    )
    write(tmp_path, ".flaskenv", "FLASK_APP=:app\n")
    with pytest.raises(DiscoveryError, match=r"^app ':app' \(FLASK_APP in .flaskenv\) names no module; pass APP"):
        resolve(None, tmp_path)


def test_no_app_found_says_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError) as info:
        resolve(None, tmp_path)
    assert str(info.value) == (
        f"no Flask app found: tried FLASK_APP, wsgi.py, app.py in {tmp_path}; "
        "pass APP such as 'module:app' or 'module:create_app()'"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nosuchmod", "could not import 'nosuchmod': No module named 'nosuchmod'" + NOT_FOUND_FIX),
        (
            "tests.apps.nosuch:app",
            "could not import 'tests.apps.nosuch': No module named 'tests.apps.nosuch'" + NOT_FOUND_FIX,
        ),
        (
            "tests.apps.factory:nope",
            "module 'tests.apps.factory' has no attribute 'nope'; it holds 'tests.apps.factory:create_app()': "
            "pass it instead",
        ),
        (
            "tests.apps.factory:nope()",
            "module 'tests.apps.factory' has no attribute 'nope'; it holds 'tests.apps.factory:create_app()': "
            "pass it instead",
        ),
        (
            "tests.apps.empty",
            "Failed to find Flask application or factory in module 'tests.apps.empty'. "
            "Use 'tests.apps.empty:name' to specify one.",
        ),
        (
            "tests.apps.empty:VALUE",
            "'tests.apps.empty:VALUE' is an int, not a Flask app: name the module's Flask app or factory instead, "
            "as in 'tests.apps.empty:create_app()'",
        ),
        (
            "tests.apps.factory:create_app(1, 2, 3)",
            "The factory 'create_app(1, 2, 3)' in module 'tests.apps.factory' could not be called "
            "with the specified arguments: it takes create_app(name='factory'); pass arguments that fit",
        ),
        (
            "tests.apps.broken_import",
            "error while importing 'tests.apps.broken_import': "
            "ModuleNotFoundError: No module named 'flaskprod_no_such_dependency'",
        ),
        (
            # Not "check its name": the module is there, and Python's message names the cause.
            "tests.apps.circular",
            "error while importing 'tests.apps.circular': ImportError: cannot import name 'app' from partially "
            "initialized module 'tests.apps.circular' (most likely due to a circular import) "
            f"({ROOT / 'tests/apps/circular/__init__.py'})",
        ),
        (
            # Its view returns a value; the factory itself does not.
            "tests.apps.forgot_return:create_app()",
            "A valid Flask application was not obtained from 'tests.apps.forgot_return:create_app()': create_app() "
            "returns None; end it with `return app`",
        ),
        (
            "tests.apps.factory:create_app(",
            "Failed to parse 'create_app(' as an attribute name or function call: write one such as 'app' or "
            "'create_app()', after the module and a colon",
        ),
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


SRC_FACTORY = """
    from flask import Flask

    def create_app():
        return Flask(__name__)
"""


@pytest.mark.parametrize(
    ("project_file", "from_project", "fix"),
    [
        ("pyproject.toml", True, "install the project with `pip install -e .`, or run with PYTHONPATH=src"),
        (None, True, "run with PYTHONPATH=src"),
        (
            "pyproject.toml",
            False,
            "install the project with `pip install -e {root}`, or run with PYTHONPATH={root}/src",
        ),
    ],
    ids=["installable", "no-project-file", "from-elsewhere"],
)
def test_uninstalled_src_layout_says_how_to_import_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project_file: str | None, from_project: bool, fix: str
) -> None:
    (tmp_path / "src" / "mypkg").mkdir(parents=True)
    write(tmp_path / "src" / "mypkg", "__init__.py", SRC_FACTORY)
    if project_file:
        write(tmp_path, project_file, '[project]\nname = "mypkg"\nversion = "0.1"\n')
    monkeypatch.chdir(tmp_path if from_project else tmp_path.parent)
    ref = AppRef(module="mypkg", name="create_app", path=str(tmp_path))
    src = "src" if from_project else f"{tmp_path}/src"
    with pytest.raises(DiscoveryError) as info:
        load(ref)
    assert str(info.value) == (
        "could not import 'mypkg': No module named 'mypkg'; "
        f"it is in {src}/mypkg, which is not on the import path (a src layout): " + fix.format(root=tmp_path)
    )


def test_src_layout_module_file_and_an_installed_package_are_told_apart(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    write(tmp_path / "src", "single.py", SRC_FACTORY)
    with pytest.raises(DiscoveryError, match=r"; it is in \S+/src/single.py, which is not on the import path"):
        find_app("single:create_app", tmp_path)
    # Only the missing package itself is hinted at: here src/tests exists nowhere, and a name that is
    # missing inside an importable package is no src-layout problem.
    with pytest.raises(DiscoveryError) as info:
        find_app("tests.apps.nosuch:app", ROOT)
    missing = "could not import 'tests.apps.nosuch': No module named 'tests.apps.nosuch'"
    assert str(info.value) == missing + NOT_FOUND_FIX


TYPO_SOURCE = """
    from flask import Flask, jsonify

    application = Flask(__name__)

    def create_app():
        return Flask(__name__)
"""


TYPOS_HOLDS = "it holds 'typos:application' and 'typos:create_app()': pass one of them instead"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("aplication", "module 'typos' has no attribute 'aplication'; did you mean 'application'?"),
        ("Application", "module 'typos' has no attribute 'Application'; did you mean 'application'?"),
        ("create_ap()", "module 'typos' has no attribute 'create_ap'; did you mean 'create_app'?"),
        ("make_app('x')", "module 'typos' has no attribute 'make_app'; did you mean 'create_app'?"),
        # jsonify is Flask's, not an app or factory of this module: no close name, so the ones that would work.
        ("jsonfy", f"module 'typos' has no attribute 'jsonfy'; {TYPOS_HOLDS}"),
        ("zzz", f"module 'typos' has no attribute 'zzz'; {TYPOS_HOLDS}"),
    ],
)
def test_missing_attribute_suggests_the_nearest_app_or_factory(tmp_path: Path, name: str, message: str) -> None:
    write(tmp_path, "typos.py", TYPO_SOURCE)
    with pytest.raises(DiscoveryError) as info:
        find_app(f"typos:{name}", tmp_path)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            'app:create_app("\udcff")',  # the byte 0xff from argv, decoded as Python decodes argv
            """app 'app:create_app("\\xff")' is not valid UTF-8 (byte \\xff); """
            """pass UTF-8 text, or a Python escape such as "\\xff" inside a quoted argument""",
        ),
        (
            "a\udcfe\udcffpp:create_app",
            """app 'a\\xfe\\xffpp:create_app' is not valid UTF-8 (bytes \\xfe, \\xff); """
            """pass UTF-8 text, or a Python escape such as "\\xfe" inside a quoted argument""",
        ),
        # A \u0000 escape in flaskprod.toml: no path and no Python source can hold it.
        ('app:create_app("\0")', """app 'app:create_app("\\x00")' contains a NUL character; remove it"""),
        ("/", "app '/' names no module; pass APP such as 'module:app' or 'module:create_app()'"),
        (".x:app", "app '.x:app' names no module; pass APP such as 'module:app' or 'module:create_app()'"),
    ],
    ids=["byte-not-utf8", "bytes-in-module", "nul", "root", "hidden-file"],
)
def test_unusable_characters_are_refused_before_anything_reads_them(target: str, message: str) -> None:
    with pytest.raises(DiscoveryError) as info:
        resolve(target, ROOT)
    assert str(info.value) == message


@pytest.mark.parametrize("args", ["{[]: 1}", "{1, [2]}"])
def test_arguments_no_literal_can_hold_are_a_parse_error_not_a_traceback(args: str) -> None:
    """Flask's parser lets the TypeError of an unhashable literal escape; it is the target's fault, not the app's."""
    with pytest.raises(DiscoveryError) as info:
        find_app(f"tests.apps.factory:create_app({args})", ROOT)
    assert str(info.value) == f"Failed to parse arguments as literal values: 'create_app({args})'."
    assert info.value.__cause__ is None


def test_a_project_module_named_like_one_python_already_imported_is_named(tmp_path: Path) -> None:
    # Before: "module 'site' has no attribute 'create_app'", about Python's own site.py.
    (tmp_path / "site").mkdir()
    factory = "from flask import Flask\n\n\ndef create_app():\n    return Flask(__name__)\n"
    (tmp_path / "site" / "__init__.py").write_text(factory)
    with pytest.raises(DiscoveryError) as info:
        find_app("site:create_app()", tmp_path)
    assert str(info.value) == (
        f"'site' names a module Python had already imported ({sys.modules['site'].__file__}), so the project's "
        "site/__init__.py is never imported: rename the project's site (and its imports)"
    )
