"""The bulk-write helpers behind webhook ingest and imports, and which timeline items are announced."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from crm import signals
from crm.campaigns.models import EmailEvent
from crm.db import among, bulk_parameters, insert_ignoring_conflicts
from crm.errors import NotFound
from crm.hcps.models import HCP
from crm.timeline.models import Interaction, InteractionParticipant
from crm.timeline.services import Fact, record_interactions
from tests.conftest import utc


def event_row(n: int, **values):
    row = {"sg_event_id": f"ev-{n}", "event_type": "open", "platform_type": "open", "occurred_at": utc(2026, 3, 1),
           "hcp_id": None, "campaign_id": None, "matched_by": None, "email_bidx": None,
           "email": f"someone{n}@clinic.example", "raw": {"n": n, "event": "open"}}
    row.update(values)
    return row


def test_insert_ignoring_conflicts_returns_only_its_own_rows_in_many_statements(db):
    first = insert_ignoring_conflicts(db, EmailEvent.__table__, [event_row(n) for n in range(5)], ["sg_event_id"],
                                      ["sg_event_id"])
    assert sorted(r[0] for r in first) == [f"ev-{n}" for n in range(5)]
    # 2,500 rows (more than one statement's worth), 5 of them already there
    rows = [event_row(n, occurred_at=utc(2026, 3, 1) + timedelta(seconds=n % 7)) for n in range(2500)]
    again = insert_ignoring_conflicts(db, EmailEvent.__table__, rows, ["sg_event_id"], ["sg_event_id", "id"])
    assert len(again) == 2495 and "ev-3" not in {r[0] for r in again} and all(isinstance(r[1], int) for r in again)
    stored = db.scalar(select(EmailEvent).where(EmailEvent.sg_event_id == "ev-2499"))
    # values went through the columns' types: UTC time, JSON, encryption (default received_at filled in)
    assert stored.occurred_at == utc(2026, 3, 1) + timedelta(seconds=2499 % 7)
    assert stored.raw == {"n": 2499, "event": "open"} and stored.email == "someone2499@clinic.example"
    assert stored.received_at is not None
    cipher = db.execute(text("SELECT email FROM email_events WHERE sg_event_id = 'ev-2499'")).scalar()
    assert "someone" not in cipher


def test_equal_plaintexts_never_share_a_ciphertext_while_equal_times_are_converted_once(db):
    rows = [event_row(n, email="same@clinic.example") for n in range(3)]
    keys, params = bulk_parameters(EmailEvent.__table__, rows, db.connection().dialect)
    emails = [row[keys.index("email")] for row in params]
    assert len(set(emails)) == 3
    times = [row[keys.index("occurred_at")] for row in params]
    assert times[0] == times[1] == times[2]


@pytest.mark.parametrize("values", [[], ["a", "b'c", "d\"e"], [1, 2, 3]])
def test_among_matches_exactly_the_values(db, factory, values):
    hcps = [factory.hcp(first_name=str(v)) for v in values]
    if values and isinstance(values[0], int):
        values = [h.id for h in hcps]
        column = HCP.id
    else:
        column = HCP.first_name
    factory.hcp(first_name="other")
    got = db.scalars(select(HCP.id).where(among(db, column, values))).all()
    assert sorted(got) == sorted(h.id for h in hcps)


@pytest.fixture
def heard():
    got: list[tuple[str, str]] = []

    def receiver(item, **_):
        got.append((item.kind, item.external_id))

    yield receiver, got
    signals.interaction_recorded.disconnect(receiver)
    signals._interaction_interests.pop(id(receiver), None)


def facts(hcp_id: int) -> list[Fact]:
    return [Fact(hcp_id=hcp_id, occurred_at=utc(2026, 3, 1), kind=kind, external_id=f"x-{kind}")
            for kind in ("email.opened", "email.sent", "email.clicked")]


def test_batch_writes_announce_only_the_items_a_receiver_wants(db, factory, heard):
    receiver, got = heard
    signals.listen_to_interactions(receiver, wants=lambda channel, kind: kind == "email.sent")
    ids = record_interactions(db, None, facts(factory.hcp().id), channel="email", source="esp")
    assert len(ids) == 3
    assert got == [("email.sent", "x-email.sent")]  # opens and clicks are not even read back


def test_a_receiver_that_says_nothing_hears_everything(db, factory, heard):
    receiver, got = heard
    signals.interaction_recorded.connect(receiver)
    record_interactions(db, None, facts(factory.hcp().id), channel="email", source="esp")
    assert sorted(got) == [("email.clicked", "x-email.clicked"), ("email.opened", "x-email.opened"),
                           ("email.sent", "x-email.sent")]


def test_batch_replays_return_the_first_ids_and_unknown_hcps_are_refused(db, factory):
    hcp = factory.hcp()
    first = record_interactions(db, None, facts(hcp.id), channel="email", source="esp")
    again = record_interactions(db, None, facts(hcp.id), channel="email", source="esp")
    assert again == first
    assert db.scalar(select(InteractionParticipant.hcp_id).where(
        InteractionParticipant.interaction_id == first["x-email.sent"])) == hcp.id
    assert db.query(Interaction).filter(Interaction.external_id.like("x-%")).count() == 3
    with pytest.raises(NotFound):
        record_interactions(db, None, [Fact(hcp_id=10**9, occurred_at=utc(2026, 3, 1), kind="email.sent",
                                            external_id="x-nobody")], channel="email", source="esp")
