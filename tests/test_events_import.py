"""Attendance CSV import: the bad input an event platform's export really brings."""

from __future__ import annotations

import pytest
from sqlalchemy import text as sql_text

from crm.errors import Invalid
from crm.events.models import Attendance
from crm.hcps.identifiers import make_npi
from crm.hcps.models import HCPIdentifier
from crm.integrations.eventplatform.attendance import import_attendance, resolve_unmatched, unmatched_rows
from crm.integrations.eventplatform.models import UnmatchedAttendanceRow
from crm.timeline.models import Interaction
from tests.events_support import make_event, viewer_of


@pytest.fixture
def setup(db, factory):
    marketer = factory.user("marketer")
    event = make_event(db, marketer, external_id="CV-778")
    by_npi = factory.hcp(first_name="Grace", last_name="Hopper")
    db.add(HCPIdentifier(hcp_id=by_npi.id, kind="npi", value=make_npi(77)))
    by_email = factory.hcp(email="Ada@Clinic.example")
    db.flush()
    return {"marketer": marketer, "event": event, "by_npi": by_npi, "by_email": by_email, "npi": make_npi(77)}


def _run(db, s, text, encoding="utf-8"):
    return import_attendance(db, s["marketer"], viewer_of(s["marketer"]), s["event"], text.encode(encoding))


def _attendees(db, event):
    db.refresh(event)
    item = db.get(Interaction, event.attendance_interaction_id)
    return sorted(p.hcp_id for p in item.participants) if item else []


def test_basic_import_matches_npi_and_email(db, setup):
    s = setup
    text = ("Attendee ID,First Name,Last Name,Email,NPI,Status\n"
            f"A1,Grace,Hopper,,{s['npi']},Attended\n"
            "A2,Ada,L,ada@clinic.example,,yes\n")
    report = _run(db, s, text)
    assert report.summary() == {"attended": 2, "no_show": 0, "unchanged": 0, "unmatched": 0, "error": 0}
    assert _attendees(db, s["event"]) == sorted([s["by_npi"].id, s["by_email"].id])
    assert {r.message for r in report.rows} == {"matched by NPI", "matched by email"}


def test_bom_and_semicolons_and_crlf_inside_quotes(db, setup):
    s = setup
    text = ("\ufeffATTENDEE_ID;first name;LAST NAME;E-Mail;npi;attendance\r\n"
            f"A1;\"Grace\r\nMurray\";Hopper;;{s['npi']};no show\r\n"
            "A2;Ada;\"Love;lace\";ada@clinic.example;;attended\r\n")
    report = _run(db, s, text)
    assert report.summary()["error"] == 0, report.rows
    assert report.count("no_show") == 1 and report.count("attended") == 1
    assert db.query(Attendance).filter_by(event_id=s["event"].id, hcp_id=s["by_npi"].id).one().status == "no_show"


def test_utf16_export_with_tabs(db, setup):
    s = setup
    text = f"Attendee ID\tNPI\n A9 \t{s['npi']}\n"
    report = import_attendance(db, None, None, s["event"], b"\xff\xfe" + text.encode("utf-16-le"))
    assert report.count("attended") == 1 and report.rows[0].external_id == "A9"


def test_formula_in_a_name_is_refused_for_that_row(db, setup):
    s = setup
    text = ("attendee id,first name,last name,email\n"
            "A1,=HYPERLINK(\"http://evil.example\"),Hopper,ada@clinic.example\n"
            "A2,@SUM(1),x,\n"
            "A3,Ada,Lovelace,ada@clinic.example\n")
    report = _run(db, s, text)
    errors = {r.external_id: r.message for r in report.errors}
    assert set(errors) == {"A1", "A2"} and "formula" in errors["A1"]
    assert report.count("attended") == 1
    assert db.query(UnmatchedAttendanceRow).count() == 0


