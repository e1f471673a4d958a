"""Consent per (channel, sender, msisdn), enforced in SQL so arrival order never matters.

The rule: the consent event with the latest occurred_at wins; on a tie opt-out
wins; on a full tie the larger ``event_key`` (source + dedupe key), so the row is
the same for every order of the same events. It is one conditional upsert per
batch (``ON CONFLICT DO UPDATE ... WHERE new beats old``): the row lock makes
concurrent workers serialise on a subscription, and an update that loses the
comparison changes nothing.

Transitions (what ``subscription.opted_in`` / ``opted_out`` notify) are read
after the upsert, while this transaction holds the row lock: the state before
the batch is the winner of the committed consent history (every applied consent
event is in it, in the same transaction as its upsert). Walking the batch's
events that beat that winner in rule order, each change of status is one
transition. So an event that loses (older than the stored winner) or repeats
the current status is never a transition, one batch gives the same transitions
as the same events applied one by one in time order, and re-applying changes
nothing. First consent ever (unknown -> opted_in or opted_out) is a transition.

Keys: an ``all`` scope is stored as sender ``'*'``; a category record is
(channel, ``'*'``, msisdn, category), since a category is not a sender's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from shared.consent import ALL_SENDERS, OPTED_OUT, STATUS, TRANSITION_TYPE
from shared.db import arrays
from shared.db.events import Stored
from shared.db.paging import Page, Party, fetch_page, is_, newest_first
from shared.model import ConsentScope, NormalisedEvent

log = logging.getLogger(__name__)

_KEY = "channel, sender, msisdn, category"
# The conflict key: a subscription is per tenant (NULLS NOT DISTINCT, migration 014).
_TKEY = f"{_KEY}, tenant_id"
# Rule order, ascending: the last row in this order is the winner.
_RANK = "occurred_at, status = 'opted_out', event_key"

_UPSERT = f"""
INSERT INTO subscriptions AS s (channel, sender, msisdn, category, tenant_id, status, scope,
                                changed_at, event_id, source, event_key)
SELECT DISTINCT ON ({_TKEY}) {_TKEY}, status, scope, occurred_at, event_id, source, event_key
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::timestamptz[], %b::bigint[], %b::text[], %b::text[])
     AS r({_TKEY}, status, scope, occurred_at, event_id, source, event_key)
-- One row per key (a key twice in one statement is an error), the batch's
-- winner, in key order so concurrent batches lock rows in one order.
ORDER BY {_TKEY}, occurred_at DESC, status = 'opted_out' DESC, event_key DESC
ON CONFLICT ({_TKEY}) DO UPDATE SET
    status = EXCLUDED.status, scope = EXCLUDED.scope, changed_at = EXCLUDED.changed_at,
    event_id = EXCLUDED.event_id, source = EXCLUDED.source, event_key = EXCLUDED.event_key
WHERE (EXCLUDED.changed_at, EXCLUDED.status = 'opted_out', EXCLUDED.event_key)
    > (s.changed_at, s.status = 'opted_out', s.event_key)
"""

# Which of the batch's rows (by index) changed the status. Runs after the upsert,
# so the keys are locked and the committed history is the state before the batch.
_TRANSITIONS = f"""
WITH b AS (
    SELECT * FROM unnest(%b::int[], %b::text[], %b::text[], %b::text[], %b::text[],
                         %b::text[], %b::text[], %b::timestamptz[], %b::text[])
        AS r(idx, {_TKEY}, status, occurred_at, event_key)
), prior AS (
    SELECT k.channel, k.sender, k.msisdn, k.category, k.tenant_id, p.status, p.occurred_at,
           p.event_key
    FROM (SELECT DISTINCT {_TKEY} FROM b) k
    JOIN LATERAL (
        SELECT h.status, h.occurred_at, h.event_key FROM consent_history h
        WHERE h.channel = k.channel AND h.sender = k.sender AND h.msisdn = k.msisdn
          AND h.category = k.category AND h.tenant_id IS NOT DISTINCT FROM k.tenant_id
        ORDER BY h.occurred_at DESC, h.status = 'opted_out' DESC, h.event_key DESC
        LIMIT 1
    ) p ON true
), newer AS (
    SELECT b.idx, b.status, p.status AS prior_status,
           lag(b.status) OVER (PARTITION BY b.channel, b.sender, b.msisdn, b.category,
                                            b.tenant_id
                               ORDER BY b.occurred_at, b.status = 'opted_out', b.event_key)
               AS previous
    FROM b LEFT JOIN prior p ON (p.channel, p.sender, p.msisdn, p.category)
                                = (b.channel, b.sender, b.msisdn, b.category)
                            AND p.tenant_id IS NOT DISTINCT FROM b.tenant_id
    WHERE p.status IS NULL
       OR (b.occurred_at, b.status = 'opted_out', b.event_key)
          > (p.occurred_at, p.status = 'opted_out', p.event_key)
)
SELECT idx FROM newer WHERE status IS DISTINCT FROM coalesce(previous, prior_status)
"""

_HISTORY = f"""
INSERT INTO consent_history (event_id, source, event_key, event_type, provider_event_id,
                             {_TKEY}, scope, status, occurred_at, keyword, transition)
SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[],
                     %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                     %b::text[], %b::timestamptz[], %b::text[], %b::boolean[])
"""


@dataclass(slots=True)
class ConsentRow:
    stored: Stored
    channel: str
    sender: str
    msisdn: str
    category: str
    scope: str
    status: str
    tenant_id: str | None  # the event's: an all-senders opt-out binds this tenant only

    @property
    def event(self) -> NormalisedEvent:
        return self.stored.event

    @property
    def event_key(self) -> str:
        return f"{self.event.source} {self.event.dedupe_key}"

    @property
    def sort_key(self) -> tuple:
        return (self.channel, self.sender, self.msisdn, self.category, self.tenant_id or "",
                self.event.occurred_at,
                self.status == OPTED_OUT, self.event_key)


@dataclass(slots=True)
class Transition:
    event_id: int
    type: str  # subscription.opted_in / subscription.opted_out
    event: NormalisedEvent
    tenant_id: str | None = None


def consent_row(s: Stored) -> ConsentRow | None:
    """The subscription a consent event applies to; None if it is not one or has no key."""
    e = s.event
    if e.consent is None:
        return None
    scope = ConsentScope(e.consent_scope)
    category = str(e.data.get("category") or "") if scope is ConsentScope.CATEGORY else ""
    sender = e.sender if scope is ConsentScope.SENDER else ALL_SENDERS
    if not e.msisdn or not sender or (scope is ConsentScope.CATEGORY and not category):
        log.warning("consent event %s has no subscription key; not applied", s.id,
                    extra={"event_id": s.id, "source": e.source})
        return None
    return ConsentRow(s, e.channel, sender, e.msisdn, category, scope.value, STATUS[e.consent],
                      s.tenant_id)


def apply_consent(cur: psycopg.Cursor, stored: list[Stored]) -> list[Transition]:
    """Apply the batch's consent events; returns the real transitions, in key and time order."""
    rows = sorted(filter(None, map(consent_row, stored)), key=lambda r: r.sort_key)
    if not rows:
        return []
    key_cols = [arrays.text([r.channel for r in rows]), arrays.text([r.sender for r in rows]),
                arrays.text([r.msisdn for r in rows]), arrays.text([r.category for r in rows]),
                arrays.text([r.tenant_id for r in rows])]
    ids = arrays.bigint([r.stored.id for r in rows])
    sources = arrays.text([r.event.source for r in rows])
    statuses = arrays.text([r.status for r in rows])
    scopes = arrays.text([r.scope for r in rows])
    times = arrays.timestamptz([r.event.occurred_at for r in rows])
    keys = arrays.text([r.event_key for r in rows])
    cur.execute(_UPSERT, [*key_cols, statuses, scopes, times, ids, sources, keys])
    cur.execute(_TRANSITIONS, [arrays.integer(list(range(len(rows)))), *key_cols, statuses, times,
                               keys])
    changed = {idx for (idx,) in cur.fetchall()}
    cur.execute(_HISTORY, [
        ids, sources, keys, arrays.text([r.event.type for r in rows]),
        arrays.text([r.event.provider_event_id for r in rows]), *key_cols, scopes, statuses,
        times, arrays.text([r.event.data.get("consent_keyword") for r in rows]),
        arrays.boolean([i in changed for i in range(len(rows))]),
    ])
    return [Transition(r.stored.id, TRANSITION_TYPE[r.status], r.event, r.tenant_id)
            for i, r in enumerate(rows) if i in changed]


# --- queries for the API -----------------------------------------------------------------

_COLUMNS = "id, channel, sender, msisdn, NULLIF(category, '') AS category, status, scope, " \
    "changed_at, event_id, source, tenant_id"


