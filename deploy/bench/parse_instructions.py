"""Instructions per attempt for the HTTP/1.1 exchange itself, workers.http1 against
h11 (what moving the sender's parsing onto h11 would cost), no network involved:

    python deploy/bench/parse_instructions.py [--attempts 20000] [--warm 2000]

Each side writes the delivery's POST (head and body) into a socket stand-in and
reads a typical receiver's answer back from it: status, the first 4 KB of the
body, Retry-After, whether the connection may be reused. http1 through
``Connection.post``; h11 the way a sender built on it would: ``send`` the request,
``receive_data`` the answer, ``next_event`` until the end of the message, then
``start_next_cycle`` for the kept-alive connection. Under callgrind, two runs of
W and W + N attempts; the difference divided by N is the cost of one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common import callgrind_threads, require_valgrind

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("BENCH_TREE") or HERE.parents[1])  # common.TREE
BODY = b'{"type":"message.delivered","timestamp":"2026-11-30T11:59:59.120000+00:00"}' * 6
HEADERS = [("Content-Type", "application/json"), ("User-Agent", "hookline-webhooks/1"),
           ("webhook-id", "msg_0193a4c0d1e2f3a4b5c6d7e8"), ("webhook-timestamp", "1750081598"),
           ("webhook-signature", "v1," + "A" * 44)]
# What an nginx or Express receiver typically answers.
ANSWER = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Wed, 02 Dec 2026 16:00:00 GMT\r\n"
          b"Content-Type: application/json; charset=utf-8\r\nContent-Length: 17\r\n"
          b"Connection: keep-alive\r\nX-Request-Id: 5f0c2a9e-0b7d-4c1e-9a8f-3d2b1c0a9e8f\r\n"
          b"Vary: Accept-Encoding\r\n\r\n{\"received\":true}")
KEEP, DRAIN = 4096, 64 * 1024


class Peer:
    """A socket whose receiver answers every request with ANSWER."""

    def __init__(self) -> None:
        self.pending = b""

    def sendall(self, data: bytes) -> None:
        self.pending = ANSWER

    def recv(self, n: int) -> bytes:
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def close(self) -> None:
        pass


def _http1(attempts: int) -> None:
    from workers.http1 import Connection

    peer = Peer()
    conn = Connection("hooks.example", 443, 10.0, lambda address, timeout: peer)
    for _ in range(attempts):
        answer, reusable = conn.post("/hook", BODY, HEADERS, KEEP, DRAIN)
        assert answer.status == 200 and reusable


def _h11(attempts: int) -> None:
    import h11

    peer = Peer()
    conn = h11.Connection(h11.CLIENT)
    head = [("Host", "hooks.example"), ("Accept-Encoding", "identity"),
            ("Content-Length", str(len(BODY))), *HEADERS]
    for _ in range(attempts):
        peer.sendall(conn.send(h11.Request(method="POST", target="/hook", headers=head))
                     + conn.send(h11.Data(data=BODY)) + conn.send(h11.EndOfMessage()))
        status, kept, retry_after = 0, b"", None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(peer.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                retry_after = next((v for n, v in event.headers if n == b"retry-after"), None)
            elif isinstance(event, h11.Data):
                kept += event.data[:KEEP - len(kept)]
            elif isinstance(event, h11.EndOfMessage):
                break
        assert status == 200 and retry_after is None and kept
        conn.start_next_cycle()  # kept alive


def _instructions(side: str, attempts: int) -> int:
    return callgrind_threads(Path(__file__).resolve(), [side, str(attempts)],
                             dict(os.environ))[0]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path[:0] = [str(ROOT)]
        (_http1 if sys.argv[2] == "http1" else _h11)(int(sys.argv[3]))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--attempts", type=int, default=20000)
    p.add_argument("--warm", type=int, default=2000)
    args = p.parse_args()
    require_valgrind()
    per = {}
    for side in ("http1", "h11"):
        low = _instructions(side, args.warm)
        high = _instructions(side, args.warm + args.attempts)
        per[side] = (high - low) / args.attempts
        print(f"{side:6s} {per[side]:10,.0f} instructions per attempt", flush=True)
    print(f"h11 / http1: {per['h11'] / per['http1']:.2f}")


if __name__ == "__main__":
    main()
