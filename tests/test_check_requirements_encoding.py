"""`flaskprod check` reads requirements files as pip does, through the decoder build uses: a UTF-16 requirements.txt
(PowerShell's `pip freeze > requirements.txt`) or one led by a UTF-8 byte-order mark that lists flaskprod is no
FP-P011, in the project's requirements and in those a Dockerfile installs; one that does not list it still is. A
folder named requirements.txt is not taken for the requirements file."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from tests import test_check
from tests.test_check import PROD, audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

DOCKERFILE = (
    "FROM python:3.12-slim\nWORKDIR /app\nCOPY deploy/requirements-prod.txt req.txt\nRUN pip install -r req.txt\n"
    "COPY . .\nUSER nobody\nCMD [\"flaskprod\", \"serve\"]\n"
)
ENCODED = {
    "utf-16": lambda text: text.encode("utf-16"),  # with its byte-order mark, as PowerShell writes it
    "utf-8 with a byte-order mark": lambda text: codecs.BOM_UTF8 + text.encode("utf-8"),
}


@pytest.mark.parametrize("encoding", list(ENCODED))
def test_requirements_listing_flaskprod_in_any_encoding_pip_reads_are_no_finding(project: Path, encoding: str) -> None:
    (project / "requirements.txt").write_bytes(ENCODED[encoding]("flaskprod>=0.1\nflask\n"))
    (project / "deploy").mkdir()
    (project / "deploy/requirements-prod.txt").write_bytes(ENCODED[encoding]("flaskprod\ngunicorn\n"))
    assert audit(project, {"app.py": PROD, "Dockerfile": DOCKERFILE}).only("FP-P011") == []


@pytest.mark.parametrize("encoding", list(ENCODED))
def test_requirements_without_flaskprod_in_any_encoding_are_found(project: Path, encoding: str) -> None:
    (project / "requirements.txt").write_bytes(ENCODED[encoding]("flask\n"))
    (project / "deploy").mkdir()
    (project / "deploy/requirements-prod.txt").write_bytes(ENCODED[encoding]("gunicorn\n"))
    found = audit(project, {"app.py": PROD, "Dockerfile": DOCKERFILE}).only("FP-P011")
    assert sorted(m["obj"] for m in found) == ["deploy/requirements-prod.txt", "requirements.txt"]


def test_a_folder_named_requirements_txt_is_not_the_requirements_file(project: Path) -> None:
    (project / "requirements.txt").mkdir()
    (project / "requirements.txt/base.txt").write_text("flask\n")
    pyproject = '[project]\nname = "shop"\nversion = "1"\ndependencies = ["flask", "flaskprod"]\n'
    result = audit(project, {"app.py": PROD, "pyproject.toml": pyproject})
    assert result.only("FP-P011") == [], result.messages
    assert not any("requirements.txt" in m["obj"] for m in result.messages), result.messages
