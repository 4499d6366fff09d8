"""The nginx binary: find it, test a config, and the command that runs it under the run directory's prefix."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import ServerError
from .rundir import StackDir

INSTALL_HINT = "install it with `apt-get install nginx-light` (Debian, Ubuntu)"


def find_nginx(setting: str) -> str:
    """The path of the nginx proxy.nginx names (on PATH, or a path), or a ServerError saying how to get one."""
    found = shutil.which(setting)
    if found is None:
        where = "on PATH" if "/" not in setting else "there"
        raise ServerError(
            f"nginx not found (proxy.nginx = {setting!r}, nothing executable {where}): "
            f"{INSTALL_HINT}, or set proxy.nginx to its path"
        )
    return found


@functools.cache
def version(binary: str) -> tuple[int, ...]:
    """nginx's version, from `nginx -v` ("nginx version: nginx/1.22.1"); () when it does not say."""
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False, timeout=30)
    found = re.search(r"nginx/(\d+(?:\.\d+)*)", result.stderr)
    return tuple(int(part) for part in found.group(1).split(".")) if found else ()


def base_args(binary: str, run: StackDir, conf: Path | None = None) -> list[str]:
    # -e: errors go to stderr even before the config is read, never to the build's default log path.
    return [binary, "-p", f"{run.path}/", "-c", str(conf or run.nginx_conf), "-e", "stderr"]


def foreground_command(binary: str, run: StackDir) -> list[str]:
    """nginx in the foreground with its master process, so `up` is its parent and sees it exit."""
    return [*base_args(binary, run), "-g", "daemon off;"]


def check_config(binary: str, run: StackDir, conf: Path | None = None) -> None:
    """`nginx -t` on the rendered file (or conf); its complaint becomes the error message."""
    conf = conf or run.nginx_conf
    result = subprocess.run(
        [*base_args(binary, run, conf), "-t", "-q"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    if result.returncode != 0:
        detail = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        raise ServerError(f"nginx rejected {conf}: {detail}")
