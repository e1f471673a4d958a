"""Customer webhook endpoints: CRUD, secret rotation, and health (breaker, disable).

Secrets never leave this module except through ``create``, ``rotate_secret`` and
``sealed_secrets`` / ``reseal`` (key rotation, shared.rekey), and the sender's claim
query in shared.db.outbox.claims: every other read uses the public column list.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from shared.signing import ROTATION_OVERLAP

# "tenant" matters on an operator's endpoint only: a tenant's hears its own tenant alone.
FILTER_KEYS = ("source", "channel", "sender", "tenant")
# Which endpoints a caller may see: a tenant's own, or (tenant None) the operator all.
_MINE = "(%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)"

PUBLIC_COLUMNS = (
    "id, url, description, event_types, filter_source, filter_channel, filter_sender, "
    "filter_tenant, tenant_id, "
    "ordered, enabled, disabled_reason, disabled_at, previous_secret_expires_at, "
    "consecutive_failures, failing_since, paused_until, last_success_at, last_failure_at, "
    "created_at, updated_at"
)

# What PATCH may change directly; ``enabled`` and ``filter`` are handled apart.
_PLAIN_FIELDS = ("url", "description", "event_types", "ordered")


def new_id() -> str:
    """'ep_' + milliseconds (hex) + random: ids sort by creation time, for paging."""
    return f"ep_{int(time.time() * 1000):012x}{os.urandom(5).hex()}"


def _filter_columns(filters: dict[str, list[str]] | None) -> dict[str, list[str] | None]:
    filters = filters or {}
    return {f"filter_{k}": filters.get(k) or None for k in FILTER_KEYS}


def create(
    conn: psycopg.Connection, *, url: str, event_types: list[str], secret: str,
    filters: dict[str, list[str]] | None = None, description: str | None = None,
    ordered: bool = False, tenant_id: str | None = None,
) -> dict[str, Any]:
    """``tenant_id``: the tenant whose key made it, None for the operator."""
    params = dict(id=new_id(), url=url, description=description, event_types=event_types,
                  ordered=ordered, secret=secret, tenant_id=tenant_id,
                  **_filter_columns(filters))
    sql = f"""
    INSERT INTO endpoints (id, url, description, event_types, filter_source, filter_channel,
                           filter_sender, filter_tenant, ordered, secret, tenant_id)
    VALUES (%(id)s, %(url)s, %(description)s, %(event_types)s, %(filter_source)s,
            %(filter_channel)s, %(filter_sender)s, %(filter_tenant)s, %(ordered)s, %(secret)s,
            %(tenant_id)s)
    RETURNING {PUBLIC_COLUMNS}
    """
    return conn.cursor(row_factory=dict_row).execute(sql, params).fetchone()


def get(conn: psycopg.Connection, endpoint_id: str, tenant_id: str | None = None
        ) -> dict[str, Any] | None:
    """The endpoint; with ``tenant_id``, only if it is that tenant's."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(f"SELECT {PUBLIC_COLUMNS} FROM endpoints WHERE id = %(id)s AND {_MINE}",
                       {"id": endpoint_id, "tenant": tenant_id}).fetchone()


