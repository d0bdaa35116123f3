"""Campaigns listen to consent: an unsubscribe through the CRM's own link counts in the campaign's funnel.

The link in a campaign mail is tied to its campaign (the token's reference ``campaign:<id>``). When the HCP
uses it, the withdrawal goes to the consent ledger (source ``email_link``) and, here, an ``unsubscribe``
row joins the campaign's email events (platform type ``crm_link``), next to those the email platform
reports: the funnel and the recipient list count distinct HCPs, so an HCP who unsubscribed both ways
counts once.
"""

from __future__ import annotations

from typing import Any

from crm import signals
from crm.campaigns.models import Campaign, EmailEvent
from crm.db import utcnow

LINK_PLATFORM_TYPE = "crm_link"


def campaign_of(reference: str | None) -> int | None:
    """The campaign id of a link reference ``campaign:<id>`` (``None`` for other senders)."""
    kind, _, value = (reference or "").partition(":")
    return int(value) if kind == "campaign" and value.isdigit() else None


def record_link_unsubscribe(event: Any, *, session: Any, hcp_id: int, reference: str | None, **_: Any) -> None:
    campaign_id = campaign_of(reference)
    if campaign_id is None or session.get(Campaign, campaign_id) is None:
        return
    session.add(EmailEvent(
        sg_event_id=f"crm-link:{event.id}", event_type="unsubscribe", platform_type=LINK_PLATFORM_TYPE,
        occurred_at=event.occurred_at, received_at=utcnow(), hcp_id=hcp_id, campaign_id=campaign_id,
        matched_by="link", raw={"source": "crm", "consent_event_id": event.id},
    ))
    session.flush()


signals.unsubscribed_by_link.connect(record_link_unsubscribe)
