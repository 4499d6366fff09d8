"""The schema readiness checks: /readyz fails while the database's Alembic revision is behind the app's
Flask-Migrate scripts, or, without Flask-Migrate, while tables of the app's Flask-SQLAlchemy models are missing,
so a release whose schema was never made takes no traffic instead of answering 500s."""

from __future__ import annotations

import contextlib
import inspect
import threading
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask

from .health import Check, Detail, describe

# The readiness check's name: "database:<bind>" names the binds' pings.
CHECK_NAME = "migrations"


class SchemaBehind(Exception):
    """The database's schema is older than the code's: the release command did not run, or failed."""


@dataclass(frozen=True)
class Scripts:
    """What the app's migration scripts say, read once: their heads and every revision they know."""

    heads: frozenset[str]
    known: frozenset[str]
    command: str  # Flask-Migrate's command group: `flask <command> upgrade`
    # Heads another head depends on (depends_on): alembic_version holds the dependent one alone once both ran.
    implied: frozenset[str] = frozenset()
    # `flask db init --multidb`: each revision upgrades every engine (upgrade(engine_name)), and each engine's
    # database keeps its own alembic_version.
    multidb: bool = False

    @property
    def upgrade(self) -> str:
        """The command that reaches every head: `flask db upgrade` refuses scripts with several."""
        return f"flask {self.command} upgrade" + (" heads" if len(self.heads) > 1 else "")


@dataclass(frozen=True)
class Verdict:
    """The comparison's answer: behind (fail with message), or ready with an optional note."""

    behind: bool
    message: str = ""


def compare(revisions: Collection[str] | None, scripts: Scripts) -> Verdict:
    """revisions, the database's alembic_version rows (None: no such table), against the scripts' heads.

    Behind only when every revision the database holds is one the scripts know and the heads are not all
    there: a revision the code does not know is a newer release's (expand/contract: the old code serves on
    while the new one migrated ahead), and must not pull the running release out of the load balancer.
    """
    needs = ", ".join(sorted(scripts.heads))
    fix = f"run {scripts.upgrade} (deploy.release_command)"
    if not scripts.heads:
        return Verdict(False)
    if revisions is None:
        return Verdict(True, f"the database has no alembic_version table, the code needs {needs}: {fix}")
    unknown = sorted(set(revisions) - scripts.known)
    if unknown:
        return Verdict(False, f"database schema at {', '.join(unknown)}, unknown to this code: a newer release's")
    if scripts.heads - scripts.implied <= set(revisions):
        return Verdict(False)
    at = ", ".join(sorted(revisions)) or "no revision"
    return Verdict(True, f"database schema at {at}, the code needs {needs}: {fix}")


def read_scripts(migrate: Any) -> Scripts:
    """The heads and revisions of Flask-Migrate's script directory; runs inside an app context (get_config
    reads flask.g), and imports every migration file once."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.migrate.get_config())
    known = frozenset(revision.revision for revision in script.walk_revisions())
    heads = frozenset(script.get_heads())
    # A head that another one depends on is among its ancestors: iterate_revisions follows depends_on too.
    implied = frozenset(
        revision.revision
        for head in heads
        for revision in script.iterate_revisions(head, "base")
        if revision.revision in heads and revision.revision != head
    )
    multidb = any(_takes_engine_name(script.get_revision(head)) for head in heads)
    return Scripts(heads=heads, known=known, command=migrate.migrate.command, implied=implied, multidb=multidb)


def _takes_engine_name(revision: Any) -> bool:
    """Whether a revision is the multidb template's: its upgrade() is called with the engine's name."""
    upgrade = getattr(getattr(revision, "module", None), "upgrade", None)
    try:
        return callable(upgrade) and len(inspect.signature(upgrade).parameters) > 0
    except (TypeError, ValueError):
        return False


def database_revisions(engine: Any, migrate: Any) -> tuple[str, ...] | None:
    """The version table's rows in one SELECT; None when the table is missing (never migrated)."""
    import sqlalchemy as sa

    args = migrate.configure_args  # env.py hands these to Alembic: the version table's name may be the app's
    table = sa.table(
        args.get("version_table", "alembic_version"), sa.column("version_num"), schema=args.get("version_table_schema")
    )
    with engine.connect() as conn:
        try:
            return tuple(conn.scalars(sa.select(table.c.version_num)))
        except sa.exc.DBAPIError:
            conn.rollback()  # PostgreSQL refuses further statements in the failed transaction
            if sa.inspect(conn).has_table(table.name, schema=table.schema):
                raise
            return None


