"""A real ACME server for tests: Let's Encrypt's pebble, its DNS pebble-challtestsrv (every name is 127.0.0.1)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port, self_signed, stop_group, wait_for


@dataclass
class Pebble:
    """The ACME directory, the CA that pebble's own HTTPS chains to, and the port it validates HTTP-01 on."""

    directory: str
    listener_ca: Path
    management: str
    http_port: int
    processes: tuple[subprocess.Popen[bytes], ...]

    def issuing_root(self, into: Path) -> Path:
        """The root every certificate pebble issues chains to (pebble makes a new one at each start)."""
        context = ssl.create_default_context(cafile=str(self.listener_ca))
        with urllib.request.urlopen(f"{self.management}/roots/0", context=context, timeout=10) as answer:
            into.write_bytes(answer.read())
        return into

    def stop(self) -> None:
        for process in self.processes:
            stop_group(process, timeout=10)


def start_pebble(workdir: Path, http_port: int) -> Pebble:
    """pebble validating HTTP-01 challenges on 127.0.0.1:http_port, its output in workdir."""
    for command in ("pebble", "pebble-challtestsrv", "openssl"):
        if shutil.which(command) is None:
            raise RuntimeError(f"{command} is missing: `make test` installs it (apt-get install pebble openssl)")
    cert, key = self_signed(workdir, name="pebble", alt_names="IP:127.0.0.1,DNS:localhost")
    listen, management, dns, dns_management = (free_port() for _ in range(4))
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{listen}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (workdir / "pebble.json").write_text(json.dumps(config))
    # No AAAA answers: the stacks under test listen on 127.0.0.1 only.
    dns_server = _spawn(
        ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", f"127.0.0.1:{dns}",
         "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{dns_management}"],
        workdir / "challtestsrv.log", {},
    )  # fmt: skip
    # No random sleeps before validation and no nonces rejected on purpose: the tests test flaskprod, not certbot.
    acme = _spawn(
        ["pebble", "-config", str(workdir / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
        workdir / "pebble.log",
        {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
    )
    pebble = Pebble(
        directory=f"https://127.0.0.1:{listen}/dir",
        listener_ca=cert,
        management=f"https://127.0.0.1:{management}",
        http_port=http_port,
        processes=(acme, dns_server),
    )
    try:
        # pebble logs the directory line before its management listener (a goroutine) has bound: wait for both.
        wait_for(lambda: "ACME directory available" in (workdir / "pebble.log").read_text() and _accepts(management),
                 timeout=20, what=f"pebble to listen: {workdir / 'pebble.log'}")
    except BaseException:
        pebble.stop()
        raise
    return pebble


def _spawn(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **env}, start_new_session=True)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
