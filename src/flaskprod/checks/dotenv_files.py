"""The dotenv files `flask run` loads (.env, .flaskenv) as python-dotenv reads them, and the variables the project's
deployment files give the app: what FP-C019 compares, as production servers load no dotenv file."""

from __future__ import annotations

import ast
import fnmatch
import re
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from .. import dotenv
from ..render.image import DOCKERIGNORE
from . import dockerfiles
from .context import Context, ProjectFile, call_name, deployment_files, for_development, walk
from .security import env_files_read, env_pairs


def flask_dotenv_files(context: Context) -> Iterator[ProjectFile]:
    """The dotenv files `flask run` loads from the project's folder, in its order (a value set first wins)."""
    for name in dotenv.FILES:
        path = context.root / name
        if path.is_file():
            yield ProjectFile(path, name)


def loaded_by_code(context: Context) -> set[str]:
    """The dotenv files (by name) the project's own code loads: python-dotenv's load_dotenv() or dotenv_values()
    (.env, or the files named), Flask's flask.cli.load_dotenv() (both), environs' read_env(), pydantic-settings'
    env_file, dynaconf's FlaskDynaconf (.env)."""
    return set(loaders(context))


def loaders(context: Context) -> dict[str, str]:
    """file:line of the first load, by the name of each dotenv file the project's own code loads (loaded_by_code)."""
    loaded: dict[str, str] = {}

    def add(names: Iterable[str], item: ProjectFile, node: ast.AST) -> None:
        for name in names:
            loaded.setdefault(name, item.at(getattr(node, "lineno", 1)))

    for item, tree in context.python_files():
        flask_loader = any(isinstance(node, ast.ImportFrom) and node.module == "flask.cli" for node in walk(tree))
        for node in walk(tree):
            if isinstance(node, ast.Call) and call_name(node) in ("load_dotenv", "dotenv_values", "read_env"):
                named = {_basename(s) for arg in node.args for s in _strings(arg)}
                via_flask = flask_loader or (isinstance(node.func, ast.Attribute) and _names_cli(node.func.value))
                if named:
                    add(named, item, node)
                elif call_name(node) == "load_dotenv" and via_flask:
                    add(dotenv.FILES, item, node)
                else:
                    add([".env"], item, node)  # find_dotenv()'s, and a path check cannot read
            elif isinstance(node, ast.Call) and call_name(node) == "FlaskDynaconf" and _loads_dotenv(node):
                add([".env"], item, node)  # dynaconf's LOAD_DOTENV, on for Flask
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "env_file":
                        add({_basename(s) for s in _strings(keyword.value)}, item, node)
            elif isinstance(node, ast.Assign) and any(_is_named(t, "env_file") for t in node.targets):
                add({_basename(s) for s in _strings(node.value)}, item, node)  # pydantic v1's class Config
    return loaded


def left_out_of_builds(name: str) -> bool:
    """Whether the built targets leave a file at the project's root out of what they ship: the images'
    .dockerignore (render/image.py's DOCKERIGNORE: .env, .env.*), which the VM's copy follows too. `up` links such
    files into its release instead (stack/releases.py's SHARED)."""
    patterns = [line.strip().removeprefix("**/") for line in DOCKERIGNORE.splitlines()]
    return any(fnmatch.fnmatchcase(name, p) for p in patterns if p and not p.startswith(("#", "!")) and "/" not in p)


def _loads_dotenv(node: ast.Call) -> bool:
    given = [kw.value for kw in node.keywords if kw.arg is not None and kw.arg.upper() == "LOAD_DOTENV"]
    return not any(isinstance(value, ast.Constant) and value.value is False for value in given)


