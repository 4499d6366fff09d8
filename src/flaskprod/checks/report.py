"""How `flaskprod check` shows its messages: text grouped by level as Django does, or JSON; and its exit code."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .registry import Level, Message

_GROUPS = {
    Level.CRITICAL: "CRITICALS",
    Level.ERROR: "ERRORS",
    Level.WARNING: "WARNINGS",
    Level.INFO: "INFOS",
    Level.DEBUG: "DEBUGS",
}


def visible(messages: Sequence[Message]) -> list[Message]:
    """The messages that are not silenced, most severe first; within a level by ID, then by file and line."""
    shown = [m for m in messages if not m.silenced]
    return sorted(shown, key=lambda m: (-m.level, m.id, *_place(m.obj)))


def _place(obj: str) -> tuple[str, int]:
    """("app.py", 23) for "app.py:23", so that line 9 comes before line 10; (obj, 0) for a place with no line."""
    name, _, line = obj.rpartition(":")
    return (name, int(line)) if name and line.isdigit() else (obj, 0)


def exit_code(messages: Sequence[Message], fail_level: Level) -> int:
    """1 when a message that is not silenced is at fail_level or above, else 0."""
    return 1 if any(m.level >= fail_level for m in visible(messages)) else 0


def _summary_line(messages: Sequence[Message]) -> str:
    shown = len(visible(messages))
    silenced = len(messages) - shown
    counted = "no issues" if shown == 0 else "1 issue" if shown == 1 else f"{shown} issues"
    return f"System check identified {counted} ({silenced} silenced)."


def format_line(message: Message) -> str:
    return f"{message.id}  {message.level.name}  {message.obj}: {message.text}  HINT: {message.hint}"


def as_text(messages: Sequence[Message]) -> str:
    """Django's layout: a heading per level, one line per message, and the count with the silenced ones."""
    shown = visible(messages)
    if not shown:
        return _summary_line(messages)
    lines = ["System check identified some issues:"]
    for level, heading in _GROUPS.items():
        group = [m for m in shown if m.level == level]
        if group:
            lines += ["", f"{heading}:", *(format_line(m) for m in group)]
    lines += ["", _summary_line(messages)]
    return "\n".join(lines)


def as_json(messages: Sequence[Message], fail_level: Level) -> str:
    """{"messages": [{id, level, text, hint, obj}], "summary": {...}}, the messages most severe first."""
    shown = visible(messages)
    rows: list[dict[str, Any]] = [
        {"id": m.id, "level": m.level.name, "text": m.text, "hint": m.hint, "obj": m.obj} for m in shown
    ]
    summary = {
        "issues": len(shown),
        "silenced": len(messages) - len(shown),
        "by_level": {level.name: sum(1 for m in shown if m.level == level) for level in reversed(Level)},
        "fail_level": fail_level.name,
        "failed": exit_code(messages, fail_level) != 0,
    }
    return json.dumps({"messages": rows, "summary": summary}, indent=2)
