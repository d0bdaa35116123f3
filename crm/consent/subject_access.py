"""The data-subject access answer (GDPR Art. 15) that an HCP downloads through the link mailed to them.

This is what the company hands to the person themselves, not the staff's full export
(``crm.hcps.export``, compliance and admin). It holds:

- the HCP's own personal data: names, profession, specialty, contact data in clear, address, identifiers,
  affiliations (organisation, role, dates), the territory they are assigned to, merged duplicate records;
- their consent: the current state per channel and purpose, and every ledger event (when, what, source,
  notice version and text hash, validity, the role that captured it) with the evidence captured from them
  (signature, IP address, user agent, form or recording reference), but no internal staff note;
- every interaction on their timeline: date, channel, kind, source, the department (role) that owned it,
  products, and the safe summary written for sharing; no other HCP who took part, no staff names or ids;
- medical-information and pharmacovigilance (adverse-event) records only as a statement that such a
  record exists, its date and category, and how to ask for its content: the narrative is medical and
  safety data reviewed before release (it may name other people, and pharmacovigilance records follow
  their own legal retention and disclosure rules);
- transfers of value made to them (date, kind, amount, currency, event).

Left out: staff ids and names, other HCPs, internal free text (visit notes, call summaries, review
notes), blind indexes and digests (keyed hashes, meaningless outside), link tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import current_app
from sqlalchemy import select

from crm.consent.models import ConsentEvent
from crm.consent.services import current_states, read_evidence
from crm.db import DbSession, iso_z, utcnow
from crm.hcps.export import json_value
from crm.hcps.models import HCP, Affiliation, HCPIdentifier

FORMAT = "pharma-crm/data-subject-access/1"
# Evidence fields that were captured from the HCP (``note`` is a staff member's remark: internal).
_OWN_EVIDENCE = ("signature", "form_id", "recording_id", "ip_address", "user_agent", "reference", "event_id")
RESTRICTED = {
    "medical": "medical information",
    "pv": "pharmacovigilance (adverse-event report)",
}


def how_to_ask() -> str:
    company = current_app.config.get("CRM_COMPANY_NAME") or "the company"
    return (f"To receive the content of a restricted record, or if anything here is wrong, write to the data "
            f"protection officer of {company} and name the record's date and category.")


def _profile(hcp: HCP) -> dict[str, Any]:
    return {
        "first_name": hcp.first_name, "last_name": hcp.last_name, "profession": hcp.profession,
        "specialty": hcp.specialty, "email": hcp.email, "phone": hcp.phone, "address_line": hcp.address_line,
        "postal_code": hcp.postal_code, "city": hcp.city, "state": hcp.state, "country": hcp.country,
        "status": hcp.status, "email_status": hcp.email_status, "segments": [
            t.strip() for t in (hcp.tags or "").split(",") if t.strip()],
        "territory": hcp.territory.name if hcp.territory else None,
        "record_created_at": json_value(hcp.created_at), "record_updated_at": json_value(hcp.updated_at),
    }


def _ledger(events: Iterable[ConsentEvent]) -> list[dict[str, Any]]:
    out = []
    for e in events:
        evidence = read_evidence(e) if e.evidence else {}
        out.append({
            "occurred_at": json_value(e.occurred_at), "recorded_at": json_value(e.recorded_at), "event": e.event_type,
            "channel": e.channel, "purpose": e.purpose, "source": e.source, "captured_by_role": e.captured_by_role,
            "notice_version": e.notice_version, "notice_text_hash": e.notice_text_hash,
            "valid_until": json_value(e.valid_until),
            "evidence": {k: v for k, v in evidence.items() if k in _OWN_EVIDENCE},
        })
    return out


def _interactions(session: DbSession, hcp_id: int) -> list[dict[str, Any]]:
    from crm.timeline.models import Interaction, InteractionParticipant, InteractionProduct

    rows = session.execute(
        select(Interaction).join(InteractionParticipant, InteractionParticipant.interaction_id == Interaction.id)
        .where(InteractionParticipant.hcp_id == hcp_id, Interaction.superseded_by_id.is_(None))
        .order_by(Interaction.occurred_at, Interaction.id)).scalars().all()
    products: dict[int, list[str]] = {}
    if rows:
        for interaction_id, sku in session.execute(
                select(InteractionProduct.interaction_id, InteractionProduct.sku)
                .where(InteractionProduct.interaction_id.in_([r.id for r in rows]))
                .order_by(InteractionProduct.interaction_id, InteractionProduct.sku)):
            products.setdefault(interaction_id, []).append(sku)
    out = []
    for r in rows:
        item: dict[str, Any] = {"occurred_at": json_value(r.occurred_at), "channel": r.channel, "kind": r.kind,
                                "source": r.source, "department": r.owner_role}
        category = RESTRICTED.get(r.sensitivity)
        if category is None:
            item.update({"summary": r.safe_summary or r.kind.replace(".", " ").replace("_", " "),
                         "products": products.get(r.id, [])})
        else:
            item.update({"restricted": category,
                         "statement": f"A {category} record of this date exists. Its content is not part of this "
                                      "download. " + how_to_ask()})
        out.append(item)
    return out


def _transfers(session: DbSession, hcp_id: int) -> list[dict[str, Any]]:
    from crm.events.models import TransferOfValue

    rows = session.scalars(select(TransferOfValue).where(TransferOfValue.hcp_id == hcp_id)
                           .order_by(TransferOfValue.paid_on, TransferOfValue.id)).all()
    return [{"paid_on": json_value(t.paid_on), "kind": t.kind, "amount": json_value(t.amount), "currency": t.currency,
             "event": t.event.name if t.event else None} for t in rows]


def subject_access_export(session: DbSession, hcp: HCP) -> dict[str, Any]:
    """The Art. 15 answer for ``hcp`` (see the module docstring for what is in it and what is not)."""
    identifiers = session.scalars(select(HCPIdentifier).where(HCPIdentifier.hcp_id == hcp.id)
                                  .order_by(HCPIdentifier.kind, HCPIdentifier.id)).all()
    affiliations = session.scalars(select(Affiliation).where(Affiliation.hcp_id == hcp.id)
                                   .order_by(Affiliation.valid_from, Affiliation.id)).all()
    merged = session.scalars(select(HCP).where(HCP.merged_into_id == hcp.id).order_by(HCP.id)).all()
    events = session.scalars(select(ConsentEvent).where(ConsentEvent.hcp_id == hcp.id)
                             .order_by(ConsentEvent.occurred_at, ConsentEvent.id)).all()
    interactions = _interactions(session, hcp.id)
    return {
        "format": FORMAT,
        "generated_at": iso_z(utcnow()),
        "about": "A copy of the personal data we hold about you (GDPR Art. 15). Restricted records are listed "
                 "by date and category only. " + how_to_ask(),
        "you": _profile(hcp),
        "identifiers": [{"kind": i.kind, "value": i.value} for i in identifiers],
        "affiliations": [{"organisation": a.hco.name, "kind": a.hco.kind, "city": a.hco.city, "role": a.role,
                          "valid_from": json_value(a.valid_from), "valid_to": json_value(a.valid_to)}
                         for a in affiliations],
        "merged_records": [{"first_name": m.first_name, "last_name": m.last_name, "email": m.email,
                            "phone": m.phone, "merged_at": json_value(m.updated_at)} for m in merged],
        "consents": {
            "current": [{"channel": s.channel, "purpose": s.purpose, "state": s.state, "since": json_value(s.since),
                         "valid_until": json_value(s.valid_until)}
                        for s in current_states(session, hcp.id) if s.state != "none"],
            "history": _ledger(events),
        },
        "interactions": interactions,
        "restricted_records": sum(1 for i in interactions if "restricted" in i),
        "transfers_of_value": _transfers(session, hcp.id),
    }
