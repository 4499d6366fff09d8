"""`flaskprod up` and `deploy` as a new user runs them on a project of their own: a src layout, an app named by its
path, readiness checks that take their time. Real nginx and app servers."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
import requests

from tests.support import BIN, free_port
from tests.upstack import UpStack, start_up, stop, up_env

pytestmark = pytest.mark.integration

# A src-layout package whose view writes into Flask's instance folder when asked, making it then (as many apps do):
# Flask puts that folder beside the package's parent, src/instance, not in the project's root.
SHOP = """
import os

from flask import Flask, request

from flaskprod import Production

VERSION = {version!r}

app = Flask(__name__)
Production(app)


@app.get("/version")
def version():
    return VERSION


@app.route("/note", methods=["GET", "POST"])
def note():
    path = os.path.join(app.instance_path, "note.txt")
    if request.method == "POST":
        os.makedirs(app.instance_path, exist_ok=True)
        with open(path, "w") as f:
            f.write(request.get_data(as_text=True))
        return "saved"
    with open(path) as f:
        return f.read()
"""


def write_shop(root: Path, version: str = "1", source: str = SHOP) -> None:
    package = root / "src" / "shop"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(textwrap.dedent(source).format(version=version))


def flaskprod(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flaskprod"), *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def start_shop(root: Path, *extra: str, env: dict[str, str]) -> UpStack:
    """up for the shop, as its own `flaskprod up APP` (upstack.up_args names app:app)."""
    with (root / "up.out").open("wb") as out, (root / "up.err").open("wb") as err:
        proc = subprocess.Popen(
            [str(BIN / "flaskprod"), "up", *extra],
            cwd=root,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return UpStack(proc=proc, root=root, port=int(extra[extra.index("--port") + 1]), kind="gunicorn")


def test_a_src_layouts_instance_folder_is_the_projects_so_a_deploy_keeps_what_the_app_wrote(tmp_path: Path) -> None:
    """Flask's instance folder for src/shop is src/instance: up made ./instance instead (which the app never uses),
    so a note the app wrote into src/instance stayed inside release 1, and release 2 had none."""
    write_shop(tmp_path)
    env = up_env(PYTHONPATH=str(tmp_path / "src"))  # `pip install -e .` of the src layout, as its .pth does
    stack = start_shop(tmp_path, "shop:app", "--server", "gunicorn", "--port", str(free_port()), "--workers", "1",
                       env=env)  # fmt: skip
    try:
        stack.wait_ready()
        assert stack.get("/version").text == "1"
        assert requests_post(stack, "/note", "kept across releases") == "saved"
        write_shop(tmp_path, version="2")
        deployed = flaskprod(tmp_path, "deploy", env=env)
        assert deployed.returncode == 0, deployed.stderr
        assert stack.get("/version").text == "2"
        assert stack.get("/note").text == "kept across releases", stack.output()
        assert (tmp_path / "src" / "instance" / "note.txt").read_text() == "kept across releases"
        assert not (tmp_path / "instance").exists()  # no folder of up's own that the app never reads
    finally:
        stop(stack)


def requests_post(stack: UpStack, path: str, body: str) -> str:
    answer = requests.post(stack.url(path), data=body, timeout=15)
    assert answer.status_code == 200, answer.text
    return answer.text


def test_the_release_command_runs_in_the_projects_copy_when_the_app_is_named_by_a_path(tmp_path: Path) -> None:
    """`flaskprod up src/shop`, as `flask --app src/shop` takes it: the release command (`flask db upgrade`, which
    finds migrations/ in its working folder) ran in the release's src/, so it failed 'Path doesn't exist:
    migrations'; README says it runs from the release's copy of the project."""
    write_shop(tmp_path)
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "env.py").write_text("# alembic's\n")
    (tmp_path / "flaskprod.toml").write_text("[deploy]\nrelease_command = \"sh -c 'test -f migrations/env.py'\"\n")
    stack = start_shop(tmp_path, "src/shop", "--server", "gunicorn", "--port", str(free_port()), "--workers", "1",
                       env=up_env())  # fmt: skip
    try:
        stack.wait_ready()
        assert stack.get("/version").text == "1"
        write_shop(tmp_path, version="2")
        deployed = flaskprod(tmp_path, "deploy", env=up_env())
        assert deployed.returncode == 0, deployed.stderr
        assert stack.get("/version").text == "2"
    finally:
        stop(stack)


# A readiness check slower than the 2 s up and deploy waited for an answer, well within monitoring.check_timeout.
SLOW_CHECK = """
import time

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
prod = Production(app)
VERSION = {version!r}


@prod.readiness_check("warehouse")
def warehouse():
    time.sleep(2.6)


@app.get("/version")
def version():
    return VERSION
