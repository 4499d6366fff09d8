"""A requirements line that installs flaskprod's own checkout from a path (`pip freeze`'s `-e /path` after README's
`pip install -e`): build's refusal and FP-P011 said only 'installs /path ...' with the general advice and 'if it is
flaskprod: ...'. When the path holds a project named flaskprod (its pyproject.toml or setup.cfg), they say it is
flaskprod's checkout and give flaskprod's own fix alone; another project's checkout keeps the general advice."""

from __future__ import annotations

from pathlib import Path

import pytest

import flaskprod
from flaskprod.errors import BuildError
from flaskprod.render.requirements import FLASKPROD_SOURCES, read_requirements
from tests import test_check
from tests.test_check import PROD, audit

project = test_check.project  # the fixture: tmp_path as the current directory, a strong FLASK_SECRET_KEY

CHECKOUT = Path(flaskprod.__file__).resolve().parents[2]  # this checkout, as README's `pip install -e` installs it


def _refusal(root: Path) -> str:
    with pytest.raises(BuildError) as refused:
        read_requirements(root, "requirements.txt")
    return str(refused.value)


def _checkout(where: Path, metadata: dict[str, str]) -> Path:
    where.mkdir(parents=True)
    for name, text in metadata.items():
        (where / name).write_text(text)
    return where


@pytest.mark.parametrize(
    "metadata",
    [
        {"pyproject.toml": '[project]\nname = "flaskprod"\nversion = "0.1.0"\n'},
        {"setup.cfg": "[metadata]\nname = flaskprod\n", "pyproject.toml": "[build-system]\nrequires = []\n"},
    ],
)
def test_flaskprods_own_checkout_is_named_with_flaskprods_fix(
    project: Path, tmp_path_factory: pytest.TempPathFactory, metadata: dict[str, str]
) -> None:
    path = _checkout(tmp_path_factory.mktemp("src") / "flaskprod", metadata)
    found = audit(project, {"app.py": PROD, "requirements.txt": f"flask\n-e {path}\n"}).only("FP-P011")
    assert [(m["obj"], m["text"], m["hint"]) for m in found] == [
        (
            "requirements.txt:2",
            f"installs flaskprod's own checkout ({path}) from a path on this machine, which the image does not "
            "have: `flaskprod build` refuses it",
            FLASKPROD_SOURCES,
        )
    ]
    assert _refusal(project) == (
        f"requirements.txt line 2: installs flaskprod's own checkout ({path}) from a path on this machine, which the "
        f"image does not have; {FLASKPROD_SOURCES}"
    )


def test_this_checkout_and_a_relative_path_to_it(project: Path) -> None:
    (project / "requirements.txt").write_text(f"flask\n-e {CHECKOUT}\n")
    own = f"own checkout ({CHECKOUT}) from a path on this machine, which the image does not have; {FLASKPROD_SOURCES}"
    assert _refusal(project).endswith(own)
    (project / "vendor").symlink_to(CHECKOUT)
    (project / "requirements.txt").write_text("flask\n-e ./vendor\n")
    assert "installs flaskprod's own checkout (./vendor)" in _refusal(project)


def test_another_projects_checkout_keeps_the_general_advice(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = _checkout(tmp_path_factory.mktemp("src") / "sdk", {"pyproject.toml": '[project]\nname = "sdk"\n'})
    (project / "requirements.txt").write_text(f"flask\n-e {path}\n")
    assert _refusal(project) == (
        f"requirements.txt line 2: installs {path} from a path on this machine, which the image does not have; name "
        "the package with a version pip can download (e.g. name==1.2.3) or a VCS URL; if it is flaskprod: "
        f"{FLASKPROD_SOURCES}"
    )
