"""The campaign send job: hands the recipients a send accepted over to the mail outbox, in batches.

``services.send_campaign`` (the request) decided who may be mailed and stored them as ``pending``
``campaign_messages``; this job (kind ``campaign.send``) takes them in batches (``crm.jobs.batches``) and, per
batch, in one transaction: checks consent again at this instant (a recipient who withdrew since the request is
``skipped`` with the rule), renders each mail with its unsubscribe link, records the ``email.sent`` timeline
item, writes the mail to the outbox and marks the recipient ``queued``. The outbox then hands each mail to the
email adapter (a queue task after the commit, and the sweep), checking consent once more, and the recipient
follows it to ``sent`` or ``failed``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm.campaigns.models import Campaign, CampaignMessage
from crm.db import DbSession, among, utcnow
from crm.hcps.models import HCP
from crm.jobs.batches import hand_over_in_batches, lock_pending, start_send
from crm.jobs.services import JobRun, fresh_session
from crm.timeline.services import Fact, record_interactions


def pending_count(session: Session, campaign_id: int) -> int:
    from sqlalchemy import func

    return session.scalar(select(func.count()).select_from(CampaignMessage).where(
        CampaignMessage.campaign_id == campaign_id, CampaignMessage.status == "pending")) or 0


def take_pending(session: DbSession, campaign_id: int, n: int) -> list[int]:
    """The HCP ids of at most ``n`` recipients still pending, locked for this batch."""
    query = (select(CampaignMessage.hcp_id)
             .where(CampaignMessage.campaign_id == campaign_id, CampaignMessage.status == "pending")
             .order_by(CampaignMessage.hcp_id).limit(n))
    return list(session.scalars(lock_pending(session, query)))


def hand_over(session: DbSession, actor: Any, campaign_id: int, hcp_ids: list[int], at: datetime | None) -> None:
    """One batch (see the module), in the caller's transaction."""
    from crm.campaigns.services import SKIP_TEXT, _build_mails, _enqueue, evaluate

    campaign = session.get_one(Campaign, campaign_id)
    template = campaign.template
    when = at or utcnow()
    evaluation = evaluate(session, hcp_ids, template.purpose, when)
    by_rule: dict[str, list[int]] = defaultdict(list)
    for hcp_id, rule in evaluation.skipped:
        by_rule[rule].append(hcp_id)
    for rule, ids in by_rule.items():
        session.execute(update(CampaignMessage).where(
            CampaignMessage.campaign_id == campaign_id, among(session, CampaignMessage.hcp_id, ids),
            CampaignMessage.status == "pending").values(status="skipped", reason=rule,
                                                         detail=SKIP_TEXT.get(rule, rule)[:300])
            .execution_options(synchronize_session=False))
    if not evaluation.send:
        return
    hcps = {h.id: h for h in session.scalars(select(HCP).where(among(session, HCP.id, evaluation.send)))}
    outgoing = _build_mails(session, campaign, template, [hcps[h] for h in evaluation.send])
    messages = {m.hcp_id: m for m in session.scalars(select(CampaignMessage).where(
        CampaignMessage.campaign_id == campaign_id, among(session, CampaignMessage.hcp_id, evaluation.send)))}
    facts = []
    for hcp_id, mail in zip(evaluation.send, outgoing, strict=True):
        message = messages[hcp_id]
        message.status, message.reason, message.detail = "queued", None, None
        message.message_id, message.sent_at = mail.message_id, None
        facts.append(Fact(
            hcp_id=hcp_id, occurred_at=when, kind="email.sent", external_id=f"campaign:{campaign.id}:{hcp_id}",
            summary=f"Campaign email sent: {campaign.name} ({mail.subject})",
            safe_summary=f"Campaign email sent: {campaign.name}",
            details={"purpose": template.purpose, "campaign_id": campaign.id, "campaign_name": campaign.name,
                     "template_id": template.id, "template_version": template.version,
                     "message_id": mail.message_id, "consent_rule": evaluation.decisions[hcp_id].rule},
            products=tuple(template.products or ()), owner_id=actor.id, owner_role=actor.role,
        ))
    session.flush()
    record_interactions(session, actor, facts, channel="email", source="crm")
    _enqueue(session, campaign.id, [(messages[h], mail) for h, mail in zip(evaluation.send, outgoing, strict=True)])


def hand_over_now(session: DbSession, actor: Any, campaign_id: int, at: datetime | None = None) -> int:
    """Hand every pending recipient over in the caller's transaction (the demo loader's replayed sends; the
    CLI). Returns how many. The request path leaves this to the job."""
    ids = take_pending(session, campaign_id, 10**9)
    for start in range(0, len(ids), 5000):
        hand_over(session, actor, campaign_id, ids[start:start + 5000], at)
    return len(ids)


def run_send(run: JobRun) -> dict[str, Any]:
    """The ``campaign.send`` job: every pending recipient of the campaign, in batches; resumable."""
    campaign_id = int(run.params["campaign_id"])
    at = datetime.fromisoformat(run.params["at"]) if run.params.get("at") else None
    actor_id = start_send(run, Campaign, campaign_id, "Campaign", lambda s: pending_count(s, campaign_id))

    def take(session: Session, n: int) -> list[int]:
        return take_pending(session, campaign_id, n)

    def give(session: Session, hcp_ids: list[int]) -> None:
        from crm.auth.models import User

        hand_over(session, session.get_one(User, actor_id), campaign_id, hcp_ids, at)

    handed = hand_over_in_batches(run, take, give)
    with fresh_session() as s:
        from crm.campaigns.services import funnel

        counts = funnel(s, s.get_one(Campaign, campaign_id))
        s.rollback()
    return {"campaign_id": campaign_id, "handed_over_by_this_run": handed,
            "queued": counts["queued"], "sent": counts["sent"], "failed": counts["failed"],
            "skipped": sum(counts["skipped"].values())}