class SchemaState:
    """One app's check state, kept across probes (whose checks are built afresh each time).

    The scripts are read at the first probe, not at start: apps call Migrate(app, db) after Production(app).
    Once the database is ready for this code the answer is kept and later probes query nothing: a schema does
    not go backwards while a release serves, and if an operator downgrades it, every replica failing readiness
    at once would turn the pages that still work into 503s too. The check gates a release's start; the database
    ping still runs on every probe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.scripts: Scripts | Detail | None = None  # a Detail when the scripts could not be read
        self.settled: Detail | None = None

    def check(self, app: Flask, engines: Mapping[str | None, Any], pool_busy: Callable[[Any], bool]) -> object:
        if self.settled is not None:
            return self.settled
        migrate = app.extensions["migrate"]
        with self._lock:  # a slow first read that overran its timeout finishes once, for the probes after it
            if self.scripts is None:
                self.scripts = _scripts_or_note(app, migrate)
        if isinstance(self.scripts, Detail):
            self.settled = self.scripts
            return self.settled
        # The default engine's database; with multidb scripts each bind's too, default first.
        compared = [(key, engine) for key, engine in engines.items() if key is None or self.scripts.multidb]
        compared.sort(key=lambda item: (item[0] is not None, item[0] or ""))
        if any(pool_busy(engine.pool) for _, engine in compared):
            return None  # requests hold every connection: waiting for one would fail a serving process
        notes = []
        for key, engine in compared:
            verdict = compare(database_revisions(engine, migrate), self.scripts)
            where = "" if key is None else f"bind {key!r}: "
            if verdict.behind:
                raise SchemaBehind(where + verdict.message)
            if verdict.message:
                notes.append(where + verdict.message)
        self.settled = Detail("; ".join(notes))
        return self.settled


def _scripts_or_note(app: Flask, migrate: Any) -> Scripts | Detail:
    """The scripts; when they cannot be read (a directory left out of the image), a note that passes: the
    check was added by flaskprod, and an app that was ready before it must not stop being ready."""
    try:
        return read_scripts(migrate)
    except Exception as exc:  # alembic's CommandError, or a script that does not import
        note = f"schema not compared, the migration scripts could not be read: {describe(exc)}"
        app.logger.warning("%s", note)
        return Detail(note)


_states: weakref.WeakKeyDictionary[Flask, SchemaState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def schema_check(app: Flask, engines: Mapping[str | None, Any], pool_busy: Callable[[Any], bool]) -> Check | None:
    """The check of app's databases (engines by bind key, None the default) when it uses Flask-Migrate: the
    default's, and each bind's under multidb scripts; pool_busy(pool) tells when to skip."""
    if "migrate" not in app.extensions or None not in engines:
        return None
    with _states_lock:
        state = _states.setdefault(app, SchemaState())
    return lambda: state.check(app, engines, pool_busy)


# The readiness check of an app without Flask-Migrate: "tables" beside "database".
TABLES_CHECK_NAME = "tables"
TABLES_NAMED = 3  # an error lists this many missing tables, then counts the rest: it must fit a probe's answer


class MissingTables(Exception):
    """Tables the app's models map are not in its database: whatever creates them (db.create_all()) did not run."""


