"""The deployment targets `flaskprod build` writes: each a pure renderer of a Deployment, imported when used."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BuildError, SpecError
from .deployment import Deployment, ServerKind

Renderer = Callable[[Deployment], dict[str, str]]
EXTRAS = ("monitoring", "logging", "postgres", "tls")
# What to do instead, when the target cannot carry the extra.
EXTRA_ELSEWHERE = {
    "postgres": "or give the app a PostgreSQL you run, its URL in database.url_env",
    "tls": "or end TLS at a load balancer in front of the container",
    # Kubernetes and systemd have their own collector for what containers and units write on stdout.
    "logging": "or let the platform's collector (a DaemonSet, journald) ship the JSON lines the app and nginx "
    "write on stdout",
}


@dataclass(frozen=True, kw_only=True)
class Target:
    name: str
    summary: str
    server: ServerKind  # the app server when server.kind is auto
    fixed_server: bool  # the target runs this server alone: server.kind cannot change it
    extras: frozenset[str]
    renderer: str  # "module:function" under flaskprod.render
    # What to run next; {out} is the output directory, {instance} Flask's instance folder in the image, {port} the
    # app server's port in it, {release} deploy.release_command run in the image first, where the target has no step
    # of its own to run it, {build_flags} what docker build needs beyond -f and -t (--ssh default).
    next_step: str

    def render(self, deployment: Deployment) -> dict[str, str]:
        module, _, function = self.renderer.partition(":")
        fn: Renderer = getattr(importlib.import_module(f"flaskprod.render.{module}"), function)
        return fn(deployment)


TARGETS = {
    t.name: t
    for t in (
        Target(
            name="single",
            summary="one image: Gunicorn facing clients itself (the guide's Option 1, done safely)",
            server="gunicorn",
            # Clients reach the app server itself, over HTTP: uWSGI speaks its own protocol to nginx, and its
            # http-socket is no server to face clients with (uWSGI's docs put its HTTP router in front).
            fixed_server=True,
            # One container: a database beside it would be a second, which is what compose is for; so would
            # certbot, and Gunicorn facing clients is no place for a certificate that renews.
            extras=frozenset(),
            renderer="image:render_single",
            next_step="docker build{build_flags} -f {out}/Dockerfile -t {image} . && {release}docker run --rm "
            "-p {port}:{port} -e FLASK_SECRET_KEY -v {name}-instance:{instance} {image}",
        ),
        Target(
            name="compose",
            summary="Docker Compose: nginx in front of Gunicorn (the guide's Option 2)",
            server="gunicorn",
            fixed_server=True,
            extras=frozenset(EXTRAS),
            renderer="compose:render_compose",
            next_step="docker compose -f {out}/compose.yaml up --build",
        ),
        Target(
            name="compose-uwsgi",
            summary="Docker Compose: nginx in front of uWSGI over the uwsgi protocol (the guide's Option 3)",
            server="uwsgi",
            fixed_server=True,
            # Monitoring too: each replica answers scrapes in HTTP beside its uwsgi-protocol port (the responder).
            extras=frozenset(EXTRAS),
            renderer="compose:render_compose",
            next_step="docker compose -f {out}/compose.yaml up --build",
        ),
        Target(
            name="swarm",
            summary="a Docker Swarm stack: replicated app and nginx, rolling updates that roll back",
            # HTTP, so Prometheus can scrape every replica itself (tasks.app), not one behind the VIP.
            server="gunicorn",
            fixed_server=False,
            extras=frozenset(EXTRAS),
            renderer="compose:render_swarm",
            next_step="build and push {image} and its -nginx image, `docker secret create`, then "
            "docker stack deploy -c {out}/stack.yaml {name}",
        ),
        Target(
            name="k8s",
            summary="Kubernetes with kustomize: nginx beside the app server in each pod, probes, autoscaling",
            server="uwsgi",
            fixed_server=False,
            # No logging: a cluster ships every pod's stdout with a collector of its own, run once per node.
            extras=frozenset({"monitoring", "postgres", "tls"}),
            renderer="kubernetes:render_k8s",
            next_step="build and push the images, create the secret, then kubectl apply -k {out}",
        ),
        Target(
            name="systemd",
            summary="a plain VM: systemd units for the app server and nginx, as `flaskprod up` runs them",
            server="uwsgi",
            fixed_server=False,
            # The units install the app on a VM; a database there is the VM's own package, not a unit of ours.
            # TLS is the VM's certbot, with nginx.conf, a deploy hook and the steps in the README; monitoring
            # the VM's Prometheus (Debian's package), with the files and steps to give it.
            extras=frozenset({"monitoring", "tls"}),
            renderer="systemd:render_systemd",
            next_step="see {out}/README.md to install the units",
        ),
    )
}


def find_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise BuildError(f"unknown target {name!r}: choose one of {', '.join(TARGETS)}") from None


def split_extras(values: tuple[str, ...]) -> set[str]:
    """--with a,b (repeatable) as the set of names given; one that names none is refused."""
    for value in values:
        if not value.replace(",", "").strip():
            # An unset shell variable (--with "$PARTS"): read as nothing, the parts meant would be left out unsaid.
            raise SpecError(f"--with {value!r}: no part named; name one such as monitoring, or leave --with out")
    return {item.strip() for value in values for item in value.split(",") if item.strip()}


def parse_extras(target: Target, values: tuple[str, ...]) -> frozenset[str]:
    """--with a,b (repeatable) checked against what the target supports."""
    extras = split_extras(values)
    unknown = sorted(extras - set(EXTRAS))
    if unknown:
        raise BuildError(f"--with {unknown[0]}: unknown; choose from {', '.join(EXTRAS)}")
    unsupported = sorted(extras - target.extras)
    if unsupported:
        extra = unsupported[0]
        offered = f"it offers {', '.join(sorted(target.extras))}" if target.extras else "it takes none"
        carriers = [t.name for t in TARGETS.values() if extra in t.extras]
        fix = f"use --target {_one_of(carriers)}"
        if extra in EXTRA_ELSEWHERE:
            fix = f"{fix}, {EXTRA_ELSEWHERE[extra]}"
        raise BuildError(f"--with {extra} is not available for --target {target.name} ({offered}): {fix}")
    return frozenset(extras)


def _one_of(names: list[str]) -> str:
    """'a, b or c'."""
    return " or ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


def server_for(target: Target, kind: str) -> ServerKind:
    if kind == "auto" or target.fixed_server:
        if target.fixed_server and kind not in ("auto", target.server):
            # --server beats a server.kind the config file sets for `up`.
            others = [t.name for t in TARGETS.values() if t.fixed_server and t.server == kind]
            raise BuildError(
                f"--target {target.name} runs {target.server}, but server.kind is {kind}: "
                f"use --target {_one_of(others)} for {kind}, or pass --server {target.server}"
            )
        return target.server
    return "uwsgi" if kind == "uwsgi" else "gunicorn"
