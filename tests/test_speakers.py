"""KOL and speakers (issue 14 item 7): influence tier and expertise on the HCP, speaker qualifications, and
events that refuse an unqualified or over-cap speaker; remote visits' meeting links (item 8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from crm.audit.models import AuditRecord
from crm.events.models import Event, TransferCap, TransferOfValue
from crm.speakers.models import EventSpeaker
from tests.visits_support import make_world, visit_json

TODAY = datetime.now(UTC).date()


@pytest.fixture
def w(db, factory):
    world = make_world(db, factory)
    start = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=30)
    world.event = Event(name="Heart failure speaker programme", type="speaker_programme", starts_at=start,
                        ends_at=start + timedelta(days=1, hours=2), venue="Boston", organiser="Marketing",
                        products=[], country="US")
    db.add(world.event)
    db.flush()
    return world


def qualify(api, w, hcp, topics=("Heart failure",), trained_on=None, valid_until=None, who=None):
    return api(who or w.medical).post(f"/api/v1/hcps/{hcp.id}/speaker-qualifications", json={
        "topics": list(topics), "trained_on": (trained_on or TODAY - timedelta(days=30)).isoformat(),
        "valid_until": (valid_until or TODAY + timedelta(days=365)).isoformat()})


def engage(api, w, hcp, topic="Heart failure", fee=None, who=None):
    body = {"hcp_id": hcp.id, "topic": topic}
    if fee is not None:
        body["fee"] = fee
    return api(who or w.marketer).post(f"/api/v1/events/{w.event.id}/speakers", json=body)


# -- KOL profile ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role, status", [("medical", 200), ("admin", 200), ("rep", 403), ("marketer", 403),
                                          ("call_centre", 403), ("compliance", 403)])
def test_medical_and_admin_set_the_kol_profile(api, w, role, status):
    resp = api(getattr(w, role)).put(f"/api/v1/hcps/{w.hcp.id}/kol-profile",
                                     json={"influence_tier": "national", "expertise": ["Heart failure", "Lipids"]})
    assert resp.status_code == status, resp.get_json()
    shown = api(w.rep).get(f"/api/v1/hcps/{w.hcp.id}").get_json()
    if status == 200:
        assert (shown["influence_tier"], shown["expertise"]) == ("national", ["Heart failure", "Lipids"])
    else:
        assert (shown["influence_tier"], shown["expertise"]) == (None, [])


def test_kol_profile_bad_input_and_audit(api, w, db):
    url = f"/api/v1/hcps/{w.hcp.id}/kol-profile"
    assert api(w.medical).put(url, json={"influence_tier": "galactic", "expertise": []}).status_code == 422
    assert api(w.medical).put(url, json={"influence_tier": None, "expertise": [" "]}).status_code == 422
    assert api(w.medical).put(url, json={"influence_tier": None, "expertise": ["x\x00"]}).status_code == 422
    assert api(w.medical).put(url, json={"influence_tier": None}).status_code == 422
    assert api(w.medical).put("/api/v1/hcps/99999999999/kol-profile",
                              json={"influence_tier": None, "expertise": []}).status_code == 404
    ok = api(w.medical).put(url, json={"influence_tier": "local", "expertise": ["Asthma", "asthma"]})
    assert ok.status_code == 200 and ok.get_json()["expertise"] == ["Asthma"]
    assert db.scalar(select(AuditRecord.action).where(AuditRecord.action == "hcp.kol_profile")) == "hcp.kol_profile"


# -- qualifications ------------------------------------------------------------------------------------------

def test_qualifications_are_recorded_by_medical_and_admin_and_read_by_everyone(api, w):
    assert qualify(api, w, w.hcp).status_code == 201
    assert qualify(api, w, w.hcp, topics=["Lipids"], who=w.admin).status_code == 201
    for role in ("rep", "marketer", "call_centre", "compliance"):
        assert qualify(api, w, w.hcp, who=getattr(w, role)).status_code == 403
        items = api(getattr(w, role)).get(f"/api/v1/hcps/{w.hcp.id}/speaker-qualifications").get_json()["items"]
        assert {tuple(i["topics"]) for i in items} == {("Heart failure",), ("Lipids",)}
        assert all(i["valid_today"] for i in items)


@pytest.mark.parametrize("body, field", [
    ({"topics": []}, "topics"),
    ({"topics": [" "]}, "topics"),
    ({"trained_on": (TODAY + timedelta(days=2)).isoformat()}, "trained_on"),
    ({"valid_until": (TODAY - timedelta(days=60)).isoformat()}, "valid_until"),
    ({"valid_until": "9999-12-31"}, "valid_until"),
    ({"trained_on": "yesterday"}, "trained_on"),
])
def test_bad_qualifications_are_422(api, w, body, field):
    payload = {"topics": ["Heart failure"], "trained_on": (TODAY - timedelta(days=30)).isoformat(),
               "valid_until": (TODAY + timedelta(days=30)).isoformat(), **body}
    resp = api(w.medical).post(f"/api/v1/hcps/{w.hcp.id}/speaker-qualifications", json=payload)
    assert resp.status_code == 422 and field in resp.get_json()["errors"], resp.get_json()


# -- event speakers ------------------------------------------------------------------------------------------

def test_a_qualified_speaker_is_engaged(api, w, db):
    qualify(api, w, w.hcp)
    resp = engage(api, w, w.hcp, topic="heart FAILURE", fee={"amount": "1500.00"})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["fee"] == {"amount": "1500.00", "currency": "USD"} and body["hcp_name"] == w.hcp.full_name
    listed = api(w.rep).get(f"/api/v1/events/{w.event.id}/speakers").get_json()["items"]
    assert [s["hcp_id"] for s in listed] == [w.hcp.id]
    assert engage(api, w, w.hcp).status_code == 409
    assert db.scalar(select(AuditRecord.action).where(AuditRecord.entity == "event_speaker")) == "event_speaker.add"


@pytest.mark.parametrize("setup, words", [
    (None, "has no speaker qualification"),
    ({"topics": ["Lipids"]}, "no speaker qualification for “Heart failure”"),
    ({"valid_until": TODAY + timedelta(days=30)}, "no speaker qualification for"),  # lapses before the 2nd day
    ({"trained_on": TODAY - timedelta(days=400), "valid_until": TODAY - timedelta(days=10)}, "no speaker"),
])
def test_an_unqualified_speaker_is_refused_with_the_reason(api, w, db, setup, words):
    if setup is not None:
        assert qualify(api, w, w.hcp, **setup).status_code == 201
    resp = engage(api, w, w.hcp)
    assert resp.status_code == 422
    assert words in " ".join(resp.get_json()["errors"]["hcp_id"])
    assert db.scalar(select(EventSpeaker.id)) is None


def test_an_over_cap_speaker_is_refused_even_where_the_cap_only_warns(api, w, db):
    db.add(TransferCap(country="US", currency="USD", annual_cap=Decimal("5000"), action="warn"))
    other = Event(name="Past dinner", type="round_table", starts_at=w.event.starts_at - timedelta(days=400),
                  ends_at=w.event.starts_at - timedelta(days=399), venue="x", organiser="x", products=[], country="US")
    db.add(other)
    db.flush()
    db.add(TransferOfValue(event_id=other.id, hcp_id=w.hcp.id, kind="meal", amount=Decimal("4000"), currency="USD",
                           paid_on=w.event.starts_at.date()))
    db.flush()
    qualify(api, w, w.hcp)
    refused = engage(api, w, w.hcp, fee={"amount": "1500.00", "currency": "USD"})
    assert refused.status_code == 422
    message = " ".join(refused.get_json()["errors"]["fee"])
    assert "USD 4,000.00" in message and "USD 5,500.00" in message and "annual cap of USD 5,000.00" in message
    assert engage(api, w, w.hcp, fee={"amount": "1000.00"}).status_code == 201  # exactly at the cap


def test_agreed_fees_of_events_to_come_count_toward_the_cap(api, w, db):
    db.add(TransferCap(country="US", currency="USD", annual_cap=Decimal("3000"), action="block"))
    second = Event(name="Second programme", type="speaker_programme", starts_at=w.event.starts_at + timedelta(days=2),
                   ends_at=w.event.ends_at + timedelta(days=2), venue="x", organiser="x", products=[], country="US")
    db.add(second)
    db.flush()
    qualify(api, w, w.hcp)
    assert engage(api, w, w.hcp, fee={"amount": "2000"}).status_code == 201
    resp = api(w.marketer).post(f"/api/v1/events/{second.id}/speakers",
                                json={"hcp_id": w.hcp.id, "topic": "Heart failure", "fee": {"amount": "1500"}})
    assert resp.status_code == 422 and "USD 2,000.00 in agreed speaker fees" in resp.get_json()["errors"]["fee"][0]


@pytest.mark.parametrize("fee, words", [
    ({"amount": "100", "currency": "EUR"}, "agreed in USD"),
    ({"amount": "100", "currency": "ZZZ"}, "ISO 4217"),
    ({"amount": "10.123"}, "decimals"),
    ({"amount": "-5"}, None),
    ({"amount": "1e400"}, None),
])
def test_bad_fees_are_422(api, w, fee, words):
    qualify(api, w, w.hcp)
    resp = engage(api, w, w.hcp, fee=fee)
    assert resp.status_code == 422, resp.get_json()
    if words:
        assert words in " ".join(resp.get_json()["errors"]["fee"])


@pytest.mark.parametrize("role, status", [("marketer", 201), ("medical", 201), ("rep", 403), ("call_centre", 403),
                                          ("compliance", 403), ("admin", 403)])
def test_who_engages_speakers(api, w, role, status):
    qualify(api, w, w.hcp)
    assert engage(api, w, w.hcp, who=getattr(w, role)).status_code == status


def test_unknown_ids_are_404_or_422(api, w):
    assert api(w.marketer).post("/api/v1/events/99999/speakers",
                                json={"hcp_id": w.hcp.id, "topic": "x"}).status_code == 404
    assert api(w.marketer).post(f"/api/v1/events/{w.event.id}/speakers",
                                json={"hcp_id": 2**31 - 1, "topic": "x"}).status_code == 404
    assert api(w.marketer).post(f"/api/v1/events/{w.event.id}/speakers",
                                json={"hcp_id": 2**40, "topic": "x"}).status_code == 422


# -- pages ---------------------------------------------------------------------------------------------------

def _csrf(client, path):
    import re

    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', client.get(path).get_data(as_text=True)
                     ).group(1)


def test_the_hcp_page_shows_and_edits_the_kol_profile_and_qualifications(client, auth, w):
    auth.login(w.medical)
    page = client.get(f"/hcps/{w.hcp.id}").get_data(as_text=True)
    assert "KOL profile and speaking" in page and "Not qualified as a speaker" in page
    token = _csrf(client, f"/hcps/{w.hcp.id}")
    client.post(f"/hcps/{w.hcp.id}/kol-profile", data={"csrf_token": token, "influence_tier": "regional",
                                                       "expertise": "Heart failure, Lipids"})
    bad = client.post(f"/hcps/{w.hcp.id}/speaker-qualifications", data={
        "csrf_token": token, "topics": "Heart failure", "trained_on": "2026-13-40", "valid_until": "2027-01-01"})
    assert bad.status_code == 302
    assert "Trained on: enter a date" in client.get(f"/hcps/{w.hcp.id}").get_data(as_text=True)
    client.post(f"/hcps/{w.hcp.id}/speaker-qualifications", data={
        "csrf_token": token, "topics": "Heart failure", "trained_on": (TODAY - timedelta(days=3)).isoformat(),
        "valid_until": (TODAY + timedelta(days=300)).isoformat()})
    page = client.get(f"/hcps/{w.hcp.id}").get_data(as_text=True)
    assert "Regional" in page and "Heart failure, Lipids" in page and "Speaker qualification recorded" in page
    auth.logout()
    auth.login(w.rep)
    page = client.get(f"/hcps/{w.hcp.id}").get_data(as_text=True)
    assert "Regional" in page and "Record a speaker qualification" not in page


def test_the_event_page_picks_speakers_and_shows_refusals(client, auth, api, w):
    auth.login(w.marketer)
    token = _csrf(client, f"/events/{w.event.id}")
    client.post(f"/events/{w.event.id}/speakers", data={"csrf_token": token, "hcp_id": str(w.hcp.id),
                                                        "topic": "Heart failure"})
    page = client.get(f"/events/{w.event.id}").get_data(as_text=True)
    assert "Speaker refused" in page and "has no speaker qualification" in page
    qualify(api, w, w.hcp)
    for junk in ("99999999999999", "abc"):
        client.post(f"/events/{w.event.id}/speakers", data={"csrf_token": token, "hcp_id": junk, "topic": "x"})
        assert "give the id of an existing HCP" in client.get(f"/events/{w.event.id}").get_data(as_text=True)
    client.post(f"/events/{w.event.id}/speakers", data={"csrf_token": token, "hcp_id": str(w.hcp.id),
                                                        "topic": "Heart failure", "fee": "250"})
    page = client.get(f"/events/{w.event.id}").get_data(as_text=True)
    assert "Speaker added" in page and "fee USD 250.00" in page


# -- remote visits' meeting links (item 8) ---------------------------------------------------------------------

def test_a_remote_visit_carries_a_meeting_link_on_the_visit_and_the_timeline(api, w):
    url = "https://meet.example.com/abc-defg-hij"
    created = api(w.rep).post("/api/v1/visits", json=visit_json(w.hcp.id, mode="remote", meeting_url=url))
    assert created.status_code == 201 and created.get_json()["meeting_url"] == url
    visit_id = created.get_json()["id"]
    assert api(w.rep).post(f"/api/v1/visits/{visit_id}/submit").status_code == 200
    item = api(w.marketer).get(f"/api/v1/hcps/{w.hcp.id}/timeline").get_json()["items"][0]
    assert item["details"]["meeting_url"] == url
    in_person = api(w.rep).patch(f"/api/v1/visits/{visit_id}", json={"notes": "x"})
    assert in_person.status_code == 409  # submitted: locked


@pytest.mark.parametrize("value, words", [
    ("http://meet.example.com/x", "https"), ("https://", "host"), ("https://localhost/x", "host"),
    ("javascript:alert(1)", "https"), ("https://u:p@meet.example.com/x", "user name"),
    ("https://meet.example.com/a b", "spaces"), ("https://meet.example.com:99999/x", "not a valid URL"),
    ("https://meet.example.com/" + "x" * 600, "Longer than maximum"),
])
def test_bad_meeting_links_are_422(api, w, value, words):
    resp = api(w.rep).post("/api/v1/visits", json=visit_json(w.hcp.id, mode="remote", meeting_url=value))
    assert resp.status_code == 422 and words in " ".join(resp.get_json()["errors"]["meeting_url"]), resp.get_json()


def test_an_in_person_visit_keeps_no_meeting_link(api, w, db):
    refused = api(w.rep).post("/api/v1/visits", json=visit_json(w.hcp.id, meeting_url="https://meet.example.com/x"))
    assert refused.status_code == 422 and "only a remote visit" in refused.get_json()["errors"]["meeting_url"][0]
    created = api(w.rep).post("/api/v1/visits", json=visit_json(w.hcp.id, mode="remote",
                                                                meeting_url="https://meet.example.com/x"))
    moved = api(w.rep).patch(f"/api/v1/visits/{created.get_json()['id']}", json={"mode": "in_person"})
    assert moved.status_code == 200 and moved.get_json()["meeting_url"] is None


def test_the_meeting_link_is_withheld_where_the_visit_content_is(api, w):
    created = api(w.medical).post("/api/v1/visits", json=visit_json(
        w.hcp.id, mode="remote", meeting_url="https://meet.example.com/msl"))
    visit_id = created.get_json()["id"]
    assert api(w.medical).post(f"/api/v1/visits/{visit_id}/submit").status_code == 200
    assert api(w.rep).get(f"/api/v1/visits/{visit_id}").get_json()["meeting_url"] is None
    assert api(w.compliance).get(f"/api/v1/visits/{visit_id}").get_json()["meeting_url"] == \
        "https://meet.example.com/msl"
    item = api(w.rep).get(f"/api/v1/hcps/{w.hcp.id}/timeline").get_json()["items"][0]
    assert "meeting_url" not in item["details"]


def test_the_visit_form_and_pages_show_the_meeting_link(client, auth, w, api):
    created = api(w.rep).post("/api/v1/visits", json=visit_json(w.hcp.id, mode="remote",
                                                                meeting_url="https://meet.example.com/room-7"))
    visit_id = created.get_json()["id"]
    api(w.rep).post(f"/api/v1/visits/{visit_id}/submit")
    auth.login(w.rep2)
    assert "https://meet.example.com/room-7" in client.get(f"/visits/{visit_id}").get_data(as_text=True)
    assert "Meeting link: <a href=\"https://meet.example.com/room-7\"" in \
        client.get(f"/hcps/{w.hcp.id}").get_data(as_text=True)
