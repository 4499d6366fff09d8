"""A pytest plugin: a skipped test fails the run, since a skip here would hide a missing tool."""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == 0:
        reporter.write_line(
            f"{len(skipped)} test(s) skipped: every test must run here; a missing tool is an error", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
