"""Standard Webhooks signing: whsec_ secrets and v1 (HMAC-SHA256) signatures.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the header
lists one ``v1,<base64>`` per active secret, space-separated, so a receiver
holding either the old or the new secret verifies during a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable
from datetime import datetime, timedelta

PREFIX = "whsec_"
SECRET_BYTES = 24  # 192 bits, as Svix issues them
# How long a rotated-out secret keeps signing beside its successor.
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(PREFIX)
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def active_secrets(
    secret: str, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[str]:
    """The secrets that sign now: the current one, and the previous one in its overlap."""
    if previous and previous_expires_at is not None and previous_expires_at > now:
        return [secret, previous]
    return [secret]


def headers(
    secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks request headers for one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }
