"""uWSGI's own lines turned into ECS records, the app's JSON lines passed through as they came."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from flaskprod.servers import jsonrelay
from flaskprod.servers.jsonrelay import encoded, level_of, lines_of, relay

APP_LINE = b'{"@timestamp":"2026-12-06T02:54:28.396Z","log.level":"info","message":"hello"}\n'


def decoded(lines: list[bytes]) -> list[dict[str, object]]:
    out = list(encoded(iter(lines), "uwsgi"))
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in out)
    return [json.loads(line) for line in out]


def test_the_apps_json_lines_pass_through_byte_for_byte() -> None:
    assert list(encoded(iter([APP_LINE]), "uwsgi")) == [APP_LINE]


def test_a_plain_line_becomes_one_ecs_record() -> None:
    [record] = decoded([b"spawned uWSGI worker 1 (pid: 9, cores: 12)\n"])
    assert record["message"] == "spawned uWSGI worker 1 (pid: 9, cores: 12)"
    assert record["log.level"] == "info" and record["log"] == {"logger": "uwsgi"}
    assert record["ecs.version"] == "1.6.0"
    assert str(record["@timestamp"]).endswith("Z") and len(str(record["@timestamp"])) == 24


def test_uwsgis_marks_of_trouble_set_the_level() -> None:
    assert level_of("DAMN ! worker 1 (pid: 9) died, killed by signal 9 :( trying respawn ...") == "error"
    assert level_of("*** HARAKIRI ON WORKER 2 (pid: 10, try: 1) ***") == "error"
    assert level_of("!!! no internal routing support, rebuild with pcre support !!!") == "warning"
    assert level_of("Respawned uWSGI worker 1 (new pid: 11)") == "info"


def test_a_traceback_is_one_record_ended_by_the_exceptions_line() -> None:
    lines = [
        b"Traceback (most recent call last):\n",
        b'  File "app.py", line 3, in <module>\n',
        b"    raise ValueError('bad')\n",
        b"ValueError: bad\n",
        b"unable to load app 0 (mountpoint='')\n",
    ]
    tb, after = decoded(lines)
    assert tb["message"] == "ValueError: bad"  # the failure it names, the whole where ecs_logging keeps it
    assert tb["error"] == {"stack_trace": "".join(line.decode() for line in lines[:4]).rstrip("\n")}
    assert tb["log.level"] == "error"
    assert after["message"] == "unable to load app 0 (mountpoint='')"


def test_a_traceback_cut_short_by_a_json_line_or_the_end_is_still_written() -> None:
    started = b"Traceback (most recent call last):"
    first, app, last = decoded([started + b"\n", APP_LINE, started])
    assert first["message"] == last["message"] == "Traceback (most recent call last):"
    assert app["message"] == "hello"


def test_blank_lines_are_dropped_and_undecodable_bytes_kept_as_replacements() -> None:
    [record] = decoded([b"\n", b"  \n", b"caf\xe9\n"])
    assert record["message"] == "caf\ufffd"


def test_lines_are_whole_across_reads_and_the_last_may_lack_its_newline() -> None:
    read_end, write_end = os.pipe()
    big = b"{" + b"x" * 200_000 + b"}\n"  # longer than one read
    writer = threading.Thread(target=lambda: (os.write(write_end, big + b"tail"), os.close(write_end)))
    writer.start()
    assert [line for line in lines_of(read_end) if line] == [big, b"tail"]
    writer.join()
    os.close(read_end)


def test_relay_writes_every_line_encoded_and_closes_its_source() -> None:
    source_r, source_w = os.pipe()
    target_r, target_w = os.pipe()
    os.write(source_w, APP_LINE + b"goodbye to uWSGI.\n")
    os.close(source_w)
    relay(source_r, target_w, "uwsgi")
    os.close(target_w)
    out = os.read(target_r, 65536).splitlines(keepends=True)
    os.close(target_r)
    assert out[0] == APP_LINE
    assert json.loads(out[1])["message"] == "goodbye to uWSGI."
    try:
        os.fstat(source_r)
    except OSError:
        pass
    else:
        raise AssertionError("the relay left its source open")


def test_the_end_of_a_read_is_passed_on_and_a_traceback_across_it_stays_one_record() -> None:
    lines = [b"Traceback (most recent call last):\n", b"", b'  File "app.py", line 3\n', b"ValueError: bad\n", b""]
    out = list(encoded(iter(lines), "stderr"))
    assert out[0] == b"" and out[2] == b"" and len(out) == 3
    assert json.loads(out[1])["error"]["stack_trace"].endswith("ValueError: bad")


@pytest.mark.parametrize("as_json", [True, False])
def test_serves_own_notice_is_one_write_of_a_whole_line(monkeypatch: pytest.MonkeyPatch, as_json: bool) -> None:
    """print() wrote the text and its newline apart, and under uWSGI a relay thread's record landed between them:
    the recycle notice glued to the front of uWSGI's next JSON record, then an empty line."""
    writes: list[tuple[int, bytes]] = []
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append((fd, bytes(data))) or len(data))
    jsonrelay.say("flaskprod: worker (pid: 7) resident 151 MiB: recycling it gracefully", as_json=as_json)
    [(fd, data)] = writes
    assert fd == 2 and data.endswith(b"\n") and data.count(b"\n") == 1
    if as_json:
        line = json.loads(data)
        assert line["message"].endswith("recycling it gracefully") and line["log"] == {"logger": "flaskprod"}
    else:
        assert data == b"flaskprod: worker (pid: 7) resident 151 MiB: recycling it gracefully\n"


