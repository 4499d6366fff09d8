"""`flaskprod check` on a SECRET_KEY written where the check once missed it (a module constant, a config file the
app loads, a module's unused DEBUG = True), on keys generated per process, and on debug or testing turned on by
a deployment file."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from flaskprod.checks import REGISTRY
from tests import test_check
from tests.test_check import PLAIN, PROD, STRONG_KEY, audit, run_cli

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

# A strong key written in the project's files; STRONG_KEY is the fixture's FLASK_SECRET_KEY.
WRITTEN_KEY = secrets.token_hex(32)

IN_EFFECT = (
    "SECRET_KEY is a string written in {where}, and the app is running with it right now: anyone who can read "
    "the code can sign its sessions"
)
LOADED_FILE_IN_EFFECT_HINT = (
    "give the app a new random key (the written one is public) from a config file kept out of the repository "
    "(the instance folder, as Flask's docs do) or from FLASK_SECRET_KEY / FLASK_SECRET_KEY_FILE; then remove "
    "SECRET_KEY from this file"
)


def found(result_messages: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(m["obj"], m["text"], m["hint"]) for m in result_messages]


def test_a_key_through_a_module_constant_is_a_key_written_in_the_source(project: Path) -> None:
    constant = f'KEY = "{WRITTEN_KEY}"\n\n'
    # Without Production(app), FLASK_SECRET_KEY does not reach the app: it runs with the constant (with the variable
    # unset, the check's own hint; set, the hint says the app does not read it: test_check_known_layouts_secret_key).
    in_effect = audit(
        project, {"app.py": constant + PLAIN + 'app.config["SECRET_KEY"] = KEY\n'}, env={"FLASK_SECRET_KEY": None}
    )
    assert found(in_effect.only("FP-S010")) == [
        ("app.py:6", IN_EFFECT.format(where="the source (the constant KEY, app.py:1)"), REGISTRY["FP-S010"].hint)
    ]
    # Production(app) puts FLASK_SECRET_KEY's key over it: the string is in the source all the same.
    source = constant + PROD.replace("Production(app)", "app.secret_key = KEY\nProduction(app)")
    replaced = audit(project, {"app.py": source})
    assert [(m["obj"], m["text"]) for m in replaced.only("FP-S004")] == [
        ("app.py:8", "SECRET_KEY is a string written in the source (the constant KEY, app.py:1): anyone who can "
         "read the code can sign sessions")
    ]
    # A constant read from the environment, and a name the module assigns again in a function, are no strings.
    fixed = (
        "import os\n\nKEY = os.environ['APP_KEY']\nOTHER = 'replaced-before-it-is-used-0123456789'\n\n"
        "def rotate():\n    global OTHER\n    OTHER = os.environ['OTHER']\n\n"
    ) + PLAIN + 'app.config["SECRET_KEY"] = KEY\napp.config["X"] = {"SECRET_KEY": OTHER}\n'
    clean = audit(project, {"app.py": fixed}, env={"APP_KEY": STRONG_KEY})
    assert {"FP-S004", "FP-S010"} & set(clean.ids()) == set(), clean.messages


def test_a_config_file_from_pyfile_loads_is_read_as_python_whatever_its_extension(project: Path) -> None:
    source = PLAIN + 'app.config.from_pyfile("settings.cfg")\n'
    result = audit(project, {"app.py": source, "settings.cfg": f'DEBUG = False\nSECRET_KEY = "{WRITTEN_KEY}"\n'})
    where = "a config file the app loads with from_pyfile()"
    assert found(result.only("FP-S010")) == [
        ("settings.cfg:2", IN_EFFECT.format(where=where), LOADED_FILE_IN_EFFECT_HINT)
    ]
    # Not in effect (Production(app) reads FLASK_SECRET_KEY over it): a warning, with the same fix.
    prod = PROD.replace("Production(app)", 'app.config.from_pyfile("settings.cfg")\nProduction(app)')
    warned = audit(project, {"app.py": prod})
    assert [(m["obj"], m["hint"]) for m in warned.only("FP-S004")] == [
        (
            "settings.cfg:2",
            "keep the file out of the repository, in the instance folder (instance_relative_config=True) as Flask's "
            "docs do; or remove SECRET_KEY from it and set FLASK_SECRET_KEY or FLASK_SECRET_KEY_FILE",
        )
    ]


def test_from_pyfile_is_resolved_as_flask_resolves_it(project: Path) -> None:
    # instance_relative_config: Flask reads instance/settings.cfg, the folder its docs keep out of the repository;
    # the settings.cfg beside the app is not what it loads.
    source = PLAIN.replace("Flask(__name__)", "Flask(__name__, instance_relative_config=True)") + (
        'app.config.from_pyfile("settings.cfg")\n'
    )
    instance = {"instance/settings.cfg": f"SECRET_KEY = {WRITTEN_KEY!r}\n"}
    files = {"app.py": source, **instance, "settings.cfg": "X = 'dev'\n"}
    assert {"FP-S004", "FP-S010"} & set(audit(project, files).ids()) == set()
    beside = audit(project, {"settings.cfg": "SECRET_KEY = 'written-beside-the-app-0123456789abcdef'\n"})
    assert {"FP-S004", "FP-S010"} & set(beside.ids()) == set()  # still not loaded: Flask reads the instance's
    loaded = audit(project, {"app.py": source.replace(", instance_relative_config=True", "")})
    assert [m["obj"] for m in loaded.only("FP-S010")] == ["settings.cfg:1"]


@pytest.mark.parametrize(
    ("name", "text", "load", "line"),
    [
        ("config.json", '{{\n  "DEBUG": false,\n  "SECRET_KEY": "{key}"\n}}\n', "json.load", 3),
        ("config.toml", 'DEBUG = false\nSECRET_KEY = "{key}"\n', "tomllib.load, text=False", 2),
    ],
    ids=["json", "toml"],
)
def test_a_key_in_a_config_file_from_file_loads(project: Path, name: str, text: str, load: str, line: int) -> None:
    source = "import json\nimport tomllib\n\n" + PLAIN + f'app.config.from_file("{name}", load={load})\n'
    result = audit(project, {"app.py": source, name: text.format(key=WRITTEN_KEY)})
    assert found(result.only("FP-S010")) == [
        (f"{name}:{line}", IN_EFFECT.format(where="a config file the app loads with from_file()"),
         LOADED_FILE_IN_EFFECT_HINT)
    ]
    clean = audit(project, {name: text.format(key=WRITTEN_KEY).replace("SECRET_KEY", "OTHER")})
    assert {"FP-S004", "FP-S010"} & set(clean.ids()) == set(), clean.messages


def test_an_unused_module_debug_does_not_make_the_key_a_development_one(project: Path) -> None:
    # DEBUG = True only for app.run() under __main__: gunicorn serves the app without debug, with this key.
    source = (
        "from flask import Flask\n\nDEBUG = True\napp = Flask(__name__)\n"
        f'app.secret_key = "{WRITTEN_KEY}"\n\nif __name__ == "__main__":\n    app.run(debug=DEBUG)\n'
    )
    result = audit(project, {"app.py": source})
    assert [(m["obj"], m["text"]) for m in result.only("FP-S010")] == [
        ("app.py:5", IN_EFFECT.format(where="the source"))
    ]
    # A settings module named for development keeps its fixed key, as a DevelopmentConfig class does.
    development = {"app.py": PROD, "config/development.py": "DEBUG = True\nSECRET_KEY = 'dev'\n"}
    assert {"FP-S004", "FP-S010"} & set(audit(project, development).ids()) == set()
    # So does a module whose DEBUG = True the app runs with: FP-S001 names that.
    debug_on = source.replace("app.secret_key", "app.config.from_object(__name__)\napp.secret_key")
    in_debug = audit(project, {"app.py": debug_on})
    assert ({"FP-S004", "FP-S010"} & set(in_debug.ids()), "FP-S001" in in_debug.ids()) == (set(), True)


GENERATED_FALLBACK = (
    "SECRET_KEY falls back to a key generated at start-up when SECRET_KEY is unset: each worker then signs with "
    "its own key, so sessions fail at random and every restart logs everyone out"
)


@pytest.mark.parametrize(
    ("imports", "value", "text"),
    [
        ("import secrets", 'os.getenv("SECRET_KEY", secrets.token_hex(32))', GENERATED_FALLBACK),
        ("import binascii", 'os.environ.get("SECRET_KEY", binascii.hexlify(os.urandom(32)).decode())',
         GENERATED_FALLBACK),
        ("import uuid", 'os.environ.get("SECRET_KEY") or str(uuid.uuid4()) + str(uuid.uuid4())', GENERATED_FALLBACK),
        ("import secrets\nimport string", '"".join(secrets.choice(string.ascii_letters) for _ in range(50))', None),
        ("import hashlib", "hashlib.sha256(os.urandom(64)).hexdigest()", None),
    ],
    ids=["getenv-default", "hexlify-decode", "or-uuid-concatenated", "join-choice", "sha256-hexdigest"],
)
def test_a_key_generated_per_process_in_every_form(project: Path, imports: str, value: str, text: str | None) -> None:
    assignment = f"app.config['SECRET_KEY'] = {value}"
    source = f"import os\n{imports}\n\n" + PROD.replace("Production(app)", f"{assignment}\nProduction(app)")
    [finding] = audit(project, {"app.py": source}).only("FP-S008")
    line = source.splitlines().index(assignment) + 1
    hint = (
        'set SECRET_KEY (or FLASK_SECRET_KEY / FLASK_SECRET_KEY_FILE) to one key for every worker, and fail when it '
        'is missing (os.environ["SECRET_KEY"]) instead of generating one'
    )
    check = REGISTRY["FP-S008"]
    expected = (f"app.py:{line}", text or check.text, hint if text else check.hint)
    assert (finding["obj"], finding["text"], finding["hint"]) == expected


def test_a_key_generated_per_process_through_a_constant_and_the_fix(project: Path) -> None:
    source = "import secrets\n\nKEY = secrets.token_urlsafe(32)\n\n" + PROD + "app.secret_key = KEY\n"
    assert [m["obj"] for m in audit(project, {"app.py": source}).only("FP-S008")] == ["app.py:11"]
    fixed = source.replace("secrets.token_urlsafe(32)", 'os.environ["SECRET_KEY"]').replace("secrets", "os")
    assert audit(project, {"app.py": fixed}, env={"SECRET_KEY": STRONG_KEY}).only("FP-S008") == []


DEBUG_REFUSED = (
    "FLASK_DEBUG={value} turns debug mode on where this file deploys the app, and Production(app) refuses to start "
    "in debug mode: the app will not start there"
)
DEBUG_SERVED = (
    "FLASK_DEBUG={value} turns debug mode on where this file deploys the app{skipped}: errors propagate instead of "
    "answering 500, templates are re-read on every request, and under app.run() the Werkzeug debugger runs code "
    "for whoever reaches it"
)
DEBUG_FIX = (
    "remove FLASK_DEBUG from the deployment (or set it to 0); keep debug to development: `flask run --debug`, "
    "docker-compose.override.yml, a service under a dev profile or a development stage of the Dockerfile"
)


@pytest.mark.parametrize(
    ("name", "text", "line", "value"),
    [
        ("Dockerfile", "FROM python:3.12-slim\nENV FLASK_APP=app FLASK_DEBUG=1\nCMD gunicorn app:app\n", 2, "1"),
        ("Dockerfile", "FROM python:3.12-slim\nENV PORT=8000 \\\n    FLASK_DEBUG=true\nCMD gunicorn app:app\n", 2,
         "true"),
        ("Containerfile", "FROM python:3.12-slim\nENV FLASK_DEBUG 1\n", 2, "1"),
        ("docker-compose.yml", "services:\n  web:\n    environment:\n      - FLASK_DEBUG=1\n", 4, "1"),
        ("compose.yaml", "services:\n  web:\n    environment:\n      FLASK_DEBUG: ${FLASK_DEBUG:-1}\n", 4, "1"),
        ("deploy/app.service", '[Service]\nEnvironment="FLASK_APP=app" "FLASK_DEBUG=yes"\n', 2, "yes"),
        ("k8s/deployment.yaml", 'spec:\n  containers:\n    - env:\n        - name: FLASK_DEBUG\n          value: "1"\n',
         4, "1"),
    ],
    ids=["dockerfile-env-pairs", "dockerfile-continued", "containerfile-legacy-env", "compose-list",
         "compose-default", "systemd", "kubernetes"],
)
def test_debug_turned_on_by_a_deployment_file(project: Path, name: str, text: str, line: int, value: str) -> None:
    refused = audit(project, {"app.py": PROD, name: text}).only("FP-S001")
    assert found(refused) == [(f"{name}:{line}", DEBUG_REFUSED.format(value=value), DEBUG_FIX)]
    served = audit(project, {"app.py": PLAIN}).only("FP-S001")  # without Production(app) nothing refuses it
    assert found(served) == [(f"{name}:{line}", DEBUG_SERVED.format(value=value, skipped=""), DEBUG_FIX)]


def test_testing_turned_on_by_a_deployment_file_skips_the_refusal(project: Path) -> None:
    compose = (
        "services:\n  web:\n    command: gunicorn app:app\n    environment:\n"
        '      FLASK_DEBUG: "1"\n      FLASK_TESTING: "true"\n'
    )
    result = audit(project, {"app.py": PROD, "docker-compose.yml": compose})
    skipped = ", and FLASK_TESTING there makes Production(app) skip its refusal"
    assert found(result.only("FP-S001")) == [
        ("docker-compose.yml:5", DEBUG_SERVED.format(value="1", skipped=skipped), DEBUG_FIX)
    ]
    assert found(result.only("FP-S002")) == [
        (
            "docker-compose.yml:6",
            "FLASK_TESTING=true turns TESTING on where this file deploys the app (it reads FLASK_* variables into its "
            "config): errors propagate instead of answering 500, and Production(app) skips its safety refusal",
            "remove FLASK_TESTING from the deployment (or set it to false); set TESTING only in the test "
            "configuration",
        )
    ]
    # An app that reads no FLASK_* variable into its config never sees FLASK_TESTING.
    assert audit(project, {"app.py": PLAIN}).only("FP-S002") == []


def test_debug_off_or_for_development_in_deployment_files_passes(project: Path) -> None:
    files = {
        "app.py": PROD,
        "Dockerfile": "FROM python:3.12-slim AS base\nENV FLASK_DEBUG=0\nFROM base AS development\n"
        "ENV FLASK_DEBUG=1\nFROM base AS production\nENV FLASK_DEBUG=${FLASK_DEBUG}\nCMD gunicorn app:app\n",
        "compose.yaml": "services:\n  web:\n    environment:\n      FLASK_DEBUG: 'false'\n      FLASK_TESTING: 0\n"
        "  dev:\n    profiles: [dev]\n    environment:\n      - FLASK_DEBUG=1\n",
        "docker-compose.override.yml": "services:\n  web:\n    environment:\n      FLASK_DEBUG: 1\n",
        "Dockerfile.dev": "FROM python:3.12-slim\nENV FLASK_DEBUG=1\n",
        ".gitlab-ci.yml": "test:\n  variables:\n    FLASK_TESTING: 'true'\n",
        "deploy/app.service": "[Service]\n# Environment=FLASK_DEBUG=1\nEnvironment=FLASK_DEBUG=no\n",
    }
    result = audit(project, files)
    assert {"FP-S001", "FP-S002"} & set(result.ids()) == set(), result.messages
    # The same files with the production stage turning debug on: only that line.
    files["Dockerfile"] = files["Dockerfile"].replace("${FLASK_DEBUG}", "1")
    assert [m["obj"] for m in audit(project, files).only("FP-S001")] == ["Dockerfile:6"]


def test_debug_a_production_stage_keeps_from_a_development_one_is_reported(project: Path) -> None:
    # FROM development AS production keeps the development stage's ENV: the image runs with debug on.
    dockerfile = (
        "FROM python:3.12-slim AS development\nENV FLASK_DEBUG=1\nCMD flask run\n"
        "FROM development AS production\nCMD gunicorn app:app\n"
    )
    assert [m["obj"] for m in audit(project, {"app.py": PROD, "Dockerfile": dockerfile}).only("FP-S001")] == [
        "Dockerfile:2"
    ]
    turned_off = dockerfile.replace("AS production\n", "AS production\nENV FLASK_DEBUG=0\n")
    assert audit(project, {"Dockerfile": turned_off}).only("FP-S001") == []
    elsewhere = dockerfile.replace("FROM development AS production", "FROM python:3.12-slim AS production")
    assert audit(project, {"Dockerfile": elsewhere}).only("FP-S001") == []


def test_debug_in_the_dockerfile_fails_the_command(project: Path) -> None:
    (project / "app.py").write_text(PROD)
    (project / "Dockerfile").write_text("FROM python:3.12-slim\nENV FLASK_DEBUG=1\nCMD gunicorn app:app\n")
    result = run_cli(cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FP-S001  ERROR  Dockerfile:2: {DEBUG_REFUSED.format(value='1')}" in result.stdout


def test_another_librarys_from_file_loads_no_config(project: Path) -> None:
    # python-magic's magic.from_file("...") names a file to look at: its SECRET_KEY is no key the app runs with.
    source = PROD + 'import magic\n\nKIND = magic.from_file("fixtures.json")\n'
    files = {"app.py": source, "fixtures.json": '{"SECRET_KEY": "q8Zr2LwP0x7Nv4Yb1Kc9Jm6Ht3Gf5Ds8Aa0Ee2Uu4Ii"}\n'}
    (project / "magic.py").write_text("def from_file(name):\n    return 'JSON data'\n")
    assert {"FP-S004", "FP-S010"} & set(audit(project, files).ids()) == set()
