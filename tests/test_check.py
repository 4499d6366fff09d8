"""`flaskprod check`: each check fails on the pitfall and passes on the fix; output, silencing, exit codes."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from flaskprod.checks import REGISTRY, Level, Message, load_context, run_checks
from flaskprod.checks.context import patched_environ
from flaskprod.checks.reference import TOPICS, checks_reference
from flaskprod.checks.registry import Found
from flaskprod.checks.report import visible
from flaskprod.cli import cli
from flaskprod.discovery import NOT_FOUND_FIX
from flaskprod.render.compose import render_swarm
from flaskprod.runtime.secrets import secret_key_problem
from flaskprod.spec import Spec
from tests.buildkit import make_deployment
from tests.conftest import server_env
from tests.support import BIN, ROOT, interrupted_while_loading

STRONG_KEY = secrets.token_hex(32)

PLAIN = "from flask import Flask\n\napp = Flask(__name__)\n"
PROD = "from flask import Flask\n\nfrom flaskprod import Production\n\napp = Flask(__name__)\nProduction(app)\n"
PROXY_FIX = "from werkzeug.middleware.proxy_fix import ProxyFix\n\napp.wsgi_app = ProxyFix(app.wsgi_app)\n"
SERVER_NAME = 'app.config["SERVER_NAME"] = "shop.example.com:8443"\n'
ASYNC_VIEW = '\n@app.get("/feed")\nasync def feed():\n    return {"items": []}\n'
WEBSOCKET_ROUTE = '\napp.add_url_rule("/ws", "ws", lambda: "", websocket=True)\n'
LIMITER = (
    "from flask_limiter import Limiter\nfrom flask_limiter.util import get_remote_address\n\n"
    'limiter = Limiter(get_remote_address, app=app, default_limits=["100/minute"]{storage})\n'
)
EVENTS = (
    "\n\n@app.get('/events')\ndef events():\n    return app.response_class(iter(['data: hi\\n\\n']), "
    "mimetype='text/event-stream')\n"
)
CACHE = 'from flask_caching import Cache\n\ncache = Cache(app, config={{"CACHE_TYPE": "{kind}"}})\n'
ASYNC_500 = "\"Install Flask with the 'async' extra in order to use async views\""
SQLALCHEMY = (
    "from flask_sqlalchemy import SQLAlchemy\n\ndb = SQLAlchemy()\n"
    'app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"\n'
)


@dataclass(frozen=True)
class Audit:
    """What `flaskprod check --format json` printed and returned."""

    exit_code: int
    messages: list[dict[str, Any]]
    summary: dict[str, Any]

    def ids(self) -> list[str]:
        return [m["id"] for m in self.messages]

    def only(self, check_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["id"] == check_id]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tmp_path as the current directory, with a clean environment (but a strong FLASK_SECRET_KEY) and
    imports undone afterwards, so each test's app.py is imported afresh."""
    for name in list(os.environ):
        if name.startswith(("FLASK_", "FLASKPROD_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FLASK_SECRET_KEY", STRONG_KEY)
    monkeypatch.chdir(tmp_path)
    # A test may rewrite app.py within a second: bytecode cached by mtime could be stale.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    modules, path = set(sys.modules), list(sys.path)
    yield tmp_path
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"))


def invoke(*args: str) -> Any:
    """The command in this process, importing the project's modules afresh (a test may have rewritten them)."""
    here = Path.cwd()
    for name, module in list(sys.modules.items()):
        if Path(getattr(module, "__file__", None) or "/").is_relative_to(here):
            del sys.modules[name]
    importlib.invalidate_caches()
    return CliRunner().invoke(cli, ["check", *args], catch_exceptions=False)


def audit(root: Path, files: dict[str, str], *args: str, env: dict[str, str | None] | None = None) -> Audit:
    """Write files into root, run `flaskprod check --format json` in-process there, and parse the output."""
    write(root, files)
    with patched_environ(env or {}):
        result = invoke("--format", "json", *args)
    assert result.exit_code in (0, 1), result.output
    data = json.loads(result.stdout)
    return Audit(exit_code=result.exit_code, messages=data["messages"], summary=data["summary"])


def run_cli(*args: str, cwd: Path, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command in its own process, as a user runs it."""
    return subprocess.run(
        [str(BIN / "flaskprod"), "check", *args],
        cwd=cwd,
        env=server_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass(frozen=True)
class Case:
    """One check: files (and env) that trip it, where it points, and files that do not."""

    id: str
    bad: dict[str, str]
    good: dict[str, str]
    obj: str = "app"
    text: str | None = None  # None: the check's own text
    env: dict[str, str | None] = field(default_factory=dict)  # None unsets a variable


NGINX_PROXY = """
    server {
        listen 80;
        location / {
            proxy_pass http://app:8000;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
"""

GUIDE_CONFIG = """
    import os

    class Config:
        SECRET_KEY = os.environ.get('SECRET_KEY') or 'hard-to-guess-string'
        SQLALCHEMY_DATABASE_URI = os.environ.get('DATABASE_URL')
"""

# A key that falls back to a string in the source when SECRET_KEY is unset: then the app runs with it.
FALLBACK_KEY = """
    import os

    from flask import Flask

    class Config:
        SECRET_KEY = os.environ.get("SECRET_KEY", "Xk3-j9Qw8eZr7tYu6iOp5aSd4fGh3jKl2")

    app = Flask(__name__)
    app.config.from_object(Config)
"""

# An engine made at import with SQLAlchemy's default pool (5 + 10), as apps without Flask-SQLAlchemy make one.
OWN_ENGINE = (
    "import flaskprod\nfrom sqlalchemy import create_engine\n\n"
    'URL = "postgresql+psycopg2://shop:secret@127.0.0.1:1/shop"\nengine = create_engine(URL{options})\n'
)

# An app on MySQL through Flask-SQLAlchemy (FP-C015): mysqlclient waits inside C, PyMySQL on Python's sockets.
MYSQL = (
    "from flask_sqlalchemy import SQLAlchemy\n\n"
    'app.config["SQLALCHEMY_DATABASE_URI"] = "mysql+{driver}://shop:pw@127.0.0.1:1/shop"\ndb = SQLAlchemy(app)\n'
)
# Flask's documented pattern: the config file's path in an environment variable (FP-C017).
FROM_ENVVAR = 'app.config.from_envvar("SETTINGS"{args})\nProduction(app)'
GEVENT_TOML = '[server]\nkind = "gunicorn"\nworker_class = "gevent"\nthreads = 1\n'

# A view that calls another service (FP-P019), {args} given to requests.get.
OUTBOUND = '\nimport requests\n\n\n@app.get("/rates")\ndef rates():\n    return requests.get({args}).json()\n'

# A view on PostgreSQL through psycopg2, without SQLAlchemy (FP-P020), {args} given to psycopg2.connect.
BARE_POSTGRES = (
    '\nimport os\nimport psycopg2\n\n\n@app.get("/orders")\ndef orders():\n'
    "    with psycopg2.connect({args}) as conn, conn.cursor() as cur:\n"
    '        cur.execute("SELECT count(*) FROM orders")\n        return str(cur.fetchone()[0])\n'
)

NGINX_UWSGI = "server {\n  location / {\n    include uwsgi_params;\n    uwsgi_pass unix:///tmp/uwsgi.sock;\n  }\n}\n"

# An app whose schema Flask-Migrate keeps (FP-R001).
MIGRATE = (
    "from flask_migrate import Migrate\nfrom flask_sqlalchemy import SQLAlchemy\n\n"
    "app.config['SQLALCHEMY_DATABASE_URI'] = 'sqlite://'\nMigrate(app, SQLAlchemy(app))\n"
)
CASES = [
    Case("FP-S001", bad={"app.py": PLAIN}, env={"FLASK_DEBUG": "1"}, good={"app.py": PLAIN}),
    Case("FP-S002", bad={"app.py": PLAIN + "app.testing = True\n"}, obj="app.py:4", good={"app.py": PLAIN}),
    Case(
        "FP-S003",
        # A module that turns debug on is development's: its key is not FP-S010's, and is named at its line.
        bad={"app.py": PLAIN + 'app.config["SECRET_KEY"] = "changeme"\napp.config["DEBUG"] = True\n'},
        env={"FLASK_SECRET_KEY": None},  # with it set, the hint says the app does not read it (below)
        obj="app.py:4",
        text="SECRET_KEY is a published default ('changeme'): anyone can forge sessions",
        good={"app.py": PROD},
    ),
    Case(
        "FP-S004",
        bad={"app.py": PROD, "settings.py": GUIDE_CONFIG},
        obj="settings.py:4",
        good={
            "app.py": PROD,
            "settings.py": """
                import os

                class Config:
                    SECRET_KEY = os.environ["SECRET_KEY"]

                class DevelopmentConfig(Config):
                    DEBUG = True
                    SECRET_KEY = "dev-only"
            """,
        },
    ),
    Case(
        "FP-S010",
        bad={"app.py": FALLBACK_KEY},
        # Exported, FLASK_SECRET_KEY (which the app does not read) makes the hint say so: the check's own without.
        env={"SECRET_KEY": None, "FLASK_SECRET_KEY": None},
        obj="app.py:6",
        text="SECRET_KEY falls back to a string written in the source, and the app is running with it right now "
        "(SECRET_KEY is not set): anyone who can read the code can sign its sessions",
        # Production(app) puts FLASK_SECRET_KEY's value over the fallback: the string is not the key.
        good={"app.py": FALLBACK_KEY + "\n    from flaskprod import Production\n\n    Production(app)\n"},
    ),
    Case("FP-S005", bad={"app.py": PLAIN}, good={"app.py": PROD}),
    Case(
        "FP-S006",
        bad={
            "app.py": PROD.replace("Production(app)", 'app.config["SESSION_COOKIE_HTTPONLY"] = False\nProduction(app)')
        },
        good={"app.py": PLAIN},
    ),
    Case("FP-S007", bad={"app.py": PLAIN}, good={"app.py": PROD}),
    Case(
        "FP-S008",
        bad={"app.py": PROD, "settings.py": "import os\n\nSECRET_KEY = os.urandom(24).hex()\n"},
        obj="settings.py:3",
        good={
            "app.py": PROD,
            "settings.py": """
                import secrets

                class TestingConfig:
                    TESTING = True
                    SECRET_KEY = secrets.token_hex()
            """,
        },
    ),
    Case(
        "FP-S009",
        bad={
            "app.py": PROD,
            "docker-compose.yml": "services:\n  app:\n    environment:\n      - FLASK_SECRET_KEY=9f8e7d6c5b4a39\n",
        },
        obj="docker-compose.yml:4",
        good={
            "app.py": PROD,
            "docker-compose.yml": "services:\n  app:\n    environment:\n      - FLASK_SECRET_KEY=${FLASK_SECRET_KEY}\n",
            # docker compose up adds the override file for local work: a development key belongs there.
            "docker-compose.override.yml": "services:\n  app:\n    environment:\n      SECRET_KEY: dev\n",
        },
    ),
    Case(
        "FP-C001",
        bad={"app.py": PROD},
        env={"FLASK_SECRET_KEY": "dev"},
        text=secret_key_problem("dev", 32),
        good={"app.py": PROD},
    ),
    Case(
        "FP-C017",
        bad={"app.py": PROD.replace("Production(app)", FROM_ENVVAR.format(args=""))},
        env={"SETTINGS": None},
        obj="app.py:6",
        text='the app fails at start: app.config.from_envvar("SETTINGS") loads its config from the file SETTINGS '
        "names, and SETTINGS is not set (the app's other checks did not run)",
        # Optional: the app starts on its own config when the variable is unset.
        good={"app.py": PROD.replace("Production(app)", FROM_ENVVAR.format(args=", silent=True"))},
    ),
    Case(
        "FP-C018",
        bad={"app.py": "import os\n" + PROD.replace("Production(app)", 'DB = os.environ["DATABASE_URL"]')},
        env={"DATABASE_URL": None},
        obj="app.py:7",
        text="the app fails at start: it reads os.environ['DATABASE_URL'], and DATABASE_URL is not set where check "
        "runs (the app's other checks did not run)",
        # Optional: the app starts without it.
        good={"app.py": "import os\n" + PROD.replace("Production(app)", 'DB = os.getenv("DATABASE_URL")')},
    ),
    Case("FP-C002", bad={"app.py": PLAIN}, good={"app.py": PROD}),
    Case("FP-C003", bad={"app.py": PLAIN}, good={"app.py": PLAIN + 'app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024\n'}),
    Case(
        "FP-C004",
        bad={
            "app.py": PROD,
            "docker-compose.yml": "services:\n  app:\n    environment:\n      - FLASK_ENV=production\n",
        },
        obj="docker-compose.yml:4",
        good={"app.py": PROD, "docker-compose.yml": "services:\n  app:\n    environment:\n      - FLASK_DEBUG=0\n"},
    ),
    Case(
        "FP-C005",
        bad={"app.py": PROD, "nginx/site.conf": NGINX_PROXY},
        obj="nginx/site.conf:4",
        good={"app.py": PROD, "nginx/site.conf": NGINX_PROXY, "flaskprod.toml": "[proxy]\ntrusted_hops = 1\n"},
    ),
    Case(
        "FP-C006",
        bad={"app.py": PLAIN + SQLALCHEMY + "db.init_app(app)\n"},
        good={"app.py": PROD + SQLALCHEMY + "db.init_app(app)\n"},
    ),
    Case(
        "FP-C007",
        bad={"app.py": PROD + OWN_ENGINE.format(options="")},
        text="the SQLAlchemy engine for postgresql+psycopg2://shop:***@127.0.0.1:1/shop keeps 5 + 10 connections in "
        "every worker process, not the 12 + 2 flaskprod shares out of database.connection_budget (80): with every "
        "worker and replica it can pass the budget and the database's max_connections",
        env={"FLASKPROD_SERVER__WORKERS": "2"},
        obj="app.py:11",
        good={"app.py": PROD + OWN_ENGINE.format(options=", **flaskprod.pool_options(URL)")},
    ),
    Case(
        "FP-C008",
        bad={"app.py": PROD + PROXY_FIX},
        good={"app.py": PROD + PROXY_FIX, "flaskprod.toml": "[proxy]\ntrusted_hops = 0\n"},
    ),
    Case(
        "FP-C009",
        bad={"app.py": PROD + SERVER_NAME, "flaskprod.toml": '[proxy]\nserver_name = "example.com"\n'},
        text="the app's SERVER_NAME is 'shop.example.com:8443', a host proxy.server_name ('example.com') does not "
        "name: nginx answers it too, but the TLS certificate (--with tls, up --tls) and Kubernetes' Ingress are made "
        "for proxy.server_name's names alone, so HTTPS or the Ingress fails requests for it",
        good={"app.py": PROD + SERVER_NAME, "flaskprod.toml": '[proxy]\nserver_name = "example.com *.example.com"\n'},
    ),
    Case(
        "FP-C010",
        bad={"app.py": PROD + ASYNC_VIEW, "requirements.txt": "flask==3.1.0\nflaskprod\n"},
        text="the app has async views (feed), which Flask runs with asgiref, and requirements.txt installs none: "
        f"each answers 500 ({ASYNC_500}); write flask[async] there instead of flask, or add asgiref",
        good={"app.py": PROD + ASYNC_VIEW, "requirements.txt": "flask[async]==3.1.0\nflaskprod\n"},
    ),
    Case(
        "FP-C011",
        bad={"app.py": PROD + WEBSOCKET_ROUTE, "flaskprod.toml": '[server]\nkind = "uwsgi"\n'},
        text="the app has WebSocket routes (/ws), which uWSGI cannot hand the client's connection: serve it with "
        'Gunicorn (server.kind = "gunicorn", or --server gunicorn)',
        good={"app.py": PROD + WEBSOCKET_ROUTE, "flaskprod.toml": '[server]\nkind = "auto"\n'},
    ),
    Case(
        "FP-C012",
        bad={"app.py": PROD + LIMITER.format(storage="")},
        good={"app.py": PROD + LIMITER.format(storage=', storage_uri="redis://127.0.0.1:6379"')},
    ),
    Case(
        "FP-C013",
        bad={"app.py": PROD + CACHE.format(kind="SimpleCache")},
        good={"app.py": PROD + CACHE.format(kind="RedisCache")},
    ),
    Case(
        "FP-C014",
        bad={"app.py": PROD + EVENTS},
        obj="app.py:11",
        good={"app.py": PROD + EVENTS, "flaskprod.toml": "[server]\nconversation_threads = 50\n"},
    ),
    Case(
        "FP-C015",
        bad={"app.py": PROD + MYSQL.format(driver="mysqldb"), "flaskprod.toml": GEVENT_TOML},
        text="the SQLAlchemy engine for mysql+mysqldb://shop:***@127.0.0.1:1/shop?charset=utf8mb4 waits in mysqldb, "
        "inside C, where gevent cannot switch: on gevent's worker each query holds every request of its worker until "
        "it returns",
        good={"app.py": PROD + MYSQL.format(driver="pymysql"), "flaskprod.toml": GEVENT_TOML},
    ),
    Case(
        "FP-C016",
        bad={"app.py": PROD, "nginx/site.conf": NGINX_PROXY, "flaskprod.toml": "[proxy]\ntrusted_hops = 3\n"},
        text="proxy.trusted_hops = 3, but 1 proxy is in front of the app, nginx (nginx/site.conf:4): a client sends "
        "its own X-Forwarded-For, nginx passes it on, and the app takes the address the client wrote for the "
        "client's; `flaskprod build` and `up` refuse it",
        good={"app.py": PROD, "nginx/site.conf": NGINX_PROXY, "flaskprod.toml": "[proxy]\ntrusted_hops = 1\n"},
    ),
    Case(
        "FP-P021",
        # The app's module first, then 4,999 of these: the last one read is the 5,000th.
        bad={"app.py": PROD, **{f"data/m{i:04}.py": "X = 1\n" for i in range(5_000)}},
        obj="data/m4998.py",
        good={"app.py": PROD, **{f"data/m{i:04}.py": "X = 1\n" for i in range(4_999)}},
    ),
    Case(
        "FP-P019",
        bad={"app.py": PROD + OUTBOUND.format(args='"https://rates.example.com/"')},
        obj="app.py:13",
        good={"app.py": PROD + OUTBOUND.format(args='"https://rates.example.com/", timeout=(3.05, 10)')},
    ),
    Case(
        "FP-P020",
        bad={"app.py": PROD + BARE_POSTGRES.format(args='os.environ["DATABASE_URL"]')},
        obj="app.py:14",
        good={
            "app.py": PROD
            + BARE_POSTGRES.format(args='os.environ["DATABASE_URL"], options="-c statement_timeout=30s"')
        },
    ),
    Case(
        "FP-P002",
        bad={"app.py": PROD, "docker-compose.yml": "version: '3.8'\nservices:\n  app:\n    image: app\n"},
        obj="docker-compose.yml:1",
        good={
            "app.py": PROD,
            "docker-compose.yml": "services:\n  app:\n    image: app\n    labels:\n      version: '1'\n",
        },
    ),
    Case(
        "FP-P003",
        bad={"app.py": PROD, "docker-stack.yml": "services:\n  web:\n    image: web\n    depends_on:\n      - app\n"},
        obj="docker-stack.yml:4",
        good={
            "app.py": PROD,
            "docker-compose.yml": "services:\n  web:\n    image: web\n    depends_on:\n      - app\n",
        },
    ),
    Case(
        "FP-P004",
        bad={
            "app.py": PROD,
            "Dockerfile": 'FROM python:3.12-slim\nCMD ["flask", "--app", "app", "run", "--host", "0.0.0.0"]\n',
        },
        obj="Dockerfile:2",
        good={
            "app.py": PROD,
            "Dockerfile": "FROM python:3.12-slim\nCMD flask db upgrade && \\\n    flaskprod serve app:app\n",
        },
    ),
    Case(
        "FP-P018",
        bad={
            "app.py": PROD,
            "Dockerfile": 'FROM python:3.12-slim\nCMD ["gunicorn", "--reload", "-w", "2", "app:app"]\n',
        },
        obj="Dockerfile:2",
        good={
            "app.py": PROD,
            "Dockerfile": 'FROM python:3.12-slim\nCMD ["gunicorn", "-w", "2", "app:app"]\n',
            "Procfile.dev": "web: gunicorn --reload app:app\n",
        },
    ),
    Case(
        "FP-P022",
        bad={"app.py": PROD, "Dockerfile": 'FROM python:3.12-slim\nCMD ["gunicorn", "app:app"]\n'},
        obj="Dockerfile:2",
        good={
            "app.py": PROD,
            "Dockerfile": 'FROM python:3.12-slim\nRUN useradd app\nUSER app\nCMD ["gunicorn", "app:app"]\n',
            # uWSGI drops root itself, to the uid its ini names.
            "uwsgi.Dockerfile": 'FROM python:3.12-slim\nCMD ["uwsgi", "--ini", "uwsgi.ini"]\n',
            "uwsgi.ini": "[uwsgi]\nmodule = app:app\nuid = www-data\n",
        },
    ),
    Case(
        "FP-P023",
        bad={"app.py": PROD, "Dockerfile": "FROM python:3.12-slim\nUSER app\nCMD gunicorn app:app\n"},
        obj="Dockerfile:3",
        good={
            "app.py": PROD,
            "Dockerfile": "FROM python:3.12-slim\nUSER app\nCMD flask db upgrade && exec gunicorn app:app\n",
        },
    ),
    Case(
        "FP-P005",
        bad={
            "app.py": PROD,
            "gunicorn.conf.py": """
                import multiprocessing

                workers = multiprocessing.cpu_count() * 2 + 1
                worker_tmp_dir = "/dev/shm"
            """,
        },
        obj="gunicorn.conf.py:3",
        good={"app.py": PROD, "gunicorn.conf.py": 'workers = 4\nworker_tmp_dir = "/dev/shm"\n'},
    ),
    Case(
        "FP-P006",
        bad={"app.py": PROD, "gunicorn.conf.py": "workers = 4\n"},
        obj="gunicorn.conf.py",
        good={"app.py": PROD, "gunicorn.conf.py": 'workers = 4\nworker_tmp_dir = "/dev/shm"\n'},
    ),
    Case(
        "FP-P007",
        bad={
            "app.py": PROD,
            "logging_config.py": """
                import logging
                from logging.handlers import SocketHandler

                def configure_logging(app):
                    logstash_handler = SocketHandler('logstash', 5000)
                    app.logger.addHandler(logstash_handler)
            """,
        },
        obj="logging_config.py:5",
        good={
            "app.py": PROD,
            "logging_config.py": "import logging\nimport sys\n\nhandler = logging.StreamHandler(sys.stdout)\n",
        },
    ),
    Case(
        "FP-P008",
        bad={
            "app.py": PROD,
            "metrics.py": "from prometheus_flask_exporter import PrometheusMetrics\n\n"
            "metrics = PrometheusMetrics(None)\n",
        },
        obj="metrics.py:3",
        good={
            "app.py": PROD,
            "metrics.py": "from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics\n\n"
            "metrics = GunicornPrometheusMetrics(None)\n",
        },
    ),
    Case(
        "FP-P009",
        bad={"app.py": PROD, "nginx.conf": "server {\n  location / {\n    proxy_pass http://app:8000;\n  }\n}\n"},
        obj="nginx.conf:3",
        text="nginx proxies to the app without setting X-Forwarded-For and X-Forwarded-Proto: "
        "the app cannot see the client's address or scheme (https behind TLS)",
        good={"app.py": PROD, "nginx.conf": NGINX_PROXY},
    ),
    Case(
        "FP-P011",
        bad={"app.py": PROD, "requirements.txt": "flask>=3.0\ngunicorn\n"},
        obj="requirements.txt",
        good={"app.py": PROD, "requirements.txt": "-r base.txt\n", "base.txt": "flask>=3.0\nflaskprod==0.1.0\n"},
    ),
    Case(
        "FP-P010",
        bad={
            "app.py": PROD,
            "uwsgi.ini": "[uwsgi]\nmodule = app:app\nsocket = /tmp/uwsgi.sock\n",
            "nginx/nginx.conf": NGINX_UWSGI,
            "docker-compose.yml": "services:\n  app:\n    build: .\n  nginx:\n    build: ./nginx\n",
        },
        obj="uwsgi.ini:3",
        good={
            "app.py": PROD,
            "uwsgi.ini": "[uwsgi]\nmodule = app:app\nsocket = /tmp/uwsgi.sock\n",
            "nginx/nginx.conf": NGINX_UWSGI,
            "docker-compose.yml": "services:\n  app:\n    volumes:\n      - sockets:/tmp\n  nginx:\n    volumes:\n"
            "      - sockets:/tmp\nvolumes:\n  sockets:\n",
        },
    ),
    Case(
        "FP-P017",
        bad={"app.py": PROD, "nginx.conf": "server {\n  listen 443 ssl;\n  ssl_protocols TLSv1 TLSv1.1 TLSv1.2;\n}\n"},
        obj="nginx.conf:3",
        good={"app.py": PROD, "nginx.conf": "server {\n  listen 443 ssl;\n  ssl_protocols TLSv1.2 TLSv1.3;\n}\n"},
    ),
    Case(
        "FP-P016",
        bad={"app.py": PROD, "Dockerfile": 'FROM python:3.12-slim\nCMD ["gunicorn", "app:app"]\n'},
        obj="Dockerfile:2",
        good={
            "app.py": PROD,
            "Dockerfile": "FROM python:3.12-slim\nHEALTHCHECK CMD python -m flaskprod.servers.healthcheck\n"
            'CMD ["gunicorn", "app:app"]\n',
        },
    ),
    Case(
        "FP-P015",
        bad={"app.py": PROD, "gunicorn.conf.py": 'workers = 4\naccesslog = "/var/log/gunicorn/access.log"\n'},
        obj="gunicorn.conf.py:2",
        good={"app.py": PROD, "gunicorn.conf.py": 'workers = 4\naccesslog = "-"\nerrorlog = "-"\n'},
    ),
    Case(
        "FP-P014",
        bad={"app.py": PROD, "static/app.css": "body { margin: 0 }\n", "nginx.conf": NGINX_PROXY},
        obj="nginx.conf:4",
        text="nginx passes every request to the app, /static/ too: each static file holds a Python worker that a "
        "page could use, and gets none of nginx's sendfile, caching headers or open-file cache",
        good={
            "app.py": PROD,
            "static/app.css": "body { margin: 0 }\n",
            "nginx.conf": NGINX_PROXY.replace(
                "location / {", "location /static/ {\n    alias /srv/static/;\n}\nlocation / {"
            ),
        },
    ),
    Case(
        "FP-P013",
        bad={
            "app.py": PROD,
            "stack.yml": "services:\n  prometheus:\n    image: prom/prometheus\n    ports:\n"
            "      - \"127.0.0.1:9090:9090\"\n",
        },
        obj="stack.yml:5",
        good={
            "app.py": PROD,
            "stack.yml": "services:\n  nginx:\n    image: nginx\n    ports:\n      - \"80:8080\"\n"
            "      - target: 8443\n        published: 443\n",
            # Compose, unlike Swarm, binds the address it is given.
            "compose.yaml": "services:\n  prometheus:\n    ports:\n      - 127.0.0.1:9090:9090\n",
        },
    ),
    Case(
        "FP-P012",
        bad={
            "app.py": PROD,
            "log_setup.py": "from logging.handlers import RotatingFileHandler\n\n"
            "handler = RotatingFileHandler('app.log', maxBytes=10_000_000, backupCount=5)\n",
        },
        obj="log_setup.py:3",
        good={
            "app.py": PROD,
            "log_setup.py": "import logging\nimport sys\n\nhandler = logging.StreamHandler(sys.stdout)\n",
        },
    ),
    Case(
        "FP-R001",
        bad={"app.py": PROD + MIGRATE},
        good={"app.py": PROD + MIGRATE, "flaskprod.toml": '[deploy]\nrelease_command = "flask db upgrade"\n'},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_check_reports_the_pitfall(project: Path, case: Case) -> None:
    result = audit(project, case.bad, env=case.env)
    check = REGISTRY[case.id]
    assert result.only(case.id) == [
        {
            "id": case.id,
            "level": check.level.name,
            "text": case.text or check.text,
            "hint": check.hint,
            "obj": case.obj,
        }
    ], result.messages


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_check_passes_the_fix(project: Path, case: Case) -> None:
    result = audit(project, case.good)
    assert case.id not in result.ids(), result.messages


def test_a_blueprints_static_files_through_the_app_are_named_too(project: Path) -> None:
    admin = (
        'from flask import Blueprint\n\nadmin = Blueprint("admin", __name__, static_folder="admin_static", '
        'url_prefix="/admin")\napp.register_blueprint(admin)\n'
    )
    serves_static = NGINX_PROXY.replace("location / {", "location /static/ {\n    alias /srv/static/;\n}\nlocation / {")
    files = {"app.py": PROD + admin, "static/app.css": "body {}\n", "admin_static/admin.css": "h1 {}\n"}
    found = audit(project, {**files, "nginx.conf": serves_static}).only("FP-P014")
    assert [m["text"] for m in found] == [
        "nginx passes every request to the app, /admin/admin_static/ too: each static file holds a Python worker "
        "that a page could use, and gets none of nginx's sendfile, caching headers or open-file cache"
    ]
    admin_location = "location /admin/admin_static/ {\n    alias /srv/admin/;\n}\n"
    both = serves_static.replace("location / {", admin_location + "location / {")
    assert audit(project, {**files, "nginx.conf": both}).only("FP-P014") == []


@pytest.mark.parametrize(
    "extra",
    [WEBSOCKET_ROUTE, "\nfrom flask_socketio import SocketIO\n\nsocketio = SocketIO(app, async_mode='threading')\n"],
    ids=["flask-sock", "flask-socketio"],
)
def test_event_streams_beside_websockets_have_the_threads_auto_gives_those(project: Path, extra: str) -> None:
    assert audit(project, {"app.py": PROD + EVENTS + extra}).only("FP-C014") == []


def test_event_streams_on_greenlets_hold_no_thread(project: Path) -> None:
    toml = '[server]\nkind = "gunicorn"\nworker_class = "gevent"\nthreads = 1\n'
    assert audit(project, {"app.py": PROD + EVENTS, "flaskprod.toml": toml}).only("FP-C014") == []


def test_a_driver_that_waits_in_c_is_fine_on_threads(project: Path) -> None:
    assert audit(project, {"app.py": PROD + MYSQL.format(driver="mysqldb")}).only("FP-C015") == []


def test_a_driver_that_waits_in_c_is_named_under_flask_socketio_on_gevent(project: Path) -> None:
    """auto serves Flask-SocketIO on gevent with gevent's worker, which the check learns as serve does."""
    socketio = "\nfrom flask_socketio import SocketIO\n\nsocketio = SocketIO(app, async_mode='gevent')\n"
    [found] = audit(project, {"app.py": PROD + MYSQL.format(driver="mysqldb") + socketio}).only("FP-C015")
    assert "waits in mysqldb, inside C" in found["text"]


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("import requests\nrequests.get(u)\nrequests.post(u, json={}, timeout=5)\n", [2]),
        ("import requests\nrequests.request('GET', u, timeout=None)\n", [2]),  # None waits forever too
        ("import requests as rq\nrq.put(u, data=b'')\n", [2]),
        ("from requests import get as fetch, post\nfetch(u)\npost(u, timeout=3)\n", [2]),
        ("import requests\ns = requests.Session()\ns.get(u)\ns.get(u, timeout=2)\n", [3]),
        ("from requests import Session\nwith Session() as s:\n    s.delete(u)\n", [3]),
        (
            "import requests\nclass Client:\n    def __init__(self):\n        self.http = requests.Session()\n"
            "    def rates(self):\n        return self.http.get(u)\n",
            [6],
        ),
        ("import requests\nrequests.get(u, **options)\n", []),  # options may carry a timeout
        ("import urllib.request\nurllib.request.urlopen(u)\nurllib.request.urlopen(u, None, 5)\n", [2]),
        ("from urllib.request import urlopen\nurlopen(u)\nurlopen(u, timeout=5)\n", [2]),
        ("from urllib import request\nrequest.urlopen(u)\n", [2]),
        # Not requests': a dict's get, Flask's request, httpx (5 s by default).
        ("import httpx\nfrom flask import request\nrequest.args.get('q')\nhttpx.get(u)\n{}.get('k')\n", []),
    ],
)
def test_outbound_calls_without_a_timeout_are_found_as_written(source: str, lines: list[int]) -> None:
    from flaskprod.checks.outbound import calls_without_timeout

    assert [call.lineno for call in calls_without_timeout(ast.parse(source))] == lines


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("import psycopg2\npsycopg2.connect(dsn)\npsycopg2.connect(dsn, options='-c statement_timeout=5s')\n", [2]),
        ("import psycopg2\npsycopg2.connect('dbname=shop options=-cstatement_timeout=5000')\n", []),
        ("from psycopg2 import connect as pg\npg(dsn)\n", [2]),
        ("import psycopg2.pool\npsycopg2.pool.ThreadedConnectionPool(1, 4, dsn)\n", [2]),
        ("from psycopg2 import pool\npool.SimpleConnectionPool(1, 4, dsn)\n", [2]),
        ("from psycopg2.pool import ThreadedConnectionPool\nThreadedConnectionPool(1, 4, dsn, options=OPTS)\n", []),
        ("import psycopg2\npsycopg2.connect(**settings)\n", []),  # settings may carry one
        ("import pg8000\npg8000.connect(user='shop')\n", [2]),
        (
            "import pg8000.native\n"
            "pg8000.native.Connection('shop', startup_params={'statement_timeout': '5s'})\n"
            "pg8000.native.Connection('shop', startup_params={'application_name': 'shop'})\n",
            [3],
        ),
        # psycopg 3, whose waits the deadline reaches, and SQLAlchemy, whose connections flaskprod gives a timeout.
        ("import psycopg\nimport sqlalchemy\npsycopg.connect(dsn)\nsqlalchemy.create_engine(url)\n", []),
    ],
)
def test_postgresql_connections_without_a_statement_timeout_are_found_as_written(
    source: str, lines: list[int]
) -> None:
    from flaskprod.checks.outbound import connections_without_statement_timeout

    assert [call.lineno for call in connections_without_statement_timeout(ast.parse(source))] == lines