class TablesState:
    """One app's table check, kept across probes: which of its models' tables the database was seen to hold.

    Flask-SQLAlchemy apps without Flask-Migrate make their tables with db.create_all(), often in a CLI command
    run by hand: a deploy that skipped it serves 500s ("no such table") while readiness said ok. A table once
    seen is not asked for again, so once all were seen a probe queries nothing (a serving release is not pulled
    from the load balancer by a later DROP, as SchemaState keeps its answer); until then one inspector query per
    schema and database, and one more for views only while tables are missing.
    """

    def __init__(self, expected: Mapping[str | None, frozenset[tuple[str | None, str]]]) -> None:
        self._lock = threading.Lock()
        self._unseen = {key: set(tables) for key, tables in expected.items() if tables}

    def check(self, engines: Mapping[str | None, Any], pool_busy: Callable[[Any], bool]) -> None:
        with self._lock:  # a probe that overran its timeout finishes its query once, not beside the next one's
            for key in sorted(self._unseen, key=lambda k: (k is not None, k or "")):
                engine = engines.get(key)
                if engine is None or pool_busy(engine.pool):
                    continue  # requests hold every connection: waiting for one would fail a serving process
                self._unseen[key] -= present_tables(engine, self._unseen[key])
            missing = {key: unseen for key, unseen in self._unseen.items() if unseen}
            self._unseen = missing
        if missing:
            raise MissingTables(_missing_message(missing))


def present_tables(engine: Any, wanted: Collection[tuple[str | None, str]]) -> set[tuple[str | None, str]]:
    """Which of the (schema, name) pairs the database holds, as tables or, asked only for those not found, views."""
    import sqlalchemy as sa

    found: set[tuple[str | None, str]] = set()
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for schema in {schema for schema, _ in wanted}:
            names = {name for s, name in wanted if s == schema}
            found.update((schema, name) for name in _among(names, inspector.get_table_names(schema=schema)))
            if names - {name for s, name in found if s == schema}:
                # A model may map a view another tool made; looked for only while something is missing.
                views = list(inspector.get_view_names(schema=schema))
                # Only PostgreSQL and Oracle have materialized views: SQLAlchemy raises NotImplementedError elsewhere.
                with contextlib.suppress(NotImplementedError):
                    views += inspector.get_materialized_view_names(schema=schema)
                found.update((schema, name) for name in _among(names, views))
    return found


def _among(names: Collection[str], existing: Collection[str]) -> set[str]:
    """names the database holds; case-insensitively too, as MySQL with lower_case_table_names stores them."""
    folded = {name.lower() for name in existing}
    return {name for name in names if name in existing or name.lower() in folded}


def _missing_message(missing: Mapping[str | None, Collection[tuple[str | None, str]]]) -> str:
    parts = []
    for key, tables in missing.items():
        names = sorted(name if schema is None else f"{schema}.{name}" for schema, name in tables)
        more = len(names) - TABLES_NAMED
        listed = ", ".join(names[:TABLES_NAMED]) + (f" and {more} more" if more > 0 else "")
        parts.append(("" if key is None else f"bind {key!r}: ") + listed)
    return (
        f"{'; '.join(parts)} not in the database: run the app's command that creates them (deploy.release_command) "
        "or set database.migration_check = false"
    )


_table_states: weakref.WeakKeyDictionary[Flask, TablesState] = weakref.WeakKeyDictionary()


def tables_check(app: Flask, engines: Mapping[str | None, Any], pool_busy: Callable[[Any], bool]) -> Check | None:
    """The check that the tables of a Flask-SQLAlchemy app's models exist (db.metadatas, one per bind key), for an
    app without Flask-Migrate, whose revision check says more; None while its models map no table."""
    ext = app.extensions.get("sqlalchemy")
    if ext is None or "migrate" in app.extensions:
        return None
    with _states_lock:
        state = _table_states.get(app)
        if state is None:
            expected = {
                key: frozenset((table.schema, table.name) for table in metadata.tables.values())
                for key, metadata in ext.metadatas.items()
            }
            if not any(expected.values()):
                return None  # models imported later (at a first request) are not waited for
            state = _table_states[app] = TablesState(expected)
    return lambda: state.check(engines, pool_busy)
