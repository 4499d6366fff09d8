"""What the project's requirements install, read as pip reads them, before any target is written.

Every target runs `flaskprod serve`, so requirements that do not install flaskprod make an image
that builds and then fails as it starts. The image copies the requirements file alone before the
project (so the layer with the packages is cached), so the files it includes with `-r` or `-c`
must be copied beside it, at the same relative paths.
"""

from __future__ import annotations

import codecs
import configparser
import contextlib
import posixpath
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement

from ..errors import BuildError

FLASKPROD = "flaskprod"
# How a project names flaskprod so that an image can install it: it is not on PyPI, where a bare name finds nothing
# (or another project's package), and a path on this machine (`pip freeze`'s `-e /path` of a checkout) is not there.
FLASKPROD_REQUIREMENT = "flaskprod @ git+https://git.example.com/you/flaskprod.git@v0.1.0"
FLASKPROD_SOURCES = (
    f"flaskprod is not on PyPI, so name it as the image can download it: `{FLASKPROD_REQUIREMENT}` (your "
    "repository and tag), or flaskprod==VERSION from your own package index"
)
# What Flask runs an async view with: asgiref, which flask[async] installs; without it each such view answers 500.
ASYNC_PROVIDERS = frozenset({"asgiref", "flask[async]"})
# -r base.txt, -rbase.txt, --requirement base.txt, --requirement=base.txt; the same for -c.
_INCLUDE = re.compile(r"^(?:-([rc])\s*|--(requirement|constraint)(?:\s*=\s*|\s+))(\S+)")
_EDITABLE = re.compile(r"^(?:-e\s*|--editable(?:\s*=\s*|\s+))(\S+)")
# pip ends a requirement at its per-line options (--hash=..., --config-settings ...).
_LINE_OPTIONS = re.compile(r"\s--?[a-z]")
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9._-]+)")
# The VCS tools pip runs to check out a git+https://..., hg+..., svn+... or bzr+... URL, by their command's name.
VCS_TOOLS = frozenset({"git", "hg", "svn", "bzr"})
SSH_PORT = 22
# Poetry's `git = "git@github.com:org/lib.git"`: git's scp-like form of an SSH URL (user@host:path).
_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?([^/:@]+):(?!//)")

# A host pip reaches over SSH to check a VCS URL out (git+ssh://git@github.com/org/lib.git), and its port.
SshHost = tuple[str, int]


def canonical(name: str) -> str:
    """PEP 503: Flask_SQLAlchemy and flask-sqlalchemy are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


class LocalPathError(BuildError):
    """A requirement that installs from a path on this machine, which the image does not have: build refuses it,
    and check names it (FP-P011) with the same fix."""

    def __init__(self, file: str, line: int, problem: str, fix: str) -> None:
        super().__init__(f"{file} line {line}: {problem}; {fix}")
        self.file, self.line, self.problem, self.fix = file, line, problem, fix


@dataclass(frozen=True)
class Requirements:
    files: tuple[str, ...]  # the file and every file it includes, relative to the project, POSIX, in order
    names: frozenset[str]  # canonical names of the packages they install
    unnamed: tuple[str, ...]  # entries whose package cannot be named without installing them (a path, a URL)
    extras: frozenset[str] = frozenset()  # name[extra] for each extra they ask (flask[async])
    vcs: frozenset[str] = frozenset()  # the VCS tools pip runs to install them: git for `x @ git+https://...`
    ssh_hosts: frozenset[SshHost] = frozenset()  # the hosts of their VCS URLs over SSH (git+ssh://...)

    @property
    def includes(self) -> tuple[str, ...]:
        return self.files[1:]


def requirements_file(setting: str, root: Path) -> str | None:
    """The file deploy.requirements names, relative to root; None: the project installs from pyproject.toml."""
    if setting != "auto":
        if not (root / setting).is_file():
            raise BuildError(f"deploy.requirements: {setting} not found in {root}; fix the path")
        return setting
    if (root / "requirements.txt").is_file():
        return "requirements.txt"
    if (root / "pyproject.toml").is_file():
        return None
    raise BuildError(
        f"no requirements.txt or pyproject.toml in {root}: the image needs one to install the app's packages; "
        "write one (pip freeze > requirements.txt) or set deploy.requirements"
    )


def read_requirements(root: Path, path: str) -> Requirements:
    """Read `path` (relative to root) and what it includes; an include missing or outside root is a BuildError."""
    files: list[str] = []
    names: set[str] = set()
    unnamed: list[str] = []
    vcs: set[str] = set()
    ssh: set[SshHost] = set()
    _read(root.resolve(), PurePosixPath(path), files, names, unnamed, vcs, ssh)
    extras = frozenset(name for name in names if "[" in name)
    return Requirements(
        files=tuple(files),
        names=frozenset(names) - extras,
        unnamed=tuple(unnamed),
        extras=extras,
        vcs=frozenset(vcs),
        ssh_hosts=frozenset(ssh),
    )


def _read(
    root: Path,
    rel: PurePosixPath,
    files: list[str],
    names: set[str],
    unnamed: list[str],
    vcs: set[str],
    ssh: set[SshHost],
) -> None:
    if rel.as_posix() in files:
        return
    files.append(rel.as_posix())
    text = _decoded(root / rel, rel)
    for number, line in _logical_lines(text):
        if include := _INCLUDE.match(line):
            target = _inside(root, rel, include.group(3), number)
            if (include.group(1) or include.group(2))[0] == "c":
                # A constraint installs nothing, but pip must find the file.
                if target.as_posix() not in files:
                    files.append(target.as_posix())
                continue
            _read(root, target, files, names, unnamed, vcs, ssh)
        elif editable := _EDITABLE.match(line):
            _add(_not_local(editable.group(1), rel, number, root), names, unnamed, vcs, ssh)
        elif not line.startswith("-"):
            entry = _not_local(_LINE_OPTIONS.split(line, maxsplit=1)[0].strip(), rel, number, root)
            _add(entry, names, unnamed, vcs, ssh)


# pip's order (pip._internal.utils.encoding.auto_decode): a byte-order mark, then a coding line in the first two lines,
# then the locale's encoding, UTF-8 in the image. UTF-32's marks first: UTF-16 LE's is the start of UTF-32 LE's.
_BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF8, "utf-8-sig"),
)
_CODING = re.compile(rb"^#.*coding[:=]\s*([-\w.]+)")


def _decoded(path: Path, rel: PurePosixPath) -> str:
    """path's text as pip in the image reads it. Read as UTF-8 with replacements, a UTF-16 file (PowerShell's
    `pip freeze > requirements.txt`) gave no name at all, so build decided the image without the project's packages;
    a file pip cannot read fails the image's build, so it stops this one, naming the byte."""
    data = path.read_bytes()
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if encoding is None:
        coding = next((m for line in data.split(b"\n")[:2] if (m := _CODING.match(line))), None)
        encoding = coding.group(1).decode("ascii") if coding else "utf-8"
    try:
        return data.decode(encoding)
    except LookupError:
        raise BuildError(f"{rel}: its coding line names {encoding!r}, an encoding Python lacks; name another") from None
    except UnicodeDecodeError as exc:
        raise BuildError(
            f"{rel}: not {encoding} text (byte 0x{data[exc.start]:02x} at offset {exc.start}), as pip in the image "
            "reads it: save it as UTF-8"
        ) from None


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """pip's lines: comments (# at the start or after a space) removed, backslash continuations joined."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            lines.append((start, line))
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines


def _not_local(entry: str, including: PurePosixPath, number: int, root: Path) -> str:
    """entry, unless it installs from a folder or file on this machine: the image installs the requirements
    before it has the project, and never has what is outside it (`pip freeze` writes `-e /path` for an
    editable install)."""
    url = entry.split("@", 1)[1].strip() if re.match(r"^[A-Za-z0-9._-]+\s*(\[[^]]*\])?\s*@", entry) else entry
    if not (url in (".", "..") or url.startswith(("/", "./", "../", "~", "file:"))):
        return entry
    file = including.as_posix()
    if url in (".", "./"):
        raise LocalPathError(
            file,
            number,
            f"installs the project itself ({entry}), which the image copies only after the requirements",
            "drop the line (the app runs from /app), or install the project from its pyproject.toml by setting "
            "deploy.requirements to a file without it",
        )
    if _is_flaskprod_checkout(_local_folder(url, root)):
        raise LocalPathError(
            file,
            number,
            f"installs flaskprod's own checkout ({entry}) from a path on this machine, which the image does not have",
            FLASKPROD_SOURCES,
        )
    raise LocalPathError(
        file, number, f"installs {entry} from a path on this machine, which the image does not have", _local_fix(entry)
    )


def _local_folder(url: str, root: Path) -> Path:
    """The folder a local path or file: URL names (a relative one from the project, where pip runs)."""
    path = urlsplit(url).path if url.startswith("file:") else url.split("#", 1)[0]
    return (root / Path(path).expanduser()).resolve()


def _is_flaskprod_checkout(folder: Path) -> bool:
    """Whether folder holds a project named flaskprod (pyproject.toml's [project] name, or setup.cfg's
    [metadata]): `pip freeze` writes `-e /path` for README's `pip install -e` of flaskprod's checkout."""
    try:
        project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
        name = project.get("name") if isinstance(project, dict) else None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        name = None
    if name is None:
        config = configparser.ConfigParser(interpolation=None)
        with contextlib.suppress(OSError, UnicodeDecodeError, configparser.Error):
            config.read(folder / "setup.cfg", encoding="utf-8")
        name = config.get("metadata", "name", fallback=None)
    return isinstance(name, str) and canonical(name) == FLASKPROD


def _local_fix(entry: str) -> str:
    """How to name what a local path installs so the image can download it. A bare path names no package until pip
    builds it, and may be flaskprod's own checkout (pip freeze's `-e /path` after README's `pip install -e`), which
    no index but the user's own holds."""
    named = re.match(r"^([A-Za-z0-9._-]+)\s*(\[[^]]*\])?\s*@", entry) or _EGG.search(entry)
    if named and canonical(named.group(1)) == FLASKPROD:
        return FLASKPROD_SOURCES
    fix = "name the package with a version pip can download (e.g. name==1.2.3) or a VCS URL"
    return fix if named else f"{fix}; if it is flaskprod: {FLASKPROD_SOURCES}"


