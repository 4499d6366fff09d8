"""`flaskprod build --target swarm`: stack.yaml's header says what the nodes must have free for Swarm to place its
tasks, from the reservations the file itself holds (equal to the limits the app's workers were sized for).

The app's reservations equal its limits and an update starts the new task first, so an update needs room for one
more app task; with --with postgres (1 CPU reserved) a single 2-CPU node could not place even the first deploy,
and nothing in the file said so."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flaskprod.spec import parse_size
from tests.buildkit import make_deployment, make_spec, run_tool, tool
from tests.test_build_k8s import YAMLLINT


def stack(tmp_path: Path, settings: dict[str, str], extras: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    from flaskprod.render.compose import render_swarm

    spec = make_spec(**{"app.name": "shop", "app.version": "1.2.3", **settings})
    text = render_swarm(make_deployment(tmp_path, spec=spec, extras=extras))["stack.yaml"]
    (tmp_path / "stack.yaml").write_text(text)
    return yaml.safe_load(text), text


def header(text: str) -> str:
    return " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))


def reserved(data: dict[str, Any], *, extra_app_tasks: int = 0) -> tuple[float, int]:
    """CPUs and bytes every task of the stack reserves, read from the file, with extra_app_tasks more of the app."""
    cpus, memory = 0.0, 0
    for name, service in data["services"].items():
        reservations = service.get("deploy", {}).get("resources", {}).get("reservations")
        if reservations is None:
            continue
        tasks = service["deploy"].get("replicas", 1) + (extra_app_tasks if name == "app" else 0)
        cpus += tasks * float(reservations["cpus"])
        memory += tasks * parse_size(reservations["memory"])
    return cpus, memory


def stated(text: str) -> dict[str, tuple[float, str]]:
    """The header's figures: {"first": (cpus, memory), "update": (cpus, memory)}."""
    said = header(text)
    first = re.search(r"The first deploy needs ([\d.]+) CPUs? and ([\d.]+ [MG]iB) free across the nodes", said)
    update = re.search(r"an update ([\d.]+) CPUs? and ([\d.]+ [MG]iB), as it starts 1 new app task", said)
    assert first and update, said
    return {"first": (float(first[1]), first[2]), "update": (float(update[1]), update[2])}


def as_bytes(text: str) -> int:
    number, unit = text.split()
    return int(float(number) * (1024**3 if unit == "GiB" else 1024**2))


@pytest.mark.parametrize(
    ("settings", "extras", "first", "update"),
    [
        # The finding: a single 2-CPU node cannot place the first deploy with the database.
        ({}, ("postgres",), (3.0, "2 GiB"), (4.0, "2.5 GiB")),
        ({}, (), (2.0, "1 GiB"), (3.0, "1.5 GiB")),
        ({"deploy.cpus": "0.5", "deploy.memory": "768M", "deploy.replicas": "3"}, (), (1.5, "2.25 GiB"), (2, "3 GiB")),
        (
            {"deploy.cpus": "0.5", "deploy.postgres_cpus": "0.5", "deploy.postgres_memory": "512M"},
            ("postgres", "monitoring"),
            (1.5, "1.5 GiB"),
            (2.0, "2 GiB"),
        ),
    ],
    ids=["postgres-defaults", "defaults", "small-app", "small-postgres-monitoring"],
)
def test_the_header_states_what_the_reservations_add_up_to(
    tmp_path: Path,
    settings: dict[str, str],
    extras: tuple[str, ...],
    first: tuple[float, str],
    update: tuple[float, str],
) -> None:
    data, text = stack(tmp_path, settings, extras)
    figures = stated(text)
    assert figures == {"first": first, "update": update}
    # The same sums as the file's own reservations: every task, then one app task more during an update.
    assert reserved(data) == (first[0], as_bytes(first[1]))
    assert reserved(data, extra_app_tasks=1) == (update[0], as_bytes(update[1]))
    # Only the app and the database reserve, each what it may use: nginx and the rest have limits alone.
    reserving = {
        name: s["deploy"]["resources"]
        for name, s in data["services"].items()
        if "reservations" in s.get("deploy", {}).get("resources", {})
    }
    assert set(reserving) == ({"app", "postgres"} if "postgres" in extras else {"app"})
    assert all(r["reservations"] == r["limits"] for r in reserving.values())
    assert "With less, lower deploy.cpus, deploy.memory or deploy.replicas" in header(text)
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, str(tmp_path / "stack.yaml")])
