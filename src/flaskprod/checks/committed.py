"""What the repository holds that it should not: secrets written in files git tracks (an instance folder's, a .env,
an env file the deployment reads, the code and its config) and a database committed in the instance folder.

Each is in the repository's history too, so every fix ends with changing the secret, or purging the file."""

from __future__ import annotations

import ast
import base64
import contextlib
import itertools
import json
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from .compose import development_lines
from .context import (
    MAX_FILE_BYTES,
    Context,
    ProjectFile,
    call_name,
    for_development,
    walk,
)
from .registry import WARNING, Found, check
from .security import (
    SECRET_NAME,
    config_modules,
    development_exempt_lines,
    env_files_read,
    instance_folders,
    literal_value,
    relative_folder,
    tracked_instance_files,
)

# Security checks, on the reference page among the others (FP-S).
TOPIC = "security"


def _git_tracked(context: Context, *pathspecs: str) -> Iterator[Path]:
    """The project's files git tracks that match pathspecs: committed (or added), so in the repository whatever
    .gitignore says now. None when git is missing or the project is no git repository."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", *pathspecs], cwd=context.root, capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return  # no git to ask
    if listed.returncode == 0:  # else no repository here, or the paths are outside it
        names = listed.stdout.decode("utf-8", "surrogateescape").split("\0")
        yield from ((context.root / name).resolve() for name in names if name)


# A setting or variable named for a secret: MAIL_PASSWORD, STRIPE_API_KEY, GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY.
_SECRET_WORDS = re.compile(r"SECRET|PASSWORD|PASSWD|PASSPHRASE|TOKEN|API_?KEY|PRIVATE_KEY|ACCESS_KEY|CREDENTIAL", re.I)
# ... but not one naming something about a secret: its file (FLASK_SECRET_KEY_FILE), lifetime, hash scheme, user.
_ABOUT_A_SECRET = frozenset({
    "FILE", "PATH", "DIR", "URL", "URI", "ENDPOINT", "EXPIRES", "TTL", "LENGTH", "AGE", "ALGORITHM", "HASH",
    "SCHEMES", "NAME", "HEADER", "LOCATION", "TYPE", "ENABLED", "REQUIRED", "TIMEOUT", "HOST", "PORT", "METHOD",
    "FIELD", "MODE", "USER", "USERNAME",
})
# A URL with a password in it: postgresql://app:hunter2@db/app, redis://:hunter2@cache:6379/0.
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*:([^@\s/]+)@")
_NOT_A_SECRET = frozenset({"true", "false", "none", "null", "0", "1"})


def _secret_written(name: str, value: str) -> str | None:
    """How a message says name's value is a secret written out: "has a password" for a URL with one in it, "is a
    string" for a setting named for a secret; None for anything else, a reference (${DB_PASSWORD}) or a
    placeholder (changeme, <password>, xxx)."""
    password = _URL_PASSWORD.match(value)
    if password is not None:
        # A URL's password may be short (postgresql://app:pw@db/app): one character alone stands for one.
        return None if _placeholder(password[1], name, shortest=2) else "has a password"
    if _named_for_a_secret(name) and value.lower() not in _NOT_A_SECRET:
        return None if _placeholder(value, name) or _not_a_value(value) else "is a string"
    return None


def _named_for_a_secret(name: str) -> bool:
    """Whether name is a secret's (MAIL_PASSWORD, STRIPE_API_KEY), not something's about one (its _FILE, _TTL)."""
    return _SECRET_WORDS.search(name) is not None and name.upper().split("_")[-1] not in _ABOUT_A_SECRET


# What a sample file, a tutorial or a form writes where the secret goes, as secret scanners allow for (gitleaks'
# stopwords, detect-secrets' templated-secret filter): a reference, a fill-me-in word, a run of one character.
_TEMPLATED = ("$", "{", "%(", "<", "[", "*")
_FILL_IN = re.compile(
    r"change[-_]?(?:me|this)|replace|your|example|placeholder|dummy|fake|x{3,}|todo|fixme|redacted|\.{3,}", re.I
)
# Base64 writes any given three letters once in some 30,000 characters, so a private key or a long token holds "xxx",
# "todo" or "your" now and then; a fill-in word this long (EXAMPLE, changeme), or "...", chance writes into none.
_CHANCE_WORD_LENGTH = 6
_SECRET_VOCABULARY = frozenset({"password", "passwd", "pass", "secret", "token", "key", "apikey", "credentials"})


def _placeholder(value: str, name: str, *, shortest: int = 4) -> bool:
    """Whether value stands in for a secret rather than being one: empty, a template or reference (${DB_PASSWORD},
    <password>, %(pw)s), written with a fill-me-in word (changeme, your-api-key, TODO), one character repeated, the
    setting's own name or a word for a secret (Kind.PASSWORD = "password")."""
    bare = re.sub(r"[\s_.-]", "", value.lower())
    return (
        len(value.strip()) < shortest
        or value.lstrip().startswith(_TEMPLATED)
        or "${" in value
        or "{{" in value
        or _filled_in(value)
        or len(set(bare)) <= 1
        or bare in _SECRET_VOCABULARY
        or bare in re.sub(r"[_.-]", "", name.lower())
    )


