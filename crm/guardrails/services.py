"""Deterministic guardrails over free text: adverse-event wording, medical questions, promotional claims.

The phrase lists are rows of ``GuardrailRule`` (seeded with the defaults below, edited by compliance).
A phrase matches case-insensitively as whole words; a hyphen and a space are the same separator, so
"off-label" also finds "off label". No scoring, no model: the same text always gives the same hits.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from crm.access.policy import Viewer, require_write
from crm.audit import services as audit
from crm.db import DbSession
from crm.errors import Conflict, Invalid, NotFound
from crm.guardrails.models import CATEGORIES, GuardrailRule

DEFAULT_RULES: dict[str, tuple[str, ...]] = {
    "adverse_event": (
        "side effect", "side effects", "adverse", "adverse event", "adverse reaction", "hospitalised after",
        "hospitalized after", "hospitalised", "hospitalized", "rash", "overdose", "allergic reaction",
        "anaphylaxis", "swelling", "seizure", "fainted", "vomiting", "bleeding", "died", "death",
        "medication error", "stopped taking", "reaction to", "pregnant while taking", "liver damage",
    ),
    "medical_question": (
        "off-label", "off label use", "dose for children", "paediatric dose", "pediatric dose",
        "can I use it in pregnancy", "in pregnancy", "while breastfeeding", "breastfeeding",
        "drug interaction", "interaction with", "maximum dose", "double the dose", "renal impairment",
        "crush the tablet", "unapproved indication",
    ),
    "promotional": (
        "cure", "cures", "guaranteed", "100% safe", "no side effects", "completely safe", "miracle",
        "risk-free", "best drug", "safer than", "better than", "free gift",
    ),
}

# Which categories apply where. A medical question is the call centre's daily work (the agent picks
# the reason `medical_inquiry`); in a rep's visit it must go to Medical Affairs instead.
CONTEXT_CATEGORIES: dict[str, tuple[str, ...]] = {
    "visit": ("adverse_event", "medical_question", "promotional"),
    "call_centre": ("adverse_event", "promotional"),
    # An HCP's survey comment: adverse-event wording must reach pharmacovigilance (crm.surveys).
    "survey": ("adverse_event",),
}
CONTEXTS = tuple(CONTEXT_CATEGORIES)
MAX_PHRASE = 200


@dataclass(frozen=True)
class Hit:
    """One phrase found in one text: what, where (character offsets into the text) and which rule."""

    category: str
    phrase: str
    rule_id: int
    match: str
    start: int
    end: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fold(text: str) -> str:
    """Case- and compatibility-folded, keeping one character per input character so offsets hold."""
    out = []
    for ch in text:
        folded = unicodedata.normalize("NFKC", ch).casefold()
        out.append(folded if len(folded) == 1 else ch.lower())
    return "".join(out)


def clean_phrase(phrase: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", phrase).split())


def _pattern(phrase: str) -> re.Pattern[str]:
    words = re.split(r"[\s\-]+", _fold(clean_phrase(phrase)).strip())
    body = r"[\s\-]+".join(re.escape(w) for w in words if w)
    return re.compile(rf"(?<!\w){body}(?!\w)")


def ensure_default_rules(session: DbSession) -> int:
    """Seed the default lists once, into an empty table. Returns how many rules were added.

    Compliance later edits or deactivates rules; a table that has rows is never reseeded, so a
    deactivated default stays deactivated.
    """
    if session.scalar(select(func.count()).select_from(GuardrailRule)):
        return 0
    rows = [GuardrailRule(category=c, phrase=p) for c, phrases in DEFAULT_RULES.items() for p in phrases]
    try:
        with session.begin_nested():
            session.add_all(rows)
            session.flush()
    except IntegrityError:
        # Another transaction seeded at the same moment; its rows are as good as ours.
        return 0
    return len(rows)


def active_rules(session: DbSession, categories: tuple[str, ...] = CATEGORIES) -> list[GuardrailRule]:
    ensure_default_rules(session)
    return list(session.scalars(
        select(GuardrailRule).where(GuardrailRule.active.is_(True), GuardrailRule.category.in_(categories))
        .order_by(GuardrailRule.id)
    ))


def check_text(session: DbSession, text: str | None, context: str) -> list[Hit]:
    """Every active rule of the categories that apply in ``context`` found in ``text``, in text order.

    Overlapping phrases of one category ("side effect" inside "side effects") are both reported: the
    list says which rules fired, and the reviewer sees all of them.
    """
    if context not in CONTEXT_CATEGORIES:
        raise Invalid(errors={"context": [f"must be one of {', '.join(CONTEXTS)}"]})
    if not text or not text.strip():
        return []
    folded = _fold(text)
    hits: list[Hit] = []
    for rule in active_rules(session, CONTEXT_CATEGORIES[context]):
        for m in _pattern(rule.phrase).finditer(folded):
            hits.append(Hit(rule.category, rule.phrase, rule.id, text[m.start():m.end()], m.start(), m.end()))
    hits.sort(key=lambda h: (h.start, h.end, h.rule_id))
    return hits


def hits_json(hits: list[Hit]) -> list[dict[str, Any]]:
    return [h.as_dict() for h in hits]


def categories_hit(hits: list[Hit]) -> set[str]:
    return {h.category for h in hits}


def guardrail_hits_for_visit(session: DbSession, notes: str | None) -> list[Hit]:
    """The hits in a visit's notes (the visit form shows them before save; submit records them)."""
    return check_text(session, notes, "visit")


