"""The fix build and check give for requirements that do not install flaskprod is one the image can install:
flaskprod is not on PyPI, so a bare `flaskprod` line passed build and failed `docker build` (or installed whatever
PyPI holds under that name), and `pip freeze` in a venv with README's `pip install -e .` of a checkout writes
`-e /path/to/checkout`, which build refuses as a path on this machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flaskprod.checks.registry import REGISTRY
from flaskprod.errors import BuildError
from flaskprod.render.requirements import require_flaskprod


def _suggested_line(message: str) -> str:
    """The requirement line the message tells the user to write: the last words in backticks naming flaskprod (the
    first may be the command every target runs, `flaskprod serve`)."""
    return [quoted for quoted in re.findall(r"`([^`]+)`", message) if quoted.startswith("flaskprod")][-1]


@pytest.mark.parametrize(
    ("files", "where"),
    [
        ({"requirements.txt": "flask\n"}, "requirements.txt"),
        ({"pyproject.toml": '[project]\nname = "shop"\nversion = "1"\ndependencies = ["flask"]\n'}, None),
    ],
)
def test_build_refusal_suggests_a_line_the_image_can_download(
    tmp_path: Path, files: dict[str, str], where: str | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(BuildError) as refused:
        require_flaskprod(tmp_path, where)
    line = _suggested_line(str(refused.value))
    assert "not on PyPI" in str(refused.value)
    # Written as told, build takes it, and it names where pip downloads flaskprod from: not a bare name.
    assert line.startswith("flaskprod @ git+https://"), line
    (tmp_path / "requirements.txt").write_text(f"flask\n{line}\n")
    assert require_flaskprod(tmp_path, "requirements.txt") is not None


def test_fp_p011_hint_gives_the_same_line_and_no_pip_freeze() -> None:
    hint = REGISTRY["FP-P011"].hint
    assert _suggested_line(hint).startswith("flaskprod @ git+https://")
    assert "pip freeze" not in hint
