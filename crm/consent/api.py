"""Consent over JSON: state, capture, ledger and state-at-an-instant, decisions, notices, reviews,
and the compliance lists (gaps, expiring, re-consent, coverage)."""

from __future__ import annotations

from flask import Blueprint, url_for
from sqlalchemy import select

from crm.access.policy import require_write
from crm.auth.context import actor, api_auth, viewer
from crm.consent import queries, services
from crm.consent.models import Notice
from crm.consent.schemas import (
    ConsentCaptureResultSchema,
    ConsentCaptureSchema,
    ConsentCoverageSchema,
    ConsentEventSchema,
    ConsentExpiringListSchema,
    ConsentExpiringQuerySchema,
    ConsentGapPageSchema,
    ConsentGapQuerySchema,
    ConsentHistoryQuerySchema,
    ConsentHistorySchema,
    ConsentNoticeCreateSchema,
    ConsentNoticePageSchema,
    ConsentNoticeQuerySchema,
    ConsentNoticeSchema,
    ConsentNoticeUpdateSchema,
    ConsentPairStateSchema,
    ConsentReviewCreateSchema,
    ConsentReviewPageSchema,
    ConsentReviewSchema,
    ConsentStatesSchema,
    ContactDecisionQuerySchema,
    ContactDecisionSchema,
)
from crm.db import utcnow
from crm.errors import Invalid, NotFound
from crm.extensions import db
from crm.hcps.models import Territory
from crm.openapi import doc
from crm.schemas import load_args, load_body, page

bp = Blueprint("consent_api", __name__, url_prefix="/api/v1")

_TAGS = ["consent"]


@bp.get("/hcps/<int:hcp_id>/consents")
@api_auth
@doc("Current consent state per (channel, purpose)", tags=_TAGS, responses={200: ConsentStatesSchema},
     errors=(401, 404))
def current(hcp_id: int):
    """All 24 pairs; `granted` past its validity reads as `expired` even before the expiry job ran."""
    services.get_hcp(db.session, hcp_id)
    now = utcnow()
    states = services.current_states(db.session, hcp_id, now)
    items = [queries.serialize_state(s) for s in states]
    return ConsentStatesSchema().dump({"hcp_id": hcp_id, "at": now, "items": items, "next_cursor": None})


@bp.post("/hcps/<int:hcp_id>/consents")
@api_auth
@doc("Capture a grant or a withdrawal", tags=_TAGS, body=ConsentCaptureSchema,
     responses={201: ConsentCaptureResultSchema, 200: "A replayed external_id: the existing event"},
     errors=(400, 401, 403, 404, 409, 413, 415, 422))
def capture(hcp_id: int):
    """Each source needs its evidence (visit: signature; paper_form: form_id; call_centre: recording_id;
    web_form/email_link: ip_address and user_agent; import: reference; esp: event_id), else 422.
    Field reps capture with source `visit` in their territories, the call centre with `call_centre`;
    compliance reviews but never captures (403). Email x promotional grants go `pending` until the HCP
    confirms the double opt-in link mailed to them."""
    hcp = services.get_hcp(db.session, hcp_id)
    data = load_body(ConsentCaptureSchema())
    kwargs = {"evidence": data["evidence"], "occurred_at": data["occurred_at"], "external_id": data["external_id"],
              "notice_version": data["notice_version"]}
    if data["action"] == "grant":
        event, created = services.grant_consent(db.session, actor(), hcp, data["channel"], data["purpose"],
                                                data["source"], **kwargs)
    else:
        event, created = services.withdraw_consent(db.session, actor(), hcp, data["channel"], data["purpose"],
                                                   data["source"], **kwargs)
    state = None
    if event.channel != "all" and event.purpose != "all":
        states = {(s.channel, s.purpose): s for s in services.current_states(db.session, event.hcp_id)}
        state = queries.serialize_state(states[(event.channel, event.purpose)])
    body = ConsentCaptureResultSchema().dump({
        "event": queries.serialize_events(db.session, viewer(), [event])[0], "state": state,
        "double_opt_in": event.event_type == "requested",
    })
    headers = {"Location": url_for(".history", hcp_id=event.hcp_id)}
    return body, (201 if created else 200), headers


