"""Attendance rows that matched no HCP, kept for someone to review instead of being dropped."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import Base, UTCDateTime, utcnow
from crm.security.crypto import EncryptedString

UNMATCHED_STATUSES = ("open", "resolved", "dismissed")


class UnmatchedAttendanceRow(Base):
    """One row of an event platform's export whose person is not (yet) a known HCP.

    The row's content names a person, so it is stored encrypted (JSON of the mapped columns).
    Idempotent on (event, external id): importing the same file again keeps one row.
    """

    __tablename__ = "unmatched_attendance_rows"
    __table_args__ = (
        UniqueConstraint("event_id", "external_id"),
        Index("ix_unmatched_attendance_rows_status", "event_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), nullable=False)
    external_id: Mapped[str] = mapped_column(String(200), nullable=False)
    row_number: Mapped[int] = mapped_column(Integer, nullable=False)
    attendance_status: Mapped[str] = mapped_column(String(20), nullable=False)
    data: Mapped[str] = mapped_column(EncryptedString("unmatched_attendance_rows.data"), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="open")
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    resolved_hcp_id: Mapped[int | None] = mapped_column(ForeignKey("hcps.id"))
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
