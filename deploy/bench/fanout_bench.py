"""Fan-out: deliveries/s of one worker process to a fast local receiver, 3 endpoints
per event; then the same with a fourth, slow endpoint (it answers after 2 s), and
the fast endpoints' rate compared.

The outbox is filled first (mixed callbacks applied by the drain in this process,
each event making one delivery per endpoint), then `hookline worker --concurrency 1`
gets a dispatch and the clock runs until every fast delivery has succeeded. The
fast receiver is a granian WSGI app in its own process; the slow one is a threaded
server in this one. Runs alternate (3 fast, with slow, 3 fast, ...).

    python deploy/bench/fanout_bench.py [--events 5000] [--rounds 1]
"""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
from common import (
    CpuMeter,
    PgBackends,
    RssSampler,
    cli,
    fast_receiver,
    hookline,
    services,
    stopping,
    tree,
    wait_ready,
)

from shared import config
from workers import queues
from workers.celery_app import make_app

HERE = Path(__file__).resolve().parent
FAST_PATHS = ("/a", "/b", "/c")
SLOW_SECONDS = 2.0


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(SLOW_SECONDS)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


class SlowReceiver:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/slow"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _fill_outbox(env: dict[str, str], events: int, urls: list[str]) -> None:
    """Endpoints, then callbacks applied in-process: one delivery per endpoint each."""
    import logging

    from processing import fill_inbox

    from shared.db import endpoints
    from shared.runtime import Runtime, install
    from workers.tasks import drain_round

    rt = Runtime(config.load(env))
    install(rt)
    with rt.pool.connection() as conn:
        for url in urls:
            endpoints.create(conn, url=url, event_types=["*"], secret=secrets.token_hex(16))
    fill_inbox(rt.redis, events, dup_rate=0.0, invalid_rate=0.0)
    logging.disable(logging.WARNING)
    try:
        while drain_round(rt) is not None:
            pass
    finally:
        logging.disable(logging.NOTSET)
        rt.close()


# Fast deliveries not yet succeeded: a range of the outbox's partial due index, so
# polling it costs PostgreSQL little of the CPU the benchmark measures.
_FAST_LEFT = """
SELECT count(*) FROM deliveries
WHERE status IN ('pending', 'failed')
  AND endpoint_id IN (SELECT id FROM endpoints WHERE url NOT LIKE '%/slow')
"""
POLL_SECONDS = 0.1


def run_once(events: int, slow: bool, fast_port: int, rx_pid: int) -> dict[str, float]:
    slow_rx = SlowReceiver() if slow else None
    urls = [f"http://127.0.0.1:{fast_port}{p}" for p in FAST_PATHS]
    urls += [slow_rx.url()] if slow_rx else []
    try:
        with services() as env:
            env = {**env, "HOOKLINE_ALLOW_PRIVATE_ENDPOINTS": "true"}
            _fill_outbox(env, events, urls)
            worker = hookline(["worker", "--concurrency", "1", "--metrics-port", "0",
                               "--loglevel", "warning"], env, "/tmp/bench-fanout-worker.log")
            with stopping([worker]):
                app = make_app(config.load(env))
                wait_ready(app)
                rss, cpu = RssSampler(worker.pid), CpuMeter(tree(worker.pid))
                # The rest of the machine's work per delivery: the receiver answering,
                # PostgreSQL claiming and recording (and this script's progress count).
                backends = PgBackends(env["DATABASE_URL"])
                rx_cpu, pg_cpu = CpuMeter(tree(rx_pid)), CpuMeter(backends)
                for meter in (rss, cpu, rx_cpu, pg_cpu):
                    meter.start()
                # Unprepared: a plan made on the first, near-empty look could scan the
                # whole outbox on every later one, taking CPU from what is measured.
                with psycopg.connect(env["DATABASE_URL"], autocommit=True,
                                     prepare_threshold=None) as conn:
                    total = conn.execute(_FAST_LEFT).fetchone()[0]
                    started = time.perf_counter()
                    app.send_task(queues.TASK_DISPATCH, queue=queues.FANOUT)
                    while conn.execute(_FAST_LEFT).fetchone()[0]:
                        time.sleep(POLL_SECONDS)
                    elapsed = time.perf_counter() - started
                used, peak = cpu.stop(), rss.stop()
                rx_used, pg_used = rx_cpu.stop(), pg_cpu.stop()
                backends.close()
    finally:
        if slow_rx:
            slow_rx.close()
    return {"fast_deliveries": total, "seconds": elapsed, "fast_per_s": total / elapsed,
            "cpu_us_per_delivery": used / total * 1e6, "peak_rss_mb": peak,
            "receiver_cpu_us": rx_used / total * 1e6, "postgres_cpu_us": pg_used / total * 1e6}


def run(events: int = 5000, rounds: int = 1, quick: bool = False) -> dict[str, dict]:
    if quick:
        events = min(events, 500)
    runs: dict[str, list[dict[str, float]]] = {"fast": [], "with_slow": []}
    with fast_receiver() as (port, rx_pid):
        for _ in range(rounds):
            runs["fast"].append(run_once(events, False, port, rx_pid))
            runs["with_slow"].append(run_once(events, True, port, rx_pid))
    out = {k: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for k, rs in runs.items()}
    out["ratio"] = {"fast_rate": out["with_slow"]["fast_per_s"] / out["fast"]["fast_per_s"]}
    return out


def report(res: dict[str, dict]) -> list[str]:
    f, s = res["fast"], res["with_slow"]
    return [
        f"fan-out 3 fast endpoints: {f['fast_per_s']:.0f} deliveries/s in 1 worker process "
        f"(target >= 2000); {f['fast_deliveries']:.0f} deliveries in {f['seconds']:.1f}s, "
        f"{f['cpu_us_per_delivery']:.0f} us worker CPU each (receiver "
        f"{f['receiver_cpu_us']:.0f} us, PostgreSQL {f['postgres_cpu_us']:.0f} us), "
        f"peak RSS {f['peak_rss_mb']:.0f} MB",
        f"fan-out with a 4th endpoint answering after {SLOW_SECONDS:.0f} s: fast endpoints "
        f"{s['fast_per_s']:.0f} deliveries/s; ratio {res['ratio']['fast_rate']:.2f} of "
        f"without it (target >= 0.90)",
    ]


def main() -> None:
    cli(run, report, events=5000, rounds=1)


if __name__ == "__main__":
    main()
