"""Writing to the timeline. Every channel records its facts through ``record_interaction``.

Reading (the per-HCP timeline, the feed, the contact-fatigue strip) lives in ``crm.timeline.queries``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm import signals
from crm.audit import services as audit
from crm.errors import Conflict, Invalid, NotFound
from crm.hcps.models import HCP
from crm.timeline.models import (
    CHANNELS,
    SENSITIVITIES,
    SOURCES,
    Interaction,
    InteractionParticipant,
    InteractionProduct,
)


def find_by_external_id(session: Session, source: str, external_id: str) -> Interaction | None:
    return session.scalar(
        select(Interaction).where(Interaction.source == source, Interaction.external_id == external_id)
    )


def record_interaction(
    session: Session,
    actor: Any,
    *,
    hcp_ids: Iterable[int],
    occurred_at: datetime,
    channel: str,
    kind: str,
    source: str = "crm",
    external_id: str | None = None,
    summary: str = "",
    safe_summary: str = "",
    details: dict[str, Any] | None = None,
    sensitivity: str = "standard",
    products: Iterable[str] = (),
    supersedes: Interaction | None = None,
    consent_gap: bool = False,
    owner_role: str | None = None,
    audit_changes: bool = True,
) -> tuple[Interaction, bool]:
    """Put one fact on the timeline of every HCP in ``hcp_ids``. Returns ``(interaction, created)``.

    Idempotent on ``(source, external_id)``: a replay returns the existing item and changes nothing,
    also when two requests race (the unique constraint decides; the loser reads the winner's row).
    ``supersedes`` makes this item the correction of an earlier one; the earlier one is kept.
    Runs in the caller's transaction, so the item commits or rolls back with its channel record.
    """
    if channel not in CHANNELS:
        raise Invalid(errors={"channel": [f"must be one of {', '.join(CHANNELS)}"]})
    if sensitivity not in SENSITIVITIES:
        raise Invalid(errors={"sensitivity": [f"must be one of {', '.join(SENSITIVITIES)}"]})
    if source not in SOURCES:
        raise Invalid(errors={"source": [f"must be one of {', '.join(SOURCES)}"]})
    if occurred_at.tzinfo is None:
        raise Invalid(errors={"occurred_at": ["Naive datetime refused: include an offset or Z."]})
    if not kind.startswith(f"{channel}."):
        raise Invalid(errors={"kind": [f"must start with '{channel}.'"]})
    if external_id is not None:
        existing = find_by_external_id(session, source, external_id)
        if existing is not None:
            return existing, False
    ids = list(dict.fromkeys(hcp_ids))
    if not ids:
        raise Invalid(errors={"hcp_ids": ["an interaction needs at least one HCP"]})
    found = session.scalar(select(func.count()).select_from(HCP).where(HCP.id.in_(ids))) or 0
    if found != len(ids):
        raise NotFound("One or more HCPs do not exist.")
    if supersedes is not None and supersedes.superseded_by_id is not None:
        raise Conflict("That item has already been corrected; correct the latest version instead.")

    item = Interaction(
        occurred_at=occurred_at,
        channel=channel,
        kind=kind,
        source=source,
        external_id=external_id,
        summary=summary,
        safe_summary=safe_summary or f"{kind.replace('.', ' ').replace('_', ' ')}",
        details=details or {},
        sensitivity=sensitivity,
        owner_id=getattr(actor, "id", None),
        owner_role=owner_role or getattr(actor, "role", None) or "system",
        supersedes_id=supersedes.id if supersedes is not None else None,
        consent_gap=consent_gap,
    )
    item.participants = [InteractionParticipant(hcp_id=h, occurred_at=occurred_at) for h in ids]
    item.products = [InteractionProduct(sku=s) for s in dict.fromkeys(products)]
    try:
        with session.begin_nested():
            session.add(item)
            session.flush()
    except IntegrityError:
        if external_id is None:
            raise
        winner = find_by_external_id(session, source, external_id)
        if winner is None:
            raise
        return winner, False
    if supersedes is not None:
        supersedes.superseded_by_id = item.id
    if audit_changes:
        audit.record(
            session, actor, "interaction.create", "interaction", item.id,
            audit.created({"channel": channel, "kind": kind, "source": source, "external_id": external_id,
                           "hcp_ids": ids, "sensitivity": sensitivity, "supersedes_id": item.supersedes_id}),
        )
    signals.interaction_recorded.send(item, actor=actor, created=True)
    return item, True
