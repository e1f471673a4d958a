"""The one normalised event model every provider format maps into."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson


class EventType(StrEnum):
    MESSAGE_SENT = "message.sent"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_READ = "message.read"
    MESSAGE_FAILED = "message.failed"
    MESSAGE_EXPIRED = "message.expired"
    MESSAGE_DELETED = "message.deleted"
    # A receipt whose provider status hookline cannot map (kept raw for the operator).
    MESSAGE_UNKNOWN = "message.unknown"
    MESSAGE_INBOUND = "message.inbound"
    MESSAGE_COMPOSING = "message.composing"
    INTERACTION_CLICK = "interaction.click"
    SUBSCRIPTION_OPTED_IN = "subscription.opted_in"
    SUBSCRIPTION_OPTED_OUT = "subscription.opted_out"
    CALL_COMPLETED = "call.completed"
    CONTACT_UPDATED = "contact.updated"


EVENT_TYPES: frozenset[str] = frozenset(t.value for t in EventType)

# Delivery status precedence: a total order, so the stored status is simply the
# highest rank seen and the result does not depend on arrival order.
STATUS_ORDER: tuple[str, ...] = (
    "unknown", "sent", "expired", "failed", "delivered", "read", "deleted",
)
STATUS_RANK: dict[str, int] = {s: i for i, s in enumerate(STATUS_ORDER)}

# Statuses that say the message did not get through: only these carry a failure
# reason and code (the provider's own words and code for why).
FAILURE_STATUSES: frozenset[str] = frozenset({"expired", "failed"})

STATUS_EVENT_TYPE: dict[str, EventType] = {
    "unknown": EventType.MESSAGE_UNKNOWN,
    "sent": EventType.MESSAGE_SENT,
    "expired": EventType.MESSAGE_EXPIRED,
    "failed": EventType.MESSAGE_FAILED,
    "delivered": EventType.MESSAGE_DELIVERED,
    "read": EventType.MESSAGE_READ,
    "deleted": EventType.MESSAGE_DELETED,
}


class Consent(StrEnum):
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"


class ConsentScope(StrEnum):
    SENDER = "sender"      # this sender only
    ALL = "all"            # every sender on the channel for this msisdn
    CATEGORY = "category"  # recorded with its category


@dataclass(slots=True)
class NormalisedEvent:
    """One provider callback (or one part of it), in hookline's own terms.

    ``dedupe_key`` is unique per source: a second event with the same key is a
    duplicate and has no effect.
    """

    type: str
    source: str
    channel: str
    occurred_at: datetime
    dedupe_key: str
    message_id: str | None = None
    sender: str | None = None
    msisdn: str | None = None
    # Delivery status (a STATUS_ORDER value) when this event is a receipt.
    status: str | None = None
    provider_status: str | None = None
    provider_event_id: str | None = None
    # Why a failing receipt (FAILURE_STATUSES) failed, as the provider put it; None
    # on every other event. Each provider module maps its own fields into these.
    failure_reason: str | None = None
    failure_code: str | None = None
    consent: Consent | None = None
    consent_scope: ConsentScope = ConsentScope.SENDER
    data: dict[str, Any] = field(default_factory=dict)
    # Trace back to the raw callback; filled in by the worker, not the parser.
    ingest_id: str = ""

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        if self.status is not None and self.status not in STATUS_RANK:
            raise ValueError(f"unknown delivery status {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["occurred_at"] = self.occurred_at.astimezone(UTC).isoformat()
        return d


def body_hash(doc: Any) -> str:
    """A hash of the canonical JSON form, so key order and spacing do not matter."""
    try:
        canonical = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        # orjson refuses integers beyond 64 bits (and str() those past 4300 digits).
        canonical = orjson.dumps(_big_ints_as_hex(doc), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _big_ints_as_hex(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _big_ints_as_hex(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_big_ints_as_hex(v) for v in doc]
    if isinstance(doc, int) and not isinstance(doc, bool) and not -(2**63) <= doc < 2**64:
        return {"$int": hex(doc)}
    return doc


def dedupe_key(
    event_id: str | None, message_id: str | None, kind: str | None, doc: Any
) -> str:
    """eventId when present, else (messageId, kind), else a hash of the body."""
    if event_id:
        return f"e:{event_id}"
    if message_id and kind:
        return f"m:{message_id}:{kind}"
    return f"h:{body_hash(doc)}"
