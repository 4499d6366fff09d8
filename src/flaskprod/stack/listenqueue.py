"""How many connections wait in a listening unix socket's queue, not yet accepted: asked of the kernel by sock_diag.

A switch that repoints the link nginx connects through (no reload) stops the old app server only once its queue
is empty: a connection nginx made just before the switch waits there, and an app server that stops listening
resets what it never accepted, which nginx would answer 502. The kernel's netlink sock_diag interface answers for
every listening unix socket at once (what `ss -xl` prints as Recv-Q); no tool need be installed.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_DONE, NLMSG_ERROR = 3, 2
TCP_LISTEN = 10
UDIAG_SHOW_NAME, UDIAG_SHOW_RQLEN = 0x01, 0x10
UNIX_DIAG_NAME, UNIX_DIAG_RQLEN = 0, 4
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_REQUEST = struct.Struct("=BBHIIIII")  # unix_diag_req: family, protocol, pad, states, inode, show, cookie x2
_MESSAGE = struct.Struct("=BBBBIII")  # unix_diag_msg: family, type, state, pad, inode, cookie x2
_ATTRIBUTE = struct.Struct("=HH")  # rtattr: length, type


def waiting(path: os.PathLike[str] | str) -> int | None:
    """Connections in the queue of the unix socket listening at path; None if none listens there."""
    return listen_queues().get(os.fsencode(path))


def listen_queues() -> dict[bytes, int]:
    """Every listening unix socket's path, and how many connections wait in its queue."""
    request = _REQUEST.pack(socket.AF_UNIX, 0, 0, 1 << TCP_LISTEN, 0, UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN, 0, 0)
    header = _HEADER.pack(_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    queues: dict[bytes, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
        sock.sendall(header + request)
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return queues
                if kind == NLMSG_ERROR:
                    (errno,) = struct.unpack_from("=i", data, offset + _HEADER.size)
                    raise OSError(-errno, f"sock_diag: {os.strerror(-errno)}")
                name, queued = _attributes(data[offset + _HEADER.size + _MESSAGE.size : offset + length])
                if name is not None and queued is not None:
                    queues[name] = queued
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