def test_a_bare_postgresql_connection_on_gevent_is_cancelled_there(project: Path) -> None:
    files = {"app.py": PROD + BARE_POSTGRES.format(args='os.environ["DATABASE_URL"]'), "flaskprod.toml": GEVENT_TOML}
    assert audit(project, files).only("FP-P020") == []


def test_every_check_has_a_case() -> None:
    covered = {c.id for c in CASES} | {"FP-P001"}  # FP-P001 runs in its own process below
    # Files git tracks: their cases make a repository (tests/test_check_committed.py, _database.py,
    # test_check_secrets_source.py).
    covered |= {"FP-S011", "FP-S012", "FP-S013"}
    covered |= {"FP-C019"}  # dotenv files and deployment files together: tests/test_check_dotenv.py
    covered |= {"FP-R002"}  # an app's create_all commands, read from its source: tests/test_check_release_tables.py
    covered |= {"FP-C020"}  # a SQLite file beside the code, in a config.py: tests/test_check_sqlite_outside_instance.py
    covered |= {"FP-C021"}  # a config class picked by the shell: tests/test_check_config_picked_by_shell.py
    covered |= {"FP-C022"}  # a body size the app overrides: tests/test_check_body_size_setting_unused.py
    assert covered == set(REGISTRY)


def test_production_app_with_a_strong_key_has_no_issues(project: Path) -> None:
    write(project, {"app.py": PROD})
    result = invoke()
    assert result.exit_code == 0
    assert result.stdout == "System check identified no issues (0 silenced).\n"


