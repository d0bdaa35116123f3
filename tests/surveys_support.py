"""Helpers shared by the survey tests: a send with the job's hand-over done in the caller's transaction."""

from __future__ import annotations

from typing import Any

from crm.surveys import services
from tests.campaigns_support import viewer_of


def send_now(db: Any, marketer: Any, survey: Any) -> Any:
    """``send_survey`` and, in the same transaction, the hand-over its job would do after the commit (for
    service-level tests that look at the outbox before any commit)."""
    from crm.surveys.sending import hand_over_now

    result = services.send_survey(db, marketer, viewer_of(marketer), survey)
    hand_over_now(db, marketer, survey)
    return result
