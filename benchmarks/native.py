"""What `flaskprod build` writes for a container, run on this machine: the app image's CMD with its ENV, and the nginx
image's conf with the containers' paths and addresses mapped onto local ones (no Docker engine here).

The tests run the images' contents this way to see them serve; the benchmarks measure the Compose targets this way.
"""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from flaskprod.render.deployment import STATIC_DIR

BIN = Path(sys.executable).parent
TASKBOARD = Path(__file__).resolve().parent.parent / "examples" / "taskboard"
# What running the reference app by hand leaves in it (up's run dir and its sockets, build's deploy/, the SQLite
# file, caches): a copy is the project as checked out, whatever `make up` or the README's examples did.
LOCAL_STATE = ("__pycache__", "instance", "*.db", "*.sqlite3", ".flaskprod", "deploy")


def copy_taskboard(dest: Path) -> Path:
    """A copy of the reference app at dest, as a user's project, without what local runs left in it."""
    shutil.copytree(TASKBOARD, dest, ignore=shutil.ignore_patterns(*LOCAL_STATE))
    return dest


def dockerfile_lines(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    return [line.strip() for line in re.sub(r"\\\n", " ", text).splitlines() if line.strip()]


def dockerfile_env(text: str) -> dict[str, str]:
    """The FLASKPROD_* variables the final stage's ENV sets."""
    final = text.rsplit("\nFROM ", 1)[1]
    env_lines = [line for line in dockerfile_lines(final) if line.startswith("ENV ")]
    return dict(re.findall(r"(FLASKPROD_\w+)=(\S+)", " ".join(env_lines)))


def dockerfile_json(text: str, pattern: str) -> list[str]:
    """The exec-form command of the instruction line matching pattern, e.g. r"CMD" or r"HEALTHCHECK .* CMD"."""
    for line in dockerfile_lines(text):
        match = re.fullmatch(rf"{pattern} (\[.*\])", line)
        if match:
            return list(yaml.safe_load(match[1]))
    raise ValueError(f"no {pattern} in the Dockerfile")


def app_command(dockerfile: str, app_port: int) -> tuple[list[str], dict[str, str]]:
    """The app image's CMD, its program from this interpreter's bin, and the FLASKPROD_* variables of its ENV with
    the one address that differs: 127.0.0.1:app_port instead of the container's own. The metrics responder takes
    the port after it (sizing.responder_bind), which must be free too."""
    env = dockerfile_env(dockerfile)
    host = env["FLASKPROD_SERVER__BIND"].rsplit(":", 1)[0].replace("0.0.0.0", "127.0.0.1")
    env["FLASKPROD_SERVER__BIND"] = f"{host}:{app_port}"
    command = dockerfile_json(dockerfile, "CMD")
    return [str(BIN / command[0]), *command[1:]], env


def conf_with_upstream(conf: str, upstream: str) -> str:
    """The nginx image's conf with the app's service name replaced by upstream (host:port): Docker's DNS resolves the
    name in a stack. Compose's nginx asks for it per request (an address in a variable, which an IP address here needs
    no resolver for); the others name it in an upstream block."""
    conf = re.sub(r"(set \$flaskprod_\w+ )app:\d+;", rf"\g<1>{upstream};", conf)
    return re.sub(r"server app:\d+ ", f"server {upstream} ", conf)


def native_nginx(project: Path, out: Path, nginx_dir: Path, *, port: int, upstream: str) -> list[str]:
    """The nginx image made here under nginx_dir: its Dockerfile's COPY of each static folder, and its conf with
    the containers' paths and addresses mapped onto this machine (nothing else changed); the command to run it."""
    nginx_dir.mkdir()
    for line in dockerfile_lines((out / "nginx/Dockerfile").read_text()):
        copied = re.fullmatch(rf"COPY (\S+) {STATIC_DIR}/(\S+)", line)
        if copied:
            shutil.copytree(project / copied[1], nginx_dir / "static" / copied[2])
    conf = conf_with_upstream((out / "nginx/nginx.conf").read_text(), upstream)
    conf = conf.replace("pid /tmp/nginx.pid;", f"pid {nginx_dir}/nginx.pid;")
    conf = re.sub(r"_temp_path /tmp/", f"_temp_path {nginx_dir}/", conf)
    conf = conf.replace("0.0.0.0:8080", f"127.0.0.1:{port}")
    conf = conf.replace(STATIC_DIR, str(nginx_dir / "static"))
    conf = conf.replace("/etc/nginx/mime.types", str(out / "nginx/mime.types"))
    # As root, nginx's workers would run as nobody, who cannot read a private temp dir; the image runs master and
    # workers as one unprivileged user, as this does.
    (nginx_dir / "nginx.conf").write_text(f"user {getpass.getuser()};\n{conf}")
    return [shutil.which("nginx") or "nginx", "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")]


def built(project: Path, target: str, env: dict[str, str]) -> Path:
    """project's files for target, written by the real `flaskprod build` into its deploy/TARGET; that folder."""
    result = subprocess.run(
        [str(BIN / "flaskprod"), "build", "--target", target], cwd=project, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"flaskprod build --target {target} failed: {result.stderr.strip()}")
    return project / "deploy" / target
