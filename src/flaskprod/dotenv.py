"""The dotenv files `flask run` loads, read as python-dotenv reads them: flaskprod takes FLASK_APP from them, names a
setting only they hold when the app fails without it, and check (FP-C019) names what a deployment will not get, as
production servers load none."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# In python-dotenv's order as Flask loads them (a value already set wins, so .env before .flaskenv).
FILES = (".env", ".flaskenv")

# python-dotenv's grammar (dotenv/parser.py): `export`, a quoted or bare key, `=`, a value in single quotes, in
# double quotes (which may span lines) or bare up to a ` #` comment; a line it cannot parse is skipped.
_SPACE = r"[^\S\r\n]*"
_BINDING = re.compile(
    rf"{_SPACE}(?:export[^\S\r\n]+)?(?:'(?P<quoted_key>[^']+)'|(?P<key>[^=\#\s]+)){_SPACE}"
    rf"""(?:(?P<equals>=){_SPACE}(?:'(?P<single>(?:\\'|[^'])*)'|"(?P<double>(?:\\"|[^"])*)"|(?P<bare>[^\r\n]*)))?"""
)
_END = re.compile(rf"(?:{_SPACE}#[^\r\n]*)?{_SPACE}(?:\r\n|\n|\r|$)")
_REST_OF_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)?")
_BLANK = re.compile(r"\s*")


@dataclass(frozen=True, kw_only=True)
class Binding:
    line: int
    name: str
    value: str | None  # NAME=... sets it (to "" too); a bare NAME sets nothing (python-dotenv's None)

    @property
    def set(self) -> bool:
        return self.value is not None


def bindings(text: str) -> Iterator[Binding]:
    """The variables a dotenv file binds, in order, as python-dotenv parses it (check's messages name them, never
    their values)."""
    position = 0
    while position < len(text):
        position = _BLANK.match(text, position).end()  # type: ignore[union-attr]  # \s* always matches
        if position >= len(text):
            return
        line = text.count("\n", 0, position) + 1
        binding = None if text.startswith("#", position) else _BINDING.match(text, position)
        end = None if binding is None else _END.match(text, binding.end())
        if binding is None or end is None:
            position = _REST_OF_LINE.match(text, position).end()  # type: ignore[union-attr]
            continue
        position = end.end()
        name = binding["quoted_key"] or binding["key"]
        if binding["single"] is not None:
            value: str | None = re.sub(r"\\([\\'])", r"\1", binding["single"])
        elif binding["double"] is not None:
            value = re.sub(r'\\(["\\])', r"\1", binding["double"])
        elif binding["equals"] is not None:
            value = re.sub(r"\s+#.*", "", binding["bare"] or "").strip()
        else:
            value = None
        yield Binding(line=line, name=name, value=value)


def value_in(path: Path, name: str) -> str | None:
    """name's value in the dotenv file at path (the last binding wins, as python-dotenv's dict), or None."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = None
    for binding in bindings(text):
        if binding.name == name:
            found = binding.value
    return found
