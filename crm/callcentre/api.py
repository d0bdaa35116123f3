"""The call-centre API: contacts, the medical-inquiry queue and the adverse-event intake queue.

Queue items are shared by default and redacted by the policy: Medical Affairs, the call centre,
compliance and admin read them in full (and the read is logged); a rep or a marketer learns that the
item exists, when, and why the rest is withheld.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from crm.auth.context import actor, api_auth, viewer
from crm.callcentre import services
from crm.callcentre.models import AdverseEventCase, MedicalInquiry
from crm.callcentre.schemas import (
    CaseArgs,
    CaseFromContactIn,
    CaseOut,
    CasePage,
    CloseCaseIn,
    ContactCreatedOut,
    ContactIn,
    ContactOut,
    InquiryAnswerIn,
    InquiryArgs,
    InquiryOut,
    InquiryPage,
)
from crm.extensions import db
from crm.openapi import doc
from crm.schemas import load_args, load_body, page

bp = Blueprint("callcentre_api", __name__, url_prefix="/api/v1")
TAGS = ["call centre"]


def _created_out(result: services.ContactResult) -> dict[str, Any]:
    contact = result.contact
    out = services.contact_dict(db.session, viewer(), contact)
    out["guardrail_hits"] = [h.as_dict() for h in result.hits]
    out["ae_case_offer"] = result.ae_case_offer
    out["medical_inquiry_id"] = db.session.scalar(
        select(MedicalInquiry.id).where(MedicalInquiry.contact_id == contact.id))
    out["adverse_event_case_id"] = db.session.scalar(
        select(AdverseEventCase.id).where(AdverseEventCase.contact_id == contact.id))
    return out


@bp.post("/call-centre/contacts")
@doc("Log a call-centre contact", tags=TAGS, body=ContactIn, responses={201: ContactCreatedOut, 200: ContactCreatedOut})
@api_auth
def create_contact():
    """Call-centre agents. `medical_inquiry` is `medical` and opens a medical inquiry; `adverse_event` is `pv`
    and opens an adverse-event case due 24 hours after `occurred_at`. The summary and details are checked
    by the guardrails: hits are returned and recorded; adverse-event wording sets `ae_case_offer`.
    A replayed `external_id` answers 200 with the existing contact."""
    data = load_body(ContactIn())
    follow_up = data.get("follow_up") or {}
    result = services.create_contact(
        db.session, actor(), viewer(), hcp_id=data["hcp_id"], occurred_at=data["occurred_at"],
        direction=data["direction"], medium=data["medium"], reason=data["reason"], summary=data["summary"],
        details=data["details"], products=data["products"], follow_up_date=follow_up.get("date"),
        follow_up_text=follow_up.get("text"), external_id=data["external_id"], adverse_event=data["adverse_event"],
    )
    return _created_out(result), 201 if result.created else 200


@bp.get("/call-centre/contacts/<int:contact_id>")
@doc("One contact, redacted for the caller", tags=TAGS, responses={200: ContactOut}, errors=(401, 404))
@api_auth
def get_contact(contact_id: int):
    contact = services.get_contact(db.session, contact_id)
    return services.contact_dict(db.session, viewer(), contact)


@bp.post("/call-centre/contacts/<int:contact_id>/adverse-event-case")
@doc("Open an adverse-event case from a contact (the guardrail's offer)", tags=TAGS, body=CaseFromContactIn,
     responses={201: CaseOut}, errors=(400, 401, 403, 404, 409, 422))
@api_auth
def case_from_contact(contact_id: int):
    """The contact becomes an adverse-event report: its timeline item is corrected by a `pv` item that
    supersedes it, and a case opens with its 24-hour clock running from the contact's time."""
    data = load_body(CaseFromContactIn())
    contact = services.get_contact(db.session, contact_id)
    case = services.open_case_from_contact(db.session, actor(), viewer(), contact, **data)
    return services.case_dict(db.session, viewer(), case, log=False), 201


@bp.get("/medical-inquiries")
@doc("The medical-inquiry queue, oldest first", tags=TAGS, query=InquiryArgs, responses={200: InquiryPage},
     errors=(401, 422))
@api_auth
def list_inquiries():
    args = load_args(InquiryArgs())
    rows, nxt = services.inquiry_page(db.session, args["status"], args["limit"], args["cursor"])
    who = viewer()
    return page(services.inquiry_dicts(db.session, who, rows), nxt)


@bp.get("/medical-inquiries/<int:inquiry_id>")
@doc("One medical inquiry, redacted for the caller", tags=TAGS, responses={200: InquiryOut}, errors=(401, 404))
@api_auth
def get_inquiry(inquiry_id: int):
    inquiry = services.get_inquiry(db.session, inquiry_id)
    return services.inquiry_dict(db.session, viewer(), inquiry)


@bp.post("/medical-inquiries/<int:inquiry_id>/answer")
@doc("Record the answer to a medical inquiry (medical)", tags=TAGS, body=InquiryAnswerIn, responses={200: InquiryOut},
     errors=(400, 401, 403, 404, 409, 422))
@api_auth
def answer_inquiry(inquiry_id: int):
    """The answer is itself a `medical` item on the HCP's timeline; the response time is kept."""
    data = load_body(InquiryAnswerIn())
    inquiry = services.get_inquiry(db.session, inquiry_id)
    services.answer_inquiry(db.session, actor(), viewer(), inquiry, answer=data["answer"], medium=data["medium"],
                            answered_at=data["answered_at"])
    return services.inquiry_dict(db.session, viewer(), inquiry, log=False)


@bp.get("/adverse-events")
@doc("The adverse-event intake queue, earliest due first", tags=TAGS, query=CaseArgs, responses={200: CasePage},
     errors=(401, 422))
@api_auth
def list_cases():
    """`overdue=true` keeps open cases past their 24-hour due time."""
    args = load_args(CaseArgs())
    rows, nxt = services.case_page(db.session, args["status"], args["overdue"], args["limit"], args["cursor"])
    who = viewer()
    return page(services.case_dicts(db.session, who, rows), nxt)


@bp.get("/adverse-events/<int:case_id>")
@doc("One adverse-event case, redacted for the caller", tags=TAGS, responses={200: CaseOut}, errors=(401, 404))
@api_auth
def get_case(case_id: int):
    case = services.get_case(db.session, case_id)
    return services.case_dict(db.session, viewer(), case)


@bp.post("/adverse-events/<int:case_id>/close")
@doc("Close a case with its forwarding record", tags=TAGS, body=CloseCaseIn, responses={200: CaseOut},
     errors=(400, 401, 403, 404, 409, 422))
@api_auth
def close_case(case_id: int):
    """Requires who forwarded it to pharmacovigilance (`forwarded_by`) and when (`forwarded_at`): 422 without."""
    data = load_body(CloseCaseIn())
    case = services.get_case(db.session, case_id)
    services.close_case(db.session, actor(), viewer(), case, forwarded_by=data["forwarded_by"],
                        forwarded_at=data["forwarded_at"], pv_reference=data["pv_reference"])
    return services.case_dict(db.session, viewer(), case, log=False)