@pytest.mark.parametrize(
    ("dependencies", "found"), [('["flask"]', True), ('["flask", "flaskprod[uwsgi]"]', False)]
)
def test_a_pyproject_without_flaskprod_is_named_when_the_app_imports_it(
    project: Path, dependencies: str, found: bool
) -> None:
    pyproject = f'[project]\nname = "shop"\nversion = "1.0"\ndependencies = {dependencies}\n'
    result = audit(project, {"app.py": PROD, "pyproject.toml": pyproject})
    assert [m["obj"] for m in result.only("FP-P011")] == (["pyproject.toml"] if found else [])


def test_a_pyproject_pip_cannot_read_leaves_its_dependency_checks_to_build(project: Path) -> None:
    """A dependency that was no string was a TypeError in both checks that read them: two tracebacks."""
    pyproject = '[project]\nname = "shop"\nversion = "1.0"\ndependencies = [1, 2]\n'
    result = audit(project, {"app.py": PROD + ASYNC_SHAPES, "pyproject.toml": pyproject})  # exit 0 or 1, JSON out
    assert result.only("FP-P011") == []


def test_unguarded_app_run_is_found_without_serving(tmp_path: Path) -> None:
    # In a process of its own: were the app ever served, the timeout would end it.
    write(tmp_path, {"app.py": PROD + "\napp.run()\n"})
    result = run_cli("--format", "json", cwd=tmp_path)
    messages = json.loads(result.stdout)["messages"]
    assert result.returncode == 1
    check = REGISTRY["FP-P001"]
    assert [m for m in messages if m["id"] == "FP-P001"] == [
        {"id": "FP-P001", "level": "ERROR", "text": check.text, "hint": check.hint, "obj": "app.py:8"}
    ]
    # The app still loaded (app.run returned at once), so its own checks ran too.
    assert "FP-C001" not in {m["id"] for m in messages}
    # Flask's own notice of the ignored call would only repeat the finding.
    assert result.stderr == ""


