"""Merging duplicate HCPs: the survivor takes everything, collisions keep the survivor's row, one audit record."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crm.audit.models import AuditRecord
from crm.errors import Conflict, Forbidden, Invalid
from crm.hcps import merge as merge_module
from crm.hcps.merge import hcp_references, merge_hcps, register_merge_handler
from crm.hcps.models import HCO, HCP, Affiliation, HCPIdentifier, HCPTerritoryAssignment
from crm.timeline.models import InteractionParticipant, SensitiveRead
from crm.timeline.services import record_interaction
from crm.visits.models import Visit, VisitAttendee
from tests.conftest import days_ago, utc


@pytest.fixture
def pair(db, factory):
    """A survivor and a loser that share an interaction, a group visit and an HCO, each with history."""
    t1, t2 = factory.territory(), factory.territory()
    survivor = factory.hcp(territory=t1, first_name="Ada", last_name="Lovelace")
    loser = factory.hcp(territory=t2, first_name="ADA", last_name="LOVELACE")
    rep = factory.user("field_rep", territories=[t1, t2])
    hco, other_hco = HCO(name="General Hospital", kind="hospital"), HCO(name="Clinic", kind="practice")
    db.add_all([hco, other_hco])
    db.flush()
    start = days_ago(400)
    db.add_all([
        HCPIdentifier(hcp_id=survivor.id, kind="npi", value="1234567893"),
        HCPIdentifier(hcp_id=loser.id, kind="licence:MA", value="12345"),
        HCPTerritoryAssignment(hcp_id=survivor.id, territory_id=t1.id, valid_from=start),
        HCPTerritoryAssignment(hcp_id=loser.id, territory_id=t2.id, valid_from=start),
        Affiliation(hcp_id=survivor.id, hco_id=hco.id, valid_from=start),
        Affiliation(hcp_id=loser.id, hco_id=hco.id, valid_from=start),
        Affiliation(hcp_id=loser.id, hco_id=other_hco.id, valid_from=start),
    ])
    only_loser, _ = record_interaction(db, rep, hcp_ids=[loser.id], occurred_at=utc(2026, 1, 5), channel="email",
                                       kind="email.delivered", source="esp", external_id="m-1")
    both, _ = record_interaction(db, rep, hcp_ids=[survivor.id, loser.id], occurred_at=utc(2026, 2, 1),
                                 channel="event", kind="event.attended", source="event_platform", external_id="e-1")
    visit = Visit(owner_id=rep.id, hcp_id=loser.id, occurred_at=utc(2026, 3, 1))
    host = factory.hcp(territory=t1)
    group = Visit(owner_id=rep.id, hcp_id=host.id, occurred_at=utc(2026, 3, 2))
    db.add_all([visit, group])
    db.flush()
    db.add_all([VisitAttendee(visit_id=group.id, hcp_id=loser.id), VisitAttendee(visit_id=group.id, hcp_id=survivor.id),
                SensitiveRead(viewer_id=rep.id, what="interaction", hcp_id=loser.id, interaction_id=only_loser.id)])
    earlier = factory.hcp(status="merged")
    earlier.merged_into_id = loser.id
    db.flush()
    return {"survivor": survivor, "loser": loser, "rep": rep, "hco": hco, "other_hco": other_hco,
            "only_loser": only_loser, "both": both, "visit": visit, "group": group, "earlier": earlier, "t1": t1}


def test_survivor_takes_everything_and_the_loser_points_to_it(db, pair):
    survivor, loser = pair["survivor"], pair["loser"]
    s_version, l_version, visit_version = survivor.version, loser.version, pair["visit"].version
    audits = db.scalar(select(func.count()).select_from(AuditRecord))
    result = merge_hcps(db, None, survivor, loser, "Same NPI registry person, duplicate from a trade show list")

    survivor, loser = db.get(HCP, survivor.id), db.get(HCP, loser.id)
    assert (loser.status, loser.merged_into_id) == ("merged", survivor.id)
    assert loser.version == l_version + 1 and survivor.version == s_version + 1
    # timeline: both interactions on the survivor, the shared one once
    rows = db.execute(select(InteractionParticipant.interaction_id, InteractionParticipant.hcp_id)
                      .where(InteractionParticipant.interaction_id.in_([pair["only_loser"].id, pair["both"].id]))).all()
    assert sorted(rows) == sorted([(pair["only_loser"].id, survivor.id), (pair["both"].id, survivor.id)])
    assert result.dropped["interaction_participants"] == 1
    # visits and group-visit attendance
    visit = db.get(Visit, pair["visit"].id)
    assert visit.hcp_id == survivor.id and visit.version == visit_version + 1
    assert db.scalars(select(VisitAttendee.hcp_id).where(VisitAttendee.visit_id == pair["group"].id)).all() == [
        survivor.id]
    # identifiers, affiliations, territory history, read log, earlier merges
    assert {(i.kind, i.value) for i in survivor.identifiers} == {("npi", "1234567893"), ("licence:MA", "12345")}
    affs = db.scalars(select(Affiliation).where(Affiliation.hcp_id == survivor.id)).all()
    assert len(affs) == 3 and not db.scalars(select(Affiliation).where(Affiliation.hcp_id == loser.id)).all()
    open_to_hco = [a for a in affs if a.hco_id == pair["hco"].id and a.valid_to is None]
    assert len(open_to_hco) == 1  # the loser's duplicate was closed, not lost
    assert any(a.hco_id == pair["other_hco"].id and a.valid_to is None for a in affs)
    history = db.scalars(select(HCPTerritoryAssignment).where(HCPTerritoryAssignment.hcp_id == survivor.id)).all()
    assert len(history) == 2 and [h.territory_id for h in history if h.valid_to is None] == [pair["t1"].id]
    assert db.scalar(select(SensitiveRead.hcp_id).where(SensitiveRead.interaction_id == pair["only_loser"].id)) \
        == survivor.id
    assert db.get(HCP, pair["earlier"].id).merged_into_id == survivor.id
    # one audit record, with the reason and the counts
    recs = db.scalars(select(AuditRecord).order_by(AuditRecord.id)).all()[audits:]
    assert [r.action for r in recs] == ["hcp.merge"]
    rec = recs[-1]
    assert rec.entity_id == str(loser.id) and rec.reason.startswith("Same NPI registry person")
    assert rec.changes["survivor_id"] == survivor.id
    assert rec.changes["moved"]["interaction_participants.hcp_id"] == 1
    assert rec.changes["moved"]["visits.hcp_id"] == 1
    assert rec.changes["moved"]["hcp_identifiers.hcp_id"] == 1
    assert rec.changes["dropped_duplicates"] == {"interaction_participants": 1, "visit_attendees": 1}


def test_every_table_referring_to_hcps_is_covered():
    names = {t.name for t, _cols in hcp_references()}
    assert {"hcp_identifiers", "affiliations", "hcp_territory_assignments", "interaction_participants", "visits",
            "visit_attendees", "sensitive_reads", "hcps", "consent_events"} <= names


def test_the_api_says_where_a_merged_hcp_went(db, pair, api, factory):
    merge_hcps(db, None, pair["survivor"], pair["loser"], "duplicate")
    body = api(factory.user("marketer")).get(f"/api/v1/hcps/{pair['loser'].id}").get_json()
    assert body["merged_into"] == pair["survivor"].id and body["status"] == "merged"


def test_merge_refusals(db, factory):
    a, b, c = factory.hcp(), factory.hcp(), factory.hcp()
    with pytest.raises(Invalid, match="itself"):
        merge_hcps(db, None, a, a, "same")
    with pytest.raises(Invalid, match="reason"):
        merge_hcps(db, None, a, b, "   ")
    merge_hcps(db, None, a, b, "dup")
    with pytest.raises(Conflict, match="already merged"):
        merge_hcps(db, None, c, db.get(HCP, b.id), "again")  # the loser is already merged
    with pytest.raises(Conflict, match="already merged"):
        merge_hcps(db, None, db.get(HCP, b.id), c, "into a merged one")
    erased = factory.hcp(status="erased")
    with pytest.raises(Conflict, match="erased"):
        merge_hcps(db, None, erased, c, "into an erased one")
    with pytest.raises(Conflict, match="erased"):
        merge_hcps(db, None, c, erased, "an erased one")


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "compliance"])
def test_only_admins_merge(db, factory, role):
    a, b = factory.hcp(), factory.hcp()
    with pytest.raises(Forbidden):
        merge_hcps(db, factory.user(role), a, b, "dup")


def test_admin_merges_and_the_audit_names_them(db, factory):
    admin = factory.user("admin")
    a, b = factory.hcp(), factory.hcp()
    merge_hcps(db, admin, a, b, "dup")
    rec = db.scalar(select(AuditRecord).where(AuditRecord.action == "hcp.merge"))
    assert rec.actor_id == admin.id


def test_registered_handler_replaces_the_generic_move(db, factory, monkeypatch):
    calls = []
    monkeypatch.setattr(merge_module, "_HANDLERS", dict(merge_module._HANDLERS))
    register_merge_handler("sensitive_reads", lambda s, actor, sid, lid: calls.append((sid, lid)) or 7)
    a, b = factory.hcp(), factory.hcp()
    viewer = factory.user("medical")
    db.add(SensitiveRead(viewer_id=viewer.id, what="consent_evidence", hcp_id=b.id))
    db.flush()
    result = merge_hcps(db, None, a, b, "dup")
    assert calls == [(a.id, b.id)] and result.moved["sensitive_reads"] == 7
    assert db.scalar(select(SensitiveRead.hcp_id)) == b.id  # the handler chose not to move it


def test_consent_ledger_is_copied_not_updated(db, factory):
    from tests.consent_support import grant

    a, b = factory.hcp(), factory.hcp()
    grant(db, b, "visit", "promotional")
    result = merge_hcps(db, None, a, b, "dup")
    assert result.moved["consent_events"] == 1


def test_cli_merge(runner, db, factory):
    a, b = factory.hcp(), factory.hcp()
    result = runner.invoke(args=["crm", "hcps", "merge", str(a.id), str(b.id), "--reason", "duplicate"])
    assert result.exit_code == 0, result.output
    assert f"merged: HCP {b.id} into HCP {a.id}" in result.output
    assert db.get(HCP, b.id).merged_into_id == a.id
    again = runner.invoke(args=["crm", "hcps", "merge", str(a.id), str(b.id), "--reason", "duplicate"])
    assert again.exit_code == 1 and "already merged" in again.output
    itself = runner.invoke(args=["crm", "hcps", "merge", str(a.id), str(a.id), "--reason", "x"])
    assert itself.exit_code == 1 and "itself" in itself.output
    missing = runner.invoke(args=["crm", "hcps", "merge", str(a.id), "999999", "--reason", "x"])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert runner.invoke(args=["crm", "hcps", "merge", str(a.id), str(b.id)]).exit_code == 2  # --reason required


def test_territory_history_without_overlap_is_moved_as_is(db, factory):
    t = factory.territory()
    a, b = factory.hcp(), factory.hcp(territory=t)
    closed = HCPTerritoryAssignment(hcp_id=b.id, territory_id=t.id, valid_from=days_ago(30),
                                    valid_to=days_ago(30) + timedelta(days=3))
    open_row = HCPTerritoryAssignment(hcp_id=b.id, territory_id=t.id, valid_from=days_ago(20))
    db.add_all([closed, open_row])
    db.flush()
    merge_hcps(db, None, a, b, "dup")
    rows = db.scalars(select(HCPTerritoryAssignment).where(HCPTerritoryAssignment.hcp_id == a.id)).all()
    assert len(rows) == 2 and any(r.valid_to is None for r in rows)  # survivor had none open: the loser's stays


# -- identifier conflicts (issue 11): different NPIs are two people unless an admin overrides ------------

@pytest.fixture
def npi_pair(db, factory):
    a, b = factory.hcp(first_name="Sam", last_name="Twin"), factory.hcp(first_name="Sam", last_name="Twin")
    db.add_all([HCPIdentifier(hcp_id=a.id, kind="npi", value="1234567893"),
                HCPIdentifier(hcp_id=b.id, kind="npi", value="1245319599")])
    db.flush()
    db.expire_all()
    return db.get(HCP, a.id), db.get(HCP, b.id)


def test_different_npis_are_refused_without_override(db, npi_pair):
    a, b = npi_pair
    with pytest.raises(Conflict, match="1234567893.*1245319599") as err:
        merge_hcps(db, None, a, b, "same name")
    assert err.value.extra["conflicting_identifiers"] == [
        {"kind": "npi", "survivor": ["1234567893"], "loser": ["1245319599"]}]
    assert db.get(HCP, b.id).status == "active"
    with pytest.raises(Invalid, match="own reason"):
        merge_hcps(db, None, a, b, "same name", override_identifier_conflict=True, override_reason="  ")


def test_different_national_ids_conflict_but_licences_and_one_sided_npis_do_not(db, factory):
    a, b, c = factory.hcp(), factory.hcp(), factory.hcp()
    db.add_all([HCPIdentifier(hcp_id=a.id, kind="national_id", value="FR-1"),
                HCPIdentifier(hcp_id=b.id, kind="national_id", value="FR-2"),
                HCPIdentifier(hcp_id=a.id, kind="licence:MA", value="111"),
                HCPIdentifier(hcp_id=c.id, kind="licence:MA", value="222"),
                HCPIdentifier(hcp_id=c.id, kind="npi", value="1234567893")])
    db.flush()
    db.expire_all()
    a, b, c = db.get(HCP, a.id), db.get(HCP, b.id), db.get(HCP, c.id)
    with pytest.raises(Conflict, match="national_id FR-1"):
        merge_hcps(db, None, a, b, "dup")
    merge_hcps(db, None, a, c, "dup")  # licences in one state and an NPI on one side only: no conflict
    assert db.get(HCP, c.id).merged_into_id == a.id


def test_override_merges_and_the_one_audit_record_keeps_it(db, npi_pair, factory):
    a, b = npi_pair
    admin = factory.user("admin")
    result = merge_hcps(db, admin, a, b, "Same person", override_identifier_conflict=True,
                        override_reason="NPPES deactivated 1245319599; the HCP re-enumerated")
    assert db.get(HCP, b.id).merged_into_id == a.id
    recs = db.scalars(select(AuditRecord).where(AuditRecord.action == "hcp.merge")).all()
    assert len(recs) == 1 and recs[0].id == result.audit_id and recs[0].reason == "Same person"
    assert recs[0].changes["identifier_conflict_overridden"] == {
        "conflicts": [{"kind": "npi", "survivor": ["1234567893"], "loser": ["1245319599"]}],
        "override_reason": "NPPES deactivated 1245319599; the HCP re-enumerated"}


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "compliance"])
def test_only_admins_override(db, npi_pair, factory, role):
    a, b = npi_pair
    with pytest.raises(Forbidden):
        merge_hcps(db, factory.user(role), a, b, "dup", override_identifier_conflict=True, override_reason="sure")
    assert db.get(HCP, b.id).status == "active"


def test_api_merge_refuses_conflicting_npis_and_accepts_the_override(db, npi_pair, api, factory):
    a, b = npi_pair
    client = api(factory.user("admin"))
    url = f"/api/v1/hcps/{a.id}/merge"
    refused = client.post(url, json={"loser_id": b.id, "reason": "same name"})
    assert refused.status_code == 409 and refused.mimetype == "application/problem+json"
    body = refused.get_json()
    assert "1234567893" in body["detail"] and "1245319599" in body["detail"]
    assert body["conflicting_identifiers"] == [{"kind": "npi", "survivor": ["1234567893"], "loser": ["1245319599"]}]
    no_reason = client.post(url, json={"loser_id": b.id, "reason": "same", "override_identifier_conflict": True})
    assert no_reason.status_code == 422 and "override_reason" in no_reason.get_json()["errors"]
    assert db.get(HCP, b.id).status == "active"
    done = client.post(url, json={"loser_id": b.id, "reason": "same", "override_identifier_conflict": True,
                                  "override_reason": "registry shows one person"})
    assert done.status_code == 200, done.get_json()
    out = done.get_json()
    assert out["survivor_id"] == a.id and out["loser_id"] == b.id and out["moved"]["hcp_identifiers.hcp_id"] == 1
    assert out["identifier_conflicts_overridden"][0]["kind"] == "npi"
    rec = db.get(AuditRecord, out["audit_id"])
    assert rec.changes["identifier_conflict_overridden"]["override_reason"] == "registry shows one person"


def test_api_merge_without_conflict_and_its_refusals(db, api, factory):
    a, b = factory.hcp(), factory.hcp()
    client = api(factory.user("admin"))
    assert client.post(f"/api/v1/hcps/{a.id}/merge", json={"loser_id": 999999, "reason": "x"}).status_code == 404
    assert client.post(f"/api/v1/hcps/{a.id}/merge", json={"loser_id": b.id}).status_code == 422
    assert client.post(f"/api/v1/hcps/{a.id}/merge", json={"loser_id": b.id, "reason": "x",
                                                            "nope": 1}).status_code == 422
    resp = client.post(f"/api/v1/hcps/{a.id}/merge", json={"loser_id": b.id, "reason": "dup"})
    assert resp.status_code == 200 and resp.get_json()["identifier_conflicts_overridden"] == []
    again = client.post(f"/api/v1/hcps/{a.id}/merge", json={"loser_id": b.id, "reason": "dup"})
    assert again.status_code == 409 and "already merged" in again.get_json()["detail"]


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "compliance"])
def test_api_merge_is_for_admins(db, npi_pair, api, factory, role):
    a, b = npi_pair
    resp = api(factory.user(role)).post(f"/api/v1/hcps/{a.id}/merge", json={
        "loser_id": b.id, "reason": "x", "override_identifier_conflict": True, "override_reason": "y"})
    assert resp.status_code == 403 and resp.get_json()["rule"].startswith("hcp.merge")
    assert db.get(HCP, b.id).status == "active"


def test_cli_merge_with_conflicting_npis(runner, db, npi_pair, factory):
    a, b = npi_pair
    refused = runner.invoke(args=["crm", "hcps", "merge", str(a.id), str(b.id), "--reason", "dup"])
    assert refused.exit_code == 1 and "1245319599" in refused.output and "override" in refused.output
    # (the command rolled back the test's data with its refusal: build the pair again)
    a, b = factory.hcp(), factory.hcp()
    db.add_all([HCPIdentifier(hcp_id=a.id, kind="npi", value="1234567893"),
                HCPIdentifier(hcp_id=b.id, kind="npi", value="1245319599")])
    db.flush()
    done = runner.invoke(args=["crm", "hcps", "merge", str(a.id), str(b.id), "--reason", "dup",
                               "--override-identifier-conflict", "re-enumerated"])
    assert done.exit_code == 0, done.output
    assert "identifier conflict overridden: npi 1234567893" in done.output
    assert db.get(HCP, b.id).merged_into_id == a.id
