from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, TimestampMixin, UTCDateTime, utcnow
from crm.security.crypto import BLIND_INDEX_TYPE, EncryptedString

HCP_STATUSES = ("active", "inactive", "merged", "erased")
# Priority of an HCP for the field force and marketing (issue 12): A highest. Plans and segments use it.
TIERS = ("A", "B", "C")
TIER_LABELS = {"A": "A (highest priority)", "B": "B", "C": "C (lowest priority)"}
# The HCP's personal data: the one list that erasure clears and that the audit trail never holds in clear
# (crm.audit.services withholds these keys in every "hcp" record). A new personal column goes here.
HCP_PERSONAL_FIELDS = ("first_name", "last_name", "email", "phone", "address_line", "city", "postal_code", "state",
                       "tags", "email_status_reason")
# Audited under the "hcp" entity besides the columns: the identifiers (NPI, licences) as a kind -> value map,
# and the bounce reason of ``hcp.email_invalid``, which mail servers write with the address in it.
HCP_PERSONAL_AUDIT_KEYS = frozenset({*HCP_PERSONAL_FIELDS, "identifiers", "reason"})


class Territory(TimestampMixin, Base):
    __tablename__ = "territories"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)


class HCP(TimestampMixin, Base):
    __tablename__ = "hcps"
    __table_args__ = (
        Index("ix_hcps_name", "last_name", "first_name"),
        Index("ix_hcps_territory_id", "territory_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(200), nullable=False)
    last_name: Mapped[str] = mapped_column(String(200), nullable=False)
    profession: Mapped[str] = mapped_column(String(20), nullable=False)
    specialty: Mapped[str | None] = mapped_column(String(120))
    email: Mapped[str | None] = mapped_column(EncryptedString("hcps.email"))
    email_bidx: Mapped[str | None] = mapped_column(BLIND_INDEX_TYPE, index=True)
    phone: Mapped[str | None] = mapped_column(EncryptedString("hcps.phone"))
    address_line: Mapped[str | None] = mapped_column(EncryptedString("hcps.address_line"))
    city: Mapped[str | None] = mapped_column(String(120))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    state: Mapped[str | None] = mapped_column(String(40))
    country: Mapped[str] = mapped_column(String(2), default="US", nullable=False)
    status: Mapped[str] = mapped_column(String(20), default="active", nullable=False)
    # The territory the HCP belongs to now (master data). History: HCPTerritoryAssignment.
    territory_id: Mapped[int | None] = mapped_column(ForeignKey("territories.id"))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("hcps.id"))
    tags: Mapped[str | None] = mapped_column(String(500))  # comma-separated segment tags
    tier: Mapped[str | None] = mapped_column(String(1))  # priority, one of TIERS; None: not tiered
    # Deliverability of the email contact point (issue 4): ``invalid`` after a hard bounce reported by the
    # email platform, with the reason and when; a new address is ``valid`` again.
    email_status: Mapped[str] = mapped_column(String(10), nullable=False, default="valid", server_default="valid")
    email_status_reason: Mapped[str | None] = mapped_column(String(300))
    email_status_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # KOL profile (issue 14): how far the HCP's opinion carries (crm.speakers.models.INFLUENCE_TIERS) and
    # the therapeutic areas they are known for. Professional profile, not personal data.
    influence_tier: Mapped[str | None] = mapped_column(String(20))
    expertise: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list, server_default="[]")

    territory: Mapped[Territory | None] = relationship(lazy="joined")
    identifiers: Mapped[list[HCPIdentifier]] = relationship(
        back_populates="hcp", cascade="all, delete-orphan", lazy="selectin"
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class HCPIdentifier(Base):
    """An identifier such as an NPI or a national registry id; unique per (kind, value)."""

    __tablename__ = "hcp_identifiers"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    value: Mapped[str] = mapped_column(String(80), nullable=False)

    hcp: Mapped[HCP] = relationship(back_populates="identifiers")


class HCO(TimestampMixin, Base):
    __tablename__ = "hcos"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), nullable=False)
    kind: Mapped[str] = mapped_column(String(30), nullable=False)  # hospital, practice, pharmacy, wholesaler
    npi: Mapped[str | None] = mapped_column(String(10), unique=True)
    city: Mapped[str | None] = mapped_column(String(120))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    state: Mapped[str | None] = mapped_column(String(40))
    country: Mapped[str] = mapped_column(String(2), default="US", nullable=False)
    territory_id: Mapped[int | None] = mapped_column(ForeignKey("territories.id"))
    status: Mapped[str] = mapped_column(String(20), default="active", nullable=False)


class Affiliation(Base):
    __tablename__ = "affiliations"
    __table_args__ = (Index("ix_affiliations_hco", "hco_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    hco_id: Mapped[int] = mapped_column(ForeignKey("hcos.id"), nullable=False)
    role: Mapped[str | None] = mapped_column(String(100))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime())

    hco: Mapped[HCO] = relationship(lazy="joined")


class HCPTerritoryAssignment(Base):
    """Effective-dated: which territory an HCP belonged to when (audits ask "on that date?")."""

    __tablename__ = "hcp_territory_assignments"
    __table_args__ = (Index("ix_hcp_territory_assignments_hcp", "hcp_id", "valid_from"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"), nullable=False)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UserTerritoryAssignment(Base):
    """Effective-dated: which territories a user covered when (what could this rep see that day?)."""

    __tablename__ = "user_territory_assignments"
    __table_args__ = (Index("ix_user_territory_assignments_user", "user_id", "valid_from"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"), nullable=False)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime())

    territory: Mapped[Territory] = relationship(lazy="joined")
