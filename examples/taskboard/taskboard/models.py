"""Database models (Board has many Tasks), schema creation that tolerates racing workers, demo data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import exc
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

TITLE_MAX = 200
NAME_MAX = 80


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


def _now() -> datetime:
    return datetime.now(UTC)


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns; we stored UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Board(db.Model):  # type: ignore[name-defined,misc]  # db.Model is built at runtime
    __tablename__ = "boards"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique so that two workers seeding an empty database at once cannot both succeed.
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX), unique=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=_now)
    tasks: Mapped[list[Task]] = relationship(back_populates="board", cascade="all, delete-orphan", order_by="Task.id")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "task_count": len(self.tasks)}


class Task(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(sa.ForeignKey("boards.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(sa.String(TITLE_MAX))
    done: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=_now)
    board: Mapped[Board] = relationship(back_populates="tasks")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "board_id": self.board_id,
            "title": self.title,
            "done": self.done,
            "created_at": _as_utc(self.created_at).isoformat(),
        }


DEMO_BOARD = "Demo"
DEMO_TASKS = ("Read the flaskprod guide", "Run `flaskprod check`", "Ship it behind nginx")

# Errors a concurrent CREATE TABLE or INSERT by another worker can cause: SQLite says
# "table already exists" (OperationalError), PostgreSQL reports a duplicate in pg_type
# (IntegrityError) or DuplicateTable (ProgrammingError).
_RACE_ERRORS = (exc.OperationalError, exc.ProgrammingError, exc.IntegrityError)


def create_schema(attempts: int = 5) -> None:
    """Create missing tables; if another process wins the race, check again and carry on.

    Each pass sees the tables others made (checkfirst) and creates the rest, so a race can recur once per
    table (two processes: one made boards as the other checked, then tasks as it checked again). The last
    pass raises: by then it is a real error that should stop the start.
    """
    for attempt in range(attempts):
        try:
            db.create_all()
            return
        except _RACE_ERRORS:
            db.session.rollback()
            if attempt == attempts - 1:
                raise


def seed_demo() -> bool:
    """Add one demo board with a few tasks when there are no boards; True if it did."""
    if db.session.scalar(sa.select(sa.func.count()).select_from(Board)):
        return False
    board = Board(name=DEMO_BOARD, tasks=[Task(title=title) for title in DEMO_TASKS])
    db.session.add(board)
    try:
        db.session.commit()
    except exc.IntegrityError:
        # Another worker seeded between our count and our insert: its board is enough.
        db.session.rollback()
        return False
    return True
