"""The campaign demo data: realistic streams through the real services, and idempotent."""

from __future__ import annotations

from sqlalchemy import func, select

from crm.auth.models import User
from crm.campaigns import services
from crm.campaigns.demo import load_campaign_demo
from crm.campaigns.models import Campaign, EmailEvent
from crm.db import utcnow
from crm.demo import load_demo
from crm.hcps.models import HCP
from crm.timeline.models import Interaction


def test_campaign_demo_builds_two_campaigns_with_event_streams_once(db):
    counts = load_demo(db, say=lambda _m: None, hcps=40)  # crm demo runs the campaign demo too
    users = {u.email: u for u in db.scalars(select(User))}
    hcps = list(db.scalars(select(HCP).order_by(HCP.id)))
    now = utcnow()
    assert counts["campaigns"] == 2 and counts["email_events"] > 0
    campaigns = db.scalars(select(Campaign).order_by(Campaign.id)).all()
    for campaign in campaigns:
        funnel = services.funnel(db, campaign)
        # (the demo's mails are queued in the outbox; they leave once `crm demo` commits)
        assert funnel["queued"] > 0 and funnel["sent"] == funnel["failed"] == 0 and funnel["delivered"] > 0
        assert funnel["audience"] == funnel["queued"] + sum(funnel["skipped"].values())
    # a page of campaigns is counted in one go, with the same figures each campaign has on its own
    assert services.funnels(db, [c.id for c in campaigns]) == {c.id: services.funnel(db, c) for c in campaigns}
    by_hand = {c.id: len(services.audience_hcp_ids(db, c.audience)) for c in campaigns}
    assert {c.id: services.audience_size(db, c.audience) for c in campaigns} == by_hand
    assert db.scalar(select(func.count()).select_from(EmailEvent).where(EmailEvent.hcp_id.is_(None))) == 6
    assert db.scalar(select(func.count()).select_from(Interaction).where(Interaction.kind == "email.delivered")) > 0
    again = load_campaign_demo(db, users, hcps, now)
    assert again == {"consents": 0, "campaigns": 0, "messages": 0, "email_events": 0}
