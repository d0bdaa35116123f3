"""Personal data encrypted at rest by a column type (MultiFernet), bound to table and column.

Each plaintext is prefixed with its context (``hcps.email``) before encryption. Fernet authenticates
the whole token, so a ciphertext copied into another column (or another table) fails to decrypt
instead of silently showing one person's data as another field. Keys come from
``CRM_ENCRYPTION_KEYS`` (newest first); ``crm keys rotate`` re-encrypts under the newest.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from sqlalchemy import String, Text
from sqlalchemy.types import TypeDecorator

_SEP = b"\x00"


class DecryptionError(RuntimeError):
    """A stored value does not decrypt under any configured key, or belongs to another column."""


class Keyring:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self.keys = list(keys)
        self.fernets = [Fernet(k.encode()) for k in keys]
        self.multi = MultiFernet(self.fernets)
        self.primary = self.fernets[0]

    def encrypt(self, context: str, value: str) -> str:
        return self.multi.encrypt(context.encode() + _SEP + value.encode("utf-8")).decode("ascii")

    def decrypt(self, context: str, token: str) -> str:
        try:
            raw = self.multi.decrypt(token.encode("ascii"))
        except InvalidToken as exc:
            raise DecryptionError(f"{context}: value does not decrypt under any configured key") from exc
        prefix, sep, rest = raw.partition(_SEP)
        if not sep or prefix.decode() != context:
            raise DecryptionError(f"{context}: value belongs to another column")
        return rest.decode("utf-8")

    def is_current(self, token: str) -> bool:
        """True when ``token`` is already encrypted under the newest key."""
        try:
            self.primary.decrypt(token.encode("ascii"))
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted under the newest key; refuses if the plaintext would not be the same."""
        old = token.encode("ascii")
        new = self.multi.rotate(old)
        if self.primary.decrypt(new) != self.multi.decrypt(old):  # pragma: no cover - a cryptography bug
            raise RuntimeError("re-encryption changed the plaintext; nothing written")
        return new.decode("ascii")

    def key_index(self, token: str) -> int:
        """The position in CRM_ENCRYPTION_KEYS of the key ``token`` is encrypted under."""
        for i, fernet in enumerate(self.fernets):
            try:
                fernet.decrypt(token.encode("ascii"))
            except InvalidToken:
                continue
            return i
        raise InvalidToken

    def key_id(self, index: int) -> str:
        """A short name of a key for reports and the audit trail: a digest of it, never the key itself."""
        return hashlib.sha256(self.keys[index].encode()).hexdigest()[:12]


def keyring() -> Keyring:
    ext = current_app.extensions
    ring = ext.get("crm_keyring")
    if ring is None:
        ring = ext["crm_keyring"] = Keyring(current_app.config["CRM_ENCRYPTION_KEYS"])
    return ring


class EncryptedString(TypeDecorator[str]):
    """A text column stored encrypted; ``context`` is ``"table.column"`` and must be unique."""

    impl = Text
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return keyring().encrypt(self.context, value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return keyring().decrypt(self.context, value)


def normalise_email(value: str) -> str:
    """The normal form the blind index hashes: Unicode NFC, trimmed, lower-cased."""
    return unicodedata.normalize("NFC", value).strip().lower()


def blind_index(value: str | None, *, key: str | None = None) -> str | None:
    """Keyed HMAC-SHA256 of the normalised value: exact-match lookup without storing the clear value."""
    if value is None or not value.strip():
        return None
    secret = (key or current_app.config["CRM_BLIND_INDEX_KEY"]).encode()
    return hmac.new(secret, normalise_email(value).encode("utf-8"), hashlib.sha256).hexdigest()


BLIND_INDEX_TYPE = String(64)
