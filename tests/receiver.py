"""A real HTTP receiver for fan-out tests: a threaded server on 127.0.0.1.

It records every request (path, headers, body, arrival time) and answers each
path from a script of replies (then a per-path default, then 200), so a test
can make an endpoint fail, throttle, vanish (410) or hang.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0   # seconds to wait before answering
    hang: bool = False   # never answer (until the receiver closes)
    drip: float = 0.0    # send the body a byte at a time, this many seconds apart


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float                # time.monotonic() on arrival


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) < length:
            # The sender died mid-request: like any real server, this is no request.
            self.close_connection = True
            return
        path = self.path
        received = Received(path, {k.lower(): v for k, v in self.headers.items()}, body,
                            time.monotonic())
        reply = self.server.owner._record(received)
        if reply.hang:
            self.server.owner._stopping.wait(60)
            self.close_connection = True
            return
        if reply.delay:
            time.sleep(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if not reply.drip:
            self.wfile.write(reply.body)
            return
        for i in range(len(reply.body)):
            self.wfile.write(reply.body[i:i + 1])
            self.wfile.flush()
            if self.server.owner._stopping.wait(reply.drip):
                return

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet tests


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    owner: Receiver


class Receiver:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._defaults: dict[str, Reply] = {}
        self._received: list[Received] = []
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with these replies, in order."""
        with self._lock:
            self._scripts[path].extend(replies)

    def default(self, path: str, reply: Reply) -> None:
        """Answer ``path`` with this once its script is used up."""
        with self._lock:
            self._defaults[path] = reply

    def _record(self, received: Received) -> Reply:
        with self._lock:
            self._received.append(received)
            self._lock.notify_all()
            script = self._scripts[received.path]
            if script:
                return script.popleft()
            return self._defaults.get(received.path, Reply())

    def requests(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def wait(self, count: int, path: str | None = None, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` requests (to ``path``) have arrived; fail the test otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self._received if path is None or r.path == path]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"receiver got {len(got)} of {count} requests to {path}")
                self._lock.wait(left)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
