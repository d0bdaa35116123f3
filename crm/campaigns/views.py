"""Campaign pages: templates (a marketer drafts, compliance approves with the rendered preview),
audiences with their consent preview, campaigns with the send button, the funnel and the per-HCP list,
and the email events that matched no HCP."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from crm.access.policy import contact_data_decision, mask_email, require_write, write_decision
from crm.auth.context import actor, page_auth, viewer
from crm.campaigns import rendering, services
from crm.campaigns.models import Audience, Campaign, EmailEvent, EmailTemplate
from crm.consent.models import PURPOSES
from crm.errors import Conflict, Invalid
from crm.extensions import db
from crm.hcps import picker
from crm.hcps.models import Territory
from crm.hcps.professions import PROFESSIONS
from crm.hcps.views import hcp_url
from crm.jobs import services as jobs
from crm.pageforms import page_id
from crm.products.models import Product
from crm.segments.models import Segment

bp = Blueprint("campaigns_pages", __name__, url_prefix="/campaigns")
PAGE_SIZE = 100


def _may(action: str) -> bool:
    return write_decision(viewer(), action).allowed


def _lines(name: str) -> list[str]:
    """A multi-value form field: repeated inputs or one comma/newline-separated text."""
    out: list[str] = []
    for raw in request.form.getlist(name):
        out.extend(part.strip() for part in raw.replace("\n", ",").split(","))
    return [v for v in out if v]


def _errors_of(exc: Invalid | Conflict) -> list[str]:
    if isinstance(exc, Invalid) and exc.errors:
        return [f"{k.replace('_', ' ')}: {'; '.join(v)}" for k, v in exc.errors.items()]
    return [exc.detail]


# -- campaigns ---------------------------------------------------------------------------------------

@bp.get("")
@page_auth()
def index():
    campaigns = list(db.session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(PAGE_SIZE)))
    funnels = services.funnels(db.session, [c.id for c in campaigns])
    return render_template("campaigns/index.html", campaigns=campaigns, funnels=funnels,
                           can_write=_may("campaign.write"))


def _campaign_form(errors: list[str] | None = None, status: int = 200):
    templates = list(db.session.scalars(select(EmailTemplate).order_by(EmailTemplate.name,
                                                                        EmailTemplate.version.desc())))
    audiences = list(db.session.scalars(select(Audience).order_by(Audience.id.desc()).limit(200)))
    return render_template("campaigns/new.html", templates=templates, audiences=audiences, errors=errors or [],
                           segments=_segments(), form=request.form), status


def _segments() -> list[Segment]:
    return list(db.session.scalars(select(Segment).order_by(Segment.name).limit(500)))


@bp.get("/new")
@page_auth("marketer")
def new():
    return _campaign_form()


@bp.post("/new")
@page_auth("marketer")
def create():
    if picker.finding():  # "Find" in the HCP picker without JavaScript: the form again, with the matches
        return _campaign_form()
    data: dict[str, Any] = {"name": request.form.get("name", ""),
                            "template_id": page_id(request.form.get("template_id"))}
    audience_id = page_id(request.form.get("audience_id"))
    segment_id = page_id(request.form.get("segment_id"))
    ids = _lines("hcp_ids")
    if audience_id is not None:
        data["audience_id"] = audience_id
    elif segment_id is not None:
        data["segment_id"] = segment_id
    else:
        bad = [i for i in ids if not i.isdigit()]
        if bad:
            return _campaign_form([f"HCPs: choose them from the search ({', '.join(bad[:5])}: not a number)."], 422)
        data["audience"] = {"hcp_ids": [int(i) for i in ids]}
    if data["template_id"] is None:
        return _campaign_form(["template: choose one"], 422)
    try:
        campaign = services.create_campaign(db.session, actor(), viewer(), data)
    except (Invalid, Conflict) as exc:
        return _campaign_form(_errors_of(exc), 422)
    flash(f"Campaign {campaign.name!r} created.")
    return redirect(url_for(".show", campaign_id=campaign.id), code=303)


@bp.get("/<int:campaign_id>")
@page_auth()
def show(campaign_id: int):
    campaign = services.get_campaign(db.session, campaign_id)
    after = page_id(request.args.get("after"))
    items, last = services.recipients(db.session, campaign, PAGE_SIZE, after)
    for item in items:
        item["url"] = hcp_url(item["hcp_id"])
    audience_size = services.audience_size(db.session, campaign.audience)
    job = jobs.latest_for(db.session, f"campaign:{campaign.id}")
    return render_template("campaigns/show.html", campaign=campaign, funnel=services.funnel(db.session, campaign),
                           items=items, next_after=last, after=after, audience_size=audience_size,
                           can_send=_may("campaign.write"), skip_text=services.SKIP_TEXT, job=job,
                           job_link=job is not None and jobs.may_read(viewer(), job),
                           job_states={"queued": "Waiting", "running": "Running", "done": "Finished",
                                       "failed": "Failed"})


@bp.get("/<int:campaign_id>/send")
@page_auth()
def confirm_send(campaign_id: int):
    """The step before a send: who it would reach now and who consent would skip, template and purpose.
    Only the confirm button on this page sends."""
    require_write(viewer(), "campaign.write")
    campaign = services.get_campaign(db.session, campaign_id)
    return render_template("campaigns/confirm_send.html", campaign=campaign,
                           preview=services.preview_send(db.session, campaign), skip_text=services.SKIP_TEXT)


@bp.post("/<int:campaign_id>/send")
@page_auth()
def send(campaign_id: int):
    campaign = services.get_campaign(db.session, campaign_id)
    if request.form.get("confirm") != "yes":
        # A send without the confirmation step (an old form, a stray POST) sends nothing: confirm first.
        require_write(viewer(), "campaign.write")
        return redirect(url_for(".confirm_send", campaign_id=campaign.id), code=303)
    result = services.send_campaign(db.session, actor(), viewer(), campaign)
    if result.job is not None:
        flash(f"Accepted for sending to {len(result.sent)} HCP(s); {len(result.skipped)} skipped. The mails are "
              "handed over in the background: the progress is shown below.")
    else:
        flash(f"Nobody to send to: {len(result.skipped)} skipped.")
    return redirect(url_for(".show", campaign_id=campaign.id), code=303)


# -- templates ---------------------------------------------------------------------------------------

@bp.get("/templates")
@page_auth()
def templates():
    rows = list(db.session.scalars(select(EmailTemplate).order_by(EmailTemplate.name,
                                                                   EmailTemplate.version.desc()).limit(500)))
    return render_template("campaigns/templates.html", templates=rows, can_write=_may("template.write"))


def _template_values() -> dict[str, Any]:
    return {"subject": request.form.get("subject", ""), "html_body": request.form.get("html_body", ""),
            "text_body": request.form.get("text_body", ""), "purpose": request.form.get("purpose", ""),
            "language": request.form.get("language", "").strip() or "en", "products": request.form.getlist("products")}


def _template_form(template: EmailTemplate | None, errors: list[str], status: int, values: dict[str, Any]):
    products = list(db.session.scalars(select(Product).order_by(Product.sku)))
    return render_template("campaigns/template_form.html", template=template, errors=errors, values=values,
                           purposes=PURPOSES, products=products, fields=rendering.HCP_FIELDS), status


@bp.get("/templates/new")
@page_auth("marketer")
def new_template():
    return _template_form(None, [], 200, {"purpose": "promotional", "language": "en", "products": [],
                                          "subject": "", "html_body": "", "text_body": "", "name": ""})


@bp.post("/templates/new")
@page_auth("marketer")
def create_template():
    values = {**_template_values(), "name": request.form.get("name", "")}
    try:
        template = services.create_template(db.session, actor(), viewer(), values)
    except (Invalid, Conflict) as exc:
        return _template_form(None, _errors_of(exc), 422, values)
    flash(f"Template {template.name!r} version {template.version} saved as a draft; compliance approves it.")
    return redirect(url_for(".template", template_id=template.id), code=303)


@bp.get("/templates/<int:template_id>")
@page_auth()
def template(template_id: int):
    t = services.get_template(db.session, template_id)
    preview = rendering.preview(t.subject, t.html_body, t.text_body)
    return render_template("campaigns/template.html", template=t, preview=preview,
                           versions=services.template_versions(db.session, t.name),
                           can_write=_may("template.write"), can_approve=_may("template.approve"))


@bp.get("/templates/<int:template_id>/edit")
@page_auth("marketer")
def edit_template(template_id: int):
    t = services.get_template(db.session, template_id)
    values = {k: getattr(t, k) for k in services.TEMPLATE_FIELDS}
    return _template_form(t, [], 200, {**values, "name": t.name})


@bp.post("/templates/<int:template_id>/edit")
@page_auth("marketer")
def update_template(template_id: int):
    t = services.get_template(db.session, template_id)
    values = _template_values()
    try:
        result, created = services.update_template(db.session, actor(), viewer(), t, values)
    except (Invalid, Conflict) as exc:
        return _template_form(t, _errors_of(exc), 422, {**values, "name": t.name})
    flash(f"Saved as new draft version {result.version}." if created else "Draft saved.")
    return redirect(url_for(".template", template_id=result.id), code=303)


@bp.post("/templates/<int:template_id>/approve")
@page_auth()
def approve_template(template_id: int):
    t = services.get_template(db.session, template_id)
    services.approve_template(db.session, actor(), viewer(), t)
    flash(f"Version {t.version} of {t.name!r} approved.")
    return redirect(url_for(".template", template_id=t.id), code=303)


# -- audiences ---------------------------------------------------------------------------------------

def _audience_page(errors: list[str] | None = None, status: int = 200):
    audiences = list(db.session.scalars(select(Audience).order_by(Audience.id.desc()).limit(200)))
    territories = list(db.session.scalars(select(Territory).order_by(Territory.code)))
    return render_template("campaigns/audiences.html", audiences=audiences, territories=territories,
                           professions=PROFESSIONS, errors=errors or [], form=request.form, segments=_segments(),
                           can_write=_may("campaign.write")), status


@bp.get("/audiences")
@page_auth()
def audiences():
    return _audience_page()


@bp.post("/audiences")
@page_auth("marketer")
def create_audience():
    if picker.finding():
        return _audience_page()
    ids = _lines("hcp_ids")
    bad = [i for i in ids if not i.isdigit()]
    if bad:
        return _audience_page([f"HCPs: choose them from the search ({', '.join(bad[:5])}: not a number)."], 422)
    data = {"name": request.form.get("name", ""), "professions": request.form.getlist("professions"),
            "specialties": _lines("specialties"), "territory_codes": request.form.getlist("territory_codes"),
            "tags": _lines("tags"), "hcp_ids": [int(i) for i in ids],
            "segment_id": page_id(request.form.get("segment_id"))}
    try:
        audience = services.create_audience(db.session, actor(), viewer(), data)
    except Invalid as exc:
        return _audience_page(_errors_of(exc), 422)
    return redirect(url_for(".audience", audience_id=audience.id), code=303)


@bp.get("/audiences/<int:audience_id>")
@page_auth()
def audience(audience_id: int):
    a = services.get_audience(db.session, audience_id)
    purpose = request.args.get("purpose") or ""
    if purpose not in PURPOSES:
        purpose = "promotional"
    return render_template("campaigns/audience.html", audience=a, purposes=PURPOSES, purpose=purpose,
                           preview=services.preview_audience(db.session, a, purpose), skip_text=services.SKIP_TEXT)


# -- email events that matched no HCP --------------------------------------------------------------

@bp.get("/email-events/unmatched")
@page_auth("marketer", "admin")
def unmatched():
    before = page_id(request.args.get("before"))
    query = select(EmailEvent).where(EmailEvent.hcp_id.is_(None)).order_by(EmailEvent.id.desc()).limit(PAGE_SIZE + 1)
    if before is not None:
        query = query.where(EmailEvent.id < before)
    rows = list(db.session.scalars(query))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    clear = contact_data_decision(viewer(), None).allowed
    items = [{"event": e, "email": (e.email if clear else mask_email(e.email)) or "–"} for e in rows]
    return render_template("campaigns/unmatched.html", items=items, clear=clear,
                           next_before=rows[-1].id if more else None)
