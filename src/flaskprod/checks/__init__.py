"""`flaskprod check`: a production-readiness audit of the app, its config and its project files.

Each check is a small function registered with a stable ID (FP-S001: S security, C the app's
config, P the project's files), a level, what it finds and how to fix it; docs/checks.md is
generated from the registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..spec import Spec
from . import committed, config, project, release, security  # noqa: F401  (importing a topic registers its checks)
from .context import Context, load_context
from .registry import REGISTRY, Level, Message, mark_silenced, parse_ids, run_checks
from .report import as_json, as_text, exit_code

__all__ = [
    "REGISTRY",
    "Context",
    "Level",
    "Message",
    "as_json",
    "as_text",
    "audit",
    "exit_code",
    "load_context",
    "run_checks",
    "silenced_ids",
]


def silenced_ids(spec: Spec, flags: Iterable[str]) -> frozenset[str]:
    """The IDs silenced by --silence and by the checks.silenced setting; a SpecError for an unknown one."""
    origin = spec.origins.get("checks.silenced", "default")
    from_spec = parse_ids([spec.checks.silenced or ""], f"checks.silenced ({origin})")
    return from_spec | parse_ids(flags, "--silence")


def audit(spec: Spec, silence: Iterable[str] = (), *, cwd: str | os.PathLike[str] | None = None) -> list[Message]:
    """Load the app the spec names in a child interpreter and run every check on it; silenced messages are
    marked, not dropped.

    Unknown IDs to silence, and an app that cannot be found, imported or loaded (it exits, crashes or does not
    finish within proxy.ready_timeout) raise (a FlaskprodError); an app that refuses to start is a finding
    (FP-C001), and its other checks run on it loaded with that refusal off.
    """
    from .runner import checked_in_child  # not at the top: the child runs that module as __main__

    silenced = silenced_ids(spec, silence)
    return mark_silenced(checked_in_child(spec, Path(cwd) if cwd is not None else Path.cwd()), silenced)
