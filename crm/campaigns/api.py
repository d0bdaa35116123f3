"""The campaign API: templates (marketer writes, compliance approves), audiences, campaigns and sends."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from crm.auth.context import actor, api_auth, viewer
from crm.campaigns import services
from crm.campaigns.models import Campaign, EmailTemplate
from crm.campaigns.schemas import (
    AudienceIn,
    AudienceOut,
    CampaignIn,
    CampaignOut,
    CampaignPage,
    PreviewArgs,
    PreviewOut,
    RecipientPage,
    SendOut,
    TemplateIn,
    TemplateOut,
    TemplatePage,
    TemplatePatch,
)
from crm.extensions import db
from crm.openapi import doc
from crm.schemas import PageArgs, decode_cursor, encode_cursor, load_args, load_body, page

bp = Blueprint("campaigns_api", __name__, url_prefix="/api/v1")
TAGS = ["campaigns"]


def _user(user: Any) -> dict[str, Any] | None:
    return None if user is None else {"id": user.id, "name": user.name, "role": user.role}


def template_out(t: EmailTemplate) -> dict[str, Any]:
    out: dict[str, Any] = TemplateOut().dump({**{c: getattr(t, c) for c in (
        "id", "name", "version", "status", "subject", "html_body", "text_body", "purpose", "language", "products",
        "previous_id", "created_at", "approved_at")}, "created_by": _user(t.created_by),
        "approved_by": _user(t.approved_by)})
    return out


def campaign_out(c: Campaign, funnel: dict[str, Any] | None = None) -> dict[str, Any]:
    t = c.template
    out: dict[str, Any] = CampaignOut().dump({
        "id": c.id, "name": c.name, "status": c.status, "audience_id": c.audience_id,
        "template": {"id": t.id, "name": t.name, "version": t.version, "status": t.status, "purpose": t.purpose},
        "created_by": _user(c.created_by), "created_at": c.created_at, "last_sent_at": c.last_sent_at,
        "funnel": funnel if funnel is not None else services.funnel(db.session, c),
    })
    return out


# -- templates ---------------------------------------------------------------------------------------

@bp.post("/templates")
@doc("Create an email template (version 1, draft)", tags=TAGS, body=TemplateIn, responses={201: TemplateOut},
     errors=(400, 401, 403, 409, 422))
@api_auth
def create_template():
    """Marketer. The bodies are Jinja templates rendered per HCP (sandboxed, HTML autoescaped); an unknown
    field or a syntax error is 422. A name in use is 409 (edit that template instead)."""
    data = load_body(TemplateIn())
    template = services.create_template(db.session, actor(), viewer(), data)
    return template_out(template), 201


@bp.get("/templates")
@doc("Templates, newest version first", tags=TAGS, query=PageArgs, responses={200: TemplatePage}, errors=(401, 422))
@api_auth
def list_templates():
    args = load_args(PageArgs())
    query = select(EmailTemplate).order_by(EmailTemplate.id.desc()).limit(args["limit"] + 1)
    if args["cursor"]:
        (last_id,) = decode_cursor(args["cursor"], (int,))
        query = query.where(EmailTemplate.id < last_id)
    rows = list(db.session.scalars(query))
    more = len(rows) > args["limit"]
    rows = rows[:args["limit"]]
    return page([template_out(t) for t in rows], encode_cursor(rows[-1].id) if more else None)


@bp.get("/templates/<int:template_id>")
@doc("One template version", tags=TAGS, responses={200: TemplateOut}, errors=(401, 404))
@api_auth
def get_template(template_id: int):
    return template_out(services.get_template(db.session, template_id))


@bp.patch("/templates/<int:template_id>")
@doc("Edit a template", tags=TAGS, body=TemplatePatch, responses={200: TemplateOut, 201: TemplateOut},
     errors=(400, 401, 403, 404, 409, 422))
@api_auth
def update_template(template_id: int):
    """Marketer. A draft changes in place (200); an approved version is frozen, so the edit creates the
    next draft version (201, a new id). 409 when a newer draft already exists."""
    data = load_body(TemplatePatch())
    template = services.get_template(db.session, template_id)
    result, created = services.update_template(db.session, actor(), viewer(), template, data)
    return template_out(result), 201 if created else 200


@bp.post("/templates/<int:template_id>/approve")
@doc("Approve a template version", tags=TAGS, responses={200: TemplateOut}, errors=(401, 403, 404, 409))
@api_auth
def approve_template(template_id: int):
    """Compliance. Records who approved which version and when; 409 when it is already approved."""
    template = services.get_template(db.session, template_id)
    return template_out(services.approve_template(db.session, actor(), viewer(), template))


# -- audiences ---------------------------------------------------------------------------------------

@bp.post("/audiences")
@doc("Save an audience (a filter over HCPs)", tags=TAGS, body=AudienceIn, responses={201: AudienceOut},
     errors=(400, 401, 403, 422))
@api_auth
def create_audience():
    """Marketer. Criteria combine with AND, values of one criterion with OR; explicit hcp_ids are added."""
    data = load_body(AudienceIn())
    return AudienceOut().dump(services.create_audience(db.session, actor(), viewer(), data)), 201


@bp.get("/audiences/<int:audience_id>/preview")
@doc("How many HCPs an audience holds and how many a send would skip, per rule", tags=TAGS, query=PreviewArgs,
     responses={200: PreviewOut}, errors=(401, 404, 422))
@api_auth
def preview_audience(audience_id: int):
    args = load_args(PreviewArgs())
    audience = services.get_audience(db.session, audience_id)
    return PreviewOut().dump(services.preview_audience(db.session, audience, args["purpose"]))


# -- campaigns ---------------------------------------------------------------------------------------

@bp.post("/campaigns")
@doc("Create a campaign", tags=TAGS, body=CampaignIn, responses={201: CampaignOut}, errors=(400, 401, 403, 422))
@api_auth
def create_campaign():
    """Marketer. `audience` is a filter ({"hcp_ids": [...]} or criteria), saved with the campaign; or name a
    saved one with `audience_id`."""
    data = load_body(CampaignIn())
    campaign = services.create_campaign(db.session, actor(), viewer(), data)
    return campaign_out(campaign), 201


@bp.get("/campaigns")
@doc("Campaigns, newest first", tags=TAGS, query=PageArgs, responses={200: CampaignPage}, errors=(401, 422))
@api_auth
def list_campaigns():
    args = load_args(PageArgs())
    query = select(Campaign).order_by(Campaign.id.desc()).limit(args["limit"] + 1)
    if args["cursor"]:
        (last_id,) = decode_cursor(args["cursor"], (int,))
        query = query.where(Campaign.id < last_id)
    rows = list(db.session.scalars(query))
    more = len(rows) > args["limit"]
    rows = rows[:args["limit"]]
    funnels = services.funnels(db.session, [c.id for c in rows])
    return page([campaign_out(c, funnels[c.id]) for c in rows], encode_cursor(rows[-1].id) if more else None)


@bp.get("/campaigns/<int:campaign_id>")
@doc("One campaign with its funnel", tags=TAGS, responses={200: CampaignOut}, errors=(401, 404))
@api_auth
def get_campaign(campaign_id: int):
    return campaign_out(services.get_campaign(db.session, campaign_id))


@bp.post("/campaigns/<int:campaign_id>/send")
@doc("Send a campaign (accepted at once, mailed by a background job)", tags=TAGS, responses={202: SendOut},
     errors=(401, 403, 404, 422))
@api_auth
def send_campaign(campaign_id: int):
    """Marketer. 422 unless the template version is approved. Consent (email, the template's purpose) is
    checked for every recipient at this instant; a repeated send mails nobody twice (`already-sent`).
    Answers 202 at once: `sent` are the recipients accepted for sending, which the job `job_id` hands to the
    mail outbox in batches (its progress: GET /api/v1/jobs/{job_id})."""
    campaign = services.get_campaign(db.session, campaign_id)
    result = services.send_campaign(db.session, actor(), viewer(), campaign)
    job_id = result.job.id if result.job is not None else None
    return SendOut().dump({"sent": len(result.sent), "skipped": result.skipped, "job_id": job_id,
                           "status": "queued" if job_id is not None else "done"}), 202


@bp.get("/campaigns/<int:campaign_id>/recipients")
@doc("Per-HCP outcome of a campaign", tags=TAGS, query=PageArgs, responses={200: RecipientPage},
     errors=(401, 404, 422))
@api_auth
def campaign_recipients(campaign_id: int):
    args = load_args(PageArgs())
    campaign = services.get_campaign(db.session, campaign_id)
    after = decode_cursor(args["cursor"], (int,))[0] if args["cursor"] else None
    items, last = services.recipients(db.session, campaign, args["limit"], after)
    return RecipientPage().dump({"items": items, "next_cursor": encode_cursor(last) if last else None})