def list_page(conn: psycopg.Connection, limit: int, after: str | None = None,
              tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Oldest first; ``after`` (an id) pages; with ``tenant_id``, that tenant's only."""
    sql = f"""
    SELECT {PUBLIC_COLUMNS} FROM endpoints
    WHERE (%(after)s::text IS NULL OR id > %(after)s) AND {_MINE}
    ORDER BY id LIMIT %(limit)s
    """
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(sql, {"after": after, "limit": limit, "tenant": tenant_id}).fetchall()


_ENABLE = """
    enabled = true, disabled_reason = NULL, disabled_at = NULL,
    consecutive_failures = 0, failing_since = NULL, paused_until = NULL"""
_DISABLE = """
    enabled = false,
    disabled_reason = CASE WHEN enabled THEN 'disabled through the API' ELSE disabled_reason END,
    disabled_at = CASE WHEN enabled THEN now() ELSE disabled_at END"""


def update(conn: psycopg.Connection, endpoint_id: str, changes: dict[str, Any],
           tenant_id: str | None = None) -> dict[str, Any] | None:
    """Apply a PATCH. Re-enabling clears the endpoint's failure history, so the
    breaker and the N-days rule start afresh."""
    sets: list[str] = ["updated_at = now()"]
    params: dict[str, Any] = {"id": endpoint_id, "tenant": tenant_id}
    for name in _PLAIN_FIELDS:
        if name in changes:
            sets.append(f"{name} = %({name})s")
            params[name] = changes[name]
    if "filter" in changes:
        cols = _filter_columns(changes["filter"])
        sets += [f"{c} = %({c})s" for c in cols]
        params.update(cols)
    if "enabled" in changes:
        sets.append(_ENABLE if changes["enabled"] else _DISABLE)
    sql = f"UPDATE endpoints SET {', '.join(sets)} WHERE id = %(id)s AND {_MINE} " \
        f"RETURNING {PUBLIC_COLUMNS}"
    return conn.cursor(row_factory=dict_row).execute(sql, params).fetchone()


def delete(conn: psycopg.Connection, endpoint_id: str, tenant_id: str | None = None) -> bool:
    if get(conn, endpoint_id, tenant_id) is None:
        return False
    # Deliveries go by their foreign key's cascade; attempts are partitioned on their
    # own time and have none (migration 010), so they go first, here.
    conn.execute("DELETE FROM delivery_attempts WHERE delivery_id IN "
                 "(SELECT id FROM deliveries WHERE endpoint_id = %s)", (endpoint_id,))
    return conn.execute("DELETE FROM endpoints WHERE id = %s", (endpoint_id,)).rowcount == 1


def rotate_secret(conn: psycopg.Connection, endpoint_id: str, secret: str,
                  tenant_id: str | None = None) -> dict[str, Any] | None:
    """The current secret becomes the previous one and keeps signing for the overlap."""
    sql = f"""
    UPDATE endpoints SET previous_secret = secret, secret = %(secret)s,
        previous_secret_expires_at = now() + %(overlap)s, updated_at = now()
    WHERE id = %(id)s AND {_MINE} RETURNING {PUBLIC_COLUMNS}
    """
    params = {"id": endpoint_id, "secret": secret, "overlap": ROTATION_OVERLAP,
              "tenant": tenant_id}
    return conn.cursor(row_factory=dict_row).execute(sql, params).fetchone()


def any_enabled(cur: psycopg.Cursor) -> bool:
    return cur.execute("SELECT EXISTS (SELECT 1 FROM endpoints WHERE enabled)").fetchone()[0]


@dataclass(slots=True)
class Health:
    """What one batch of attempts says about an endpoint (in completion order)."""

    endpoint_id: str
    succeeded: bool = False              # any success in the batch
    trailing_failures: int = 0           # failures after the last success
    first_failure_at: datetime | None = None  # first of those trailing failures
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    gone: bool = False                   # a 410 Gone
    pause_seconds: float | None = None   # Retry-After of the last trailing failure


_COUNTS = """
UPDATE endpoints SET
    consecutive_failures =
        CASE WHEN %(succeeded)s THEN 0 ELSE consecutive_failures END + %(trailing)s,
    failing_since = CASE WHEN %(trailing)s = 0 THEN NULL
                         WHEN %(succeeded)s THEN %(first_failure_at)s::timestamptz
                         ELSE COALESCE(failing_since, %(first_failure_at)s::timestamptz) END,
    last_success_at = COALESCE(%(last_success_at)s::timestamptz, last_success_at),
    last_failure_at = COALESCE(%(last_failure_at)s::timestamptz, last_failure_at)
WHERE id = %(id)s
"""

# Why the endpoint must be disabled now (NULL: it must not).
_DISABLE_REASON = """(CASE
    WHEN %(gone)s THEN 'the receiver answered 410 Gone'
    WHEN failing_since <= now() - make_interval(secs => %(disable_after)s::float8)
    THEN 'failing continuously since '
         || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    END)"""

_BREAKER = f"""
UPDATE endpoints SET
    paused_until = CASE WHEN %(trailing)s = 0 THEN NULL ELSE GREATEST(
        CASE WHEN consecutive_failures >= %(threshold)s
             THEN now() + make_interval(secs => %(cooldown)s::float8) END,
        now() + make_interval(secs => %(pause)s::float8)) END,
    disabled_reason = CASE WHEN enabled AND {_DISABLE_REASON} IS NOT NULL
                           THEN {_DISABLE_REASON} ELSE disabled_reason END,
    disabled_at = CASE WHEN enabled AND {_DISABLE_REASON} IS NOT NULL
                       THEN now() ELSE disabled_at END,
    enabled = enabled AND {_DISABLE_REASON} IS NULL
WHERE id = %(id)s
RETURNING NOT enabled AND disabled_at = now() AS just_disabled, disabled_reason,
          NOT enabled OR COALESCE(paused_until > now(), false) AS stopped
"""


@dataclass(frozen=True, slots=True)
class HealthRules:
    breaker_failures: int    # consecutive failures that open the breaker
    breaker_cooldown: float  # seconds paused before a probe
    disable_after: float     # seconds of continuous failure before disabling


def apply_health(cur: psycopg.Cursor, h: Health, rules: HealthRules) -> tuple | None:
    """Update the breaker and disable rules; returns (just_disabled, reason, stopped):
    stopped means nothing more may be sent to it now (paused or disabled)."""
    params = dict(
        id=h.endpoint_id, succeeded=h.succeeded, trailing=h.trailing_failures,
        first_failure_at=h.first_failure_at, last_success_at=h.last_success_at,
        last_failure_at=h.last_failure_at, gone=h.gone, pause=h.pause_seconds,
        threshold=rules.breaker_failures, cooldown=rules.breaker_cooldown,
        disable_after=rules.disable_after,
    )
    cur.execute(_COUNTS, params)
    return cur.execute(_BREAKER, params).fetchone()


def sealed_secrets(conn: psycopg.Connection, after: str | None, limit: int
                   ) -> list[tuple[str, str, str | None]]:
    """(id, secret, previous secret) of the endpoints after ``after``, by id."""
    return conn.execute(
        "SELECT id, secret, previous_secret FROM endpoints "
        "WHERE %(after)s::text IS NULL OR id > %(after)s ORDER BY id LIMIT %(limit)s",
        {"after": after, "limit": limit}).fetchall()


def reseal(conn: psycopg.Connection, endpoint_id: str, was: tuple[str, str | None],
           now: tuple[str, str | None]) -> bool:
    """Store the same secrets sealed again, unless they changed since they were read
    (a rotation through the API meanwhile): compare and set, never a lost update."""
    return conn.execute(
        "UPDATE endpoints SET secret = %s, previous_secret = %s "
        "WHERE id = %s AND secret = %s AND previous_secret IS NOT DISTINCT FROM %s",
        (*now, endpoint_id, *was)).rowcount == 1
