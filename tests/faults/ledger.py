"""The ledger: every callback answered 202, checked against PostgreSQL afterwards.

A callback answered 202 must end as exactly one effect: an events row (its
dedupe key; re-posts of one key share it) or, for a body that cannot be
applied, a dead letter under its ingest id. Missing is a loss. A second effect
is a duplicate: two status-history rows for one event, one callback both
applied and dead-lettered, an event applied under one ingest id while a provider's
duplicate of it is dead-lettered under another, two consent-history rows for one
event and one subscription, two deliveries of one event to one endpoint. A message
whose stored state (status, times, failure reason and code) disagrees with its
events, or a subscription whose state is not its winning consent event's, is in the
wrong state.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import psycopg

from shared.model import STATUS_ORDER, STATUS_RANK


@dataclass(frozen=True, slots=True)
class Expect:
    """What one posted body must become."""

    source: str
    key: str | None = None  # dedupe key when it must become an event; None: a dead letter
    message_id: str | None = None

    @property
    def event(self) -> bool:
        return self.key is not None


@dataclass
class Audit:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong_state: list[str] = field(default_factory=list)
    misfiled: list[str] = field(default_factory=list)  # applied that should be dead, or back

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.wrong_state or self.misfiled)

    def __str__(self) -> str:
        parts = [f"{name}={len(items)} {items[:5]}" for name, items in (
            ("lost", self.lost), ("duplicated", self.duplicated),
            ("wrong_state", self.wrong_state), ("misfiled", self.misfiled)) if items]
        return "; ".join(parts) or "clean"


class Ledger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted: dict[str, Expect] = {}
        self.codes: Counter[str] = Counter()

    def record(self, code: int | str, ingest_id: str | None, expect: Expect) -> None:
        with self._lock:
            self.codes[str(code)] += 1
            if code == 202 and ingest_id:
                self.accepted[ingest_id] = expect

    def __len__(self) -> int:
        return len(self.accepted)

    def _groups(self) -> tuple[dict[tuple[str, str], list[str]], list[str]]:
        with self._lock:
            items = list(self.accepted.items())
        by_key: dict[tuple[str, str], list[str]] = defaultdict(list)
        dead: list[str] = []
        for ingest_id, e in items:
            if e.event:
                by_key[(e.source, e.key)].append(ingest_id)
            else:
                dead.append(ingest_id)
        return by_key, dead

    def outstanding(self, conn: psycopg.Connection) -> int:
        """How many accepted callbacks have no effect in PostgreSQL yet."""
        by_key, dead = self._groups()
        have = _event_keys(conn, [k for _, k in by_key])
        letters = _letters(conn, list(self.accepted))
        return (sum(1 for k in by_key if k not in have)
                + sum(1 for i in dead if i not in letters))

    def audit(self, conn: psycopg.Connection) -> Audit:
        a = Audit()
        by_key, dead = self._groups()
        have = _event_keys(conn, [k for _, k in by_key])
        letters = _letters(conn, list(self.accepted))
        for key, ids in by_key.items():
            if key in have:
                # A provider's retry (a new ingest id, the same event) dead-lettered
                # while its twin applied: one callback, two answers.
                a.duplicated += [f"{i} ({key[1]}) applied under another ingest id and "
                                 f"dead-lettered: {letters[i]}" for i in ids if i in letters]
                continue
            misfiled = [i for i in ids if i in letters]
            if misfiled:
                a.misfiled += [f"{i} ({key[1]}) dead-lettered: {letters[i]}" for i in misfiled]
            else:
                a.lost += [f"{i} ({key[1]})" for i in ids]
        for ingest_id in dead:
            if ingest_id not in letters:
                a.lost.append(f"{ingest_id} (dead letter expected)")
        a.misfiled += [f"{i} applied, expected a dead letter"
                       for i in _applied_ids(conn, dead)]
        a.duplicated += _double_effects(conn)
        a.wrong_state += message_state_errors(conn)
        a.wrong_state += failure_errors(conn)
        a.wrong_state += consent_errors(conn)
        return a


def _event_keys(conn: psycopg.Connection, keys: list[str]) -> set[tuple[str, str]]:
    rows = conn.execute("SELECT source, dedupe_key FROM events WHERE dedupe_key = ANY(%s)",
                        (keys,)).fetchall()
    return {(s, k) for s, k in rows}


def _letters(conn: psycopg.Connection, ids: list[str]) -> dict[str, str]:
    rows = conn.execute("SELECT ingest_id, reason FROM dead_letters WHERE ingest_id = ANY(%s)",
                        (ids,)).fetchall()
    return dict(rows)


def _applied_ids(conn: psycopg.Connection, ids: list[str]) -> list[str]:
    rows = conn.execute("SELECT ingest_id FROM events WHERE ingest_id = ANY(%s)", (ids,))
    return [r[0] for r in rows]


def _table_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def _double_effects(conn: psycopg.Connection) -> list[str]:
    out = [f"event {e} has {n} status-history rows" for e, n in conn.execute(
        "SELECT event_id, count(*) FROM message_status_history GROUP BY event_id "
        "HAVING count(*) > 1")]
    out += [f"ingest id {i} is both an event and a dead letter" for (i,) in conn.execute(
        "SELECT DISTINCT e.ingest_id FROM events e JOIN dead_letters d USING (ingest_id)")]
    out += [f"consent event {k} recorded {n} times for {c}/{s}/{m}/{g}"
            for k, c, s, m, g, n in conn.execute(
                "SELECT event_key, channel, sender, msisdn, category, count(*) "
                "FROM consent_history GROUP BY 1, 2, 3, 4, 5 HAVING count(*) > 1")]
    if _table_exists(conn, "deliveries"):
        # One delivery (one webhook-id) per event, endpoint and notification type.
        out += [f"event {e} delivered to endpoint {p} as {t} in {n} deliveries"
                for e, p, t, n in conn.execute(
                    "SELECT event_id, endpoint_id, type, count(*) FROM deliveries "
                    "GROUP BY event_id, endpoint_id, type HAVING count(*) > 1")]
    return out


_STATE = f"""
WITH per_status AS (
    SELECT source, message_id, status, min(occurred_at) AS first_at, count(*) AS n
    FROM events WHERE status IS NOT NULL AND message_id IS NOT NULL
    GROUP BY source, message_id, status
)
SELECT p.source, p.message_id, p.status, p.first_at, p.n,
       m.status, m.status_rank, {", ".join(f"m.{s}_at" for s in STATUS_ORDER)},
       (SELECT count(*) FROM message_status_history h
        WHERE h.source = p.source AND h.message_id = p.message_id AND h.status = p.status)
