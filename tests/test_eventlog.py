"""`flaskprod up`'s own lines: under logging.format = json, shaped as the app's records, for a shipper to read alike."""

from __future__ import annotations

import json
import logging
from typing import Any

import ecs_logging
import pytest

from flaskprod.stack.log import LOGGER, EventLog


def app_record(message: str) -> dict[str, Any]:
    """What ecs_logging writes for one of the app's own records."""
    record = logging.LogRecord("taskboard", logging.WARNING, __file__, 1, message, None, None)
    return json.loads(ecs_logging.StdlibFormatter().format(record))


def test_json_lines_carry_the_fields_the_apps_records_do(capsys: pytest.CaptureFixture[str]) -> None:
    EventLog("json")("app server restarted", level="warning", child="uwsgi", pid=42)
    line = capsys.readouterr().err
    assert line.endswith("}\n") and line.count("\n") == 1
    ours, theirs = json.loads(line), app_record("app server restarted")
    for key in ("@timestamp", "log.level", "message", "ecs.version"):
        assert type(ours[key]) is type(theirs[key]), key
    assert ours["ecs.version"] == theirs["ecs.version"]
    assert ours["log"] == {"logger": LOGGER} and set(theirs["log"]) >= {"logger"}
    assert (ours["log.level"], ours["message"], ours["child"], ours["pid"]) == ("warning", "app server restarted",
                                                                                  "uwsgi", 42)  # fmt: skip
    assert ours["@timestamp"].endswith("Z") and len(ours["@timestamp"]) == len("2026-12-06T11:38:27.732Z")
    assert ", " not in line and '": ' not in line  # compact, as ecs_logging and the relayed lines are


def test_text_lines_say_who_wrote_them(capsys: pytest.CaptureFixture[str]) -> None:
    EventLog("text")("stopped", restarts=2)
    assert capsys.readouterr().err == "flaskprod up: stopped (restarts=2)\n"