def _filled_in(value: str) -> bool:
    """Whether value is written with a fill-in word (changeme, your-api-key-here, sk_live_xxxx, AKIA...EXAMPLE,
    MIIE...), one that is not a few letters chance wrote inside a long random run (a token or a key's base64)."""
    return any(not _by_chance(value, word) for word in _FILL_IN.finditer(value))


def _by_chance(value: str, word: re.Match[str]) -> bool:
    """Whether word, a fill-in word found in value, is chance's: a few letters glued to the letters and digits of a
    long random run (Zk3p9QaL2xxxVb7Rt5...), not a word of its own (fake_9f8e7d..., your-token-...)."""
    start, end = word.span()
    if not word[0].isalpha() or len(word[0]) >= _CHANCE_WORD_LENGTH:
        return False
    if not (value[start - 1 : start].isalnum() or value[end : end + 1].isalnum()):
        return False
    run = next((r for r in _TOKEN_CHARS.finditer(value) if r.start() <= start and end <= r.end()), None)
    return run is not None and _random_token(run[0])


def _not_a_value(value: str) -> bool:
    """A string under a secret's name that is something else: a sentence (a form label, a message), a URL without
    a password (a token endpoint)."""
    return any(char.isspace() for char in value.strip()) or re.match(r"^[a-z][a-z0-9+.-]*://", value, re.I) is not None


@dataclass(frozen=True, kw_only=True)
class _WrittenSecret:
    line: int
    name: str
    what: str  # "has a password", "is a string"


def _target_name(node: ast.expr) -> str | None:
    """The setting an assignment target names: MAIL_PASSWORD, app.config["MAIL_PASSWORD"], self.MAIL_PASSWORD."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return node.slice.value
    return None


def _strings_written(node: ast.expr) -> Iterator[str]:
    """The strings written in node that it can be: "x", os.environ.get("X", "x"), os.getenv("X") or "x"."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            yield from _strings_written(value)
    elif isinstance(node, ast.IfExp):
        yield from (*_strings_written(node.body), *_strings_written(node.orelse))
    elif isinstance(node, ast.Call) and call_name(node) in ("get", "getenv"):
        yield from (s for default in node.args[1:2] for s in _strings_written(default))


def _python_settings(tree: ast.Module) -> Iterator[tuple[int, str, ast.expr]]:
    """(line, name, value) of each setting a Python config file writes: NAME = v, config["NAME"] = v,
    from_mapping(NAME=v), {"NAME": v}."""
    for node in walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                name = _target_name(target)
                if name is not None:
                    yield node.lineno, name, node.value
        elif isinstance(node, ast.Call):
            yield from ((kw.value.lineno, kw.arg, kw.value) for kw in node.keywords if kw.arg is not None)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    yield value.lineno, key.value, value


# NAME=value (.env, .ini), export NAME=value, NAME = "value" (TOML), "NAME": "value" (JSON), NAME: value (YAML).
_TEXT_SETTING = re.compile(r"""^\s*(?:export\s+)?["']?([A-Za-z_][A-Za-z0-9_.-]*)["']?\s*[=:]\s*(.*)$""")


def _secrets_written(item: ProjectFile, *, python: bool) -> Iterator[_WrittenSecret]:
    """The secrets a config file writes out: parsed as Python when it can be and is (from_pyfile runs config.py
    and settings.cfg alike), else read line by line (.env, JSON, TOML, YAML, INI). Nothing of a binary file (a
    database: FP-S012's) or one larger than the checks read."""
    try:
        if item.path.stat().st_size > MAX_FILE_BYTES or "\0" in item.text:
            return
    except OSError:
        return
    tree: ast.Module | None = None
    if python:
        with contextlib.suppress(SyntaxError, ValueError, RecursionError, MemoryError):
            tree = ast.parse(item.text)
    if tree is not None and tree.body:
        for line, name, value in _python_settings(tree):
            what = next((w for s in _strings_written(value) if (w := _secret_written(name, s))), None)
            if what is not None:
                yield _WrittenSecret(line=line, name=name, what=what)
        return
    for line, text in item.lines():
        setting = _TEXT_SETTING.match(text)
        if setting is None or text.lstrip().startswith(("#", ";")):
            continue
        what = _secret_written(setting[1], literal_value(setting[2].rstrip().removesuffix(",")))
        if what is not None:
            yield _WrittenSecret(line=line, name=setting[1], what=what)


