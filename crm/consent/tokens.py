"""Link tokens for the pages an HCP opens without logging in (confirm, unsubscribe, preferences).

A token is ``<random>.<signature>``: 32 random bytes, and an HMAC of the purpose and the random part
under the app's secret key. A forged token, or a token of another purpose, fails the signature check
before the database is asked; a token that passes is looked up by its SHA-256 (the only thing
stored) and must be unexpired and unused. Each token is tied to the ledger event or send that made it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from crm.consent.models import TOKEN_PURPOSES, ConsentToken
from crm.db import DbSession, utcnow
from crm.errors import NotFound
from crm.security.tokens import new_token, token_hash

INVALID_LINK = "This link is not valid. Check that you copied the whole address from the email."


def _signature(purpose: str, random_part: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    mac = hmac.new(key, f"consent-link:{purpose}:{random_part}".encode(), hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def issue(
    session: DbSession,
    purpose: str,
    hcp_id: int,
    *,
    channel: str | None = None,
    consent_purpose: str | None = None,
    event_id: int | None = None,
    reference: str | None = None,
    ttl: timedelta | None = None,
) -> str:
    """Create a token and return it in clear (it goes into a link; only its hash is kept)."""
    if purpose not in TOKEN_PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    random_part = new_token()
    raw = f"{random_part}.{_signature(purpose, random_part)}"
    if ttl is None:
        ttl = timedelta(days=current_app.config["CRM_CONSENT_TOKEN_DAYS"][purpose])
    session.add(ConsentToken(
        token_hash=token_hash(raw), purpose=purpose, hcp_id=hcp_id, channel=channel,
        consent_purpose=consent_purpose, event_id=event_id, reference=reference, expires_at=utcnow() + ttl,
    ))
    session.flush()
    return raw


def resolve(session: DbSession, raw: str, purpose: str) -> ConsentToken:
    """The token behind ``raw`` for ``purpose``; forged, unknown or wrong-purpose tokens: 404.

    Used and expired tokens are returned: the page says which (``status``).
    """
    random_part, dot, signature = (raw or "").partition(".")
    if not dot or not random_part or len(raw) > 200:
        raise NotFound(INVALID_LINK)
    if not hmac.compare_digest(signature, _signature(purpose, random_part)):
        raise NotFound(INVALID_LINK)
    token = session.scalar(select(ConsentToken).where(ConsentToken.token_hash == token_hash(raw)))
    if token is None or token.purpose != purpose:
        raise NotFound(INVALID_LINK)
    return token


def status(token: ConsentToken, now: datetime | None = None) -> str:
    """``valid``, ``used`` or ``expired``."""
    if token.used_at is not None:
        return "used"
    if token.expires_at <= (now or utcnow()):
        return "expired"
    return "valid"


def consume(session: DbSession, token: ConsentToken) -> bool:
    """Mark the token used; False when another request used it first (single use, race-safe)."""
    now = utcnow()
    result = session.execute(
        update(ConsentToken)
        .where(ConsentToken.id == token.id, ConsentToken.used_at.is_(None), ConsentToken.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(token)
    return bool(getattr(result, "rowcount", 0) == 1)


def revoke_all(session: DbSession, hcp_id: int) -> int:
    """Invalidate every open link of an HCP (erasure)."""
    result = session.execute(
        update(ConsentToken)
        .where(ConsentToken.hcp_id == hcp_id, ConsentToken.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
