"""Contact import from a call-centre system's CSV export: idempotent, per-row errors, resumable."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm.callcentre import services as callcentre
from crm.callcentre.models import AdverseEventCase, Contact, MedicalInquiry
from crm.db import iso_z, utcnow
from crm.hcps.identifiers import make_npi
from crm.hcps.models import HCPIdentifier
from crm.integrations.callcentre.contacts import import_rows, read_rows
from crm.timeline.models import Interaction

HEADER = "Contact ID;HCP ID;NPI;Email;Occurred At;Direction;Medium;Reason;Summary;Details;Product\r\n"


def _line(ext, hcp_id="", npi="", email="", when=None, reason="product_information", summary="Asked for SmPC",
          details="", medium="phone"):
    when = when or iso_z(utcnow() - timedelta(hours=2))
    return f"{ext};{hcp_id};{npi};{email};{when};inbound;{medium};{reason};{summary};{details};CARDIO-10\r\n"


@pytest.fixture
def hcps(db, factory):
    by_id = factory.hcp()
    by_npi = factory.hcp()
    db.add(HCPIdentifier(hcp_id=by_npi.id, kind="npi", value=make_npi(91)))
    by_email = factory.hcp(email="grace@navy.example")
    db.flush()
    return by_id, by_npi, by_email


def test_import_matches_hcps_and_creates_contacts(db, hcps):
    by_id, by_npi, by_email = hcps
    data = (HEADER + _line("C1", hcp_id=by_id.id) + _line("C2", npi=make_npi(91), reason="medical_inquiry")
            + _line("C3", email="GRACE@navy.example", reason="adverse_event", summary="\"Rash\r\nafter dose\"")
            ).encode("utf-8-sig")
    outcomes = list(import_rows(db, None, read_rows(data)))
    assert [o.outcome for o in outcomes] == ["created", "created", "created"], outcomes
    contacts = {c.external_id: c for c in db.query(Contact).all()}
    assert contacts["C1"].hcp_id == by_id.id and contacts["C2"].hcp_id == by_npi.id
    assert contacts["C3"].hcp_id == by_email.id and contacts["C3"].summary == "Rash\r\nafter dose"
    assert all(c.source == "call_centre_system" for c in contacts.values())
    assert db.query(MedicalInquiry).filter_by(contact_id=contacts["C2"].id).count() == 1
    assert db.query(AdverseEventCase).filter_by(contact_id=contacts["C3"].id).count() == 1
    item = db.get(Interaction, contacts["C1"].interaction_id)
    assert item.source == "call_centre_system" and item.external_id == "C1" and item.owner_role == "call_centre"


def test_same_file_twice_creates_nothing_new(db, hcps):
    by_id = hcps[0]
    data = (HEADER + _line("C1", hcp_id=by_id.id) + _line("C2", hcp_id=by_id.id)).encode()
    list(import_rows(db, None, read_rows(data)))
    counts = (db.query(Contact).count(), db.query(Interaction).count())
    again = list(import_rows(db, None, read_rows(data)))
    assert [o.outcome for o in again] == ["skipped", "skipped"]
    assert (db.query(Contact).count(), db.query(Interaction).count()) == counts


def test_per_row_errors_do_not_stop_the_file(db, hcps):
    by_id = hcps[0]
    data = (HEADER
            + _line("", hcp_id=by_id.id)
            + _line("E1", hcp_id=999999)
            + _line("E2", email="nobody@nowhere.example")
            + _line("E3", hcp_id=by_id.id, when="2026-01-01T10:00:00")
            + _line("E4", hcp_id=by_id.id, reason="gossip")
            + _line("E5", hcp_id=by_id.id, summary="=cmd|' /C calc'!A0")
            + _line("E6", hcp_id="abc")
            + _line("OK", hcp_id=by_id.id)
            + _line("OK", hcp_id=by_id.id)).encode()
    outcomes = list(import_rows(db, None, read_rows(data)))
    assert [o.outcome for o in outcomes] == ["error"] * 7 + ["created", "error"]
    messages = [o.message for o in outcomes]
    assert "external id is empty" in messages[0] and "no HCP" in messages[2]
    assert "no offset" in messages[3] and "reason" in messages[4] and "formula" in messages[5]
    assert "not a number" in messages[6] and "already in row" in messages[8]
    assert db.query(Contact).count() == 1


def test_contact_import_killed_halfway_and_run_again_makes_no_duplicates(runner, db, hcps, tmp_path, monkeypatch):
    by_id = hcps[0]
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + "".join(_line(f"K{i}", hcp_id=by_id.id) for i in range(1, 6)), encoding="utf-8")
    real = callcentre.create_contact
    calls = {"n": 0}

    def dies_on_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or the process killed
        return real(*args, **kwargs)

    monkeypatch.setattr(callcentre, "create_contact", dies_on_fourth)
    killed = runner.invoke(args=["crm", "import", "contacts", str(path), "--batch-size", "2"])
    assert killed.exit_code != 0
    db.rollback()  # what the database does with the uncommitted batch of a dead process
    assert sorted(c.external_id for c in db.query(Contact).all()) == ["K1", "K2"]
    monkeypatch.setattr(callcentre, "create_contact", real)
    rerun = runner.invoke(args=["crm", "import", "contacts", str(path), "--batch-size", "2"])
    assert rerun.exit_code == 0, rerun.output
    assert "created 3, already imported 2, refused 0" in rerun.output
    assert sorted(c.external_id for c in db.query(Contact).all()) == ["K1", "K2", "K3", "K4", "K5"]
    assert db.query(Interaction).filter(Interaction.channel == "call_centre").count() == 5


def test_cli_reports_refused_rows_and_unreadable_files(runner, db, hcps, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + _line("R1", hcp_id=999999), encoding="utf-8")
    out = runner.invoke(args=["crm", "import", "contacts", str(path)])
    assert out.exit_code == 2 and "row 2 [R1]" in out.output
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\nx,y\n", encoding="utf-8")
    out = runner.invoke(args=["crm", "import", "contacts", str(bad)])
    assert out.exit_code == 1 and "missing column" in out.output