@dataclass(frozen=True, kw_only=True)
class _TrackedFile:
    """A file git tracks that Flask's docs keep out of the repository."""

    item: ProjectFile
    where: str  # how a message names it
    hint: str
    instance: bool  # in the instance folder (else a dotenv file)


def _tracked_secret_files(context: Context) -> Iterator[_TrackedFile]:
    """Each file git tracks that Flask's docs keep out of the repository: the
    instance folder's, and the dotenv files `flask run` loads (.env, .flaskenv, .env.production; not
    .env.example and the like, nor development's)."""
    root = context.root.resolve()
    tracked = set(context.once(tracked_instance_files))
    for folder in instance_folders(context):
        relative = relative_folder(folder, root)
        for path in sorted(p for p in tracked if p.is_relative_to(folder) and p.is_file()):
            item = ProjectFile(path, relative_folder(path, root))
            hint = _TRACKED_SECRET_HINT.format(remove=f"-r {relative}/", ignore=f"{relative}/", also="")
            yield _TrackedFile(item=item, where=f"{item.rel}, {_IN_TRACKED_INSTANCE}", hint=hint, instance=True)
    dotenv = set(_git_tracked(context, ":(glob)**/.env", ":(glob)**/.env.*", ":(glob)**/.flaskenv"))
    for path in sorted(dotenv):
        item = ProjectFile(path, relative_folder(path, root))
        variant = path.name.removeprefix(".env").removeprefix(".")
        if variant.lower() in _ENV_SAMPLES or for_development(item.rel) or not path.is_file():
            continue
        hint = _TRACKED_SECRET_HINT.format(remove=item.rel, ignore=item.rel, also=_ENV_SAMPLE_HINT)
        yield _TrackedFile(item=item, where=f"{item.rel}, a dotenv file that git tracks", hint=hint, instance=False)
    # Compose's env_file: and systemd's EnvironmentFile= name files of any name (config/prod.env): as secret as .env.
    tracked = set(context.once(_tracked_files))
    for item in context.once(env_files_read):
        path = item.path.resolve()
        if path in tracked and path not in dotenv and not for_development(item.rel):
            hint = _TRACKED_SECRET_HINT.format(remove=item.rel, ignore=item.rel, also="")
            where = f"{item.rel}, an env file the deployment reads (env_file:, EnvironmentFile=) that git tracks"
            yield _TrackedFile(item=item, where=where, hint=hint, instance=False)


def _tracked_files(context: Context) -> Iterator[Path]:
    """Every file git tracks in the project (resolved); none outside a repository or without git."""
    return _git_tracked(context)


# .env.example and the like: committed on purpose, with the names and no values.
_ENV_SAMPLES = frozenset({"example", "sample", "template", "tmpl", "tpl", "dist", "default", "defaults"})
_ENV_SAMPLE_HINT = " (commit a .env.example with the names alone instead)"
_TRACKED_SECRET_HINT = (
    "take it out of the repository: `git rm --cached {remove}` and add `{ignore}` to .gitignore{also}; the secret "
    "stays in the repository's history, so change it (a new password, token or key) and keep the new one in the "
    "untracked file or the environment"
)


@check(
    "FP-S011",
    WARNING,
    "a password, token or key is written in a file git tracks that Flask keeps out of the repository (the instance "
    "folder, .env, a Compose env_file:): whoever can read the repository, or its history, has it",
    hint="take the file out of the repository (`git rm --cached`, and add it to .gitignore), then change the secret: "
    "the old one stays in the repository's history",
)
def secret_in_tracked_file(context: Context) -> Iterator[Found]:
    for tracked in _tracked_secret_files(context):
        for secret in _secrets_written(tracked.item, python=tracked.instance):
            if tracked.instance and secret.name.upper() == "SECRET_KEY":
                continue  # FP-S004 and FP-S010 report the key, with what the app does with it
            text = f"{secret.name} {secret.what} written in {tracked.where}: {_WHOEVER_READS}"
            yield Found(obj=tracked.item.at(secret.line), text=text, hint=tracked.hint)


_IN_TRACKED_INSTANCE = "a file of the instance folder that git tracks"
_WHOEVER_READS = "whoever can read the repository, or its history, has it"