def _inside(root: Path, including: PurePosixPath, ref: str, number: int) -> PurePosixPath:
    """An included file, relative to the project: pip resolves it from the including file's folder."""
    where = f"{including.as_posix()} line {number}"
    if "://" in ref:
        raise BuildError(f"{where}: includes {ref} by URL; the image installs from files in the project, so copy it in")
    target = (root / including.parent / ref).resolve()
    try:
        rel = PurePosixPath(target.relative_to(root).as_posix())
    except ValueError:
        raise BuildError(
            f"{where}: includes {ref}, outside the project {root}; the image can only copy files under it, "
            "so move it in"
        ) from None
    climbs = posixpath.normpath(posixpath.join(including.parent.as_posix(), ref)).startswith("..")
    if ref.startswith(("/", "~")) or climbs:
        # The image copies each file to the same path under a folder of its own: a path that climbs out of the
        # project before it comes back in, or an absolute one, names nothing there.
        raise BuildError(
            f"{where}: includes {ref}, which the image's copy of the project would not find; write the path "
            f"relative to {including.as_posix()}'s folder, within the project"
        )
    if not target.is_file():
        raise BuildError(f"{where}: includes {ref}, which is not there; fix the path")
    return rel


def _named(requirement: Requirement) -> set[str]:
    """The package's canonical name, and name[extra] for each extra it asks (flask[async])."""
    name = canonical(requirement.name)
    return {name, *(f"{name}[{canonical(extra)}]" for extra in requirement.extras)}


