"""The visibility policy (SPEC section 4). Pure functions: no database, no request, no globals.

Everything that decides what a person may see or write asks this module; nothing else decides.
Each decision carries the rule that applied and a sentence a user can read ("why can I see this?").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from crm.errors import Forbidden


class Role(StrEnum):
    FIELD_REP = "field_rep"
    MARKETER = "marketer"
    CALL_CENTRE = "call_centre"
    MEDICAL = "medical"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


ROLES: tuple[str, ...] = tuple(r.value for r in Role)
SENSITIVITIES: tuple[str, ...] = ("standard", "medical", "pv")

ROLE_LABELS = {
    "field_rep": "Field force",
    "marketer": "Marketing",
    "call_centre": "Call centre",
    "medical": "Medical Affairs",
    "compliance": "Compliance",
    "admin": "Administration",
    "system": "Integration",
}


class Level(StrEnum):
    FULL = "full"  # everything
    SUMMARY = "summary"  # a safe summary written for that purpose, no free text
    EXISTENCE = "existence"  # date, channel, kind, owning role, and why the rest is withheld
    HIDDEN = "hidden"  # never used for timeline items: a contact that happened is never invisible


@dataclass(frozen=True)
class Viewer:
    """What the policy needs to know about the person asking: role and *current* territories."""

    user_id: int
    role: str
    territory_ids: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str
    reason: str
    level: Level = Level.FULL


_MEDICAL_ONLY = "Details restricted to Medical Affairs"
_PV_ONLY = "Details restricted to Pharmacovigilance"

# role x sensitivity -> (level, rule, reason). One row per role; a test per cell.
VISIBILITY: dict[str, dict[str, tuple[Level, str, str]]] = {
    "field_rep": {
        "standard": (Level.FULL, "share-by-default", "Shared with every internal user"),
        "medical": (Level.EXISTENCE, "medical-firewall", _MEDICAL_ONLY),
        "pv": (Level.EXISTENCE, "pv-restricted", _PV_ONLY),
    },
    "marketer": {
        "standard": (Level.FULL, "share-by-default", "Shared with every internal user"),
        "medical": (Level.EXISTENCE, "medical-firewall", _MEDICAL_ONLY),
        "pv": (Level.EXISTENCE, "pv-restricted", _PV_ONLY),
    },
    "call_centre": {
        "standard": (Level.FULL, "share-by-default", "Shared with every internal user"),
        "medical": (Level.FULL, "medical-information-role", "Call centre handles medical information"),
        "pv": (Level.FULL, "pv-intake-role", "Call centre takes adverse-event reports"),
    },
    "medical": {
        "standard": (Level.FULL, "share-by-default", "Shared with every internal user"),
        "medical": (Level.FULL, "medical-affairs-role", "Medical Affairs owns medical content"),
        "pv": (Level.FULL, "pv-medical-role", "Medical Affairs reviews adverse events"),
    },
    "compliance": {
        "standard": (Level.FULL, "share-by-default", "Shared with every internal user"),
        "medical": (Level.FULL, "compliance-oversight", "Compliance reviews everything"),
        "pv": (Level.FULL, "compliance-oversight", "Compliance reviews everything"),
    },
    "admin": {
        "standard": (Level.FULL, "share-by-default", "Shared with every internal user"),
        "medical": (Level.FULL, "admin-oversight", "Administrators see everything"),
        "pv": (Level.FULL, "admin-oversight", "Administrators see everything"),
    },
}

# Roles that see superseded (corrected) items next to their corrections.
SEES_SUPERSEDED = frozenset({"compliance", "admin"})

# Reads of these sensitivities at full level are logged for compliance.
LOGGED_SENSITIVITIES = frozenset({"medical", "pv"})


def item_decision(viewer: Viewer, sensitivity: str) -> Decision:
    """How much of one timeline item ``viewer`` may see, and why."""
    try:
        level, rule, reason = VISIBILITY[viewer.role][sensitivity]
    except KeyError:
        # Unknown role or sensitivity: the safest level that still shows the contact happened.
        return Decision(True, "unknown-defaults-to-existence", "Details restricted", Level.EXISTENCE)
    return Decision(True, rule, reason, level)


_CONTACT_CLEAR_ROLES = frozenset({"call_centre", "medical", "compliance", "admin"})


def contact_data_decision(viewer: Viewer, hcp_territory_id: int | None) -> Decision:
    """Clear or masked contact data (email, phone, address line) for one HCP."""
    if viewer.role in _CONTACT_CLEAR_ROLES:
        return Decision(True, "contact-data-role", f"{ROLE_LABELS[viewer.role]} sees contact data")
    if viewer.role == "field_rep" and hcp_territory_id is not None and hcp_territory_id in viewer.territory_ids:
        return Decision(True, "contact-data-own-territory", "The HCP is in one of your territories")
    if viewer.role == "field_rep":
        return Decision(False, "contact-data-outside-territory", "Contact data is masked outside your territories")
    return Decision(False, "contact-data-masked", "Contact data is masked for your role")


def can_see_consent_evidence(viewer: Viewer) -> Decision:
    if viewer.role in ("compliance", "admin"):
        return Decision(True, "consent-evidence-oversight", "Compliance and administrators see consent evidence")
    return Decision(False, "consent-evidence-restricted", "Consent evidence is restricted to Compliance")


# action -> (roles allowed, roles that are limited to their own territories)
WRITE_RULES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "hcp.create": (frozenset({"admin", "field_rep"}), frozenset({"field_rep"})),
    "hcp.update": (frozenset({"admin", "field_rep"}), frozenset({"field_rep"})),
    "hcp.merge": (frozenset({"admin"}), frozenset()),
    "visit.create": (frozenset({"field_rep", "medical"}), frozenset({"field_rep"})),
    "call_centre.contact": (frozenset({"call_centre"}), frozenset()),
    "consent.capture": (frozenset({"field_rep", "call_centre", "admin"}), frozenset({"field_rep"})),
    "consent.review": (frozenset({"compliance"}), frozenset()),
    "template.write": (frozenset({"marketer"}), frozenset()),
    "template.approve": (frozenset({"compliance"}), frozenset()),
    "campaign.write": (frozenset({"marketer"}), frozenset()),
    "event.write": (frozenset({"marketer", "medical"}), frozenset()),
    "order.write": (frozenset({"field_rep"}), frozenset({"field_rep"})),
    "user.manage": (frozenset({"admin"}), frozenset()),
    "territory.manage": (frozenset({"admin"}), frozenset()),
    "product.manage": (frozenset({"admin"}), frozenset()),
    "audit.read": (frozenset({"compliance", "admin"}), frozenset()),
    "sensitive_log.read": (frozenset({"compliance", "admin"}), frozenset()),
    "notice.manage": (frozenset({"admin"}), frozenset()),
    "consent.report": (frozenset({"compliance", "admin"}), frozenset()),
    "hcp.erase": (frozenset({"admin"}), frozenset()),
    # events and the call centre (issue 5)
    "transfer.write": (frozenset({"marketer", "medical"}), frozenset()),
    "transfer_cap.manage": (frozenset({"admin"}), frozenset()),
    "transparency_report.read": (frozenset({"compliance", "admin"}), frozenset()),
    "medical_inquiry.answer": (frozenset({"medical"}), frozenset()),
    "adverse_event.open": (frozenset({"call_centre", "medical"}), frozenset()),
    "adverse_event.close": (frozenset({"call_centre", "medical"}), frozenset()),
    "adverse_event.queue": (frozenset({"medical", "compliance", "call_centre", "admin"}), frozenset()),
    "medical_inquiry.queue": (frozenset({"medical", "compliance", "call_centre", "admin"}), frozenset()),
    "guardrail.manage": (frozenset({"compliance"}), frozenset()),
    # orders (issue 6): re-arming an ERP outbox message that failed
    "erp_outbox.manage": (frozenset({"admin"}), frozenset()),
    # master data (issue 7): imports, duplicate review, data-subject exports
    "masterdata.import": (frozenset({"admin"}), frozenset()),
    "hcp.export": (frozenset({"admin", "compliance"}), frozenset()),
    # surveys (issue 12): marketing writes and sends them; an answer given in a conversation is captured by
    # the call centre, or by a rep for an HCP of their own territories
    "survey.write": (frozenset({"marketer"}), frozenset()),
    "survey.capture": (frozenset({"call_centre", "field_rep"}), frozenset({"field_rep"})),
    # segments and engagement plans (issue 12): the home office plans, everyone reads the results
    "segment.write": (frozenset({"marketer"}), frozenset()),
    "plan.write": (frozenset({"marketer"}), frozenset()),
    # sample accountability (issue 14): SPEC section 4 has no sample-manager role, so administrators (who
    # keep products and lots) ship samples to reps; reps transfer and count their own; compliance reviews.
    "sample.ship": (frozenset({"admin"}), frozenset()),
    "sample.transfer": (frozenset({"field_rep"}), frozenset()),
    "sample.count": (frozenset({"field_rep"}), frozenset()),
    "sample.oversight": (frozenset({"compliance", "admin"}), frozenset()),
    "sample.discrepancy.review": (frozenset({"compliance"}), frozenset()),
    # KOL profiles and speaker qualifications (issue 14): Medical Affairs and the data steward
    "kol.write": (frozenset({"medical", "admin"}), frozenset()),
    "speaker.qualify": (frozenset({"medical", "admin"}), frozenset()),
    # planned visits (issue 14 item 5): whoever logs visits plans them, a rep for own territories only
    "visit_plan.write": (frozenset({"field_rep", "medical"}), frozenset({"field_rep"})),
}


def write_decision(viewer: Viewer, action: str, hcp_territory_ids: Iterable[int | None] = ()) -> Decision:
    """May ``viewer`` do ``action``, for HCPs in ``hcp_territory_ids`` (all must be covered)?"""
    allowed_roles, territorial = WRITE_RULES[action]
    if viewer.role not in allowed_roles:
        roles = ", ".join(sorted(allowed_roles))
        return Decision(False, f"{action}:role", f"Only {roles} may do {action}")
    if viewer.role in territorial:
        for tid in hcp_territory_ids:
            if tid is None or tid not in viewer.territory_ids:
                return Decision(
                    False, f"{action}:territory", f"{action} is limited to HCPs in your own territories"
                )
    return Decision(True, f"{action}:allowed", "Allowed")


def require_write(viewer: Viewer, action: str, hcp_territory_ids: Iterable[int | None] = ()) -> Decision:
    """``write_decision`` that raises ``Forbidden`` (403, rule in the body) when refused."""
    decision = write_decision(viewer, action, hcp_territory_ids)
    if not decision.allowed:
        raise Forbidden(decision.reason, rule=decision.rule)
    return decision


def plan_read_decision(viewer: Viewer, plan_territory_ids: Iterable[int]) -> Decision:
    """May ``viewer`` read an engagement plan scoped to ``plan_territory_ids`` (empty: every territory)?

    Everyone reads plans and their attainment (aggregate KPIs are shared); a field rep reads the plans of
    own territories: a plan that names territories must name one the rep covers now.
    """
    territories = set(plan_territory_ids)
    if viewer.role != "field_rep":
        return Decision(True, "plan.read:shared", "Plans and their attainment are shared with every internal user")
    if not territories:
        return Decision(True, "plan.read:all-territories", "The plan covers every territory, yours included")
    if territories & viewer.territory_ids:
        return Decision(True, "plan.read:own-territory", "The plan covers one of your territories")
    return Decision(False, "plan.read:territory", "A field rep reads the plans of own territories only")


def require_plan_read(viewer: Viewer, plan_territory_ids: Iterable[int]) -> Decision:
    """``plan_read_decision`` that raises ``Forbidden`` (403, rule in the body) when refused."""
    decision = plan_read_decision(viewer, plan_territory_ids)
    if not decision.allowed:
        raise Forbidden(decision.reason, rule=decision.rule)
    return decision


def visit_plan_read_decision(viewer: Viewer, owner_id: int, hcp_territory_id: int | None) -> Decision:
    """May ``viewer`` read a planned visit of ``owner_id`` for an HCP in ``hcp_territory_id``?

    A field rep reads own plans and the plans of the team, i.e. for HCPs of own territories (the team week);
    every other role reads every plan. What a plan's objective shows is then decided by its sensitivity,
    through the one read path (``crm.access.reads``).
    """
    if viewer.role != "field_rep":
        return Decision(True, "visit_plan.read:shared", "Planned visits are shared with every internal user")
    if viewer.user_id == owner_id:
        return Decision(True, "visit_plan.read:owner", "You planned this visit")
    if hcp_territory_id is not None and hcp_territory_id in viewer.territory_ids:
        return Decision(True, "visit_plan.read:own-territory", "The HCP is in one of your territories")
    return Decision(False, "visit_plan.read:territory",
                    "A field rep reads own plans and the plans for HCPs of own territories only")


def team_week_decision(viewer: Viewer, territory_id: int) -> Decision:
    """May ``viewer`` see the team's planned week of territory ``territory_id``? A field rep: own territories."""
    if viewer.role != "field_rep":
        return Decision(True, "visit_plan.team:shared", "Planned visits are shared with every internal user")
    if territory_id in viewer.territory_ids:
        return Decision(True, "visit_plan.team:own-territory", "You cover this territory")
    return Decision(False, "visit_plan.team:territory", "A field rep sees the team week of own territories only")