def test_app_run_called_through_another_module_is_found_where_it_is(tmp_path: Path) -> None:
    server = "def start(app):\n    app.run(port=8000)\n"
    write(tmp_path, {"app.py": PROD + "\nfrom server import start\n\nstart(app)\n", "server.py": server})
    result = run_cli("--format", "json", cwd=tmp_path)
    found = [m["obj"] for m in json.loads(result.stdout)["messages"] if m["id"] == "FP-P001"]
    assert (found, result.stderr) == (["server.py:2"], "")


@pytest.mark.parametrize(
    "source",
    [
        PROD + '\nif __name__ == "__main__":\n    app.run(debug=True)\n',
        PROD + "\ndef main():\n    app.run()\n",
        # .run on something that is not the app is not the app's server.
        PROD + "\nimport types\n\nrunner = types.SimpleNamespace(run=lambda: None)\nrunner.run()\n",
    ],
)
def test_guarded_app_run_passes(project: Path, source: str) -> None:
    assert "FP-P001" not in audit(project, {"app.py": source}).ids()


def test_app_made_under_another_name_is_recognised(tmp_path: Path) -> None:
    source = "from flask import Flask\n\nserver = Flask(__name__)\nserver.run()\n"
    write(tmp_path, {"wsgi.py": source})
    result = run_cli("--format", "json", cwd=tmp_path)
    objs = [m["obj"] for m in json.loads(result.stdout)["messages"] if m["id"] == "FP-P001"]
    assert objs == ["wsgi.py:4"]


def test_flask_env_in_the_environment(project: Path) -> None:
    result = audit(project, {"app.py": PROD}, env={"FLASK_ENV": "production"})
    assert [(m["obj"], m["text"]) for m in result.only("FP-C004")] == [
        ("environment", "FLASK_ENV is set in the environment, but Flask 2.3 removed it")
    ]


def test_flask_env_read_by_the_app_itself_is_not_said_to_do_nothing(project: Path) -> None:
    # cookiecutter-flask's settings: the app turns debug on from FLASK_ENV itself.
    settings = 'import os\n\nENV = os.environ.get("FLASK_ENV", "production")\nDEBUG = ENV == "development"\n'
    compose = "services:\n  app:\n    environment:\n      FLASK_ENV: development\n"
    found = audit(project, {"app.py": PROD, "settings.py": settings, "docker-compose.yml": compose}).only("FP-C004")
    text = (
        "FLASK_ENV is used, but Flask 2.3 removed it: only the app's own code reads it now (settings.py:3), so "
        "what it sets there (debug, say) and what Flask and its extensions see can differ"
    )
    assert [(m["obj"], m["text"]) for m in found] == [("docker-compose.yml:4", text), ("settings.py:3", text)]


def test_secret_key_fallbacks_and_min_length_from_the_spec(project: Path) -> None:
    key40 = secrets.token_hex(20)
    source = PLAIN + f'app.config["SECRET_KEY"] = "{key40}"\napp.config["SECRET_KEY_FALLBACKS"] = ["dev"]\n'
    texts = [m["text"] for m in audit(project, {"app.py": source}).only("FP-S003")]
    assert texts == ["SECRET_KEY_FALLBACKS[0] is a published default ('dev'): anyone can forge sessions"]
    # The key is written in the source and in effect: FP-S010's one finding at its line says it is short too.
    stricter = audit(project, {}, "--set", "security.secret_min_length=64")
    assert [(m["id"], m["obj"], m["text"]) for m in stricter.messages if m["id"] in ("FP-S003", "FP-S010")] == [
        (
            "FP-S003",
            "app",
            "SECRET_KEY_FALLBACKS[0] is a published default ('dev'): anyone can forge sessions",
        ),
        (
            "FP-S010",
            "app.py:4",
            "SECRET_KEY is a string written in the source, and the app is running with it right now: anyone who can "
            "read the code can sign its sessions; it is also too short (40 characters, at least 64 needed)",
        ),
    ]


def test_a_key_padded_out_from_a_published_one_is_said_to_contain_it(project: Path) -> None:
    padded = "my-super-secret-key-that-is-long-enough"
    result = audit(project, {"app.py": PLAIN + f'app.config["SECRET_KEY"] = "{padded}"\n'})
    assert [(m["id"], m["text"]) for m in result.messages if m["id"] in ("FP-S003", "FP-S010")] == [
        (
            "FP-S010",
            "SECRET_KEY is a string containing a published default ('super-secret-key') written in the source, and "
            "the app is running with it right now: anyone can sign its sessions",
        )
    ]
    # Not written in the source (FLASK_SECRET_KEY's, read by from_prefixed_env): FP-S003 names it.
    read = audit(project, {"app.py": PLAIN + "app.config.from_prefixed_env()\n"}, env={"FLASK_SECRET_KEY": padded})
    assert [m["text"] for m in read.only("FP-S003")] == [
        "SECRET_KEY contains a published default ('super-secret-key'), and what it adds is too short or simple to "
        "make it secret: anyone can forge sessions"
    ]


@pytest.mark.parametrize(
    ("source", "env", "hint"),
    [
        (
            PLAIN,
            {},
            "FLASK_SECRET_KEY is set, but the app does not read it: add Production(app) (it reads FLASK_SECRET_KEY), "
            "or call app.config.from_prefixed_env()",
        ),
        (
            PLAIN,
            {"FLASK_SECRET_KEY": None, "FLASK_SECRET_KEY_FILE": "key.txt"},
            "FLASK_SECRET_KEY_FILE is set, but the app does not read it: add Production(app) (it reads "
            "FLASK_SECRET_KEY_FILE), or read the file into SECRET_KEY",
        ),
        (
            PROD + 'app.config["SECRET_KEY"] = "dev"\n',
            {},
            "FLASK_SECRET_KEY is set, but the app replaces the key Production(app) read from it: remove its own "
            "SECRET_KEY",
        ),
        (
            PROD,
            {"FLASKPROD_APP__ENV_CONFIG": "false", "FLASKPROD_SECURITY__REFUSE_UNSAFE": "false"},
            "FLASK_SECRET_KEY is set, but app.env_config is off, so Production(app) does not read it: "
            "turn app.env_config on",
        ),
        (
            # The app reads the variable: its value is what to fix.
            PLAIN + "app.config.from_prefixed_env()\n",
            {"FLASK_SECRET_KEY": "dev"},
            "set FLASK_SECRET_KEY or FLASK_SECRET_KEY_FILE to a random value, e.g. "
            "python -c 'import secrets; print(secrets.token_hex(32))'",
        ),
    ],
    ids=["not-read", "file-not-read", "replaced", "env-config-off", "read"],
)
def test_secret_key_hint_says_when_the_app_ignores_the_variable(
    project: Path, source: str, env: dict[str, str | None], hint: str
) -> None:
    result = audit(project, {"app.py": source, "key.txt": STRONG_KEY}, env=env)
    # The app's own "dev" is written in the source: FP-S010 reports it, with the hint FP-S003 would give.
    assert [m["hint"] for m in result.messages if m["id"] in ("FP-S003", "FP-S010")] == [hint]


@pytest.mark.parametrize(
    ("source", "env", "hint"),
    [
        (
            PLAIN + 'app.config["DEBUG"] = True\n',
            {},
            "the app turns debug on itself, not FLASK_DEBUG: remove `DEBUG = True`, `app.debug = True` or "
            '`app.config["DEBUG"] = True` from its production code; use `flask run --debug` for local development',
        ),
        (
            PLAIN + "app.debug = True\n",
            {"FLASK_DEBUG": "0"},
            "the app turns debug on itself, not FLASK_DEBUG: remove `DEBUG = True`, `app.debug = True` or "
            '`app.config["DEBUG"] = True` from its production code; use `flask run --debug` for local development',
        ),
        (
            PLAIN,
            {"FLASK_DEBUG": "1"},
            "unset FLASK_DEBUG and DEBUG in the production config; use `flask run --debug` for local development",
        ),
    ],
    ids=["in-code", "in-code-flask-debug-0", "environment"],
)
def test_debug_hint_says_where_debug_is_turned_on(
    project: Path, source: str, env: dict[str, str | None], hint: str
) -> None:
    assert [m["hint"] for m in audit(project, {"app.py": source}, env=env).only("FP-S001")] == [hint]


def test_secret_key_literals_in_every_form(project: Path) -> None:
    settings = """
        import os

        SECRET_KEY = os.getenv("SECRET_KEY", "fallback-in-source")
        TOKEN = os.environ.get("SECRET_KEY")

        def create(app):
            app.config.from_mapping(SECRET_KEY="dev")
            app.secret_key = os.environ["SECRET_KEY"]
            app.config.update({"SECRET_KEY": "x" if os.environ.get("CI") else os.environ["KEY"]})
    """
    result = audit(project, {"app.py": PROD, "settings.py": settings})
    assert [m["obj"] for m in result.only("FP-S004")] == ["settings.py:3", "settings.py:7", "settings.py:9"]


def test_a_key_in_the_instance_folder_is_where_flask_puts_it(project: Path) -> None:
    # Flask's tutorial: the production key in instance/config.py, a folder kept out of the repository.
    source = PROD.replace("Production(app)", 'app.config.from_pyfile("config.py", silent=True)\nProduction(app)')
    instance = {"instance/config.py": f"SECRET_KEY = {STRONG_KEY!r}\n"}
    assert audit(project, {"app.py": source, **instance}).only("FP-S004") == []
    # Another key than the one in effect (FLASK_SECRET_KEY's, FP-S010 otherwise): a string in the source only.
    elsewhere = audit(project, {"settings/config.py": f"SECRET_KEY = {secrets.token_hex(32)!r}\n"}).only("FP-S004")
    assert [(m["obj"], m["text"]) for m in elsewhere] == [
        ("settings/config.py:1", "SECRET_KEY is a string written in the source: anyone who can read the code can "
         "sign sessions")
    ]


def test_a_fallback_key_in_effect_is_an_error_and_one_not_in_effect_a_warning(project: Path) -> None:
    in_effect = audit(project, {"app.py": FALLBACK_KEY}, env={"SECRET_KEY": None})
    assert (in_effect.exit_code, [m["id"] for m in in_effect.messages if m["obj"] == "app.py:6"]) == (1, ["FP-S010"])
    other_key = audit(project, {}, env={"SECRET_KEY": secrets.token_hex(32)})
    assert (other_key.exit_code, [m["id"] for m in other_key.messages if m["obj"] == "app.py:6"]) == (0, ["FP-S004"])


def test_a_key_written_in_the_source_in_effect_is_an_error(project: Path) -> None:
    [found] = audit(project, {"app.py": PLAIN + f'app.config["SECRET_KEY"] = "{STRONG_KEY}"\n'}).only("FP-S010")
    assert (found["obj"], found["text"]) == (
        "app.py:4",
        "SECRET_KEY is a string written in the source, and the app is running with it right now: anyone who can "
        "read the code can sign its sessions",
    )


