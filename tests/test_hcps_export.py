"""Data-subject export: everything held about one HCP, found through the metadata, audited."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from crm.audit.models import AuditRecord
from crm.errors import Forbidden
from crm.hcps.export import export_hcp
from crm.hcps.merge import merge_hcps
from crm.hcps.models import HCO, Affiliation, HCPIdentifier, HCPTerritoryAssignment
from crm.timeline.services import record_interaction
from crm.visits.models import Visit
from tests.conftest import days_ago, utc


@pytest.fixture
def subject(db, factory):
    t = factory.territory()
    hcp = factory.hcp(territory=t, email="ada@clinic.example", phone="+1 555 0100", address_line="1 Main St")
    rep = factory.user("field_rep", territories=[t])
    hco = HCO(name="General Hospital", kind="hospital")
    db.add(hco)
    db.flush()
    db.add_all([HCPIdentifier(hcp_id=hcp.id, kind="npi", value="1234567893"),
                Affiliation(hcp_id=hcp.id, hco_id=hco.id, role="attending"),
                HCPTerritoryAssignment(hcp_id=hcp.id, territory_id=t.id, valid_from=days_ago(90)),
                Visit(owner_id=rep.id, hcp_id=hcp.id, occurred_at=utc(2026, 3, 1), notes="Discussed dosing")])
    record_interaction(db, rep, hcp_ids=[hcp.id], occurred_at=utc(2026, 1, 5), channel="email",
                       kind="email.delivered", source="esp", external_id="m-9", summary="Newsletter delivered")
    duplicate = factory.hcp(first_name="A.", last_name="Lovelace")
    merge_hcps(db, None, hcp, duplicate, "duplicate")
    return {"hcp": hcp, "hco": hco, "territory": t, "duplicate": duplicate}


def test_export_holds_everything_about_the_hcp(db, subject):
    from tests.consent_support import grant

    hcp = subject["hcp"]
    grant(db, hcp, "email", "events", "web_form")
    doc = export_hcp(db, None, hcp)
    json.dumps(doc)  # JSON-able as it stands
    assert doc["format"].startswith("pharma-crm/data-subject-export") and doc["hcp_id"] == hcp.id
    profile = doc["profile"]
    assert (profile["email"], profile["phone"], profile["address_line"]) == (
        "ada@clinic.example", "+1 555 0100", "1 Main St")
    assert "email_bidx" not in profile
    records = doc["records"]
    assert [r["value"] for r in records["hcp_identifiers"]] == ["1234567893"]
    assert records["affiliations"][0]["role"] == "attending"
    assert records["hcp_territory_assignments"][0]["territory_id"] == subject["territory"].id
    assert records["visits"][0]["notes"] == "Discussed dosing"
    assert len(records["interaction_participants"]) == 2  # the email, and the consent grant (a timeline fact)
    assert [r["id"] for r in records["merged_records"]] == [subject["duplicate"].id]
    assert records["consent_events"][0]["channel"] == "email"
    related = doc["related"]
    assert "Newsletter delivered" in {i["summary"] for i in related["interactions"]}
    assert related["hcos"][0]["name"] == "General Hospital"
    assert related["territories"][0]["code"] == subject["territory"].code
    assert "users" not in related  # staff records are not the subject's data
    assert all(v.endswith("Z") for v in (profile["created_at"], records["visits"][0]["occurred_at"]))
    rec = db.scalar(select(AuditRecord).where(AuditRecord.action == "hcp.export"))
    assert rec.entity_id == str(hcp.id) and rec.changes["tables"]["visits"] == 1


@pytest.mark.parametrize("role, allowed", [("admin", True), ("compliance", True), ("field_rep", False),
                                           ("marketer", False), ("call_centre", False), ("medical", False)])
def test_who_may_export(db, factory, role, allowed):
    hcp = factory.hcp()
    user = factory.user(role)
    if allowed:
        assert export_hcp(db, user, hcp)["hcp_id"] == hcp.id
    else:
        with pytest.raises(Forbidden):
            export_hcp(db, user, hcp)


def test_cli_export(runner, db, subject, tmp_path):
    hcp = subject["hcp"]
    result = runner.invoke(args=["crm", "hcps", "export", str(hcp.id)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["profile"]["email"] == "ada@clinic.example"
    out = tmp_path / "export.json"
    result = runner.invoke(args=["crm", "hcps", "export", str(hcp.id), "--output", str(out)])
    assert result.exit_code == 0 and json.loads(out.read_text())["hcp_id"] == hcp.id
    missing = runner.invoke(args=["crm", "hcps", "export", "999999"])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_export_page_download(client, auth, db, factory, subject):
    hcp = subject["hcp"]
    auth.login(factory.user("compliance"))
    assert client.get("/admin/masterdata/export").status_code == 200
    resp = client.get(f"/admin/masterdata/export/go?hcp_id={hcp.id}")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/hcps/{hcp.id}/export.json")
    resp = client.get(f"/admin/masterdata/hcps/{hcp.id}/export.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert "attachment" in resp.headers["Content-Disposition"]
    assert json.loads(resp.data)["profile"]["email"] == "ada@clinic.example"
    assert client.get("/admin/masterdata/hcps/999999/export.json").status_code == 404


def test_export_page_is_closed_to_other_roles(client, auth, db, factory):
    hcp = factory.hcp()
    auth.login(factory.user("marketer"))
    assert client.get(f"/admin/masterdata/hcps/{hcp.id}/export.json").status_code == 403


def test_another_hcps_group_visit_is_outlined_not_handed_over(db, factory):
    from crm.hcps.export import export_hcp
    from crm.visits.models import VisitAttendee

    host, guest = factory.hcp(), factory.hcp()
    rep = factory.user("field_rep")
    visit = Visit(owner_id=rep.id, hcp_id=host.id, occurred_at=utc(2026, 3, 1), notes="Host's private remark",
                  signature="data:image/png;base64,AAAA")
    db.add(visit)
    db.flush()
    db.add(VisitAttendee(visit_id=visit.id, hcp_id=guest.id))
    db.flush()
    outline = export_hcp(db, None, guest)["related"]["visits"][0]
    assert outline["id"] == visit.id and outline["hcp_id"] == host.id and outline["occurred_at"].endswith("Z")
    assert "notes" not in outline and "signature" not in outline and outline["withheld"]
    own = export_hcp(db, None, host)["records"]["visits"][0]
    assert own["notes"] == "Host's private remark"  # the host's own export keeps its content


def test_an_export_by_staff_logs_its_medical_and_pv_items_as_sensitive_reads(db, factory):
    from crm.hcps.export import export_hcp
    from crm.timeline.models import SensitiveRead

    hcp = factory.hcp()
    medical, _ = record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=utc(2026, 2, 1), channel="call_centre",
                                    kind="call_centre.medical_inquiry", sensitivity="medical")
    record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=utc(2026, 2, 2), channel="email",
                       kind="email.delivered", source="esp", external_id="m-std")
    officer = factory.user("compliance")
    export_hcp(db, officer, hcp)
    reads = db.query(SensitiveRead).filter_by(what="export").all()
    assert [(r.viewer_id, r.interaction_id, r.hcp_id, r.sensitivity) for r in reads] == [
        (officer.id, medical.id, hcp.id, "medical")]
    export_hcp(db, None, hcp)  # the command line: no reader to log
    assert db.query(SensitiveRead).filter_by(what="export").count() == 1