FROM per_status p LEFT JOIN messages m USING (source, message_id)
"""


def message_state_errors(conn: psycopg.Connection) -> list[str]:
    """Every message's stored state must be what its events say, whatever their order:
    the highest-ranked status, each status's earliest time, one history row per event."""
    best: dict[tuple[str, str], str] = {}
    stored: dict[tuple[str, str], str | None] = {}
    errors: list[str] = []
    for row in conn.execute(_STATE):
        source, mid, status, first_at, n, m_status, _rank, *ats, history = row
        key = (source, mid)
        stored[key] = m_status
        if key not in best or STATUS_RANK[status] > STATUS_RANK[best[key]]:
            best[key] = status
        at = dict(zip(STATUS_ORDER, ats, strict=True)).get(status)
        if at != first_at:
            errors.append(f"{mid}: {status}_at is {at}, earliest event says {first_at}")
        if history != n:
            errors.append(f"{mid}: {n} {status} events but {history} history rows")
    errors += [f"{mid}: status {stored[(s, mid)]}, events say {b}"
               for (s, mid), b in best.items() if stored[(s, mid)] != b]
    return errors


# The failing receipt of the winning status that gives the reason (shared.db.messages):
# one with a reason or code first, then the smaller (reason, code).
_FAILURES = """
SELECT m.message_id, m.status, m.failure_reason, m.failure_code, w.reason, w.code
FROM messages m
JOIN LATERAL (
    SELECT h.reason, h.code FROM message_status_history h
    WHERE h.source = m.source AND h.message_id = m.message_id AND h.status = m.status
    ORDER BY (h.reason IS NULL AND h.code IS NULL), COALESCE(h.reason, ''),
             COALESCE(h.code, '')
    LIMIT 1) w ON true
WHERE m.failure_reason IS DISTINCT FROM w.reason OR m.failure_code IS DISTINCT FROM w.code
"""


def failure_errors(conn: psycopg.Connection) -> list[str]:
    """A message's failure reason and code are its winning status's receipts' (none
    once a higher-ranked status won), whatever order they were applied in."""
    return [f"{mid}: {status} with reason {r!r}/{c!r}, its receipts say {wr!r}/{wc!r}"
            for mid, status, r, c, wr, wc in conn.execute(_FAILURES)]


# The winning consent event of a subscription: the latest, opt-out on a tie, then the
# larger event key (shared.db.subscriptions).
_CONSENT = """
SELECT s.channel, s.sender, s.msisdn, s.category, s.status, s.event_key, w.status,
       w.event_key
FROM subscriptions s
JOIN LATERAL (
    SELECT h.status, h.event_key FROM consent_history h
    WHERE (h.channel, h.sender, h.msisdn, h.category)
          = (s.channel, s.sender, s.msisdn, s.category)
    ORDER BY h.occurred_at DESC, h.status = 'opted_out' DESC, h.event_key DESC
    LIMIT 1) w ON true
WHERE s.status <> w.status OR s.event_key <> w.event_key
"""


def consent_errors(conn: psycopg.Connection) -> list[str]:
    """Every subscription is what its latest consent event says, whatever the order
    its events were applied in."""
    return [f"{c}/{snd}/{m}/{g}: {st} by {k}, its events say {wst} by {wk}"
            for c, snd, m, g, st, k, wst, wk in conn.execute(_CONSENT)]
