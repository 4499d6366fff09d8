"""The check registry: levels, messages with stable IDs, the @check decorators and run_checks."""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import TYPE_CHECKING

from ..errors import SpecError

if TYPE_CHECKING:
    from flask import Flask

    from .context import Context


class Level(IntEnum):
    """Severity, with Django's values: --fail-level compares against these."""

    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40
    CRITICAL = 50


DEBUG, INFO, WARNING, ERROR, CRITICAL = Level.DEBUG, Level.INFO, Level.WARNING, Level.ERROR, Level.CRITICAL


@dataclass(frozen=True, kw_only=True)
class Message:
    """One finding: which check (id, level), where (obj), what is wrong (text) and the fix (hint)."""

    id: str
    level: Level
    text: str
    hint: str
    obj: str
    silenced: bool = False


@dataclass(frozen=True, kw_only=True)
class Found:
    """What a check function yields: where the problem is, and the text and hint when they differ from the check's."""

    obj: str
    text: str | None = None
    hint: str | None = None


@dataclass(frozen=True, kw_only=True)
class Check:
    """A registered check: its stable ID and level, what it finds and how to fix it, and the function."""

    id: str
    level: Level
    text: str
    hint: str
    topic: str
    run: Callable[[Context], Iterable[Found]]

    def messages(self, context: Context) -> Iterator[Message]:
        for found in self.run(context):
            yield Message(
                id=self.id, level=self.level, text=found.text or self.text, hint=found.hint or self.hint, obj=found.obj
            )


REGISTRY: dict[str, Check] = {}
_ID = re.compile(r"FP-[A-Z]\d{3}")

ContextCheck = Callable[["Context"], Iterable[Found]]
AppCheck = Callable[["Flask", "Context"], Iterable[Found]]


def _register(check: Check) -> None:
    if not _ID.fullmatch(check.id):
        raise ValueError(f"check ID {check.id!r} does not look like FP-X000")
    if check.id in REGISTRY:
        raise ValueError(f"check ID {check.id} is registered twice")
    REGISTRY[check.id] = check


def _topic(fn: Callable[..., object]) -> str:
    """The reference page's section: the check's module's TOPIC, else the module's name (security, config)."""
    return str(getattr(sys.modules[fn.__module__], "TOPIC", fn.__module__.rsplit(".", 1)[-1]))


def check(id: str, level: Level, text: str, *, hint: str) -> Callable[[ContextCheck], ContextCheck]:
    """Register fn(context) -> Found...: a check on the project's files, the spec or the environment."""

    def register(fn: ContextCheck) -> ContextCheck:
        _register(Check(id=id, level=level, text=text, hint=hint, topic=_topic(fn), run=fn))
        return fn

    return register


def app_check(id: str, level: Level, text: str, *, hint: str) -> Callable[[AppCheck], AppCheck]:
    """Register fn(app, context) -> Found...: a check on the loaded Flask app, skipped when it did not load."""

    def register(fn: AppCheck) -> AppCheck:
        def run(context: Context) -> Iterable[Found]:
            return () if context.app is None else fn(context.app, context)

        _register(Check(id=id, level=level, text=text, hint=hint, topic=_topic(fn), run=run))
        return fn

    return register


def run_checks(context: Context, silenced: Iterable[str] = ()) -> list[Message]:
    """Every message of every registered check, in registration order; those with a silenced ID are marked so."""
    return mark_silenced([m for entry in REGISTRY.values() for m in _messages(entry, context)], silenced)


def _messages(entry: Check, context: Context) -> list[Message]:
    """The check's messages; one of its own when it fails, so that the rest of the audit is still made and the
    report says which part of it was not (an ERROR: an audit with a hole in it does not pass by default)."""
    found: list[Message] = []
    try:
        found.extend(entry.messages(context))
        return found
    except Exception as exc:  # a defect of the check's on this project, never the app's: say so, and go on
        return [
            *found,  # what it found before it failed
            Message(
                id=entry.id,
                level=Level.ERROR,
                text=f"this check failed on the project ({type(exc).__name__}: {exc}), so it found nothing",
                hint=f"a defect in flaskprod check: report it with this line; --silence {entry.id} passes meanwhile",
                obj=context.app_label,
            )
        ]


def mark_silenced(messages: Iterable[Message], silenced: Iterable[str]) -> list[Message]:
    """The messages, those with a silenced ID marked so (not dropped: the summary counts them)."""
    quiet = frozenset(silenced)
    return [replace(m, silenced=True) if m.id in quiet else m for m in messages]


def parse_ids(values: Iterable[str], where: str) -> frozenset[str]:
    """Check IDs from values (each may hold several, comma or space separated), or a SpecError naming where."""
    ids = set()
    for value in values:
        for item in re.split(r"[,\s]+", value.strip()):
            if not item:
                continue
            normal = item.upper()
            if normal not in REGISTRY:
                close = difflib.get_close_matches(normal, REGISTRY, n=1)
                suggestion = f"did you mean {close[0]}?" if close else "see docs/checks.md for every ID"
                raise SpecError(f"unknown check ID {item!r} in {where}; {suggestion}")
            ids.add(normal)
    return frozenset(ids)
