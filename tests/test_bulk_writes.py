"""The bulk-write helpers behind webhook ingest and imports, and which timeline items are announced."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from crm import signals
from crm.campaigns.models import EmailEvent
from crm.db import among, bulk_parameters, insert_ignoring_conflicts, wrote_nothing
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


def test_a_bulk_insert_marks_its_transaction_as_written_on_both_engines(db):
    # the rows go through the driver's cursor, past the statement events: the request boundary must still
    # commit a transaction whose only write is such an insert
    db.execute(select(HCP.id).limit(1))
    db.connection().info["crm_wrote"] = False  # as a fresh transaction begins (the fixture's is an outer one)
    assert wrote_nothing(db)
    insert_ignoring_conflicts(db, EmailEvent.__table__, [event_row(1)], ["sg_event_id"], ["sg_event_id"])
    assert not wrote_nothing(db)


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


# -- driver rows built by the caller (insert_driver_rows, driver_time, dump_json) -----------------------

def _item(n: int, at):
    from crm.db import driver_time, dump_json

    to_time = driver_time(_db_dialect())
    return (to_time(at), to_time(at), "email", "email.opened", "esp", f"drv-{n}", "s", "s", dump_json({"n": n}),
            "standard", None, "system", None, None, False)


def _db_dialect() -> str:
    from crm.extensions import db as _db

    return _db.engine.dialect.name


def test_insert_driver_rows_returns_the_generated_ids_of_its_rows(db):
    from crm.db import insert_driver_rows
    from crm.timeline.services import _ITEM_KEYS

    rows = [_item(n, utc(2026, 3, 1) + timedelta(seconds=n)) for n in range(7)]
    got = dict(insert_driver_rows(db, Interaction.__table__, _ITEM_KEYS, rows, ["source", "external_id"],
                                  ["external_id", "id"], json_keys=("details",)))
    stored = dict(db.execute(select(Interaction.external_id, Interaction.id).where(
        Interaction.external_id.like("drv-%"))).all())
    assert got == stored and len(got) == 7
    item = db.get(Interaction, got["drv-3"])
    assert item.details == {"n": 3} and item.occurred_at == utc(2026, 3, 1, 0, 0, 3)


def test_insert_driver_rows_skips_rows_already_there_and_returns_only_its_own(db):
    from crm.db import insert_driver_rows
    from crm.timeline.services import _ITEM_KEYS

    table, conflict = Interaction.__table__, ["source", "external_id"]
    first = dict(insert_driver_rows(db, table, _ITEM_KEYS, [_item(2, utc(2026, 3, 1))], conflict,
                                    ["external_id", "id"], json_keys=("details",)))
    again = dict(insert_driver_rows(db, table, _ITEM_KEYS, [_item(n, utc(2026, 3, 1)) for n in range(5)], conflict,
                                    ["external_id", "id"], json_keys=("details",)))
    assert sorted(again) == ["drv-0", "drv-1", "drv-3", "drv-4"]
    stored = dict(db.execute(select(Interaction.external_id, Interaction.id).where(
        Interaction.external_id.like("drv-%"))).all())
    assert stored == {**first, **again}  # the ids returned are the rows' own, and the first row is untouched
    assert insert_driver_rows(db, table, _ITEM_KEYS, [], conflict, ["id"]) == []


def test_driver_time_writes_what_the_column_type_writes(db):
    from datetime import datetime, timezone

    from crm.db import NaiveDatetimeError, driver_time

    dialect = db.get_bind().dialect
    process = Interaction.__table__.c.occurred_at.type.dialect_impl(dialect).bind_processor(dialect)
    to_time = driver_time(dialect.name)
    for value in (utc(2026, 3, 1), utc(2026, 3, 1, 10, 0, 0) + timedelta(microseconds=5),
                  datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))):
        expected = process(value) if process else Interaction.__table__.c.occurred_at.type.process_bind_param(
            value, dialect)
        assert to_time(value) == expected
    with pytest.raises(NaiveDatetimeError):
        to_time(datetime(2026, 3, 1))


def test_dump_json_takes_what_orjson_does_not():
    import json
    from types import MappingProxyType

    from crm.db import dump_json

    assert json.loads(dump_json({"a": [1, "é"], "b": None})) == {"a": [1, "é"], "b": None}
    assert json.loads(dump_json({"big": 10**30})) == {"big": 10**30}
    assert json.loads(dump_json(MappingProxyType({"x": 1}))) == {"x": 1}
    assert json.loads(dump_json({1: "int key"})) == {"1": "int key"}


def test_blind_indexes_are_the_blind_index_of_each_address(app):
    from crm.security.crypto import blind_index, blind_indexes

    values = ["Dr.Who@Clinic.Example ", "x@y.example", "Zoë@klinik.example", "  ", ""]
    with app.app_context():
        got = blind_indexes(values)
        assert got == {v: blind_index(v) for v in values if v.strip()}
        assert blind_indexes(["a@b.example"], key="other") == {"a@b.example": blind_index("a@b.example", key="other")}


def test_a_row_the_database_refuses_fails_the_insert_and_leaves_nothing(db, factory):
    from crm.db import driver_time, insert_driver_rows

    hcp = factory.hcp()
    item = record_interactions(db, None, facts(hcp.id), channel="email", source="esp")["x-email.sent"]
    at = driver_time(db.get_bind().dialect.name)(utc(2026, 3, 1))
    rows = [(item, 10**9, at, "email", "email.sent")]  # no such HCP
    with pytest.raises(Exception) as caught:
        insert_driver_rows(db, InteractionParticipant.__table__,
                           ("interaction_id", "hcp_id", "occurred_at", "channel", "kind"), rows,
                           ["interaction_id", "hcp_id"], ["interaction_id"])
    assert "foreign key" in str(caught.value).lower()
    if db.get_bind().dialect.name == "sqlite":  # PostgreSQL's transaction is aborted; SQLite's goes on
        assert db.scalar(select(InteractionParticipant.hcp_id).where(
            InteractionParticipant.interaction_id == item)) == hcp.id
