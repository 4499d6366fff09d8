"""What the kernel says of the unix sockets bound to a path (by netlink sock_diag, what `ss -x` prints): how many
connections wait in a listening socket's queue, and how many it accepted are still open.

A switch that repoints the link nginx connects through (no reload) stops the old app server only once both are
0: a connection nginx made just before the switch waits in its queue, one nginx keeps open to reuse (Gunicorn's
threaded workers) is still in use, and an app server that stops resets what it never accepted and may close a
kept one as nginx sends on it; either is nginx's 502. No tool need be installed.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_DONE, NLMSG_ERROR = 3, 2
TCP_ESTABLISHED, TCP_LISTEN = 1, 10
UDIAG_SHOW_NAME, UDIAG_SHOW_RQLEN = 0x01, 0x10
UNIX_DIAG_NAME, UNIX_DIAG_RQLEN = 0, 4
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_REQUEST = struct.Struct("=BBHIIIII")  # unix_diag_req: family, protocol, pad, states, inode, show, cookie x2
_MESSAGE = struct.Struct("=BBBBIII")  # unix_diag_msg: family, type, state, pad, inode, cookie x2
_ATTRIBUTE = struct.Struct("=HH")  # rtattr: length, type


def waiting(path: os.PathLike[str] | str) -> int | None:
    """Connections in the queue of the unix socket listening at path; None if none listens there."""
    queues = [queued for name, queued in _sockets(TCP_LISTEN) if name == os.fsencode(path)]
    return queues[0] if queues else None


def accepted(path: os.PathLike[str] | str) -> int:
    """Connections the socket listening at path accepted that are still open (each takes the path as its name)."""
    return sum(name == os.fsencode(path) for name, _ in _sockets(TCP_ESTABLISHED))


def _sockets(state: int) -> list[tuple[bytes | None, int | None]]:
    """Each unix socket in state: the path it is bound to (None if none), and its receive queue's length (of a
    listening socket, the connections not yet accepted)."""
    request = _REQUEST.pack(socket.AF_UNIX, 0, 0, 1 << state, 0, UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN, 0, 0)
    header = _HEADER.pack(_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    found: list[tuple[bytes | None, int | None]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
        sock.sendall(header + request)
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    (errno,) = struct.unpack_from("=i", data, offset + _HEADER.size)
                    raise OSError(-errno, f"sock_diag: {os.strerror(-errno)}")
                found.append(_attributes(data[offset + _HEADER.size + _MESSAGE.size : offset + length]))
                offset += (length + 3) & ~3


def _attributes(data: bytes) -> tuple[bytes | None, int | None]:
    """The bound path and the queue length from one socket's attributes."""
    name = queued = None
    offset = 0
    while offset + _ATTRIBUTE.size <= len(data):
        length, kind = _ATTRIBUTE.unpack_from(data, offset)
        if length < _ATTRIBUTE.size:
            break
        value = data[offset + _ATTRIBUTE.size : offset + length]
        if kind == UNIX_DIAG_NAME:
            name = value.rstrip(b"\0") if value[:1] != b"\0" else value  # a path as bound, less its terminator
        elif kind == UNIX_DIAG_RQLEN:
            queued = struct.unpack_from("=I", value)[0]  # of a listening socket: connections not yet accepted
        offset += (length + 3) & ~3
    return name, queued
