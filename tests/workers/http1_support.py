"""An http1.Connection over a socket pair, shared by the HTTP/1.1 tests."""

from __future__ import annotations

import socket

from workers import http1


def connection(answer: bytes, close: bool) -> tuple[http1.Connection, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.settimeout(2)
    theirs.sendall(answer)  # waits in the socket buffer until the request is sent
    if close:
        theirs.shutdown(socket.SHUT_WR)
    conn = http1.Connection("hooks.example", 80, 2, lambda address, timeout: ours)
    return conn, theirs
