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
from .render.kubernetes import most_pods
from .render.targets import Target, find_target, parse_extras, server_for
from .render.writer import RECORD, Change, write_files
from .spec import Spec


@dataclass(frozen=True, kw_only=True)
class Built:
    target: Target
    deployment: Deployment
    changes: list[Change]

    @property
    def next_step(self) -> str:
        d = self.deployment
        return self.target.next_step.format(
            out=d.out, image=d.image, name=d.name, instance=d.instance_dir, port=d.app_port, release=release_step(d)
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
    path = Path(out) if out else Path("deploy") / target.name
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
    chosen = find_target(target)
    wanted = parse_extras(chosen, extras)
    server = server_for(chosen, spec.server.kind)
    root = (root or Path.cwd()).resolve()
    relative_out = output_dir(root, chosen, out)
    # The database budget is shared by every app container that can run at once: Kubernetes' autoscaler
    # ceiling and the pod a rollout adds, Swarm's replicas and the task an update starts beside them; a
    # systemd install is one app server.
    replicas = {
        "k8s": most_pods(spec),
        "swarm": most_tasks(spec),
        "systemd": 1,
    }.get(chosen.name, spec.deploy.replicas)
    deployment = plan_deployment(
        spec, server=server, extras=wanted, root=root, replicas=replicas, out=relative_out, environ=environ
    )
    files = chosen.render(deployment)
    record = RECORD.format(target=chosen.name)
    changes = write_files(root / relative_out, files, force=force, dry_run=dry_run, record=record)
    return Built(target=chosen, deployment=deployment, changes=changes)
