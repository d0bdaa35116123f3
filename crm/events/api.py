"""The events API: events, invitations, registrations, attendance, transfers of value, caps, the report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response
from sqlalchemy import select

from crm.auth.context import actor, api_auth, viewer
from crm.db import utcnow
from crm.errors import NotFound
from crm.events import reports, services
from crm.events.models import Attendance, Invitation, Registration, TransferCap
from crm.events.schemas import (
    AttendanceIn,
    AttendanceListOut,
    AttendanceOut,
    DisclosureConsentIn,
    DisclosureConsentOut,
    EventIn,
    EventListArgs,
    EventOut,
    EventPage,
    HcpTransfersOut,
    InvitationIn,
    InvitationListOut,
    InvitationOut,
    InvitationResultOut,
    RegistrationIn,
    RegistrationListOut,
    RegistrationOut,
    TransferCapIn,
    TransferCapListOut,
    TransferCapOut,
    TransferIn,
    TransferListOut,
    TransferOut,
    TransferReportArgs,
    TransferResultOut,
    TransferYearArgs,
)
from crm.extensions import db
from crm.hcps.models import HCP
from crm.openapi import doc
from crm.schemas import decode_cursor, encode_cursor, load_args, load_body, page

bp = Blueprint("events_api", __name__, url_prefix="/api/v1")
TAGS = ["events"]


def _attendance_out(row: Attendance, event_item: int | None) -> dict[str, Any]:
    out: dict[str, Any] = AttendanceOut().dump(row)
    out["attended_interaction_id"] = event_item if row.status == "attended" else None
    return out


@bp.post("/events")
@doc("Create an event", tags=TAGS, body=EventIn, responses={201: EventOut, 200: EventOut},
     errors=(400, 401, 403, 422))
@api_auth
def create_event():
    """Marketer or medical. `ends_at` must be after `starts_at`; a venue or a url is required. A repeated
    `external_id` answers 200 with the existing event."""
    data = load_body(EventIn())
    event, created = services.create_event(db.session, actor(), viewer(), data)
    return EventOut().dump(services.visible_event(db.session, viewer(), event, log=False)), 201 if created else 200


@bp.get("/events")
@doc("Events, latest start first", tags=TAGS, query=EventListArgs, responses={200: EventPage}, errors=(401, 422))
@api_auth
def list_events():
    args = load_args(EventListArgs())
    after = None
    if args["cursor"]:
        at, last_id = decode_cursor(args["cursor"], (datetime, int))
        after = (at, last_id)
    rows, nxt = services.event_page(db.session, args["limit"], after, upcoming_only=args["upcoming"])
    shown = services.visible_events(db.session, viewer(), rows)
    return page(EventOut(many=True).dump(shown), encode_cursor(*nxt) if nxt else None)


@bp.get("/events/<int:event_id>")
@doc("One event", tags=TAGS, responses={200: EventOut}, errors=(401, 404))
@api_auth
def get_event(event_id: int):
    """A `medical` event keeps its type, dates and country for field force and marketing; its name, place,
    organiser and products are withheld (`redacted`, with the reason), as on the timeline."""
    return EventOut().dump(services.visible_event(db.session, viewer(), services.get_event(db.session, event_id)))


@bp.post("/events/<int:event_id>/invitations")
@doc("Invite HCPs", tags=TAGS, body=InvitationIn, responses={200: InvitationResultOut})
@api_auth
def invite(event_id: int):
    """By email, consent (email, events) is checked per HCP now; HCPs without it are listed in
    `skipped` with the reason and rule. Mails leave after the commit. `cap_warnings` lists HCPs at or
    near their country's annual cap on transfers of value."""
    data = load_body(InvitationIn())
    event = services.get_event(db.session, event_id)
    result = services.invite(db.session, actor(), viewer(), event, data["hcp_ids"], data["channel"])
    return {"sent": len(result.sent), "sent_hcp_ids": result.sent, "skipped": result.skipped,
            "cap_warnings": result.cap_warnings}


@bp.get("/events/<int:event_id>/invitations")
@doc("The event's invitations, sent and skipped", tags=TAGS, responses={200: InvitationListOut},
     errors=(401, 404))
@api_auth
def list_invitations(event_id: int):
    event = services.get_event(db.session, event_id)
    rows = db.session.scalars(select(Invitation).where(Invitation.event_id == event.id).order_by(Invitation.id))
    return {"items": InvitationOut(many=True).dump(rows)}


@bp.post("/events/<int:event_id>/registrations")
@doc("Register an HCP", tags=TAGS, body=RegistrationIn, responses={201: RegistrationOut, 200: RegistrationOut})
@api_auth
def register(event_id: int):
    """Registering the same HCP again answers 200 with the first registration."""
    data = load_body(RegistrationIn())
    event = services.get_event(db.session, event_id)
    reg, created = services.register(db.session, actor(), viewer(), event, data["hcp_id"],
                                     external_id=data["external_id"], registered_at=data["registered_at"])
    return RegistrationOut().dump(reg), 201 if created else 200


@bp.get("/events/<int:event_id>/registrations")
@doc("The event's registrations", tags=TAGS, responses={200: RegistrationListOut}, errors=(401, 404))
@api_auth
def list_registrations(event_id: int):
    event = services.get_event(db.session, event_id)
    rows = db.session.scalars(select(Registration).where(Registration.event_id == event.id)
                              .order_by(Registration.id))
    return {"items": RegistrationOut(many=True).dump(rows)}


@bp.post("/events/<int:event_id>/attendance")
@doc("Record attendance (attended or no_show)", tags=TAGS, body=AttendanceIn,
     responses={201: AttendanceOut, 200: AttendanceOut}, errors=(400, 401, 403, 404, 409, 422))
