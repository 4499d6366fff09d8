"""`flaskprod deploy` beside a flaskprod.toml that does not parse: the running up reads that file again for the new
release (as SIGHUP does) and refuses it, so the hint that names the run dir, right for rollback and --promote, which
read no config, sent a user to a second failure (exit 1, the same TOML error, now from up)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_up_deploy import flaskprod

MEANWHILE = "; to {} meanwhile, name the running up's run dir: --set proxy.run_dir=DIR"


@pytest.mark.parametrize("args", [("deploy",), ("deploy", "--canary", "10")])
def test_deploy_says_to_fix_the_file(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "flaskprod.toml").write_text("[server\n")
    result = flaskprod(tmp_path, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: {tmp_path / 'flaskprod.toml'}: not valid TOML: ")
    assert result.stderr.endswith(
        "; fix the file; the running up reads it again for the release a deploy starts (rollback and deploy "
        "--promote take --set proxy.run_dir=DIR meanwhile)\n"
    )


@pytest.mark.parametrize(("args", "command"), [(("rollback",), "rollback"), (("deploy", "--promote"), "deploy")])
def test_rollback_and_promote_keep_the_run_dir_hint(tmp_path: Path, args: tuple[str, ...], command: str) -> None:
    (tmp_path / "flaskprod.toml").write_text("[server\n")
    result = flaskprod(tmp_path, *args)
    assert result.returncode == 2
    assert result.stderr.endswith(MEANWHILE.format(command) + "\n")
