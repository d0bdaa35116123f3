"""Personal data encrypted at rest by a column type, bound to table and column.

Keys come from ``CRM_ENCRYPTION_KEYS`` (newest first). Each key is one of two schemes, and a value
says by its first characters which one it was written with, so values of both kinds live side by
side in one column and all of them decrypt:

- **AES-GCM** (keys written ``aesgcm:<32 random bytes, URL-safe base64>``): the value is
  ``A1.`` followed by the URL-safe base64 of ``key id (4 bytes) || nonce (12 random bytes) ||
  ciphertext || tag (16 bytes)``. The associated data is ``A1.`` + key id + ``table.column``, so a
  ciphertext copied into another column (or with its key id changed) fails to decrypt instead of
  silently showing one person's data as another field. The key id is the first 4 bytes of
  SHA-256 over ``crm-aesgcm-key-id:`` and the key: it picks the key without trying each one.
- **Fernet** (a plain Fernet key, the scheme of every key before AES-GCM): the plaintext is prefixed
  with its context (``hcps.email`` and a NUL byte) and the whole token is authenticated. Fernet
  tokens always begin ``gAAAAA``, never ``A1.``.

New values are written under the newest key in its scheme; ``crm keys rotate`` re-encrypts every value
that is not under the newest key (a Fernet value under an AES-GCM key in front moves to AES-GCM).
AES-GCM costs about a tenth of Fernet per value (no separate HMAC, no padding, a shorter token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app
from sqlalchemy import String, Text
from sqlalchemy.types import TypeDecorator

_SEP = b"\x00"
AESGCM_KEY_PREFIX = "aesgcm:"
AESGCM_TOKEN_PREFIX = "A1."  # noqa: S105 - a format marker, not a secret
_AES_HEADER = AESGCM_TOKEN_PREFIX.encode("ascii")
_KID_SIZE = 4
_NONCE_SIZE = 12  # 96 random bits per value, as NIST SP 800-38D recommends for GCM
_TAG_SIZE = 16


class DecryptionError(RuntimeError):
    """A stored value does not decrypt under any configured key, or belongs to another column."""


class KeyFormatError(ValueError):
    """A configured encryption key is neither a Fernet key nor ``aesgcm:`` and 32 bytes of base64."""


def generate_key(scheme: str = "aes-gcm") -> str:
    """A new key for ``CRM_ENCRYPTION_KEYS``: ``aes-gcm`` (the default) or ``fernet``."""
    if scheme == "fernet":
        return Fernet.generate_key().decode("ascii")
    if scheme == "aes-gcm":
        return AESGCM_KEY_PREFIX + base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")
    raise ValueError(f"unknown key scheme {scheme!r}; use aes-gcm or fernet")


class _AesKey:
    scheme = "aes-gcm"

    def __init__(self, text: str) -> None:
        try:
            raw = base64.urlsafe_b64decode(text[len(AESGCM_KEY_PREFIX):].encode("ascii"))
        except (binascii.Error, ValueError) as exc:
            raise KeyFormatError("an aesgcm: key is not URL-safe base64") from exc
        if len(raw) != 32:
            raise KeyFormatError("an aesgcm: key must be 32 bytes (AES-256)")
        self.aead = AESGCM(raw)
        self.kid = hashlib.sha256(b"crm-aesgcm-key-id:" + raw).digest()[:_KID_SIZE]
        self.header = _AES_HEADER + self.kid


class _FernetKey:
    scheme = "fernet"

    def __init__(self, text: str) -> None:
        try:
            self.fernet = Fernet(text.encode("ascii"))
        except (binascii.Error, ValueError) as exc:
            raise KeyFormatError("a key is neither a Fernet key nor aesgcm:<32 bytes, URL-safe base64>") from exc


def parse_key(text: str) -> _AesKey | _FernetKey:
    """One configured key; ``KeyFormatError`` when it is neither scheme."""
    return _AesKey(text) if text.startswith(AESGCM_KEY_PREFIX) else _FernetKey(text)


class Keyring:
    """The configured keys, newest first; encrypts under the newest, decrypts under any."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self.keys = list(keys)
        self.parsed = [parse_key(k) for k in keys]
        self.primary = self.parsed[0]
        self.scheme = self.primary.scheme
        self._fernets = [(i, k.fernet) for i, k in enumerate(self.parsed) if isinstance(k, _FernetKey)]
        self._aes: dict[bytes, list[tuple[int, _AesKey]]] = {}
        for i, k in enumerate(self.parsed):
            if isinstance(k, _AesKey):
                self._aes.setdefault(k.kid, []).append((i, k))

    # -- writing ---------------------------------------------------------------------------------

    def encrypt(self, context: str, value: str) -> str:
        key = self.primary
        if isinstance(key, _AesKey):
            nonce = os.urandom(_NONCE_SIZE)
            sealed = key.aead.encrypt(nonce, value.encode("utf-8"), key.header + context.encode())
            return AESGCM_TOKEN_PREFIX + base64.urlsafe_b64encode(key.kid + nonce + sealed).decode("ascii")
        return key.fernet.encrypt(context.encode() + _SEP + value.encode("utf-8")).decode("ascii")

    def encryptor(self, context: str) -> Callable[[str | None], str | None]:
        """``encrypt`` for one column, for many values in a row (a batch): None stays None."""
        encrypt = self.encrypt

        def one(value: str | None) -> str | None:
            return None if value is None else encrypt(context, value)

        return one

    # -- reading ---------------------------------------------------------------------------------

    def decrypt(self, context: str, token: str) -> str:
        index, value = self._open(context, token)
        if index is None:
            raise DecryptionError(f"{context}: {value}")
        return value

    def _open(self, context: str, token: str) -> tuple[int | None, str]:
        """``(key index, plaintext)``, or ``(None, why not)``."""
        if token.startswith(AESGCM_TOKEN_PREFIX):
            try:
                blob = base64.urlsafe_b64decode(token[len(AESGCM_TOKEN_PREFIX):].encode("ascii"))
            except (binascii.Error, ValueError, UnicodeEncodeError):
                return None, "value is not a well-formed AES-GCM value"
            if len(blob) < _KID_SIZE + _NONCE_SIZE + _TAG_SIZE:
                return None, "value is not a well-formed AES-GCM value"
            kid, nonce, sealed = (blob[:_KID_SIZE], blob[_KID_SIZE:_KID_SIZE + _NONCE_SIZE],
                                  blob[_KID_SIZE + _NONCE_SIZE:])
            candidates = self._aes.get(kid)
            if not candidates:
                return None, "value does not decrypt under any configured key"
            for index, key in candidates:
                try:
                    plain = key.aead.decrypt(nonce, sealed, key.header + context.encode())
                except InvalidTag:
                    continue
                return index, plain.decode("utf-8")
            return None, "value does not decrypt: altered, or it belongs to another column"
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            return None, "value does not decrypt under any configured key"
        for index, fernet in self._fernets:
            try:
                plain = fernet.decrypt(raw)
            except InvalidToken:
                continue
            prefix, sep, rest = plain.partition(_SEP)
            if not sep or prefix.decode() != context:
                return None, "value belongs to another column"
            return index, rest.decode("utf-8")
        return None, "value does not decrypt under any configured key"

    # -- rotation --------------------------------------------------------------------------------

    def is_current(self, token: str) -> bool:
        """True when ``token`` is already encrypted under the newest key (in its scheme)."""
        key = self.primary
        if isinstance(key, _AesKey):
            if not token.startswith(AESGCM_TOKEN_PREFIX):
                return False
            try:
                blob = base64.urlsafe_b64decode(token[len(AESGCM_TOKEN_PREFIX):len(AESGCM_TOKEN_PREFIX) + 8])
            except (binascii.Error, ValueError, UnicodeEncodeError):
                return False
            return blob[:_KID_SIZE] == key.kid
        if token.startswith(AESGCM_TOKEN_PREFIX):
            return False
        try:
            key.fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return False
        return True

    def rotate(self, token: str, context: str) -> str:
        """``token`` (a value of the column ``context``) re-encrypted under the newest key.

        ``DecryptionError`` when it does not decrypt under any configured key or belongs to another
        column; refuses if the plaintext would not be the same.
        """
        value = self.decrypt(context, token)
        new = self.encrypt(context, value)
        if self._open(context, new) != (0, value):  # pragma: no cover - a cryptography bug
            raise RuntimeError("re-encryption changed the plaintext; nothing written")
        return new

    def key_index(self, token: str, context: str) -> int:
        """The position in CRM_ENCRYPTION_KEYS of the key ``token`` is encrypted under."""
        index, why = self._open(context, token)
        if index is None:
            raise DecryptionError(f"{context}: {why}")
        return index

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

    def batch_encryptor(self) -> Callable[[str | None], str | None]:
        """Encrypt many values of this column with the keyring taken once (a bulk write's batch),
        not looked up through the application for every value."""
        return keyring().encryptor(self.context)


def normalise_email(value: str) -> str:
    """The normal form the blind index hashes: Unicode NFC, trimmed, lower-cased."""
    return unicodedata.normalize("NFC", value).strip().lower()


def blind_index(value: str | None, *, key: str | None = None) -> str | None:
    """Keyed HMAC-SHA256 of the normalised value: exact-match lookup without storing the clear value."""
    if value is None or not value.strip():
        return None
    secret = (key or current_app.config["CRM_BLIND_INDEX_KEY"]).encode()
    return hmac.new(secret, normalise_email(value).encode("utf-8"), hashlib.sha256).hexdigest()


def blind_indexes(values: Iterable[str], *, key: str | None = None) -> dict[str, str]:
    """``{value: blind_index(value)}`` for many values (a webhook batch's addresses), the key taken once;
    blank values are left out."""
    keyed = hmac.new((key or current_app.config["CRM_BLIND_INDEX_KEY"]).encode(), digestmod=hashlib.sha256)
    out = {}
    for value in values:
        if value is not None and value.strip():
            mac = keyed.copy()  # the key's part of HMAC computed once, not again for every value
            mac.update(normalise_email(value).encode("utf-8"))
            out[value] = mac.hexdigest()
    return out


BLIND_INDEX_TYPE = String(64)
