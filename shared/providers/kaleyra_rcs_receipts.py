"""Kaleyra RCS delivery receipts (seed 002): SENT, DELIVERED, READ, ERROR, and
TTL_EXPIRATION_REVOKED (expired; developers.kaleyra.io "RCS Delivery Receipt (DR)
Callback Events"). The message's ``ref``, ``ref1`` and ``ref2`` are kept in data.

``from`` is the end user's number and ``to`` the agent service code. Receipts
normally arrive flat; the carrier envelope form (``{code, message, data, error}``,
seed 001) is unwrapped too.

An ERROR's failure reason and code come from its ``error`` (the receipt's own, else
the envelope's: a string, or an object's message / title / description / details
and code); else, in an envelope, from its ``message`` and ``code``. Seed 002 shows
no ERROR sample, so a bare ERROR has neither.
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from shared.model import FAILURE_STATUSES, STATUS_EVENT_TYPE, NormalisedEvent, dedupe_key
from shared.providers.base import (
    BaseSchema,
    Format,
    LooseString,
    UTCDateTime,
    error_parts,
    failure,
    load,
)
from shared.providers.common import is_envelope, unwrap

SOURCE = "kaleyra-rcs"
STATUS_MAP = {"SENT": "sent", "DELIVERED": "delivered", "READ": "read", "ERROR": "failed",
              # "Message expired due to TTL before delivery and was revoked."
              "TTL_EXPIRATION_REVOKED": "expired"}
REF_KEYS = ("ref", "ref1", "ref2")


class ReceiptSchema(BaseSchema):
    type = fields.String(required=True, validate=validate.OneOf(list(STATUS_MAP)))
    eventId = LooseString(load_default=None)  # noqa: N815 - provider field name
    from_ = LooseString(required=True, data_key="from", validate=validate.Length(min=1))
    to = LooseString(required=True, validate=validate.Length(min=1))
    sentAt = UTCDateTime(required=True)  # noqa: N815
    messageId = LooseString(required=True, validate=validate.Length(min=1))  # noqa: N815
    carrierId = LooseString(load_default=None)  # noqa: N815
    error = fields.Raw(load_default=None)
    ref, ref1, ref2 = (LooseString(load_default=None) for _ in range(3))


_SCHEMA = ReceiptSchema()


def matches(doc: Any, event: str | None) -> bool:
    inner = unwrap(doc)
    kind = inner.get("type") if isinstance(inner, dict) else None
    return isinstance(kind, str) and kind in STATUS_MAP


def _failure(r: dict[str, Any], doc: Any) -> tuple[str | None, str | None]:
    envelope = doc if is_envelope(doc) else {}
    reason, code = error_parts(r["error"] or envelope.get("error"))
    return failure(reason or envelope.get("message"), code or envelope.get("code"))


def parse(doc: Any, event: str | None) -> list[NormalisedEvent]:
    r = load(_SCHEMA, unwrap(doc), "kaleyra-rcs receipt")
    status = STATUS_MAP[r["type"]]
    data: dict[str, Any] = {}
    if r["carrierId"]:
        data["carrier_id"] = r["carrierId"]
    data.update({k: r[k] for k in REF_KEYS if r[k]})
    if is_envelope(doc):
        data["code"] = doc.get("code")
        if doc.get("error"):
            data["error"] = doc["error"]
    reason, code = _failure(r, doc) if status in FAILURE_STATUSES else (None, None)
    return [
        NormalisedEvent(
            type=STATUS_EVENT_TYPE[status].value,
            source=SOURCE,
            channel="rcs",
            occurred_at=r["sentAt"],
            dedupe_key=dedupe_key(r["eventId"], r["messageId"], r["type"], doc),
            message_id=r["messageId"],
            sender=r["to"],
            msisdn=r["from_"],
            status=status,
            provider_status=r["type"],
            provider_event_id=r["eventId"],
            data=data,
            failure_reason=reason,
            failure_code=code,
        )
    ]


FORMATS = [Format(
    source=SOURCE, name="kaleyra-rcs-receipt", matches=matches, parse=parse,
    needs='"type" SENT|DELIVERED|READ|ERROR|TTL_EXPIRATION_REVOKED, flat or in {code, data}',
)]
