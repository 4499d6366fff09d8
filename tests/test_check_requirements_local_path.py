"""FP-P011 names a requirements line that installs from a path on this machine (`-e /path/to/checkout`, which
`pip freeze` writes after README's `pip install -e`), which `flaskprod build` refuses: check was quiet about it, so
the project passed check and then failed build. Its fix is build's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from flaskprod.errors import BuildError
from flaskprod.render.requirements import FLASKPROD_SOURCES, read_requirements
from tests import test_check
from tests.test_check import PROD, audit

project = test_check.project  # the fixture: tmp_path as the current directory, a strong FLASK_SECRET_KEY


def build_refusal(root: Path) -> str:
    """What `flaskprod build` says of the project's requirements.txt."""
    with pytest.raises(BuildError) as refused:
        read_requirements(root, "requirements.txt")
    return str(refused.value)


@pytest.mark.parametrize(
    ("line", "entry"),
    [
        ("-e /home/me/src/flaskprod", "/home/me/src/flaskprod"),  # pip freeze's, flaskprod among the rest
        ("-e ../sdk", "../sdk"),
        ("-e .", "."),
    ],
)
def test_a_local_path_build_refuses_is_named_with_builds_fix(project: Path, line: str, entry: str) -> None:
    found = audit(project, {"app.py": PROD, "requirements.txt": f"flask==3.0.3\n{line}\nflaskprod\n"}).only("FP-P011")
    assert [(m["obj"], m["level"]) for m in found] == [("requirements.txt:2", "ERROR")]
    (message,) = found
    refusal = build_refusal(project)
    problem, fix = refusal.removeprefix("requirements.txt line 2: ").split("; ", 1)
    assert entry in problem
    assert message["text"] == f"{problem}: `flaskprod build` refuses it"
    assert message["hint"] == fix


def test_flaskprods_own_checkout_gets_the_way_to_name_flaskprod(project: Path) -> None:
    files = {"app.py": PROD, "requirements.txt": "flask\n-e /home/me/src/flaskprod\n"}
    assert audit(project, files).only("FP-P011")[0]["hint"].endswith(f"if it is flaskprod: {FLASKPROD_SOURCES}")
    named = {"requirements.txt": "flask\nflaskprod @ file:///home/me/src/flaskprod\n"}
    assert audit(project, named).only("FP-P011")[0]["hint"] == FLASKPROD_SOURCES


def test_a_requirement_the_image_can_download_is_not_named(project: Path) -> None:
    files = {"app.py": PROD, "requirements.txt": "flask\nflaskprod @ git+https://git.example.com/you/flaskprod.git\n"}
    assert audit(project, files).only("FP-P011") == []
