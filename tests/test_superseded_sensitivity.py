"""Issue 11 item 1: a superseded item carries the sensitivity of the strictest item of its chain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask_migrate import upgrade
from sqlalchemy import MetaData, Table, select, text

from crm.audit.models import AuditRecord
from crm.extensions import db as _db
from crm.timeline.models import Interaction
from crm.timeline.services import record_interaction
from tests.conftest import database_url, make_app, utc
from tests.sensitive_support import MARK, build


def _rec(db, hcp, sensitivity, supersedes=None, summary="text"):
    item, _ = record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=utc(2026, 5, 1), channel="visit",
                                 kind="visit.submitted", summary=summary, details={"notes": summary},
                                 sensitivity=sensitivity, supersedes=supersedes)
    return item


def _reclassified(db, item_id):
    return db.scalars(select(AuditRecord).where(AuditRecord.action == "interaction.reclassify",
                                                AuditRecord.entity_id == str(item_id))).all()


def test_a_stricter_correction_raises_every_item_it_supersedes(db, factory):
    hcp = factory.hcp()
    first = _rec(db, hcp, "standard", summary="first words")
    second = _rec(db, hcp, "standard", supersedes=first, summary="second words")
    third = _rec(db, hcp, "pv", supersedes=second)
    assert (first.sensitivity, second.sensitivity, third.sensitivity) == ("pv", "pv", "pv")
    # only the sensitivity changed: what was submitted stays as it was
    assert first.summary == "first words" and first.details == {"notes": "first words"}
    assert second.summary == "second words"
    for item in (first, second):
        [record] = _reclassified(db, item.id)
        assert record.changes == {"sensitivity": {"before": "standard", "after": "pv"}}
        assert f"Superseded by item {third.id} (pv)" in record.reason


def test_a_correction_is_at_least_as_strict_as_what_it_corrects(db, factory):
    hcp = factory.hcp()
    medical = _rec(db, hcp, "medical")
    correction = _rec(db, hcp, "standard", supersedes=medical)
    assert correction.sensitivity == "medical" and medical.sensitivity == "medical"
    assert _reclassified(db, medical.id) == []


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("standard", "standard", "standard"), ("medical", "medical", "medical"), ("standard", "medical", "medical"),
    ("medical", "pv", "pv"), ("pv", "medical", "pv"),
])
def test_the_chain_reads_at_its_strictest(db, factory, old, new, expected):
    hcp = factory.hcp()
    original = _rec(db, hcp, old)
    correction = _rec(db, hcp, new, supersedes=original)
    assert original.sensitivity == correction.sensitivity == expected
    assert len(_reclassified(db, original.id)) == (1 if expected != old else 0)


@pytest.mark.parametrize("role", ["field_rep", "marketer"])
def test_field_force_and_marketing_get_existence_for_original_and_correction(api, db, factory, role):
    world = build(db, factory)
    client = api(world.users[role])
    for item_id in world.ids["pv_visit_items"] + world.ids["pv_contact_items"]:
        body = client.get(f"/api/v1/interactions/{item_id}").get_json()
        assert body["sensitivity"] == "pv" and body["redacted"] is True
        assert body["visibility"] == {"level": "existence", "rule": "pv-restricted",
                                      "reason": "Details restricted to Pharmacovigilance"}
        assert MARK not in str(body)
    for visit_id in world.ids["visit"]:
        body = client.get(f"/api/v1/visits/{visit_id}").get_json()
        assert body["redacted"] is True and body["notes"] is None and MARK not in str(body)
    for contact_id in world.ids["contact"]:
        body = client.get(f"/api/v1/call-centre/contacts/{contact_id}").get_json()
        assert body["redacted"] is True and body["summary"] == "" and MARK not in str(body)


def test_a_visit_reads_as_strictly_as_its_item(db, factory):
    """A visit whose item was raised by a later correction is read at the item's sensitivity."""
    from crm.access.policy import Viewer
    from crm.visits.models import Visit
    from crm.visits.services import visible_visit

    world = build(db, factory)
    first, amended = (db.get(Visit, i) for i in world.ids["visit"][:2])
    assert amended.amends_id == first.id
    amended.sensitivity = "standard"  # as if the amendment had been written before the visit turned pv
    shown = visible_visit(db, Viewer(0, "field_rep"), amended)
    assert shown["sensitivity"] == "pv" and shown["redacted"] is True and shown["notes"] is None


def test_the_migration_raises_chains_already_stored():
    """Chains written before the fix are raised by the data migration, in both directions of a chain."""
    app = make_app(database_url("_migrations_issue11"))
    with app.app_context():
        with _db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            else:
                for (name,) in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).all():
                    conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
        upgrade(revision="5c978c5c2a31")
        with _db.engine.begin() as conn:
            table = Table("interactions", MetaData(), autoload_with=conn)
            at = datetime(2026, 1, 1, tzinfo=UTC)
            if conn.dialect.name == "sqlite":
                at = at.replace(tzinfo=None)

            def row(ident, sensitivity, supersedes=None):
                conn.execute(table.insert().values(
                    id=ident, occurred_at=at, recorded_at=at, channel="visit", kind="visit.submitted", source="crm",
                    summary="s", safe_summary="s", details={}, sensitivity=sensitivity, owner_role="field_rep",
                    supersedes_id=supersedes, consent_gap=False))
                if supersedes is not None:
                    conn.execute(table.update().where(table.c.id == supersedes).values(superseded_by_id=ident))

            # 1 <- 2 <- 3(pv); 4(medical) <- 5(standard); 6 alone
            row(1, "standard")
            row(2, "standard", supersedes=1)
            row(3, "pv", supersedes=2)
            row(4, "medical")
            row(5, "standard", supersedes=4)
            row(6, "standard")
        upgrade(revision="b7e1d4a9c2f0")
        with _db.engine.connect() as conn:
            found = dict(conn.execute(text("SELECT id, sensitivity FROM interactions")).all())
        assert found == {1: "pv", 2: "pv", 3: "pv", 4: "medical", 5: "medical", 6: "standard"}
        _db.engine.dispose()


def test_an_inquiry_from_a_visit_that_turned_pv_reads_as_pv(api, db, factory):
    """A rep's visit with a medical question and adverse-event wording: the inquiry points at the visit's
    first item, which the pv correction raised, so the inquiry's question reads (and is logged) as pv."""
    from crm.callcentre.models import MedicalInquiry
    from crm.timeline.models import SensitiveRead
    from tests.guardrails_support import submit_rep_visit

    world = submit_rep_visit(db, factory, "Dr asked: dose for children under 12? The patient had a rash.")
    inquiry = db.query(MedicalInquiry).filter_by(visit_id=world.visit.id).one()
    assert db.get(Interaction, inquiry.interaction_id).sensitivity == "pv"
    rep = api(world.rep).get(f"/api/v1/medical-inquiries/{inquiry.id}").get_json()
    assert rep["redacted"] is True and rep["question"] == "" and rep["visibility"]["rule"] == "pv-restricted"
    medical = api(world.medical).get(f"/api/v1/medical-inquiries/{inquiry.id}").get_json()
    assert medical["redacted"] is False and "rash" in medical["question"]
    assert db.scalars(select(SensitiveRead.sensitivity).where(SensitiveRead.viewer_id == world.medical.id)).all() \
        == ["pv"]
