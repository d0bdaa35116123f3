"""An engagement plan: a cycle, a scope (segment and/or territories), goals per HCP per channel, optional
goals per product, and a target list of HCPs with goals of their own.

Goals are small maps kept on the plan (``{"visit": 3, "email": 6}``); attainment is never stored: it is
computed from the timeline when it is read (``crm.plans.attainment``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, UTCDateTime, utcnow


class EngagementPlan(Base):
    __tablename__ = "engagement_plans"
    __table_args__ = (
        CheckConstraint("cycle_end >= cycle_start", name="cycle_order"),
        Index("ix_engagement_plans_cycle", "cycle_start", "cycle_end"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    cycle_start: Mapped[date] = mapped_column(Date, nullable=False)
    cycle_end: Mapped[date] = mapped_column(Date, nullable=False)  # inclusive
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"), index=True)
    # channel -> touches per HCP in the cycle
    channel_goals: Mapped[dict[str, int]] = mapped_column(JSON, nullable=False, default=dict)
    # [{"sku", "channel", "touches"}]: touches per HCP naming the product on that channel
    product_goals: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    segment = relationship("Segment", lazy="joined")
    created_by = relationship("User", lazy="joined")
    territories: Mapped[list[PlanTerritory]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    targets: Mapped[list[PlanTarget]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class PlanTerritory(Base):
    """A territory in the plan's scope."""

    __tablename__ = "engagement_plan_territories"

    plan_id: Mapped[int] = mapped_column(ForeignKey("engagement_plans.id"), primary_key=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"), primary_key=True, index=True)

    territory = relationship("Territory", lazy="joined")


class PlanTarget(Base):
    """An HCP on the plan's target list; ``goals`` (channel -> touches) replace the plan's goal per channel."""

    __tablename__ = "engagement_plan_targets"

    plan_id: Mapped[int] = mapped_column(ForeignKey("engagement_plans.id"), primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), primary_key=True, index=True)
    goals: Mapped[dict[str, int]] = mapped_column(JSON, nullable=False, default=dict)
