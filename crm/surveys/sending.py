"""The survey send job: hands the recipients a survey send accepted over to the mail outbox, in batches.

``services.send_survey`` (the request) decided who may be mailed for market research and stored them as
``pending`` ``survey_recipients``; this job (kind ``survey.send``) takes them in batches
(``crm.jobs.batches.hand_over_in_batches``) and, per batch, in one transaction: checks consent again at this
instant (a recipient who withdrew since the request is ``skipped`` with the rule), builds each mail with its
single-use answer link, records the ``survey.sent`` timeline item, writes the mail to the outbox and marks the
recipient ``queued`` (``services.hand_over``). A batch that committed is not pending any more and is never
taken again; one rolled back by a crash is taken by the next consumer. The outbox key and the timeline item's
external id (``survey:<survey>:<hcp>``) make a replay a no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm.db import DbSession
from crm.jobs.batches import hand_over_in_batches, start_send
from crm.jobs.services import JobRun, fresh_session
from crm.surveys import services
from crm.surveys.models import Survey, SurveyRecipient


def pending_count(session: Session, survey_id: int) -> int:
    return session.scalar(select(func.count()).select_from(SurveyRecipient).where(
        SurveyRecipient.survey_id == survey_id, SurveyRecipient.status == "pending")) or 0


def hand_over_now(session: DbSession, actor: Any, survey: Survey, at: datetime | None = None) -> int:
    """Hand every pending recipient over in the caller's transaction (the demo loader's replayed send;
    service tests). Returns how many were handed over. The request path leaves this to the job."""
    handed = 0
    while True:
        batch = services.hand_over(session, actor, survey, limit=5000, at=at)
        handed += len(batch.sent)
        if not batch.sent and not batch.skipped:
            return handed


def run_send(run: JobRun) -> dict[str, Any]:
    """The ``survey.send`` job: every pending recipient of the survey, in batches; resumable."""
    survey_id = int(run.params["survey_id"])
    at = datetime.fromisoformat(run.params["at"]) if run.params.get("at") else None
    actor_id = start_send(run, Survey, survey_id, "Survey", lambda s: pending_count(s, survey_id))

    def take(session: Session, n: int) -> list[int]:
        return services.take_pending(session, survey_id, n)

    def give(session: Session, hcp_ids: list[int]) -> None:
        from crm.auth.models import User

        services.hand_over(session, session.get_one(User, actor_id), session.get_one(Survey, survey_id),
                           hcp_ids=hcp_ids, at=at)

    handed = hand_over_in_batches(run, take, give)
    with fresh_session() as s:
        counts = services.recipient_counts(s, s.get_one(Survey, survey_id))
        s.rollback()
    return {"survey_id": survey_id, "handed_over_by_this_run": handed, "queued": counts.get("queued", 0),
            "skipped": counts.get("skipped", 0), "pending": counts.get("pending", 0)}