def test_secret_keys_in_deployment_files_in_every_form(project: Path) -> None:
    files = {
        "app.py": PROD,
        "Dockerfile": "FROM python:3.12-slim\nENV FLASK_SECRET_KEY=abc123def456\nENV SECRET_KEY ${SECRET_KEY}\n",
        "compose.yaml": "services:\n  app:\n    environment:\n      SECRET_KEY: 'not-so-secret'\n"
        "      STRIPE_SECRET_KEY: ${STRIPE_SECRET_KEY:?set it}\n      FLASK_SECRET_KEY: ${FLASK_SECRET_KEY:-dev}\n"
        "      # SECRET_KEY: commented-out\n",
        "k8s/deployment.yaml": "spec:\n  containers:\n    - env:\n        - name: FLASK_SECRET_KEY\n"
        '          value: "0123456789abcdef"\n        - name: SECRET_KEY\n          valueFrom:\n'
        "            secretKeyRef: {name: app, key: secret-key}\n",
        "deploy/app.service": '[Service]\nEnvironment="FLASK_SECRET_KEY=xyz789"\nEnvironment=SECRET_KEY_FILE=/k\n',
        ".gitlab-ci.yml": "test:\n  variables:\n    SECRET_KEY: test-only\n",
    }
    found = {m["obj"]: m["text"] for m in audit(project, files).only("FP-S009")}
    assert sorted(found) == [
        "Dockerfile:2", "compose.yaml:4", "compose.yaml:6", "deploy/app.service:2", "k8s/deployment.yaml:4"
    ]
    assert found["Dockerfile:2"].startswith("a secret key is written in the Dockerfile: every copy of the image")


def test_a_secret_manifest_is_told_to_keep_the_value_out_of_the_repository(project: Path) -> None:
    manifests = """
        kind: Deployment
        spec:
          template:
            spec:
              containers:
                - env:
                    - name: FLASK_SECRET_KEY
                      value: 0123456789abcdef
        ---
        apiVersion: v1
        kind: Secret
        metadata:
          name: app
        stringData:
          FLASK_SECRET_KEY: 9f8e7d6c5b4a3928170615
        ---
        apiVersion: bitnami.com/v1alpha1
        kind: SealedSecret
        spec:
          encryptedData:
            FLASK_SECRET_KEY: AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq
    """
    found = audit(project, {"app.py": PROD, "k8s/app.yaml": manifests}).only("FP-S009")
    assert [(m["obj"], m["hint"]) for m in found] == [
        ("k8s/app.yaml:7", REGISTRY["FP-S009"].hint),
        (
            "k8s/app.yaml:15",
            "keep the value out of the repository: create the Secret in the cluster from a file that is not committed "
            "(kubectl create secret generic app --from-file=FLASK_SECRET_KEY=./secret_key), or commit it encrypted "
            "as a SealedSecret (sealed-secrets), or sync it from a secret store (External Secrets); the Deployment "
            "reads it through valueFrom.secretKeyRef",
        ),
    ]


def test_secret_key_hint_names_the_variable_the_app_reads(project: Path) -> None:
    settings = "import os\n\nclass Config:\n    SECRET_KEY = os.environ.get('SECRET_KEY') or 'you-will-never-guess'\n"
    source = PLAIN + "from config import Config\n\napp.config.from_object(Config)\n"
    unset = {"FLASK_SECRET_KEY": None, "SECRET_KEY": None}
    found = audit(project, {"app.py": source, "config.py": settings}, env=unset)
    # The guide's fallback in effect: one finding, at its line, saying the default is published in the code.
    assert [(m["id"], m["obj"], m["text"]) for m in found.messages if m["id"] in ("FP-S003", "FP-S010")] == [
        (
            "FP-S010",
            "config.py:4",
            "SECRET_KEY falls back to a published default ('you-will-never-guess') written in the source, and the app "
            "is running with it right now (SECRET_KEY is not set): anyone can sign its sessions",
        )
    ]
    # Where the code reads the key from a variable of its own name and has no fallback, FP-S003 names that variable.
    settings = settings.replace(" or 'you-will-never-guess'", "")
    assert [m["hint"] for m in audit(project, {"config.py": settings}, env=unset).only("FP-S003")] == [
        "set SECRET_KEY, the variable the app reads the key from (config.py:4), to a random value, "
        "e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
    ]


@pytest.mark.parametrize(
    ("source", "text", "hint"),
    [
        (
            # Production(app) comes first, but the app's own options take the key: it adds nothing.
            PROD + SQLALCHEMY.replace('"sqlite://"\n', '"sqlite://"\napp.config["SQLALCHEMY_ENGINE_OPTIONS"] = '
                                      '{"echo": False}\n') + "db.init_app(app)\n",
            None,
            "the app sets SQLALCHEMY_ENGINE_OPTIONS itself, so Production(app) adds nothing to it: add "
            "'pool_pre_ping': True (and 'pool_recycle') to it",
        ),
        (
            PLAIN + SQLALCHEMY + 'app.config["SQLALCHEMY_BINDS"] = {"reports": "sqlite://"}\n'
            'app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": True}\ndb.init_app(app)\n',
            "the SQLAlchemy pool of bind 'reports' does not pre-ping: after a database restart or an idle "
            "timeout, requests fail on dead pooled connections",
            "a bind takes only its own options (not SQLALCHEMY_ENGINE_OPTIONS, where Production(app) puts them): "
            "give it {'url': ..., 'pool_pre_ping': True} in SQLALCHEMY_BINDS",
        ),
    ],
    ids=["own-options", "bind"],
)
def test_pre_ping_finding_says_what_to_change(project: Path, source: str, text: str | None, hint: str | None) -> None:
    check = REGISTRY["FP-C006"]
    found = audit(project, {"app.py": source}).only("FP-C006")
    assert [(m["text"], m["hint"]) for m in found] == [(text or check.text, hint or check.hint)]


def test_pre_ping_given_to_the_extension_passes(project: Path) -> None:
    source = PLAIN + SQLALCHEMY.replace("SQLAlchemy()", 'SQLAlchemy(engine_options={"pool_pre_ping": True})')
    assert audit(project, {"app.py": source + "db.init_app(app)\n"}).only("FP-C006") == []


def test_proxy_fix_applied_by_the_app_itself(project: Path) -> None:
    source = PLAIN + PROXY_FIX
    assert "FP-C005" not in audit(project, {"app.py": source, "nginx.conf": NGINX_PROXY}).ids()


@pytest.mark.parametrize(
    ("server_name", "toml"),
    [
        # proxy.server_name left alone names no site yet: nginx answers the app's host by itself.
        ("shop.example.com:8443", ""),
        # The address up listens on, and loopback names, are answered and need no certificate or Ingress.
        ("192.0.2.7", '[proxy]\nserver_name = "example.com"\nhost = "192.0.2.7"\n'),
        ("127.0.0.1", '[proxy]\nserver_name = "example.com"\n'),
        ("localhost:5000", '[proxy]\nserver_name = "example.com"\n'),
        ("[::1]:8000", '[proxy]\nserver_name = "example.com"\n'),
    ],
)
def test_server_name_answered_without_proxy_server_name_passes(project: Path, server_name: str, toml: str) -> None:
    app = PROD + f"app.config['SERVER_NAME'] = {server_name!r}\n"
    assert audit(project, {"app.py": app, "flaskprod.toml": toml}).only("FP-C009") == []


HOST_MATCHING = (
    "from flask import Flask\n\nfrom flaskprod import Production\n\n"
    "app = Flask(__name__, host_matching=True, static_folder=None)\nProduction(app)\n"
    '\n@app.get("/", host="api.example.com")\ndef api():\n    return "api"\n'
    '\n@app.get("/", host="<tenant>.shop.example.com")\ndef shop(tenant):\n    return tenant\n'
    '\n@app.get("/", host="localhost:5000")\ndef here():\n    return "here"\n'
)


@pytest.mark.parametrize(
    ("toml", "missed"),
    [
        ('[proxy]\nserver_name = "example.com"\n', "'<tenant>.shop.example.com', 'api.example.com'"),
        ('[proxy]\nserver_name = "example.com api.example.com"\n', "'<tenant>.shop.example.com'"),
        ('[proxy]\nserver_name = "example.com *.example.com"\n', None),  # a pattern's names fall under *.
        ("", None),  # proxy.server_name left alone names no site yet
    ],
)
def test_hosts_a_host_matching_app_routes_are_named_unless_proxy_server_name_names_them(
    project: Path, toml: str, missed: str | None
) -> None:
    found = audit(project, {"app.py": HOST_MATCHING, "flaskprod.toml": toml}).only("FP-C009")
    if missed is None:
        assert found == []
        return
    [one] = found
    assert one["text"].startswith(f"the app routes {missed} (host_matching), which proxy.server_name (")
    assert one["text"].endswith("so HTTPS or the Ingress fails requests for them")


def test_a_server_name_that_is_no_host_is_named(project: Path) -> None:
    app = PROD + "app.config['SERVER_NAME'] = 'https://shop.example.com'\n"
    [found] = audit(project, {"app.py": app}).only("FP-C009")
    assert found["text"] == (
        "the app's SERVER_NAME is 'https://shop.example.com', no host name or address with an optional port: nginx "
        "cannot answer it, and the URLs the app builds for it are broken"
    )
    assert found["hint"].startswith("set SERVER_NAME to the site's host")


ASYNC_SHAPES = """
from flask import Blueprint
from flask.views import MethodView, View


class Items(MethodView):
    def get(self):
        return {}

    async def post(self):
        return {}


class Report(View):
    async def dispatch_request(self):
        return {}


class Plain(MethodView):
    def get(self):
        return {}


shop = Blueprint("shop", __name__)


@shop.before_request
async def load_cart():
    pass


app.add_url_rule("/items", view_func=Items.as_view("items"))
app.add_url_rule("/report", view_func=Report.as_view("report"))
app.add_url_rule("/plain", view_func=Plain.as_view("plain"))
app.register_blueprint(shop)
"""


def test_flask_socketio_on_more_than_one_worker_is_named(project: Path) -> None:
    app = PROD + "from flask_socketio import SocketIO\n\nsocketio = SocketIO(app, async_mode='threading')\n"
    [found] = audit(project, {"app.py": app, "flaskprod.toml": "[server]\nworkers = 2\n"}).only("FP-C011")
    assert found["text"].startswith("the app uses Flask-SocketIO, which keeps each client's session")
    auto = {"app.py": app, "flaskprod.toml": '[server]\nworkers = "auto"\n'}
    assert audit(project, auto).only("FP-C011") == []  # one worker, one replica
    replicas = {"app.py": app, "flaskprod.toml": "[deploy]\nreplicas = 3\n"}
    [found] = audit(project, replicas).only("FP-C011")
    assert "deploy.replicas = 3 spreads a client's requests over that many containers" in found["text"]


def test_flask_socketio_on_what_no_threaded_worker_runs_is_named(project: Path) -> None:
    """SocketIO() picks eventlet, else gevent, when installed (the tests install both)."""
    picked = PROD + "from flask_socketio import SocketIO\n\nsocketio = SocketIO(app)\n"
    [found] = audit(project, {"app.py": picked}).only("FP-C011")
    assert found["text"].startswith("the app's Flask-SocketIO runs on eventlet (async_mode 'eventlet', which")
    on_gevent = picked.replace("SocketIO(app)", "SocketIO(app, async_mode='gevent')")
    assert audit(project, {"app.py": on_gevent}).only("FP-C011") == []  # auto: gevent's worker
    threaded = {"app.py": on_gevent, "flaskprod.toml": '[server]\nworker_class = "gthread"\n'}
    [found] = audit(project, threaded).only("FP-C011")
    assert "and Gunicorn's gthread worker does not run gevent's loop" in found["text"]


def test_websocket_routes_on_gunicorns_sync_worker_are_named(project: Path) -> None:
    files = {"app.py": PROD + WEBSOCKET_ROUTE, "flaskprod.toml": "[server]\nthreads = 1\n"}
    [found] = audit(project, files).only("FP-C011")
    assert "Gunicorn's sync worker would hold a whole process for each" in found["text"]
    threaded = {"app.py": PROD + WEBSOCKET_ROUTE, "flaskprod.toml": '[server]\nthreads = 1\nworker_class = "gthread"\n'}
    assert audit(project, threaded).only("FP-C011") == []


def test_async_class_views_and_hooks_are_named(project: Path) -> None:
    files = {"app.py": PROD + ASYNC_SHAPES, "pyproject.toml": '[project]\nname = "shop"\ndependencies = ["flask"]\n'}
    [found] = audit(project, files).only("FP-C010")
    assert found["text"].startswith(
        "the app has async views (items, report, load_cart), which Flask runs with asgiref, and pyproject.toml "
        "installs none"
    )


