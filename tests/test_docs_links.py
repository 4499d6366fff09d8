"""The README and docs/ link only to files and headings that exist: the docs cite measurements by link."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from tests.support import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def prose(page: Path) -> str:
    """The page without its code blocks, whose `# comments` are not headings and whose text is not links."""
    return FENCE.sub("", page.read_text())


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@functools.cache  # a page is linked many times over; read its headings once
def anchors(page: Path) -> frozenset[str]:
    return frozenset(anchor(h) for h in HEADING.findall(prose(page)))


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(prose(page)):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no such heading")
    return broken


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Turns for the lock: `server.fair_gil = true`\n```sh\n# a comment\n```\n")
    page.write_text(
        "# Here\n[ok](other.md#turns-for-the-lock-serverfair_gil--true) [self](#here)\n"
        "[gone](missing.md) [heading](other.md#nowhere) [web](https://example.com/x) [code](other.md#a-comment)\n"
        "```md\n[not a link](missing.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#nowhere: no such heading",
        "other.md#a-comment: no such heading",
    ]
