"""HCP/HCO master data and territories. Services take the actor, flush, audit; never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm.audit import services as audit
from crm.hcps.models import Territory


def create_territory(session: Session, actor: Any, code: str, name: str) -> tuple[Territory, bool]:
    """Create a territory; an existing code changes nothing. Returns (territory, created)."""
    code = code.strip()
    existing = session.scalar(select(Territory).where(Territory.code == code))
    if existing is not None:
        return existing, False
    territory = Territory(code=code, name=name.strip() or code)
    session.add(territory)
    session.flush()
    audit.record(session, actor, "territory.create", "territory", territory.id,
                 audit.created({"code": code, "name": territory.name}))
    return territory, True
