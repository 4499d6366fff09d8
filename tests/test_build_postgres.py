"""`flaskprod build --with postgres`: PostgreSQL beside the app (compose, compose-uwsgi, swarm, k8s), its
max_connections counted from the app's pools, its password one secret file the server and the app both read.

The files are judged by the real tools (docker-compose config, yamllint, kubectl kustomize,
kubernetes-validate, checkov); there is no Docker engine or cluster here, so what the containers would
run is run natively: a real PostgreSQL with the rendered settings and the image's role and database,
and the reference app with the rendered environment, through its readiness check and a database read.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
import yaml
from psycopg2 import sql
from sqlalchemy.engine import make_url

from flaskprod.build import build
from flaskprod.errors import BuildError
from flaskprod.render import postgres
from flaskprod.runtime.db import engine_options
from flaskprod.sizing import ADMIN_CONNECTIONS
from flaskprod.spec import load_spec, parse_size
from tests.buildkit import WSGI_APP, Tree, build_tree, checkov, make_spec, run_tool, tool
from tests.pg import ThrowawayPostgres
from tests.support import BIN, ROOT, free_port, running, wait_for
from tests.test_build import (
    YAMLLINT,
    compose_config,
    dockerfile_env,
    dockerfile_json,
    flaskprod_build,
    project,  # noqa: F401  (the fixture: a copy of the reference app)
)
from tests.test_build_k8s import PRODUCTION
from tests.test_serve import clean_env

# Numbers away from the defaults, so a formula that ignores one of them shows.
SIZED = {
    "app.name": "shop",
    "app.version": "1.2.3",
    "deploy.replicas": "3",
    "deploy.max_replicas": "5",
    "server.threads": "4",
    "database.connection_budget": "40",  # binding: the pools are sized down to fit it
    "deploy.postgres_cpus": "1.5",
    "deploy.postgres_memory": "768M",
    "deploy.postgres_storage": "20G",
}
COMPOSE_FILES = {"compose": "compose.yaml", "compose-uwsgi": "compose.yaml", "swarm": "stack.yaml"}
EXTRAS = {
    "compose": ("postgres", "monitoring"),
    "compose-uwsgi": ("postgres",),
    "swarm": ("postgres", "monitoring"),
    "k8s": ("postgres", "monitoring"),
}


def write_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wsgi.py").write_text(WSGI_APP)
    (root / "requirements.txt").write_text("flask\nflaskprod\npsycopg2-binary\n")
    return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tree]:
    base = tmp_path_factory.mktemp("postgres")
    built = {}
    for target, extras in EXTRAS.items():
        settings = {**SIZED, **PRODUCTION} if target == "k8s" else SIZED
        built[target] = build_tree(write_project(base / target), target, settings, extras)
    return built


@pytest.fixture(scope="module")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "postgres_password"
    path.write_text(secrets.token_hex(32) + "\n")
    return path


# --- reading the files back ---------------------------------------------------------------------------


def services(tree: Tree) -> dict[str, Any]:
    found: dict[str, Any] = tree.yaml(COMPOSE_FILES[tree.target])["services"]
    return found


def k8s_object(tree: Tree, kind: str, name: str) -> dict[str, Any]:
    return next(
        doc
        for doc in (yaml.safe_load(text) for file, text in tree.files.items() if file.endswith(".yaml"))
        if doc.get("kind") == kind and doc["metadata"]["name"] == name
    )


def k8s_container(tree: Tree, kind: str, name: str, container: str) -> dict[str, Any]:
    pod = k8s_object(tree, kind, name)["spec"]["template"]["spec"]
    found: dict[str, Any] = next(c for c in pod["containers"] if c["name"] == container)
    return found


def server_side(tree: Tree) -> tuple[list[str], dict[str, str]]:
    """The database container's command and environment."""
    if tree.target == "k8s":
        db = k8s_container(tree, "StatefulSet", "shop-postgres", "postgres")
        return db["args"], {e["name"]: e["value"] for e in db["env"]}
    db = services(tree)["postgres"]
    return db["command"], db["environment"]


def app_env(tree: Tree) -> dict[str, str]:
    if tree.target == "k8s":
        return {e["name"]: e["value"] for e in k8s_container(tree, "Deployment", "shop", "app")["env"] if "value" in e}
    # What the container sees: the image's ENV (the workers and pool among them), then the service's environment.
    image = dockerfile_env(tree.files["Dockerfile"])
    return {**image, **{key: str(value) for key, value in services(tree)["app"]["environment"].items()}}