ASYNC_HANDLERS = """

@app.errorhandler(404)
async def not_found(error):
    return {"error": "not found"}, 404


@app.teardown_appcontext
async def close_client(exc):
    pass


@app.context_processor
async def menu():
    return {}
"""


def test_async_error_handlers_and_app_hooks_are_named_too(project: Path) -> None:
    """Flask runs these through ensure_sync as it does views: without asgiref each 404 answers 500, and so does every
    request once its app context ends."""
    files = {"app.py": PROD + ASYNC_HANDLERS, "requirements.txt": "flask\nflaskprod\n"}
    [found] = audit(project, files).only("FP-C010")
    assert found["text"].startswith("the app has async views (menu, not_found, close_client), which Flask runs")


@pytest.mark.parametrize(
    "files",
    [
        {"requirements.txt": "Flask[Async]>=3\nflaskprod\n"},
        {"requirements.txt": "-r base.txt\n", "base.txt": "flask\nasgiref==3.8.1\nflaskprod\n"},
        {"pyproject.toml": '[project]\nname = "shop"\ndependencies = ["flask[async]", "flaskprod"]\n'},
        {"pyproject.toml": '[tool.poetry.dependencies]\nflask = {version = "^3", extras = ["async"]}\n'},
        # A package pip names only once it has it: it might install asgiref, the benefit of the doubt.
        {"requirements.txt": "flask\nflaskprod\nhttps://example.com/pkgs/mystery\n"},
    ],
    ids=["extra", "asgiref-in-an-include", "pyproject", "poetry", "unnamed"],
)
def test_async_views_with_asgiref_required_pass(project: Path, files: dict[str, str]) -> None:
    assert audit(project, {"app.py": PROD + ASYNC_VIEW, **files}).only("FP-C010") == []


def test_async_views_without_requirements_are_judged_by_this_environment(project: Path) -> None:
    # This venv has no asgiref: the app's async view answers 500 here, which the check says.
    assert importlib.util.find_spec("asgiref") is None, "this test needs the test venv without asgiref"
    [found] = audit(project, {"app.py": PROD + ASYNC_VIEW}).only("FP-C010")
    assert "and this environment installs none" in found["text"]
    premise = Flask("premise")

    @premise.get("/feed")
    async def feed() -> dict[str, list[str]]:
        return {"items": []}

    assert premise.test_client().get("/feed").status_code == 500


def test_an_own_engine_is_named_by_the_call_that_made_it(project: Path) -> None:
    files = {
        "app.py": PROD + "import db\nimport reports\n",
        "db.py": "import os\n\nfrom sqlalchemy import create_engine\n\n"
        'engine = create_engine(os.environ["DATABASE_URL"])\n',
        "reports.py": 'from sqlalchemy import create_engine\n\nREPORTS = "postgresql+psycopg2://r:pw@127.0.0.1:1/reports"\n'
        "reports_engine = create_engine(REPORTS)\n",
        # A script nothing imports made none of the app's engines.
        "seed.py": "import os\n\nfrom sqlalchemy import create_engine\n\ncreate_engine(os.environ['SEED_URL'])\n",
    }
    env = {"DATABASE_URL": "postgresql+psycopg2://shop:secret@127.0.0.1:1/shop"}
    found = audit(project, files, env=env).only("FP-C007")
    assert sorted((m["obj"], m["text"].split(" keeps")[0]) for m in found) == [
        ("db.py:5", "the SQLAlchemy engine for postgresql+psycopg2://shop:***@127.0.0.1:1/shop"),
        ("reports.py:4", "the SQLAlchemy engine for postgresql+psycopg2://r:***@127.0.0.1:1/reports"),
    ]
    # Two calls either of which may have made it: the app is named, not a guess.
    files["reports.py"] = files["reports.py"].replace("create_engine(REPORTS)", "create_engine(os.environ['R'])")
    files["reports.py"] = "import os\n" + files["reports.py"]
    found = audit(project, files, env={**env, "R": "postgresql+psycopg2://r@127.0.0.1:1/reports"}).only("FP-C007")
    assert [m["obj"] for m in found] == ["app", "app"]


def test_production_after_db_init_app_is_too_late(project: Path) -> None:
    source = PLAIN + SQLALCHEMY + "db.init_app(app)\n\nfrom flaskprod import Production\n\nProduction(app)\n"
    assert "FP-C006" in audit(project, {"app.py": source}).ids()


def test_pre_ping_turned_off_on_purpose_passes(project: Path) -> None:
    source = (
        PLAIN + SQLALCHEMY + 'app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": False}\ndb.init_app(app)\n'
    )
    assert "FP-C006" not in audit(project, {"app.py": source}).ids()


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("Procfile", "web: python -m flask run --port $PORT\n", 1),
        ("docker-compose.yml", "services:\n  app:\n    command: flask --debug run\n", 3),
        ("app.service", "[Service]\nExecStart=/srv/venv/bin/flask \\\n  --app app run\n", 2),
    ],
)
def test_dev_server_in_other_deployment_files(project: Path, name: str, text: str, line: int) -> None:
    assert [m["obj"] for m in audit(project, {"app.py": PROD, name: text}).only("FP-P004")] == [f"{name}:{line}"]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("Procfile.dev", "web: flask run --debug --port $PORT\n"),
        ("Dockerfile.dev", 'FROM python:3.12-slim\nCMD ["flask", "run", "--host=0.0.0.0"]\n'),
        ("docker-compose.dev.yml", "services:\n  app:\n    command: flask run --host 0.0.0.0\n"),
        ("docker-compose.override.yml", "services:\n  app:\n    command: flask --debug run\n"),
        ("docker/local/Dockerfile", 'FROM python:3.12-slim\nCMD ["flask", "run"]\n'),
    ],
)
def test_development_files_may_start_the_dev_server(project: Path, name: str, text: str) -> None:
    assert audit(project, {"app.py": PROD, name: text}).only("FP-P004") == []


def test_a_compose_service_only_development_profiles_start_may_start_the_dev_server(project: Path) -> None:
    compose = """
        services:
          web:
            build: .
            command: flaskprod serve app:app
          dev:
            build: .
            profiles: ["dev"]
            ports:
              - "5000:5000"
            command: "flask --app app run --debug --host 0.0.0.0"
          tests:
            <<: &local {profiles: [local, test]}
            command: flask run
          admin:
            profiles: [dev, ops]
            command: flask run
    """
    assert [m["obj"] for m in audit(project, {"app.py": PROD, "compose.yaml": compose}).only("FP-P004")] == [
        "compose.yaml:16"
    ]



def test_a_secret_key_in_a_development_profiles_service_is_no_deployments(project: Path) -> None:
    compose = """
        services:
          web:
            build: .
            environment:
              SECRET_KEY: written-for-production
          dev:
            build: .
            profiles: [dev]
            environment:
              SECRET_KEY: dev
    """
    found = audit(project, {"app.py": PROD, "compose.yaml": compose}).only("FP-S009")
    assert [m["obj"] for m in found] == ["compose.yaml:5"]  # web's alone

def test_only_the_production_stage_of_a_dockerfile_is_a_deployment(project: Path) -> None:
    dockerfile = (
        "FROM python:3.12-slim AS base\nRUN pip install flask\n"
        "FROM base AS development\nCMD flask run --debug\n"
        "FROM --platform=linux/amd64 base AS production\nCMD flask run\n"
    )
    found = audit(project, {"app.py": PROD, "Dockerfile": dockerfile}).only("FP-P004")
    assert [m["obj"] for m in found] == ["Dockerfile:6"]


RUNS_DEBUG = PROD + '\nif __name__ == "__main__":\n    app.run(host="0.0.0.0", debug=True)\n'


@pytest.mark.parametrize(
    ("files", "obj", "text"),
    [
        (
            {"app.py": RUNS_DEBUG, "Dockerfile": 'FROM python:3.12-slim\nWORKDIR /app\nCMD ["python", "app.py"]\n'},
            "Dockerfile:3",
            "the deployment runs app.py, which starts Flask's development server (app.run() at app.py:9, with the "
            "Werkzeug debugger on: whoever reaches it runs code on the server)",
        ),
        (
            {
                "app.py": PROD,
                "shop/__init__.py": PROD,
                "shop/__main__.py": "from shop import app\n\nif __name__ == '__main__':\n    app.run()\n",
                "Procfile": "web: python3 -u -m shop\n",
            },
            "Procfile:1",
            "the deployment runs shop/__main__.py, which starts Flask's development server (app.run() at "
            "shop/__main__.py:4): single process, no worker management, not hardened for the internet",
        ),
        (
            {
                "run.py": "from app import app\n\napp.run(port=8000)\n",
                "app.py": PROD,
                "docker-compose.yml": "services:\n  app:\n    command: python /srv/app/run.py\n",
            },
            "docker-compose.yml:3",
            "the deployment runs run.py, which starts Flask's development server (app.run() at run.py:3): "
            "single process, no worker management, not hardened for the internet",
        ),
    ],
    ids=["dockerfile-debug", "procfile-module", "compose-image-path"],
)
def test_a_script_that_calls_app_run_is_the_dev_server(
    project: Path, files: dict[str, str], obj: str, text: str
) -> None:
    assert [(m["obj"], m["text"]) for m in audit(project, files).only("FP-P004")] == [(obj, text)]


def test_a_script_that_does_not_call_app_run_is_not_the_dev_server(project: Path) -> None:
    files = {
        "app.py": PROD,
        "serve.py": "from waitress import serve\n\nfrom app import app\n\nif __name__ == '__main__':\n"
        "    serve(app, port=8000)\n",
        "Dockerfile": 'FROM python:3.12-slim\nCMD ["python", "serve.py"]\n',
        "Procfile": "release: python manage.py migrate\nweb: python -m gunicorn app:app\n",
    }
    assert audit(project, files).only("FP-P004") == []


def test_reload_in_server_configs(project: Path) -> None:
    files = {
        "app.py": PROD,
        "gunicorn.conf.py": 'workers = 2\nworker_tmp_dir = "/dev/shm"\nreload = True\n',
        "uwsgi.ini": "[uwsgi]\nmodule = app:app\npy-autoreload = 1\n",
        "deploy/app.service": "[Service]\nExecStart=/srv/venv/bin/uwsgi --ini uwsgi.ini --py-autoreload 2\n",
        # Off, or in a development file: not a deployment's reloader.
        "uwsgi-dev.ini": "[uwsgi]\npy-autoreload = 1\n",
        "prod.ini": "[uwsgi]\npy-autoreload = 0\n",
    }
    found = sorted(m["obj"] for m in audit(project, files).only("FP-P018"))
    assert found == ["deploy/app.service:2", "gunicorn.conf.py:3", "uwsgi.ini:3"]


def test_gunicorn_command_without_tmp_dir(project: Path) -> None:
    dockerfile = 'FROM python:3.12-slim\nCMD ["gunicorn", "--bind", "0.0.0.0:5000", "--workers", "4", "wsgi:app"]\n'
    assert [m["obj"] for m in audit(project, {"app.py": PROD, "Dockerfile": dockerfile}).only("FP-P006")] == [
        "Dockerfile:2"
    ]
    fixed = dockerfile.replace('"wsgi:app"', '"--worker-tmp-dir", "/dev/shm", "wsgi:app"')
    assert "FP-P006" not in audit(project, {"Dockerfile": fixed}).ids()


@pytest.mark.parametrize(
    ("config", "found"),
    [
        # cpu_count() sizing threads, with workers set: no worker count from the host's cores.
        ("import multiprocessing\nworkers = 3\nthreads = min(8, multiprocessing.cpu_count())\n", []),
        ("import os\nworkers, threads = 2, os.cpu_count()\n", []),
        ("import os\ncores = os.cpu_count() or 1\nworkers = cores * 2 + 1\n", [3]),
        # WEB_CONCURRENCY decides when set; unset, the host's cores do.
        ('import multiprocessing, os\nworkers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))\n',
         [2]),
        ("import multiprocessing, os\n\ndef default_workers():\n    return multiprocessing.cpu_count() * 2 + 1\n\n"
         'workers = int(os.getenv("WEB_CONCURRENCY") or default_workers())\n', [6]),
        ('import os\nif os.getenv("CI"):\n    workers = 1\nelse:\n    workers = os.cpu_count()\n', [5]),
    ],
    ids=["threads", "tuple", "through-a-name", "env-default", "helper-function", "if-else"],
)
def test_cpu_count_is_named_only_where_it_sizes_workers(project: Path, config: str, found: list[int]) -> None:
    files = {"app.py": PROD, "gunicorn.conf.py": config + 'worker_tmp_dir = "/dev/shm"\n'}
    assert [m["obj"] for m in audit(project, files).only("FP-P005")] == [f"gunicorn.conf.py:{n}" for n in found]


