"""Data-subject export: everything held about one HCP, found through the metadata, audited."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from crm.audit.models import AuditRecord
from crm.errors import Forbidden
from crm.hcps.export import export_hcp
from crm.hcps.jobs import export_file
from crm.hcps.merge import merge_hcps
from crm.hcps.models import HCO, Affiliation, HCPIdentifier, HCPTerritoryAssignment
from crm.jobs import services as jobs
from crm.jobs.models import Job
from crm.jobs.uploads import export_dir, purge_exports
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


def _ask(client, auth, hcp_id, **extra):
    token = auth.csrf_token("/admin/masterdata/export")
    return client.post("/admin/masterdata/export", data={"csrf_token": token, "hcp_id": str(hcp_id), **extra})


def _export_jobs(db):
    return list(db.scalars(select(Job).where(Job.kind == "hcp.export").order_by(Job.id)))


def test_the_export_page_builds_the_file_in_a_job_and_links_it(client, auth, db, factory, subject):
    hcp = subject["hcp"]
    officer = factory.user("compliance")
    auth.login(officer)
    assert client.get("/admin/masterdata/export").status_code == 200
    resp = client.get(f"/admin/masterdata/export/go?hcp_id={hcp.id}")  # the no-JavaScript choice: the form again
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/admin/masterdata/export?hcp_id={hcp.id}")
    resp = _ask(client, auth, hcp.id)
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/admin/masterdata/export")
    (job,) = _export_jobs(db)  # run at once here (immediate mode), after the request's commit
    assert job.state == "done" and job.created_by_id == officer.id and job.subject == f"hcp:{hcp.id}"
    assert job.params == {"hcp_id": hcp.id} and "ada@clinic.example" not in json.dumps(job.result)
    assert db.scalar(select(AuditRecord).where(AuditRecord.action == "hcp.export")).actor_id == officer.id
    page = client.get("/admin/masterdata/export").get_data(as_text=True)
    link = f"/admin/masterdata/exports/{job.id}/download"
    assert "Finished" in page and link in page and hcp.full_name in page
    resp = client.get(link)
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert "attachment" in resp.headers["Content-Disposition"] and resp.headers["Cache-Control"] == "no-store"
    assert json.loads(resp.data)["profile"]["email"] == "ada@clinic.example"
    assert db.scalar(select(AuditRecord).where(AuditRecord.action == "hcp.export.download")).entity_id == str(hcp.id)


def test_export_form_refusals_make_no_job(client, auth, db, factory):
    auth.login(factory.user("admin"))
    resp = _ask(client, auth, "")
    assert resp.status_code == 422 and "Search for the HCP" in resp.get_data(as_text=True)
    assert _ask(client, auth, 999999).status_code == 404
    assert _ask(client, auth, "99999999999999999999999").status_code == 404
    assert _ask(client, auth, "1\x00").status_code in (404, 422)
    resp = _ask(client, auth, "", picker_find="hcp_id", hcp_id_q="nobody-like-this")
    assert resp.status_code == 200 and "No HCP matches" in resp.get_data(as_text=True)
    assert _export_jobs(db) == []
    assert client.get("/admin/masterdata/exports/99999/download").status_code == 404


def test_an_export_is_downloaded_by_who_asked_or_an_admin_only(client, auth, db, factory, subject):
    hcp = subject["hcp"]
    officer, other, admin = factory.user("compliance"), factory.user("compliance"), factory.user("admin")
    auth.login(officer)
    _ask(client, auth, hcp.id)
    (job,) = _export_jobs(db)
    link = f"/admin/masterdata/exports/{job.id}/download"
    auth.logout()
    auth.login(other)
    assert client.get(link).status_code == 404
    assert link not in client.get("/admin/masterdata/export").get_data(as_text=True)
    auth.logout()
    auth.login(admin)
    assert client.get(link).status_code == 200


def test_a_deleted_or_unfinished_export_file_is_explained(client, auth, db, factory, subject, app):
    hcp = subject["hcp"]
    auth.login(factory.user("compliance"))
    _ask(client, auth, hcp.id)
    (job,) = _export_jobs(db)
    link = f"/admin/masterdata/exports/{job.id}/download"
    assert purge_exports(7) == 0 and export_file(job.result) is not None  # kept for 7 days
    assert purge_exports(7, now=time.time() + 8 * 86400) >= 1  # the nightly clean-up, 8 days on
    assert export_file(job.result) is None and not any(export_dir().iterdir())
    resp = client.get(link)
    assert resp.status_code == 404 and "make the export again" in resp.get_data(as_text=True)
    assert "Deleted after 7 days" in client.get("/admin/masterdata/export").get_data(as_text=True)
    job.state = "running"
    db.commit()
    assert client.get(link).status_code == 409


def test_an_export_whose_asker_lost_the_right_fails_with_the_reason(db, factory, subject, app):
    hcp = subject["hcp"]
    user = factory.user("compliance")
    job = jobs.create(db, user, "hcp.export", {"hcp_id": hcp.id}, subject=f"hcp:{hcp.id}")
    user.role = "marketer"
    db.commit()
    db.refresh(job)
    assert job.state == "failed" and job.error and not list(export_dir().glob(f"hcp-{hcp.id}-*"))
    assert db.scalar(select(AuditRecord).where(AuditRecord.action == "hcp.export")) is None


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical"])
def test_export_page_is_closed_to_other_roles(client, auth, db, factory, role):
    hcp = factory.hcp()
    auth.login(factory.user(role))
    assert client.get("/admin/masterdata/export").status_code == 403
    assert client.post("/admin/masterdata/export", data={"hcp_id": str(hcp.id)}).status_code in (400, 403)
    assert _export_jobs(db) == []


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