def server_settings(command: list[str]) -> dict[str, str]:
    """`postgres -c a=1 -c b=2` as {a: 1, b: 2}; nothing else may be in the command."""
    assert command[0] == "postgres" and set(command[1::2]) == {"-c"}, command
    return dict(arg.split("=", 1) for arg in command[2::2])


# --- judged by the tools ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["compose", "compose-uwsgi", "swarm"])
def test_docker_compose_and_yamllint_accept_the_stack(trees: dict[str, Tree], password_file: Path, target: str) -> None:
    tree = trees[target]
    path = tree.path / COMPOSE_FILES[target]
    env = {
        **clean_env(),
        "FLASK_SECRET_KEY": secrets.token_hex(32),
        "POSTGRES_PASSWORD_FILE": str(password_file),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),
    }
    resolved = compose_config(path, env)
    monitoring = {"prometheus", "alertmanager", "grafana"} if "monitoring" in EXTRAS[target] else set()
    expected = {"app", "nginx", "postgres"} | monitoring
    assert set(resolved["services"]) == expected
    assert "postgres-data" in resolved["volumes"]
    if target != "swarm":
        # docker-compose resolved the user's file as the secret's source.
        assert resolved["secrets"]["postgres_password"]["file"] == str(password_file)
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, str(path)])


