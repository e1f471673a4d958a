"""Latency from the 202 to committed state, at a steady rate of mixed callbacks.

The production processes run (`hookline ingest`, `hookline worker`, `hookline
scheduler`); an open-loop load generator posts callbacks over loopback at a fixed
rate (each request has its own send time, so a slow answer does not slow the
rate down) and notes when each 202 arrived. A poller asks PostgreSQL every few
milliseconds which of the waiting ingest ids are committed (an events row, or a
dead letter); latency is first-seen minus 202.

Copies of one body (the workload's duplicates) form a group: whichever copy is
applied first is timed, and the others stop being waited for, since by design
they change nothing a poller could see. The worker's own
hookline_ack_to_commit_seconds histogram is read at the end as a cross-check.

    python deploy/bench/latency.py [--rate 1000] [--seconds 30]
"""

from __future__ import annotations

import http.client
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import redis
from common import (
    RssSampler,
    cli,
    free_port,
    hookline,
    percentile,
    services,
    stopping,
    wait_http,
    wait_ready,
)

from shared import config, inbox
from workers.celery_app import make_app

POLL_SECONDS = 0.005
CONNECTIONS = 8
SETTLE_SECONDS = 30  # after the last request, how long committed state may take
# BENCH_WORKER_LOGLEVEL=info logs every batch (size, time) to /tmp/bench-latency-worker.log.
WORKER_LOGLEVEL = os.environ.get("BENCH_WORKER_LOGLEVEL", "warning")


@dataclass
class Request:
    path: str
    body: bytes
    group: int  # index of the first request with this body (its own, for junk bodies)


@dataclass
class Books:
    """What the generator sent and what the poller saw, shared between threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, float] = field(default_factory=dict)      # ingest id -> 202 time
    group_of: dict[str, int] = field(default_factory=dict)
    members: dict[int, list[str]] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    committed: dict[str, float] = field(default_factory=dict)  # ingest id -> first seen
    sent: int = 0
    failures: int = 0
    lag: float = 0.0  # worst lateness of a send against its schedule


def _requests(n: int) -> list[Request]:
    from workload import BROKEN, callbacks

    first: dict[bytes, int] = {}
    out = []
    for i, (source, event, body) in enumerate(callbacks(n)):
        path = f"/callbacks/{source}" + (f"/{event}" if event else "")
        # Every invalid callback is its own dead letter, even with a body seen before.
        group = i if body in BROKEN else first.setdefault(body, i)
        out.append(Request(path, body, group))
    return out


def _sender(port: int, reqs: list[Request], offset: int, rate: float, t0: float,
            books: Books) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    for i in range(offset, len(reqs), CONNECTIONS):
        req = reqs[i]
        due = t0 + i / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        lag = time.time() - due
        try:
            conn.request("POST", req.path, body=req.body, headers=headers)
            resp = conn.getresponse()
            answer = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with books.lock:
                books.failures += 1
            continue
        acked = time.time()
        with books.lock:
            books.sent += 1
            books.lag = max(books.lag, lag)
            if resp.status != 202:
                books.failures += 1
                continue
            ingest_id = orjson.loads(answer)["id"]
            books.acked[ingest_id] = acked
            books.group_of[ingest_id] = req.group
            books.members.setdefault(req.group, []).append(ingest_id)
            if not any(m in books.committed for m in books.members[req.group]):
                books.pending.add(ingest_id)
    conn.close()


# Only the partitions the workload's events go to: its provider times are within
# hours of now (workload.restamp; old_share 0), so the bounds prune events to today's
# partition or two at plan time. Unbounded, every 5 ms the poller planned and probed
# every events partition and the DEFAULT one beside the drain it times (issue 25).
_SEEN = """
SELECT ingest_id FROM events WHERE ingest_id = ANY(%(ids)s)
    AND occurred_at >= %(since)s AND occurred_at < %(until)s
UNION SELECT ingest_id FROM dead_letters WHERE ingest_id = ANY(%(ids)s)
"""
WORKLOAD_SPAN = timedelta(days=1)


def _poller(url: str, books: Books, done: threading.Event) -> None:
    now = datetime.now(UTC)
    span = {"since": now - WORKLOAD_SPAN, "until": now + WORKLOAD_SPAN}
    # Never a prepared statement: its plan would be made while the tables are nearly
    # empty (a sequential scan) and kept as they grow, until polling costs more than
    # the work it watches.
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        while not done.is_set():
            started = time.time()
            with books.lock:
                ids = list(books.pending)
            if ids:
                # Visible at this query's snapshot, so committed at or before `started`.
                seen = [r[0] for r in conn.execute(_SEEN, {"ids": ids, **span})]
                with books.lock:
                    for ingest_id in seen:
                        books.committed[ingest_id] = started
                        for other in books.members[books.group_of[ingest_id]]:
                            books.pending.discard(other)
            time.sleep(max(0.0, POLL_SECONDS - (time.time() - started)))


def _histogram(port: int) -> dict[float, float]:
    """Cumulative counts of hookline_ack_to_commit_seconds by upper bound."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    buckets: dict[float, float] = {}
    for le, value in re.findall(
            r'^hookline_ack_to_commit_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M):
        buckets[float(le)] = buckets.get(float(le), 0.0) + float(value)
    return buckets


def _start(env: dict[str, str], concurrency: int) -> tuple[dict[str, int], list]:
    ports = {"ingest": free_port(), "metrics": free_port()}
    procs = [
        hookline(["worker", "--concurrency", str(concurrency), "--loglevel", WORKER_LOGLEVEL,
                  "--metrics-port", str(ports["metrics"])], env, "/tmp/bench-latency-worker.log"),
        hookline(["ingest", "--host", "127.0.0.1", "--port", str(ports["ingest"])], env,
                 "/tmp/bench-latency-ingest.log"),
        hookline(["scheduler", "--loglevel", "warning", "--schedule",
                  "/tmp/bench-latency-beat"], env, "/tmp/bench-latency-beat.log"),
    ]
    return ports, procs


def run(rate: float = 1000, seconds: float = 30, concurrency: int = 2) -> dict[str, float]:
    reqs = _requests(int(rate * seconds))
    books = Books()
    with services() as env:
        ports, procs = _start(env, concurrency)
        with stopping(procs):
            wait_http(f"http://127.0.0.1:{ports['ingest']}/healthz")
            wait_ready(make_app(config.load(env)))
            sampler = RssSampler(procs[0].pid)
            sampler.start()
            done = threading.Event()
            poller = threading.Thread(target=_poller, args=(env["DATABASE_URL"], books, done))
            poller.start()
            t0 = time.time() + 0.5
            senders = [threading.Thread(target=_sender,
                                        args=(ports["ingest"], reqs, k, rate, t0, books))
                       for k in range(CONNECTIONS)]
            for s in senders:
                s.start()
            for s in senders:
                s.join()
            sent_for = time.time() - t0
            deadline = time.time() + SETTLE_SECONDS
            while books.pending and time.time() < deadline:
                time.sleep(0.05)
            done.set()
            poller.join()
            peak = sampler.stop()
            hist = _histogram(ports["metrics"])
            depths = inbox.depths(redis.Redis.from_url(env["REDIS_URL"]), 60)
    lat = [(t - books.acked[i]) * 1000 for i, t in books.committed.items()]
    # p50 per 5 s of sending: a neighbour's burst shows as one bad window, not a bad run.
    windows: dict[int, list[float]] = {}
    for i, t in books.committed.items():
        windows.setdefault(int((books.acked[i] - t0) // 5), []).append((t - books.acked[i]) * 1000)
    total = hist.get(float("inf"), 0.0)
    return {
        "rate": books.sent / sent_for, "sent": books.sent, "timed": len(lat),
        "untimed_copies": len(books.acked) - len(lat) - len(books.pending),
        "failures": books.failures, "never_seen": len(books.pending),
        "left_in_redis": depths.inbox + depths.retry + depths.leases,
        "worst_send_lag_ms": books.lag * 1000,
        "p50_ms": percentile(lat, 0.50), "p99_ms": percentile(lat, 0.99),
        "max_ms": max(lat, default=float("nan")),
        "hist_le_50ms": hist.get(0.05, 0.0) / total if total else float("nan"),
        "hist_le_500ms": hist.get(0.5, 0.0) / total if total else float("nan"),
        "peak_rss_mb": peak,
        "p50_by_5s_ms": [round(percentile(windows[k], 0.5)) for k in sorted(windows)],
    }


def report(res: dict[str, float]) -> list[str]:
    return [
        f"latency 202 -> committed at {res['rate']:.0f} callbacks/s: p50 {res['p50_ms']:.1f} ms "
        f"(target < 50), p99 {res['p99_ms']:.1f} ms (target < 500), max {res['max_ms']:.0f} ms",
        f"latency bookkeeping: {res['sent']} sent, {res['timed']} timed, "
        f"{res['untimed_copies']} duplicate copies untimed, {res['failures']} failed, "
        f"{res['never_seen']} never seen, {res['left_in_redis']} left in Redis; worst send lag "
        f"{res['worst_send_lag_ms']:.0f} ms; poll every {POLL_SECONDS * 1000:.0f} ms",
        f"latency p50 in each 5 s of sending (ms): {res['p50_by_5s_ms']}",
        f"latency cross-check (worker histogram): {res['hist_le_50ms']:.1%} committed within "
        f"50 ms, {res['hist_le_500ms']:.1%} within 500 ms",
        f"latency worker peak RSS: {res['peak_rss_mb']:.0f} MB (target < 200 MB)",
    ]


def main() -> None:
    cli(run, report, rate=1000.0, seconds=30.0, concurrency=2)


if __name__ == "__main__":
    main()
