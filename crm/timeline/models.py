from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, UTCDateTime, utcnow

CHANNELS = ("visit", "email", "event", "call_centre", "order", "survey", "consent")
SOURCES = ("crm", "esp", "event_platform", "call_centre_system", "erp", "import")
SENSITIVITIES = ("standard", "medical", "pv")


class Interaction(Base):
    """One fact on the timeline. Never rewritten: a correction is a new item that supersedes it."""

    __tablename__ = "interactions"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_interactions_feed", "occurred_at", "id"),
        # Covers the insights' period scans (channel mix, reach, attainment): read from the index alone.
        Index("ix_interactions_period", "occurred_at", "channel", "kind", "sensitivity", "superseded_by_id", "id"),
        # The insights' weekly counts on SQLite: one index range counted per (week, channel, sensitivity) of
        # the latest versions (crm.insights.services.channel_mix), no per-row date arithmetic or sort.
        Index("ix_interactions_weekly", "channel", "sensitivity", "occurred_at",
              sqlite_where=text("superseded_by_id IS NULL"), postgresql_where=text("superseded_by_id IS NULL")),
        # The few corrected items of a period, left out of counts read from the participants alone.
        Index("ix_interactions_superseded", "occurred_at", "id",
              sqlite_where=text("superseded_by_id IS NOT NULL"), postgresql_where=text("superseded_by_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    channel: Mapped[str] = mapped_column(String(20), nullable=False)
    kind: Mapped[str] = mapped_column(String(60), nullable=False)
    source: Mapped[str] = mapped_column(String(30), nullable=False, default="crm")
    external_id: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # Written for the `summary` level: no free text, safe to show where details are withheld.
    safe_summary: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    sensitivity: Mapped[str] = mapped_column(String(20), nullable=False, default="standard")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The department that owns the item ("system" for outside sources), a fact of the item, not an ACL.
    owner_role: Mapped[str] = mapped_column(String(20), nullable=False)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"), unique=True)
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))
    consent_gap: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    owner = relationship("User", lazy="joined")
    participants: Mapped[list[InteractionParticipant]] = relationship(
        back_populates="interaction", cascade="all, delete-orphan", lazy="selectin"
    )
    products: Mapped[list[InteractionProduct]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )


class InteractionParticipant(Base):
    """An HCP on an interaction. ``occurred_at`` is copied so one HCP's timeline is an index range scan;
    ``channel`` and ``kind`` are copied so the touches of a period per HCP (insights reach) are read from
    one index without visiting every item. All three are facts an item never changes (a correction is a
    new item), written with the item by ``crm.timeline.services`` and nowhere else."""

    __tablename__ = "interaction_participants"
    __table_args__ = (
        # One HCP's timeline (keyset on occurred_at, interaction_id); channel and kind at the end make it
        # cover the touches per HCP over a long period too (insights reach: read in HCP order, no sort).
        Index("ix_interaction_participants_timeline", "hcp_id", "occurred_at", "interaction_id", "channel", "kind"),
        # Everyone touched in a period (insights reach, plan attainment): an index range scan that also
        # holds what makes an item a touch (channel, kind).
        Index("ix_interaction_participants_period", "occurred_at", "hcp_id", "channel", "kind", "interaction_id"),
    )

    interaction_id: Mapped[int] = mapped_column(ForeignKey("interactions.id"), primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    channel: Mapped[str] = mapped_column(String(20), nullable=False)
    kind: Mapped[str] = mapped_column(String(60), nullable=False)

    interaction: Mapped[Interaction] = relationship(back_populates="participants")


class InteractionProduct(Base):
    __tablename__ = "interaction_products"
    __table_args__ = (Index("ix_interaction_products_sku", "sku", "interaction_id"),)

    interaction_id: Mapped[int] = mapped_column(ForeignKey("interactions.id"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), primary_key=True)


class SensitiveRead(Base):
    """Who read a `medical`/`pv` item or consent evidence, and when (SPEC section 4)."""

    __tablename__ = "sensitive_reads"
    __table_args__ = (Index("ix_sensitive_reads_time", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    viewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    what: Mapped[str] = mapped_column(String(30), nullable=False)  # interaction | visit | consent_evidence | export
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))
    hcp_id: Mapped[int | None] = mapped_column(ForeignKey("hcps.id"))
    sensitivity: Mapped[str | None] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