# Tokens whose shape names them whatever they are assigned to (gitleaks' and trufflehog's rules for these services).
# Stripe's test keys (sk_test_) reach test data only, and tutorials commit them: not reported.
_TOKEN_SHAPES = (
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,})\b")),
    ("a Stripe live key", re.compile(r"\b[sr]k_live_[A-Za-z0-9]{20,}\b")),
    ("an AWS access key ID", re.compile(r"\b(?:AKIA|ASIA)[A-Z2-7]{16}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----(?P<key>.*?)(?:-----END|$)", re.S)),
)
# Hosts a URL's password opens nothing beyond: the development database on the developer's own machine.
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})
# Folders of a project that hold no code a deployment runs: documentation and examples.
_NOT_DEPLOYED = frozenset({"docs", "doc", "examples", "example", "samples", "sample"})


def _token_shape(value: str) -> str | None:
    """What a string holds by its shape (a GitHub token, an AWS access key ID, a private key), but a documented
    example (AKIAIOSFODNN7EXAMPLE) or a fill-in (ghp_xxxx..., a key written as ...)."""
    for name, shape in _TOKEN_SHAPES:
        for token in shape.finditer(value):
            # A private key is judged by its base64 (without line breaks, real or JSON's \n), not its header.
            written = re.sub(r"\s|\\n", "", token["key"]) if name == "a private key" else token[0]
            if not _placeholder(written, ""):
                return name
    return None


def _local_url(value: str) -> bool:
    """Whether value is a URL to a database on this machine (postgresql://app:dev@localhost/app)."""
    try:
        host = urllib.parse.urlsplit(value).hostname
    except ValueError:
        return False
    return host is not None and host.lower() in _LOCAL_HOSTS


def _secrets_in_source(tree: ast.Module) -> Iterator[_WrittenSecret]:
    """The secrets a module writes as strings: a setting named for one (MAIL_PASSWORD = "...",
    app.config["API_TOKEN"] = "...", the default of os.environ.get), a database URL with a password (but one to
    localhost), a token known by its shape wherever it is written. SECRET_KEY is FP-S004's and FP-S010's."""
    lines: set[int] = set()
    for line, name, value in _python_settings(tree):
        if name.upper() == "SECRET_KEY":
            continue
        for string in _strings_written(value):
            secret = _written_secret(line, name, string)
            if secret is not None:
                lines.add(line)
                yield secret
                break
    for node in walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.lineno not in lines:
            shape = _token_shape(node.value)
            if shape is not None:
                lines.add(node.lineno)
                yield _WrittenSecret(line=node.lineno, name="", what=shape)


@check(
    "FP-S013",
    WARNING,
    "a password, token or key is written in the project's code or config that git tracks (a config module, a "
    "database URL, an INI or CFG file such as alembic.ini's sqlalchemy.url or a uWSGI ini's env =, a Compose "
    "service's environment:, a Kubernetes container's env: value or ConfigMap's data:, a committed Secret's value or "
    "a kustomization's secretGenerator literal under a secret's name or a credential by its look (a URL with a "
    "password, a long random token, a private key) or an image pull Secret's registry password or token "
    "(.dockerconfigjson), not a plain setting beside them (APP_ENV: production); not a placeholder (changeme, "
    "your-api-key-here, xxxx: a fill-in word as the value or a word of it, not a few letters chance put inside a long "
    "random token or key), an environment lookup or reference (${DB_PASSWORD}) or a development config, nor a URL to "
    "localhost outside a Secret, taken for the developer's own database; a secret key in a deployment file is "
    "FP-S009's): whoever can read the repository, or its history, has it",
    hint="read it from the environment (os.environ[\"NAME\"], failing when it is missing) or from a file kept out of "
    "the repository (the instance folder), then change the secret: the old one stays in the repository's history",
)
def secret_in_tracked_source(context: Context) -> Iterator[Found]:
    tracked = set(context.once(_tracked_files))
    if not tracked:
        return  # no repository (or no git): the code may be a server's copy, with its configuration in it
    yield from _secrets_in_tracked_config(context, tracked)
    instance = instance_folders(context)
    for item, tree, _ in config_modules(context):
        path = item.path.resolve()
        if path not in tracked or any(path.is_relative_to(folder) for folder in instance):
            continue  # untracked, or the instance folder's (FP-S011's)
        if any(part in _NOT_DEPLOYED or for_development(part) for part in item.rel.split("/")):
            continue
        development = development_exempt_lines(item, tree, context)
        for secret in _secrets_in_source(tree):
            if secret.line not in development:
                # MAIL_PASSWORD is a string ...; a token known by its shape alone: A GitHub token is ...
                unnamed = f"{secret.what[0].upper()}{secret.what[1:]} is"
                what = f"{secret.name} {secret.what}" if secret.name else unnamed
                yield Found(
                    obj=item.at(secret.line),
                    text=f"{what} written in {item.rel}, which git tracks: {_WHOEVER_READS}",
                    hint=_SOURCE_SECRET_HINT.format(name=secret.name or "NAME"),
                )


