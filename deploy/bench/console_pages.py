"""How fast the console's pages answer on a big database.

Fills a fresh database with 1 million events (generate_series SQL: sources, messages
and their status history, dead letters, endpoints, deliveries and attempts,
subscriptions and consent history, spread over a week with a busy last hour), then
times each page through the Flask test client (signed in, real PostgreSQL and Redis)
and prints the median and p95 of N requests, and the plans of the console's queries.

    python deploy/bench/console_pages.py [--events 1000000] [--requests 30]

Uses DATABASE_URL / REDIS_URL when set (a database of its own is created and dropped),
embedded servers otherwise. Results: docs/console.md.
"""

from __future__ import annotations

import re
import statistics
import time

import psycopg
from common import flags, percentile, services

from shared import config
from shared.runtime import Runtime

# {n}: events. The last hour holds a tenth of them; the rest spread over the week before.
FILL = [
    ("events", """
INSERT INTO events (source, dedupe_key, type, channel, message_id, sender, msisdn, status,
                    provider_status, provider_event_id, occurred_at, ingest_id, received_at)
SELECT (ARRAY['kaleyra-rcs','kaleyra-io','comapi'])[1 + (i / 4) % 3], 'e:' || i,
       'message.' || (ARRAY['sent','delivered','read','failed'])[1 + i % 4],
       (ARRAY['rcs','sms','whatsapp'])[1 + (i / 4) % 3], 'm' || (i / 4), 'snd' || (i / 4) % 20,
       '9170' || lpad(((i / 4) % 100000)::text, 8, '0'),
       (ARRAY['sent','delivered','read','failed'])[1 + i % 4],
       upper((ARRAY['sent','delivered','read','failed'])[1 + i % 4]), 'pe' || i, t, 'in' || i, t
FROM generate_series(1, {n}) AS i,
     LATERAL (SELECT CASE
         WHEN i > {n} * 0.9
         THEN now() - interval '1 hour' + (i - {n} * 0.9) * interval '1 hour' / ({n} * 0.1)
         ELSE now() - interval '7 days' + i * interval '167 hours' / ({n} * 0.9)
         END AS t) AS ts
"""),
    ("messages", """
INSERT INTO messages (source, message_id, channel, sender, msisdn, status, status_rank, sent_at,
                      delivered_at, read_at, last_event_at)
SELECT source, message_id, min(channel), min(sender), min(msisdn), 'read', 5,
       min(occurred_at), min(occurred_at), max(occurred_at), max(occurred_at)
FROM events GROUP BY source, message_id
"""),
    ("message_status_history", """
INSERT INTO message_status_history (event_id, source, message_id, status, provider_status,
                                    occurred_at)
SELECT id, source, message_id, status, provider_status, occurred_at FROM events
"""),
    ("dead_letters", """
INSERT INTO dead_letters (ingest_id, source, event, reason, body, headers, received_at,
                          created_at, replayed_at, replay_ingest_id)
SELECT 'dl' || i, (ARRAY['kaleyra-rcs','kaleyra-io','comapi'])[1 + i % 3], NULL,
       (ARRAY['invalid JSON: unexpected end', 'unsupported event type', 'missing messageId',
              'bad timestamp'])[1 + i % 4],
       convert_to('{{"broken": ' || i, 'UTF8'), '{{}}'::jsonb, t, t,
       CASE WHEN i % 5 = 0 THEN t END, CASE WHEN i % 5 = 0 THEN 'rp' || i END
FROM generate_series(1, {n} / 50) AS i,
     LATERAL (SELECT now() - interval '7 days' + i * interval '7 days' / ({n} / 50) AS t) ts
"""),
    ("endpoints", """
INSERT INTO endpoints (id, url, event_types, secret, consecutive_failures, failing_since,
                       last_success_at, last_failure_at)
SELECT 'ep_' || lpad(i::text, 12, '0'), 'https://customer' || i || '.example/hooks',
       ARRAY['*'], 'not-a-real-secret', CASE WHEN i % 10 = 0 THEN 7 ELSE 0 END,
       CASE WHEN i % 10 = 0 THEN now() - interval '3 hours' END, now(),
       CASE WHEN i % 10 = 0 THEN now() END
FROM generate_series(1, 50) AS i
"""),
    ("deliveries", """
INSERT INTO deliveries (endpoint_id, event_id, type, payload, message_key, occurred_at, status,
                        attempts, created_at, last_attempt_at, last_status_code, last_error)
SELECT 'ep_' || lpad((1 + e.id % 50)::text, 12, '0'), e.id, e.type,
       jsonb_build_object('type', e.type, 'data', jsonb_build_object('message_id', e.message_id)),
       e.source || ':' || e.message_id, e.occurred_at, s.status, 1, e.received_at, e.received_at,
       CASE WHEN s.status = 'succeeded' THEN 200 ELSE 500 END,
       CASE WHEN s.status <> 'succeeded' THEN 'HTTP 500' END
FROM events e, LATERAL (SELECT CASE WHEN e.id % 50 = 0 THEN 'dead'
                                    WHEN e.id % 23 = 0 THEN 'failed'
                                    ELSE 'succeeded' END AS status) s
WHERE e.id % 2 = 0
"""),
    ("delivery_attempts", """
INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code,
                               response_body, error)
SELECT id, last_attempt_at, 40 + seq % 200, last_status_code,
       CASE WHEN last_status_code = 200 THEN 'ok' ELSE 'upstream error' END, last_error
FROM deliveries
"""),
    ("subscriptions", """
INSERT INTO subscriptions (channel, sender, msisdn, status, scope, changed_at, event_id, source,
                           event_key)
SELECT (ARRAY['rcs','sms','whatsapp'])[1 + i % 3], 'snd' || i % 20,
       '9170' || lpad(i::text, 8, '0'), CASE WHEN i % 10 < 3 THEN 'opted_out' ELSE 'opted_in' END,
       'sender', now() - i * interval '1 second', i, 'kaleyra-io', 'k' || i
FROM generate_series(1, {n} / 10) AS i
"""),
    ("consent_history", """
INSERT INTO consent_history (event_id, source, event_key, event_type, channel, sender, msisdn,
                             scope, status, occurred_at, transition)
SELECT event_id, source, event_key, 'subscription.' || status, channel, sender, msisdn, scope,
       status, changed_at, true FROM subscriptions
"""),
]