# Whose consent decides for a sender: the asking tenant's, or for the operator the
# tenant owning the sender; and in either case the rows of no tenant (consent from
# before tenants, or for senders nobody owns), which no tenant may ignore.
_WHOSE = """coalesce(%(tenant)s::text,
    (SELECT min(tenant_id) FROM tenant_senders WHERE sender = %(sender)s))"""
_SCOPE = f"(tenant_id IS NULL OR tenant_id = {_WHOSE})"


def _winner(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Of one key's rows (one per tenant), the one the rule picks: newest, opt-out on a tie."""
    if not rows:
        return None
    return max(rows, key=lambda r: (r["changed_at"], r["status"] == OPTED_OUT))


def status_of(conn: psycopg.Connection, channel: str, sender: str,
              msisdn: str, tenant_id: str | None = None) -> dict[str, Any]:
    """The rows that decide whether ``sender`` may message ``msisdn`` on ``channel``:
    ``sender`` (its own subscription), ``all`` (the all-senders row) and
    ``categories`` (category records), plus the consent history behind them.
    ``tenant_id``: the asking tenant (None: the operator, for whom the sender's owner
    decides); another tenant's all-senders opt-out never counts."""
    cur = conn.cursor(row_factory=dict_row)
    params = {"channel": channel, "msisdn": msisdn, "sender": sender, "tenant": tenant_id}
    rows = cur.execute(
        f"SELECT {_COLUMNS} FROM subscriptions WHERE channel = %(channel)s "
        f"AND msisdn = %(msisdn)s AND sender IN (%(sender)s, '*') AND {_SCOPE} "
        "ORDER BY sender, category", params,
    ).fetchall()
    return {
        "sender": _winner([r for r in rows if r["sender"] == sender and r["category"] is None]),
        "all": _winner([r for r in rows
                        if r["sender"] == ALL_SENDERS and r["category"] is None]),
        "categories": [r for r in rows if r["category"] is not None],
        "history": history(conn, channel, sender, msisdn, tenant_id=tenant_id),
    }


_HISTORY_OF = f"""
SELECT id, event_id, source, event_type, provider_event_id, sender,
       NULLIF(category, '') AS category, scope, status, occurred_at, keyword, transition,
       recorded_at
FROM consent_history
WHERE channel = %(channel)s AND msisdn = %(msisdn)s AND sender IN (%(sender)s, '*')
    AND {_SCOPE}
ORDER BY occurred_at DESC, id DESC LIMIT %(limit)s
"""


def history(conn: psycopg.Connection, channel: str, sender: str, msisdn: str,
            limit: int = 500, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Every consent event for the key (and the all-senders key), oldest first."""
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(_HISTORY_OF, {"channel": channel, "msisdn": msisdn, "sender": sender,
                                     "limit": limit, "tenant": tenant_id}).fetchall()
    return rows[::-1]


# "own" is the rows of the sender '*' alone; "mine" and "every" the two halves of a
# sender filter (_page): that sender's rows and the all-senders rows.
_ONE = newest_first("subscriptions", _COLUMNS, "id", {
    "channel": is_("channel"), "msisdn": is_("msisdn"), "status": is_("status"),
    "own": "sender = %(own)s", "mine": "sender = %(sender)s",
    "every": f"sender = '{ALL_SENDERS}'", "tenant": "tenant_id = %(tenant)s",
})


def _page(names: frozenset[str]) -> str:
    # sender IN (x, '*') ORDER BY id reads and sorts every matching row; each sender
    # alone is a walk of (sender, status, id), and the newest of both are the page.
    if "sender" not in names:
        return _ONE(names)
    rest = names - {"sender"}
    return f"({_ONE(rest | {'mine'})}) UNION ALL ({_ONE(rest | {'every'})}) " \
        "ORDER BY id DESC LIMIT %(limit)s"


def list_page(conn: psycopg.Connection, page: Page, party: Party,
              status: str | None = None, tenant_id: str | None = None
              ) -> list[dict[str, Any]]:
    """Newest first by id, keyset-paged. A ``sender`` filter also matches the
    all-senders rows (sender '*'), since those apply to every sender. With
    ``tenant_id``, that tenant's rows only."""
    params = party.params()
    if params["sender"] == ALL_SENDERS:  # both halves would be the same rows
        params["sender"], params["own"] = None, ALL_SENDERS
    return fetch_page(conn, _page, page, **params, status=status, tenant=tenant_id)
