"""Builders and readers shared by the consent, families and consent-API tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared import config, runtime
from shared.consent import apply_keywords
from shared.db.apply import Applied, apply_batch
from shared.db.events import Incoming, rows
from shared.model import Consent, ConsentScope, EventType, NormalisedEvent
from shared.notifications import Notification
from shared.runtime import Runtime
from tests.helpers import T0, clean
from workers.tasks import drain_round

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FIXTURES / "expected.json").read_text())
BROKEN = sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob("*/broken/*.txt"))

# What these tests write (events cascades to what references it).
TABLES = ("events", "event_keys", "message_status_history", "inbound_messages", "deliveries",
          "messages", "subscriptions", "consent_history", "dead_letters")


def url_event(rel: str) -> str | None:
    """The URL event of a flat kaleyra-io fixture (valid or broken), from its file name."""
    parts = rel.split("/")
    if parts[0] == "kaleyra-io" and parts[1] in ("flat", "broken"):
        return Path(rel).stem.split("__")[0].replace("_", ":")
    return None


def drain_notes(rt: Runtime) -> list[Notification]:
    """Drain everything queued; the notifications the batches produced, in order."""
    notes: list[Notification] = []
    for _ in range(1000):
        outcome = drain_round(rt)
        if outcome is None:
            return notes
        notes += outcome.notifications
    raise AssertionError("inbox never emptied")


@pytest.fixture(scope="module")
def module_rt(base_env: dict[str, str]) -> Iterator[Runtime]:
    """One Runtime for a module of many small tests (a fresh pool per test costs more
    than the tests); ``rt`` empties what the tests write before each one."""
    rt = Runtime(config.load(base_env))
    clean(rt)
    yield rt
    rt.close()


@pytest.fixture(name="rt")
def fast_rt(module_rt: Runtime) -> Iterator[Runtime]:
    """Replaces conftest's ``rt`` in modules that import it (with ``module_rt``)."""
    module_rt.redis.flushdb()
    empty(module_rt)
    runtime.install(module_rt)
    yield module_rt
    runtime.reset()


def empty(rt: Runtime) -> None:
    """Empty the tables these tests write. DELETE, not TRUNCATE: far cheaper on a
    handful of rows."""
    with rt.pool.connection() as conn:
        for table in TABLES:
            conn.execute(f"DELETE FROM {table}")


def apply(rt: Runtime, events: list[NormalisedEvent]) -> Applied:
    """One batch, one transaction, through the real apply layer."""
    with rt.pool.connection() as conn, conn.transaction():
        return apply_batch(conn, rows([Incoming(e, {}, T0) for e in events]), [])


def consent_event(
    consent: Consent, ms: int, key: str, *, msisdn: str = "+447700900001",
    sender: str = "agent_1", channel: str = "rcs", keyword: bool = False,
    scope: ConsentScope = ConsentScope.SENDER, category: str | None = None,
    source: str = "kaleyra-rcs",
) -> NormalisedEvent:
    """A SUBSCRIBE / UNSUBSCRIBE (or, with keyword, a START / STOP text) ``ms`` after T0."""
    common = dict(source=source, channel=channel, occurred_at=T0 + timedelta(milliseconds=ms),
                  dedupe_key=f"e:{key}", sender=sender, msisdn=msisdn, provider_event_id=key)
    if keyword:
        text = "STOP" if consent is Consent.OPT_OUT else "START"
        event = NormalisedEvent(type=EventType.MESSAGE_INBOUND.value, data={"text": text},
                                **common)
        assert apply_keywords(event, ("START",), ("STOP",))
        return event
    kind = (EventType.SUBSCRIPTION_OPTED_OUT if consent is Consent.OPT_OUT
            else EventType.SUBSCRIPTION_OPTED_IN)
    data = {"category": category} if category else {}
    return NormalisedEvent(type=kind.value, consent=consent, consent_scope=scope, data=data,
                           **common)


def subscription(rt: Runtime, channel: str, sender: str, msisdn: str,
                 category: str = "") -> dict[str, Any] | None:
    with rt.pool.connection() as conn:
        cur = conn.execute(
            "SELECT s.status, s.scope, s.changed_at, s.source, s.event_key, e.dedupe_key "
            "FROM subscriptions s LEFT JOIN events e ON e.id = s.event_id "
            "WHERE s.channel = %s AND s.sender = %s AND s.msisdn = %s AND s.category = %s",
            (channel, sender, msisdn, category))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([c.name for c in cur.description], row, strict=True))


def transitions(notes: list[Notification]) -> list[str]:
    return [n.type for n in notes if n.type.startswith("subscription.")]