CAUSE = [
    b"Traceback (most recent call last):\n",
    b'  File "app.py", line 6, in load\n',
    b'    settings["k"]\n',
    b"KeyError: 'k'\n",
]
CHAINED = [
    b"\n",
    b"The above exception was the direct cause of the following exception:\n",
    b"\n",
    b"Traceback (most recent call last):\n",
    b'  File "app.py", line 8, in load\n',
    b'    raise RuntimeError("config broken") from error\n',
    b"RuntimeError: config broken\n",
]
DURING = [
    b"\n",
    b"During handling of the above exception, another exception occurred:\n",
    b"\n",
    b"Traceback (most recent call last):\n",
    b'  File "app.py", line 10, in load\n',
    b'    raise ValueError("fallback broken")\n',
    b"ValueError: fallback broken\n",
]


def stack_of(lines: list[bytes]) -> str:
    return "".join(line.decode() for line in lines).rstrip("\n")


@pytest.mark.parametrize(
    ("chain", "final"),
    [
        (CAUSE + CHAINED, "RuntimeError: config broken"),
        (CAUSE + DURING, "ValueError: fallback broken"),
        (CAUSE + CHAINED + DURING, "ValueError: fallback broken"),  # nested: three tracebacks, two separators
    ],
)
def test_a_chained_traceback_is_one_record_named_by_its_last_exception(chain: list[bytes], final: str) -> None:
    """It was three records or more: the cause's line as an error, the separator as info, the final exception."""
    tb, after = decoded([*chain, b"\n", b"unable to load app 0 (mountpoint='')\n"])
    assert (tb["log.level"], tb["message"]) == ("error", final)
    assert tb["error"] == {"stack_trace": stack_of(chain)}
    assert after["message"] == "unable to load app 0 (mountpoint='')"


def test_an_exception_groups_traceback_is_one_record_named_by_the_group() -> None:
    group = [
        b"  + Exception Group Traceback (most recent call last):\n",
        b'  |   File "app.py", line 16, in <module>\n',
        b'  |     raise ExceptionGroup("eg", [ValueError("a"), ExceptionGroup("inner", [TypeError("b")])])\n',
        b"  | ExceptionGroup: eg (2 sub-exceptions)\n",
        b"  +-+---------------- 1 ----------------\n",
        b"    | ValueError: a\n",
        b"    +---------------- 2 ----------------\n",
        b"    | ExceptionGroup: inner (1 sub-exception)\n",
        b"    +-+---------------- 1 ----------------\n",
        b"      | TypeError: b\n",
        b"      +------------------------------------\n",
    ]
    chain = CAUSE + CHAINED[:3] + group
    tb, after = decoded([*chain, b"Respawned uWSGI worker 1 (new pid: 11)\n"])
    assert (tb["log.level"], tb["message"]) == ("error", "ExceptionGroup: eg (2 sub-exceptions)")
    assert tb["error"] == {"stack_trace": stack_of(chain)}
    assert after["message"] == "Respawned uWSGI worker 1 (new pid: 11)"


def test_a_traceback_whose_read_ends_after_its_exception_is_written_then_not_held() -> None:
    """Once a read ends (after the relay's short wait, lines_of) a whole traceback is written, not held for a
    next line that may come much later; blank lines after it are no part of it."""
    out = list(encoded(iter([*CAUSE, b"\n", b""]), "stderr"))
    assert out[-1] == b"" and len(out) == 2
    assert json.loads(out[0])["error"]["stack_trace"] == stack_of(CAUSE)


