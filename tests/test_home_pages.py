"""The start page per role: each role sees its own work first."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from crm.db import utcnow
from crm.hcps.services import create_territory
from crm.timeline.models import SensitiveRead
from crm.timeline.services import record_interaction
from crm.visits.models import Visit
from tests.conftest import ROLES, days_ago


def _home(client, auth, user):
    auth.login(user)
    resp = client.get("/")
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def _section(page, section_id):
    match = re.search(rf'<section class="card[^"]*" id="{section_id}">(.*?)</section>', page, re.S)
    assert match, f"no section {section_id}"
    return match.group(1)


def _visit(db, owner, hcp, **kw):
    values = {"owner_id": owner.id, "hcp_id": hcp.id, "status": "draft", "occurred_at": days_ago(1),
              "mode": "in_person"}
    values.update(kw)
    visit = Visit(**values)
    db.add(visit)
    db.flush()
    return visit


@pytest.mark.parametrize("role", ROLES)
def test_every_role_gets_a_phone_friendly_home_without_inline_script_or_style(client, auth, factory, role):
    page = _home(client, auth, factory.user(role))
    assert 'name="viewport" content="width=device-width' in page
    assert " style=" not in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)


def test_home_needs_a_login(client):
    resp = client.get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


# -- field rep --------------------------------------------------------------------------------------

def test_rep_sees_the_hcps_of_own_territories(client, auth, factory):
    mine, other = factory.territory(), factory.territory()
    rep = factory.user("field_rep", [mine])
    ours = factory.hcp(mine, last_name="Ourselves")
    factory.hcp(other, last_name="Elsewhere")
    section = _section(_home(client, auth, rep), "my-hcps")
    assert "Ourselves" in section and "Elsewhere" not in section
    assert f"/hcps/{ours.id}" in section
    assert "(1)" in section


def test_rep_sees_the_first_50_hcps_and_a_link_to_the_rest(client, auth, factory):
    mine = factory.territory()
    rep = factory.user("field_rep", [mine])
    for i in range(51):
        factory.hcp(mine, last_name=f"Zed{i:02d}")
    section = _section(_home(client, auth, rep), "my-hcps")
    assert len(re.findall(r"Zed\d\d", section)) == 50
    assert "Zed50" not in section  # ordered by name: the 51st is on the search page
    assert "All 51 HCPs in your territories" in section
    assert 'href="/hcps' in section


def test_rep_sees_own_drafts_not_another_reps(client, auth, db, factory):
    t = factory.territory()
    rep, colleague = factory.user("field_rep", [t]), factory.user("field_rep", [t])
    hcp = factory.hcp(t, first_name="Draft", last_name="Target")
    own = _visit(db, rep, hcp)
    theirs = _visit(db, colleague, hcp)
    submitted = _visit(db, rep, hcp, status="submitted", submitted_at=utcnow())
    section = _section(_home(client, auth, rep), "drafts")
    assert f'href="/visits/{own.id}"' in section and "Draft Target" in section
    assert f"/visits/{theirs.id}" not in section
    assert f"/visits/{submitted.id}" not in section


def test_rep_sees_follow_ups_due_overdue_first(client, auth, db, factory):
    t = factory.territory()
    rep, colleague = factory.user("field_rep", [t]), factory.user("field_rep", [t])
    a, b, c = factory.hcp(t), factory.hcp(t), factory.hcp(t)
    today = utcnow().date()
    _visit(db, rep, a, status="submitted", occurred_at=days_ago(20), follow_up_date=today - timedelta(days=3),
           follow_up_text="Send the study reprint")
    _visit(db, rep, b, status="submitted", occurred_at=days_ago(2), follow_up_date=today + timedelta(days=2),
           follow_up_text="Bring samples")
    _visit(db, rep, c, status="submitted", occurred_at=days_ago(2), follow_up_date=today + timedelta(days=60),
           follow_up_text="Far away")
    _visit(db, colleague, c, status="submitted", occurred_at=days_ago(2), follow_up_date=today,
           follow_up_text="Not mine")
    section = _section(_home(client, auth, rep), "follow-ups")
    assert "Send the study reprint" in section and "Bring samples" in section
    assert "Far away" not in section and "Not mine" not in section
    assert section.index("Send the study reprint") < section.index("Bring samples")
    assert "(overdue)" in section and 'class="overdue"' in section


def test_rep_with_nothing_to_do(client, auth, factory):
    page = _home(client, auth, factory.user("field_rep"))
    assert "No follow-ups due" in page and "No draft visits" in page and "No HCPs in your territories" in page


# -- marketer --------------------------------------------------------------------------------------

def test_marketer_sees_last_weeks_feed_with_channel_counts_and_redaction(client, auth, db, factory):
    marketer = factory.user("marketer")
    agent = factory.user("call_centre")
    hcp = factory.hcp(first_name="Feed", last_name="Person")
    record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=days_ago(1), channel="email",
                       kind="email.opened", source="esp", summary="Opened the March newsletter")
    record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=days_ago(2), channel="email",
                       kind="email.clicked", source="esp", summary="Clicked the dosing link")
    record_interaction(db, agent, hcp_ids=[hcp.id], occurred_at=days_ago(3), channel="call_centre",
                       kind="call_centre.adverse_event", sensitivity="pv", summary="Rash after second dose")
    record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=days_ago(10), channel="event",
                       kind="event.attended", source="event_platform", summary="Old congress")
    page = _home(client, auth, marketer)
    section = _section(page, "feed")
    assert 'href="/feed"' in section
    assert "email: <strong>2</strong>" in section and "call centre: <strong>1</strong>" in section
    assert "event:" not in section and "Old congress" not in section
    assert "Opened the March newsletter" in section and "Feed Person" in section
    assert "Rash after second dose" not in section
    assert "Details restricted to Pharmacovigilance" in section
    assert section.index("Opened the March newsletter") < section.index("Clicked the dosing link")
    # the marketer saw the pv item at existence level only: nothing to log
    assert db.scalar(select(SensitiveRead.id).where(SensitiveRead.viewer_id == marketer.id)) is None


def test_marketer_feed_shows_at_most_20(client, auth, db, factory):
    hcp = factory.hcp()
    for i in range(25):
        record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=days_ago(1 + i / 100), channel="email",
                           kind="email.delivered", source="esp", summary=f"Delivered number {i:02d}")
    section = _section(_home(client, auth, factory.user("marketer")), "feed")
    assert len(re.findall(r"Delivered number \d\d", section)) == 20
    assert "email: <strong>25</strong>" in section


# -- compliance -----------------------------------------------------------------------------------

def test_compliance_sees_latest_audit_records_and_sensitive_reads(client, auth, db, factory):
    compliance = factory.user("compliance")
    admin = factory.user("admin")
    create_territory(db, admin, "HOME1", "Home one")
    medical = factory.user("medical")
    hcp = factory.hcp()
    item, _ = record_interaction(db, medical, hcp_ids=[hcp.id], occurred_at=days_ago(1), channel="visit",
                                 kind="visit.submitted", sensitivity="medical")
    db.add(SensitiveRead(viewer_id=medical.id, what="interaction", interaction_id=item.id, hcp_id=hcp.id,
                         sensitivity="medical", occurred_at=utcnow()))
    db.flush()
    page = _home(client, auth, compliance)
    audit = _section(page, "latest-audit")
    assert "territory.create" in audit and "HOME1" in audit and 'href="/audit"' in audit
    reads = _section(page, "latest-reads")
    assert medical.name in reads and f"item #{item.id}" in reads and 'href="/audit/sensitive-reads"' in reads
    assert "Not verified yet" in _section(page, "chain")


# -- call centre and medical ----------------------------------------------------------------------

@pytest.mark.parametrize("role", ["call_centre", "medical"])
def test_clinical_roles_see_search_and_latest_medical_pv_items_in_full(client, auth, db, factory, role):
    user = factory.user(role)
    agent = factory.user("call_centre")
    hcp = factory.hcp(first_name="Pat", last_name="Ient")
    pv, _ = record_interaction(db, agent, hcp_ids=[hcp.id], occurred_at=days_ago(1), channel="call_centre",
                               kind="call_centre.adverse_event", sensitivity="pv",
                               summary="Rash after second dose")
    med, _ = record_interaction(db, agent, hcp_ids=[hcp.id], occurred_at=days_ago(2), channel="call_centre",
                                kind="call_centre.medical_inquiry", sensitivity="medical",
                                summary="Asked about use in pregnancy")
    record_interaction(db, agent, hcp_ids=[hcp.id], occurred_at=days_ago(1), channel="call_centre",
                       kind="call_centre.other", summary="Asked for a brochure")
    record_interaction(db, agent, hcp_ids=[hcp.id], occurred_at=days_ago(45), channel="call_centre",
                       kind="call_centre.adverse_event", sensitivity="pv", summary="Too old to list")
    page = _home(client, auth, user)
    search = _section(page, "hcp-search")
    assert 'action="/hcps"' in search and 'name="q"' in search
    items = _section(page, "sensitive-items")
    assert "Rash after second dose" in items and "Asked about use in pregnancy" in items
    assert "Asked for a brochure" not in items and "Too old to list" not in items
    assert "Pat Ient" in items
    logged = db.execute(select(SensitiveRead.interaction_id, SensitiveRead.sensitivity)
                        .where(SensitiveRead.viewer_id == user.id)).all()
    assert sorted(logged) == sorted([(pv.id, "pv"), (med.id, "medical")])


def test_clinical_home_leaves_out_superseded_items(client, auth, db, factory):
    medical = factory.user("medical")
    hcp = factory.hcp()
    old, _ = record_interaction(db, medical, hcp_ids=[hcp.id], occurred_at=days_ago(1), channel="visit",
                                kind="visit.submitted", sensitivity="medical", summary="First version")
    record_interaction(db, medical, hcp_ids=[hcp.id], occurred_at=days_ago(1), channel="visit",
                       kind="visit.submitted", sensitivity="medical", summary="Corrected version", supersedes=old)
    items = _section(_home(client, auth, medical), "sensitive-items")
    assert "Corrected version" in items and "First version" not in items


# -- admin ----------------------------------------------------------------------------------------

def test_admin_sees_counts_and_the_audit_trail_link(client, auth, db, factory):
    admin = factory.user("admin")
    factory.user("marketer")
    hcp = factory.hcp()
    factory.hcp()
    record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=days_ago(1), channel="email",
                       kind="email.opened", source="esp")
    page = _home(client, auth, admin)
    counts = _section(page, "counts")
    assert "Active users: <strong>2</strong>" in counts
    assert "HCPs: <strong>2</strong>" in counts
    assert "Interactions: <strong>1</strong>" in counts
    assert 'href="/audit"' in _section(page, "audit")