def owner_decision(
    viewer: Viewer, owner_id: int | None, action: str, delegate_roles: frozenset[str] = frozenset()
) -> Decision:
    """May ``viewer`` do ``action`` on a record owned by ``owner_id`` (a draft, a submitted visit)?

    The owner may; so may ``delegate_roles`` (e.g. Medical Affairs amending a medical visit).
    """
    if owner_id is not None and viewer.user_id == owner_id:
        return Decision(True, f"{action}:owner-allowed", "You own this record")
    if viewer.role in delegate_roles:
        return Decision(True, f"{action}:{viewer.role}", f"{ROLE_LABELS[viewer.role]} may do {action}")
    return Decision(False, f"{action}:owner", f"Only the owner may do {action}")


def require_owner(
    viewer: Viewer, owner_id: int | None, action: str, delegate_roles: frozenset[str] = frozenset()
) -> Decision:
    """``owner_decision`` that raises ``Forbidden`` (403, rule in the body) when refused."""
    decision = owner_decision(viewer, owner_id, action, delegate_roles)
    if not decision.allowed:
        raise Forbidden(decision.reason, rule=decision.rule)
    return decision


def mask_email(value: str | None) -> str | None:
    """``john@hospital.org`` -> ``j***@h***.org``."""
    if not value:
        return value
    local, _, domain = value.partition("@")
    if not domain:
        return (local[:1] or "*") + "***"
    host, dot, tld = domain.rpartition(".")
    if not dot:
        host, tld = domain, ""
    return f"{local[:1]}***@{host[:1]}***{('.' + tld) if tld else ''}"


def mask_phone(value: str | None) -> str | None:
    """Every digit but the last two becomes ``*``."""
    if not value:
        return value
    digits = sum(c.isdigit() for c in value)
    out, seen = [], 0
    for c in value:
        if c.isdigit():
            seen += 1
            out.append(c if seen > digits - 2 else "*")
        else:
            out.append(c)
    return "".join(out)


def mask_address(value: str | None) -> str | None:
    if not value:
        return value
    return value[:1] + "***"
