"""The guardrails API: check a text before saving it; read and edit the rule lists (compliance)."""

from __future__ import annotations

from flask import Blueprint

from crm.auth.context import actor, api_auth, viewer
from crm.extensions import db
from crm.guardrails import services
from crm.guardrails.schemas import (
    GuardrailCheckIn,
    GuardrailCheckOut,
    GuardrailRuleIn,
    GuardrailRuleListOut,
    GuardrailRuleOut,
    GuardrailRulePatch,
)
from crm.openapi import doc
from crm.schemas import load_body

bp = Blueprint("guardrails_api", __name__, url_prefix="/api/v1/guardrails")
TAGS = ["guardrails"]


@bp.post("/check")
@doc("Check free text before saving it", tags=TAGS, body=GuardrailCheckIn, responses={200: GuardrailCheckOut},
     errors=(400, 401, 422))
@api_auth
def check():
    """Deterministic: every active phrase of the categories that apply in `context`, whole words, any case."""
    data = load_body(GuardrailCheckIn())
    hits = services.check_text(db.session, data["text"], data["context"])
    found = services.categories_hit(hits)
    return {"hits": services.hits_json(hits), "adverse_event": "adverse_event" in found,
            "medical_question": "medical_question" in found, "promotional": "promotional" in found}


@bp.get("/rules")
@doc("The rule lists", tags=TAGS, responses={200: GuardrailRuleListOut}, errors=(401,))
@api_auth
def list_rules():
    return {"items": GuardrailRuleOut(many=True).dump(services.all_rules(db.session))}


@bp.post("/rules")
@doc("Add a phrase (compliance)", tags=TAGS, body=GuardrailRuleIn, responses={201: GuardrailRuleOut},
     errors=(400, 401, 403, 409, 422))
@api_auth
def add_rule():
    data = load_body(GuardrailRuleIn())
    rule = services.add_rule(db.session, actor(), viewer(), data["category"], data["phrase"])
    return GuardrailRuleOut().dump(rule), 201


@bp.patch("/rules/<int:rule_id>")
@doc("Switch a phrase on or off (compliance)", tags=TAGS, body=GuardrailRulePatch, responses={200: GuardrailRuleOut},
     errors=(400, 401, 403, 404, 422))
@api_auth
def patch_rule(rule_id: int):
    data = load_body(GuardrailRulePatch())
    rule = services.set_rule_active(db.session, actor(), viewer(), rule_id, data["active"])
    return GuardrailRuleOut().dump(rule)
