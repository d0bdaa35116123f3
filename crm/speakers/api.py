"""KOL profiles, speaker qualifications and event speakers over JSON."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import Blueprint

from crm.auth.context import actor, api_auth, viewer
from crm.db import utcnow
from crm.events.currencies import minor_units
from crm.events.services import get_event
from crm.extensions import db
from crm.hcps.models import HCP
from crm.hcps.services import get_hcp
from crm.openapi import doc
from crm.schemas import load_body
from crm.speakers import services
from crm.speakers.models import EventSpeaker, SpeakerQualification
from crm.speakers.schemas import (
    KolProfileIn,
    KolProfileOut,
    QualificationIn,
    QualificationList,
    QualificationOut,
    SpeakerIn,
    SpeakerList,
    SpeakerOut,
)

bp = Blueprint("speakers_api", __name__, url_prefix="/api/v1")
TAGS = ["speakers"]


def qualification_dict(q: SpeakerQualification) -> dict[str, Any]:
    today = utcnow().date()
    return {"id": q.id, "hcp_id": q.hcp_id, "topics": list(q.topics), "trained_on": q.trained_on,
            "valid_until": q.valid_until, "valid_today": q.trained_on <= today <= q.valid_until, "note": q.note,
            "recorded_at": q.recorded_at}


def _money(amount: Decimal, currency: str) -> str:
    """The amount with the currency's decimals, the same on both engines (PostgreSQL keeps the column's 3)."""
    return str(amount.quantize(Decimal(1).scaleb(-minor_units(currency))))


def speaker_dict(s: EventSpeaker, hcp: HCP | None) -> dict[str, Any]:
    return {"id": s.id, "event_id": s.event_id, "hcp_id": s.hcp_id, "hcp_name": hcp.full_name if hcp else "",
            "topic": s.topic, "qualification_id": s.qualification_id,
            "fee": ({"amount": _money(s.fee_amount, s.fee_currency or "USD"), "currency": s.fee_currency}
                    if s.fee_amount is not None else None),
            "added_at": s.added_at}


@bp.put("/hcps/<int:hcp_id>/kol-profile")
@doc("Set an HCP's influence tier and areas of expertise (Medical Affairs, administrators)", tags=TAGS,
     body=KolProfileIn, responses={200: KolProfileOut}, errors=(400, 401, 403, 404, 413, 415, 422))
@api_auth
def put_kol_profile(hcp_id: int):
    """Both fields are replaced; `influence_tier` null means not assessed. Audited. Every role reads them on
    the HCP (`GET /api/v1/hcps/{id}`)."""
    data = load_body(KolProfileIn())
    hcp = services.set_kol_profile(db.session, actor(), viewer(), get_hcp(db.session, hcp_id),
                                   influence_tier=data["influence_tier"], expertise=data["expertise"])
    return KolProfileOut().dump({"hcp_id": hcp.id, "influence_tier": hcp.influence_tier,
                                 "expertise": list(hcp.expertise or [])})


@bp.get("/hcps/<int:hcp_id>/speaker-qualifications")
@doc("An HCP's speaker qualifications", tags=TAGS, responses={200: QualificationList}, errors=(401, 404))
@api_auth
def list_qualifications(hcp_id: int):
    """Latest validity first; `valid_today` says whether it holds today. Shared with every role."""
    hcp = get_hcp(db.session, hcp_id)
    return QualificationList().dump(
        {"items": [qualification_dict(q) for q in services.qualifications(db.session, hcp.id)]})


@bp.post("/hcps/<int:hcp_id>/speaker-qualifications")
@doc("Record a speaker qualification (Medical Affairs, administrators)", tags=TAGS, body=QualificationIn,
     responses={201: QualificationOut}, errors=(400, 401, 403, 404, 413, 415, 422))
@api_auth
def add_qualification(hcp_id: int):
    """The topics the HCP was trained to speak on, the training date (not in the future) and the last day
    the qualification holds (on or after the training)."""
    data = load_body(QualificationIn())
    q = services.add_qualification(db.session, actor(), viewer(), get_hcp(db.session, hcp_id),
                                   topics=data["topics"], trained_on=data["trained_on"],
                                   valid_until=data["valid_until"], note=data["note"])
    return QualificationOut().dump(qualification_dict(q)), 201


@bp.get("/events/<int:event_id>/speakers")
@doc("An event's speakers", tags=TAGS, responses={200: SpeakerList}, errors=(401, 404))
@api_auth
def list_speakers(event_id: int):
    event = get_event(db.session, event_id)
    rows = services.speakers(db.session, event)
    return SpeakerList().dump({"items": [speaker_dict(s, db.session.get(HCP, s.hcp_id)) for s in rows]})


@bp.post("/events/<int:event_id>/speakers")
@doc("Engage a speaker for an event (marketer, medical)", tags=TAGS, body=SpeakerIn, responses={201: SpeakerOut},
     errors=(400, 401, 403, 404, 409, 413, 415, 422))
@api_auth
def add_speaker(event_id: int):
    """Refused with 422 and the reason: no qualification covering `topic` from the event's first day through
    its last (`hcp_id`), or a `fee` that takes the HCP's transfers of value in the event's year (received,
    plus fees agreed for events still to come) over their country's annual cap. The same HCP twice: 409."""
    data = load_body(SpeakerIn())
    event = get_event(db.session, event_id)
    fee = data["fee"] or {}
    speaker = services.add_speaker(db.session, actor(), viewer(), event, hcp_id=data["hcp_id"], topic=data["topic"],
                                   fee_amount=fee.get("amount"), fee_currency=fee.get("currency"))
    return SpeakerOut().dump(speaker_dict(speaker, db.session.get(HCP, speaker.hcp_id))), 201
