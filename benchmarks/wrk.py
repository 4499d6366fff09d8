"""wrk: the command for one run and the parser for its text output (the pure part is tested)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

# wrk prints times with these units (its stats.c), sizes with binary prefixes.
_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_LATENCY_LINE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass(frozen=True, kw_only=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float | None
    p75_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    non_2xx: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int

    @property
    def ok_rps(self) -> float:
        """Successful (2xx/3xx) responses per second: a fast error page is not throughput."""
        return (self.requests - self.non_2xx) / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> int:
        """Everything a client would count as a failure: bad statuses and broken or timed-out sockets."""
        return self.non_2xx + self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors, "ok_rps": round(self.ok_rps, 1)}


def to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def parse(output: str) -> WrkResult:
    """The figures of one `wrk --latency` run; ValueError when the text is not such a report."""
    rps = _RPS.search(output)
    total = _REQUESTS.search(output)
    if rps is None or total is None:
        raise ValueError(f"not a wrk report: {output[-500:]!r}")
    requests = int(total.group(1))
    latencies = {m.group(1): to_ms(m.group(2), m.group(3)) for m in _LATENCY_LINE.finditer(output)}
    if not requests or not any(latencies.values()):
        # When every sample timed out wrk prints a distribution of zeros: the latency is unknown, not zero.
        latencies = {}
    sockets = _SOCKET_ERRORS.search(output)
    connect, read, write, timeout = (int(g) for g in sockets.groups()) if sockets else (0, 0, 0, 0)
    non_2xx = _NON_2XX.search(output)
    return WrkResult(
        requests=requests,
        seconds=to_ms(total.group(2), total.group(3)) / 1e3,
        rps=float(rps.group(1)),
        p50_ms=latencies.get("50"),
        p75_ms=latencies.get("75"),
        p90_ms=latencies.get("90"),
        p99_ms=latencies.get("99"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeout,
    )


def command(
    url: str, *, connections: int, seconds: int, threads: int, host_header: str | None, timeout_s: int = 2
) -> list[str]:
    """wrk can not run more threads than connections; the timeout makes a stuck request count as an error."""
    args = [
        shutil.which("wrk") or "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={timeout_s}s",
        "--latency",
    ]
    if host_header:
        args += ["-H", f"Host: {host_header}"]
    return [*args, url]


def run(args: list[str], seconds: int) -> tuple[WrkResult, str]:
    completed = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    return parse(completed.stdout), completed.stdout
