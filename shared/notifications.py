"""What customer endpoints are told: notifications, their body and their order.

Free of the database: the apply step makes notifications, the outbox stores them
(shared.db.outbox.enqueue) with the body and the ordering keys computed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from shared.consent import notifies_as_itself
from shared.model import STATUS_RANK, EventType, NormalisedEvent

_CONSENT_TYPES = frozenset({EventType.SUBSCRIPTION_OPTED_IN.value,
                            EventType.SUBSCRIPTION_OPTED_OUT.value})


@dataclass(slots=True)
class Notification:
    """One thing customer endpoints may be told: an applied event, or a consent
    transition it caused (then ``type`` differs from ``event.type``)."""

    event_id: int
    type: str
    event: NormalisedEvent
    tenant_id: str | None = None  # whose endpoints may hear of it (docs/tenants.md)


class NewEvent(Protocol):
    """An event the apply step found new (shared.db.events.Stored)."""

    id: int
    event: NormalisedEvent
    tenant_id: str | None


def plain_notifications(stored: Iterable[NewEvent]) -> list[Notification]:
    """Every new event notifies as itself, except SUBSCRIBE / UNSUBSCRIBE-like events:
    those notify only through the transitions they cause (see the consent step). A
    keyword text notifies as message.inbound and, if it changed consent, again
    as its transition."""
    return [Notification(s.id, s.event.type, s.event, s.tenant_id) for s in stored
            if notifies_as_itself(s.event)]


def payload(n: Notification) -> dict[str, Any]:
    """The body customers receive (Standard Webhooks: type, timestamp, data)."""
    data = n.event.to_dict()
    data["event_id"] = n.event_id
    if n.tenant_id is not None:  # an operator endpoint hears several tenants
        data["tenant_id"] = n.tenant_id
    return {"type": n.type, "timestamp": data["occurred_at"], "data": data}


def message_key(n: Notification) -> str | None:
    """What an ordered endpoint keeps in order: one message's events, or one
    party's consent transitions (opted out, then in again, must not swap)."""
    e = n.event
    if n.type in _CONSENT_TYPES:
        return f"consent:{e.channel}:{e.sender}:{e.msisdn}"
    return f"{e.source}:{e.message_id}" if e.message_id else None


def rank(n: Notification) -> int:
    # A receipt's status rank, so an ordered endpoint gets equal-time receipts in
    # the order messages.status ranks them; other events (and transitions) 0.
    status = n.event.status
    return STATUS_RANK[status] if status is not None and n.type == n.event.type else 0
