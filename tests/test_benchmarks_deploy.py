"""`python -m benchmarks.deploy`: outcomes summed up, the switch window, medians over rounds, the table."""

from __future__ import annotations

import http.server
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from benchmarks import deploy
from benchmarks.deploy import Outcome, Settings
from benchmarks.procs import free_port
from benchmarks.stacks import TASKBOARD


def ok(start: float, end: float, version: str = "1") -> Outcome:
    return Outcome(start=start, end=end, status=200, body=version)


def steady(until: float, version: str = "1") -> list[Outcome]:
    """One 10 ms request every 0.1 s from 0 to until."""
    return [ok(i / 10, i / 10 + 0.01, version) for i in range(int(until * 10))]


def test_parse_response_reads_status_and_body() -> None:
    assert deploy.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2") == (200, "2")
    assert deploy.parse_response(b"HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\n\r\n<html>") == (502, "<html>")
    with pytest.raises(ValueError, match="not an HTTP response"):
        deploy.parse_response(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ValueError):
        deploy.parse_response(b"HTTP/1.1 200 OK\r\n")  # cut off before the body


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert deploy.percentile(values, 50) == 50.0
    assert deploy.percentile(values, 99) == 99.0
    assert deploy.percentile([7.0], 99) == 7.0
    assert deploy.percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert deploy.percentile([], 50) is None


def test_summary_counts_failures_and_measures_the_switch() -> None:
    outcomes = [
        *steady(5.0),
        Outcome(start=5.5, end=5.501, failure="refused"),
        Outcome(start=5.6, end=5.7, status=502, body="<html>"),
        Outcome(start=5.7, end=15.7, failure="timeout"),
        # Sent before the window opens, held in a queue until the new code answers it: in the window all the same.
        ok(5.1, 7.0, "2"),
        ok(7.2, 7.25, "1"),  # the old code still answers for a while
        ok(7.5, 7.51, "2"),
        ok(9.0, 9.01, "2"),  # after the window
    ]
    s = deploy.summarize(outcomes, command_at=5.0, warmup_s=1.0, old="1", new="2")
    assert s["sent"] == len(outcomes)
    assert s["ok"] == 50 + 4
    assert (s["non_2xx"], s["statuses"]) == (1, {"502": 1})
    assert s["failures"] == {"refused": 1, "reset": 0, "timeout": 1, "other": 0}
    assert s["connection_errors"] == 2
    assert s["longest_ms"] == 10000.0
    assert s["switch_s"] == 2.0
    assert s["last_old_s"] == 2.25
    # Steady: sent from 1.0 s on and answered before the command at 5.0 s, each 10 ms.
    assert s["steady"] == {"answered": 40, "p50_ms": 10.0, "p99_ms": 10.0}
    # Window 6.0 to 8.0 s: the queued request (1,900 ms), the old answer and the new one; the timeout is in
    # progress then too, unanswered.
    assert s["window"]["answered"] == 3
    assert s["window"]["p99_ms"] == 1900.0
    assert s["window"]["p50_ms"] == 50.0
    assert (s["window"]["sent"], s["window"]["failed"]) == (4, 1)


def test_a_switch_that_never_lands_is_none_and_its_window_follows_the_command() -> None:
    outcomes = [*steady(5.0), ok(5.5, 5.6), ok(6.5, 6.6), ok(7.5, 7.6)]
    s = deploy.summarize(outcomes, command_at=5.0, warmup_s=1.0, old="1", new="2")
    assert s["switch_s"] is None
    assert s["last_old_s"] == 2.6
    assert s["window"]["answered"] == 2  # 5.0 to 7.0 s: sent at 5.5 and 6.5
    assert s["window"]["p50_ms"] == 100.0


def _summary(sent: int, non_2xx: int, errors: int, switch: float | None, p99: float = 5.0) -> dict[str, Any]:
    return {
        "sent": sent,
        "non_2xx": non_2xx,
        "connection_errors": errors,
        "longest_ms": 20.0,
        "steady": {"p50_ms": 1.0, "p99_ms": 2.0},
        "window": {"p50_ms": 1.5, "p99_ms": p99},
        "switch_s": switch,
        "command_s": 0.0,
    }


def test_medians_over_rounds_keep_each_round_and_count_missed_switches() -> None:
    m = deploy.medians([_summary(100, 0, 3, 2.0), _summary(300, 5, 0, None, p99=50.0), _summary(200, 1, 1, 4.0)])
    assert m["rounds"] == 3
    assert m["sent"] == 200
    assert m["non_2xx"] == 1
    assert m["connection_errors"] == 1
    assert m["window_p99_ms"] == 5.0
    assert m["switch_s"] == 3.0  # the median of the two that landed
    assert m["switch_s_by_round"] == [2.0, None, 4.0]
    assert m["switch_missed"] == 1
    assert m["failed_requests"] == [3, 5, 2]


