"""nginx configuration as the checks read it: directives with their line and the blocks they are in, as nginx
parses them, so that `location / { proxy_pass ...; }` on one line is found and a header set in one server is
not taken for another's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .context import ProjectFile


@dataclass(frozen=True, kw_only=True)
class Directive:
    """One directive: its name and arguments (quotes removed), the line it starts on, and its block's directives
    when it opens one (server, location, http...)."""

    line: int
    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...] | None = None

    @property
    def text(self) -> str:
        """The directive as written on one line: `proxy_pass http://app:8000`."""
        return " ".join((self.name, *self.args))


@dataclass
class _Open:
    """A block being read: the directive that opened it, and its directives so far."""

    name: str
    args: tuple[str, ...]
    line: int
    body: list[Directive] = field(default_factory=list)


def _tokens(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line, token, quoted) of each word, and of `;`, `{` and `}`; comments dropped. `${var}` stays in its word."""
    line, i, n = 1, 0, len(text)
    while i < n:
        char = text[i]
        if char == "\n":
            line += 1
            i += 1
        elif char.isspace():
            i += 1
        elif char == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif char in ";{}":
            yield line, char, False
            i += 1
        elif char in "\"'":
            start, i, word = line, i + 1, []
            while i < n and text[i] != char:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                line += text[i] == "\n"
                word.append(text[i])
                i += 1
            i += 1
            yield start, "".join(word), True
        else:
            start, word = line, []
            while i < n and not text[i].isspace() and text[i] not in ";{}\"'":
                if text[i] == "$" and text[i + 1 : i + 2] == "{":  # ${var}: its braces are the word's
                    end = text.find("}", i)
                    end = n - 1 if end < 0 else end
                    word.append(text[i : end + 1])
                    i = end + 1
                    continue
                if text[i] == "\\" and i + 1 < n:
                    word.append(text[i])
                    i += 1
                word.append(text[i])
                i += 1
            yield start, "".join(word), False


def parse(text: str) -> tuple[Directive, ...]:
    """The top-level directives of an nginx configuration. Never fails: a file nginx would refuse (a `}` too many,
    a block left open, a directive without its `;`) is read as far as it goes."""
    stack = [_Open(name="", args=(), line=0)]
    words: list[str] = []
    start = 0
    for line, token, quoted in _tokens(text):
        if quoted or token not in ";{}":
            start = start if words else line
            words.append(token)
        elif token == ";":
            if words:
                stack[-1].body.append(Directive(line=start, name=words[0], args=tuple(words[1:])))
            words = []
        elif token == "{":
            stack.append(_Open(name=words[0] if words else "", args=tuple(words[1:]), line=start if words else line))
            words = []
        else:  # "}"
            if words:  # a last directive without its ";"
                stack[-1].body.append(Directive(line=start, name=words[0], args=tuple(words[1:])))
                words = []
            if len(stack) > 1:
                _close(stack)
    if words:  # the file ends inside a directive
        stack[-1].body.append(Directive(line=start, name=words[0], args=tuple(words[1:])))
    while len(stack) > 1:
        _close(stack)
    return tuple(stack[0].body)


def _close(stack: list[_Open]) -> None:
    done = stack.pop()
    stack[-1].body.append(Directive(line=done.line, name=done.name, args=done.args, block=tuple(done.body)))


Blocks = tuple[Directive, ...]  # the blocks a directive is in, outermost first


def walk(directives: tuple[Directive, ...], outer: Blocks = ()) -> Iterator[tuple[Directive, Blocks]]:
    """Every directive, in the order written, with the blocks it is in."""
    for directive in directives:
        yield directive, outer
        if directive.block is not None:
            yield from walk(directive.block, (*outer, directive))


def directives(item: ProjectFile) -> tuple[tuple[Directive, Blocks], ...]:
    """Every directive of an nginx file with the blocks it is in, parsed once per file."""
    parsed: tuple[tuple[Directive, Blocks], ...] | None = item.__dict__.get("_nginx")
    if parsed is None:  # kept beside the file's cached text (a frozen dataclass: its __dict__, as cached_property)
        parsed = item.__dict__["_nginx"] = tuple(walk(parse(item.text)))
    return parsed


def named(item: ProjectFile, name: str) -> Iterator[tuple[int, str]]:
    """(line, text) of each directive called name in the file."""
    for directive, _ in directives(item):
        if directive.name == name:
            yield directive.line, directive.text


def levels(item: ProjectFile, outer: Blocks) -> list[tuple[Directive, ...]]:
    """The directives of each level a directive in the blocks outer sees, innermost first: its own block's, then
    each enclosing block's, then the file's top level. An array directive (proxy_set_header, add_header) applies
    from the innermost level that has one, and none from the levels beyond it, as nginx inherits them."""
    top = tuple(directive for directive, blocks in directives(item) if not blocks)
    return [*(block.block or () for block in reversed(outer)), top]
