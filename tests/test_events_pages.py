"""Event pages: list, new event, invitation screen with running totals, tick list, upload, report."""

from __future__ import annotations

import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from crm.db import utcnow
from crm.events import services as events
from crm.events.models import Attendance, Event, TransferOfValue
from crm.hcps.identifiers import make_npi
from crm.hcps.models import HCPIdentifier
from crm.jobs import services as jobs
from crm.jobs.models import Job
from crm.jobs.uploads import upload_dir
from tests.consent_support import grant
from tests.events_support import make_event, viewer_of


def _token(auth, path):
    return auth.csrf_token(path)


def test_marketer_creates_an_event_on_the_page(client, auth, factory, db):
    marketer = factory.user("marketer")
    auth.login(marketer)
    page = client.get("/events/new")
    assert page.status_code == 200 and 'name="csrf_token"' in page.get_data(as_text=True)
    data = {"csrf_token": _token(auth, "/events/new"), "name": "Lipids Webinar", "type": "webinar",
            "starts_at": "2026-05-01T18:00", "starts_at_offset": "120", "ends_at": "2026-05-01T19:00",
            "ends_at_offset": "120", "url": "https://webinar.example/lipids", "organiser": "Marketing",
            "country": "US", "sensitivity": "standard"}
    resp = client.post("/events/new", data=data)
    assert resp.status_code == 302
    event = db.query(Event).filter_by(name="Lipids Webinar").one()
    assert event.starts_at.isoformat() == "2026-05-01T16:00:00+00:00"
    listing = client.get("/events").get_data(as_text=True)
    assert "Lipids Webinar" in listing and 'datetime="2026-05-01T16:00:00Z"' in listing


def test_new_event_form_errors_are_shown(client, auth, factory):
    auth.login(factory.user("medical"))
    data = {"csrf_token": _token(auth, "/events/new"), "name": "X", "type": "congress",
            "starts_at": "2026-05-01T18:00", "ends_at": "2026-05-01T17:00", "times_utc": "1", "venue": "Rome",
            "organiser": "Medical", "country": "IT"}
    resp = client.post("/events/new", data=data)
    assert resp.status_code == 422 and "must be after starts_at" in resp.get_data(as_text=True)
    no_tz = dict(data, ends_at="2026-05-01T19:00")
    no_tz.pop("times_utc")
    resp = client.post("/events/new", data=no_tz)
    assert resp.status_code == 422 and "time zone could not be detected" in resp.get_data(as_text=True)


def test_reps_see_events_but_cannot_create(client, auth, factory, db):
    marketer = factory.user("marketer")
    make_event(db, marketer, name="Visible Congress")
    auth.login(factory.user("field_rep"))
    assert "Visible Congress" in client.get("/events").get_data(as_text=True)
    assert client.get("/events/new").status_code == 403


def test_invitation_screen_shows_running_totals_and_cap_warning(client, auth, factory, db):
    admin, marketer = factory.user("admin"), factory.user("marketer")
    events.set_transfer_cap(db, admin, viewer_of(admin), "US", currency="USD", annual_cap=Decimal("500"),
                            action="warn")
    event = make_event(db, marketer)
    big = factory.hcp(last_name="Spender")
    events.record_transfer(db, marketer, viewer_of(marketer), event, hcp_id=big.id, kind="travel",
                           amount=Decimal("600"), currency="USD", paid_on=utcnow().date())
    factory.hcp(last_name="Spendless")
    auth.login(marketer)
    page = client.get(f"/events/{event.id}?q=Spend").get_data(as_text=True)
    assert "USD 600.00" in page and "over the US annual cap of USD 500.00" in page
    assert f'name="hcp_ids" value="{big.id}"' in page


