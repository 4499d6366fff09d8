"""`flaskprod check` on config that comes from elsewhere than the module that sets it: a file named by an environment
variable (app.config.from_envvar, Flask's documented pattern, and from_pyfile(os.environ[...])), and a key imported
from another of the project's modules (`from .keys import KEY`, from_object("myapp.settings") importing it)."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests import test_check
from tests.test_check import PLAIN, PROD, audit, run_cli

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

# A strong key written in the project's files; the fixture's FLASK_SECRET_KEY is another.
WRITTEN_KEY = secrets.token_hex(32)

IN_EFFECT = (
    "SECRET_KEY is a string written in {where}, and the app is running with it right now: anyone who can read "
    "the code can sign its sessions"
)
WRITTEN = "SECRET_KEY is a string written in {where}: anyone who can read the code can sign sessions"

FROM_ENVVAR = PLAIN + 'app.config.from_envvar("SETTINGS")\n'
SETTINGS_FILE = f'DEBUG = False\nSECRET_KEY = "{WRITTEN_KEY}"\n'


def found(messages: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(m["obj"], m["text"]) for m in messages]


def test_the_file_from_envvar_loads_is_audited(project: Path) -> None:
    files = {"app.py": FROM_ENVVAR, "config/production.cfg": SETTINGS_FILE}
    result = audit(project, files, env={"SETTINGS": "config/production.cfg"})
    where = 'a config file the app loads with from_envvar("SETTINGS")'
    assert [(m["obj"], m["text"], m["hint"]) for m in result.only("FP-S010")] == [
        (
            "config/production.cfg:2",
            IN_EFFECT.format(where=where),
            "give the app a new random key (the written one is public) in a file kept out of the repository, which "
            "SETTINGS names where the app runs (a mounted secret), or from FLASK_SECRET_KEY / FLASK_SECRET_KEY_FILE; "
            "then remove SECRET_KEY from this file",
        )
    ]
    # Production(app) reads FLASK_SECRET_KEY over it: the string is in the repository all the same.
    prod = PROD.replace("Production(app)", 'app.config.from_envvar("SETTINGS")\nProduction(app)')
    warned = audit(project, {"app.py": prod}, env={"SETTINGS": str(project / "config/production.cfg")})
    assert found(warned.only("FP-S004")) == [("config/production.cfg:2", WRITTEN.format(where=where))]


def test_a_file_from_envvar_loads_from_outside_the_project_is_the_deployments(project: Path, tmp_path: Path) -> None:
    # /etc/myapp/settings.cfg, a mounted secret: kept out of the repository, where Flask's docs put the key.
    outside = tmp_path.parent / f"{tmp_path.name}-etc"
    outside.mkdir()
    (outside / "settings.cfg").write_text(SETTINGS_FILE)
    result = audit(project, {"app.py": FROM_ENVVAR}, env={"SETTINGS": str(outside / "settings.cfg")})
    assert {"FP-S004", "FP-S010", "FP-C017"} & set(result.ids()) == set(), result.messages


def test_the_default_path_the_code_gives_the_variable_is_audited(project: Path) -> None:
    source = "import os\n\n" + PLAIN + (
        'os.environ.setdefault("SETTINGS", "settings.cfg")\napp.config.from_envvar("SETTINGS")\n'
        'app.config.from_pyfile(os.environ["EXTRA_SETTINGS"], silent=True)\n'
    )
    extra = f'SECRET_KEY = "{secrets.token_hex(32)}"\n'
    files = {"app.py": source, "settings.cfg": SETTINGS_FILE, "extra.cfg": extra}
    result = audit(project, files, env={"SETTINGS": None, "EXTRA_SETTINGS": "extra.cfg"})
    assert found(result.only("FP-S004")) == [
        ("settings.cfg:2", WRITTEN.format(where='a config file the app loads with from_envvar("SETTINGS")'))
    ]
    # The one the variable names here is the one the app runs with.
    assert found(result.only("FP-S010")) == [
        ("extra.cfg:1", IN_EFFECT.format(where="a config file the app loads with from_pyfile()"))
    ]


def test_from_envvar_with_its_variable_unset_is_a_finding_not_a_crash(project: Path) -> None:
    files = {"app.py": FROM_ENVVAR, "docker-compose.yml": "services:\n  web:\n    environment:\n      - FLASK_ENV=x\n"}
    test_check.write(project, files)
    result = run_cli(cwd=project, env={"SETTINGS": None})
    assert (result.returncode, result.stderr) == (1, ""), result.stdout + result.stderr
    assert (
        'FP-C017  CRITICAL  app.py:4: the app fails at start: app.config.from_envvar("SETTINGS") loads its config '
        "from the file SETTINGS names, and SETTINGS is not set (the app's other checks did not run)"
    ) in result.stdout
    assert "FP-C004  WARNING  docker-compose.yml:4" in result.stdout  # the files' checks still run
    # A file it names that is not there: relative paths are the app's root_path's, not the current directory's.
    missing = audit(project, {}, env={"SETTINGS": "production.cfg"})
    assert [(m["obj"], m["text"], m["hint"]) for m in missing.only("FP-C017")] == [
        (
            "app.py:4",
            "the app fails at start: app.config.from_envvar(\"SETTINGS\") loads its config from 'production.cfg', "
            "the file SETTINGS names, and cannot read it (No such file or directory; the app's other checks did not "
            "run)",
            "point SETTINGS at the config file: an absolute path, or one relative to the app's root_path (the folder "
            "of its module or package), not to the current directory",
        )
    ]


def test_a_key_imported_from_another_module_is_followed(project: Path) -> None:
    # from_object("myapp.settings"), whose SECRET_KEY is a constant it imports from a module of its own.
    files = {
        "myapp/__init__.py": PLAIN + 'app.config.from_object("myapp.settings")\n',
        "myapp/settings.py": "from .keys import SIGNING_KEY\n\nSECRET_KEY = SIGNING_KEY\n",
        "myapp/keys.py": f'SIGNING_KEY = "{WRITTEN_KEY}"\n',
    }
    result = audit(project, files, "myapp:app")
    through = "the source (the constant SIGNING_KEY, myapp/keys.py:1)"
    assert found(result.only("FP-S010")) == [("myapp/settings.py:3", IN_EFFECT.format(where=through))]
    # Every way of importing it: absolute and aliased, a module's attribute, a star import.
    files["myapp/settings.py"] = "from myapp.keys import SIGNING_KEY as _KEY\n\nSECRET_KEY = _KEY\n"
    assert [m["obj"] for m in audit(project, files, "myapp:app").only("FP-S010")] == ["myapp/settings.py:3"]
    files["myapp/settings.py"] = "from . import keys\n\nSECRET_KEY = keys.SIGNING_KEY\n"
    assert [m["obj"] for m in audit(project, files, "myapp:app").only("FP-S010")] == ["myapp/settings.py:3"]
    files["myapp/settings.py"] = "import myapp.keys\n\nSECRET_KEY = myapp.keys.SIGNING_KEY\n"
    assert [m["obj"] for m in audit(project, files, "myapp:app").only("FP-S010")] == ["myapp/settings.py:3"]
    files["myapp/settings.py"] = "from .keys import *\n\nSECRET_KEY = SIGNING_KEY\n"
    assert [m["obj"] for m in audit(project, files, "myapp:app").only("FP-S010")] == ["myapp/settings.py:3"]
    # Read from the environment there, it is no string.
    files["myapp/keys.py"] = 'import os\n\nSIGNING_KEY = os.environ["SIGNING_KEY"]\n'
    clean = audit(project, files, "myapp:app", env={"SIGNING_KEY": secrets.token_hex(32)})
    assert {"FP-S004", "FP-S010"} & set(clean.ids()) == set(), clean.messages


def test_a_secret_key_imported_as_it_is_is_reported_once_where_it_is_written(project: Path) -> None:
    files = {
        "myapp/__init__.py": "from flask import Flask\n\nfrom .secrets import SECRET_KEY\n\napp = Flask(__name__)\n"
        'app.config["SECRET_KEY"] = SECRET_KEY\n',
        "myapp/secrets.py": f'SECRET_KEY = "{WRITTEN_KEY}"\n',
    }
    result = audit(project, files, "myapp:app")
    assert found(result.only("FP-S010")) == [("myapp/secrets.py:1", IN_EFFECT.format(where="the source"))]
    # Kept in the instance folder, out of the repository as Flask's docs keep it: nothing written in the source.
    files["myapp/__init__.py"] = files["myapp/__init__.py"].replace("from .secrets", "from instance.secrets")
    files["instance/secrets.py"] = files.pop("myapp/secrets.py")
    (project / "myapp/secrets.py").unlink()
    kept = audit(project, {**files, "instance/__init__.py": ""}, "myapp:app")
    assert {"FP-S004", "FP-S010"} & set(kept.ids()) == set(), kept.messages


def test_a_key_generated_in_another_module_is_followed(project: Path) -> None:
    files = {
        "app.py": PROD + "from keys import KEY\n\napp.secret_key = KEY\n",
        "keys.py": "import secrets\n\nKEY = secrets.token_hex(32)\n",
    }
    assert [m["obj"] for m in audit(project, files).only("FP-S008")] == ["app.py:9"]


PREFIXED = PROD.replace("Production(app)", 'app.config.from_prefixed_env("MYAPP")\nProduction(app)')


def test_debug_and_testing_under_the_prefix_the_app_reads_are_named(project: Path) -> None:
    # from_prefixed_env("MYAPP") reads MYAPP_DEBUG into DEBUG, MYAPP_TESTING into TESTING: set by the deployment.
    dockerfile = "FROM python:3.12-slim\nENV MYAPP_DEBUG=true\nCMD gunicorn app:app\n"
    result = audit(project, {"app.py": PREFIXED, "Dockerfile": dockerfile})
    assert [(m["obj"], m["text"], m["hint"]) for m in result.only("FP-S001")] == [
        (
            "Dockerfile:2",
            "MYAPP_DEBUG=true turns debug mode on where this file deploys the app, and Production(app) refuses to "
            "start in debug mode: the app will not start there",
            "remove MYAPP_DEBUG from the deployment (or set it to 0); keep debug to development: `flask run "
            "--debug`, docker-compose.override.yml, a service under a dev profile or a development stage of the "
            "Dockerfile",
        )
    ]
    compose = "services:\n  web:\n    environment:\n      MYAPP_TESTING: 'true'\n"
    testing = audit(project, {"Dockerfile": dockerfile.replace("MYAPP_DEBUG", "X"), "compose.yaml": compose})
    assert [(m["obj"], m["text"]) for m in testing.only("FP-S002")] == [
        (
            "compose.yaml:4",
            "MYAPP_TESTING=true turns TESTING on where this file deploys the app (it reads MYAPP_* variables into its "
            "config): errors propagate instead of answering 500, and Production(app) skips its safety refusal",
        )
    ]
    # An app that reads no MYAPP_* variable does not see them.
    assert {"FP-S001", "FP-S002"} & set(audit(project, {"app.py": PROD}).ids()) == set()


def test_debug_from_the_prefixed_variable_here_names_it(project: Path) -> None:
    source = PREFIXED.replace("Production(app)\n", "")  # nothing refuses debug mode
    result = audit(project, {"app.py": source}, env={"MYAPP_DEBUG": "true"})
    assert [m["hint"] for m in result.only("FP-S001")] == [
        'MYAPP_DEBUG turns debug on: the app\'s app.config.from_prefixed_env("MYAPP") reads it into DEBUG; unset '
        "it where the app runs, and use `flask run --debug` for local development"
    ]