"""


def test_up_and_deploy_wait_for_a_readiness_answer_as_long_as_the_checks_may_take(tmp_path: Path) -> None:
    """With monitoring.check_timeout = 6 and a check taking 2.6 s, /readyz answers 200 after 2.6 s: up gave up on
    each answer after 2 s and asked again, found the check still running (503, 'previous run still in
    progress', logged as failing) and never turned ready; deploy's wait on the new release's socket too."""
    (tmp_path / "app.py").write_text(textwrap.dedent(SLOW_CHECK).format(version="1"))
    extra = ("--workers", "1", "--set", "monitoring.check_timeout=6", "--set", "proxy.ready_timeout=30")
    stack = start_up(tmp_path, "gunicorn", free_port(), *extra)
    try:
        stack.wait_ready(timeout=60)
        assert stack.get("/version").text == "1"
        assert "previous run still in progress" not in stack.stdout()
        (tmp_path / "app.py").write_text(textwrap.dedent(SLOW_CHECK).format(version="2"))
        deployed = flaskprod(tmp_path, "deploy", env=up_env())
        assert deployed.returncode == 0, deployed.stderr
        assert stack.get("/version").text == "2"
    finally:
        stop(stack)


def test_up_in_a_folder_that_holds_none_of_the_apps_code_is_refused_naming_its_project(tmp_path: Path) -> None:
    """up run from the wrong folder, with the app's src layout on the import path (`pip install -e` of its
    checkout): it served, each release a copy of this folder holding none of the code, so a deploy shipped nothing
    and a reload served the checkout's edits. Now one line names the project to run it in."""
    project = tmp_path / "shop"
    write_shop(project)
    (project / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "1.0"\n')
    elsewhere = tmp_path / "deploy"
    elsewhere.mkdir()
    env = up_env(PYTHONPATH=str(project / "src"))
    stack = start_shop(elsewhere, "shop:app", "--server", "gunicorn", "--port", str(free_port()), "--workers", "1",
                       env=env)  # fmt: skip
    try:
        stack.proc.wait(timeout=60)
        assert stack.proc.returncode == 2, stack.output()
        assert stack.stderr().splitlines() == [
            f"Error: 'shop' is imported from {project / 'src'}, in the project {project}, not from {elsewhere}, "
            f"which up copies into each release (so deploy would ship none of its code): run flaskprod up in {project}"
        ]
        assert not (elsewhere / "instance").exists()
        assert not (elsewhere / ".flaskprod").exists()
    finally:
        stop(stack)


BLUEPRINTED = {
    "__init__.py": "from flask import Flask\n\nfrom flaskprod import Production\n\n\ndef create_app():\n"
    "    app = Flask(__name__)\n    Production(app)\n    from .main import bp\n\n    app.register_blueprint(bp)\n"
    "    return app\n",
    "main.py": "from flask import Blueprint\n\nbp = Blueprint('main', __name__)\n",
}


def test_up_naming_a_blueprint_says_which_app_to_name(tmp_path: Path) -> None:
    """`flaskprod up shop.main:bp` (a blueprint, not the app): Flask's line said only that no valid app was
    obtained, and named no fix; now it names the package's factory."""
    (tmp_path / "shop").mkdir()
    for name, source in BLUEPRINTED.items():
        (tmp_path / "shop" / name).write_text(source)
    up = subprocess.run(
        [str(BIN / "flaskprod"), "up", "shop.main:bp", "--port", str(free_port())],
        cwd=tmp_path, env=up_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert up.returncode == 2, up.stderr
    assert up.stderr.splitlines() == ["Error: 'shop.main:bp' is a Blueprint, not a Flask app: pass 'shop:create_app()'"]


# An app that says where its server runs and which file it was loaded from.
WHERE = """
import os

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/where")
def where():
    return {"cwd": os.getcwd(), "file": __file__, "migrations": os.path.isdir("migrations")}
"""


@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_the_app_server_runs_from_the_releases_root_for_an_app_named_by_its_path(tmp_path: Path, server: str) -> None:
    """`flaskprod up src/web/app.py`: the app server ran from the release's src/web, so what the app finds from the
    current folder, as under `flask run` in the project (Flask-Migrate's migrations/, which /readyz reads), was not
    there. It now runs from the release's root, and a module of the app's name at the root does not shadow it."""
    (tmp_path / "src" / "web").mkdir(parents=True)
    (tmp_path / "src" / "web" / "app.py").write_text(textwrap.dedent(WHERE))
    (tmp_path / "app.py").write_text("raise SystemExit('the root app.py was imported, not src/web/app.py')\n")
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "env.py").write_text("# alembic's\n")
    stack = start_shop(tmp_path, "src/web/app.py", "--server", server, "--port", str(free_port()), "--workers", "1",
                       env=up_env())  # fmt: skip
    try:
        stack.wait_ready()
        answer = stack.get("/where")
        assert answer.status_code == 200, answer.text
        where = answer.json()
        release = tmp_path / ".flaskprod" / "run" / "releases" / "1"
        assert where == {"cwd": str(release), "file": str(release / "src" / "web" / "app.py"), "migrations": True}
    finally:
        stop(stack)
