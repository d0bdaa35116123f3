"""The start page: each role sees its own work first (issue 2, item 12).

A field rep: my HCPs, follow-ups due, my drafts. A marketer: last week's interaction feed. Compliance:
the latest audit records and sensitive reads. Call centre and medical: HCP search and the latest
medical/pv items. Admin: counts and the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from flask import Blueprint, render_template
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from crm.access.policy import LOGGED_SENSITIVITIES, Viewer
from crm.audit import queries as audit_queries
from crm.audit import services as audit_services
from crm.auth.context import actor, page_auth, viewer
from crm.auth.models import User
from crm.db import DbSession, utcnow
from crm.extensions import db
from crm.hcps.models import HCP
from crm.navigation import url_if_known
from crm.timeline.models import Interaction
from crm.timeline.queries import TimelineFilters, feed_channel_counts, feed_page, for_pages, read_interactions
from crm.visits.models import Visit
from crm.visits.services import follow_ups_due, follow_ups_shown

bp = Blueprint("home", __name__)

MY_HCPS_SHOWN = 50
FOLLOW_UP_HORIZON_DAYS = 7
FEED_DAYS = 7
FEED_SHOWN = 20
SENSITIVE_DAYS = 30
SENSITIVE_SHOWN = 10
OVERSIGHT_SHOWN = 10
GAP_DAYS = 30


def hcp_url(hcp_id: int) -> str:
    """The HCP page (the timeline feature's), by endpoint when it is installed."""
    return url_if_known("timeline_pages.hcp", hcp_id=hcp_id) or f"/hcps/{hcp_id}"


@bp.context_processor
def _helpers() -> dict[str, Any]:
    from crm.insights.kpis import CHANNEL_LABELS

    return {"url_if_known": url_if_known, "hcp_url": hcp_url, "channel_labels_all": CHANNEL_LABELS}


@bp.get("/")
@page_auth()
def index():
    who = viewer()
    build = _SECTIONS[who.role]
    return render_template(f"home/{_TEMPLATES[who.role]}.html", **build(db.session, actor(), who))


# -- per role ---------------------------------------------------------------------------------------

def _field_rep(session: DbSession, user: User, who: Viewer) -> dict[str, Any]:
    today = utcnow().date()
    mine = HCP.territory_id.in_(who.territory_ids), HCP.merged_into_id.is_(None)
    # Columns only: the list needs no contact data, so nothing is decrypted for it.
    hcps = session.execute(
        select(HCP.id, HCP.first_name, HCP.last_name, HCP.profession, HCP.specialty, HCP.city)
        .where(*mine).order_by(HCP.last_name, HCP.first_name, HCP.id).limit(MY_HCPS_SHOWN)
    ).all()
    total = session.scalar(select(func.count()).select_from(HCP).where(*mine)) or 0
    drafts = session.execute(
        select(Visit.id, Visit.occurred_at, Visit.mode, HCP.id.label("hcp_id"), HCP.first_name, HCP.last_name)
        .join(HCP, HCP.id == Visit.hcp_id)
        .where(Visit.owner_id == user.id, Visit.status == "draft")
        .order_by(Visit.occurred_at.desc(), Visit.id.desc())
    ).all()
    from crm.plans.views import my_plan

    return {
        "my_plans": my_plan(session, who),
        "hcps": hcps,
        "hcp_total": total,
        "follow_ups": follow_ups_shown(session, who,
                                       follow_ups_due(session, user, today + timedelta(days=FOLLOW_UP_HORIZON_DAYS))),
        "today": today,
        "drafts": drafts,
    }


def _marketer(session: DbSession, user: User, who: Viewer) -> dict[str, Any]:
    filters = TimelineFilters(since=utcnow() - timedelta(days=FEED_DAYS))
    items, _next = feed_page(session, who, filters, FEED_SHOWN)
    for_pages(items)
    return {
        "items": items,
        "channel_counts": feed_channel_counts(session, who, filters),
        "feed_days": FEED_DAYS,
        "hcp_names": _hcp_names(session, (h for item in items for h in item["hcp_ids"])),
    }


def _compliance(session: DbSession, user: User, who: Viewer) -> dict[str, Any]:
    records, _ = audit_queries.audit_page(session, who, audit_queries.AuditFilters(), OVERSIGHT_SHOWN)
    reads, _ = audit_queries.sensitive_reads_page(session, who, audit_queries.SensitiveReadFilters(),
                                                  OVERSIGHT_SHOWN)
    return {"records": records, "reads": reads, "verification": audit_services.latest_verification(session),
            "awaiting": _awaiting_compliance(session)}


def _awaiting_compliance(session: DbSession) -> list[dict[str, Any]]:
    """What waits for compliance, each with a count and where to act on it. Features not installed are
    left out; counts are plain aggregates (no record is read, so nothing is redacted or logged)."""
    from crm.callcentre.models import AdverseEventCase
    from crm.campaigns.models import EmailTemplate
    from crm.mail.models import MailOutbox
    from crm.samples.models import SampleDiscrepancy

    now = utcnow()

    def count(model: Any, *where: Any) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    open_case = AdverseEventCase.status == "open"
    rows = [
        ("templates", "Email templates awaiting approval", count(EmailTemplate, EmailTemplate.status == "draft"),
         url_if_known("campaigns_pages.templates")),
        ("gaps", f"Consent gaps in the last {GAP_DAYS} days",
         count(Interaction, Interaction.consent_gap.is_(True),
               Interaction.occurred_at >= now - timedelta(days=GAP_DAYS)),
         url_if_known("consent_pages.gaps")),
        ("ae-overdue", "Adverse events overdue (24-hour clock passed)",
         count(AdverseEventCase, open_case, AdverseEventCase.due_at < now),
         url_if_known("callcentre_pages.cases")),
        ("ae-due", "Adverse events due within 24 hours",
         count(AdverseEventCase, open_case, AdverseEventCase.due_at >= now,
               AdverseEventCase.due_at < now + timedelta(hours=24)),
         url_if_known("callcentre_pages.cases")),
        # The mail outbox has no page yet: the command that re-arms failed mails is named instead.
        ("mail-failed", "Mails that failed in the outbox (crm mail status, crm mail retry)",
         count(MailOutbox, MailOutbox.state == "failed"), None),
        ("sample-discrepancies", "Sample discrepancies to review (shipments received short, counts that differ)",
         count(SampleDiscrepancy, SampleDiscrepancy.status == "open"),
         url_if_known("samples_pages.discrepancies", status="open")),
    ]
    return [{"key": key, "label": label, "count": n, "url": url} for key, label, n, url in rows]


def _clinical(session: DbSession, user: User, who: Viewer) -> dict[str, Any]:
    """Call centre and medical: the latest medical/pv items, shown in full (their role may), each read logged."""
    rows = session.scalars(
        select(Interaction)
        .where(Interaction.sensitivity.in_(LOGGED_SENSITIVITIES),
               Interaction.superseded_by_id.is_(None),
               Interaction.occurred_at >= utcnow() - timedelta(days=SENSITIVE_DAYS))
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(SENSITIVE_SHOWN)
        .options(joinedload(Interaction.owner).load_only(User.id, User.name))
    ).unique().all()
    items = read_interactions(session, who, rows)
    return {
        "items": items,
        "sensitive_days": SENSITIVE_DAYS,
        "hcp_names": _hcp_names(session, (h for item in items for h in item["hcp_ids"])),
    }


def _admin(session: DbSession, user: User, who: Viewer) -> dict[str, Any]:
    def count(model: Any, *where: Any) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    return {
        "counts": {
            "Active users": count(User, User.active.is_(True)),
            "HCPs": count(HCP, HCP.merged_into_id.is_(None)),
            "Interactions": count(Interaction),
        },
        "verification": audit_services.latest_verification(session),
    }


_SECTIONS = {
    "field_rep": _field_rep,
    "marketer": _marketer,
    "compliance": _compliance,
    "call_centre": _clinical,
    "medical": _clinical,
    "admin": _admin,
}
_TEMPLATES = {
    "field_rep": "field_rep",
    "marketer": "marketer",
    "compliance": "compliance",
    "call_centre": "clinical",
    "medical": "clinical",
    "admin": "admin",
}


# -- helpers ----------------------------------------------------------------------------------------

def _hcp_names(session: DbSession, ids: Iterable[int]) -> dict[int, str]:
    """Display names for the HCPs on a page, in one query (names are not personal contact data)."""
    wanted = set(ids)
    if not wanted:
        return {}
    rows = session.execute(select(HCP.id, HCP.first_name, HCP.last_name).where(HCP.id.in_(wanted)))
    return {r.id: f"{r.first_name} {r.last_name}" for r in rows}
