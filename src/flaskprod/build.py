"""`flaskprod build`: plan one target's Deployment, render its files, and write them all or none."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .discovery import APP_VARIABLE
from .errors import BuildError
from .render.compose import most_tasks
from .render.deployment import Deployment, plan_deployment
from .render.image import docker_build_flags
from .render.kubernetes import most_pods
from .render.targets import Target, find_target, parse_extras, server_for
from .render.writer import RECORD, Change, Refusal, write_files
from .spec import Spec, refuse_endpoints_under


@dataclass(frozen=True, kw_only=True)
class Built:
    target: Target
    deployment: Deployment
    changes: list[Change]
    # A dry run's refusal (a real run raises it), kept so that the plan it stops can be shown before it.
    refusal: Refusal | None = None

    @property
    def next_step(self) -> str:
        d = self.deployment
        return self.target.next_step.format(
            out=d.out,
            image=d.image,
            name=d.name,
            instance=d.instance_dir,
            port=d.app_port,
            release=release_step(d),
            build_flags=docker_build_flags(d),
        )


def release_step(d: Deployment) -> str:
    """deploy.release_command in a one-off container of the image, as the app runs (its key, its instance volume)
    with FLASK_APP naming the app, then `&& `; "" when unset. The image's CMD reads the app from flaskprod's
    settings, and `flask` only from FLASK_APP."""
    if not d.spec.deploy.release_argv:
        return ""
    run = ["docker", "run", "--rm", "-e", "FLASK_SECRET_KEY", "-e", f"{APP_VARIABLE}={d.project.app_target}"]
    run += ["-v", f"{d.name}-instance:{d.instance_dir}", d.image, *d.spec.deploy.release_argv]
    return f"{shlex.join(run)} && "


def output_dir(root: Path, target: Target, out: str | None) -> str:
    """--out as a POSIX path relative to the project root; the images build from the root, so it must be inside."""
    if out is not None and not out.strip():
        # An unset shell variable (--out "$DIR"): read as no --out, the files would land in the default folder.
        raise BuildError(f"--out {out!r}: no folder named; give one inside the project, such as "
                         f"deploy/{target.name}, or leave --out out")  # fmt: skip
    path = Path(out) if out is not None else Path("deploy") / target.name
    resolved = (root / path).resolve()
    try:
        relative = resolved.relative_to(root)
    except ValueError:
        raise BuildError(
            f"--out {out}: outside the project {root}; the images build from the project root, "
            "so write the files inside it (the default is deploy/<target>)"
        ) from None
    if relative == Path("."):
        raise BuildError(f"--out {out}: the project root itself; pick a folder inside it such as deploy/{target.name}")
    return PurePosixPath(relative).as_posix()


def refuse_out_over_the_app(d: Deployment, target: Target) -> None:
    """--out is a folder of flaskprod's own, which the app image's .dockerignore leaves out and a later build empties
    of what it no longer writes: it must not be, be inside or hold the app's code or a static folder nginx copies."""
    root, out = d.project.root, PurePosixPath(d.out)
    packages = [folder for folder in (out, *out.parents) if (root / folder / "__init__.py").is_file()]
    if (root / out).is_dir():
        packages += [PurePosixPath(p.parent.relative_to(root)) for p in sorted((root / out).rglob("__init__.py"))]
    held = [("the Python package", folder) for folder in packages if folder != PurePosixPath(".")]
    if d.project.app_module:
        held.append(("the app's module", PurePosixPath(d.project.app_module)))
    held += [("the static folder", PurePosixPath(mount.folder)) for mount in d.project.static]
    for what, path in held:
        if out == path or path in out.parents or out in path.parents:
            relation = "is" if out == path else "is inside" if path in out.parents else "holds"
            raise BuildError(
                f"--out {d.out}: {relation} {what} {path}; the deployment's files go in a folder of their own, which "
                f"the app image leaves out: pick one such as deploy/{target.name}"
            )


def build(
    spec: Spec,
    *,
    target: str,
    extras: tuple[str, ...] = (),
    out: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Built:
    """Plan, render and write one target's files. A refusal (a file changed by hand) is raised, or with dry_run
    returned in Built.refusal beside the whole plan."""
    chosen = find_target(target)
    wanted = parse_extras(chosen, extras)
    server = server_for(chosen, spec.server.kind)
    root = (root or Path.cwd()).resolve()
    relative_out = output_dir(root, chosen, out)
    # The database budget is shared by every app container that can run at once: Kubernetes' autoscaler
    # ceiling and the pod a rollout adds, Swarm's replicas and the task an update starts beside them; a
    # systemd install is one app server.
    def replicas(spec: Spec) -> int:  # of the spec as the app needs it (one replica for Flask-SocketIO)
        return {
            "k8s": most_pods(spec),
            "swarm": most_tasks(spec),
            "systemd": 1,
        }.get(chosen.name, spec.deploy.replicas)

    deployment = plan_deployment(
        spec,
        server=server,
        server_chosen=spec.server.kind == "auto" and not chosen.fixed_server,
        extras=wanted,
        root=root,
        replicas=replicas,
        out=relative_out,
        environ=environ,
    )
    refuse_out_over_the_app(deployment, chosen)
    if chosen.name != "single":
        # nginx answers a path under a static URL from disk: a probe there would never reach the app. The single
        # image has no nginx, and the app matches its endpoints before its routes.
        refuse_endpoints_under(spec, ((mount.url, mount.endpoint) for mount in deployment.project.static))
    files = chosen.render(deployment)
    record = RECORD.format(target=chosen.name)
    try:
        changes = write_files(root / relative_out, files, force=force, dry_run=dry_run, record=record)
    except Refusal as refusal:
        if not dry_run:
            raise
        return Built(target=chosen, deployment=deployment, changes=refusal.changes, refusal=refusal)
    return Built(target=chosen, deployment=deployment, changes=changes)
