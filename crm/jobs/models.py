"""``jobs``: one row per background job, what users and admins see of it.

States: ``queued`` (waiting for a consumer; ``next_attempt_at`` says from when) -> ``running`` (a consumer holds
it until ``locked_until``, extended at each step) -> ``done`` (``result``) or ``failed`` (``error``, after
``CRM_JOB_MAX_ATTEMPTS`` attempts, or at once for a refusal no retry can change); a failed attempt before the
last goes back to ``queued`` with its error and a backoff. A consumer killed mid-job leaves ``running`` with a
lease that runs out: the next consumer takes the job over and it resumes where its last committed step ended.
The queue (huey) carries only the job's id; the parameters and the outcome live here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, UTCDateTime, utcnow

JOB_STATES = ("queued", "running", "done", "failed")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state", "state", "next_attempt_at"),
        Index("ix_jobs_subject", "subject", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    # What the job is about, for its pages: "campaign:12", "import:3"; never personal data.
    subject: Mapped[str | None] = mapped_column(String(60))
    state: Mapped[str] = mapped_column(String(10), nullable=False, default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    progress_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)

    # Loaded when asked for (the jobs list joins it): the row is locked FOR UPDATE, which PostgreSQL refuses
    # on the nullable side of an outer join.
    created_by = relationship("User", lazy="select")
