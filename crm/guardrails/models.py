"""The guardrail rule lists: data in a table that compliance edits, not code."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import Base, TimestampMixin

CATEGORIES = ("adverse_event", "medical_question", "promotional")
CATEGORY_LABELS = {
    "adverse_event": "Adverse-event wording",
    "medical_question": "Medical question (needs Medical Affairs)",
    "promotional": "Restricted promotional wording",
}


class GuardrailRule(TimestampMixin, Base):
    """One phrase of one category. Matching is case-insensitive on whole words (see services)."""

    __tablename__ = "guardrail_rules"
    __table_args__ = (UniqueConstraint("category", "phrase"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(String(30), nullable=False)
    phrase: Mapped[str] = mapped_column(String(200), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
