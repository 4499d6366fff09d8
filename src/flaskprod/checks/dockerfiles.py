"""Dockerfiles as the checks read them: each instruction whole (its continued lines joined), with its stage."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from .context import Context, ProjectFile, deployment_files

NAMES = ("Dockerfile*", "Containerfile*", "*.dockerfile")

_FROM = re.compile(r"FROM\s+(?:--\S+\s+)*(?P<base>\S+)(?:\s+AS\s+(?P<stage>\S+))?", re.IGNORECASE)
_INSTRUCTION = re.compile(r"(?P<keyword>[A-Za-z]+)\s+(?P<arguments>.*)", re.DOTALL)
# A heredoc's start, <<EOF, <<-EOF, <<"EOF": not a shell's here-string (<<<).
_HEREDOC = re.compile(r"""(?<!<)<<(?!<)(-?)(["']?)(\w+)\2""")


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
    """The Dockerfile's instructions in order, as Docker reads them: a continued one whole, with the comment and
    empty lines inside it dropped; comments, and the bodies of heredocs (COPY <<EOF, RUN <<EOF), left out."""
    stage = ""
    lines = iter(item.lines())
    start, parts = 0, list[str]()
    for line, text in lines:
        if not text.strip() or text.lstrip().startswith("#"):
            continue  # between instructions, or inside a continued one: Docker drops both
        start = start or line
        if text.rstrip().endswith("\\"):
            parts.append(text.rstrip()[:-1])
            continue
        joined = " ".join([*parts, text]).strip()
        begun, start, parts = start, 0, []
        for dash, _, word in _HEREDOC.findall(joined):
            for _, body in lines:  # the body, up to its word alone on a line (tabs before it, after <<-)
                if (body.lstrip("\t") if dash else body).rstrip() == word:
                    break
        match = _INSTRUCTION.match(joined)
        if match is None:
            continue
        keyword, arguments = match["keyword"].upper(), match["arguments"]
        base = ""
        if keyword == "FROM" and (begins := _FROM.match(joined)):
            stage, base = begins["stage"] or "", begins["base"]
        yield Instruction(line=begun, keyword=keyword, arguments=arguments, stage=stage, base=base)
