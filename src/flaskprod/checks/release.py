"""Checks on what a deploy runs before the new code takes requests: deploy.release_command."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask

from .context import Context
from .registry import WARNING, Found, app_check


@app_check(
    "FP-R001",
    WARNING,
    "the app migrates its database with Flask-Migrate, and deploy.release_command is unset: `flaskprod up`, "
    "`deploy` and every built target start the new code on the old schema, which nothing migrates: /readyz "
    "answers 503 until someone runs the migration, so `up` never turns ready and no target takes traffic "
    "(with database.migration_check = false, each request to a new table answers 500 instead)",
    hint='set deploy.release_command = "flask db upgrade" in flaskprod.toml\'s [deploy]: each deploy runs it once, '
    "before the new release takes requests",
)
def migrations_not_run(app: Flask, context: Context) -> Iterator[Found]:
    # Flask-Migrate registers itself as app.extensions["migrate"].
    if "migrate" in app.extensions and not context.spec.deploy.release_argv:
        yield Found(obj=context.app_label)
