"""Endpoint signing secrets, encrypted at rest.

hookline must read an endpoint's secret to sign every delivery, so it cannot
store only a hash. Instead secrets are sealed with AES-256-GCM under a key from
HOOKLINE_SECRET_KEY: a database dump or a read-only SQL user does not reveal
them. Without a key they are stored as they are, and hookline warns at start.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

PREFIX = "hlenc1:"
# Binds a ciphertext to its purpose: it cannot be swapped in for another kind of value.
_AAD = b"hookline endpoint secret v1"


class SecretBoxError(Exception):
    pass


class SecretBox:
    def __init__(self, key: str | None) -> None:
        self._aead = AESGCM(hashlib.sha256(key.encode()).digest()) if key else None

    @property
    def sealing(self) -> bool:
        return self._aead is not None

    def seal(self, secret: str) -> str:
        if self._aead is None:
            return secret
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), _AAD)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, stored: str) -> str:
        """The secret; values stored before a key was configured pass through."""
        if not stored.startswith(PREFIX):
            return stored
        if self._aead is None:
            raise SecretBoxError("endpoint secret is encrypted but HOOKLINE_SECRET_KEY is not set")
        raw = base64.urlsafe_b64decode(stored[len(PREFIX):])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], _AAD).decode()
        except InvalidTag:
            raise SecretBoxError(
                "endpoint secret does not decrypt: HOOKLINE_SECRET_KEY changed?") from None


@functools.lru_cache(maxsize=4)
def box(key: str | None) -> SecretBox:
    if not key:
        log.warning("HOOKLINE_SECRET_KEY is not set: endpoint secrets are stored unencrypted")
    return SecretBox(key)
