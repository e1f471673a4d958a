"""Fairness between tenants: tenant B's delivery latency while tenant A has a backlog of
deliveries pending to a slow endpoint, against B's latency on an idle system.

Tenant A owns one endpoint that answers after 2 s, with ``--backlog`` deliveries
(100,000 by default) already pending to it, written straight into the outbox. Tenant
B owns one endpoint on the fast local receiver. One `hookline worker --concurrency 1`
dispatches; this script applies B's callbacks through the real drain, ``--rate`` a
second for ``--seconds``, and reads each B delivery's latency from the outbox
(created_at to its successful attempt, both PostgreSQL's clock). Runs alternate idle /
loaded. Target: B's p99 loaded within 2x of idle.

    python deploy/bench/fairness.py [--backlog 100000] [--rate 50] [--seconds 20] [--rounds 1]
"""

from __future__ import annotations

import logging
import statistics
import time

import orjson
import psycopg
from common import cli, fast_receiver, hookline, percentile, services, stopping, wait_ready
from fanout_bench import SlowReceiver

from shared import config, inbox, secretbox, signing
from shared.db import endpoints, tenants
from shared.envelope import Envelope, new_id
from shared.runtime import Runtime, install
from workers import queues
from workers.celery_app import make_app
from workers.tasks import drain_round

SENDER_B = "bench_tenant_b"

_BACKLOG = """
INSERT INTO deliveries (endpoint_id, event_id, type, payload, occurred_at, next_attempt_at)
SELECT %s, -g, 'message.delivered', '{"type": "message.delivered"}', now(), now()
FROM generate_series(1, %s) AS g
"""
_LATENCIES = """
SELECT extract(epoch FROM d.last_attempt_at - d.created_at)
FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
WHERE e.tenant_id = %s AND d.status = 'succeeded'
"""
_B_LEFT = """
SELECT count(*) FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
WHERE e.tenant_id = %s AND d.status IN ('pending', 'failed')
"""


def _receipt(n: int) -> bytes:
    return orjson.dumps({"type": "DELIVERED", "from": "917673908652", "to": SENDER_B,
                         "sentAt": "2025-06-16T13:46:38.929Z", "messageId": f"fair-{n}",
                         "eventId": f"fair-{n}"})


def _setup(rt: Runtime, slow_url: str, fast_url: str, backlog: int) -> str:
    box = secretbox.box(rt.settings.secret_keys)
    with rt.pool.connection() as conn:
        a = tenants.create(conn, "A", [])["id"]
        b = tenants.create(conn, "B", [{"source": "kaleyra-rcs", "sender": SENDER_B}])["id"]
        slow = endpoints.create(conn, url=slow_url, event_types=["*"], tenant_id=a,
                                secret=box.seal(signing.new_secret()))
        endpoints.create(conn, url=fast_url, event_types=["*"], tenant_id=b,
                         secret=box.seal(signing.new_secret()))
        if backlog:
            conn.execute(_BACKLOG, (slow["id"], backlog))
    return b


def run_once(loaded: bool, backlog: int, rate: int, seconds: int, fast_port: int
             ) -> dict[str, float]:
    slow_rx = SlowReceiver()
    try:
        with services() as env:
            env = {**env, "HOOKLINE_ALLOW_PRIVATE_ENDPOINTS": "true"}
            rt = Runtime(config.load(env))
            install(rt)
            b = _setup(rt, slow_rx.url(), f"http://127.0.0.1:{fast_port}/b",
                       backlog if loaded else 0)
            worker = hookline(["worker", "--concurrency", "1", "--metrics-port", "0",
                               "--loglevel", "warning"], env, "/tmp/bench-fairness-worker.log")
            with stopping([worker]):
                app = make_app(config.load(env))
                wait_ready(app)
                app.send_task(queues.TASK_DISPATCH, queue=queues.FANOUT)
                logging.disable(logging.WARNING)
                try:
                    for n in range(rate * seconds):
                        env_ = Envelope(id=new_id(), source="kaleyra-rcs", event=None,
                                        received_at=time.time(), body=_receipt(n))
                        inbox.push(rt.redis, env_.encode())
                        while drain_round(rt) is not None:
                            pass
                        time.sleep(1 / rate)
                finally:
                    logging.disable(logging.NOTSET)
                with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
                    deadline = time.monotonic() + 120
                    while conn.execute(_B_LEFT, (b,)).fetchone()[0] and \
                            time.monotonic() < deadline:
                        time.sleep(0.2)
                    latencies = [float(r[0]) for r in conn.execute(_LATENCIES, (b,))]
            rt.close()
    finally:
        slow_rx.close()
    return {"deliveries": len(latencies), "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000}


def run(backlog: int = 100000, rate: int = 50, seconds: int = 20, rounds: int = 1,
        quick: bool = False) -> dict[str, dict]:
    if quick:
        backlog, seconds = min(backlog, 2000), min(seconds, 3)
    runs: dict[str, list[dict[str, float]]] = {"idle": [], "loaded": []}
    with fast_receiver() as (port, _):
        for _ in range(rounds):
            runs["idle"].append(run_once(False, backlog, rate, seconds, port))
            runs["loaded"].append(run_once(True, backlog, rate, seconds, port))
    out = {k: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for k, rs in runs.items()}
    out["ratio"] = {"p99": out["loaded"]["p99_ms"] / out["idle"]["p99_ms"]}
    out["backlog"] = {"deliveries": backlog}
    return out


def report(res: dict[str, dict]) -> list[str]:
    i, lo = res["idle"], res["loaded"]
    return [
        f"fairness: tenant B p99 {i['p99_ms']:.0f} ms idle, {lo['p99_ms']:.0f} ms with tenant "
        f"A's {res['backlog']['deliveries']:.0f} deliveries pending to a slow endpoint; "
        f"ratio {res['ratio']['p99']:.2f} (target <= 2.0); p50 {i['p50_ms']:.0f} / "
        f"{lo['p50_ms']:.0f} ms; {lo['deliveries']:.0f} B deliveries measured",
    ]


def main() -> None:
    cli(run, report, backlog=100000, rate=50, seconds=20, rounds=1, quick=0)


if __name__ == "__main__":
    main()