def test_inviting_from_the_page_lists_skipped_hcps(client, auth, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    yes, no = factory.hcp(), factory.hcp()
    grant(db, yes, channel="email", purpose="events")
    auth.login(marketer)
    token = _token(auth, f"/events/{event.id}?q={yes.last_name}")
    resp = client.post(f"/events/{event.id}/invite",
                       data={"csrf_token": token, "hcp_ids": [str(yes.id), str(no.id)], "channel": "email"})
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "1</strong> sent" in text and "no consent for email/events" in text
    assert no.full_name in text


def test_tablet_tick_list_marks_attendance(client, auth, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    a, b, c = factory.hcp(), factory.hcp(), factory.hcp()
    for hcp in (a, b, c):
        events.register(db, marketer, viewer_of(marketer), event, hcp.id)
    auth.login(marketer)
    page = client.get(f"/events/{event.id}/attendance").get_data(as_text=True)
    assert page.count('name="attended"') == 3 and "style=" not in page and "<script>" not in page
    token = _token(auth, f"/events/{event.id}/attendance")
    resp = client.post(f"/events/{event.id}/attendance",
                       data={"csrf_token": token, "listed": [str(a.id), str(b.id), str(c.id)],
                             "attended": [str(a.id), str(b.id)], "rest_no_show": "1"})
    assert resp.status_code == 302
    marks = {r.hcp_id: r.status for r in db.query(Attendance).filter_by(event_id=event.id)}
    assert marks == {a.id: "attended", b.id: "attended", c.id: "no_show"}
    auth.logout()
    auth.login(factory.user("call_centre"))
    assert client.get(f"/events/{event.id}/attendance").status_code == 403


def test_attendance_upload_page_reports_per_row(client, auth, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    db.add(HCPIdentifier(hcp_id=hcp.id, kind="npi", value=make_npi(5)))
    db.flush()
    auth.login(marketer)
    token = _token(auth, f"/events/{event.id}/attendance/import")
    csv_bytes = f"Attendee ID;NPI;First name\r\nA1;{make_npi(5)};Ada\r\nA2;;=cmd\r\nA3;;Someone\r\n".encode()
    resp = client.post(f"/events/{event.id}/attendance/import",
                       data={"csrf_token": token, "file": (io.BytesIO(csv_bytes), "export.csv")},
                       content_type="multipart/form-data")
    # The request stored the file and made a job (run at once here, after the commit); the page it leads
    # to shows the job and its per-row report.
    assert resp.status_code == 303
    job = db.scalar(select(Job).where(Job.kind == "attendance.import"))
    assert job.state == "done" and job.subject == f"event:{event.id}" and job.created_by_id == marketer.id
    assert resp.headers["Location"].endswith(f"/events/{event.id}/attendance/import?job={job.id}")
    assert job.progress_done == job.progress_total == 3 and job.result["summary"]["attended"] == 1
    assert not Path(job.params["path"]).exists()  # the upload is deleted once imported
    text = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Finished" in text and "attended: 1" in text
    assert "error: 1" in text and "unmatched: 1" in text and "formula" in text
    other = factory.hcp()
    row_id = re.search(r"/attendance/unmatched/(\d+)", text).group(1)
    resp = client.post(f"/events/{event.id}/attendance/unmatched/{row_id}",
                       data={"csrf_token": token, "hcp_id": str(other.id), "action": "match"})
    assert resp.status_code == 302
    assert db.query(Attendance).filter_by(event_id=event.id, hcp_id=other.id).one().status == "attended"
    empty = client.post(f"/events/{event.id}/attendance/import", data={"csrf_token": token},
                        content_type="multipart/form-data")
    assert empty.status_code == 422
    job_page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert f"/events/{event.id}/attendance/import?job={job.id}" in job_page


def _upload(client, auth, event_id, data: bytes):
    token = _token(auth, f"/events/{event_id}/attendance/import")
    return client.post(f"/events/{event_id}/attendance/import",
                       data={"csrf_token": token, "file": (io.BytesIO(data), "export.csv")},
                       content_type="multipart/form-data")


def test_a_file_that_is_no_attendance_export_is_refused_with_no_job(client, auth, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    auth.login(marketer)
    for data, message in ((b"Name;Email\r\nAda;ada@example.org\r\n", "missing column"), (b"", "empty"),
                          ("Attendee ID\nMüller\n".encode("latin-1"), "not UTF-8")):
        resp = _upload(client, auth, event.id, data)
        assert resp.status_code == 422 and message in resp.get_data(as_text=True), data
    assert db.scalar(select(Job)) is None
    assert not any(upload_dir().glob("attendance-*"))  # refused files are not kept


def test_the_upload_job_is_shown_to_its_uploader_only_and_for_its_event(client, auth, factory, db):
    marketer, other = factory.user("marketer"), factory.user("marketer")
    event, second = make_event(db, marketer), make_event(db, marketer)
    auth.login(marketer)
    resp = _upload(client, auth, event.id, b"Attendee ID;Email\r\nA9;nobody@example.org\r\n")
    job = db.scalar(select(Job).where(Job.kind == "attendance.import"))
    assert "unmatched: 1" in client.get(resp.headers["Location"]).get_data(as_text=True)
    assert client.get(f"/events/{second.id}/attendance/import?job={job.id}").status_code == 404
    assert client.get(f"/events/{event.id}/attendance/import?job=99999999999999999999").status_code == 404
    auth.logout()
    auth.login(other)
    assert client.get(f"/events/{event.id}/attendance/import?job={job.id}").status_code == 404


def test_a_failed_upload_job_says_why_on_the_page(client, auth, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    auth.login(marketer)
    job = jobs.create(db, marketer, "attendance.import", {"path": "/nonexistent/attendance.csv",
                                                          "event_id": event.id}, subject=f"event:{event.id}")
    db.commit()
    db.refresh(job)
    assert job.state == "failed"
    page = client.get(f"/events/{event.id}/attendance/import?job={job.id}").get_data(as_text=True)
    assert "Failed" in page and "upload it again" in page


@pytest.mark.parametrize("role", ["field_rep", "call_centre", "compliance", "admin"])
def test_only_marketing_and_medical_upload_attendance(client, auth, factory, db, role):
    event = make_event(db, factory.user("marketer"))
    auth.login(factory.user(role))
    assert client.get(f"/events/{event.id}/attendance/import").status_code == 403
    resp = _upload(client, auth, event.id, b"Attendee ID\r\nA1\r\n")
    assert resp.status_code == 403
    assert db.scalar(select(Job)) is None


def test_transfer_form_on_the_event_page(client, auth, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    events.register(db, marketer, viewer_of(marketer), event, hcp.id)
    auth.login(marketer)
    token = _token(auth, f"/events/{event.id}")
    resp = client.post(f"/events/{event.id}/transfers", data={
        "csrf_token": token, "hcp_id": str(hcp.id), "kind": "meal", "amount": "32,50", "currency": "USD",
        "date": utcnow().date().isoformat()})
    assert resp.status_code == 302
    assert db.query(TransferOfValue).filter_by(hcp_id=hcp.id).one().amount == Decimal("32.5")
    bad = client.post(f"/events/{event.id}/transfers", data={
        "csrf_token": token, "hcp_id": str(hcp.id), "kind": "meal", "amount": "-3", "currency": "USD",
        "date": utcnow().date().isoformat()})
    assert bad.status_code == 422
    page = client.get(f"/events/{event.id}").get_data(as_text=True)
    assert "USD 32.50" in page


def test_transparency_report_page_and_downloads(client, auth, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp(last_name="Reported")
    events.record_transfer(db, marketer, viewer_of(marketer), event, hcp_id=hcp.id, kind="meal",
                           amount=Decimal("12"), currency="USD", paid_on=utcnow().date())
    auth.login(factory.user("compliance"))
    year = utcnow().year
    page = client.get(f"/reports/transfers?year={year}")
    assert page.status_code == 200 and "Reported" in page.get_data(as_text=True)
    op = client.get(f"/reports/transfers?year={year}&download=open_payments")
    assert op.mimetype == "text/csv" and op.get_data(as_text=True).startswith("Change_Type,")
    efpia = client.get(f"/reports/transfers?year={year}&download=efpia")
    assert efpia.get_data(as_text=True).startswith("Reporting_Year,")
    auth.logout()
    auth.login(marketer)
    assert client.get(f"/reports/transfers?year={year}").status_code == 403


def test_hcp_page_partial_shows_the_running_total(app, factory, db):
    from flask import render_template_string

    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    events.record_transfer(db, marketer, viewer_of(marketer), event, hcp_id=hcp.id, kind="meal",
                           amount=Decimal("19.99"), currency="USD", paid_on=utcnow().date())
    with app.test_request_context("/"):
        html = render_template_string('{% include "events/_hcp_transfers.html" %}', hcp=hcp)
    assert "USD 19.99" in html and f"Transfers of value {utcnow().year}" in html
