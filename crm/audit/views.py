"""The audit trail and the sensitive-read log as pages, for compliance and admin."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from crm.audit import queries, services
from crm.audit.schemas import SENSITIVE_READ_KINDS
from crm.auth.context import actor, page_auth, viewer
from crm.auth.models import User
from crm.extensions import db
from crm.hcps.models import HCP
from crm.navigation import url_if_known
from crm.pageforms import page_id
from crm.timeline.models import SENSITIVITIES

bp = Blueprint("audit_pages", __name__)

PAGE_SIZE = 50
_OVERSIGHT = ("compliance", "admin")
MAX_READERS_LISTED = 500


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"url_if_known": url_if_known}


def _arg(name: str) -> str | None:
    value = request.args.get(name, "").strip()
    return value or None


def _int_arg(name: str) -> int | None:
    return page_id(_arg(name))


@bp.get("/audit")
@page_auth(*_OVERSIGHT)
def trail():
    actor_arg = _arg("actor")
    filters = queries.AuditFilters(
        entity=_arg("entity"),
        entity_id=_arg("entity_id"),
        # digits are a user id; anything else is looked for in the actor's name and role
        actor_id=page_id(actor_arg),
        actor_text=actor_arg if actor_arg and not actor_arg.isdigit() else None,
    )
    records, next_cursor = queries.audit_page(db.session, viewer(), filters, PAGE_SIZE, _arg("cursor"))
    args: dict[str, Any] = {k: v for k, v in request.args.items() if k != "cursor" and v}
    return render_template(
        "audit/trail.html",
        records=records,
        next_url=url_for(".trail", **args, cursor=next_cursor) if next_cursor else None,
        first_url=url_for(".trail", **args) if request.args.get("cursor") else None,
        filters=args,
        verification=services.latest_verification(db.session),
    )


@bp.post("/audit/verify")
@page_auth(*_OVERSIGHT)
def verify():
    """Walk the chain now and keep the result; the trail page shows the latest one."""
    report, _row = services.verify_and_store(db.session, actor())
    if report.ok:
        flash(f"Audit chain verified: {report.checked} records, no break.")
    else:
        flash(f"Audit chain broken at record {report.broken_id}: {report.problem}.")
    return redirect(url_for(".trail"))


@bp.get("/audit/sensitive-reads")
@page_auth(*_OVERSIGHT)
def sensitive_reads():
    what = _arg("what")
    sensitivity = _arg("sensitivity")
    filters = queries.SensitiveReadFilters(
        viewer_id=_int_arg("viewer_id"),
        what=what if what in SENSITIVE_READ_KINDS else None,
        sensitivity=sensitivity if sensitivity in SENSITIVITIES else None,
        hcp_id=_int_arg("hcp_id"),
    )
    rows, next_cursor = queries.sensitive_reads_page(db.session, viewer(), filters, PAGE_SIZE, _arg("cursor"))
    args: dict[str, Any] = {k: v for k, v in request.args.items() if k != "cursor" and v}
    return render_template(
        "audit/sensitive_reads.html",
        rows=rows,
        next_url=url_for(".sensitive_reads", **args, cursor=next_cursor) if next_cursor else None,
        first_url=url_for(".sensitive_reads", **args) if request.args.get("cursor") else None,
        filters=args,
        kinds=SENSITIVE_READ_KINDS,
        sensitivities=SENSITIVITIES,
        readers=db.session.scalars(select(User).order_by(User.name, User.id).limit(MAX_READERS_LISTED)).all(),
        hcp_names=_hcp_names({read.hcp_id for read, _reader in rows if read.hcp_id is not None}),
    )


def _hcp_names(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = db.session.execute(select(HCP.id, HCP.first_name, HCP.last_name).where(HCP.id.in_(ids)))
    return {i: f"{first} {last}" for i, first, last in rows}