def _url(entry: str) -> str:
    """The URL of a requirement (`x @ URL`) or a bare URL; "" for a requirement by name."""
    try:
        return (Requirement(entry).url or "").strip()
    except InvalidRequirement:
        return entry.strip()


def vcs_tool(entry: str) -> str | None:
    """The VCS tool pip runs to install entry (a requirement or a bare URL): git for `x @ git+https://...` or
    `git+ssh://...#egg=x`; None for a package from an index, an archive or a folder."""
    scheme = urlsplit(_url(entry)).scheme.lower()
    tool = scheme.split("+", 1)[0] if "+" in scheme else None
    return tool if tool in VCS_TOOLS else None


def ssh_host(entry: str) -> SshHost | None:
    """The host and port pip reaches over SSH to install entry: ("github.com", 22) for
    `x @ git+ssh://git@github.com/org/x.git` (hg+ssh and svn+ssh too); None for any other entry."""
    parts = urlsplit(_url(entry))
    tool, _, transport = parts.scheme.lower().partition("+")
    if tool not in VCS_TOOLS or transport != "ssh" or not parts.hostname:
        return None
    try:
        port = parts.port or SSH_PORT
    except ValueError:  # git+ssh://git@github.com:org/x.git, scp's colon in a URL: git refuses it and says so
        port = SSH_PORT
    return parts.hostname, port