@bp.get("/hcps/<int:hcp_id>/consents/history")
@api_auth
@doc("The consent ledger; with `at`, the state of every pair at that instant", tags=_TAGS,
     query=ConsentHistoryQuerySchema, responses={200: ConsentHistorySchema}, errors=(401, 404, 422))
def history(hcp_id: int):
    """Without `at`: ledger events newest first, keyset-paged. With `at`: every (channel, purpose) pair as
    it stood at that instant, answered from the ledger. Evidence is shown to compliance and admin only,
    and each such read is logged."""
    services.get_hcp(db.session, hcp_id)
    args = load_args(ConsentHistoryQuerySchema())
    if args["at"] is not None:
        states = services.state_at(db.session, hcp_id, args["at"])
        if args["channel"]:
            states = [s for s in states if s.channel == args["channel"]]
        if args["purpose"]:
            states = [s for s in states if s.purpose == args["purpose"]]
        items = ConsentPairStateSchema(many=True).dump([queries.serialize_state(s) for s in states])
        return ConsentHistorySchema().dump({"at": args["at"], "items": items, "next_cursor": None})
    events, next_cursor = queries.ledger_page(db.session, hcp_id, channel=args["channel"], purpose=args["purpose"],
                                              limit=args["limit"], cursor=args["cursor"])
    items = ConsentEventSchema(many=True).dump(queries.serialize_events(db.session, viewer(), events))
    return {"at": None, **page(items, next_cursor)}


@bp.get("/hcps/<int:hcp_id>/consents/decision")
@api_auth
@doc("May the company contact this HCP on this channel for this purpose at `at` (default now)?", tags=_TAGS,
     query=ContactDecisionQuerySchema, responses={200: ContactDecisionSchema}, errors=(401, 404, 422))
def decision(hcp_id: int):
    """The one decision function: allowed or denied, the rule that decided, and the ledger events it rests on."""
    args = load_args(ContactDecisionQuerySchema())
    d = services.can_contact(db.session, hcp_id, args["channel"], args["purpose"], args["at"])
    return ContactDecisionSchema().dump(queries.serialize_decision(hcp_id, args["channel"], args["purpose"], d))


@bp.get("/hcps/<int:hcp_id>/consents/reviews")
@api_auth
@doc("Compliance review notes on the HCP's consent", tags=_TAGS, responses={200: ConsentReviewPageSchema},
     errors=(401, 404))
def list_reviews(hcp_id: int):
    services.get_hcp(db.session, hcp_id)
    items = queries.serialize_reviews(db.session, services.reviews(db.session, hcp_id))
    return ConsentReviewPageSchema().dump(page(items, None))


@bp.post("/hcps/<int:hcp_id>/consents/reviews")
@api_auth
@doc("Add a compliance review note (compliance only)", tags=_TAGS, body=ConsentReviewCreateSchema,
     responses={201: ConsentReviewSchema}, errors=(400, 401, 403, 404, 413, 415, 422))
def add_review(hcp_id: int):
    hcp = services.get_hcp(db.session, hcp_id)
    data = load_body(ConsentReviewCreateSchema())
    review = services.add_review(db.session, actor(), hcp, outcome=data["outcome"], note=data["note"],
                                 event_id=data["event_id"])
    return ConsentReviewSchema().dump(queries.serialize_reviews(db.session, [review])[0]), 201


# -- notices -----------------------------------------------------------------------------------------

def _notice(notice_id: int) -> Notice:
    notice = db.session.get(Notice, notice_id)
    if notice is None:
        raise NotFound(f"Notice {notice_id} does not exist.")
    return notice


def _dump_notice(n: Notice) -> dict:
    schema = ConsentNoticeSchema()
    return schema.dump({**{c: getattr(n, c) for c in schema.fields}, "country": n.country or None})


@bp.get("/notices")
@api_auth
@doc("Consent notices (every version)", tags=_TAGS, query=ConsentNoticeQuerySchema,
     responses={200: ConsentNoticePageSchema}, errors=(401, 422))
