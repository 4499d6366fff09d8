"""Dockerfiles as the checks read them: each instruction whole (its continued lines joined), with its stage."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from .context import Context, ProjectFile, deployment_files

NAMES = ("Dockerfile*", "Containerfile*", "*.dockerfile")

_FROM = re.compile(r"FROM\s+(?:--\S+\s+)*(?P<base>\S+)(?:\s+AS\s+(?P<stage>\S+))?", re.IGNORECASE)
_INSTRUCTION = re.compile(r"(?P<keyword>[A-Za-z]+)\s+(?P<arguments>.*)", re.DOTALL)


@dataclass(frozen=True, kw_only=True)
class Instruction:
    line: int  # where it starts
    keyword: str  # upper case: FROM, RUN, ENV, COPY, ...
    arguments: str
    stage: str  # the name of the stage it is in ("" when unnamed); a FROM's is the stage it starts
    base: str = ""  # a FROM's image or earlier stage


def dockerfiles(context: Context) -> Iterator[ProjectFile]:
    """The project's Dockerfiles but those named for development (Dockerfile.dev)."""
    return deployment_files(context.files_named(*NAMES))


def is_dockerfile(item: ProjectFile) -> bool:
    return any(item.path.match(pattern) for pattern in NAMES)


def instructions(item: ProjectFile) -> Iterator[Instruction]:
    """The Dockerfile's instructions in order, comments and blank lines left out."""
    stage = ""
    for line, text in item.logical_lines():
        match = _INSTRUCTION.match(text.strip())
        if match is None or text.lstrip().startswith("#"):
            continue
        keyword, arguments = match["keyword"].upper(), match["arguments"]
        base = ""
        if keyword == "FROM" and (start := _FROM.match(text.strip())):
            stage, base = start["stage"] or "", start["base"]
        yield Instruction(line=line, keyword=keyword, arguments=arguments, stage=stage, base=base)
