"""The SendGrid Event Webhook signature (ECDSA P-256 over SHA-256), checked with ``cryptography``.

The platform signs the ``X-Twilio-Email-Event-Webhook-Timestamp`` header value followed by the exact raw
body bytes; the signature (base64 DER) comes in ``X-Twilio-Email-Event-Webhook-Signature``. The public
key is configured as the platform shows it: base64 of the DER SubjectPublicKeyInfo (a PEM block is
accepted too). A timestamp outside the tolerance is refused even when the signature holds, so that a
captured signed body cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import functools
import time
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crm.errors import Forbidden, Unauthorized

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
DEFAULT_TOLERANCE_SECONDS = 600


class WebhookKeyError(ValueError):
    """The configured public key is not a base64 DER (or PEM) ECDSA P-256 public key."""


@functools.lru_cache(maxsize=8)
def load_public_key(configured: str) -> ec.EllipticCurvePublicKey:
    text = configured.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise WebhookKeyError("CRM_ESP_WEBHOOK_PUBLIC_KEY is not a base64 DER public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise WebhookKeyError("CRM_ESP_WEBHOOK_PUBLIC_KEY must be an ECDSA P-256 public key")
    return key


def verify(configured_key: str, headers: Mapping[str, str] | Any, body: bytes, *,
           tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None) -> None:
    """Raise ``Unauthorized`` (unsigned) or ``Forbidden`` (bad signature, stale timestamp); return if good."""
    public_key = load_public_key(configured_key)
    signature_b64 = (headers.get(SIGNATURE_HEADER) or "").strip()
    timestamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
    if not signature_b64 or not timestamp:
        raise Unauthorized(f"Unsigned webhook request: {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required.")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise Forbidden("The webhook signature does not match the body and timestamp for the configured key.",
                        rule="esp-webhook:signature") from exc
    try:
        signed_at = int(timestamp)
    except ValueError as exc:
        raise Forbidden("The webhook timestamp is not a Unix time.", rule="esp-webhook:timestamp") from exc
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance:
        raise Forbidden(f"The webhook timestamp is more than {tolerance} seconds from now; a replayed or delayed "
                        "request is refused.", rule="esp-webhook:timestamp")


def sign(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """The signature header value the platform would send (demo data, benchmarks and tests sign with it)."""
    return base64.b64encode(private_key.sign(timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))).decode()


def public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The public half as the platform shows it (base64 DER SubjectPublicKeyInfo)."""
    der = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()