def test_compose_refuses_to_start_without_a_password_file(trees: dict[str, Tree]) -> None:
    env = {**clean_env(), "FLASK_SECRET_KEY": secrets.token_hex(32), "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16)}
    env.pop("POSTGRES_PASSWORD_FILE", None)
    done = subprocess.run(
        [tool("docker-compose"), "-f", str(trees["compose"].path / "compose.yaml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD_FILE to a file holding the database password" in done.stderr


@pytest.fixture(scope="module")
def kustomized(trees: dict[str, Tree], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kustomized") / "k8s.yaml"
    path.write_text(run_tool(["kubectl", "kustomize", str(trees["k8s"].path)]))
    return path


def test_kustomize_builds_the_database_beside_the_app(kustomized: Path) -> None:
    built = {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(kustomized.read_text())}
    assert {("StatefulSet", "shop-postgres"), ("Service", "shop-postgres"), ("NetworkPolicy", "shop-postgres")} <= built
    assert {("Deployment", "shop"), ("Service", "shop"), ("NetworkPolicy", "shop")} <= built
    # The password is the user's Secret, never an object written here.
    assert not any(kind == "Secret" for kind, _ in built)


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_kubernetes_validate_accepts_every_object_strictly(kustomized: Path, version: str) -> None:
    output = run_tool([tool("kubernetes-validate"), "--strict", "-k", version, str(kustomized)])
    objects = len(list(yaml.safe_load_all(kustomized.read_text())))
    assert output.count(" passed for resource ") == objects, output


def test_yamllint_accepts_the_manifests(trees: dict[str, Tree]) -> None:
    files = sorted(str(path) for path in trees["k8s"].path.glob("*.yaml"))
    assert any(path.endswith("postgres-statefulset.yaml") for path in files)
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, *files])


def test_checkov_passes_the_manifests(trees: dict[str, Tree]) -> None:
    # Only the digest check is skipped, as for the app (tags are all a file written before its images knows).
    # Nothing reads a secret from an environment variable any more (CKV_K8S_35 is not skipped).
    summary = checkov(trees["k8s"].path, "kubernetes", skip=["CKV_K8S_43"])
    assert summary["resource_count"] >= 10 and summary["failed"] == 0


# --- one budget, counted once -----------------------------------------------------------------------------


def most_app_containers(tree: Tree) -> int:
    """App containers holding pools at once, by each orchestrator's own rules, counted here independently."""
    deploy = tree.d.spec.deploy
    return {
        # `docker compose up` stops a container before it starts its replacement.
        "compose": deploy.replicas,
        "compose-uwsgi": deploy.replicas,
        # start-first updates, one task at a time; maxSurge 1 on top of the autoscaler's ceiling.
        "swarm": deploy.replicas + 1,
        "k8s": max(deploy.replicas, deploy.max_replicas) + 1,
    }[tree.target]


@pytest.mark.parametrize("target", ["compose", "compose-uwsgi", "swarm", "k8s"])
def test_max_connections_is_the_pool_arithmetic(trees: dict[str, Tree], target: str) -> None:
    tree = trees[target]
    command, _ = server_side(tree)
    settings = server_settings(command)
    env = app_env(tree)
    workers = int(env["FLASKPROD_SERVER__WORKERS"])
    size = int(env["FLASKPROD_DATABASE__POOL_SIZE"])
    overflow = int(env["FLASKPROD_DATABASE__MAX_OVERFLOW"])
    # The app is told the workers and pool the build sized, and the server is sized from those numbers.
    assert (workers, size, overflow) == (tree.d.derived.workers, tree.d.derived.pool.size, tree.d.derived.pool.overflow)
    expected = most_app_containers(tree) * workers * (size + overflow) + ADMIN_CONNECTIONS
    assert int(settings["max_connections"]) == expected
    # The runtime in each container, reading that environment, sizes exactly that pool.
    runtime = load_spec(ROOT, config=None, environ=env)
    options = engine_options(runtime, env["DATABASE_URL"])
    assert (options["pool_size"], options["max_overflow"]) == (size, overflow)
    # And every pool that can be open at once, a rollout under way included, stays within the budget.
    assert most_app_containers(tree) * workers * (size + overflow) <= tree.d.spec.database.connection_budget
    # The header of the file says where the number comes from.
    assert f"PostgreSQL's max_connections {settings['max_connections']}: " in "".join(tree.files.values())


def test_shared_buffers_is_a_quarter_of_the_memory_limit(trees: dict[str, Tree]) -> None:
    assert server_settings(server_side(trees["compose"])[0])["shared_buffers"] == "192MB"  # 768M / 4
    assert services(trees["compose"])["postgres"]["deploy"]["resources"]["limits"] == {"cpus": "1.5", "memory": "768M"}
    resources = k8s_container(trees["k8s"], "StatefulSet", "shop-postgres", "postgres")["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "1500m", "memory": "768Mi"}


# --- the password: one secret, two readers ----------------------------------------------------------------


@pytest.mark.parametrize("target", ["compose", "compose-uwsgi", "swarm", "k8s"])
def test_the_password_is_one_secret_file_never_a_value(trees: dict[str, Tree], target: str) -> None:
    tree = trees[target]
    _, server_env = server_side(tree)
    env = app_env(tree)
    # The server is created with, and the app logs in with, the same file's content.
    if target == "k8s":
        # Two pods: each mounts the same key of the user's Secret (see the test below).
        files = (server_env["POSTGRES_PASSWORD_FILE"], env["DATABASE_PASSWORD_FILE"])
        assert {path.rsplit("/", 1)[1] for path in files} == {"POSTGRES_PASSWORD"}
    else:
        assert server_env["POSTGRES_PASSWORD_FILE"] == env["DATABASE_PASSWORD_FILE"]
    # Never a value: no password variable, and a URL that names none.
    assert "POSTGRES_PASSWORD" not in server_env and "POSTGRES_PASSWORD" not in env
    url = make_url(env["DATABASE_URL"])
    assert url.password is None
    assert (url.username, url.database, url.port) == ("shop", "shop", postgres.PORT)
    assert (server_env["POSTGRES_USER"], server_env["POSTGRES_DB"]) == ("shop", "shop")


def test_compose_takes_the_password_file_from_the_user(trees: dict[str, Tree]) -> None:
    data = trees["compose"].yaml("compose.yaml")
    assert data["secrets"] == {
        "postgres_password": {"file": f"${{POSTGRES_PASSWORD_FILE:?{postgres_help()}}}"},
    }
    assert data["services"]["app"]["secrets"] == data["services"]["postgres"]["secrets"] == ["postgres_password"]


def postgres_help() -> str:
    from flaskprod.render.compose import POSTGRES_PASSWORD_HELP

    return POSTGRES_PASSWORD_HELP


def test_swarm_takes_the_password_as_a_swarm_secret(trees: dict[str, Tree]) -> None:
    data = trees["swarm"].yaml("stack.yaml")
    assert data["secrets"]["shop_postgres_password"] == {"external": True}
    assert "shop_postgres_password" in data["services"]["app"]["secrets"]
    assert data["services"]["postgres"]["secrets"] == ["shop_postgres_password"]
    assert "docker secret create shop_postgres_password -" in trees["swarm"].files["stack.yaml"]


def test_kubernetes_mounts_one_key_of_the_user_secret_in_both_pods(trees: dict[str, Tree]) -> None:
    tree = trees["k8s"]
    server_env = server_side(tree)[1]
    pods = {
        kind: k8s_object(tree, kind, name)["spec"]["template"]["spec"]
        for kind, name in (("StatefulSet", "shop-postgres"), ("Deployment", "shop"))
    }
    files = {"StatefulSet": server_env["POSTGRES_PASSWORD_FILE"], "Deployment": app_env(tree)["DATABASE_PASSWORD_FILE"]}
    for kind, pod in pods.items():
        container = pod["containers"][0]
        mount = next(m for m in container["volumeMounts"] if files[kind].startswith(m["mountPath"] + "/"))
        secret = next(v for v in pod["volumes"] if v["name"] == mount["name"])["secret"]
        assert mount["readOnly"] is True
        assert secret["secretName"] == "shop-secrets"
        assert {"key": "POSTGRES_PASSWORD", "path": files[kind].rsplit("/", 1)[1]} in secret["items"]
    # The database's pod gets the password only, never the app's signing key.
    database_volume = next(v for v in pods["StatefulSet"]["volumes"] if "secret" in v)
    assert [item["key"] for item in database_volume["secret"]["items"]] == ["POSTGRES_PASSWORD"]
    assert "--from-literal=POSTGRES_PASSWORD=" in tree.files["kustomization.yaml"]


# --- how each orchestrator runs it ------------------------------------------------------------------------


def test_compose_starts_the_app_once_the_database_answers(trees: dict[str, Tree]) -> None:
    found = services(trees["compose"])
    assert found["app"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    check = found["postgres"]["healthcheck"]["test"]
    # Over TCP: the image's set-up server (initdb's scripts) listens on its socket only.
    assert check[:4] == ["CMD", "pg_isready", "-h", "127.0.0.1"]


def test_compose_runs_the_database_unprivileged_and_persistent(trees: dict[str, Tree]) -> None:
    db = services(trees["compose"])["postgres"]
    assert db["image"] == postgres.IMAGE and not db["image"].endswith(":latest")
    assert db["user"] == "70:70"
    assert db["read_only"] is True and db["cap_drop"] == ["ALL"]
    assert db["volumes"][0] == f"postgres-data:{postgres.DATA_DIR}"
    assert db["environment"]["PGDATA"].startswith(postgres.DATA_DIR + "/")
    assert db["stop_signal"] == "SIGINT"


def test_swarm_has_no_depends_on_and_keeps_the_database_on_its_node(trees: dict[str, Tree]) -> None:
    found = services(trees["swarm"])
    assert all("depends_on" not in service for service in found.values())
    # No readiness in Swarm either (its health check is /healthz): an app that connects as it starts
    # restarts until the database answers, rather than giving up after three tries.
    assert found["app"]["healthcheck"]["test"][-1] == "flaskprod.servers.healthcheck"
    assert "max_attempts" not in found["app"]["deploy"]["restart_policy"]
    deploy = found["postgres"]["deploy"]
    assert deploy["replicas"] == 1
    assert deploy["placement"]["constraints"] == ["node.labels.shop-postgres == true"]
    assert deploy["update_config"]["order"] == "stop-first"
    assert "docker node update --label-add shop-postgres=true" in trees["swarm"].files["stack.yaml"]


@pytest.mark.parametrize("target", ["compose", "swarm"])
def test_the_database_gets_a_dev_shm_its_parallel_queries_fit_in(
    trees: dict[str, Tree], password_file: Path, target: str
) -> None:
    # Docker's 64 MB /dev/shm fails a parallel hash join ("could not resize shared memory segment"), and
    # `docker stack deploy` ignores shm_size: a tmpfs mount, as docker-compose resolves it, a quarter of the limit.
    tree = trees[target]
    env = {
        **clean_env(),
        "FLASK_SECRET_KEY": secrets.token_hex(32),
        "POSTGRES_PASSWORD_FILE": str(password_file),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),
    }
    db = compose_config(tree.path / COMPOSE_FILES[target], env)["services"]["postgres"]
    assert "shm_size" not in db
    (shm,) = [v for v in db["volumes"] if isinstance(v, dict) and v.get("target") == "/dev/shm"]
    memory = parse_size(tree.d.spec.deploy.postgres_memory)
    assert shm["type"] == "tmpfs" and shm["tmpfs"]["size"] == memory // 4 > 64 * 2**20


def test_the_database_pod_gets_a_dev_shm_as_compose_does(trees: dict[str, Tree]) -> None:
    # The kubelet's /dev/shm is 64 MB too: a memory-backed emptyDir of the same quarter of the limit.
    pod = k8s_object(trees["k8s"], "StatefulSet", "shop-postgres")["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    memory = parse_size(trees["k8s"].d.spec.deploy.postgres_memory)
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{memory // 4 // 2**20}Mi"}


def test_kubernetes_runs_one_database_pod_with_a_claim_of_its_own(trees: dict[str, Tree]) -> None:
    tree = trees["k8s"]
    statefulset = k8s_object(tree, "StatefulSet", "shop-postgres")["spec"]
    service = k8s_object(tree, "Service", "shop-postgres")["spec"]
    assert statefulset["replicas"] == 1
    assert statefulset["serviceName"] == "shop-postgres" and service["clusterIP"] == "None"
    (claim,) = statefulset["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    container = k8s_container(tree, "StatefulSet", "shop-postgres", "postgres")
    assert {"name": claim["metadata"]["name"], "mountPath": postgres.DATA_DIR} in container["volumeMounts"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] >= 10000
    assert security["readOnlyRootFilesystem"] is True
    # Probes over TCP, and a fast shutdown that ends the app's pooled sessions within the grace period.
    assert container["readinessProbe"]["exec"]["command"][:3] == ["pg_isready", "-h", "127.0.0.1"]
    stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert stop[:4] == ["pg_ctl", "stop", "-m", "fast"]
    pod = k8s_object(tree, "StatefulSet", "shop-postgres")["spec"]["template"]["spec"]
    assert int(stop[-1]) < pod["terminationGracePeriodSeconds"]


def test_kubernetes_lets_only_the_app_pods_in(trees: dict[str, Tree]) -> None:
    tree = trees["k8s"]
    app_selector = k8s_object(tree, "Deployment", "shop")["spec"]["selector"]["matchLabels"]
    database_labels = k8s_object(tree, "StatefulSet", "shop-postgres")["spec"]["template"]["metadata"]["labels"]
    # The app's Service, budget and policy select by its labels: none of them may pick the database.
    assert not set(app_selector.items()) <= set(database_labels.items())
    policy = k8s_object(tree, "NetworkPolicy", "shop-postgres")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= database_labels.items()
    assert policy["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": app_selector}}], "ports": [{"protocol": "TCP", "port": "postgres"}]}
    ]
    # The app reaches it by the headless Service's name, and its pods take traffic once /readyz (which
    # pings the database) answers through nginx.
    assert make_url(app_env(tree)["DATABASE_URL"]).host == "shop-postgres"
    readiness = k8s_container(tree, "Deployment", "shop", "nginx")["readinessProbe"]["httpGet"]
    assert readiness["path"] == tree.d.spec.monitoring.ready_path


# --- where it cannot apply --------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["single", "systemd"])
def test_targets_without_room_for_a_database_refuse_it(tmp_path: Path, target: str) -> None:
    with pytest.raises(BuildError) as info:
        build(make_spec(), target=target, extras=("postgres",), root=write_project(tmp_path), environ=clean_env())
    message = str(info.value)
    assert "\n" not in message
    offered = {"single": "it takes none", "systemd": "it offers monitoring, tls"}[target]
    assert message == (
        f"--with postgres is not available for --target {target} ({offered}): use --target compose, "
        "compose-uwsgi, swarm or k8s, or give the app a PostgreSQL you run, its URL in database.url_env"
    )
    assert not (tmp_path / "deploy").exists()


@pytest.mark.parametrize("target", ["compose", "swarm", "k8s"])
def test_pools_the_app_would_not_be_told_are_refused(tmp_path: Path, target: str) -> None:
    with pytest.raises(BuildError, match=r"database\.engine_options, and it is false; set it to true"):
        build_tree(write_project(tmp_path), target, {**SIZED, "database.engine_options": "false"}, ("postgres",))


@pytest.mark.integration
def test_the_command_refuses_it_on_one_line(project: Path) -> None:  # noqa: F811
    result = flaskprod_build(project, "--target", "systemd", "--with", "postgres")
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith("Error: --with postgres is not available for --target systemd")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project / "deploy").exists()


# --- run natively: the rendered server settings, the image's role and database, the app's environment -----


@contextlib.contextmanager
def rendered_postgres(
    command: list[str], server_env: Mapping[str, str], password_file: Path
) -> Iterator[ThrowawayPostgres]:
    """A real PostgreSQL started with the rendered settings, holding what the image's entrypoint creates at
    first start: a superuser named POSTGRES_USER whose password is POSTGRES_PASSWORD_FILE's content as bash's
    $(< file) reads it, and the database POSTGRES_DB. TCP logins need that password (scram-sha-256)."""
    server = ThrowawayPostgres.create(settings=server_settings(command), initdb_args=("--auth-host=scram-sha-256",))
    try:
        password = password_file.read_text().rstrip("\n")
        role, database = server_env["POSTGRES_USER"], server_env["POSTGRES_DB"]
        with contextlib.closing(admin_connection(server)) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} SUPERUSER LOGIN PASSWORD %s").format(sql.Identifier(role)), [password])
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role)))
        yield server
    finally:
        server.close()


