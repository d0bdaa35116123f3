"""The shared keyset pager: both directions, ties on the time broken by id, a tampered cursor refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crm.schemas import keyset_page
from crm.timeline.models import Interaction
from crm.timeline.services import record_interaction
from tests.conftest import utc


@pytest.mark.parametrize("newest_first", [True, False])
def test_pages_walk_every_row_once_in_order(db, factory, newest_first):
    hcp = factory.hcp()
    times = [utc(2026, 1, 1), utc(2026, 1, 2), utc(2026, 1, 2), utc(2026, 1, 2), utc(2026, 1, 3)]  # a tie
    made = [record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=t, channel="visit",
                               kind="visit.submitted")[0] for t in times]
    stmt = select(Interaction).where(Interaction.id.in_([i.id for i in made]))
    seen, cursor = [], None
    while True:
        rows, cursor = keyset_page(db, stmt, Interaction.occurred_at, Interaction.id, 2, cursor,
                                   newest_first=newest_first)
        seen += [(r.occurred_at, r.id) for r in rows]
        if cursor is None:
            break
    expected = sorted(((i.occurred_at, i.id) for i in made), reverse=newest_first)
    assert seen == expected and len(seen) == 5


def test_a_tampered_cursor_is_refused(db):
    from marshmallow import ValidationError  # answered as 422 on ``cursor`` by the error handler

    with pytest.raises(ValidationError):
        keyset_page(db, select(Interaction), Interaction.occurred_at, Interaction.id, 2, "garbage")