def _results(medians: dict[str, Any]) -> dict[str, Any]:
    return {
        "rounds": medians["rounds"],
        "started": "2026-12-04T08:00:00+00:00",
        "finished": "2026-12-04T08:04:00+00:00",
        "commit": "abc1234",
        "command": "make bench-deploy",
        "load_average_at_start": [0.5, 0.5, 0.5],
        "load_average_at_end": [1.0, 0.7, 0.6],
        "machine": {"cpu": "CPU", "cores": 2, "memory_mb": 4096, "os": "Debian", "kernel": "6", "python": "3.11"},
        "versions": {"nginx": "1.22.1", "uwsgi": "2.0.31"},
        "default_server_kind": "uwsgi",
        "settings": {**vars(Settings())},
        "environment": {"DATABASE_URL": "sqlite:///<run dir>/db.sqlite3"},
        "methods": [
            {
                "name": "option2-restart",
                "label": "guide Option 2: restart",
                "start_commands": ["(cd <app copy> && gunicorn wsgi:app)"],
                "switch_command": "kill -TERM 42; ...",
                "medians": medians,
            }
        ],
    }


def test_table_shows_medians_missed_switches_and_failures_by_round() -> None:
    m = deploy.medians([_summary(1000, 0, 3, 2.0), _summary(3000, 192, 0, None, p99=94.2), _summary(2000, 1, 1, 4.0)])
    header, rule, row = deploy.table(_results(m))
    assert header.count("|") == rule.count("|") == row.count("|")
    assert row == (
        "| guide Option 2: restart | 2,000 | 1 | 1 | 20 | 1.0 / 2.0 | 1.5 / 5.0 | 3.00 (never in 1 of 3) | 0.00 "
        "| 3, 192, 2 |"
    )


def test_markdown_records_the_commands_and_the_machine() -> None:
    m = deploy.medians([_summary(1000, 0, 0, 2.0)])
    text = deploy.markdown(_results(m))
    assert "| guide Option 2: restart | 1,000 | 0 | 0 | 20 |" in text
    assert "  - start: `(cd <app copy> && gunicorn wsgi:app)`" in text
    assert "  - ship: `kill -TERM 42; ...`" in text
    assert "- Command: `make bench-deploy`." in text
    assert "Versions: nginx 1.22.1, uwsgi 2.0.31." in text
    assert "1 round, " in text and "Machine: CPU, 2 cores" in text


def test_load_records_refused_connections_and_stops_at_its_count() -> None:
    settings = Settings(clients=4, rate=2000.0, max_requests=20, timeout_s=2.0)
    outcomes = deploy.Load(free_port(), "localhost", settings, max_seconds=10.0).start().wait()
    assert {o.failure for o in outcomes} == {"refused"}
    # Each client checks the bound before its next request: at most one more each.
    assert 20 <= len(outcomes) < 20 + settings.clients
    assert all(o.start <= o.end for o in outcomes)


def test_the_copy_answers_its_version_and_the_example_is_untouched(tmp_path: Path) -> None:
    root = deploy.copy_app(tmp_path / "app", "7")
    assert "bench_version" not in (TASKBOARD / "wsgi.py").read_text()
    assert not (TASKBOARD / "benchversion.py").exists()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "FLASK_SECRET_KEY": secrets.token_hex(32)}
    env.pop("PYTHONPATH", None)
    probe = "import wsgi; print(wsgi.app.test_client().get('/bench/version').get_data(as_text=True))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "7"


class _Version(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps a connection open unless the client asks otherwise
    connections: ClassVar[list[int]] = []

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1")
        self.end_headers()
        self.wfile.write(b"1")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("keep_alive", "most_connections"), [(True, 2), (False, None)])
def test_keep_alive_clients_reuse_their_connections(keep_alive: bool, most_connections: int | None) -> None:
    _Version.connections = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Version)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = Settings(clients=2, rate=400.0, max_requests=40, timeout_s=5.0, keep_alive=keep_alive)
        outcomes = deploy.Load(server.server_address[1], "localhost", settings, max_seconds=10.0).start().wait()
    finally:
        server.shutdown()
        server.server_close()
    assert len(outcomes) >= 40 and all(o.status == 200 and o.body == "1" for o in outcomes), outcomes[:3]
    # Kept: one connection per client. Not kept: one per request.
    assert len(_Version.connections) == (most_connections or len(outcomes))


def test_render_without_results_and_an_out_that_cannot_be_written_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy.main(["--render", "--out", str(tmp_path)]) == 2  # was a FileNotFoundError traceback
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: no readable results in {tmp_path}/results.json") and "make bench-deploy" in err
    assert "\n" not in err and list(tmp_path.iterdir()) == []
    a_file = tmp_path / "results"
    a_file.write_text("mine\n")
    with pytest.raises(SystemExit) as exc:  # it was found only after the rounds, with every figure lost
        deploy.main(["--rounds", "1", "--out", str(a_file)])
    assert exc.value.code == 2 and a_file.read_text() == "mine\n"
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"python -m benchmarks.deploy: error: --out {a_file}: File exists; give a folder this user can write to"
    )
