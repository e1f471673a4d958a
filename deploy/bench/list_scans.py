"""What a list page with each filter reads on big tables (EXPLAIN ANALYZE, BUFFERS).

Fills a fresh database through tests/db/scan_support.py (N rows in each list table,
ids rising with time), reads a page of 50 with each filter through the data layer,
and prints the plan's execution time (median of R runs), rows read and buffers.

    python deploy/bench/list_scans.py [--rows 300000] [--runs 5]

Uses DATABASE_URL when set (a database of its own is created and dropped), embedded
PostgreSQL otherwise. Results: docs/console.md, "Performance".
"""

from __future__ import annotations

import statistics
import time

import psycopg
from common import flags, services

from tests.db.scan_support import Recording, cases, explain_last, fill


def main() -> None:
    args = flags(__doc__, rows=300_000, runs=5)
    with services() as env:
        url = env["DATABASE_URL"]
        started = time.perf_counter()
        fill(url, args.rows)
        print(f"filled {args.rows:,} rows a table in {time.perf_counter() - started:.0f} s")
        print(f"{'page':<48} {'ms':>8} {'rows':>8} {'buffers':>8}")
        with psycopg.connect(url, cursor_factory=Recording) as conn:
            for case in cases(args.rows):
                plans = []
                for _ in range(args.runs):
                    case.page(conn)
                    plans.append(explain_last(conn))
                ms = statistics.median(p.ms for p in plans)
                print(f"{case.label:<48} {ms:>8.2f} {plans[-1].rows:>8,} "
                      f"{plans[-1].buffers:>8,}", flush=True)


if __name__ == "__main__":
    main()