def list_notices():
    args = load_args(ConsentNoticeQuerySchema())
    q = select(Notice)
    if args["language"]:
        q = q.where(Notice.language == args["language"])
    if args["status"]:
        q = q.where(Notice.status == args["status"])
    rows = db.session.scalars(q.order_by(Notice.language, Notice.country, Notice.number.desc())).all()
    return page([_dump_notice(n) for n in rows], None)


@bp.get("/notices/<int:notice_id>")
@api_auth
@doc("One consent notice version", tags=_TAGS, responses={200: ConsentNoticeSchema}, errors=(401, 404))
def get_notice(notice_id: int):
    return _dump_notice(_notice(notice_id))


@bp.post("/notices")
@api_auth
@doc("Create a draft notice version (admin)", tags=_TAGS, body=ConsentNoticeCreateSchema,
     responses={201: ConsentNoticeSchema}, errors=(400, 401, 403, 413, 415, 422))
def create_notice():
    data = load_body(ConsentNoticeCreateSchema())
    notice = services.create_notice(db.session, actor(), language=data["language"], country=data["country"],
                                    title=data["title"], text=data["text"])
    return _dump_notice(notice), 201, {"Location": url_for(".get_notice", notice_id=notice.id)}


@bp.patch("/notices/<int:notice_id>")
@api_auth
@doc("Edit a draft notice (admin); an active notice cannot be edited (409)", tags=_TAGS, body=ConsentNoticeUpdateSchema,
     responses={200: ConsentNoticeSchema}, errors=(400, 401, 403, 404, 409, 413, 415, 422))
def update_notice(notice_id: int):
    notice = _notice(notice_id)
    data = load_body(ConsentNoticeUpdateSchema())
    services.update_notice(db.session, actor(), notice, title=data.get("title"), text=data.get("text"))
    return _dump_notice(notice)


@bp.post("/notices/<int:notice_id>/activate")
@api_auth
@doc("Activate a draft notice (admin); the previous active version of its language is retired", tags=_TAGS,
     responses={200: ConsentNoticeSchema}, errors=(401, 403, 404, 409))
def activate_notice(notice_id: int):
    notice = _notice(notice_id)
    services.activate_notice(db.session, actor(), notice)
    return _dump_notice(notice)


# -- compliance lists --------------------------------------------------------------------------------

@bp.get("/consents/gaps")
@api_auth
@doc("Promotional contacts that happened without a granted consent (compliance, admin)", tags=_TAGS,
     query=ConsentGapQuerySchema, responses={200: ConsentGapPageSchema}, errors=(401, 403, 422))
def gaps():
    require_write(viewer(), "consent.report")
    args = load_args(ConsentGapQuerySchema())
    items, next_cursor = queries.gaps_page(db.session, limit=args["limit"], cursor=args["cursor"],
                                           since=args["since"], until=args["until"])
    return ConsentGapPageSchema().dump(page(items, next_cursor))


@bp.get("/consents/expiring")
@api_auth
@doc("Consents expiring within `within_days` (and already expired: the re-consent list)", tags=_TAGS,
     query=ConsentExpiringQuerySchema, responses={200: ConsentExpiringListSchema}, errors=(401, 422))
def expiring():
    """Field reps get their own territories unless they name one; `territory` is a territory code."""
    args = load_args(ConsentExpiringQuerySchema())
    territory_ids = _territory_filter(args["territory"])
    items = queries.expiring(db.session, within_days=args["within_days"], territory_ids=territory_ids,
                             include_expired=args["include_expired"])
    return ConsentExpiringListSchema().dump(page(items, None))


def _territory_filter(code: str | None) -> list[int] | None:
    if code:
        territory = db.session.scalar(select(Territory).where(Territory.code == code))
        if territory is None:
            raise Invalid(errors={"territory": [f"unknown territory code {code!r}"]})
        return [territory.id]
    if viewer().role == "field_rep":
        return sorted(viewer().territory_ids)
    return None


@bp.get("/consents/coverage")
@api_auth
@doc("Consent coverage per channel and purpose", tags=_TAGS, responses={200: ConsentCoverageSchema}, errors=(401,))
def coverage():
    total, items = queries.coverage(db.session)
    return ConsentCoverageSchema().dump({"total_hcps": total, "items": items, "next_cursor": None})
