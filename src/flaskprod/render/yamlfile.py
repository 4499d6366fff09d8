"""YAML as the deployment files carry it: built as data, dumped in block style with a comment header."""

from __future__ import annotations

from typing import Any, Literal

import yaml


class _Dumper(yaml.SafeDumper):
    """Indents a list under its key, as kubectl, yamllint and people write it."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


class Script(str):
    """A shell script in a YAML file: dumped as a literal block, its lines as written."""

    __slots__ = ()


def _literal(dumper: yaml.SafeDumper, data: Script) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style="|")


_Dumper.add_representer(Script, _literal)


def dump_yaml(data: Any, header: str = "") -> str:
    """data as YAML (keys in the order built), after header's lines as comments."""
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)
    return lines + body


def generated_header(name: str, extra: str = "", *, by: Literal["build", "up"] = "build") -> str:
    """The header every generated YAML file opens with: where it came from and how to change it."""
    again = "build again" if by == "build" else "send `flaskprod up` a SIGHUP"
    text = (
        f"{name}: written by `flaskprod {by}` from the spec; change flaskprod.toml and {again}\n"
        "rather than editing this file."
    )
    return f"{text}\n{extra}" if extra else text
