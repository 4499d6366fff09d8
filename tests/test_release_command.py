"""deploy.release_command: `flask db upgrade` run once per release before the new code takes a request, under
`up` (SQLite and --with postgres) and `deploy` (a failing one leaves the running release serving), and in the
files every target builds, judged by the tools that run them."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from flaskprod.build import Built
from flaskprod.errors import ServerError, SpecError
from flaskprod.render.compose import render_compose, render_swarm
from flaskprod.render.deployment import plan_deployment
from flaskprod.render.kubernetes import render_k8s
from flaskprod.render.systemd import SYSTEM_PATH, render_units
from flaskprod.render.targets import TARGETS
from flaskprod.spec import load_spec
from flaskprod.stack.release import resolve
from tests.buildkit import checkov, make_deployment, make_spec, run_tool, tool, write_tree
from tests.support import BIN, free_port
from tests.test_build import YAMLLINT, compose_config
from tests.test_build_k8s import CHECKOV_SKIPS
from tests.test_build_k8s import PRODUCTION as PRODUCTION_K8S
from tests.test_build_systemd import Unit, verifiable_layout, verify
from tests.test_serve import clean_env
from tests.test_up_postgres import visits  # noqa: F401 (a fixture; local_dir is conftest's)
from tests.upstack import Loader, UpStack, processes_under, start_up, stop, summary, up_env

FIXTURE = Path(__file__).parent / "apps" / "migrated"
UPGRADE = 'release_command = "flask db upgrade"\n'
# A second migration, and one that fails as a migration can (a column the table already has).
ADD_COLUMN = '''
"""A column.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("notes", sa.Column("{column}", sa.String(20), nullable=True))


def downgrade():
    op.drop_column("notes", "{column}")
