"""The requirements a deployment installs: read as pip reads them, refused when they lack flaskprod,
and laid out in the image where pip looks for the files they include."""

from __future__ import annotations

import codecs
import dataclasses
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from pip._internal.network.session import PipSession
from pip._internal.req.req_file import parse_requirements

from flaskprod.errors import BuildError
from flaskprod.render.image import dockerfile
from flaskprod.render.requirements import FLASKPROD_SOURCES, canonical, read_requirements, require_flaskprod

from .buildkit import make_deployment

# Everything pip accepts on a line that names a package, and the lines that name none.
TRICKY = """\
# a comment line
--index-url https://pypi.org/simple
--extra-index-url=https://example.com/simple
-f ./wheels
Flask_SQLAlchemy>=3.1   # trailing comment
flaskprod[uwsgi] >=0.1 ; python_version >= "3.11" \\
    --hash=sha256:0123456789abcdef
requests==2.32.3 --hash=sha256:aaaa --hash=sha256:bbbb
mylib @ https://example.com/mylib-1.0.tar.gz
https://example.com/wheels/Other_Pkg-2.0-py3-none-any.whl
https://example.com/archives/some-tool-1.4.2.tar.gz
-e git+https://example.com/repo.git#egg=editable-one
--editable=git+https://example.com/two.git@main#subdirectory=x&egg=editable_two
-rbase.txt
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def pips_names(path: Path) -> set[str]:
    """What pip itself reads from the file (includes followed), named where the line names a package."""
    names = set()
    for parsed in parse_requirements(str(path), session=PipSession()):
        text = parsed.requirement
        if egg := re.search(r"[#&]egg=([\w.-]+)", text):
            names.add(canonical(egg.group(1)))
        elif parsed.is_editable or "/" in text.split("@")[0]:
            continue
        else:
            names.add(canonical(Requirement(text).name))
    return names


def test_the_names_are_those_pip_reads(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": TRICKY, "base.txt": "gunicorn\n"})
    found = read_requirements(tmp_path, "requirements.txt")
    assert found.names == {
        "flask-sqlalchemy", "flaskprod", "requests", "mylib", "other-pkg", "some-tool", "editable-one",
        "editable-two", "gunicorn",
    }
    assert found.unnamed == ()
    assert found.files == ("requirements.txt", "base.txt")
    # pip, reading the same files, finds every name that a line spells out (archives it names only by downloading).
    assert pips_names(tmp_path / "requirements.txt") <= found.names
    assert pips_names(tmp_path / "requirements.txt") >= found.names - {"other-pkg", "some-tool"}


def test_includes_are_followed_from_the_including_files_folder(tmp_path: Path) -> None:
    write(tmp_path, {
        "requirements/prod.txt": "-r base.txt\n--constraint ../constraints.txt\n",
        "requirements/base.txt": "flask\n-r common/more.txt\n-r prod.txt\n",
        "requirements/common/more.txt": "flaskprod\n",
        "constraints.txt": "flask<4\n",
    })
    found = read_requirements(tmp_path, "requirements/prod.txt")
    # Each file once, even when they include each other; a constraint is read by pip but installs nothing.
    assert found.files == (
        "requirements/prod.txt", "requirements/base.txt", "requirements/common/more.txt", "constraints.txt",
    )
    assert found.includes == found.files[1:]
    assert found.names == {"flask", "flaskprod"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-r missing.txt", "requirements.txt line 2: includes missing.txt, which is not there; fix the path"),
        ("-r ../outside.txt", "requirements.txt line 2: includes ../outside.txt, outside the project"),
        ("-c https://example.com/c.txt", "requirements.txt line 2: includes https://example.com/c.txt by URL"),
    ],
)
def test_an_include_the_image_cannot_copy_is_named_with_its_line(tmp_path: Path, line: str, message: str) -> None:
    project = tmp_path / "p"
    write(project, {"requirements.txt": f"flaskprod\n{line}\n"})
    (tmp_path / "outside.txt").write_text("flask\n")
    with pytest.raises(BuildError) as caught:
        read_requirements(project, "requirements.txt")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_requirements_without_flaskprod_are_refused_with_the_fix(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "flask\ngunicorn\n# flaskprod\nflaskprod-extras\n"})
    with pytest.raises(BuildError) as caught:
        require_flaskprod(tmp_path, "requirements.txt")
    assert str(caught.value) == (
        "requirements.txt does not install flaskprod, which every target runs (`flaskprod serve`): "
        f"add a line for it; {FLASKPROD_SOURCES}"
    )


def test_an_entry_that_cannot_be_named_gets_the_benefit_of_the_doubt(tmp_path: Path) -> None:
    # A checkout could be anything, flaskprod included, until pip builds it.
    write(tmp_path, {"requirements.txt": "flask\ngit+https://example.com/sdk.git\n"})
    found = require_flaskprod(tmp_path, "requirements.txt")
    assert found is not None and found.unnamed == ("git+https://example.com/sdk.git",)


LOCAL = "installs {entry} from a path on this machine, which the image does not have; name the package"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-e /work/flaskprod", LOCAL.format(entry="/work/flaskprod")),  # what pip freeze writes for -e
        ("./vendor/sdk", LOCAL.format(entry="./vendor/sdk")),
        ("../sdk", LOCAL.format(entry="../sdk")),
        ("--editable=~/src/lib", LOCAL.format(entry="~/src/lib")),
        ("lib @ file:///opt/lib", LOCAL.format(entry="lib @ file:///opt/lib")),
        ("-e .", "installs the project itself (.), which the image copies only after the requirements"),
        ("-r {project}/base.txt", "includes {project}/base.txt, which the image's copy of the project would not"),
        ("-r ../p/base.txt", "includes ../p/base.txt, which the image's copy of the project would not find"),
    ],
)
def test_what_only_this_machine_has_is_refused_with_its_line(tmp_path: Path, line: str, message: str) -> None:
    project = tmp_path / "p"
    line, message = line.format(project=project), message.format(project=project)  # an absolute path inside it
    write(project, {"requirements.txt": f"flaskprod\n{line}\n", "base.txt": "flask\n"})
    with pytest.raises(BuildError) as caught:
        read_requirements(project, "requirements.txt")
    assert str(caught.value).startswith(f"requirements.txt line 2: {message}")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("pyproject", "refused"),
    [
        ('[project]\nname = "shop"\ndependencies = ["flask"]\n', True),
        ('[project]\nname = "shop"\n', True),
        ('[project]\nname = "shop"\ndependencies = ["flask", "FlaskProd[uwsgi]>=0.1"]\n', False),
        ('[project]\nname = "shop"\ndynamic = ["dependencies"]\n', False),
        ('[tool.poetry.dependencies]\npython = "^3.11"\nflask = "^3"\n', True),
        ('[tool.poetry.dependencies]\npython = "^3.11"\nflaskprod = "*"\n', False),
        ("[tool.ruff]\nline-length = 120\n", False),
    ],
)
def test_a_pyproject_without_flaskprod_is_refused(tmp_path: Path, pyproject: str, refused: bool) -> None:
    write(tmp_path, {"pyproject.toml": pyproject})
    if refused:
        with pytest.raises(BuildError, match=r"^pyproject.toml's dependencies do not include flaskprod"):
            require_flaskprod(tmp_path, None)
    else:
        assert require_flaskprod(tmp_path, None) is None


@pytest.mark.parametrize(
    ("pyproject", "said"),
    [
        # Each was a TypeError traceback from build and from check (str(entry) was parsed, entry itself named).
        ('[project]\nname = "shop"\ndependencies = [1, 2]\n', "[project] dependencies holds 1, which is no "),
        ('[project]\nname = "shop"\ndependencies = ["flaskprod", "not a req!!"]\n', "holds 'not a req!!', which"),
        ('[project]\nname = "shop"\ndependencies = "flaskprod"\n', "[project] dependencies is 'flaskprod', not a"),
        # Taken, before, as "does not say", and built into an image whose pip install fails.
        ("[project\nname = 'shop'\n", "pyproject.toml is not valid TOML (Expected ']' at the end of a table"),
        ('tool = "x"\n', None),  # no table of dependencies: does not say, as before
    ],
)
def test_a_pyproject_pip_cannot_install_from_is_named_in_one_line(
    tmp_path: Path, pyproject: str, said: str | None
) -> None:
    write(tmp_path, {"pyproject.toml": pyproject})
    if said is None:
        assert require_flaskprod(tmp_path, None) is None
        return
    with pytest.raises(BuildError) as caught:
        require_flaskprod(tmp_path, None)
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_the_image_copies_every_file_pip_reads_to_where_pip_looks(tmp_path: Path) -> None:
    project = tmp_path / "p"
    d = make_deployment(project)
    write(project, {
        "requirements/prod.txt": "-r base.txt\n-c ../constraints.txt\n",
        "requirements/base.txt": "flask\nflaskprod\n",
        "constraints.txt": "flask<4\n",
    })
    found = read_requirements(project, "requirements/prod.txt")
    d = dataclasses.replace(
        d, project=dataclasses.replace(d.project, requirements=found.files[0], requirement_includes=found.includes)
    )
    text = dockerfile(d)
    # Lay the build stage's COPYs out under an image root, then let pip read the file its RUN names.
    image = tmp_path / "image"
    for source, dest in re.findall(r"^COPY (\S+) (/tmp/requirements/\S+)$", text, re.MULTILINE):
        target = image / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((project / source).read_bytes())
    run = re.search(r"^RUN pip install --no-cache-dir -r (\S+)", text, re.MULTILINE)
    assert run is not None, text
    assert pips_names(image / run.group(1).lstrip("/")) == {"flask", "flaskprod"}


ENCODED = "# café: the team's pins\nflask>=3.0\nflaskprod[uwsgi]\npsycopg2-binary\n"


@pytest.mark.parametrize(
    "data",
    [
        ENCODED.encode("utf-16"),  # PowerShell 5's `pip freeze > requirements.txt`: a BOM, then UTF-16 LE
        codecs.BOM_UTF16_BE + ENCODED.encode("utf-16-be"),
        ENCODED.encode("utf-32"),
        ENCODED.encode("utf-8-sig"),
        ("# -*- coding: latin-1 -*-\n" + ENCODED).encode("latin-1"),
    ],
    ids=["utf-16-le", "utf-16-be", "utf-32", "utf-8-bom", "coding-line"],
)
def test_a_file_in_another_encoding_is_read_as_pip_reads_it(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "requirements.txt").write_bytes(data)
    found = read_requirements(tmp_path, "requirements.txt")
    assert found.names == {"flask", "flaskprod", "psycopg2-binary"} == pips_names(tmp_path / "requirements.txt")
    assert found.unnamed == ()


def test_a_file_pip_cannot_read_is_refused_naming_the_byte(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_bytes(ENCODED.encode("latin-1"))  # no mark, no coding line
    with pytest.raises(BuildError) as refused:
        read_requirements(tmp_path, "requirements.txt")
    assert str(refused.value) == (
        "requirements.txt: not utf-8 text (byte 0xe9 at offset 5), as pip in the image reads it: save it as UTF-8"
    )
    with pytest.raises(Exception, match="codec can't decode byte 0xe9"):  # pip fails on it too
        pips_names(tmp_path / "requirements.txt")