def test_unknown_hcp_is_kept_for_review_and_resolved(db, setup, factory):
    s = setup
    text = "attendee id,first name,last name,email\nZ1,Unknown,Person,nobody@nowhere.example\n"
    report = _run(db, s, text)
    assert report.summary()["unmatched"] == 1 and report.rows[0].outcome == "unmatched"
    rows = unmatched_rows(db, s["event"])
    assert len(rows) == 1 and rows[0][1]["email"] == "nobody@nowhere.example"
    raw = db.execute(sql_text("SELECT data FROM unmatched_attendance_rows")).scalar()
    assert "nobody@nowhere.example" not in raw  # encrypted at rest
    # a second import keeps one row
    assert _run(db, s, text).rows[0].message.startswith("already kept for review")
    assert db.query(UnmatchedAttendanceRow).count() == 1
    hcp = factory.hcp()
    resolve_unmatched(db, s["marketer"], viewer_of(s["marketer"]), s["event"], rows[0][0].id, hcp.id)
    assert hcp.id in _attendees(db, s["event"])
    # the platform's id now matches by itself
    assert db.query(HCPIdentifier).filter_by(kind="event_platform", value="Z1").one().hcp_id == hcp.id
    again = _run(db, s, text)
    assert again.rows[0].outcome == "unchanged"


def test_same_file_twice_changes_nothing(db, setup):
    s = setup
    text = f"attendee id,npi,status\nA1,{s['npi']},attended\nA2,,attended\n"
    first = _run(db, s, text)
    items = db.query(Interaction).count()
    attendance = db.query(Attendance).count()
    second = _run(db, s, text)
    assert first.count("attended") == 1 and second.count("unchanged") == 1
    assert second.count("unmatched") == 1
    assert db.query(Interaction).count() == items and db.query(Attendance).count() == attendance


def test_row_for_another_event_is_refused_per_row(db, setup):
    s = setup
    text = (f"attendee id,event id,npi\n"
            f"A1,CV-999,{s['npi']}\n"
            f"A2,CV-778,{s['npi']}\n")
    report = _run(db, s, text)
    assert [r.outcome for r in report.rows] == ["error", "attended"]
    assert "not this event" in report.rows[0].message
    by_crm_id = _run(db, s, f"attendee id,event,npi\nA3,{s['event'].id},{make_npi(78)}\n")
    assert by_crm_id.rows[0].outcome == "unmatched"


def test_row_problems(db, setup):
    s = setup
    text = ("attendee id,npi,status,first name\n"
            f",{s['npi']},attended,a\n"
            f"A1,1234567890,attended,b\n"
            f"A2,{s['npi']},perhaps,c\n"
            f"A3,{s['npi']},attended,d\n"
            f"A3,{s['npi']},attended,e\n"
            f"A4,{s['npi']},attended,f,extra\n"
            "\n")
    report = _run(db, s, text)
    outcomes = [(r.row, r.outcome) for r in report.rows]
    assert outcomes == [(2, "error"), (3, "error"), (4, "error"), (5, "attended"), (6, "error"), (7, "error")]
    messages = [r.message for r in report.errors]
    assert "external id is empty" in messages[0] and "check digit" in messages[1]
    assert "neither attended" in messages[2] and "already in row 5" in messages[3]
    assert "more cells" in messages[4]


def test_whole_file_refusals(db, setup):
    s = setup
    with pytest.raises(Invalid) as missing:
        _run(db, s, "name,email\nx,y\n")
    assert "missing column" in missing.value.errors["header"][0]
    with pytest.raises(Invalid):
        import_attendance(db, None, None, s["event"], b"attendee id\n\xff\xfeA1\n")
    with pytest.raises(Invalid):
        _run(db, s, "")
    with pytest.raises(Invalid):
        _run(db, s, "attendee id,Registration ID\nA,B\n")


def test_cli_import(runner, db, setup, tmp_path):
    s = setup
    path = tmp_path / "export.csv"
    path.write_bytes(f"\ufeffAttendee ID;NPI\r\nA1;{s['npi']}\r\nA2;{make_npi(79)}\r\n".encode())
    out = runner.invoke(args=["crm", "import", "attendance", str(s["event"].id), str(path)])
    assert out.exit_code == 0, out.output
    assert "attended 1" in out.output and "unmatched 1" in out.output
    again = runner.invoke(args=["crm", "import", "attendance", str(s["event"].id), str(path)])
    assert "unchanged 1" in again.output
    bad = tmp_path / "bad.csv"
    bad.write_text(f"attendee id,npi\n,{s['npi']}\n")
    assert runner.invoke(args=["crm", "import", "attendance", str(s["event"].id), str(bad)]).exit_code == 2
    assert runner.invoke(args=["crm", "import", "attendance", "999999", str(path)]).exit_code == 1
    header_only = tmp_path / "nope.csv"
    header_only.write_text("who,what\n")
    assert runner.invoke(args=["crm", "import", "attendance", str(s["event"].id), str(header_only)]).exit_code == 1