'''


def project(root: Path, toml: str = f"[deploy]\n{UPGRADE}") -> Path:
    """The fixture app copied to root, with toml as its flaskprod.toml."""
    shutil.copytree(FIXTURE, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "flaskprod.toml").write_text(toml)
    return root


def flaskprod(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flaskprod"), *args], cwd=root, env=up_env(), capture_output=True, text=True, timeout=120
    )


def run_up(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`flaskprod up` that is expected to stop on its own."""
    return flaskprod(root, "up", "app:app", "--port", str(free_port()), "--workers", "1", *args)


def start(root: Path, *extra: str) -> UpStack:
    stack = start_up(root, "gunicorn", free_port(), "--workers", "1", "--threads", "4", *extra)
    try:
        stack.wait_ready()
    except BaseException:
        stop(stack)
        raise
    return stack


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory for two projects whose run dirs' sockets fit a unix socket path, under xdist too (tmp_path
    leaves room for one project at its root)."""
    path = Path(tempfile.mkdtemp(prefix="fp-release-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def post_note(stack: UpStack, text: str) -> requests.Response:
    return requests.post(stack.url("/notes"), data=text, timeout=15)


# --- the setting ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"flask db upgrade && flask seed"', "one command, run without a shell, so && would reach it"),
        ("'flask db \"upgrade'", "a command such as `flask db upgrade`, its quotes closed (unset for none)"),
        (
            '"FLASK_DEBUG=0 flask db upgrade"',
            "so FLASK_DEBUG=0 would be run as one: give env FLASK_DEBUG=0 flask db upgrade (env sets the variable)",
        ),
    ],
)
def test_a_command_that_would_need_a_shell_is_refused_in_one_line(tmp_path: Path, value: str, expected: str) -> None:
    (tmp_path / "flaskprod.toml").write_text(f"[deploy]\nrelease_command = {value}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path, config=None, environ={})
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_the_command_is_split_as_a_shell_would_and_unset_by_default(tmp_path: Path) -> None:
    assert load_spec(tmp_path, config=None, environ={}).deploy.release_argv == ()
    spec = load_spec(
        tmp_path, config=None, environ={"FLASKPROD_DEPLOY__RELEASE_COMMAND": "sh -c 'flask db upgrade && flask seed'"}
    )
    assert spec.deploy.release_argv == ("sh", "-c", "flask db upgrade && flask seed")


# --- up and deploy ---------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_up_migrates_before_the_first_request(short_tmp: Path) -> None:
    with_command = project(short_tmp / "with")
    stack = start(with_command)
    try:
        assert post_note(stack, "first").status_code == 201
        assert stack.get("/notes").json() == ["first"]
        err = stack.stderr()
        assert "running the release command `flask db upgrade` in release 1" in err
        assert "Running upgrade  -> 0001, The notes table." in (stack.run_dir / "logs" / "release-1.log").read_text()
        assert '"message":"the release command `flask db upgrade` ran in ' in err and '"duration":' in err
    finally:
        stop(stack)
    # The table is in the project's instance folder, which every release links: the next release sees it.
    assert (with_command / "instance" / "notes.db").is_file()
    # Without the setting up never turns ready: tests/test_runtime_migrations.py.


@pytest.mark.integration
def test_up_with_postgres_migrates_the_database_up_starts(request: pytest.FixtureRequest) -> None:
    # PostgreSQL's directory, where its user may enter, and a project whose path leaves room for the sockets.
    pg_dir, root = request.getfixturevalue("local_dir"), project(request.getfixturevalue("visits"))
    stack = start(root, "--with", "postgres", "--set", f"database.local_dir={pg_dir}")
    try:
        assert post_note(stack, "in postgres").status_code == 201
        assert stack.get("/notes").json() == ["in postgres"]
        log = (stack.run_dir / "logs" / "release-1.log").read_text()
        assert "Context impl PostgresqlImpl." in log and "Running upgrade  -> 0001" in log
    finally:
        stop(stack)
    assert stack.proc.returncode == 0, stack.output()
    assert not (root / "instance" / "notes.db").exists()  # the migration went where the app's DATABASE_URL points


@pytest.mark.integration
def test_a_failing_release_command_leaves_the_running_release_serving(tmp_path: Path) -> None:
    root = project(tmp_path)
    stack = start(root)
    try:
        assert post_note(stack, "before").status_code == 201
        versions = root / "migrations" / "versions"
        # "text" is a column the table has: the migration fails as the database refuses it.
        (versions / "0002_column.py").write_text(ADD_COLUMN.replace("{column}", "text"))
        loader = Loader(stack.port, path="/notes", threads=2, max_requests=20000, max_seconds=60).start()
        failed = flaskprod(root, "deploy")
        outcomes = loader.stop()
        assert failed.returncode == 1, failed.stderr
        error = failed.stderr.splitlines()[-1]
        assert error.startswith(
            "Error: the release command `flask db upgrade` exited with status 1 after "
        ), error
        assert "so release 2 does not start; its last lines: " in error
        assert "duplicate column name: text" in error
        assert error.endswith(f"(all of it: {stack.run_dir}/logs/release-2.log); release 1 still serves")
        assert loader.count("ok") == len(outcomes) > 10, summary(outcomes)
        assert stack.get("/notes").json() == ["before"]
        assert not (stack.run_dir / "releases" / "2").exists()  # it never served: no rollback goes to it

        (versions / "0002_column.py").write_text(ADD_COLUMN.replace("{column}", "tag"))
        fixed = flaskprod(root, "deploy")
        assert fixed.returncode == 0, fixed.stderr
        assert "flaskprod deploy: the release command `flask db upgrade` ran in " in fixed.stderr
        assert "Running upgrade 0001 -> 0002" in (stack.run_dir / "logs" / "release-3.log").read_text()
        assert post_note(stack, "after").status_code == 201
        assert stack.get("/notes").json() == ["before", "after"]
    finally:
        stop(stack)


@pytest.mark.integration
def test_up_refuses_to_start_a_release_whose_command_fails_or_outlives_its_timeout(short_tmp: Path) -> None:
    failing = project(short_tmp / "failing", toml='[deploy]\nrelease_command = "flask db upgrade --sql-typo"\n')
    done = run_up(failing)
    assert done.returncode == 2, done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("Error: the release command `flask db upgrade --sql-typo` exited with status 2 after ")
    assert (
        "its last lines: Usage: flask db upgrade [OPTIONS] [REVISION] | Try 'flask db upgrade --help' for help. | "
        "Error: No such option '--sql-typo'."
    ) in error
    assert processes_under(failing) == {}
    # The release that never started is gone (the next start takes its number); its command's log is kept.
    assert not (failing / ".flaskprod" / "run" / "releases" / "1").exists()
    assert (failing / ".flaskprod" / "run" / "logs" / "release-1.log").is_file()

    slow = project(
        short_tmp / "slow",
        toml=textwrap.dedent("""\
            [deploy]
            release_command = "python -c 'import time; print(\\"migrating\\", flush=True); time.sleep(60)'"
            release_timeout = 1
            """),
    )
    done = run_up(slow)
    assert done.returncode == 2, done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("Error: the release command `python -c ")
    assert "did not finish within deploy.release_timeout = 1s and was stopped" in error
    assert "its last lines: migrating (all of it: " in error
    assert processes_under(slow) == {}


@pytest.mark.integration
def test_a_program_that_is_not_installed_is_named(tmp_path: Path) -> None:
    root = project(tmp_path, toml='[deploy]\nrelease_command = "no-such-migrator up"\n')
    done = run_up(root)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"Error: deploy.release_command: 'no-such-migrator' is not found in {BIN} or on PATH: install it into the "
        "app's virtualenv (`flask db upgrade` needs flask-migrate) or give its full path"
    )


def test_a_path_is_found_in_the_release_it_runs_in_not_where_up_was_started(tmp_path: Path) -> None:
    release = tmp_path / "releases" / "3"
    release.mkdir(parents=True)
    script = release / "migrate.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(ServerError, match=r"'\./migrate\.sh' is not an executable file in the project: .*chmod \+x"):
        resolve(["./migrate.sh"], {"PATH": ""}, release)
    script.chmod(0o755)
    assert resolve(["./migrate.sh", "up"], {"PATH": ""}, release) == [str(script), "up"]


# --- built targets -----------------------------------------------------------------------------------------------

BUILT = {"app.name": "shop", "app.version": "1.2.3", "deploy.release_command": "flask db upgrade"}


def built(root: Path, renderer: Any, *, extras: tuple[str, ...] = (), out: str = "deploy/x", **settings: str) -> Path:
    d = make_deployment(root / "project", spec=make_spec(**{**BUILT, **settings}), extras=extras, out=out)
    return write_tree(root / "project" / d.out, renderer(d))


def test_single_prints_the_command_that_runs_it_in_the_image_before_the_container(tmp_path: Path) -> None:
    """single has no step of its own to run it: build's next step runs it in a one-off container of the image, with
    the key, the instance volume and FLASK_APP (the image names the app to flaskprod only). Run here as the image
    would run it: its words, in the project, with the variables the step passes."""
    root = project(tmp_path / "project")
    (root / "requirements.txt").write_text("flask-migrate\nflaskprod\n")
    spec = make_spec(**{**BUILT, "app.target": "app:app"})
    d = plan_deployment(spec, server="gunicorn", root=root, out="deploy/single", environ=clean_env())
    step = Built(target=TARGETS["single"], deployment=d, changes=[]).next_step
    build, release, run = step.split(" && ")
    assert build.startswith("docker build ") and run.startswith("docker run --rm -p 8000:8000 ")
    words = shlex.split(release)
    image_at = words.index("shop:1.2.3")
    assert words[:image_at] == ["docker", "run", "--rm", "-e", "FLASK_SECRET_KEY", "-e", "FLASK_APP=app:app",
                                "-v", f"shop-instance:{d.instance_dir}"]
    assert words[image_at + 1:] == ["flask", "db", "upgrade"]
    env = {**clean_env(), "FLASK_APP": "app:app", "PATH": f"{BIN}:/usr/bin:/bin"}
    done = subprocess.run(words[image_at + 1:], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Running upgrade  -> 0001" in done.stderr
    assert (root / "instance" / "notes.db").is_file()
    # Unset, the step is build and run alone.
    plain = dataclasses.replace(d, spec=make_spec(**{**BUILT, "deploy.release_command": ""}))
    assert " flask db upgrade" not in Built(target=TARGETS["single"], deployment=plain, changes=[]).next_step


@pytest.mark.parametrize("extras", [(), ("postgres",)])
def test_compose_starts_the_app_once_the_release_service_exited_0(tmp_path: Path, extras: tuple[str, ...]) -> None:
    out = built(tmp_path, render_compose, extras=extras)
    secret = tmp_path / "pw"
    secret.write_text("x\n")
    env = {**clean_env(), "FLASK_SECRET_KEY": "k" * 64, "POSTGRES_PASSWORD_FILE": str(secret)}
    services = compose_config(out / "compose.yaml", env)["services"]
    app, release = services["app"], services["release"]
    assert app["depends_on"]["release"] == {"condition": "service_completed_successfully"}
    assert release["command"] == ["timeout", "--kill-after=10s", "300s", "flask", "db", "upgrade"]
    assert release["environment"] == {**app["environment"], "FLASK_APP": "wsgi:app"}
    for key in ("image", "volumes", "secrets", "networks", "read_only", "cap_drop"):
        assert release.get(key) == app.get(key), key
    assert release["restart"] == "no"
    assert release.get("depends_on", {}) == {k: v for k, v in app["depends_on"].items() if k != "release"}
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, str(out / "compose.yaml")])
    assert "flask db upgrade) runs in the service release before the app starts" in (out / "compose.yaml").read_text()


def test_compose_keeps_a_dollar_for_the_container(tmp_path: Path) -> None:
    out = built(tmp_path, render_compose, **{"deploy.release_command": "sh -c 'flask db upgrade --tag $GIT_SHA'"})
    env = {**clean_env(), "FLASK_SECRET_KEY": "k" * 64}
    release = compose_config(out / "compose.yaml", env)["services"]["release"]
    # Unescaped, Compose would put the host's GIT_SHA (none: "") in; `config` writes a $ kept for the container as
    # $$ again, so that what it prints reads back the same.
    assert release["command"][-3:] == ["sh", "-c", "flask db upgrade --tag $$GIT_SHA"]


def test_swarm_runs_the_release_command_as_a_job_and_says_what_it_does_not_order(tmp_path: Path) -> None:
    out = built(tmp_path, render_swarm)
    services = compose_config(out / "stack.yaml", clean_env())["services"]
    release = services["release"]
    assert release["deploy"]["mode"] == "replicated-job"
    assert release["deploy"]["restart_policy"]["condition"] == "on-failure"
    assert release["environment"] == {**services["app"]["environment"], "FLASK_APP": "wsgi:app"}
    assert "restart" not in release and "replicas" not in release["deploy"]
    header = (out / "stack.yaml").read_text()
    assert "Swarm orders no services: the new app tasks start as it runs" in header
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, str(out / "stack.yaml")])


def test_kubernetes_runs_it_as_a_job_named_after_its_content_outside_the_apps_selector(tmp_path: Path) -> None:
    out = built(tmp_path / "a", render_k8s, extras=("postgres",), out="deploy/k8s", **PRODUCTION_K8S)
    objects = list(yaml.safe_load_all(run_tool(["kubectl", "kustomize", str(out)])))
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(objects))
    output = run_tool([tool("kubernetes-validate"), "--strict", "-k", "1.29.0", str(tmp_path / "all.yaml")])
    assert output.count(" passed for resource ") == len(objects), output
    summary = checkov(out, "kubernetes", skip=list(CHECKOV_SKIPS))
    assert summary["failed"] == 0
    by_kind = {doc["kind"]: doc for doc in objects}
    job, deployment = by_kind["Job"], by_kind["Deployment"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["flask", "db", "upgrade"]
    app = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [*app["env"], {"name": "FLASK_APP", "value": "wsgi:app"}]
    assert container["image"] == app["image"] and container["resources"] == app["resources"]
    assert job["spec"]["activeDeadlineSeconds"] == 300
    # The app's Service, budget and spread select by this label: a Job pod with it would be sent requests.
    selector = deployment["spec"]["selector"]["matchLabels"]
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= job_labels.items()
    # The database admits the Job's pods.
    policy = next(d for d in objects if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "shop-postgres")
    admitted = [peer["podSelector"]["matchLabels"] for peer in policy["spec"]["ingress"][0]["from"]]
    assert any(labels.items() <= job_labels.items() for labels in admitted)
    # The header's first apply (-l component in (release,database)) takes the Job and the database, not the app.
    first = {(d["kind"], d["metadata"]["name"]) for d in objects
             if d["metadata"]["labels"].get("app.kubernetes.io/component") in ("release", "database")}  # fmt: skip
    assert ("Job", job["metadata"]["name"]) in first and ("Deployment", "shop") not in first
    assert ("StatefulSet", "shop-postgres") in first
    header = (out / "kustomization.yaml").read_text()
    assert f"kubectl wait -n shop-prod --for=condition=complete --timeout=360s job/{job['metadata']['name']}" in header

    # Another command is another Job (its template cannot change in place); the same files, the same Job.
    again = built(tmp_path / "b", render_k8s, extras=("postgres",), out="deploy/k8s", **PRODUCTION_K8S)
    other = built(tmp_path / "c", render_k8s, extras=("postgres",), out="deploy/k8s",
                  **{**PRODUCTION_K8S, "deploy.release_command": "flask db upgrade heads"})  # fmt: skip
    name = yaml.safe_load((out / "release-job.yaml").read_text())["metadata"]["name"]
    assert yaml.safe_load((again / "release-job.yaml").read_text())["metadata"]["name"] == name
    assert yaml.safe_load((other / "release-job.yaml").read_text())["metadata"]["name"] != name


def test_systemd_runs_it_before_every_start_as_the_service(tmp_path: Path) -> None:
    d = make_deployment(tmp_path / "project", spec=make_spec(**BUILT))
    units = write_tree(tmp_path / "units", render_units(d, verifiable_layout(d.name)))
    assert verify(units / "shop.service", units / "shop-nginx.service") == []
    unit = Unit((units / "shop.service").read_text())
    assert unit.value("ExecStartPre") == f"/usr/bin/env PATH={BIN}:{SYSTEM_PATH} flask db upgrade"
    assert unit.value("TimeoutStartSec") == "330"
    assert unit.environment()["FLASK_APP"] == "wsgi:app"


@pytest.mark.parametrize("command", ["sh -c 'flask db upgrade'", "./migrate.sh"])
def test_systemd_finds_a_system_program_and_a_projects_script(tmp_path: Path, command: str) -> None:
    """sh is no program of the virtualenv, and systemd takes no relative path: both run as under `up`."""
    d = make_deployment(tmp_path / "project", spec=make_spec(**{**BUILT, "deploy.release_command": command}))
    units = write_tree(tmp_path / "units", render_units(d, verifiable_layout(d.name)))
    assert verify(units / "shop.service", units / "shop-nginx.service") == []


@pytest.mark.parametrize("command", ["flask db upgrade", "sh -c 'flask db upgrade'", "./migrate.sh"])
def test_the_systemd_units_release_command_migrates_the_fixture_app(tmp_path: Path, command: str) -> None:
    """What `flaskprod build --target systemd` writes, run as systemd would: ExecStartPre= in WorkingDirectory=
    with Environment=, the VM's venv being this one and its project folder this one."""
    root = project(tmp_path / "notes", toml=f"[deploy]\nrelease_command = {json.dumps(command)}\n")
    (root / "migrate.sh").write_text("#!/bin/sh\nexec flask db upgrade\n")
    (root / "migrate.sh").chmod(0o755)
    (root / "requirements.txt").write_text("flaskprod\nflask-migrate\n")
    done = flaskprod(root, "build", "--target", "systemd", "app:app")
    assert done.returncode == 0, done.stderr
    unit = Unit((root / "deploy" / "systemd" / "notes.service").read_text())
    line = unit.value("ExecStartPre").replace("/opt/notes/venv", str(BIN.parent)).replace("/srv/notes", str(root))
    argv = shlex.split(line)
    assert argv[0].startswith("/")  # systemd runs no relative path, and looks a bare name up in /usr/bin alone
    # LoadCredential='s copy of the secret key, in the directory %d names.
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "secret_key").write_text(up_env()["FLASK_SECRET_KEY"])
    env = {**up_env(), **{k: v.replace("%d", str(credentials)) for k, v in unit.environment().items()}}
    env.pop("FLASK_SECRET_KEY")
    migrated = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert migrated.returncode == 0, migrated.stderr
    assert "Running upgrade  -> 0001, The notes table." in migrated.stderr
    assert (root / "instance" / "notes.db").is_file()
