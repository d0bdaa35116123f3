"""Reading the audit trail and the sensitive-read log: compliance and admin only, newest first.

Both lists page by keyset on the primary key: ids grow in write order (the chain order), so "newest
first" is ``id DESC`` and the last page costs what the first does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from crm.access.policy import Viewer, require_write
from crm.audit.models import AuditRecord
from crm.auth.models import User
from crm.db import DbSession
from crm.schemas import decode_cursor, encode_cursor
from crm.timeline.models import SensitiveRead


@dataclass
class AuditFilters:
    entity: str | None = None
    entity_id: str | None = None
    actor_id: int | None = None
    # Part of the actor's label ("Jane", "<admin>", "system"), for people searching by name on the page.
    actor_text: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


@dataclass
class SensitiveReadFilters:
    viewer_id: int | None = None
    what: str | None = None
    sensitivity: str | None = None
    hcp_id: int | None = None
    interaction_id: int | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def _page(rows: list[Any], limit: int, last_id: Any) -> tuple[list[Any], str | None]:
    if len(rows) > limit:
        return rows[:limit], encode_cursor(last_id(rows[limit - 1]))
    return rows, None


def _after(query: Any, id_column: Any, cursor: str | None) -> Any:
    if cursor:
        (last_id,) = decode_cursor(cursor, (int,))
        query = query.where(id_column < last_id)
    return query


def audit_page(
    session: DbSession, viewer: Viewer, filters: AuditFilters, limit: int = 50, cursor: str | None = None
) -> tuple[list[AuditRecord], str | None]:
    """One page of audit records, newest first. Compliance and admin only (403 ``audit.read:role``)."""
    require_write(viewer, "audit.read")
    query = select(AuditRecord)
    if filters.entity:
        query = query.where(AuditRecord.entity == filters.entity)
    if filters.entity_id:
        query = query.where(AuditRecord.entity_id == filters.entity_id)
    if filters.actor_id is not None:
        query = query.where(AuditRecord.actor_id == filters.actor_id)
    if filters.actor_text:
        query = query.where(AuditRecord.actor_label.icontains(filters.actor_text, autoescape=True))
    if filters.since is not None:
        query = query.where(AuditRecord.occurred_at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditRecord.occurred_at < filters.until)
    query = _after(query, AuditRecord.id, cursor)
    rows = list(session.scalars(query.order_by(AuditRecord.id.desc()).limit(limit + 1)))
    return _page(rows, limit, lambda rec: rec.id)


def sensitive_reads_page(
    session: DbSession, viewer: Viewer, filters: SensitiveReadFilters, limit: int = 50, cursor: str | None = None
) -> tuple[list[tuple[SensitiveRead, User]], str | None]:
    """Who read which medical/pv item or consent evidence, newest first, with the reader.

    Compliance and admin only (403 ``sensitive_log.read:role``).
    """
    require_write(viewer, "sensitive_log.read")
    query = select(SensitiveRead, User).join(User, User.id == SensitiveRead.viewer_id)
    if filters.viewer_id is not None:
        query = query.where(SensitiveRead.viewer_id == filters.viewer_id)
    if filters.what:
        query = query.where(SensitiveRead.what == filters.what)
    if filters.sensitivity:
        query = query.where(SensitiveRead.sensitivity == filters.sensitivity)
    if filters.hcp_id is not None:
        query = query.where(SensitiveRead.hcp_id == filters.hcp_id)
    if filters.interaction_id is not None:
        query = query.where(SensitiveRead.interaction_id == filters.interaction_id)
    if filters.since is not None:
        query = query.where(SensitiveRead.occurred_at >= filters.since)
    if filters.until is not None:
        query = query.where(SensitiveRead.occurred_at < filters.until)
    query = _after(query, SensitiveRead.id, cursor)
    rows: list[tuple[Any, Any]] = [
        (read, user) for read, user in session.execute(query.order_by(SensitiveRead.id.desc()).limit(limit + 1))]
    return _page(rows, limit, lambda row: row[0].id)
