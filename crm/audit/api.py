"""The audit trail and the sensitive-read log over HTTP (compliance and admin)."""

from __future__ import annotations

from flask import Blueprint

from crm.audit import queries
from crm.audit.schemas import (
    AuditPageSchema,
    AuditQuerySchema,
    SensitiveReadPageSchema,
    SensitiveReadQuerySchema,
    audit_item,
    sensitive_read_item,
)
from crm.auth.context import api_auth, viewer
from crm.extensions import db
from crm.openapi import doc
from crm.schemas import load_args, page

bp = Blueprint("audit_api", __name__, url_prefix="/api/v1/audit")


@bp.get("")
@api_auth
@doc("The audit trail, newest first", tags=["audit"], query=AuditQuerySchema,
     responses={200: AuditPageSchema}, errors=(401, 403, 422))
def trail():
    """Every write: actor, action, entity, before/after per field, reason, time, and the hash chain links.
    Compliance and admin only; others get 403 with rule `audit.read:role`."""
    args = load_args(AuditQuerySchema())
    filters = queries.AuditFilters(entity=args["entity"], entity_id=args["entity_id"], actor_id=args["actor_id"],
                                   since=args["since"], until=args["until"])
    rows, next_cursor = queries.audit_page(db.session, viewer(), filters, args["limit"], args["cursor"])
    return AuditPageSchema().dump(page([audit_item(r) for r in rows], next_cursor))


@bp.get("/sensitive-reads")
@api_auth
@doc("Reads of medical/pv items and of consent evidence, newest first", tags=["audit"],
     query=SensitiveReadQuerySchema, responses={200: SensitiveReadPageSchema}, errors=(401, 403, 422))
def sensitive_reads():
    """Who read what, when. Compliance and admin only; others get 403 with rule `sensitive_log.read:role`."""
    args = load_args(SensitiveReadQuerySchema())
    filters = queries.SensitiveReadFilters(
        viewer_id=args["viewer_id"], what=args["what"], sensitivity=args["sensitivity"], hcp_id=args["hcp_id"],
        interaction_id=args["interaction_id"], since=args["since"], until=args["until"],
    )
    rows, next_cursor = queries.sensitive_reads_page(db.session, viewer(), filters, args["limit"], args["cursor"])
    return SensitiveReadPageSchema().dump(page([sensitive_read_item(r, u) for r, u in rows], next_cursor))
