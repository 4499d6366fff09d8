"""Compose files read as YAML: which of their lines belong to a service only development profiles start."""

from __future__ import annotations

import yaml

from .context import ProjectFile, for_development


def development_lines(item: ProjectFile) -> set[int]:
    """Lines (from 1) of the services whose `profiles:` are all development's (dev, local, debug, test...):
    `docker compose up` starts them only when one of those profiles is asked for, as a dev-named file is
    only read when it is named. Empty when the file does not parse."""
    try:
        root = yaml.compose(item.text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(item.text)  # the values, with anchors and merge keys resolved
    except yaml.YAMLError:
        return set()
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        return set()
    services = data.get("services")
    node = next((value for key, value in root.value if key.value == "services"), None)
    if not isinstance(services, dict) or not isinstance(node, yaml.MappingNode):
        return set()
    lines: set[int] = set()
    for key, value in node.value:
        service = services.get(key.value)
        profiles = service.get("profiles") if isinstance(service, dict) else None
        if isinstance(profiles, list) and profiles and all(for_development(str(p)) for p in profiles):
            # end_mark is where the next key starts: the line before it, counted from 1, is the service's last.
            lines.update(range(key.start_mark.line + 1, max(value.end_mark.line, key.start_mark.line + 1) + 1))
    return lines


def env_files(item: ProjectFile) -> list[str]:
    """The files (as written, relative to the Compose file) that `env_file:` gives a service not only development
    profiles start: `env_file: .env`, a list of names, or of {path: ..., required: false}. Empty when the file does
    not parse."""
    try:
        data = yaml.safe_load(item.text)
    except yaml.YAMLError:
        return []
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        return []
    found: list[str] = []
    for service in services.values():
        if not isinstance(service, dict):
            continue
        profiles = service.get("profiles")
        if isinstance(profiles, list) and profiles and all(for_development(str(p)) for p in profiles):
            continue  # as development_lines leaves it out
        given = service.get("env_file")
        for entry in given if isinstance(given, list) else [given]:
            path = entry.get("path") if isinstance(entry, dict) else entry
            found += [path] if isinstance(path, str) and path else []
    return found
