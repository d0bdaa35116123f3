"""Demo data for surveys: one NPS survey after the demo's heart-failure round table, sent to HCPs of the
campaign demo (those with market-research consent get it, the others are skipped with the reason), and
answered by a handful of them through their links over the following weeks, so that the results, the
breakdowns and the timeline items are meaningful. Idempotent: the survey is found by name.

``crm.demo`` calls ``load_survey_demo(session, users, hcps, now)`` after the campaign demo.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from crm.auth.services import viewer_for
from crm.consent import tokens
from crm.db import DbSession
from crm.hcps.models import HCP
from crm.surveys import services
from crm.surveys.models import Survey, SurveyRecipient
from crm.surveys.sending import hand_over_now

MARKETER = "marketer@demo.example"
NAME = "Heart Failure Round Table - how likely would you recommend it?"
# (score, comment) of the HCPs who answer, in the order of the recipients.
ANSWERS = [(10, "Excellent case discussions, very practical."), (9, None), (9, "Good speakers."), (8, None),
           (7, "A bit long; shorter sessions please."), (10, None), (6, "Too promotional for my taste."),
           (9, "Would attend again."), (3, "The venue was hard to reach."), (10, None), (8, "Useful."),
           (9, None)]


def load_survey_demo(session: DbSession, users: Mapping[str, Any], hcps: Sequence[HCP], now: datetime
                     ) -> dict[str, int]:
    """Load the survey demo for ``hcps``; ``users`` maps the demo users' emails to users."""
    counts = {"surveys": 0, "survey_mails": 0, "survey_answers": 0}
    if session.scalar(select(Survey.id).where(Survey.name == NAME)) is not None or not hcps:
        return counts
    from crm.events.models import Event

    marketer = users[MARKETER]
    viewer = viewer_for(session, marketer)
    event_id = session.scalar(select(Event.id).order_by(Event.starts_at.desc()).limit(1))
    survey = services.create_survey(session, marketer, viewer, {
        "name": NAME, "kind": "nps", "questions": [],
        "context": {"channel": "event", "reference_id": event_id},
        "audience": {"hcp_ids": [h.id for h in hcps[:60]]}})
    sent_at = now - timedelta(days=40)
    result = services.send_survey(session, marketer, viewer, survey, at=sent_at)
    # The demo replays a send of the past: hand the recipients over now, in this transaction (the send's job
    # then finds nobody pending and ends at once).
    hand_over_now(session, marketer, survey, sent_at)
    counts["surveys"], counts["survey_mails"] = 1, len(result.sent)
    rnd = random.Random(1212)  # noqa: S311  (demo data, not security)
    queued = list(session.scalars(select(SurveyRecipient.hcp_id).where(
        SurveyRecipient.survey_id == survey.id, SurveyRecipient.status == "queued").order_by(SurveyRecipient.hcp_id)))
    for hcp_id, (score, comment) in zip(queued, ANSWERS, strict=False):
        # The mailed link's token is only stored hashed: the demo answers through a fresh link of its own,
        # by the same path as the HCP's POST.
        raw = tokens.issue(session, "survey", hcp_id, consent_purpose=services.PURPOSE,
                           reference=f"survey:{survey.id}", ttl=timedelta(days=60))
        token = tokens.resolve(session, raw, "survey")
        answered_at = sent_at + timedelta(days=rnd.randint(1, 35), hours=rnd.randint(0, 10))
        services.answer_by_link(session, token, services.Answer(score, (), comment), at=min(answered_at, now))
        counts["survey_answers"] += 1
    return counts
