"""Endpoint signing secrets, encrypted at rest, under a key ring that can rotate.

hookline must read an endpoint's secret to sign every delivery, so it cannot
store only a hash. Instead secrets are sealed with AES-256-GCM under the newest
key of HOOKLINE_SECRET_KEYS (or HOOKLINE_SECRET_KEY, a ring of one): a database
dump or a read-only SQL user does not reveal them. Without a key they are stored
as they are, and hookline warns at start.

A sealed value names its key by a short id (``hlenc2:<key id>:...``, the id an
HMAC of a fixed label under the key: it tells nothing about the key), so opening
one takes the right key at once, whatever the ring's length and order. Values
sealed before key ids (``hlenc1:``) are tried under each key in turn.
``hookline secrets rotate`` (shared.rekey) seals every stored secret again under
the newest key; then older keys can leave the ring.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

PREFIX = "hlenc2:"
LEGACY_PREFIX = "hlenc1:"
# Binds a ciphertext to its purpose: it cannot be swapped in for another kind of value.
_AAD = b"hookline endpoint secret v1"
_KEY_ID_LABEL = b"hookline secret key id v1"
NONCE_BYTES = 12


class SecretBoxError(Exception):
    pass


def key_id(key: str) -> str:
    """The id a sealed value carries for ``key``: 8 hex digits."""
    return hmac.new(key.encode(), _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:8]


class SecretBox:
    def __init__(self, keys: Sequence[str] | str | None) -> None:
        if isinstance(keys, str):
            keys = (keys,)
        ring = tuple(keys or ())
        # key id -> cipher, newest first (dicts keep insertion order).
        self._ring = {key_id(k): AESGCM(hashlib.sha256(k.encode()).digest()) for k in ring}
        self._newest = next(iter(self._ring), None)

    @property
    def sealing(self) -> bool:
        return self._newest is not None

    @property
    def newest_id(self) -> str | None:
        return self._newest

    def seal(self, secret: str) -> str:
        if self._newest is None:
            return secret
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ring[self._newest].encrypt(nonce, secret.encode(), _AAD)
        return f"{PREFIX}{self._newest}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, stored: str) -> str:
        """The secret; values stored before a key was configured pass through."""
        if stored.startswith(PREFIX):
            kid, _, body = stored[len(PREFIX):].partition(":")
            aead = self._ring.get(kid)
            if not self._ring:
                raise SecretBoxError("endpoint secret is encrypted but HOOKLINE_SECRET_KEYS "
                                     "is not set")
            if aead is None:
                raise SecretBoxError(f"endpoint secret is sealed under key {kid}, which is "
                                     "not in HOOKLINE_SECRET_KEYS")
            return self._decrypt(aead, body)
        if stored.startswith(LEGACY_PREFIX):
            for aead in self._ring.values():
                try:
                    return self._decrypt(aead, stored[len(LEGACY_PREFIX):])
                except SecretBoxError:
                    continue
            raise SecretBoxError("endpoint secret does not decrypt under any key of "
                                 "HOOKLINE_SECRET_KEYS" if self._ring else
                                 "endpoint secret is encrypted but HOOKLINE_SECRET_KEYS "
                                 "is not set")
        return stored

    @staticmethod
    def _decrypt(aead: AESGCM, body: str) -> str:
        raw = base64.urlsafe_b64decode(body)
        try:
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _AAD).decode()
        except InvalidTag:
            raise SecretBoxError("endpoint secret does not decrypt: a key changed?") from None

    def current(self, stored: str) -> bool:
        """Whether ``stored`` is as seal() would store it now (rotation skips it)."""
        if self._newest is None:
            return not stored.startswith((PREFIX, LEGACY_PREFIX))
        return stored.startswith(f"{PREFIX}{self._newest}:")

    def reseal(self, stored: str) -> str:
        """``stored`` sealed under the newest key (raises SecretBoxError if it does not open)."""
        return stored if self.current(stored) else self.seal(self.open(stored))


@functools.lru_cache(maxsize=4)
def _box(keys: tuple[str, ...]) -> SecretBox:
    if not keys:
        log.warning("HOOKLINE_SECRET_KEYS is not set: endpoint secrets are stored unencrypted")
    return SecretBox(keys)


def box(keys: Sequence[str] | str | None) -> SecretBox:
    """The box for a ring (settings.secret_keys), made once per ring."""
    if isinstance(keys, str):
        keys = (keys,)
    return _box(tuple(keys or ()))
