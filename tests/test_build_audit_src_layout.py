"""`flaskprod build` for a src-layout project whose requirements.txt leaves the project itself out (build refuses
`-e .` there, and says to drop it): the image and the VM install the requirements, then import the app from their
copy of the project. Its package is in src/, which only the builder's PYTHONPATH (or editable install) put on
sys.path, so the deployment must put it there too; it did not, and every container failed to import the app."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import requests

from tests.support import BIN, port_pair, running, wait_for
from tests.test_build import dockerfile_json, dockerfile_lines
from tests.test_build_audit_compose_uwsgi import build, shop_env, src_layout_shop
from tests.test_serve import clean_env

REQUIREMENTS = """\
Flask==3.1.3
Flask-SQLAlchemy==3.1.1
SQLAlchemy==2.0.36
psycopg[binary]==3.2.3
flaskprod @ git+https://git.example.com/ops/flaskprod.git@v0.1.0
"""


def requirements_shop(root: Path) -> Path:
    """The src-layout shop with a pinned requirements.txt, which the image installs instead of pyproject.toml."""
    src_layout_shop(root)
    (root / "requirements.txt").write_text(REQUIREMENTS)
    return root


def image_env(dockerfile: str, root: Path) -> dict[str, str]:
    """Every variable the final stage's ENV sets but PATH, with the image's /app (the project's copy) as root."""
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    words = " ".join(line[len("ENV ") :] for line in dockerfile_lines(final) if line.startswith("ENV "))
    env = dict(re.findall(r"(\w+)=(\S+)", words))
    env.pop("PATH")
    return {key: re.sub(r"^/app(?=/|$)", str(root), value) for key, value in env.items()}


def test_the_image_imports_a_src_layout_app_its_requirements_leave_uninstalled(tmp_path: Path) -> None:
    root = requirements_shop(tmp_path / "shop")
    done = build(root, "--target", "compose")
    assert done.returncode == 0, done.stderr
    dockerfile = (root / "deploy/compose/Dockerfile").read_text()
    assert "pip install --no-cache-dir -r /tmp/requirements/requirements.txt" in dockerfile
    app_port = port_pair()
    # The image's environment alone: none of the builder's PYTHONPATH.
    env = clean_env()
    env.pop("PYTHONPATH", None)
    env.update(image_env(dockerfile, root))
    env["FLASKPROD_SERVER__BIND"] = f"127.0.0.1:{app_port}"
    command = dockerfile_json(dockerfile, "CMD")
    command[0] = str(BIN / command[0])
    healthcheck = dockerfile_json(dockerfile, "HEALTHCHECK .* CMD")
    log = tmp_path / "app.log"
    with log.open("w") as output, running(command, env=env, cwd=root, stdout=output, stderr=output) as app:

        def healthy() -> bool:
            # It exited: "could not import 'shop': No module named 'shop'; it is in src/shop, which is not on the
            # import path (a src layout)".
            assert app.poll() is None, log.read_text()[-2000:]
            check = [str(BIN / "python"), *healthcheck[1:]]
            return subprocess.run(check, env=env, cwd=root, capture_output=True).returncode == 0

        wait_for(healthy, timeout=60, what="the app image's HEALTHCHECK to pass")
        headers = {"X-Forwarded-For": "203.0.113.9"}
        assert requests.get(f"http://127.0.0.1:{app_port}/admin/", headers=headers, timeout=10).text == "admin"
        assert requests.get(f"http://127.0.0.1:{app_port}/api/products", timeout=10).status_code in (200, 500)


def test_the_vm_imports_a_src_layout_app_its_requirements_leave_uninstalled(tmp_path: Path) -> None:
    root = requirements_shop(tmp_path / "shop")
    done = build(root, "--target", "systemd")
    assert done.returncode == 0, done.stderr
    unit = (root / "deploy/systemd/shop.service").read_text()
    readme = (root / "deploy/systemd/README.md").read_text()
    assert "/opt/shop/venv/bin/pip install -r /srv/shop/requirements.txt" in readme
    # The unit's environment, with the VM's copy of the project (/srv/shop) as root; no PYTHONPATH of the builder's.
    env = clean_env()
    env.pop("PYTHONPATH", None)
    for key, value in re.findall(r'^Environment="?(\w+)=([^"\n]*)"?$', unit, re.M):
        env[key] = value.replace("/srv/shop", str(root))
    imported = subprocess.run(
        [str(BIN / "python"), "-c", "import shop; print(shop.__file__)"],
        env=env, cwd=root, capture_output=True, text=True, check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == str(root / "src/shop/__init__.py")
    # Flask's instance folder as the unit lets the app write it: beside the package it imports.
    assert "ReadWritePaths=-/srv/shop/src/instance" in unit


def test_a_project_the_image_installs_gets_no_pythonpath(tmp_path: Path) -> None:
    root = src_layout_shop(tmp_path / "shop")  # pyproject.toml alone: the image installs the project
    done = subprocess.run(
        [str(BIN / "flaskprod"), "build", "--target", "compose"], cwd=root, env=shop_env(root),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    dockerfile = (root / "deploy/compose/Dockerfile").read_text()
    assert "PYTHONPATH" not in dockerfile
    assert "RUN pip install --no-cache-dir /app" in dockerfile
