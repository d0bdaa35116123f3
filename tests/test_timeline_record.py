"""Writing to the timeline: participants, idempotency, superseding, validation."""

import pytest

from crm.errors import Conflict, Invalid, NotFound
from crm.timeline.models import Interaction
from crm.timeline.services import record_interaction
from tests.conftest import utc


def test_one_interaction_appears_for_every_participant(db, factory):
    a, b = factory.hcp(), factory.hcp()
    item, created = record_interaction(db, None, hcp_ids=[a.id, b.id, a.id], occurred_at=utc(2026, 1, 2, 9),
                                       channel="event", kind="event.attended", source="event_platform")
    assert created
    assert sorted(p.hcp_id for p in item.participants) == sorted([a.id, b.id])
    assert item.owner_role == "system"


def test_replayed_external_id_returns_the_existing_item(db, factory):
    h = factory.hcp()
    first, created = record_interaction(db, None, hcp_ids=[h.id], occurred_at=utc(2026, 1, 2), channel="email",
                                        kind="email.opened", source="esp", external_id="sg-1")
    again, created_again = record_interaction(db, None, hcp_ids=[h.id], occurred_at=utc(2026, 1, 3),
                                              channel="email", kind="email.opened", source="esp",
                                              external_id="sg-1", summary="different")
    assert created and not created_again
    assert again.id == first.id
    assert db.query(Interaction).filter_by(external_id="sg-1").count() == 1


def test_same_external_id_from_another_source_is_another_item(db, factory):
    h = factory.hcp()
    a, _ = record_interaction(db, None, hcp_ids=[h.id], occurred_at=utc(2026, 1, 2), channel="email",
                              kind="email.opened", source="esp", external_id="x")
    b, created = record_interaction(db, None, hcp_ids=[h.id], occurred_at=utc(2026, 1, 2), channel="call_centre",
                                    kind="call_centre.other", source="call_centre_system", external_id="x")
    assert created and a.id != b.id


def test_correction_supersedes_and_cannot_fork(db, factory):
    h = factory.hcp()
    old, _ = record_interaction(db, None, hcp_ids=[h.id], occurred_at=utc(2026, 1, 2), channel="visit",
                                kind="visit.submitted")
    new, _ = record_interaction(db, None, hcp_ids=[h.id], occurred_at=utc(2026, 1, 2), channel="visit",
                                kind="visit.submitted", supersedes=old)
    assert old.superseded_by_id == new.id and new.supersedes_id == old.id
    with pytest.raises(Conflict):
        record_interaction(db, None, hcp_ids=[h.id], occurred_at=utc(2026, 1, 2), channel="visit",
                           kind="visit.submitted", supersedes=old)


def test_validation(db, factory):
    from datetime import datetime

    h = factory.hcp()
    with pytest.raises(Invalid):
        record_interaction(db, None, hcp_ids=[h.id], occurred_at=datetime(2026, 1, 2), channel="visit",
                           kind="visit.submitted")
    with pytest.raises(Invalid):
        record_interaction(db, None, hcp_ids=[h.id], occurred_at=utc(2026, 1, 2), channel="fax", kind="fax.sent")
    with pytest.raises(Invalid):
        record_interaction(db, None, hcp_ids=[h.id], occurred_at=utc(2026, 1, 2), channel="visit", kind="email.x")
    with pytest.raises(NotFound):
        record_interaction(db, None, hcp_ids=[999999], occurred_at=utc(2026, 1, 2), channel="visit",
                           kind="visit.submitted")