def test_pickling_handlers_in_logging_configs(project: Path) -> None:
    files = {
        "app.py": PROD,
        "log_setup.py": 'LOGGING = {"handlers": {"ship": {"class": "logging.handlers.DatagramHandler"}}}\n',
        "logging.ini": "[handler_ship]\nclass=handlers.SocketHandler\nargs=('logstash', 5000)\n",
    }
    assert sorted(m["obj"] for m in audit(project, files).only("FP-P007")) == ["log_setup.py:1", "logging.ini:2"]


def test_file_handlers_in_logging_configs(project: Path) -> None:
    files = {
        "app.py": PROD,
        "log_setup.py": 'LOGGING = {"handlers": {"file": {"class": "logging.FileHandler", "filename": "a.log"}}}\n'
        "# FileHandler is named here only: neither the comment nor this string makes one.\n"
        'NOTE = "we used to have a FileHandler"\n',
        "logging.ini": "[handler_file]\nclass=FileHandler\nargs=('app.log',)\n",
        "logging.yaml": "handlers:\n  file:\n    class: logging.handlers.TimedRotatingFileHandler\n",
    }
    found = sorted(m["obj"] for m in audit(project, files).only("FP-P012"))
    assert found == ["log_setup.py:1", "logging.ini:2", "logging.yaml:3"]


def test_server_log_files_in_flags_and_uwsgi_inis(project: Path) -> None:
    files = {
        "app.py": PROD,
        "Dockerfile": 'FROM python:3.12-slim\nCMD ["gunicorn", "--access-logfile", "/app/access.log", "app:app"]\n',
        "Procfile": "web: gunicorn --access-logfile - --error-logfile=- app:app\n",
        "uwsgi.ini": "[uwsgi]\nmodule = app:app\nlogto = /var/log/uwsgi.log\nreq-logger = file:/tmp/req.log\n",
        # The journal keeps a unit's output: a log file under systemd is the operator's choice.
        "app.service": "[Service]\nExecStart=/usr/bin/gunicorn --error-logfile /var/log/app.log app:app\n",
    }
    found = sorted(m["obj"] for m in audit(project, files).only("FP-P015"))
    assert found == ["Dockerfile:2", "uwsgi.ini:3", "uwsgi.ini:4"]


@pytest.mark.parametrize(
    "probe",
    [
        ("compose.yaml", "services:\n  app:\n    build: .\n    healthcheck:\n      test: [CMD, curl, localhost]\n"),
        ("k8s/deployment.yaml", "kind: Deployment\nspec:\n  containers:\n    - name: app\n"
                                "      readinessProbe:\n        httpGet: {path: /readyz}\n"),
    ],
)
def test_a_health_check_outside_the_image_counts(project: Path, probe: tuple[str, str]) -> None:
    dockerfile = 'FROM python:3.12-slim\nCMD ["flaskprod", "serve"]\n'
    assert "FP-P016" in audit(project, {"app.py": PROD, "Dockerfile": dockerfile}).ids()
    assert "FP-P016" not in audit(project, dict([probe])).ids()


def test_stack_ports_on_an_address_in_every_form(project: Path) -> None:
    stack = (
        "services:\n  a:\n    ports:\n      - 10.0.0.5:8000-8001:8000-8001\n      - '[::1]:53:53/udp'\n"
        "      - target: 3000\n        published: 3000\n        host_ip: 127.0.0.1\n"
    )
    found = [m["obj"] for m in audit(project, {"app.py": PROD, "docker-stack.yml": stack}).only("FP-P013")]
    assert found == ["docker-stack.yml:4", "docker-stack.yml:5", "docker-stack.yml:8"]


def test_the_swarm_stack_flaskprod_writes_publishes_no_port_on_an_address(project: Path) -> None:
    d = make_deployment(project / "service", extras=["monitoring", "logging"], out="deploy/swarm")
    # As a user's own file: check skips the files flaskprod wrote (their header says so), so without it.
    written = render_swarm(d)["stack.yaml"]
    stack = "".join(line for line in written.splitlines(keepends=True) if not line.startswith("#"))
    assert audit(project, {"app.py": PROD, "stack.yaml": stack}).only("FP-P013") == []
    # The check did read it: a port on an address added at its end is found there.
    found = audit(project, {"stack.yaml": stack + "x-published:\n  - 127.0.0.1:9090:9090\n"}).only("FP-P013")
    assert [m["obj"] for m in found] == [f"stack.yaml:{stack.count(chr(10)) + 2}"]


def test_nginx_including_proxy_params_passes(project: Path) -> None:
    conf = "server {\n  location / {\n    include proxy_params;\n    proxy_pass http://app:8000;\n  }\n}\n"
    assert "FP-P009" not in audit(project, {"app.py": PROD, "nginx.conf": conf}).ids()


def test_environments_caches_and_tests_are_not_scanned(project: Path) -> None:
    handler = "from logging.handlers import SocketHandler\n\nh = SocketHandler('logstash', 5000)\n"
    files = {
        "app.py": PROD,
        ".venv/lib/shipper.py": handler,
        "env/pyvenv.cfg": "home = /usr/bin\n",
        "env/lib/shipper.py": handler,
        "node_modules/pkg/shipper.py": handler,
        "tests/test_logs.py": handler,
        "test_shipper.py": handler,
        "docs/deploy.md": "FLASK_ENV=production\n",
    }
    result = audit(project, files)
    assert result.messages == []


def test_text_output_groups_by_level(project: Path) -> None:
    write(
        project,
        {"app.py": PROD, "docker-compose.yml": "version: '3'\nservices: {}\n", "gunicorn.conf.py": "workers = 2\n"},
    )
    result = invoke()
    warning, info = REGISTRY["FP-P006"], REGISTRY["FP-P002"]
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "System check identified some issues:",
        "",
        "WARNINGS:",
        f"FP-P006  WARNING  gunicorn.conf.py: {warning.text}  HINT: {warning.hint}",
        "",
        "INFOS:",
        f"FP-P002  INFO  docker-compose.yml:1: {info.text}  HINT: {info.hint}",
        "",
        "System check identified 2 issues (0 silenced).",
    ]


def test_json_output_has_messages_and_summary(project: Path) -> None:
    result = audit(project, {"app.py": PLAIN})
    assert result.exit_code == 1
    assert set(result.messages[0]) == {"id", "level", "text", "hint", "obj"}
    assert result.messages[0]["level"] == "ERROR"  # most severe first
    assert result.summary == {
        "issues": len(result.messages),
        "silenced": 0,
        "by_level": {
            "CRITICAL": 0,
            "ERROR": 1,  # FP-S003: no SECRET_KEY at all without Production
            "WARNING": 4,
            "INFO": 0,
            "DEBUG": 0,
        },
        "fail_level": "ERROR",
        "failed": True,
    }


def test_silence_hides_and_counts(project: Path) -> None:
    write(project, {"app.py": PROD, "docker-compose.yml": "version: '3'\nservices: {}\n"})
    result = invoke("--silence", "FP-P002")
    assert result.exit_code == 0
    assert result.stdout == "System check identified no issues (1 silenced).\n"
    many = audit(project, {"app.py": PLAIN}, "--silence", "fp-s003,FP-C002", "--silence", "FP-C003")
    assert not {"FP-S003", "FP-C002", "FP-C003"} & set(many.ids())
    assert many.summary["silenced"] == 3
    assert many.exit_code == 0  # the only ERROR was silenced


COOKIE_READABLE = PROD + 'app.config["SESSION_COOKIE_HTTPONLY"] = False\n'


DEBUG_REFUSED = (
    "debug mode is on in production: unset FLASK_DEBUG (the debugger runs arbitrary code for anyone who "
    "reaches it); for local development use `flask run --debug`"
)
# Turned on in the app's code, where unsetting FLASK_DEBUG would not help.
DEBUG_IN_CODE_REFUSED = DEBUG_REFUSED.replace("unset FLASK_DEBUG", "the app's config turns it on: remove DEBUG from it")
DEBUG_ON = (
    "debug mode is on: errors propagate instead of answering 500, templates are re-read on every request, and "
    "under app.run() the Werkzeug debugger runs code for whoever reaches it"
)
# Set in the app's code, where no variable reaches: the refusal names the first, the checks name both.
IN_CODE = 'app.config["SECRET_KEY"] = "dev"\napp.config["DEBUG"] = True\n'


@pytest.mark.parametrize(
    ("env", "code", "refusal", "found"),
    [
        ({"FLASK_SECRET_KEY": None}, "", secret_key_problem(None, 32), [("FP-S003", "SECRET_KEY is missing")]),
        ({"FLASK_SECRET_KEY": "dev"}, "", secret_key_problem("dev", 32),
         [("FP-S003", "SECRET_KEY is a published default ('dev'): anyone can forge sessions")]),
        ({"FLASK_DEBUG": "1"}, "", DEBUG_REFUSED, [("FP-S001", DEBUG_ON)]),
        ({"FLASK_SECRET_KEY": None}, IN_CODE, DEBUG_IN_CODE_REFUSED,
         [("FP-S001", DEBUG_ON), ("FP-S003", "SECRET_KEY is a published default ('dev'): anyone can forge sessions")]),
    ],
    ids=["no-key", "weak-key", "debug", "both-in-code"],
)
def test_a_refused_app_is_checked_with_its_refusal_off(
    project: Path, env: dict[str, str | None], code: str, refusal: str, found: list[tuple[str, str]]
) -> None:
    app = COOKIE_READABLE.replace("Production(app)\n", code + "Production(app)\n")
    result = audit(project, {"app.py": app}, env=env)
    cookie = ("FP-S006", "the session cookie is readable by JavaScript (SESSION_COOKIE_HTTPONLY is off)")
    assert sorted((m["id"], m["text"]) for m in result.messages) == sorted([("FP-C001", refusal), *found, cookie])
    silenced = audit(project, {"app.py": app}, "--silence", "FP-C001", env=env)
    assert (sorted(silenced.ids()), silenced.summary["silenced"]) == (sorted([*(f for f, _ in found), "FP-S006"]), 1)


def test_an_app_refused_even_with_a_throwaway_key_says_its_checks_did_not_run(project: Path) -> None:
    env = {"DATABASE_URL": None, "DATABASE_PASSWORD_FILE": str(project / "db-password")}
    result = audit(project, {"app.py": COOKIE_READABLE}, env=env)
    assert result.messages == [
        {
            "id": "FP-C001",
            "level": "CRITICAL",
            "text": "DATABASE_PASSWORD_FILE is set but DATABASE_URL is not: set DATABASE_URL to the database URL "
            "without its password, e.g. postgresql://app@db:5432/app (the app's other checks did not run: it "
            "refuses to start with the refusal off too)",
            "hint": "fix what the message names, then run check again",
            "obj": "app",
        }
    ]


def test_silence_from_the_spec(project: Path) -> None:
    files = {"app.py": PROD, "docker-compose.yml": "version: '3'\nservices: {}\n"}
    write(project, {"flaskprod.toml": '[checks]\nsilenced = "FP-P002"\n'})
    assert audit(project, files).summary["silenced"] == 1
    (project / "flaskprod.toml").unlink()
    result = audit(project, {}, env={"FLASKPROD_CHECKS__SILENCED": "FP-P002, FP-C004"})
    assert (result.messages, result.summary["silenced"]) == ([], 1)


def test_fail_level_sets_the_exit_code(project: Path) -> None:
    write(project, {"app.py": PROD, "docker-compose.yml": "version: '3'\nservices: {}\n"})  # one INFO
    assert invoke().exit_code == 0
    assert invoke("--fail-level", "WARNING").exit_code == 0
    assert invoke("--fail-level", "info").exit_code == 1
    assert invoke("--fail-level", "DEBUG", "--silence", "FP-P002").exit_code == 0


