"""The fan-out benchmark's customer endpoints: a WSGI app that answers 200 at once,
served by granian in its own process (see fanout_bench.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


if __name__ == "__main__":
    import sys

    from granian import Granian

    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    Granian("fast_receiver:app", address="127.0.0.1", port=int(sys.argv[1]), interface="wsgi",
            workers=1, blocking_threads=threads, backlog=2048, log_access=False).serve()