# -- editing the lists (compliance) ---------------------------------------------------------------

def _valid(category: str, phrase: str) -> str:
    errors: dict[str, list[str]] = {}
    if category not in CATEGORIES:
        errors["category"] = [f"must be one of {', '.join(CATEGORIES)}"]
    cleaned = clean_phrase(phrase or "")
    if not cleaned or not re.search(r"\w", cleaned):
        errors["phrase"] = ["must contain at least one letter or digit"]
    elif len(cleaned) > MAX_PHRASE:
        errors["phrase"] = [f"must be at most {MAX_PHRASE} characters"]
    if errors:
        raise Invalid("The rule cannot be saved.", errors=errors)
    return cleaned


def add_rule(session: DbSession, actor: Any, viewer: Viewer, category: str, phrase: str) -> GuardrailRule:
    """Add a phrase (compliance). The same phrase twice in one category is a 409."""
    require_write(viewer, "guardrail.manage")
    ensure_default_rules(session)
    cleaned = _valid(category, phrase)
    if session.scalar(select(GuardrailRule.id).where(GuardrailRule.category == category,
                                                     func.lower(GuardrailRule.phrase) == cleaned.lower())):
        raise Conflict(f"{cleaned!r} is already a {category} rule.")
    rule = GuardrailRule(category=category, phrase=cleaned, active=True, updated_by_id=getattr(actor, "id", None))
    session.add(rule)
    session.flush()
    audit.record(session, actor, "guardrail.rule.create", "guardrail_rule", rule.id,
                 audit.created({"category": category, "phrase": cleaned}))
    return rule


def set_rule_active(session: DbSession, actor: Any, viewer: Viewer, rule_id: int, active: bool) -> GuardrailRule:
    """Switch a rule on or off (compliance). Rules are deactivated, not deleted: the hits recorded on
    interactions keep pointing at a rule that still exists."""
    require_write(viewer, "guardrail.manage")
    rule = session.get(GuardrailRule, rule_id)
    if rule is None:
        raise NotFound(f"There is no guardrail rule with id {rule_id}.")
    if rule.active != active:
        audit.record(session, actor, "guardrail.rule.update", "guardrail_rule", rule.id,
                     audit.diff({"active": rule.active}, {"active": active}))
        rule.active = active
        rule.updated_by_id = getattr(actor, "id", None)
        session.flush()
    return rule


def all_rules(session: DbSession) -> list[GuardrailRule]:
    ensure_default_rules(session)
    return list(session.scalars(select(GuardrailRule).order_by(GuardrailRule.category, GuardrailRule.phrase)))
