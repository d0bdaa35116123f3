"""A segment: a named, saved HCP filter (``crm.segments.filters``) that campaigns, plans and insights use."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, UTCDateTime, utcnow


class Segment(Base):
    """Who the segment means is computed when it is read (HCPs change tier, territory, tags)."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    description: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    professions: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    specialties: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    territory_codes: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    tags: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    tiers: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    created_by = relationship("User", lazy="joined")