def test_a_chain_split_across_reads_waits_for_its_rest_and_a_lone_traceback_does_not_wait_for_ever() -> None:
    """The relay reads what the pipe holds: a chain's second half written after the read that took its first
    half (the writer paused between them) is still part of one record."""
    read_end, write_end = os.pipe()
    encoder = jsonrelay.Encoder("stderr")
    lines = lines_of(read_end, linger=lambda: encoder.lingering)
    os.write(write_end, b"".join(CAUSE))
    out = [out for _ in CAUSE for out in encoder.feed(next(lines))]
    assert out == [] and encoder.lingering
    os.write(write_end, b"".join(CHAINED))  # before the relay's next look at the pipe: the read goes on
    out += [out for _ in CHAINED for out in encoder.feed(next(lines))]
    out += encoder.feed(next(lines))  # nothing more within LINGER: the end of the read, the record written
    [record] = [json.loads(line) for line in out if line]
    assert record["message"] == "RuntimeError: config broken"
    assert record["error"]["stack_trace"] == stack_of(CAUSE + CHAINED)
    os.close(write_end)
    assert list(lines) == []
    os.close(read_end)


def test_relay_writes_a_chained_traceback_as_one_record() -> None:
    source_r, source_w = os.pipe()
    target_r, target_w = os.pipe()
    os.write(source_w, b"".join(CAUSE + CHAINED) + b"goodbye to uWSGI.\n")
    os.close(source_w)
    relay(source_r, target_w, "uwsgi")
    os.close(target_w)
    out = [json.loads(line) for line in os.read(target_r, 65536).splitlines()]
    os.close(target_r)
    assert [line["message"] for line in out] == ["RuntimeError: config broken", "goodbye to uWSGI."]


def test_pythons_own_chained_traceback_through_the_relay_is_one_record() -> None:
    """What Python itself prints for an exception raised while handling one raised from another."""
    code = """
try:
    try:
        {}["k"]
    except KeyError as error:
        raise RuntimeError("config broken") from error
except RuntimeError:
    raise ValueError("fallback broken")
"""
    [record] = relayed_stderr_of(code)
    assert record["message"] == "ValueError: fallback broken"
    stack = record["error"]["stack_trace"]
    assert stack.startswith("Traceback (most recent call last):\n") and stack.count("Traceback (most recent") == 3
    assert "\nKeyError: 'k'\n\nThe above exception was the direct cause" in stack


def relayed_stderr_of(code: str) -> list[dict[str, object]]:
    """The records the relay writes for what a Python child running code prints on stderr."""
    target_r, target_w = os.pipe()
    pipes = jsonrelay.Relay("stderr")
    pipes.targets = (target_w, target_w)
    pipes.start()
    child = subprocess.run([sys.executable, "-c", code], stderr=pipes.stderr, timeout=30, check=False)
    pipes.finish()
    os.close(target_w)
    out = [json.loads(line) for line in os.read(target_r, 65536).splitlines()]
    os.close(target_r)
    assert child.returncode == 1
    return out


def test_an_exceptions_notes_and_the_rest_of_its_message_are_part_of_its_record() -> None:
    """Python prints a message over many lines, and each note (add_note), right after the exception's line,
    unmarked: the relay wrote each as a record of its own at info ('second line', 'note: ...'). They are the
    exception's, in its record's message and stack trace."""
    code = """
error = ValueError("config broken:\\n  - DATABASE_URL is missing\\nsee docs/setup.md")
error.add_note("note: while loading settings.toml")
error.add_note("note: release 2")
raise error
"""
    [record] = relayed_stderr_of(code)
    printed = (
        "ValueError: config broken:\n  - DATABASE_URL is missing\nsee docs/setup.md\n"
        "note: while loading settings.toml\nnote: release 2"
    )
    assert record["log.level"] == "error" and record["message"] == printed
    stack = record["error"]["stack_trace"]  # type: ignore[index]
    assert stack.startswith("Traceback (most recent call last):\n") and stack.endswith("\n" + printed)


def test_a_chained_exceptions_notes_stay_in_the_one_record_named_by_the_last() -> None:
    code = """
try:
    error = KeyError("k")
    error.add_note("looking up the card")
    raise error
except KeyError as cause:
    raise RuntimeError("billing broken") from cause
"""
    [record] = relayed_stderr_of(code)
    assert record["message"] == "RuntimeError: billing broken"
    assert "KeyError: 'k'\nlooking up the card\n\nThe above exception" in record["error"]["stack_trace"]  # type: ignore[index]


def test_uwsgis_own_lines_after_an_exceptions_line_are_still_records_of_their_own() -> None:
    lines = [*CAUSE[:-1], b"KeyError: 'k'\n", b"a note\n", b"unable to load app 0 (mountpoint='')\n",
             b"goodbye to uWSGI.\n"]  # fmt: skip
    tb, unable, goodbye = decoded(lines)
    assert tb["message"] == "KeyError: 'k'\na note"
    assert (unable["log.level"], unable["message"]) == ("error", "unable to load app 0 (mountpoint='')")
    assert goodbye["message"] == "goodbye to uWSGI."
