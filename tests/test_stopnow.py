"""servers/stopnow on its own: a Gunicorn worker's stop-now handler in a real process, signalled for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.support import ROOT, stop_group

# A sync worker between requests, with flaskprod's handler: Ctrl-C makes it exit at once.
WORKER = textwrap.dedent("""
    import signal, sys, time, types
    from flaskprod.servers import stopnow
    handler = stopnow._Sync(types.SimpleNamespace(alive=True, accept=lambda listener: None))
    for sig in stopnow.QUIT_NOW:
        signal.signal(sig, handler)
    # Both signals of a Ctrl-C pending before the first handler runs, as when the arbiter relays at once.
    signal.pthread_sigmask(signal.SIG_BLOCK, stopnow.QUIT_NOW)
    print("ready", flush=True)
    sys.stdin.readline()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stopnow.QUIT_NOW)
    while True:
        time.sleep(1)
""")
# Bounds on the stream of SIGQUITs: the worker exits moments after the SIGINT.
MAX_SIGNALS, MAX_SECONDS = 200_000, 10.0


def test_an_arbiters_sigquit_late_in_the_workers_exit_does_not_kill_it(tmp_path: Path) -> None:
    """The arbiter relays Ctrl-C as SIGQUIT; under load it can arrive once the exiting interpreter has put
    SIGQUIT's default back, which killed the worker ("was sent SIGQUIT"). A stream of them, from the SIGINT
    until the worker is gone, lands in that window too. And one that came with the SIGINT is no traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    log = tmp_path / "worker.log"
    with log.open("w") as err, subprocess.Popen([sys.executable, "-c", WORKER], cwd=tmp_path, env=env,
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                                start_new_session=True) as worker:  # fmt: skip
        try:
            assert worker.stdin is not None and worker.stdout is not None
            assert worker.stdout.readline() == "ready\n"
            worker.send_signal(signal.SIGINT)  # the terminal's
            worker.send_signal(signal.SIGQUIT)  # the arbiter's
            worker.stdin.write("go\n")
            worker.stdin.flush()
            sent, deadline = 0, time.monotonic() + MAX_SECONDS
            while worker.poll() is None and sent < MAX_SIGNALS and time.monotonic() < deadline:
                os.kill(worker.pid, signal.SIGQUIT)
                sent += 1
            code = worker.wait(MAX_SECONDS)
        finally:
            stop_group(worker)
    output = log.read_text()
    assert code == 0 and "Traceback" not in output, f"exit {code} after {sent} more SIGQUITs\n{output}"


# A gthread worker whose loop saw alive go False and ended before it ran the exit queued to it (its queue never
# runs), so it leaves through Gunicorn's own sys.exit; an object freed as the interpreter tears the modules down,
# after it has put signals' defaults back, stands in for the arbiter's SIGQUIT arriving then.
THREADED_LOOP_ENDS_FIRST = textwrap.dedent("""
    import os, signal, sys, types
    from flaskprod.servers import stopnow
    worker = types.SimpleNamespace(alive=True, method_queue=types.SimpleNamespace(defer=lambda method: None))
    stopnow.install(worker)
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the handler queues the exit, the loop ends without it

    class ArbitersLateQuit:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGQUIT)
            print("survived the late SIGQUIT", file=sys.stderr, flush=True)

    late = ArbitersLateQuit()
    assert worker.alive is False
    sys.exit(0)
""")


def test_a_threaded_worker_whose_loop_ends_before_its_queued_exit_still_ignores_a_late_sigquit(
    tmp_path: Path,
) -> None:
    """Once in a CI run under load the arbiter logged "Worker (pid:...) was sent SIGQUIT!" for a gthread worker that
    had logged "Worker exiting": SIGQUIT was ignored from exit_now only, which this path never reaches."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", THREADED_LOOP_ENDS_FIRST], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    assert "survived the late SIGQUIT" in result.stderr
