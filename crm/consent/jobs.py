"""Consent expiry as a job (kind ``consent.expire``): run every night by the queue's scheduler."""

from __future__ import annotations

from typing import Any

from crm.consent.services import expire_due
from crm.jobs.services import JobRun, fresh_session


def run_expire(run: JobRun) -> dict[str, Any]:
    """Record the expiry of every granted consent past its validity (idempotent: ``crm consent expire``)."""
    with fresh_session() as session:
        count = expire_due(session)
        session.commit()
    return {"expired": count}
