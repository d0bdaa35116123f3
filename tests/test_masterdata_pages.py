"""The data steward's pages: upload, runs, error report, suspected duplicates, side by side, merge."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from crm.hcps.duplicates import suspected_duplicates
from crm.hcps.models import HCP, HCPIdentifier
from crm.integrations.masterdata.models import ImportRun
from crm.jobs.models import Job
from tests.masterdata_helpers import SAMPLE, csv_bytes, row


def csrf(client, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def upload(client, data: bytes, name: str = "nppes.csv", token: str | None = None):
    token = token if token is not None else csrf(client, "/admin/masterdata/import")
    return client.post("/admin/masterdata/import", data={"csrf_token": token, "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


@pytest.fixture
def admin(auth, factory):
    user = factory.user("admin")
    auth.login(user)
    return user


def test_upload_imports_and_shows_counts_and_the_error_report(client, admin, db):
    page = client.get("/admin/masterdata/import").get_data(as_text=True)
    assert 'type="file"' in page and "csrf_token" in page
    resp = upload(client, csv_bytes([row(0), row(1, **{"Provider First Name": "=HYPERLINK(\"x\")"}), row(6)]))
    assert resp.status_code == 302
    # The request stored the file and made a job; the job page shows the progress and links to the run.
    job = db.scalar(select(Job).where(Job.kind == "nppes.import"))
    assert resp.headers["Location"].endswith(f"/jobs/{job.id}")
    run = db.scalar(select(ImportRun))
    job_page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "Finished" in job_page and f'href="/admin/masterdata/runs/{run.id}"' in job_page
    assert job.result["import_run_id"] == run.id and job.progress_done == job.progress_total
    assert not Path(job.params["path"]).exists()  # the upload is deleted once imported
    page = client.get(f"/admin/masterdata/runs/{run.id}").get_data(as_text=True)
    assert "Created <strong>2</strong>" in page and "Rejected <strong>1</strong>" in page
    assert "formula" in page and f"/admin/masterdata/runs/{run.id}/errors.csv" in page
    report = client.get(f"/admin/masterdata/runs/{run.id}/errors.csv")
    assert report.mimetype == "text/csv" and "attachment" in report.headers["Content-Disposition"]
    assert "'=HYPERLINK" in report.get_data(as_text=True)
    index = client.get("/admin/masterdata/").get_data(as_text=True)
    assert "nppes.csv" in index and "completed" in index


def test_upload_refusals_show_a_message(client, admin, db):
    resp = upload(client, csv_bytes([row(0), row(1)]).decode("utf-8").encode("utf-16"))
    assert resp.status_code == 422 and "UTF-16" in resp.get_data(as_text=True)
    token = csrf(client, "/admin/masterdata/import")
    resp = client.post("/admin/masterdata/import", data={"csrf_token": token}, content_type="multipart/form-data")
    assert resp.status_code == 422 and "Choose" in resp.get_data(as_text=True)
    assert upload(client, csv_bytes([row(0)]), token="forged").status_code == 400
    assert db.scalar(select(ImportRun)) is None and db.scalar(select(Job)) is None  # refused on the page


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "compliance"])
def test_steward_pages_are_for_admins(client, auth, factory, role):
    auth.login(factory.user(role))
    for path in ("/admin/masterdata/", "/admin/masterdata/import", "/admin/masterdata/duplicates",
                 "/admin/masterdata/duplicates/compare?a=1&b=2"):
        assert client.get(path).status_code == 403, path


def test_navigation_links(client, auth, factory):
    auth.login(factory.user("admin"))
    assert "/admin/masterdata/" in client.get("/").get_data(as_text=True)
    auth.logout()
    auth.login(factory.user("compliance"))
    assert "/admin/masterdata/export" in client.get("/").get_data(as_text=True)


def test_duplicate_rules(db, factory):
    a = factory.hcp(email="Same@Clinic.example", first_name="Jo", last_name="Smith", postal_code="11111")
    b = factory.hcp(email="same@clinic.example ", first_name="Jim", last_name="Doe", postal_code="22222")
    c = factory.hcp(first_name="  Mary-Ann ", last_name="O'Neil", postal_code="02115-1234")
    d = factory.hcp(first_name="maryann", last_name="ONEIL", postal_code="02115")
    e, f, g, h = factory.hcp(), factory.hcp(), factory.hcp(), factory.hcp()
    db.add_all([HCPIdentifier(hcp_id=e.id, kind="licence:MA", value="MD-12345"),
                HCPIdentifier(hcp_id=f.id, kind="licence:MA", value="md 12345"),
                HCPIdentifier(hcp_id=g.id, kind="licence:IL", value="0098765"),
                HCPIdentifier(hcp_id=h.id, kind="licence:IL", value="98765"),
                HCPIdentifier(hcp_id=a.id, kind="licence:NY", value="MD-12345")])  # another state: no match
    db.flush()
    by_email = suspected_duplicates(db, "email")
    assert [sorted(x.id for x in grp.hcps) for grp in by_email] == [sorted([a.id, b.id])]
    by_name = suspected_duplicates(db, "name_postal")
    assert [sorted(x.id for x in grp.hcps) for grp in by_name] == [sorted([c.id, d.id])]
    by_licence = suspected_duplicates(db, "licence")
    assert [sorted(x.id for x in grp.hcps) for grp in by_licence] == [sorted([g.id, h.id]), sorted([e.id, f.id])]
    assert [grp.label for grp in by_licence] == ["Licence 98765 (IL)", "Licence md12345 (MA)"]
    d.status = "merged"
    db.flush()
    assert suspected_duplicates(db, "name_postal") == []
    with pytest.raises(ValueError):
        suspected_duplicates(db, "shoe size")


def test_find_and_merge_a_planted_duplicate_after_importing_the_sample(client, admin, db, factory):
    assert upload(client, SAMPLE.read_bytes()).status_code == 302
    original = db.scalar(select(HCP).join(HCPIdentifier).where(HCPIdentifier.value == "2260181591"))
    planted = factory.hcp(first_name="Priya", last_name="Johnson", postal_code="02115", email="priya@clinic.example")
    page = client.get("/admin/masterdata/duplicates?rule=name_postal").get_data(as_text=True)
    compare_url = f"/admin/masterdata/duplicates/compare?a={original.id}&amp;b={planted.id}"
    assert compare_url in page
    side = client.get(compare_url.replace("&amp;", "&")).get_data(as_text=True)
    assert "2260181591" in side and "priya@clinic.example" in side and 'name="reason"' in side
    token = csrf(client, compare_url.replace("&amp;", "&"))
    no_reason = client.post("/admin/masterdata/merge", data={"csrf_token": token, "reason": " ",
                                                             "pair": f"{original.id}:{planted.id}"})
    assert no_reason.status_code == 422 and "reason" in no_reason.get_data(as_text=True)
    assert db.get(HCP, planted.id).status == "active"
    no_csrf = client.post("/admin/masterdata/merge", data={"reason": "dup", "pair": f"{original.id}:{planted.id}"})
    assert no_csrf.status_code == 400
    resp = client.post("/admin/masterdata/merge", data={"csrf_token": token, "reason": "Planted duplicate",
                                                        "pair": f"{original.id}:{planted.id}"})
    assert resp.status_code == 302
    db.expire_all()
    assert db.get(HCP, planted.id).merged_into_id == original.id
    after = client.get("/admin/masterdata/duplicates?rule=name_postal").get_data(as_text=True)
    assert f"was merged into HCP {original.id}" in after and compare_url not in after
    again = client.post("/admin/masterdata/merge", data={"csrf_token": token, "reason": "again",
                                                         "pair": f"{original.id}:{planted.id}"})
    assert again.status_code == 409 and "already merged" in again.get_data(as_text=True)


def test_merge_form_needs_a_choice_and_known_records(client, admin, factory):
    token = csrf(client, "/admin/masterdata/import")
    assert client.post("/admin/masterdata/merge", data={"csrf_token": token, "reason": "x"}).status_code == 422
    a = factory.hcp()
    resp = client.post("/admin/masterdata/merge", data={"csrf_token": token, "reason": "x", "pair": f"{a.id}:999999"})
    assert resp.status_code == 404
    assert client.get(f"/admin/masterdata/duplicates/compare?a={a.id}").status_code == 422
    assert client.get("/admin/masterdata/duplicates?rule=nope").status_code == 422


def test_compare_page_shows_an_identifier_conflict_and_the_merge_needs_the_override(client, admin, db, factory):
    from crm.audit.models import AuditRecord

    a, b = factory.hcp(first_name="Sam", last_name="Twin"), factory.hcp(first_name="Sam", last_name="Twin")
    db.add_all([HCPIdentifier(hcp_id=a.id, kind="npi", value="1234567893"),
                HCPIdentifier(hcp_id=b.id, kind="npi", value="1245319599")])
    db.flush()
    url = f"/admin/masterdata/duplicates/compare?a={a.id}&b={b.id}"
    page = client.get(url).get_data(as_text=True)
    assert "Different identifiers" in page and "npi: 1234567893 on #" in page and "1245319599" in page
    assert 'name="override_identifier_conflict"' in page and 'name="override_reason"' in page
    token = csrf(client, url)
    pair = f"{a.id}:{b.id}"
    refused = client.post("/admin/masterdata/merge", data={"csrf_token": token, "reason": "same", "pair": pair})
    text = refused.get_data(as_text=True)
    assert refused.status_code == 409 and "carry different identifiers" in text
    assert 'name="override_reason"' in text and 'value="same"' not in text  # the form is shown again
    no_reason = client.post("/admin/masterdata/merge", data={"csrf_token": token, "reason": "same", "pair": pair,
                                                             "override_identifier_conflict": "1"})
    assert no_reason.status_code == 422 and "own reason" in no_reason.get_data(as_text=True)
    db.expire_all()
    assert db.get(HCP, b.id).status == "active"
    done = client.post("/admin/masterdata/merge", data={
        "csrf_token": token, "reason": "same", "pair": pair, "override_identifier_conflict": "1",
        "override_reason": "old NPI deactivated"})
    assert done.status_code == 302
    db.expire_all()
    assert db.get(HCP, b.id).merged_into_id == a.id
    rec = db.scalar(select(AuditRecord).where(AuditRecord.action == "hcp.merge", AuditRecord.entity_id == str(b.id)))
    assert rec.changes["identifier_conflict_overridden"]["override_reason"] == "old NPI deactivated"


def test_compare_page_without_conflict_asks_no_override(client, admin, factory):
    a, b = factory.hcp(), factory.hcp()
    page = client.get(f"/admin/masterdata/duplicates/compare?a={a.id}&b={b.id}").get_data(as_text=True)
    assert "Different identifiers" not in page and "override_reason" not in page


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "compliance"])
def test_merge_page_override_is_for_admins(client, auth, db, factory, role):
    a, b = factory.hcp(), factory.hcp()
    db.add_all([HCPIdentifier(hcp_id=a.id, kind="npi", value="1234567893"),
                HCPIdentifier(hcp_id=b.id, kind="npi", value="1245319599")])
    db.flush()
    auth.login(factory.user(role))
    token = auth.csrf_token("/")
    resp = client.post("/admin/masterdata/merge", data={"csrf_token": token, "reason": "x", "pair": f"{a.id}:{b.id}",
                                                        "override_identifier_conflict": "1", "override_reason": "y"})
    assert resp.status_code == 403
    db.expire_all()
    assert db.get(HCP, b.id).status == "active"