def _secrets_in_tracked_config(context: Context, tracked: set[Path]) -> Iterator[Found]:
    """FP-S013 in the tracked files beside the code that hold the deployment's secrets: INI and CFG files
    (alembic.ini's sqlalchemy.url, a uWSGI ini's env = NAME=value, any password = ...), the environment: of a
    Compose file's services (but development profiles' and files') and a Kubernetes manifest's (a container's env:
    value, a ConfigMap's or a Secret's data). Files flaskprod wrote (deploy/<target>, marked by their header) are
    not among the project's files, as for the rest."""
    instance = instance_folders(context)
    python = {item.path.resolve() for item, _, loaded in config_modules(context) if loaded is not None}
    for item in context.files_named("*.ini", "*.cfg", "*.yml", "*.yaml"):
        path = item.path.resolve()
        if path not in tracked or not _deployed(item) or item.path.name.lower() in _TOOL_CONFIGS:
            continue
        if path in python or any(path.is_relative_to(folder) for folder in instance):
            continue  # read as Python with the config modules, or the instance folder's (FP-S011's)
        for secret, hint in _secrets_in_config_file(item):
            yield Found(
                obj=item.at(secret.line),
                text=f"{secret.name} {secret.what} written in {item.rel}, which git tracks: {_WHOEVER_READS}",
                hint=hint,
            )


# The INI files of tools a deployment never reads: a test run's environment (pytest-env's env =, tox's setenv).
_TOOL_CONFIGS = frozenset({"setup.cfg", "tox.ini", "pytest.ini", "mypy.ini"})


def _secrets_in_config_file(item: ProjectFile) -> Iterator[tuple[_WrittenSecret, str]]:
    """The secrets a tracked config file writes, each with the hint for its kind of file."""
    if item.path.suffix.lower() in (".ini", ".cfg"):
        alembic = item.path.name.lower() == "alembic.ini"
        for secret in _secrets_in_ini(item):
            hint = _ALEMBIC_SECRET_HINT if alembic and secret.name == "sqlalchemy.url" else _INI_SECRET_HINT
            yield secret, hint.format(name=secret.name)
        return
    yield from ((s, _COMPOSE_SECRET_HINT.format(name=s.name)) for s in _secrets_in_compose(item))
    yield from _secrets_in_manifests(item)


def _deployed(item: ProjectFile) -> bool:
    """Not a dot-file (.gitlab-ci.yml: a CI job's), nor in docs or examples, nor named for development
    (docker-compose.override.yml, compose.dev.yaml)."""
    parts = item.rel.split("/")
    return not parts[-1].startswith(".") and not any(p in _NOT_DEPLOYED or for_development(p) for p in parts)


def _written_secret(line: int, name: str, value: str) -> _WrittenSecret | None:
    """value, as the file writes name's, when it is a secret: a token by its shape, a password in a URL (not to
    localhost), a string under a secret's name; no placeholder or reference."""
    shape = _token_shape(value)
    what = f"is {shape}" if shape else _secret_written(name, value)
    if what is None or (what == "has a password" and _local_url(value)):
        return None
    return _WrittenSecret(line=line, name=name, what=what)


def _secrets_in_ini(item: ProjectFile) -> Iterator[_WrittenSecret]:
    """The options of an INI file with a secret written in them: alembic.ini's sqlalchemy.url with a password,
    password = hunter2, and a uWSGI ini's env = NAME=value as NAME's value."""
    for line, text in item.lines():
        setting = _TEXT_SETTING.match(text)
        if setting is None or text.lstrip().startswith(("#", ";")):
            continue
        name, value = setting[1], literal_value(setting[2])
        if name.lower() == "env" and "=" in value:  # uWSGI's env = DATABASE_URL=postgresql://...
            name, _, value = (part.strip() for part in value.partition("="))
            value = literal_value(value)
        secret = _written_secret(line, name, value)
        if secret is not None:
            yield secret


