"""The machine and the software a run measured, recorded next to its numbers."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .stacks import NGINX


def _first_line(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return found.group(1).strip() if found else "unknown"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": cores(),
        "memory_mb": memory_mb(),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    found = {
        "nginx": _first_line([NGINX, "-v"]).replace("nginx version: ", ""),
        "wrk": _first_line(["wrk", "--version"]).split(" [")[0],
    }
    for dist in (
        "flaskprod",
        "flask",
        "werkzeug",
        "gunicorn",
        "uwsgi",
        "sqlalchemy",
        "psycopg2-binary",
        "prometheus-client",
        "matplotlib",
    ):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    # Debian keeps each major version under its own directory; the newest is the one the benchmarks start.
    servers = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    found["postgresql"] = _first_line([str(servers[-1]), "--version"]) if servers else "not installed"
    return found


def git_commit(repo: Path) -> str:
    return _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
