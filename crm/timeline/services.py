"""Writing to the timeline. Every channel records its facts through ``record_interaction``.

Reading (the per-HCP timeline, the feed, the contact-fatigue strip) lives in ``crm.timeline.queries``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import lazyload

from crm import signals
from crm.access.reads import strictest
from crm.audit import services as audit
from crm.db import DbSession, among, driver_time, dump_json, insert_driver_rows, utcnow
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

# A fact's details when it has none (read-only: one object shared by every such fact).
NO_DETAILS: Mapping[str, Any] = MappingProxyType({})


def find_by_external_id(session: DbSession, source: str, external_id: str) -> Interaction | None:
    return session.scalar(
        select(Interaction).where(Interaction.source == source, Interaction.external_id == external_id)
    )


def record_interaction(
    session: DbSession,
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
    if supersedes is not None:
        # A correction is read at least as strictly as what it corrects (it carries the same facts).
        sensitivity = strictest(sensitivity, supersedes.sensitivity)

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
    item.participants = [InteractionParticipant(hcp_id=h, occurred_at=occurred_at, channel=channel, kind=kind)
                         for h in ids]
    item.products = [InteractionProduct(sku=s) for s in dict.fromkeys(products)]
    if external_id is None:  # nothing for a concurrent writer to collide on: no savepoint needed
        session.add(item)
        session.flush()
    else:
        try:
            with session.begin_nested():
                session.add(item)
                session.flush()
        except IntegrityError:
            winner = find_by_external_id(session, source, external_id)
            if winner is None:
                raise
            return winner, False
    if supersedes is not None:
        supersedes.superseded_by_id = item.id
        _raise_superseded(session, actor, supersedes, item)
    if audit_changes:
        audit.record(
            session, actor, "interaction.create", "interaction", item.id,
            audit.created({"channel": channel, "kind": kind, "source": source, "external_id": external_id,
                           "hcp_ids": ids, "sensitivity": sensitivity, "supersedes_id": item.supersedes_id}),
        )
    signals.interaction_recorded.send(item, actor=actor, created=True)
    return item, True


def _raise_superseded(session: DbSession, actor: Any, superseded: Interaction, correction: Interaction) -> None:
    """Every item that ``correction`` supersedes, directly or down the chain, takes its sensitivity when
    that is stricter (adverse-event wording turned a visit into `pv`: the original carries the same text).

    Only the sensitivity changes; the original's content stays as it was submitted. Each raise is an
    audit record naming the correction, so the trail says why an old item reads differently now.
    """
    old: Interaction | None = superseded
    seen: set[int] = set()
    while old is not None and old.id not in seen:
        seen.add(old.id)
        target = strictest(old.sensitivity, correction.sensitivity)
        if target != old.sensitivity:
            before = old.sensitivity
            old.sensitivity = target
            audit.record(
                session, actor, "interaction.reclassify", "interaction", old.id,
                audit.diff({"sensitivity": before}, {"sensitivity": target}),
                reason=f"Superseded by item {correction.id} ({target}): a corrected item is read as strictly "
                       "as its correction",
            )
        old = session.get(Interaction, old.supersedes_id) if old.supersedes_id is not None else None


class Fact(NamedTuple):
    """One single-HCP item for ``record_interactions`` (standard sensitivity, never a correction).
    A named tuple: a batch builds thousands of them."""

    hcp_id: int
    occurred_at: datetime
    kind: str
    external_id: str
    summary: str = ""
    safe_summary: str = ""
    details: Mapping[str, Any] = NO_DETAILS
    products: tuple[str, ...] = ()
    owner_id: int | None = None
    owner_role: str = "system"


_ITEM_KEYS = ("occurred_at", "recorded_at", "channel", "kind", "source", "external_id", "summary", "safe_summary",
              "details", "sensitivity", "owner_id", "owner_role", "supersedes_id", "superseded_by_id", "consent_gap")


def record_interactions(session: DbSession, actor: Any, facts: Sequence[Fact], *, channel: str,
                        source: str, hcps_checked: bool = False) -> dict[str, int]:
    """``record_interaction`` for a batch of facts from one source (a webhook batch, a campaign send) in a
    constant number of statements. Returns ``{external_id: interaction_id}`` for every fact.

    The same rules: channel, source and kind are checked, times must be aware, the HCPs must exist, and
    the write is idempotent on ``(source, external_id)``: facts already recorded are returned as they
    are, and a concurrent writer of the same facts is settled by the unique constraint (the loser's
    insert does nothing and it reads the winner's ids). Every new item that a receiver needs is announced
    with ``interaction_recorded`` (see ``signals.listen_to_interactions``). No audit record per item: the
    caller audits the batch. ``hcps_checked``: the caller read every ``hcp_id`` from the HCP table in this
    transaction (the foreign key still stands behind it), so they are not counted again.
    """
    if channel not in CHANNELS:
        raise Invalid(errors={"channel": [f"must be one of {', '.join(CHANNELS)}"]})
    if source not in SOURCES:
        raise Invalid(errors={"source": [f"must be one of {', '.join(SOURCES)}"]})
    unique: dict[str, Fact] = {}
    prefix = f"{channel}."
    kinds: set[str] = set()
    for fact in facts:
        if fact.occurred_at.tzinfo is None:
            raise Invalid(errors={"occurred_at": ["Naive datetime refused: include an offset or Z."]})
        kinds.add(fact.kind)
        if fact.external_id not in unique:
            unique[fact.external_id] = fact
    for kind in kinds:
        if not kind.startswith(prefix):
            raise Invalid(errors={"kind": [f"must start with '{channel}.'"]})
    if not unique:
        return {}
    table = Interaction.__table__
    ids: dict[str, int] = {}
    new = list(unique.values())  # what is recorded already is skipped by the insert and read back below
    if not hcps_checked:
        hcp_ids = {f.hcp_id for f in new}
        found = session.scalar(select(func.count()).select_from(HCP).where(
            among(session, HCP.id, sorted(hcp_ids)))) or 0
        if found != len(hcp_ids):
            raise NotFound("One or more HCPs do not exist.")
    # Driver values built straight from the facts (times formatted once each, JSON by orjson): at batch
    # sizes SQLAlchemy's per-value processing costs more than the write.
    dialect = session.get_bind().dialect.name
    to_time = driver_time(dialect)
    times: dict[datetime, Any] = {}
    now = to_time(utcnow())
    rows = []
    for f in new:
        at = times.get(f.occurred_at)
        if at is None:
            at = times[f.occurred_at] = to_time(f.occurred_at)
        rows.append((at, now, channel, f.kind, source, f.external_id, f.summary,
                     f.safe_summary or f.kind.replace(".", " ").replace("_", " "), dump_json(f.details),
                     "standard", f.owner_id, f.owner_role, None, None, False))
    inserted: dict[str, int] = dict(insert_driver_rows(
        session, table, _ITEM_KEYS, rows, ["source", "external_id"], ["external_id", "id"], json_keys=("details",)))
    if len(inserted) < len(new):  # recorded before (a replay), or by a concurrent writer a moment ago: theirs stand
        lost = [f.external_id for f in new if f.external_id not in inserted]
        ids.update(session.execute(select(table.c.external_id, table.c.id).where(
            table.c.source == source, among(session, table.c.external_id, lost))).all())
    ids.update(inserted)
    created = new if len(inserted) == len(new) else [f for f in new if f.external_id in inserted]
    insert_driver_rows(
        session, InteractionParticipant.__table__, ("interaction_id", "hcp_id", "occurred_at", "channel", "kind"),
        [(inserted[f.external_id], f.hcp_id, times[f.occurred_at], channel, f.kind) for f in created],
        ["interaction_id", "hcp_id"], ["interaction_id"])
    insert_driver_rows(
        session, InteractionProduct.__table__, ("interaction_id", "sku"),
        [(inserted[f.external_id], sku) for f in created if f.products for sku in dict.fromkeys(f.products)],
        ["interaction_id", "sku"], ["interaction_id"])
    # Listeners get the items they declared they need (signals.listen_to_interactions) as session-bound
    # objects: one read for the batch (participants in a second; products and owner only if a listener
    # asks). Items nobody needs (most of a webhook batch: opens, clicks, deliveries) are not read back.
    wanted = {kind for kind in kinds if signals.interaction_wanted(channel, kind)}
    announced = [inserted[f.external_id] for f in created if f.kind in wanted]
    for start in range(0, len(announced), 500):
        for item in session.scalars(select(Interaction).where(Interaction.id.in_(announced[start:start + 500]))
                                    .options(lazyload(Interaction.products), lazyload(Interaction.owner))):
            signals.interaction_recorded.send(item, actor=actor, created=True)
    return ids
