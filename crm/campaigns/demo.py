"""Demo data for email campaigns: consents, two approved templates, two sent campaigns, and the email
platform's events for them (delivered, opens, clicks, bounces, unsubscribes, a spam report, a few
unmatched), fed through the same ingest service as the webhook. Idempotent: campaigns are found by
name and event ids are deterministic, so a second run adds nothing.

``crm.demo`` calls ``load_campaign_demo(session, users, hcps, now)``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from crm.auth.services import viewer_for
from crm.campaigns import services
from crm.campaigns.engagement import IncomingEmailEvent, ingest_events
from crm.campaigns.models import Campaign, CampaignMessage, EmailTemplate
from crm.campaigns.sending import hand_over_now
from crm.db import DbSession
from crm.hcps.models import HCP

MARKETER = "marketer@demo.example"
COMPLIANCE = "compliance@demo.example"

TEMPLATES = [
    {"name": "Heart Failure Round Table invitation", "purpose": "events", "products": ["CARD-10", "CARD-20"],
     "subject": "Dr {{ hcp.last_name }}, join our Heart Failure Round Table",
     "html_body": "<p>Dear Dr {{ hcp.last_name }},</p><p>We would be delighted to welcome you to our round table "
                  "on heart failure management in {{ hcp.city }}, with case discussions led by your peers.</p>"
                  '<p><a href="https://pharma.example/events/hf-round-table">See the programme and register</a></p>',
     "text_body": "Dear Dr {{ hcp.last_name }},\n\nWe would be delighted to welcome you to our round table on heart "
                  "failure management in {{ hcp.city }}.\nProgramme and registration: "
                  "https://pharma.example/events/hf-round-table\n"},
    {"name": "Cardiozol prescriber experience survey", "purpose": "market_research", "products": ["CARD-10"],
     "subject": "Five minutes on your experience with Cardiozol",
     "html_body": "<p>Dear Dr {{ hcp.last_name }},</p><p>As a {{ hcp.specialty }} colleague, your experience "
                  "matters. Our five-minute survey helps us improve patient support.</p>"
                  '<p><a href="https://pharma.example/surveys/cardiozol-2026">Take the survey</a></p>',
     "text_body": "Dear Dr {{ hcp.last_name }},\n\nOur five-minute survey: https://pharma.example/surveys/"
                  "cardiozol-2026\n"},
]
CAMPAIGNS = [
    # (name, template index, audience criteria, days ago sent)
    ("HF Round Table - spring invitations", 0, {"professions": ["gp", "specialist"]}, 21),
    ("Cardiozol survey - KOLs and high potentials", 1, {"tags": ["kol", "high-potential"]}, 6),
]


def _consents(session: DbSession, hcps: Sequence[HCP], rnd: random.Random, now: datetime) -> int:
    """Email consents given on paper forms months ago (promotional also confirmed through the double opt-in
    link), only where an HCP has said nothing yet for that purpose."""
    from crm.consent import services as consent
    from crm.consent.models import ConsentToken

    notice = consent.active_notice(session, "en")
    if notice is None:
        notice = consent.activate_notice(session, None, consent.create_notice(
            session, None, language="en", title="Contact consent",
            text="We may contact you by email about our events, research and products. You can withdraw at any "
                 "time with one click in any email."))
    given = 0
    ids = [h.id for h in hcps if h.email]
    for purpose, share in (("events", 0.75), ("market_research", 0.6), ("promotional", 0.5)):
        states = consent.can_contact_many(session, ids, "email", purpose, now)
        for hcp in hcps:
            # The same HCPs say yes on every run, so a second run finds them and adds nothing.
            says_yes = random.Random(f"{hcp.id}:{purpose}").random() <= share  # noqa: S311  (demo data)
            if not hcp.email or states[hcp.id].state != "none" or not says_yes:
                continue
            event, _ = consent.grant_consent(
                session, None, hcp, "email", purpose, "paper_form", notice_version=notice.version,
                evidence={"form_id": f"PF-DEMO-{hcp.id:05d}"},
                occurred_at=now - timedelta(days=rnd.randint(90, 300)))
            if event.event_type == "requested":
                token = session.scalar(select(ConsentToken).where(ConsentToken.event_id == event.id,
                                                                  ConsentToken.purpose == "confirm"))
                if token is not None:
                    consent.confirm(session, token, ip_address="198.51.100.20", user_agent="Demo mail client")
            given += 1
    return given


def _stream(campaign_id: int, hcp_id: int, sent_at: datetime, rnd: random.Random, now: datetime
            ) -> list[IncomingEmailEvent]:
    """What a platform reports for one message: processed, then delivered or bounced, opens, clicks..."""
    out: list[IncomingEmailEvent] = []
    t = sent_at + timedelta(seconds=rnd.randint(5, 90))

    def add(kind: str, when: datetime, **extra: Any) -> None:
        if when > now:
            return
        n = len(out)
        out.append(IncomingEmailEvent(
            sg_event_id=f"demo-{campaign_id}-{hcp_id}-{n}", platform_type=kind, occurred_at=when, hcp_id=hcp_id,
            campaign_id=campaign_id, raw={"event": kind, "demo": True}, **extra))

    add("processed", t)
    roll = rnd.random()
    if roll < 0.03:
        add("bounce", t + timedelta(seconds=30), bounce_type="bounce", reason="550 5.1.1 The email account that "
            "you tried to reach does not exist")
        return out
    if roll < 0.08:
        add("deferred", t + timedelta(minutes=5), reason="421 4.7.0 Try again later")
        t += timedelta(hours=1)
    t += timedelta(seconds=rnd.randint(2, 60))
    add("delivered", t)
    if rnd.random() < 0.45:
        opened = t + timedelta(hours=rnd.randint(1, 72))
        add("open", opened)
        if rnd.random() < 0.3:
            add("open", opened + timedelta(days=rnd.randint(1, 4)))
        if rnd.random() < 0.3:
            add("click", opened + timedelta(minutes=rnd.randint(1, 20)), url="https://pharma.example/more")
        if rnd.random() < 0.05:
            add("unsubscribe", opened + timedelta(minutes=rnd.randint(1, 30)))
    elif rnd.random() < 0.01:
        add("spamreport", t + timedelta(hours=rnd.randint(1, 48)))
    return out


def load_campaign_demo(session: DbSession, users: Mapping[str, Any], hcps: Sequence[HCP], now: datetime
                       ) -> dict[str, int]:
    """Load the campaign demo for ``hcps``; ``users`` maps the demo users' emails to users."""
    rnd = random.Random(4242)  # noqa: S311  (demo data, not security)
    counts = {"consents": 0, "campaigns": 0, "messages": 0, "email_events": 0}
    marketer, compliance = users[MARKETER], users[COMPLIANCE]
    m_viewer, c_viewer = viewer_for(session, marketer), viewer_for(session, compliance)
    counts["consents"] = _consents(session, hcps, rnd, now)
    templates = []
    for spec in TEMPLATES:
        template = session.scalar(select(EmailTemplate).where(EmailTemplate.name == spec["name"])
                                  .order_by(EmailTemplate.version.desc()).limit(1))
        if template is None:
            template = services.create_template(session, marketer, m_viewer, {**spec, "language": "en"})
            services.approve_template(session, compliance, c_viewer, template)
        templates.append(template)
    for name, index, criteria, days_ago in CAMPAIGNS:
        if session.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
            continue
        campaign = services.create_campaign(session, marketer, m_viewer, {
            "name": name, "template_id": templates[index].id, "audience": criteria})
        sent_at = now - timedelta(days=days_ago)
        result = services.send_campaign(session, marketer, m_viewer, campaign, at=sent_at)
        # The demo replays a send of the past: hand the recipients over now, in this transaction (the send's
        # job then finds nobody pending and ends at once).
        hand_over_now(session, marketer, campaign.id, sent_at)
        counts["campaigns"] += 1
        counts["messages"] += len(result.sent)
        sent = session.scalars(select(CampaignMessage.hcp_id).where(
            CampaignMessage.campaign_id == campaign.id, CampaignMessage.status.in_(("pending", "queued", "sent")))
            .order_by(CampaignMessage.hcp_id)).all()
        events = [e for hcp_id in sent for e in _stream(campaign.id, hcp_id, sent_at, rnd, now)]
        # forwarded mail and an old address: the platform reports addresses that match no HCP
        for n in range(3):
            events.append(IncomingEmailEvent(
                sg_event_id=f"demo-{campaign.id}-unmatched-{n}", platform_type="open",
                occurred_at=sent_at + timedelta(days=1, hours=n), email=f"forwarded.colleague{n}@clinic-mail.example",
                raw={"event": "open", "demo": True}))
        events.sort(key=lambda e: e.occurred_at)
        for start in range(0, len(events), 500):
            counts["email_events"] += ingest_events(session, events[start:start + 500]).recorded
    return counts