def _poetry_ssh_host(source: str) -> SshHost | None:
    """The SSH host of a Poetry git source: `ssh://git@host/...` or git's `git@host:org/lib.git`."""
    if "://" in source:
        return ssh_host(f"git+{source}")
    scp = _SCP_LIKE.match(source)
    return (scp.group(1).lower(), SSH_PORT) if scp else None


def _add(entry: str, names: set[str], unnamed: list[str], vcs: set[str], ssh: set[SshHost]) -> None:
    """entry's names into names (name[extra] for each extra too), or entry into unnamed; its VCS tool into vcs,
    the host it checks out from over SSH into ssh."""
    if tool := vcs_tool(entry):
        vcs.add(tool)
    if host := ssh_host(entry):
        ssh.add(host)
    try:
        names.update(_named(Requirement(entry)))
        return
    except InvalidRequirement:
        pass
    # A direct reference: a URL or a path, to an archive, a checkout or a folder.
    if egg := _EGG.search(entry):
        names.add(canonical(egg.group(1)))
        return
    filename = PurePosixPath(urlsplit(entry).path).name
    if filename.endswith(".whl"):
        names.add(canonical(filename.split("-", 1)[0]))
    elif sdist := re.match(r"^(.+)-[0-9][^-]*\.(?:tar\.gz|zip|tar\.bz2)$", filename):
        names.add(canonical(sdist.group(1)))
    else:
        unnamed.append(entry)


def project_dependencies(pyproject: Path) -> frozenset[str] | None:
    """Canonical names of pyproject.toml's dependencies ([project] or Poetry's), with name[extra] for each extra
    asked; None when the file does not say. A BuildError for a file pip could not install the project from."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except OSError:
        return None
    except ValueError as exc:  # TOMLDecodeError, or bytes that are not UTF-8
        raise BuildError(
            f"{pyproject.name} is not valid TOML ({exc}); with no requirements file the image installs the project "
            "from it (pip install .): fix it"
        ) from None
    project = data.get("project")
    if isinstance(project, dict):
        if "dependencies" in project.get("dynamic", []):
            return None
        dependencies = project.get("dependencies", [])
        if not isinstance(dependencies, list):
            raise BuildError(
                f"{pyproject.name}: [project] dependencies is {dependencies!r}, not a list: write a list of "
                'requirements, such as dependencies = ["flask>=3", "flaskprod"]'
            )
        for entry in dependencies:
            if not isinstance(entry, str) or not _parses(entry):
                raise BuildError(
                    f"{pyproject.name}: [project] dependencies holds {entry!r}, which is no requirement pip can "
                    'install: write each as a quoted requirement, such as "flask>=3"'
                )
        return frozenset(name for entry in dependencies for name in _named(Requirement(entry)))
    tool = data.get("tool")
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    dependencies = poetry.get("dependencies") if isinstance(poetry, dict) else None
    if isinstance(dependencies, dict):
        return frozenset(name for key, value in dependencies.items() for name in _poetry_named(key, value))
    return None


def _poetry_named(name: str, value: object) -> set[str]:
    """A Poetry dependency's names: flask = {version = "^3", extras = ["async"]} asks flask[async] too."""
    extras = value.get("extras", []) if isinstance(value, dict) else []
    return {canonical(name), *(f"{canonical(name)}[{canonical(str(extra))}]" for extra in extras)}


def _parses(entry: str) -> bool:
    try:
        Requirement(entry)
    except InvalidRequirement:
        return False
    return True


