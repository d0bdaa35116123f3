"""Guardrails on submitted visits: visits do not know about guardrails; this listener does.

When ``crm.signals.visit_submitted`` fires, the visit's notes are checked. The hits are recorded on the
visit's interaction (``details["guardrail_hits"]``); a medical question in a rep's visit opens a medical
inquiry for Medical Affairs instead of letting the rep answer; adverse-event wording opens an
adverse-event case with its 24-hour clock. It all happens in the submitting transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import object_session

from crm import signals
from crm.audit import services as audit
from crm.callcentre import services as callcentre
from crm.guardrails.services import categories_hit, guardrail_hits_for_visit, hits_json
from crm.timeline.models import Interaction

# Medical Affairs answer medical questions in their own visits; only other roles' visits are routed.
ANSWERS_OWN_QUESTIONS = frozenset({"medical"})


def check_submitted_visit(visit: Any, actor: Any = None, **_: Any) -> None:
    session = object_session(visit)
    if session is None:
        return
    hits = guardrail_hits_for_visit(session, visit.notes)
    if not hits:
        return
    item = session.get(Interaction, visit.interaction_id) if visit.interaction_id else None
    if item is not None:
        item.details = {**(item.details or {}), "guardrail_hits": hits_json(hits)}
        audit.record(session, actor, "guardrail.hits", "interaction", item.id,
                     audit.created({"visit_id": visit.id, "guardrail_hits": [h.phrase for h in hits]}))
    found = categories_hit(hits)
    owner_role = getattr(getattr(visit, "owner", None), "role", None) or getattr(actor, "role", None)
    if "medical_question" in found and owner_role not in ANSWERS_OWN_QUESTIONS:
        callcentre.open_inquiry_from_visit(session, actor, visit=visit, question=visit.notes, hits=hits)
    if "adverse_event" in found:
        callcentre.open_case_from_visit(session, actor, visit=visit,
                                        hits=[h for h in hits if h.category == "adverse_event"])
    session.flush()


signals.visit_submitted.connect(check_submitted_visit)