def admin_connection(server: ThrowawayPostgres) -> Any:
    """The cluster's own superuser over its unix socket (trusted), as an operator's psql would be."""
    conn = psycopg2.connect(host=str(server.socket_dir), port=server.port, user="postgres", dbname="postgres")
    conn.autocommit = True
    return conn


def query(server: ThrowawayPostgres, statement: str, *args: object) -> Any:
    with contextlib.closing(admin_connection(server)) as conn, conn.cursor() as cur:
        cur.execute(statement, args)
        return cur.fetchone()[0]


@pytest.mark.integration
def test_the_rendered_database_and_app_run_together(project: Path, tmp_path: Path) -> None:  # noqa: F811
    result = flaskprod_build(project, "--target", "compose", "--with", "postgres")
    assert result.returncode == 0, result.stderr
    out = project / "deploy" / "compose"
    stack = yaml.safe_load((out / "compose.yaml").read_text())["services"]
    db, app = stack["postgres"], stack["app"]
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir(mode=0o700)
    password_file = secret_dir / "postgres_password"
    password_file.write_text(secrets.token_hex(32) + "\n")  # as the file's header says to make it

    with rendered_postgres(db["command"], db["environment"], password_file) as server:
        settings = server_settings(db["command"])
        # The server took the rendered settings.
        assert query(server, "SHOW max_connections") == settings["max_connections"]
        assert query(server, "SHOW shared_buffers") == settings["shared_buffers"]

        dockerfile = (out / "Dockerfile").read_text()
        env = clean_env(**dockerfile_env(dockerfile))
        for name, value in app["environment"].items():
            if name != "FLASK_SECRET_KEY":  # `${FLASK_SECRET_KEY:?...}`: clean_env's strong key stands in
                env[name] = str(value)
        # Only the container's addresses and paths are mapped onto this machine.
        assert env["DATABASE_PASSWORD_FILE"] == "/run/secrets/postgres_password"
        env["DATABASE_PASSWORD_FILE"] = str(password_file)
        assert "@postgres:5432/" in env["DATABASE_URL"]
        env["DATABASE_URL"] = env["DATABASE_URL"].replace("@postgres:5432/", f"@127.0.0.1:{server.port}/")
        port = free_port()
        env["FLASKPROD_SERVER__BIND"] = f"127.0.0.1:{port}"
        command = dockerfile_json(dockerfile, "CMD")
        command[0] = str(BIN / command[0])
        base = f"http://127.0.0.1:{port}"
        log = tmp_path / "app.log"
        with log.open("w") as out_log, running(command, env=env, cwd=project, stdout=out_log, stderr=out_log) as proc:

            def ready() -> bool:
                assert proc.poll() is None, log.read_text()
                return requests.get(f"{base}/readyz", timeout=5).status_code == 200

            wait_for(ready, timeout=60, what="/readyz to answer 200 with the rendered database")
            page = requests.get(f"{base}/api/db", timeout=10)
            assert page.status_code == 200, page.text
            assert page.json()["count"] == 3  # the demo board's tasks, written and read back through PostgreSQL
            role = db["environment"]["POSTGRES_USER"]
            # The app's sessions logged in as the image's role, with the file's password (TCP needs it).
            assert query(server, "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", role) >= 1
            with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
                psycopg2.connect(host="127.0.0.1", port=server.port, user=role, password="wrong", dbname=role)

            # Readiness is what Kubernetes waits on instead of depends_on (nginx's probe asks /readyz): it
            # follows the database.
            server.stop()
            wait_for(lambda: requests.get(f"{base}/readyz", timeout=5).status_code == 503, timeout=30,
                     what="/readyz to answer 503 with the database stopped")
            server.start()
            wait_for(ready, timeout=30, what="/readyz to answer 200 again once the database is back")
