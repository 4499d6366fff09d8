"""Helpers for the deployment-file tests: a Deployment without importing an app, and the real validators.

The validators live in .venv-tools (scripts/ensure-tools, run by `make test`) or on PATH (Debian's
promtool, docker-compose, nginx); a missing one fails the test that needs it, never skips it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flaskprod.render.deployment import Deployment, Project, ServerKind, size
from flaskprod.render.nginx import StaticMount
from flaskprod.spec import Spec, load_spec

from .support import ROOT

TOOLS_BIN = ROOT / ".venv-tools" / "bin"


# The smallest app a deployment is built for: every target's health checks ask Production(app)'s probes.
WSGI_APP = "from flask import Flask\n\nfrom flaskprod import Production\n\napp = Flask(__name__)\nProduction(app)\n"


def make_spec(**values: Any) -> Spec:
    """A spec from dotted settings as a config file would give them, e.g. make_spec(**{"app.name": "shop"})."""
    return load_spec(ROOT, config=None, environ={}, flags=values)


def make_deployment(
    root: Path,
    *,
    spec: Spec | None = None,
    server: ServerKind = "gunicorn",
    extras: Sequence[str] = (),
    static: bool = True,
    out: str = "deploy",
) -> Deployment:
    """A Deployment of a small project under root (created: wsgi.py, requirements.txt, static/)."""
    spec = spec or make_spec(**{"app.name": "shop", "app.version": "1.2.3"})
    root.mkdir(parents=True, exist_ok=True)
    (root / "wsgi.py").write_text(WSGI_APP)
    (root / "requirements.txt").write_text("flask\nflaskprod\n")
    if static:
        (root / "static").mkdir(exist_ok=True)
        (root / "static" / "app.css").write_text("body { margin: 0 }\n")
    return Deployment(
        spec=spec,
        project=Project(
            root=root,
            app_target="wsgi:app",
            requirements="requirements.txt",
            static=(StaticMount(endpoint="static", url="/static", folder="static"),) if static else (),
        ),
        derived=size(spec, replicas=spec.deploy.replicas),
        server=server,
        extras=frozenset(extras),
        out=out,
    )


@dataclass(frozen=True)
class Tree:
    """One target's files as `flaskprod build` renders them, and the directory they were written to."""

    target: str
    d: Deployment
    files: dict[str, str]
    path: Path

    def yaml(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.files[name])
        return data


def build_tree(project: Path, target: str, settings: Mapping[str, str], extras: tuple[str, ...]) -> Tree:
    """The target as `flaskprod build` plans it for project (its app probed in a child), rendered and written."""
    from flaskprod.build import build

    from .test_serve import clean_env

    spec = make_spec(**settings)
    built = build(spec, target=target, extras=extras, root=project, dry_run=True, environ=clean_env())
    files = built.target.render(built.deployment)
    return Tree(target=target, d=built.deployment, files=files, path=write_tree(project / built.deployment.out, files))


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def tool(name: str) -> str:
    """The path of a validator: .venv-tools first, then PATH; fails the test when it is missing."""
    candidate = TOOLS_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is not installed: run `make test` (scripts/ensure-tools, scripts/ensure-debs) first"
    return found


def run_tool(args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run a validator; fail the test with its output when it exits non-zero."""
    done = subprocess.run(
        list(args), cwd=cwd, env=None if env is None else dict(env), capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output}"
    return output


def checkov(path: Path, framework: str, skip: Sequence[str] = ()) -> dict[str, Any]:
    """checkov's summary for the files under path; fails on a failed check, and when it scanned nothing
    (checkov exits 0 having parsed no resource: its verdict is in the output, not the exit code)."""
    args = [tool("checkov"), "-d", str(path), "--framework", framework, "--output", "json", "--compact", "--quiet"]
    if skip:
        args += ["--skip-check", ",".join(skip)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.stdout.strip(), f"checkov printed nothing (exit {done.returncode}): {done.stderr[-2000:]}"
    data = json.loads(done.stdout)
    reports = data if isinstance(data, list) else [data]
    summary = {"passed": 0, "failed": 0, "resource_count": 0}
    failed: list[str] = []
    for report in reports:
        for key in summary:
            summary[key] += int(report.get("summary", {}).get(key, 0))
        for check in report.get("results", {}).get("failed_checks", []):
            where = f"{check.get('file_path')}:{check.get('resource')}"
            failed.append(f"{check['check_id']} {check['check_name']} ({where})")
    assert summary["resource_count"] > 0 and summary["passed"] > 0, f"checkov scanned nothing under {path}: {summary}"
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    return summary
