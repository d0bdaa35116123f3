"""A planned visit: who plans to see which HCP when, and what became of the plan.

A plan is not an interaction (nothing happened yet): it never goes on the timeline. Its life is
``planned`` -> ``started`` (turned into a draft visit, ``visit_id``) or ``cancelled``. Every reschedule
keeps the times it moved from in ``VisitPlanReschedule``, as well as in the audit trail.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, TimestampMixin, UTCDateTime, utcnow

PLAN_STATUSES = ("planned", "started", "cancelled")
PLAN_MODES = ("in_person", "remote")


class VisitPlan(TimestampMixin, Base):
    __tablename__ = "visit_plans"
    __table_args__ = (
        CheckConstraint("planned_end > planned_start", name="time_order"),
        # the week views: one owner's week, and every plan of a week (team view, per territory)
        Index("ix_visit_plans_owner_start", "owner_id", "planned_start"),
        Index("ix_visit_plans_start", "planned_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="planned")
    planned_start: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    planned_end: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    mode: Mapped[str] = mapped_column(String(20), nullable=False, default="in_person")
    # `medical` for Medical Affairs' plans: the objective is then withheld from field force and marketing.
    sensitivity: Mapped[str] = mapped_column(String(20), nullable=False, default="standard")
    objective: Mapped[str] = mapped_column(Text, nullable=False, default="")
    products: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    # The draft visit the plan was turned into (one plan, one visit).
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), unique=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    owner = relationship("User", lazy="joined")
    hcp = relationship("HCP", lazy="joined")
    reschedules: Mapped[list[VisitPlanReschedule]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="VisitPlanReschedule.id")

    __mapper_args__ = {"version_id_col": version}


class VisitPlanReschedule(Base):
    """One move of a plan: from which times to which, by whom, when, and why (optional)."""

    __tablename__ = "visit_plan_reschedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("visit_plans.id"), nullable=False, index=True)
    from_start: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    from_end: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    to_start: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    to_end: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
