"""The lexicon (SPEC section 2, principle 5: one vocabulary for code, API, UI and docs).

The terms of SPEC section 3, and the ones issue 12 added (segment, tier, engagement plan, touch...), in
one place in code; the glossary page (``/glossary``) is generated from this list and from the KPI
registry (``crm.insights.kpis``). Each term has an anchor: ``/glossary#term-hcp``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    term: str
    meaning: str

    @property
    def anchor(self) -> str:
        return "term-" + "-".join(self.term.lower().replace("_", "-").split())


TERMS: tuple[Term, ...] = (
    # SPEC section 3
    Term("HCP", "Healthcare professional; the customer. Has a profession (gp, specialist, pharmacist, nurse, "
                "other), specialty, identifiers (e.g. NPI, national registry id), contact points, a territory, "
                "affiliations, and a tier."),
    Term("HCO", "Healthcare organisation: hospital, practice, pharmacy, wholesaler. HCPs are affiliated to HCOs; "
                "orders can be placed for an HCO."),
    Term("territory", "A named set of HCPs that a field rep covers. A rep may cover several; an HCP belongs to one."),
    Term("interaction", "One fact on the timeline: something that happened between the company and one or more "
                        "HCPs (its participants), at one instant, through one channel."),
    Term("channel", "visit, email, event, call centre, order, survey, consent (consent changes are timeline "
                    "facts too)."),
    Term("kind", "The channel-specific sub-type of an item, e.g. an email delivered, opened or clicked, an event "
                 "attended, a medical inquiry to the call centre, a submitted visit (the API names them with "
                 "codes such as the email-delivered kind; the API guide lists them)."),
    Term("source", "The system an interaction came from: crm (typed in here), esp (email platform), "
                   "the event platform, the call-centre system, the ERP, an import."),
    Term("sensitivity", "standard, medical (medical-information content), pv (pharmacovigilance: adverse event)."),
    Term("consent", "Permission from one HCP for one (channel, purpose) pair."),
    Term("purpose", "promotional, medical_information, events, market_research."),
    Term("notice", "A versioned consent text shown to the HCP; every consent event names the notice version it "
                   "was given under."),
    Term("redacted", "An interaction that the viewer may know exists but whose content is withheld, with the "
                     "reason."),
    # issue 12: engagement planning
    Term("tier", "The priority of an HCP for the field force and marketing: A (highest), B or C."),
    Term("segment", "A saved HCP filter (professions, specialties, territories, tags, tiers) that campaigns, "
                    "engagement plans and insights use; who it holds is worked out when it is read."),
    Term("engagement plan", "A cycle plan: a cycle (first and last day, e.g. a quarter), a scope (a segment "
                            "and/or territories), goals per HCP per channel, optional goals per product, and a "
                            "target list of HCPs with goals of their own."),
    Term("cycle", "The period of an engagement plan, from its first to its last day (inclusive, UTC)."),
    Term("target list", "HCPs named on an engagement plan, each optionally with own goals per channel; they are "
                        "on the plan whatever its scope."),
    Term("goal", "Planned touches per HCP on one channel (or for one product on one channel) in a cycle."),
    Term("touch", "A contact the company made with an HCP that counts toward a plan; what counts per channel is "
                  "the touch table on this page."),
)
TERM_BY_ANCHOR: dict[str, Term] = {t.anchor: t for t in TERMS}