@api_auth
def record_attendance(event_id: int):
    """Idempotent per (event, HCP) and per (event, external id): the same mark again answers 200 and
    changes nothing. All attendees share one `event.attended` timeline item, replaced (superseded) as
    attendance changes; a no-show is the HCP's own `event.no_show` item."""
    data = load_body(AttendanceIn())
    event = services.get_event(db.session, event_id)
    result = services.record_attendance(db.session, actor(), viewer(), event, data["hcp_id"], data["status"],
                                        external_id=data["external_id"])
    return _attendance_out(result.attendance, event.attendance_interaction_id), 201 if result.created else 200


@bp.get("/events/<int:event_id>/attendance")
@doc("The event's attendance", tags=TAGS, responses={200: AttendanceListOut}, errors=(401, 404))
@api_auth
def list_attendance(event_id: int):
    event = services.get_event(db.session, event_id)
    shown = services.visible_attendance(db.session, viewer(), event, services.attendance_list(db.session, event))
    return {"items": AttendanceOut(many=True).dump(shown)}


@bp.post("/events/<int:event_id>/transfers")
@doc("Record a transfer of value", tags=TAGS, body=TransferIn, responses={201: TransferResultOut})
@api_auth
def record_transfer(event_id: int):
    """Marketer or medical. Unknown ISO 4217 currency, zero or negative amount: 422. Over the annual cap
    of the HCP's country: 422 when the cap blocks, recorded with a `warning` when it warns."""
    data = load_body(TransferIn())
    event = services.get_event(db.session, event_id)
    result = services.record_transfer(db.session, actor(), viewer(), event, hcp_id=data["hcp_id"], kind=data["kind"],
                                      amount=data["amount"], currency=data["currency"], paid_on=data["date"],
                                      description=data["description"])
    out: dict[str, Any] = TransferOut().dump(result.transfer)
    out.update({"warning": result.warning, "annual": result.status})
    return out, 201


@bp.get("/events/<int:event_id>/transfers")
@doc("The event's transfers of value", tags=TAGS, responses={200: TransferListOut}, errors=(401, 404))
@api_auth
def list_transfers(event_id: int):
    event = services.get_event(db.session, event_id)
    shown = services.visible_transfers(db.session, viewer(), services.transfers_for_event(db.session, event))
    return {"items": TransferOut(many=True).dump(shown)}


@bp.get("/hcps/<int:hcp_id>/transfers")
@doc("An HCP's transfers of value and running total for a year", tags=TAGS, query=TransferYearArgs,
     responses={200: HcpTransfersOut}, errors=(401, 404, 422))
@api_auth
def hcp_transfers(hcp_id: int):
    """The year's transfers (this year by default), the running total per currency and the cap."""
    args = load_args(TransferYearArgs())
    hcp = db.session.get(HCP, hcp_id)
    if hcp is None:
        raise NotFound(f"There is no HCP with id {hcp_id}.")
    year = args["year"] or utcnow().year
    return {"hcp_id": hcp.id, "year": year,
            "annual": services.cap_statuses(db.session, [hcp], year)[hcp.id],
            "items": TransferOut(many=True).dump(
                services.visible_transfers(db.session, viewer(), services.transfers_for_hcp(db.session, hcp.id, year)))}


@bp.post("/hcps/<int:hcp_id>/disclosure-consent")
@doc("Record whether the HCP agreed to named disclosure (EFPIA)", tags=TAGS, body=DisclosureConsentIn,
     responses={201: DisclosureConsentOut})
@api_auth
def disclosure_consent(hcp_id: int):
    """Append-only; the latest answer decides whether the transparency report names the HCP or counts
    them in the aggregate row."""
    data = load_body(DisclosureConsentIn())
    if db.session.get(HCP, hcp_id) is None:
        raise NotFound(f"There is no HCP with id {hcp_id}.")
    row = services.record_disclosure_consent(db.session, actor(), viewer(), hcp_id, data["granted"],
                                             data["occurred_at"])
    return DisclosureConsentOut().dump(row), 201


@bp.get("/transfer-caps")
@doc("Annual caps on transfers of value per country", tags=TAGS, responses={200: TransferCapListOut}, errors=(401,))
@api_auth
def list_caps():
    rows = db.session.scalars(select(TransferCap).order_by(TransferCap.country))
    return {"items": TransferCapOut(many=True).dump(rows)}


@bp.put("/transfer-caps/<country>")
@doc("Set a country's annual cap (admin)", tags=TAGS, body=TransferCapIn, responses={200: TransferCapOut},
     errors=(400, 401, 403, 422))
@api_auth
def set_cap(country: str):
    """`action` `warn` records transfers over the cap with a warning; `block` refuses them."""
    data = load_body(TransferCapIn())
    cap = services.set_transfer_cap(db.session, actor(), viewer(), country, currency=data["currency"],
                                    annual_cap=data["annual_cap"], action=data["action"])
    return TransferCapOut().dump(cap)


@bp.get("/reports/transfers")
@doc("The transparency report as CSV (compliance, admin)", tags=TAGS, query=TransferReportArgs,
     responses={200: "text/csv: Open Payments general payments or EFPIA template columns"},
     errors=(401, 403, 422))
@api_auth
def transfers_report():
    args = load_args(TransferReportArgs())
    if args["format"] == "efpia":
        report = reports.efpia(db.session, viewer(), args["year"], (args["country"] or "").upper() or None)
    else:
        report = reports.open_payments(db.session, viewer(), args["year"])
    name = f"transfers-{args['format']}-{args['year']}.csv"
    return Response(report.csv(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
