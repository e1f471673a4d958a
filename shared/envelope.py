"""The envelope ingest pushes into Redis: one JSON header line, then the raw body.

The body is kept as the exact bytes received (it may not even be UTF-8), so the
worker sees precisely what the provider sent and a dead letter can be replayed
byte for byte. Ingest never parses the body.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import orjson

# Only these request headers travel with the body: enough to verify signatures
# and trace a callback, without copying cookies or proxies' noise.
KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "x-request-id",
    "x-forwarded-for",
    "x-kaleyra-signature",
    "x-comapi-signature",
)


class EnvelopeError(ValueError):
    """The envelope itself is corrupt (not something a provider could cause)."""


@dataclass(slots=True)
class Envelope:
    id: str
    source: str
    event: str | None
    received_at: float  # epoch seconds, UTC
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    remote_addr: str | None = None
    replay_of: int | None = None
    # The tenant whose callback key authenticated it (ingest.tenant_keys); None for
    # the source's own token or none.
    tenant_id: str | None = None
    # The ingest span's W3C traceparent when tracing is on (shared.tracing).
    trace: str | None = None

    def encode(self) -> bytes:
        header: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "event": self.event,
            "t": self.received_at,
            "h": self.headers,
            "ip": self.remote_addr,
        }
        if self.replay_of is not None:
            header["replay_of"] = self.replay_of
        if self.tenant_id is not None:
            header["tn"] = self.tenant_id
        if self.trace is not None:
            header["tp"] = self.trace
        return orjson.dumps(header) + b"\n" + self.body


def new_id() -> str:
    return os.urandom(12).hex()


def decode(raw: bytes) -> Envelope:
    head, sep, body = raw.partition(b"\n")
    if not sep:
        raise EnvelopeError("envelope has no header line")
    try:
        h = orjson.loads(head)
        env = Envelope(
            id=str(h["id"]),
            source=str(h["source"]),
            event=h.get("event"),
            received_at=float(h["t"]),
            body=body,
            headers=dict(h.get("h") or {}),
            remote_addr=h.get("ip"),
            replay_of=h.get("replay_of"),
            tenant_id=h.get("tn"),
        )
        if "tp" in h:  # only while ingest traces: no lookup call per envelope otherwise
            env.trace = h["tp"]
        return env
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError(f"corrupt envelope header: {exc}") from exc