def test_real_command_exit_codes(tmp_path: Path) -> None:
    write(tmp_path, {"app.py": PLAIN})
    failing = run_cli(cwd=tmp_path)
    assert failing.returncode == 1, failing.stderr
    assert "FP-S003  ERROR  app: SECRET_KEY is missing" in failing.stdout
    assert failing.stdout.rstrip().endswith("issues (0 silenced).")
    passing = run_cli("--fail-level", "CRITICAL", cwd=tmp_path)
    assert passing.returncode == 0, passing.stderr


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (
            ["--silence", "FP-X999"],
            {"app.py": PROD},
            "Error: unknown check ID 'FP-X999' in --silence; see docs/checks.md for every ID",
        ),
        (
            ["--silence", "FP-S001", "--silence", "FP-P0010"],
            {"app.py": PROD},
            "Error: unknown check ID 'FP-P0010' in --silence; did you mean FP-P010?",
        ),
        (
            [],
            {"app.py": PROD, "flaskprod.toml": '[checks]\nsilenced = "nonsense"\n'},
            "Error: unknown check ID 'nonsense' in checks.silenced (file {root}/flaskprod.toml); "
            "see docs/checks.md for every ID",
        ),
        (
            [],
            {},
            "Error: no Flask app found: tried FLASK_APP, wsgi.py, app.py in {root}; "
            "pass APP such as 'module:app' or 'module:create_app()'",
        ),
        (
            ["nosuchmodule:app"],
            {},
            "Error: could not import 'nosuchmodule': No module named 'nosuchmodule'" + NOT_FOUND_FIX,
        ),
        (
            [],
            {"app.py": PLAIN + "import sys\n\nsys.exit(0)\n"},
            "Error: app 'app' exited while loading (sys.exit(0) from app.py:6): a server importing it would exit "
            'too; call sys.exit() only under `if __name__ == "__main__":`',
        ),
        (
            [],
            {"app.py": PLAIN + "import sys\n\nsys.exit(3)\n"},
            "Error: app 'app' exited while loading (sys.exit(3) from app.py:6): a server importing it would exit "
            'too; call sys.exit() only under `if __name__ == "__main__":`',
        ),
        (
            [],
            {"app.py": PLAIN + "import settings\n", "settings.py": "import sys\n\nsys.exit('no database')\n"},
            "Error: app 'app' exited while loading (sys.exit('no database') from settings.py:3): a server "
            'importing it would exit too; call sys.exit() only under `if __name__ == "__main__":`',
        ),
        (
            [],
            {"app.py": PLAIN + "import os\n\nos._exit(0)\n"},
            "Error: app 'app' exited while loading (exit status 0, without a Python exception, as os._exit() "
            "does): a server importing it would exit too",
        ),
        (
            [],
            {"app.py": PLAIN + "raise KeyboardInterrupt\n"},
            "Error: app 'app' raised KeyboardInterrupt while loading (app.py:4): a server importing it would stop "
            "too; remove the cause",
        ),
        (
            [],
            {"app.py": PLAIN + "import os\nimport signal\n\nos.kill(os.getpid(), signal.SIGKILL)\n"},
            "Error: app 'app' crashed while loading (killed by SIGKILL)",
        ),
    ],
    ids=[
        "unknown-id",
        "close-id",
        "unknown-id-in-spec",
        "no-app",
        "no-module",
        "sys-exit-0",
        "sys-exit-3",
        "sys-exit-in-an-import",
        "os-exit-0",
        "keyboard-interrupt",
        "killed",
    ],
)
def test_user_mistakes_are_one_line_exit_2(
    tmp_path: Path, args: list[str], files: dict[str, str], message: str
) -> None:
    write(tmp_path, files)
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == message.format(root=tmp_path) + "\n"
    assert result.stdout == ""


def test_an_app_that_hangs_while_loading_is_stopped_at_ready_timeout(tmp_path: Path) -> None:
    # As an app waiting for its database when imported; run_cli's own timeout fails the test if check waits.
    write(tmp_path, {"app.py": "import os\nimport time\n\nwith open('pid', 'w') as fh:\n"
                               "    fh.write(str(os.getpid()))\ntime.sleep(1000)\n"})
    # 3 s: time for the child to import flaskprod and reach the app on a busy host (at 1 s, CI once stopped it
    # before the app wrote its pid); run_cli's own timeout ends a hang.
    result = run_cli("--set", "proxy.ready_timeout=3", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "Error: app 'app' did not finish loading within proxy.ready_timeout = 3s: if it waits for a service "
        "(a database) when imported, start that service or connect on the first request instead; if it is only "
        "slow, raise the bound (--set proxy.ready_timeout=6)\n"
    )
    # The app's process was stopped, not left asleep.
    assert not Path("/proc", (tmp_path / "pid").read_text()).exists()


def test_ctrl_c_while_the_app_loads_is_130_not_a_finding(tmp_path: Path) -> None:
    write(tmp_path, {"app.py": "import os\nimport time\n\nwith open('pid', 'w') as fh:\n"
                               "    fh.write(str(os.getpid()))\ntime.sleep(1000)\n"})  # fmt: skip
    ended = interrupted_while_loading(["check"], tmp_path, server_env(None), tmp_path / "pid")
    assert ended == (130, "", "interrupted\n")  # 1 would read as "findings"
    assert not Path("/proc", (tmp_path / "pid").read_text()).exists()


def test_what_the_app_prints_on_import_keeps_json_parseable(project: Path) -> None:
    result = audit(project, {"app.py": 'print("starting up")\n' + textwrap.dedent(PROD)})
    assert result.messages == []


def test_reference_app_passes(tmp_path: Path) -> None:
    taskboard = ROOT / "examples" / "taskboard"
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'taskboard.sqlite3'}", "TASKBOARD_CONFIG": None}
    result = run_cli(cwd=taskboard, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "System check identified no issues (0 silenced).\n"


def test_reference_app_without_a_key_is_refused(tmp_path: Path) -> None:
    taskboard = ROOT / "examples" / "taskboard"
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'taskboard.sqlite3'}", "FLASK_SECRET_KEY": None}
    result = run_cli("--format", "json", cwd=taskboard, env=env)
    assert result.returncode == 1
    # Refused, and checked with the refusal off: the missing key is named, and nothing else is wrong with it.
    assert [m["id"] for m in json.loads(result.stdout)["messages"]] == ["FP-C001", "FP-S003"]


OLD_COMPOSE = {"docker-compose.yml": "version: '3'\nservices: {}\n"}  # FP-P002, an INFO


def test_an_expression_nested_deeper_than_the_recursion_limit_is_checked(project: Path) -> None:
    # A check walks the syntax tree recursively; before, 600 terms were a 2,500-line RecursionError and exit 1.
    banner = "BANNER = " + " + ".join(['"ab"'] * 600) + "\n"
    result = audit(project, {"app.py": PROD + banner})
    assert (result.exit_code, result.messages) == (0, [])


def test_a_check_that_fails_is_a_finding_of_its_own_and_the_others_still_run(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project, {"app.py": PROD + OUTBOUND.format(args='"https://rates.example"'), **OLD_COMPOSE})
    context = load_context(Spec(), cwd=project)
    found = [(m.id, m.level.name) for m in run_checks(context)]
    assert ("FP-P019", "WARNING") in found and ("FP-P002", "INFO") in found

    def broken(context: object) -> Iterator[Found]:
        yield Found(obj="app.py:13")  # what it found before it failed is kept
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setitem(REGISTRY, "FP-P019", dataclasses.replace(REGISTRY["FP-P019"], run=broken))
    messages = run_checks(load_context(Spec(), cwd=project))
    assert [(m.id, m.level.name) for m in messages if m.id != "FP-P019"] == [f for f in found if f[0] != "FP-P019"]
    kept, failed = [m for m in messages if m.id == "FP-P019"]
    assert (kept.level.name, kept.obj) == ("WARNING", "app.py:13")
    assert (failed.obj, failed.text, failed.hint) == (
        "app",
        "this check failed on the project (RecursionError: maximum recursion depth exceeded), so it found nothing",
        "a defect in flaskprod check: report it with this line; --silence FP-P019 passes meanwhile",
    )


def test_a_module_in_latin_1_is_read_as_python_reads_it(project: Path) -> None:
    # Decoded as UTF-8, the fallback key's é was replaced, so it no longer matched the key in effect: FP-S004's
    # warning (exit 0) instead of FP-S010's error.
    source = "# -*- coding: latin-1 -*-\n" + textwrap.dedent(FALLBACK_KEY).lstrip().replace('"Xk3', '"café-Xk3')
    (project / "app.py").write_bytes(source.encode("latin-1"))
    result = audit(project, {}, env={"SECRET_KEY": None})
    assert (result.exit_code, [m["id"] for m in result.messages if m["obj"] == "app.py:7"]) == (1, ["FP-S010"])


def test_an_app_that_fails_to_load_past_its_refusal_is_reported_and_its_files_checked(project: Path) -> None:
    # Loaded with its refusal off, this app fails on the key it refused for: before, exit 2 naming the
    # AttributeError, with neither the refusal nor the files' findings.
    app = PROD + 'app.config["SECRET_KEY"].encode()\n'
    result = audit(project, {"app.py": app, **OLD_COMPOSE}, env={"FLASK_SECRET_KEY": None})
    assert (result.exit_code, sorted(result.ids())) == (1, ["FP-C001", "FP-P002"])
    assert result.only("FP-C001")[0]["text"].endswith(
        "(the app's other checks did not run: loaded with the refusal off, it failed: error while importing 'app': "
        "AttributeError: 'NoneType' object has no attribute 'encode')"
    )


def test_json_output_says_why_there_is_no_report(tmp_path: Path) -> None:
    result = run_cli("--format", "json", cwd=tmp_path)  # no app here
    assert result.returncode == 2
    assert result.stderr.startswith("Error: no Flask app found")
    assert json.loads(result.stdout) == {"error": result.stderr.removeprefix("Error: ").rstrip("\n"), "exit_code": 2}


@pytest.mark.parametrize(
    ("source", "target", "frame", "error"),
    [
        (
            "from flask import Flask\n\napp = Flask(__name__)\nRATIO = 1 / 0\n",
            "app:app",
            "line 4, in <module>",
            "Error: error while importing 'app': ZeroDivisionError: division by zero",
        ),
        (
            # A variable os.environ lacks is FP-C018's finding, not a bug: a key missing from the app's own dict is.
            'import os\nfrom flask import Flask\n\n\ndef create_app():\n    return Flask({}["name"])\n',
            "app:create_app()",
            "line 6, in create_app",
            "Error: error while loading 'app:create_app()': KeyError: 'name'",
        ),
    ],
    ids=["at-import", "in-the-factory"],
)
def test_a_bug_in_the_app_shows_its_traceback_then_one_error_line(
    tmp_path: Path, source: str, target: str, frame: str, error: str
) -> None:
    # As serve, up and init show it: before, check printed the last line alone, with no file or line.
    write(tmp_path, {"app.py": source})
    result = run_cli(target, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert f'File "{tmp_path / "app.py"}", {frame}' in result.stderr
    assert result.stderr.endswith(f"\n{error}\n")


def test_findings_come_by_level_then_id_then_file_and_line() -> None:
    def found(check_id: str, level: Level, obj: str) -> Message:
        return Message(id=check_id, level=level, text="", hint="", obj=obj)

    messages = [
        found("FP-P019", Level.WARNING, "app.py:23"),
        found("FP-P019", Level.WARNING, "app.py:100"),
        found("FP-C004", Level.WARNING, "docker-compose.yml"),
        found("FP-P019", Level.WARNING, "app.py:9"),
        found("FP-S010", Level.ERROR, "app.py:4"),
    ]
    assert [(m.id, m.obj) for m in visible(messages)] == [
        ("FP-S010", "app.py:4"),
        ("FP-C004", "docker-compose.yml"),
        ("FP-P019", "app.py:9"),
        ("FP-P019", "app.py:23"),
        ("FP-P019", "app.py:100"),
    ]


def test_every_check_is_in_a_documented_topic() -> None:
    assert {entry.topic for entry in REGISTRY.values()} == set(TOPICS)
    for check_id, entry in REGISTRY.items():
        assert check_id.startswith(f"FP-{entry.topic[0].upper()}")


def test_checks_reference_is_current() -> None:
    page = (ROOT / "docs" / "checks.md").read_text()
    assert page == checks_reference(), (
        "docs/checks.md is stale: run `python -m flaskprod.checks.reference > docs/checks.md`"
    )
    for check_id in REGISTRY:
        assert f"`{check_id}`" in page
