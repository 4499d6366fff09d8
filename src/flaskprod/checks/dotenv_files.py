"""The dotenv files `flask run` loads (.env, .flaskenv) as python-dotenv reads them, and the variables the project's
deployment files give the app: what FP-C019 compares, as production servers load no dotenv file."""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

import yaml

from .. import discovery
from . import dockerfiles
from .context import Context, ProjectFile, call_name, deployment_files, for_development, walk
from .security import env_files_read, env_pairs

# python-dotenv's grammar (dotenv/parser.py): `export`, a quoted or bare key, `=`, a value in single quotes, in
# double quotes (which may span lines) or bare up to a ` #` comment; a line it cannot parse is skipped.
_SPACE = r"[^\S\r\n]*"
_BINDING = re.compile(
    rf"{_SPACE}(?:export[^\S\r\n]+)?(?:'(?P<quoted_key>[^']+)'|(?P<key>[^=\#\s]+)){_SPACE}"
    rf"""(?:(?P<equals>=){_SPACE}(?:'(?P<single>(?:\\'|[^'])*)'|"(?P<double>(?:\\"|[^"])*)"|(?P<bare>[^\r\n]*)))?"""
)
_END = re.compile(rf"(?:{_SPACE}#[^\r\n]*)?{_SPACE}(?:\r\n|\n|\r|$)")
_REST_OF_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)?")
_BLANK = re.compile(r"\s*")


@dataclass(frozen=True, kw_only=True)
class Binding:
    line: int
    name: str
    set: bool  # NAME=... sets it (to "" too); a bare NAME sets nothing (python-dotenv's value None)
    empty: bool


def bindings(text: str) -> Iterator[Binding]:
    """The variables a dotenv file sets, in order, as python-dotenv parses it; the values are left out, so that no
    message can show one."""
    position = 0
    while position < len(text):
        position = _BLANK.match(text, position).end()  # type: ignore[union-attr]  # \s* always matches
        if position >= len(text):
            return
        line = text.count("\n", 0, position) + 1
        binding = None if text.startswith("#", position) else _BINDING.match(text, position)
        end = None if binding is None else _END.match(text, binding.end())
        if binding is None or end is None:
            position = _REST_OF_LINE.match(text, position).end()  # type: ignore[union-attr]
            continue
        position = end.end()
        name = binding["quoted_key"] or binding["key"]
        value = binding["single"] if binding["single"] is not None else binding["double"]
        if value is None and binding["bare"] is not None:
            value = re.sub(r"\s+#.*", "", binding["bare"]).rstrip()
        yield Binding(line=line, name=name, set=binding["equals"] is not None, empty=not value)


def flask_dotenv_files(context: Context) -> Iterator[ProjectFile]:
    """The dotenv files `flask run` loads from the project's folder, in its order (a value set first wins)."""
    for name in discovery.DOTENV_FILES:
        path = context.root / name
        if path.is_file():
            yield ProjectFile(path, name)


def loaded_by_code(context: Context) -> set[str]:
    """The dotenv files (by name) the project's own code loads, so that they reach the app wherever it runs:
    python-dotenv's load_dotenv() or dotenv_values() (.env, or the files named), Flask's flask.cli.load_dotenv()
    (both), environs' read_env(), pydantic-settings' env_file."""
    loaded: set[str] = set()
    for _, tree in context.python_files():
        flask_loader = any(isinstance(node, ast.ImportFrom) and node.module == "flask.cli" for node in walk(tree))
        for node in walk(tree):
            if isinstance(node, ast.Call) and call_name(node) in ("load_dotenv", "dotenv_values", "read_env"):
                named = {_basename(s) for arg in node.args for s in _strings(arg)}
                via_flask = flask_loader or (isinstance(node.func, ast.Attribute) and _names_cli(node.func.value))
                if named:
                    loaded |= named
                elif call_name(node) == "load_dotenv" and via_flask:
                    loaded |= set(discovery.DOTENV_FILES)
                else:
                    loaded.add(".env")  # find_dotenv()'s, and a path check cannot read
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "env_file":
                        loaded |= {_basename(s) for s in _strings(keyword.value)}
            elif isinstance(node, ast.Assign) and any(_is_named(t, "env_file") for t in node.targets):
                loaded |= {_basename(s) for s in _strings(node.value)}  # pydantic v1's class Config
    return loaded


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
    """Every variable the project's deployment files give the app, or read from where they are used: Compose's
    environment: (and the names it interpolates from the shell or its own .env), Kubernetes' env (and envFrom's
    ConfigMaps and Secrets), App Engine's env_variables, a Dockerfile's ENV (but a development stage's), systemd's
    Environment=, and the env files Compose's env_file: and systemd's EnvironmentFile= name."""
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
    for item in context.once(env_files_read):
        names |= {binding.name for binding in bindings(item.text) if binding.set}
    return names


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
            names |= _compose_names(services)
            names |= set(_REFERENCE.findall(item.text))
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


def _compose_names(services: dict[object, object]) -> set[str]:
    names: set[str] = set()
    for service in services.values():
        if not isinstance(service, dict):
            continue
        profiles = service.get("profiles")
        if isinstance(profiles, list) and profiles and all(for_development(str(p)) for p in profiles):
            continue  # started only for development, as compose.development_lines leaves it out
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
