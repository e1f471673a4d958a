"""What the secondary indexes on the drain's tables cost PostgreSQL per callback:
the in-process drain of drain_cpu.py on a fresh database with all of them, and
with a group of them dropped, alternating (A, B, A, B, ...), medians reported.

    python deploy/bench/index_cost.py [--events 20000] [--rounds 3]

Every index here serves a reader (the /v1 API's filters and paging, retention,
following one callback by its ingest id); the figures say what each group costs
the write path, for an operator deciding what to keep on a write-heavy install.
Primary keys and the unique constraints deduplication relies on are never dropped.
"""

from __future__ import annotations

import argparse
import logging
import statistics

import psycopg
from common import services
from drain_cpu import once

GROUPS: dict[str, tuple[str, ...]] = {
    "all indexes": (),
    "events: without its 4 secondary indexes": (
        "events_message", "events_type_id", "events_ingest_id", "events_received_at"),
    "status history: without its 2": (
        "message_status_history_message", "message_status_history_event"),
    # consent_history_key stays: the consent step's own lookup of a key's latest
    # entry needs it (without it: +18 us per callback, measured).
    "inbound and consent: without their 5": (
        "inbound_messages_msisdn", "inbound_messages_sender", "subscriptions_status",
        "subscriptions_msisdn", "consent_history_msisdn"),
}


def main() -> None:
    logging.disable(logging.WARNING)
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    results: dict[str, list[dict[str, float]]] = {g: [] for g in GROUPS}
    for _ in range(args.rounds):
        for group, dropped in GROUPS.items():
            with services() as env:
                with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
                    for name in dropped:
                        conn.execute(f"DROP INDEX {name}")
                results[group].append(once(env, args.events, "current"))
    base = statistics.median(r["pg_us"] for r in results["all indexes"])
    for group, rs in results.items():
        pg = statistics.median(r["pg_us"] for r in rs)
        worker = statistics.median(r["cpu_us"] for r in rs)
        runs = ", ".join(f"{r['pg_us']:.1f}" for r in rs)
        print(f"{group:40s} PostgreSQL {pg:5.1f} us/callback ({pg - base:+5.1f}), worker "
              f"{worker:5.1f} us [PostgreSQL per run: {runs}]")


if __name__ == "__main__":
    main()
