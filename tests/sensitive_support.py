"""A data set of medical and pv records with a unique marker in every free-text field (issue 11).

Every marker starts with ``ZQX``: no fixture name, label or template contains it, so finding ``ZQX`` in a
response body means medical or pv text reached it. Built through the real services, like the app does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from crm.auth.services import viewer_for
from crm.callcentre import services as callcentre
from crm.callcentre.models import AdverseEventCase, MedicalInquiry
from crm.db import utcnow
from crm.events import services as events
from crm.products.models import Product
from crm.timeline.models import Interaction
from crm.visits import services as visits

MARK = "ZQX"
HIDDEN_SKU = "ZZ-HIDDEN-1"  # a product named only on medical/pv items


@dataclass
class SensitiveWorld:
    users: dict[str, Any]
    hcp: Any
    hcp2: Any
    ids: dict[str, list[int]] = field(default_factory=dict)

    def add(self, name: str, *values: int | None) -> None:
        self.ids.setdefault(name, []).extend(v for v in values if v is not None)


def _chain(db: Any, item_id: int | None) -> list[int]:
    """The item and every item it supersedes, newest first."""
    out: list[int] = []
    while item_id is not None:
        out.append(item_id)
        item_id = db.get(Interaction, item_id).supersedes_id
    return out


def build(db: Any, factory: Any) -> SensitiveWorld:
    territory = factory.territory()
    for sku in ("CARDIO-10", HIDDEN_SKU):
        db.add(Product(sku=sku, name=f"Product {sku}", active=True))
    db.flush()
    hcp, hcp2 = factory.hcp(territory), factory.hcp(territory)
    users = {role: factory.user(role, territories=[territory] if role == "field_rep" else [])
             for role in ("field_rep", "marketer", "call_centre", "medical", "compliance", "admin")}
    world = SensitiveWorld(users, hcp, hcp2)
    now = utcnow()

    def v(role: str) -> Any:
        return viewer_for(db, users[role])

    # 1. A rep's visit whose notes report an adverse event: it becomes pv; its first item is superseded.
    rep = users["field_rep"]
    visit = visits.create_visit(db, rep, v("field_rep"), {
        "hcp_id": hcp.id, "occurred_at": now - timedelta(days=2), "duration_minutes": 15, "mode": "in_person",
        "products": [HIDDEN_SKU], "key_messages": [f"{MARK}-visit-key-message"], "samples": [],
        "notes": f"{MARK}-visit-notes: the patient had a rash and was hospitalised after the dose",
        "follow_up": {"date": (now + timedelta(days=2)).date(), "text": f"{MARK}-visit-follow-up"},
        "attendee_hcp_ids": [hcp2.id],
    })
    visits.submit_visit(db, rep, v("field_rep"), visit)
    assert visit.sensitivity == "pv", "the guardrails should have made the visit pv"
    # ... and its owner amends it (a correction of a correction).
    amended = visits.amend_visit(db, rep, v("field_rep"), visit, {"duration_minutes": 25},
                                 f"{MARK}-amendment-reason")
    world.add("visit", visit.id, amended.id)
    world.add("interaction", *_chain(db, amended.interaction_id))
    world.add("pv_visit_items", *_chain(db, amended.interaction_id))

    # 2. A medical visit by Medical Affairs.
    medical = users["medical"]
    med_visit = visits.create_visit(db, medical, v("medical"), {
        "hcp_id": hcp.id, "occurred_at": now - timedelta(days=3), "duration_minutes": 30, "mode": "remote",
        "products": [HIDDEN_SKU], "key_messages": [f"{MARK}-medical-key-message"], "samples": [],
        "notes": f"{MARK}-medical-visit-notes", "follow_up": None, "attendee_hcp_ids": [],
    })
    visits.submit_visit(db, medical, v("medical"), med_visit)
    world.add("visit", med_visit.id)
    world.add("interaction", med_visit.interaction_id)

    # 3. A call-centre contact with adverse-event wording, turned into an adverse-event report.
    agent = users["call_centre"]
    contact = callcentre.create_contact(
        db, agent, v("call_centre"), hcp_id=hcp.id, occurred_at=now - timedelta(days=1), direction="inbound",
        medium="phone", reason="product_information", summary=f"{MARK}-contact-summary: a rash since Monday",
        details=f"{MARK}-contact-details", products=[HIDDEN_SKU],
        follow_up_date=(now + timedelta(days=1)).date(), follow_up_text=f"{MARK}-contact-follow-up",
    ).contact
    original_item = contact.interaction_id
    case = callcentre.open_case_from_contact(db, agent, v("call_centre"), contact, reporter=f"{MARK}-reporter",
                                             product=f"{MARK}-case-product", description=f"{MARK}-case-description")
    world.add("contact", contact.id)
    world.add("case", case.id)
    world.add("interaction", *_chain(db, contact.interaction_id))
    world.add("pv_contact_items", original_item, contact.interaction_id)

    # 4. A medical inquiry by phone, answered by Medical Affairs.
    inquiry_contact = callcentre.create_contact(
        db, agent, v("call_centre"), hcp_id=hcp2.id, occurred_at=now - timedelta(days=1, hours=2),
        direction="inbound", medium="email", reason="medical_inquiry", summary=f"{MARK}-inquiry-summary",
        details=f"{MARK}-inquiry-details", products=[HIDDEN_SKU],
    ).contact
    inquiry = db.query(MedicalInquiry).filter_by(contact_id=inquiry_contact.id).one()
    callcentre.answer_inquiry(db, medical, v("medical"), inquiry, answer=f"{MARK}-inquiry-answer", medium="email")
    world.add("contact", inquiry_contact.id)
    world.add("inquiry", inquiry.id)
    world.add("interaction", inquiry_contact.interaction_id, inquiry.answer_interaction_id)
    for row in db.query(MedicalInquiry).filter(MedicalInquiry.id != inquiry.id):
        world.add("inquiry", row.id)  # e.g. a medical question found in the rep's visit
    for row in db.query(AdverseEventCase).filter(AdverseEventCase.id != case.id):
        world.add("case", row.id)  # the case the rep's visit opened

    # 5. A medical round table: invitation, registration, attendance, a no-show, a transfer of value.
    event, _ = events.create_event(db, medical, v("medical"), {
        "name": f"{MARK}-event-name", "type": "round_table", "starts_at": now - timedelta(days=5),
        "ends_at": now - timedelta(days=5) + timedelta(hours=2), "venue": f"{MARK}-event-venue",
        "url": "https://example.org/ZQX-event-url", "products": [HIDDEN_SKU], "organiser": f"{MARK}-organiser",
        "sensitivity": "medical", "country": "US",
    })
    events.invite(db, medical, v("medical"), event, [hcp.id, hcp2.id], "other")
    events.register(db, medical, v("medical"), event, hcp.id)
    events.record_attendance(db, medical, v("medical"), event, hcp.id, "attended")
    events.record_attendance(db, medical, v("medical"), event, hcp2.id, "no_show")
    events.record_transfer(db, medical, v("medical"), event, hcp_id=hcp.id, kind="meal", amount=Decimal("25.00"),
                           currency="USD", paid_on=now.date(), description=f"{MARK}-transfer-note")
    world.add("event", event.id)
    world.add("interaction", *(i for (i,) in db.query(Interaction.id).filter(Interaction.channel == "event")))

    # 6. A survey answer whose comment reports an adverse event (pv), captured by the call centre.
    from crm.surveys import services as surveys

    survey = surveys.create_survey(db, users["marketer"], v("marketer"), {
        "name": "After the round table", "kind": "nps", "questions": [], "context": {"channel": "event"},
        "audience": {"hcp_ids": [hcp.id, hcp2.id]}})
    response = surveys.capture_answer(
        db, agent, v("call_centre"), survey, hcp_id=hcp.id, medium="phone",
        answer=surveys.Answer(2, (), f"{MARK}-survey-comment: my patient had a rash"))
    assert response.sensitivity == "pv", "the guardrails should have made the survey answer pv"
    world.add("survey", survey.id)
    world.add("interaction", response.interaction_id)
    for row in db.query(AdverseEventCase).filter(AdverseEventCase.id.notin_(world.ids["case"])):
        world.add("case", row.id)
    db.flush()

    # 6. A segment and a plan over these HCPs this quarter (issue 12): attainment counts the medical and pv
    # items above, and shows none of their content.
    from crm.plans.services import create_plan, current_quarter
    from crm.segments.services import create_segment

    segment = create_segment(db, users["marketer"], v("marketer"), {"name": "Sensitive world GPs",
                                                                     "professions": ["gp"]})
    start, end = current_quarter(now.date())
    plan = create_plan(db, users["marketer"], v("marketer"), {
        "name": "Sensitive world plan", "cycle_start": start - timedelta(days=90), "cycle_end": end,
        "segment_id": segment.id, "territory_codes": [territory.code],
        "channel_goals": {"visit": 2, "call_centre": 1, "event": 1},
        "product_goals": [{"sku": HIDDEN_SKU, "channel": "visit", "touches": 1}],
        "targets": [{"hcp_id": hcp2.id, "goals": {"visit": 3}}]})
    world.add("segment", segment.id)
    world.add("plan", plan.id)

    # 7. Planned visits (issue 14 item 5): Medical Affairs' plan is medical, its objective withheld from
    # field force and marketing; a rep's own plan next to it, and a medical plan turned into a draft visit.
    from crm.visit_plans.services import create_plan as plan_visit
    from crm.visit_plans.services import start_plan

    tomorrow = now.replace(microsecond=0) + timedelta(days=1)
    for role, objective in (("medical", f"{MARK}-plan-objective"), ("field_rep", "Bring the new outcomes data")):
        visit_plan = plan_visit(db, users[role], v(role), {
            "hcp_id": hcp.id, "planned_start": tomorrow, "planned_end": tomorrow + timedelta(minutes=30),
            "mode": "in_person", "objective": objective, "products": [HIDDEN_SKU]})
        world.add("visit_plan", visit_plan.id)
    started = plan_visit(db, users["medical"], v("medical"), {
        "hcp_id": hcp2.id, "planned_start": tomorrow, "planned_end": tomorrow + timedelta(minutes=45),
        "mode": "remote", "objective": f"{MARK}-started-plan-objective", "products": [HIDDEN_SKU]})
    world.add("visit_plan", started.id)
    # kept apart from "visit" (whose order other tests rely on); the walker requests it as a visit too
    world.add("plan_visit", start_plan(db, users["medical"], v("medical"), started).id)
    db.flush()
    return world