def fill(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table, sql in FILL:
            started = time.perf_counter()
            rows = conn.execute(sql.format(n=n)).rowcount
            print(f"  {table:<24} {rows:>9,} rows  {time.perf_counter() - started:6.1f} s",
                  flush=True)
        conn.execute("VACUUM ANALYZE")


def pages(url: str) -> list[tuple[str, str]]:
    """(label, path) of every page, with ids that exist in the filled database."""
    with psycopg.connect(url) as conn:
        mid_letter = conn.execute("SELECT id FROM dead_letters ORDER BY id "
                                  "OFFSET (SELECT count(*) / 2 FROM dead_letters) LIMIT 1"
                                  ).fetchone()[0]
        delivery = conn.execute("SELECT id FROM deliveries WHERE status = 'dead' "
                                "ORDER BY seq DESC LIMIT 1").fetchone()[0]
        opted_out = conn.execute("SELECT channel, sender, msisdn FROM subscriptions "
                                 "WHERE status = 'opted_out' LIMIT 1").fetchone()
    ep = "ep_000000000010"
    return [
        ("overview", "/console/"),
        ("overview panel (htmx poll)", "/console/overview/panel"),
        ("message lookup", "/console/messages?message_id=m123456"),
        ("message lookup, with source", "/console/messages?message_id=m123456&source=kaleyra-rcs"),
        ("dead letters", "/console/dead-letters"),
        ("dead letters, older page", f"/console/dead-letters?before={mid_letter}"),
        ("dead letters, by source", "/console/dead-letters?source=comapi"),
        ("dead letters, by reason", "/console/dead-letters?reason=timestamp"),
        ("dead letters, by time", "/console/dead-letters?since=2020-01-01&until="
                                  "2100-01-01"),
        ("dead letter", f"/console/dead-letters/{mid_letter}"),
        ("endpoints (health)", "/console/endpoints"),
        ("endpoint + deliveries", f"/console/endpoints/{ep}"),
        ("endpoint, dead deliveries", f"/console/endpoints/{ep}?status=dead"),
        ("delivery + attempts", f"/console/deliveries/{delivery}"),
        ("consent lookup", "/console/consent?channel={}&sender={}&msisdn={}".format(*opted_out)),
        ("suppression list", "/console/consent"),
        ("suppression list, by channel", "/console/consent?s_channel=sms"),
        ("suppression list, by number", f"/console/consent?s_msisdn={opted_out[2]}"),
    ]


def signed_in(rt: Runtime):
    from ingest.app import create_app

    client = create_app(rt=rt, send_drain=lambda: None).test_client()
    page = client.get("/console/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    resp = client.post("/console/login", data={"csrf_token": token, "password": "bench"})
    assert resp.status_code == 302, resp.status_code
    return client


def time_pages(client, targets: list[tuple[str, str]], n: int) -> None:
    print(f"\n{'page':<32} {'median ms':>10} {'p95 ms':>8} {'KiB':>6}")
    for label, path in targets:
        times, size = [], 0
        for _ in range(n + 2):
            started = time.perf_counter()
            resp = client.get(path)
            body = resp.get_data()
            times.append((time.perf_counter() - started) * 1000)
            assert resp.status_code == 200, (path, resp.status_code)
            size = len(body)
        times = times[2:]  # the first two warm caches and plans
        print(f"{label:<32} {statistics.median(times):>10.1f} {percentile(times, 0.95):>8.1f} "
              f"{size / 1024:>6.0f}", flush=True)
    started = time.perf_counter()
    resp = client.get("/console/consent/suppression.csv")
    lines = resp.get_data().count(b"\n") - 1
    print(f"{'suppression CSV (whole list)':<32} {(time.perf_counter() - started) * 1000:>10.1f}"
          f" {'':>8} {lines:>6,} rows")


def explain(url: str) -> None:
    """The plans of the queries behind the heaviest pages (node types and timing)."""
    from shared.db import dead_letters, stats, subscriptions
    from shared.db.outbox import admin
    from shared.db.paging import Page, page_sql

    cases = [
        ("overview series (events)", stats._FIRST_IDS.format(table="events", column="received_at"),
         {"minutes": 60, "rows": stats.BOUNDARY_ROWS}),
        ("endpoint health (50 endpoints)", admin._RECENT,
         ([f"ep_{i:012d}" for i in range(1, 51)], 100)),
        ("dead letters by source",
         *page_sql(dead_letters._RECENT, Page(50), source="comapi")),
        ("suppression list by channel",
         *page_sql(subscriptions._page, Page(50), channel="sms", status="opted_out")),
    ]
    with psycopg.connect(url) as conn:
        for label, sql, params in cases:
            plan = [r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)]
            nodes = sorted({m.group(1).strip() for line in plan
                            if (m := re.search(r"(?:->\s+)?((?:Index Only |Index |Seq |Bitmap "
                                               r"Heap |Bitmap Index )Scan(?: Backward)?"
                                               r"(?: using \w+)?(?: on \w+)?)", line))})
            total = next(line for line in plan if line.startswith("Execution Time"))
            print(f"\n{label}: {total}\n  " + "\n  ".join(nodes))


def main() -> None:
    args = flags(__doc__, events=1_000_000, requests=30)
    with services() as env:
        url = env["DATABASE_URL"]
        print(f"filling a database with {args.events:,} events", flush=True)
        fill(url, args.events)
        rt = Runtime(config.load({**env, "HOOKLINE_DB_POOL_SIZE": "2"}))
        try:
            time_pages(signed_in(rt), pages(url), args.requests)
            explain(url)
        finally:
            rt.close()


if __name__ == "__main__":
    main()