def _project_sources(pyproject: Path) -> tuple[list[str], list[str]]:
    """What pip installs the project from pyproject.toml with: the requirements of its [project] dependencies and
    build requirements, and the URLs of Poetry's git sources (`git = "..."`); none for dependencies it leaves to
    the build backend, nor for a file that cannot be read (project_dependencies says what is wrong with it)."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], []
    entries: list[object] = []
    build_system, project, tools_table = (data.get(key) for key in ("build-system", "project", "tool"))
    for table in (build_system, project):
        if isinstance(table, dict):
            listed = table.get("requires" if table is build_system else "dependencies", [])
            entries.extend(listed if isinstance(listed, list) else [])
    git_sources: list[str] = []
    poetry = tools_table.get("poetry") if isinstance(tools_table, dict) else None
    dependencies = poetry.get("dependencies") if isinstance(poetry, dict) else None
    if isinstance(dependencies, dict):
        for value in dependencies.values():
            # One source, or a list of them (one per Python version or platform).
            for source in value if isinstance(value, list) else [value]:
                if isinstance(source, dict) and "git" in source:
                    git_sources.append(str(source["git"]))
    return [entry for entry in entries if isinstance(entry, str)], git_sources


def project_vcs(pyproject: Path) -> frozenset[str]:
    """The VCS tools pip runs to install the project from pyproject.toml: for its [project] dependencies, Poetry's
    (a `git = "..."` source) and its build requirements; none for dependencies it leaves to the build backend."""
    entries, git_sources = _project_sources(pyproject)
    tools = {found for entry in entries if (found := vcs_tool(entry))}
    return frozenset(tools | ({"git"} if git_sources else set()))


def project_ssh_hosts(pyproject: Path) -> frozenset[SshHost]:
    """The hosts pip reaches over SSH to install the project from pyproject.toml, as project_vcs reads it."""
    entries, git_sources = _project_sources(pyproject)
    hosts = {found for entry in entries if (found := ssh_host(entry))}
    return frozenset(hosts | {found for source in git_sources if (found := _poetry_ssh_host(source))})


def vcs_installed(root: Path, requirements: str | None) -> frozenset[str]:
    """The VCS tools (git, hg, svn, bzr) pip runs to install the project's requirements (or, for None,
    pyproject.toml's dependencies): a VCS URL is checked out with the tool of its scheme."""
    if requirements is None:
        return project_vcs(root / "pyproject.toml")
    return read_requirements(root, requirements).vcs


def ssh_hosts_installed(root: Path, requirements: str | None) -> frozenset[SshHost]:
    """The hosts pip reaches over SSH to install the project's requirements (or, for None, pyproject.toml's
    dependencies): github.com for `x @ git+ssh://git@github.com/org/x.git`, which needs the builder's SSH key."""
    if requirements is None:
        return project_ssh_hosts(root / "pyproject.toml")
    return read_requirements(root, requirements).ssh_hosts


def names_installed(root: Path, requirements: str | None) -> frozenset[str] | None:
    """Canonical names the project's requirements (or, for None, pyproject.toml's dependencies) install, with
    name[extra] for each extra asked; None when they cannot all be named (a local path, dynamic dependencies)."""
    if requirements is None:
        return project_dependencies(root / "pyproject.toml")
    found = read_requirements(root, requirements)
    return None if found.unnamed else found.names | found.extras


def lacks_asgiref(root: Path, requirements: str | None) -> bool:
    """Whether the project's requirements (or, for None, pyproject.toml's dependencies) surely install no asgiref,
    which Flask runs async views with: neither it nor flask[async]. An entry that cannot be named might: no."""
    names = names_installed(root, requirements)
    return names is not None and names.isdisjoint(ASYNC_PROVIDERS)


def lacks_flaskprod(root: Path, found: Requirements | None) -> bool:
    """Whether the requirements read (or, for None, pyproject.toml's dependencies) surely leave flaskprod out.

    An entry that cannot be named (a local path) might be flaskprod: the benefit of the doubt.
    """
    if found is None:
        names = project_dependencies(root / "pyproject.toml")
        return names is not None and FLASKPROD not in names
    return FLASKPROD not in found.names and not found.unnamed


def require_flaskprod(root: Path, requirements: str | None) -> Requirements | None:
    """The project's requirements, refused (one line, with the fix) when they surely do not install flaskprod."""
    found = read_requirements(root, requirements) if requirements is not None else None
    if not lacks_flaskprod(root, found):
        return found
    if requirements is None:
        raise BuildError(
            "pyproject.toml's dependencies do not include flaskprod, which every target runs (`flaskprod serve`): "
            f"add it to them; {FLASKPROD_SOURCES}"
        )
    raise BuildError(
        f"{requirements} does not install flaskprod, which every target runs (`flaskprod serve`): add a line for "
        f"it; {FLASKPROD_SOURCES}"
    )


def async_without_asgiref(views: tuple[str, ...] | list[str], where: str) -> str:
    """What is wrong with async views the requirements in where give no asgiref to, and the fix."""
    shown = ", ".join(views[:3]) + (f" and {len(views) - 3} more" if len(views) > 3 else "")
    return (
        f"the app has async views ({shown}), which Flask runs with asgiref, and {where} installs none: each "
        "answers 500 (\"Install Flask with the 'async' extra in order to use async views\"); write flask[async] "
        "there instead of flask, or add asgiref"
    )


def refuse_async_without_asgiref(views: tuple[str, ...], root: Path, requirements: str | None) -> None:
    """A BuildError when the app has async views and the requirements surely install no asgiref."""
    if views and lacks_asgiref(root, requirements):
        raise BuildError(async_without_asgiref(views, requirements or "pyproject.toml"))
