"""The HCP page (profile, fatigue strip, timeline) and the feed page, for every role."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm.timeline.services import record_interaction
from tests.conftest import ROLES, days_ago, utc


def rec(db, hcps, at, channel="visit", kind=None, actor=None, **kw):
    ids = [h.id for h in hcps] if isinstance(hcps, list) else [hcps.id]
    item, _ = record_interaction(db, actor, hcp_ids=ids, occurred_at=at, channel=channel,
                                 kind=kind or f"{channel}.submitted", **kw)
    return item


@pytest.fixture
def hcp_with_history(db, factory):
    territory = factory.territory()
    rep = factory.user("field_rep", territories=[territory])
    h = factory.hcp(territory=territory, first_name="Grace", last_name="Hopper")
    colleague = factory.hcp(first_name="Alan", last_name="Turing")
    rec(db, h, days_ago(2), actor=rep, summary="Discussed SKU-A launch", products=["SKU-A"])
    rec(db, h, days_ago(5), channel="call_centre", kind="call_centre.medical_inquiry", sensitivity="medical",
        summary="Asked about interactions with warfarin")
    rec(db, h, days_ago(6), channel="call_centre", kind="call_centre.adverse_event", sensitivity="pv",
        summary="Reported dizziness")
    rec(db, h, days_ago(8), channel="email", kind="email.opened", source="esp", consent_gap=True,
        summary="Opened the SKU-A newsletter")
    rec(db, [h, colleague], days_ago(20), channel="event", kind="event.attended", source="event_platform",
        summary="Round table on asthma")
    old = rec(db, h, days_ago(30), actor=rep, summary="Visit with a typo")
    rec(db, h, days_ago(30), actor=rep, summary="Visit corrected", supersedes=old)
    return h, rep, colleague, old


@pytest.mark.parametrize("role", ROLES)
def test_hcp_page_renders_for_every_role_with_redaction(role, client, auth, factory, db, hcp_with_history):
    h, rep, colleague, old = hcp_with_history
    user = rep if role == "field_rep" else factory.user(role)
    auth.login(user)
    resp = client.get(f"/hcps/{h.id}")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert "Grace Hopper" in page
    assert "Contact fatigue" in page and "Why can I see this?" in page
    assert "Discussed SKU-A launch" in page and "Round table on asthma" in page
    assert "Alan Turing" in page  # the other participant of the group event, linked
    assert f'href="/hcps/{colleague.id}"' in page
    assert "consent gap" in page
    if role in ("field_rep", "marketer"):
        assert "Asked about interactions with warfarin" not in page and "Reported dizziness" not in page
        assert "Details restricted to Medical Affairs" in page
        assert "Details restricted to Pharmacovigilance" in page
        assert 'class="item redacted' in page
    else:
        assert "Asked about interactions with warfarin" in page and "Reported dizziness" in page
        assert "Details restricted" not in page
    if role in ("compliance", "admin"):
        assert "Visit with a typo" in page and f"corrected by #{old.superseded_by_id}" in page
    else:
        assert "Visit with a typo" not in page
    assert "Visit corrected" in page
    log_visit = f'href="/visits/new?hcp_id={h.id}"'
    assert (log_visit in page) is (role in ("field_rep", "medical"))
    assert 'style="' not in page and "<script>" not in page


def test_hcp_page_masks_contact_data_outside_territory(client, auth, factory, db, hcp_with_history):
    h, rep, _colleague, _old = hcp_with_history
    outsider = factory.user("field_rep", territories=[factory.territory()])
    auth.login(outsider)
    page = client.get(f"/hcps/{h.id}").get_data(as_text=True)
    assert h.email not in page and "Contact data masked" in page
    auth.logout()
    auth.login(rep)
    assert h.email in client.get(f"/hcps/{h.id}").get_data(as_text=True)


def test_hcp_page_filters_and_paging(client, auth, factory, db):
    h = factory.hcp()
    for n in range(55):
        rec(db, h, utc(2026, 1, 1) + timedelta(hours=n), summary=f"visit number {n:02d}")
    rec(db, h, utc(2025, 12, 15), channel="email", kind="email.opened", source="esp", summary="the email")
    auth.login(factory.user("marketer"))
    page = client.get(f"/hcps/{h.id}").get_data(as_text=True)
    assert "visit number 54" in page and "visit number 05" in page and "visit number 04" not in page
    assert 'rel="next"' in page
    import re

    next_url = re.search(r'<a rel="next" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    older = client.get(next_url).get_data(as_text=True)
    assert "visit number 04" in older and "the email" in older and "visit number 05" not in older
    assert 'rel="next"' not in older
    only_email = client.get(f"/hcps/{h.id}?channel=email").get_data(as_text=True)
    assert "the email" in only_email and "visit number" not in only_email
    assert 'value="email" checked' in only_email
    window = client.get(f"/hcps/{h.id}?since=2026-01-02&until=2026-01-02").get_data(as_text=True)
    assert "visit number 24" in window and "visit number 47" in window
    assert "visit number 23" not in window and "visit number 48" not in window
    assert client.get(f"/hcps/{h.id}?since=yesterday").status_code == 422
    assert client.get(f"/hcps/{h.id}?since=2026-01-03&until=2026-01-02").status_code == 422
    assert client.get(f"/hcps/{h.id}?cursor=tampered").status_code == 422


def test_merged_hcp_page_says_so(client, auth, factory, db):
    survivor = factory.hcp(first_name="Kept", last_name="Record")
    loser = factory.hcp(status="merged", merged_into_id=survivor.id)
    auth.login(factory.user("field_rep"))
    page = client.get(f"/hcps/{loser.id}").get_data(as_text=True)
    assert "merged into" in page and f'href="/hcps/{survivor.id}"' in page and "Kept Record" in page
    assert "Log a visit" not in page


def test_unknown_hcp_page_is_404_and_login_is_required(client, auth, factory):
    assert client.get("/hcps/1").status_code in (302, 401)
    auth.login(factory.user("marketer"))
    assert client.get("/hcps/999999").status_code == 404


def test_feed_page_shows_last_week_with_counts_and_filters(client, auth, factory, db):
    north, south = factory.territory(name="North"), factory.territory(name="South")
    a = factory.hcp(territory=north, profession="gp", first_name="Nora", last_name="North")
    b = factory.hcp(territory=south, profession="pharmacist", first_name="Sam", last_name="South")
    rec(db, a, days_ago(1), summary="recent visit north", products=["SKU-A"])
    rec(db, b, days_ago(2), channel="email", kind="email.opened", source="esp", summary="recent email south")
    rec(db, b, days_ago(3), channel="email", kind="email.clicked", source="esp", summary="another email south")
    rec(db, b, days_ago(3), channel="call_centre", kind="call_centre.adverse_event", sensitivity="pv",
        summary="dizzy after dose")
    rec(db, a, days_ago(20), summary="old visit")
    auth.login(factory.user("marketer"))
    resp = client.get("/feed")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert "recent visit north" in page and "recent email south" in page and "old visit" not in page
    assert "Nora North" in page and "Sam South" in page
    assert "dizzy after dose" not in page and "Details restricted to Pharmacovigilance" in page
    assert "Email <strong>2</strong>" in page and "Visit <strong>1</strong>" in page
    assert "All <strong>4</strong>" in page
    north_page = client.get(f"/feed?territory={north.code}").get_data(as_text=True)
    assert "recent visit north" in north_page and "recent email south" not in north_page
    assert "All <strong>1</strong>" in north_page
    gp = client.get("/feed?profession=pharmacist&channel=email").get_data(as_text=True)
    assert "recent email south" in gp and "recent visit north" not in gp and "All <strong>2</strong>" in gp
    assert "old visit" in client.get(f"/feed?since={days_ago(30).date().isoformat()}").get_data(as_text=True)
    assert "recent visit north" in client.get("/feed?product=SKU-A").get_data(as_text=True)
    assert client.get("/feed?profession=dentist").status_code == 422


@pytest.mark.parametrize("role", ROLES)
def test_feed_page_renders_for_every_role(role, client, auth, factory, db):
    h = factory.hcp()
    rec(db, h, days_ago(1), channel="call_centre", kind="call_centre.medical_inquiry", sensitivity="medical",
        summary="renal dosing question")
    auth.login(factory.user(role))
    page = client.get("/feed").get_data(as_text=True)
    assert ("renal dosing question" in page) is (role not in ("field_rep", "marketer"))

