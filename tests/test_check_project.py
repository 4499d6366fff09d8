"""`flaskprod check` on what a project's own files do: app.run() reached through the module's functions, the
requirements its Dockerfile installs, and more proxy hops trusted than there are proxies in front."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from flaskprod.checks import REGISTRY
from tests import test_check
from tests.test_check import NGINX_PROXY, PROD, audit, run_cli, write

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

DEBUGGER = ", with the Werkzeug debugger on: whoever reaches it runs code on the server"
DOCKERFILE_RUNS_APP = 'FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nCMD ["python", "app.py"]\n'


def line_of(source: str, text: str) -> int:
    """The number of the first line of source that holds text."""
    return next(number for number, line in enumerate(source.splitlines(), 1) if text in line)


def dev_server(line: int, *, debugger: bool) -> str:
    """FP-P004's text for app.py's app.run() at line, run by the Dockerfile."""
    cost = f"{DEBUGGER})" if debugger else "): single process, no worker management, not hardened for the internet"
    return f"the deployment runs app.py, which starts Flask's development server (app.run() at app.py:{line}{cost}"


MAIN_CALLS_RUN = PROD + textwrap.dedent(
    """

    def main():
        app.run(host="0.0.0.0", port=5000, debug=True)


    if __name__ == "__main__":
        main()
    """
)
# sys.exit(main()), main() calling a function defined after it.
EXITS_WITH_MAIN = PROD + textwrap.dedent(
    """
    import sys


    def main():
        start(port=8000)
        return 0


    def start(port):
        app.run(host="0.0.0.0", port=port)


    if __name__ == "__main__":
        sys.exit(main())
    """
)
# Functions that call themselves and each other: each followed once, to the app.run() one of them makes.
RECURSES = PROD + textwrap.dedent(
    """

    def serve(retries=3):
        try:
            listen()
        except OSError:
            if retries:
                serve(retries - 1)


    def listen():
        if app.config.get("RETRY"):
            serve()
        app.run(use_debugger=True)


    if __name__ == "__main__":
        serve()
    """
)


@pytest.mark.parametrize(
    ("source", "debugger"),
    [(MAIN_CALLS_RUN, True), (EXITS_WITH_MAIN, False), (RECURSES, True)],
    ids=["main-debug", "sys-exit-main", "recursion"],
)
def test_app_run_in_a_function_the_main_block_calls_is_the_dev_server(
    project: Path, source: str, debugger: bool
) -> None:
    result = audit(project, {"app.py": source, "Dockerfile": DOCKERFILE_RUNS_APP})
    assert [(m["obj"], m["text"]) for m in result.only("FP-P004")] == [
        ("Dockerfile:4", dev_server(line_of(source, "app.run("), debugger=debugger))
    ]


UNGUARDED = REGISTRY["FP-P001"].text


@pytest.mark.parametrize(
    ("files", "found"),
    [
        (
            # debug=True turns the debugger on; use_debugger=False turns it off again.
            {"app.py": PROD + "\napp.run(debug=True)\napp.run(debug=True, use_debugger=False)\n"},
            [("app.py:8", UNGUARDED + DEBUGGER), ("app.py:9", UNGUARDED)],
        ),
        (
            {"app.py": PROD + "\napp.run(use_debugger=True, use_reloader=False)\n"},
            [("app.py:8", UNGUARDED + DEBUGGER)],
        ),
        (
            {"app.py": PROD + "\n\ndef start():\n    app.run(debug=True)\n\n\nstart()\n"},
            [("app.py:10", UNGUARDED + DEBUGGER)],
        ),
        (
            {
                "app.py": PROD + "\nfrom server import start\n\nstart(app)\n",
                "server.py": "def start(app):\n    app.run(port=8000, debug=True)\n",
            },
            [("server.py:2", UNGUARDED + DEBUGGER)],
        ),
    ],
    ids=["debug", "use-debugger", "through-a-function", "another-module"],
)
def test_an_unguarded_app_run_says_when_the_debugger_is_on(
    tmp_path: Path, files: dict[str, str], found: list[tuple[str, str]]
) -> None:
    # In a process of its own, as test_check runs FP-P001's: were the app ever served, the timeout would end it.
    write(tmp_path, files)
    result = run_cli("--format", "json", cwd=tmp_path)
    messages = json.loads(result.stdout)["messages"]
    assert [(m["obj"], m["text"]) for m in messages if m["id"] == "FP-P001"] == found, result.stderr


def requirements_lacking(path: str, where: str) -> str:
    return (
        f"the app imports flaskprod, but {path}, which {where} installs, does not: the app fails to import in the image"
    )


@pytest.mark.parametrize(
    ("dockerfile", "where"),
    [
        (
            # /tmp/audit-b/k07: the file copied under its own name into the working directory.
            'FROM python:3.12-slim\nCOPY requirements/prod.txt .\nRUN pip install -r prod.txt\nCOPY . .\n'
            'CMD ["gunicorn", "app:app"]\n',
            "Dockerfile:3",
        ),
        (
            # A directory copied elsewhere, a WORKDIR a later stage inherits, python -m pip, options before -r.
            "FROM python:3.12-slim AS base\nWORKDIR /srv\nCOPY requirements/ ./reqs/\n"
            "FROM base AS production\nRUN python -m pip install --no-cache-dir \\\n"
            "    --index-url https://pypi.org/simple --requirement=reqs/prod.txt\n",
            "Dockerfile:5",
        ),
        (
            # docker init's bind mount: the file is never copied.
            "FROM python:3.12-slim\nWORKDIR /app\nRUN --mount=type=cache,target=/root/.cache/pip \\\n"
            "    --mount=type=bind,source=requirements/prod.txt,target=requirements.txt \\\n"
            "    python -m pip install -r requirements.txt\n",
            "Dockerfile:3",
        ),
        (
            # Docker drops a comment and an empty line inside a continued instruction: the RUN goes on past them.
            "FROM python:3.12-slim\nCOPY requirements/prod.txt .\nRUN pip install -U pip && \\\n"
            "    # pip first\n\n    pip install -r prod.txt\n",
            "Dockerfile:3",
        ),
    ],
    ids=["copied-into-workdir", "directory-and-stages", "bind-mount", "comment-in-the-continuation"],
)
def test_the_requirements_the_dockerfile_installs_are_checked(project: Path, dockerfile: str, where: str) -> None:
    files = {"app.py": PROD, "requirements/prod.txt": "flask>=3.0\n", "Dockerfile": dockerfile}
    found = audit(project, files).only("FP-P011")
    assert [(m["obj"], m["text"]) for m in found] == [
        ("requirements/prod.txt", requirements_lacking("requirements/prod.txt", where))
    ]
    # Fixed where the message says, or installed by the Dockerfile itself: nothing to say.
    assert audit(project, {"requirements/prod.txt": "flask>=3.0\nflaskprod\n"}).only("FP-P011") == []
    first, rest = dockerfile.split("\n", 1)
    installs_it = f"{first}\nRUN pip install flaskprod\n{rest}"
    files = {"requirements/prod.txt": "flask>=3.0\n", "Dockerfile": installs_it}
    assert audit(project, files).only("FP-P011") == []


def test_a_heredocs_body_is_no_instruction(project: Path) -> None:
    # Its "from app import app" read as a FROM once ended the development stage, and its flask run --debug was
    # taken for the image's.
    dockerfile = (
        "FROM python:3.12-slim AS development\nCOPY <<PY /app/wsgi.py\nfrom app import app\nPY\n"
        'CMD ["flask", "run", "--debug"]\n\nFROM python:3.12-slim AS production\nCOPY . /app\n'
        'CMD ["gunicorn", "app:app"]\n'
    )
    files = {"app.py": PROD, "requirements.txt": "flask\nflaskprod\n", "Dockerfile": dockerfile}
    assert audit(project, files).only("FP-P004") == []
    served = dockerfile.replace(" AS development", "")  # a stage of no name: the dev server is the image's
    assert [m["obj"] for m in audit(project, {"Dockerfile": served}).only("FP-P004")] == ["Dockerfile:5"]


def test_the_dockerfiles_requirements_are_checked_beside_deploy_requirements(project: Path) -> None:
    dockerfile = "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nRUN pip install -r requirements/prod.txt\n"
    files = {
        "app.py": PROD,
        "requirements.txt": "flask\n",
        "requirements/prod.txt": "flask\n",
        "Dockerfile": dockerfile,
        "Dockerfile.dev": "FROM python:3.12-slim\nCOPY . .\nRUN pip install -r requirements/dev.txt\n",
        "requirements/dev.txt": "flask\n",
    }
    found = audit(project, files).only("FP-P011")
    assert [(m["obj"], m["text"]) for m in found] == [
        ("requirements.txt", REGISTRY["FP-P011"].text),
        ("requirements/prod.txt", requirements_lacking("requirements/prod.txt", "Dockerfile:4")),
    ]


TOO_MANY = (
    "proxy.trusted_hops = 3, but 1 proxy is in front of the app, nginx (nginx/site.conf:4): a client sends its own "
    "X-Forwarded-For, nginx passes it on, and the app takes the address the client wrote for the client's; "
    "`flaskprod build` and `up` refuse it"
)
PROXY_FIX = "from werkzeug.middleware.proxy_fix import ProxyFix\n\napp.wsgi_app = ProxyFix(app.wsgi_app, {hops})\n"
PLAIN = "from flask import Flask\n\napp = Flask(__name__)\n"


def test_more_trusted_hops_than_proxies_in_front(project: Path) -> None:
    # /tmp/audit-b/b03: what `flaskprod build` refuses, check reports.
    files = {"app.py": PROD, "nginx/site.conf": NGINX_PROXY, "flaskprod.toml": "[proxy]\ntrusted_hops = 3\n"}
    check = REGISTRY["FP-C016"]
    assert audit(project, files).only("FP-C016") == [
        {
            "id": "FP-C016",
            "level": check.level.name,
            "text": TOO_MANY,
            "hint": check.hint,
            "obj": "app",
        }
    ]
    assert audit(project, {"flaskprod.toml": "[proxy]\ntrusted_hops = 1\n"}).only("FP-C016") == []
    # Without an nginx in the project, what is in front (a load balancer, a CDN) is the deployment's to count.
    (project / "nginx" / "site.conf").unlink()
    assert audit(project, {"flaskprod.toml": "[proxy]\ntrusted_hops = 3\n"}).only("FP-C016") == []


def test_a_proxy_fix_trusting_more_hops_than_proxies_in_front(project: Path) -> None:
    # /tmp/audit-b/b01: no Production, the app's own ProxyFix.
    source = PLAIN + PROXY_FIX.format(hops="x_for=3, x_proto=3, x_host=3")
    found = audit(project, {"app.py": source, "nginx/site.conf": NGINX_PROXY}).only("FP-C016")
    assert [(m["obj"], m["text"], m["hint"]) for m in found] == [
        (
            "app",
            "the app's ProxyFix trusts 3 proxy hops (x_for=3, x_proto=3, x_host=3), but 1 proxy is in front of the "
            "app, nginx (nginx/site.conf:4): a client sends its own X-Forwarded-For, nginx passes it on, and the app "
            "takes what the client wrote",
            "give ProxyFix 1 hop for each header: ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)",
        )
    ]
    fixed = PLAIN + PROXY_FIX.format(hops="x_for=1, x_proto=1, x_host=1")
    assert audit(project, {"app.py": fixed}).only("FP-C016") == []
