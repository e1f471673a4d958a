"""A loopback proxy in front of PostgreSQL that cuts connections at COMMIT.

pg_terminate_backend from a second connection lands "during commit" only by
luck; this proxy sees the COMMIT in the client's byte stream and cuts the
connection exactly there, in one of two ways, alternately:

* before: the COMMIT never reaches the server, so the transaction rolls back;
* after: the server commits and answers, and the answer is never delivered, so
  the client sees a dead connection for a transaction that did commit.

Either way the worker must treat its batch as not applied and process it again,
and the second processing must be a no-op where the first had committed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass

COMMIT = b"COMMIT\x00"  # a Query or Parse message's text, NUL-terminated
EVENTS_INSERT = b"INSERT INTO events"


@dataclass
class Cuts:
    before: int = 0
    after: int = 0
    commits: int = 0  # of transactions that wrote events


class CommitCutter:
    def __init__(self, unix_path: str, every: int = 4, limit: int = 12) -> None:
        self.unix_path = unix_path
        self.every = every
        self.limit = limit
        self.cuts = Cuts()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closing = False
        self._conns: list[socket.socket] = []

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> CommitCutter:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._closing = True
        _close(self._listener)  # shutdown() wakes the thread blocked in accept()
        with self._lock:
            for s in self._conns:
                _close(s)

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            try:
                server.connect(self.unix_path)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._conns += [client, server]
            state = {"drop_reply": False, "events": False}
            threading.Thread(target=self._upstream, args=(client, server, state),
                             daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client, state),
                             daemon=True).start()

    def _decide(self, state: dict) -> str | None:
        """Cut every ``every``-th commit of a transaction that wrote events (a drain's
        batch), alternately before and after; other commits pass."""
        if not state["events"]:
            return None
        with self._lock:
            self.cuts.commits += 1
            done = self.cuts.before + self.cuts.after
            if done >= self.limit or self.cuts.commits % self.every:
                return None
            if self.cuts.before <= self.cuts.after:
                self.cuts.before += 1
                return "before"
            self.cuts.after += 1
            return "after"

    def _upstream(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        tail = b""
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            window = tail + data
            state["events"] = state["events"] or EVENTS_INSERT in window
            how = self._decide(state) if COMMIT in window else None
            if how == "before":
                break
            if how == "after":
                state["drop_reply"] = True
            elif COMMIT in window:
                state["events"] = False
            try:
                server.sendall(data)
            except OSError:
                break
            tail = window[-len(EVENTS_INSERT):]
        _close(client)
        _close(server)

    def _downstream(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                data = b""
            # The server has answered the COMMIT: it committed. Cut before the
            # client hears it.
            if not data or state["drop_reply"]:
                break
            try:
                client.sendall(data)
            except OSError:
                break
        _close(client)
        _close(server)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()