def _is_named(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _names_cli(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "cli") or (isinstance(node, ast.Attribute) and node.attr == "cli")


def _strings(node: ast.expr) -> Iterator[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, (ast.Tuple, ast.List)):
        for element in node.elts:
            yield from _strings(element)


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


# Compose's interpolation: ${NAME}, ${NAME:-default}, $NAME (but $$, an escaped dollar).
_REFERENCE = re.compile(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)")
# systemd's Environment="A=1" "B=2" (or unquoted): each word one assignment.
_UNIT_ENVIRONMENT = re.compile(r"^\s*Environment\s*=(.*)$")


def passed_names(context: Context) -> set[str]:
    """Every variable the project's deployment files give the app, or read from where they are used: the environment:
    of the Compose services that run the app (app_services) and the names Compose interpolates from the shell or its
    own .env (but into another service's environment), Kubernetes' env (and envFrom's
    ConfigMaps and Secrets), App Engine's env_variables, a Dockerfile's ENV (but a development stage's), systemd's
    Environment=, and the env files systemd's EnvironmentFile= and the app services' Compose env_file: name."""
    names: set[str] = set()
    for item in deployment_files(context.files_named("*.yml", "*.yaml")):
        if not item.path.name.startswith("."):  # .gitlab-ci.yml and the like: a CI job's environment
            names |= _yaml_names(item)
    for item in dockerfiles.dockerfiles(context):
        for instruction in dockerfiles.instructions(item):
            if instruction.keyword == "ENV" and not for_development(instruction.stage):
                names |= {name for name, _ in env_pairs(instruction.arguments)}
    for item in deployment_files(context.files_named("*.service")):
        for _, text in item.logical_lines():
            if environment := _UNIT_ENVIRONMENT.match(text):
                names |= {word.split("=", 1)[0] for word in _words(environment[1]) if "=" in word}
    # Compose's env_file: gives a file to its service alone, as environment: does: the db's is not the app's.
    compose_read, app_read = _compose_env_files(context)
    for item in context.once(env_files_read):
        path = item.path.resolve()
        if path not in compose_read or path in app_read:
            names |= {binding.name for binding in dotenv.bindings(item.text) if binding.set}
    return names


def _compose_env_files(context: Context) -> tuple[set[Path], set[Path]]:
    """The files (resolved) that the project's Compose files name in env_file:, every service's and those of the
    services that run the app (app_services; not a development profile's)."""
    every: set[Path] = set()
    app_read: set[Path] = set()
    for item in deployment_files(context.files_named("*.yml", "*.yaml")):
        try:
            documents = [d for d in yaml.safe_load_all(item.text) if isinstance(d, dict)]
        except yaml.YAMLError:
            continue
        for document in documents:
            services = document.get("services")
            if not isinstance(services, dict):
                continue
            app = app_services(services, item)
            for key, service in services.items():
                files = set(_env_files_given(item, service))
                every |= files
                if key in app and not _development_only(service):
                    app_read |= files
    return every, app_read


def _env_files_given(item: ProjectFile, service: object) -> Iterator[Path]:
    """The files a Compose service's env_file: names (a path, a list of them, or of {path: ...}), resolved from the
    Compose file's folder."""
    given = service.get("env_file") if isinstance(service, dict) else None
    for entry in given if isinstance(given, list) else [given]:
        path = entry.get("path") if isinstance(entry, dict) else entry
        if isinstance(path, str) and path:
            try:
                yield (item.path.parent / path).resolve()
            except (OSError, RuntimeError):
                continue


def _development_only(service: object) -> bool:
    """A Compose service only development profiles start, as compose.development_lines leaves it out."""
    profiles = service.get("profiles") if isinstance(service, dict) else None
    return isinstance(profiles, list) and bool(profiles) and all(for_development(str(p)) for p in profiles)


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


def _yaml_names(item: ProjectFile) -> set[str]:
    try:
        documents = [d for d in yaml.safe_load_all(item.text) if isinstance(d, dict)]
    except yaml.YAMLError:
        return set()
    names: set[str] = set()
    config_keys: set[str] = set()
    from_config = False
    for document in documents:
        services = document.get("services")
        if isinstance(services, dict):
            app = app_services(services, item)
            names |= _compose_names({key: services[key] for key in app})
            # What Compose interpolates from the shell or its .env: the app's environment, or Compose's own
            # (image: tags, ports), but not a value only another service's environment gets (the db's password).
            others = {key: {**service, "environment": None} for key, service in services.items() if key not in app}
            names |= set(_REFERENCE.findall(" ".join(_scalars({**document, "services": {**services, **others}}))))
        if isinstance(document.get("env_variables"), dict):  # App Engine's app.yaml
            names |= {str(name) for name in document["env_variables"]}
        if document.get("kind") in ("ConfigMap", "Secret"):
            for section in ("data", "stringData"):
                if isinstance(document.get(section), dict):
                    config_keys |= {str(key) for key in document[section]}
        for entries, envfrom in _k8s_env(document):
            names |= {str(e["name"]) for e in entries if isinstance(e, dict) and "name" in e}
            from_config = from_config or envfrom
    return names | (config_keys if from_config else set())


# Images of what the app talks to, never the app: a variable only their environment gets is not the app's.
_STOCK_IMAGES = (
    "nginx", "postgres", "postgis", "mysql", "mariadb", "redis", "valkey", "memcached", "rabbitmq", "mongo",
    "traefik", "caddy", "httpd", "haproxy", "minio", "mailhog", "mailpit", "prometheus", "grafana", "alertmanager",
    "adminer", "pgadmin", "dpage", "elasticsearch", "opensearch", "certbot", "envoy", "kafka", "zookeeper",
)  # fmt: skip
# A command that serves or runs the app: its server, Flask's CLI, flaskprod.
_APP_COMMAND = re.compile(r"\b(?:gunicorn|uwsgi|flask|flaskprod|waitress-serve|hypercorn|uvicorn|celery)\b")


def app_services(services: dict[object, object], item: ProjectFile) -> set[object]:
    """The Compose services that run the app: built from a project Dockerfile (not one FROM nginx or postgres), running
    the image such a service builds (its image:, or Compose's default name, <project>-<service>), or a command that
    serves the app (gunicorn, uwsgi, flask, flaskprod). When none is, every service but those of a known image of
    something else (nginx, postgres, redis): the app's image may come from a registry alone."""
    built = {key for key, service in services.items() if isinstance(service, dict) and _builds_app(service, item)}
    images = {_image_name(s.get("image")) for key, s in services.items() if key in built and isinstance(s, dict)}
    found = set(built)
    for key, service in services.items():
        if not isinstance(service, dict) or key in found:
            continue
        image = _image_name(service.get("image"))
        runs = " ".join(_scalars([service.get("command"), service.get("entrypoint")]))
        made_here = image in images or any(image == str(b) or image.endswith((f"-{b}", f"_{b}")) for b in built)
        if (image and made_here) or _APP_COMMAND.search(runs):
            found.add(key)
    if found:
        return found
    return {key for key, service in services.items() if isinstance(service, dict) and not _stock(service.get("image"))}


def _builds_app(service: dict[object, object], item: ProjectFile) -> bool:
    build = service.get("build")
    if isinstance(build, str):
        context, dockerfile = build, "Dockerfile"
    elif isinstance(build, dict):
        context, dockerfile = str(build.get("context", ".")), str(build.get("dockerfile", "Dockerfile"))
    else:
        return False
    if _stock(service.get("image")):
        return False
    path = item.path.parent / context / dockerfile
    try:
        text = path.read_text(errors="replace") if path.is_file() else ""
    except OSError:
        text = ""
    bases = re.findall(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", text, re.IGNORECASE | re.MULTILINE)
    return not bases or not _stock(bases[-1])  # the last stage is what runs


def _image_name(image: object) -> str:
    """An image's repository name alone: `shop` for registry.example.com:5000/team/shop:1.2@sha256:..."""
    if not isinstance(image, str):
        return ""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def _stock(image: object) -> bool:
    name = _image_name(image)
    return bool(name) and name.startswith(_STOCK_IMAGES)


def _scalars(node: object) -> Iterator[str]:
    """Every string in a YAML document, keys too."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _scalars(value)
    elif isinstance(node, list):
        for value in node:
            yield from _scalars(value)
    elif isinstance(node, str):
        yield node


def _compose_names(services: dict[object, object]) -> set[str]:
    names: set[str] = set()
    for service in services.values():
        if not isinstance(service, dict):
            continue
        if _development_only(service):
            continue
        environment = service.get("environment")
        if isinstance(environment, dict):
            names |= {str(name) for name in environment}
        elif isinstance(environment, list):
            names |= {str(entry).split("=", 1)[0].strip() for entry in environment}
    return names


def _k8s_env(node: object) -> Iterator[tuple[list[object], bool]]:
    """Each container's env list in a manifest, and whether it has envFrom too."""
    if isinstance(node, dict):
        if isinstance(node.get("env"), list) or "envFrom" in node:
            env = node.get("env")
            yield (env if isinstance(env, list) else []), "envFrom" in node
        for value in node.values():
            yield from _k8s_env(value)
    elif isinstance(node, list):
        for value in node:
            yield from _k8s_env(value)
