"""How a process ended, in words for a log line: `up`'s children, the uWSGI master `flaskprod serve` runs, a
release command. Apart from stack/ and servers/, which both name exits."""

from __future__ import annotations

import signal
from collections.abc import Mapping

# What an app server's own exit statuses mean (`flaskprod serve` passes its server's on), by server.kind.
_REFUSED = "flaskprod serve refused to start it"
APP_SERVER_EXITS: Mapping[str, Mapping[int, str]] = {
    "gunicorn": {2: _REFUSED, 3: "Gunicorn: a worker failed to boot", 4: "Gunicorn: the app failed to load"},
    "uwsgi": {2: _REFUSED, 22: "uWSGI: the app failed to load"},
}


def describe_exit(status: int, meanings: Mapping[int, str] | None = None) -> str:
    """What a returncode (Popen's: -N for a process killed by signal N) says happened, for a log line:
    "was killed by SIGKILL (signal 9)", "exited with status 4 (Gunicorn: the app failed to load)"."""
    if status < 0:
        return f"was killed by {_signal_name(-status)} (signal {-status})"
    meaning = (meanings or {}).get(status)
    return f"exited with status {status}" + (f" ({meaning})" if meaning else "")


def exit_fields(status: int) -> dict[str, int | str]:
    """The same for a JSON log line: the exit status, or the name of the signal that ended the process."""
    return {"signal": _signal_name(-status)} if status < 0 else {"exit_status": status}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal, which has no name of its own
        return f"SIGRTMIN+{number - signal.SIGRTMIN}" if number >= signal.SIGRTMIN else str(number)