def _secrets_in_compose(item: ProjectFile) -> Iterator[_WrittenSecret]:
    """The secrets a Compose file's services write in environment: (a list of NAME=value or a map), but a
    development profile's service's and the secret keys FP-S009 reports."""
    try:
        root = yaml.compose(item.text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return
    services = _mapping_value(root, "services")
    if not isinstance(services, yaml.MappingNode):
        return
    development = development_lines(item)
    for _, service in services.value:
        for line, name, value in _environment_entries(_mapping_value(service, "environment")):
            if line not in development and not re.fullmatch(SECRET_NAME, name):
                secret = _written_secret(line, name, value)
                if secret is not None:
                    yield secret


def _secrets_in_manifests(item: ProjectFile) -> Iterator[tuple[_WrittenSecret, str]]:
    """The secrets a Kubernetes manifest writes, each with its hint: a container's env: value (- name: DATABASE_URL,
    value: ...; valueFrom, a Secret's key, has none written), a ConfigMap's data: entry judged by its name, and a
    Secret's stringData: or data: (base64) value or a kustomization's secretGenerator literal (NAME=value) that is
    a secret by its key or its look (_stored_secret); but the secret keys FP-S009 reports. A SealedSecret's
    encryptedData is no value."""
    try:
        documents = list(yaml.compose_all(item.text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return
    for document in documents:
        kind = _mapping_value(document, "kind")
        generators = _mapping_value(document, "secretGenerator")
        if kind is None and generators is None:
            continue  # not a manifest (a Compose file, Ansible's vars)
        found: Iterator[tuple[int, str, str]] = _env_values(document)
        kind_name = kind.value if isinstance(kind, yaml.ScalarNode) else None
        if kind_name == "ConfigMap":
            found = itertools.chain(found, _scalar_entries(_mapping_value(document, "data")))
        for line, name, value in found:
            if not re.fullmatch(SECRET_NAME, name) and (secret := _written_secret(line, name, value)) is not None:
                yield secret, _MANIFEST_SECRET_HINT.format(name=name)
        stored = itertools.chain(
            _scalar_entries(_mapping_value(document, "stringData")) if kind_name == "Secret" else (),
            _decoded(_scalar_entries(_mapping_value(document, "data"))) if kind_name == "Secret" else (),
            _generator_literals(generators),
        )
        for line, name, value in stored:
            if name in _DOCKER_CONFIGS:  # JSON, which reads as a template ({...}) to the rule for a value
                registries = ", ".join(_registries_with_credentials(value))
                if registries:
                    what = f"has the password or token of {registries}"
                    yield _WrittenSecret(line=line, name=name, what=what), _PULL_SECRET_HINT
            elif not re.fullmatch(SECRET_NAME, name) and _stored_secret(name, value):
                yield _WrittenSecret(line=line, name=name, what="is a Secret's value"), _STORED_SECRET_HINT


def _stored_secret(name: str, value: str) -> bool:
    """Whether a Secret's value (stringData:, data:, a generator's literal) is a secret: under a key named for one
    (db-password, api-key, mailPassword), or a credential by its look whatever its key (a token by its shape or a
    long random one, a private key, a URL with a password), or a file of settings holding one (app.env: |). A plain
    setting kept beside them (APP_ENV: production, PORT: "8080", LOG_LEVEL: info) is none, nor a placeholder."""
    if "\n" in value.strip():
        # A file (app.env: |): judged line by line, as a settings file is; a placeholder word on one line says
        # nothing of the password on another.
        lines = (text for text in value.splitlines() if not text.lstrip().startswith(("#", ";")))
        settings = (s for s in map(_TEXT_SETTING.match, lines) if s is not None)
        return _token_shape(value) is not None or any(
            _stored_secret(s[1], literal_value(s[2].rstrip().removesuffix(","))) for s in settings
        )
    if _placeholder(value, name) or value.lower() in _NOT_A_SECRET:
        return False
    # Kubernetes keys are spelled db-password, api-key, mail.password: the rule reads NAME_WORDS.
    if _named_for_a_secret(re.sub(r"[-.]", "_", name)) or _token_shape(value) or _random_token(value):
        return True
    # Unlike an app's config, a URL to localhost here is no developer's database: the pod's own (a sidecar proxy).
    password = _URL_PASSWORD.match(value)
    return password is not None and not _placeholder(password[1], name, shortest=2)


# The keys of an image pull Secret (kubernetes.io/dockerconfigjson, the older kubernetes.io/dockercfg): Docker's
# config.json, {"auths": {REGISTRY: {...}}}, or the old .dockercfg, {REGISTRY: {...}}.
_DOCKER_CONFIGS = frozenset({".dockerconfigjson", ".dockercfg"})
# What a registry's entry holds that logs in: docker login's password, an OAuth identity token (ACR's, ECR's).
_REGISTRY_SECRETS = ("password", "identitytoken", "registrytoken")


def _registries_with_credentials(config: str) -> Iterator[str]:
    """The registries a Docker config (JSON) holds a credential of: a password, auth (base64 user:password) or an
    identity token that is no placeholder; nothing of a config that is no JSON (a template: {{ .Values.auth }})."""
    try:
        parsed = json.loads(config)
    except (ValueError, RecursionError):
        return
    auths = parsed.get("auths", parsed) if isinstance(parsed, dict) else None
    for registry, entry in auths.items() if isinstance(auths, dict) else ():
        if isinstance(entry, dict):
            written = [entry.get(key) for key in _REGISTRY_SECRETS] + [_auth_password(entry.get("auth"))]
            if any(isinstance(secret, str) and _credential(secret) for secret in written):
                yield str(registry)


def _auth_password(auth: object) -> str | None:
    """The password of a Docker config's auth, base64 of user:password (None when it is not)."""
    if not isinstance(auth, str):
        return None
    try:
        user_password = base64.b64decode("".join(auth.split()), validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors; a reference (${AUTH}) is no base64
        return None
    return user_password.partition(":")[2]


def _credential(secret: str) -> bool:
    """Whether a registry's password or token is one: not empty nor a placeholder; or a JSON key holding a private key
    (GCR's _json_key password, a service account's key, reads as a template)."""
    return _token_shape(secret) is not None or not _placeholder(secret, "password", shortest=2)


# A long random string in one piece (secrets.token_hex, token_urlsafe, an API key of no known shape): hex, or letters
# and digits (or lower and upper case) switching as often as chance makes them and no word, version or host does.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9+/=_.~-]{16,}")
_HEX_TOKEN = re.compile(r"[0-9a-f]{16,}|[0-9A-F]{16,}")
_CHARACTER_SWITCH = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])|(?<=[a-z])(?=[A-Z])")


def _random_token(value: str) -> bool:
    """Whether value looks like a random token: Zk3p9QaL2xVb7Rt5Yw1Nc8Hd4, 9f8e7d6c5b4a3928; not
    release-2024-12-08, ip-10-0-1-23.ec2.internal or someCamelCaseSetting42."""
    if _TOKEN_CHARS.fullmatch(value) is None or len(set(value)) < 8:
        return False
    if not (any(char.isdigit() for char in value) and any(char.isalpha() for char in value)):
        return False
    return _HEX_TOKEN.fullmatch(value) is not None or len(_CHARACTER_SWITCH.findall(value)) >= 5


def _env_values(document: yaml.Node) -> Iterator[tuple[int, str, str]]:
    """(line, name, value) of each container env: entry under document with a value written."""
    for entry in _container_env_entries(document):
        name, value = _mapping_value(entry, "name"), _mapping_value(entry, "value")
        if isinstance(name, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode):
            yield entry.start_mark.line + 1, name.value, value.value


def _scalar_entries(node: yaml.Node | None) -> Iterator[tuple[int, str, str]]:
    """(line, key, value) of each scalar entry of a mapping node (a ConfigMap's or a Secret's data)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode):
                yield key.start_mark.line + 1, key.value, value.value


def _decoded(entries: Iterator[tuple[int, str, str]]) -> Iterator[tuple[int, str, str]]:
    """A Secret's data: entries with their values base64-decoded; one that is not base64 text is no value."""
    for line, name, value in entries:
        with contextlib.suppress(ValueError):  # binascii.Error and UnicodeDecodeError are ValueErrors
            yield line, name, base64.b64decode("".join(value.split()), validate=True).decode()


def _generator_literals(generators: yaml.Node | None) -> Iterator[tuple[int, str, str]]:
    """(line, name, value) of each literals: NAME=value of a kustomization's secretGenerator entries."""
    for generator in generators.value if isinstance(generators, yaml.SequenceNode) else ():
        literals = _mapping_value(generator, "literals")
        for literal in literals.value if isinstance(literals, yaml.SequenceNode) else ():
            if isinstance(literal, yaml.ScalarNode) and "=" in literal.value:
                name, _, value = literal.value.partition("=")
                yield literal.start_mark.line + 1, name.strip(), value.strip()


def _container_env_entries(node: yaml.Node) -> Iterator[yaml.MappingNode]:
    """Each entry of every env: list under node (a Deployment's, a CronJob's, a Pod's containers)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "env" and isinstance(value, yaml.SequenceNode):
                yield from (entry for entry in value.value if isinstance(entry, yaml.MappingNode))
            else:
                yield from _container_env_entries(value)
    elif isinstance(node, yaml.SequenceNode):
        for value in node.value:
            yield from _container_env_entries(value)


def _mapping_value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for k, value in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def _environment_entries(node: yaml.Node | None) -> Iterator[tuple[int, str, str]]:
    """(line, name, value) of each variable an environment: node gives a value: `- NAME=value` or `NAME: value`."""
    if isinstance(node, yaml.SequenceNode):
        for entry in node.value:
            if isinstance(entry, yaml.ScalarNode) and "=" in entry.value:
                name, _, value = entry.value.partition("=")
                yield entry.start_mark.line + 1, name.strip(), value.strip()
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode):
                yield key.start_mark.line + 1, key.value, value.value


_ALEMBIC_SECRET_HINT = (
    "leave sqlalchemy.url out of alembic.ini and set it in migrations' env.py from the environment, "
    "config.set_main_option(\"sqlalchemy.url\", os.environ[\"DATABASE_URL\"]) (Flask-Migrate's env.py takes the "
    "app's own), then change the password: the old one stays in the repository's history"
)
_COMPOSE_SECRET_HINT = (
    "pass it in from where Compose runs: {name}: ${{{name}}} (from the shell, or a .env git does not track), a "
    "reference inside a URL (postgresql://app:${{DB_PASSWORD}}@db/app), or a Compose secret read through a *_FILE "
    "variable; then change the secret: the old one stays in the repository's history"
)
_INI_SECRET_HINT = (
    "leave {name} out of the file and give it to the app from the environment where it runs (a variable the server "
    "or its unit sets, a file kept out of the repository), then change the secret: the old one stays in the "
    "repository's history"
)
_MANIFEST_SECRET_HINT = (
    "keep the value in a Secret created in the cluster and read it with valueFrom.secretKeyRef (- name: {name}, "
    "valueFrom: {{secretKeyRef: {{name: app, key: {name}}}}}), then change the secret: the old one stays in the "
    "repository's history"
)
_STORED_SECRET_HINT = (
    "keep Secrets out of the repository: create it in the cluster (kubectl create secret generic app "
    "--from-env-file=FILE, with FILE kept out of git) or commit it encrypted (Sealed Secrets, SOPS), then change the "
    "secret: the old one stays in the repository's history"
)
_PULL_SECRET_HINT = (
    "keep Secrets out of the repository: create the pull Secret in the cluster from the config `docker login` wrote "
    "(kubectl create secret generic regcred --from-file=.dockerconfigjson=$HOME/.docker/config.json "
    "--type=kubernetes.io/dockerconfigjson) or commit it encrypted (Sealed Secrets, SOPS), then change the password or "
    "token: the old one stays in the repository's history"
)
_SOURCE_SECRET_HINT = (
    "read it from the environment (os.environ[\"{name}\"], failing when it is missing) or from a file kept out of "
    "the repository (the instance folder), then change the secret: the old one stays in the repository's history"
)


# What a database file is named (Flask's tutorial: instance/flaskr.sqlite), or begins with.
_DATABASE_SUFFIXES = frozenset({".sqlite", ".sqlite3", ".db", ".db3"})
_SQLITE_HEADER = b"SQLite format 3\x00"


def _is_database(path: Path) -> bool:
    if path.suffix.lower() in _DATABASE_SUFFIXES:
        return True
    try:
        with path.open("rb") as opened:
            return opened.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False


@check(
    "FP-S012",
    WARNING,
    "a database in the instance folder is tracked by git: its users' data is in the repository, and a deploy of the "
    "code puts the committed copy over the production database",
    hint="take the instance folder out of the repository: `git rm --cached -r instance/` and add `instance/` to "
    ".gitignore (the file stays on disk); create the production database where the app runs (the app's init-db "
    "command, migrations), and purge the file from the history (git filter-repo --invert-paths --path <file>) if it "
    "holds real users' data",
)
def database_in_tracked_instance(context: Context) -> Iterator[Found]:
    root = context.root.resolve()
    tracked = context.once(tracked_instance_files)
    for folder in instance_folders(context):
        relative = relative_folder(folder, root)
        for path in sorted(p for p in tracked if p.is_relative_to(folder) and _is_database(p)):
            rel = relative_folder(path, root)
            text = (
                f"{rel}, a database in the instance folder, is tracked by git: its users' data is in the repository, "
                "and a deploy of the code puts the committed copy over the production database"
            )
            hint = _DATABASE_HINT.format(folder=relative, file=rel)
            yield Found(obj=rel, text=text, hint=hint)


_DATABASE_HINT = (
    "take the instance folder out of the repository: `git rm --cached -r {folder}/` and add `{folder}/` to "
    ".gitignore (the file stays on disk); create the production database where the app runs (the app's init-db "
    "command, migrations), and purge the file from the history (git filter-repo --invert-paths --path {file}) if it "
    "holds real users' data"
)
