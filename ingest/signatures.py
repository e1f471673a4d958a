"""Per-source HMAC signatures over the raw callback body, checked before the 202.

Configured per source (shared.config.SignatureSpec): the header that carries
the signature, sha1 or sha256, hex or base64, and the shared secret. The
header may prefix the value with its algorithm (``sha256=...``), as several
providers do. The comparison is between digests, in constant time: what a
caller learns from timing does not depend on how much of its guess was right.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from shared.config import SignatureSpec

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}


def sign(spec: SignatureSpec, body: bytes) -> str:
    """The header value a provider sends for ``body`` (used by tests and examples)."""
    digest = hmac.new(spec.secret.encode(), body, _DIGESTS[spec.algorithm]).digest()
    return digest.hex() if spec.encoding == "hex" else base64.b64encode(digest).decode()


def _presented(spec: SignatureSpec, value: str) -> bytes | None:
    value = value.strip()
    prefix, sep, rest = value.partition("=")
    if sep and prefix.lower() == spec.algorithm:
        value = rest.strip()
    try:
        if spec.encoding == "hex":
            return bytes.fromhex(value)
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return None


def verify(spec: SignatureSpec, headers: Mapping[str, str], body: bytes) -> bool:
    """True when the header carries the HMAC of exactly these bytes."""
    value = headers.get(spec.header)
    if not value:
        return False
    presented = _presented(spec, value)
    expected = hmac.new(spec.secret.encode(), body, _DIGESTS[spec.algorithm]).digest()
    # A malformed value is compared too (against nothing that can match), so a
    # malformed guess costs the same time as a well-formed wrong one.
    return hmac.compare_digest(expected, presented if presented is not None else b"")
