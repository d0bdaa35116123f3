"""Erasure (GDPR Art. 17): pseudonymise an HCP's personal data everywhere, keep the consent ledger's proof.

The ledger rows are never touched (they cannot be: triggers refuse it). They keep dates, channels,
purposes, notice versions and text hashes, and hashes of the evidence: what is needed to prove what the
company was allowed to do. The HCP record itself loses names, contact data and identifiers; open
consent links stop working.
"""

from __future__ import annotations

from typing import Any

from crm.access.policy import require_write
from crm.audit import services as audit
from crm.consent import tokens
from crm.db import DbSession
from crm.errors import Conflict, Invalid
from crm.hcps.models import HCP, HCP_PERSONAL_FIELDS
from crm.mail.services import forget_hcp

ERASED_NAME = "Erased"
_NAMES = ("first_name", "last_name")  # required columns: replaced by a placeholder, not emptied
_PERSONAL = tuple(f for f in HCP_PERSONAL_FIELDS if f not in _NAMES)


def erase_hcp(session: DbSession, actor: Any, hcp: HCP, reason: str) -> HCP:
    """Pseudonymise ``hcp`` (admin, or the CLI as ``actor=None``); ``reason`` is kept in the audit trail."""
    if actor is not None:
        from crm.auth.services import viewer_for

        require_write(viewer_for(session, actor), "hcp.erase")
    if not reason or not reason.strip():
        raise Invalid("Erasure needs a reason.", errors={"reason": ["must not be empty"]})
    if hcp.status == "erased":
        raise Conflict(f"HCP {hcp.id} is already erased.")
    # The audit trail is permanent, so it names the fields that were erased, never their values (and it
    # never held them in clear: crm.audit.services withholds the HCP's personal fields in every record).
    fields = [*_NAMES, *(f for f in _PERSONAL if getattr(hcp, f) is not None)]
    identifier_kinds = sorted(i.kind for i in hcp.identifiers)
    previous_status = hcp.status
    for name in _NAMES:
        setattr(hcp, name, ERASED_NAME)
    for name in _PERSONAL:
        setattr(hcp, name, None)
    hcp.email_bidx = None
    hcp.status = "erased"
    hcp.identifiers.clear()
    session.flush()
    revoked = tokens.revoke_all(session, hcp.id)
    mail_cleared = forget_hcp(session, hcp.id)
    changes = {
        "erased_fields": fields,
        "identifiers_removed": identifier_kinds,
        "status": {"before": previous_status, "after": "erased"},
        "consent_links_revoked": revoked,
        "outbox_mails_cleared": mail_cleared,
    }
    audit.record(session, actor, "hcp.erase", "hcp", hcp.id, changes, reason=reason.strip())
    return hcp

