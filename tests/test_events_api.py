"""Events through the API: creation rules, invitations with consent, registrations, attendance on the timeline."""

from __future__ import annotations

from crm.events.models import Attendance, Invitation
from crm.timeline.models import Interaction
from tests.consent_support import grant, mails_to
from tests.events_support import event_body, make_event


def test_marketer_and_medical_create_events(api, factory):
    for role in ("marketer", "medical"):
        resp = api(factory.user(role)).post("/api/v1/events", json=event_body())
        assert resp.status_code == 201, resp.get_json()
        body = resp.get_json()
        assert body["starts_at"] == "2026-03-10T17:00:00Z" and body["ends_at"] == "2026-03-10T19:30:00Z"
        assert body["type"] == "round_table" and body["sensitivity"] == "standard"


def test_other_roles_cannot_create_events(api, factory):
    for role in ("field_rep", "call_centre", "compliance", "admin"):
        resp = api(factory.user(role)).post("/api/v1/events", json=event_body())
        assert resp.status_code == 403
        assert resp.get_json()["rule"] == "event.write:role"


def test_end_before_start_is_422(api, factory):
    c = api(factory.user("marketer"))
    resp = c.post("/api/v1/events", json=event_body(ends_at="2026-03-10T16:00:00Z"))
    assert resp.status_code == 422
    assert "ends_at" in resp.get_json()["errors"]
    same = c.post("/api/v1/events", json=event_body(ends_at="2026-03-10T17:00:00Z"))
    assert same.status_code == 422


def test_event_input_refusals(api, factory):
    c = api(factory.user("marketer"))
    assert c.post("/api/v1/events", json=event_body(starts_at="2026-03-10T17:00:00")).status_code == 422
    assert c.post("/api/v1/events", json=event_body(type="party")).status_code == 422
    no_place = event_body()
    no_place.pop("venue")
    resp = c.post("/api/v1/events", json=no_place)
    assert resp.status_code == 422 and "venue" in resp.get_json()["errors"]
    assert c.post("/api/v1/events", json=event_body(url="javascript:alert(1)", venue=None)).status_code == 422
    assert c.post("/api/v1/events", json=event_body(sensitivity="pv")).status_code == 422
    assert c.post("/api/v1/events", json=event_body(color="red")).status_code == 422
    webinar = c.post("/api/v1/events", json=event_body(type="webinar", venue=None, url="https://webinar.example/x"))
    assert webinar.status_code == 201


def test_event_external_id_replay_answers_200(api, factory):
    c = api(factory.user("marketer"))
    first = c.post("/api/v1/events", json=event_body(external_id="CVENT-123"))
    again = c.post("/api/v1/events", json=event_body(external_id="CVENT-123", name="Other name"))
    assert first.status_code == 201 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]


def test_list_and_get_events(api, factory):
    marketer = factory.user("marketer")
    c = api(marketer)
    ids = [c.post("/api/v1/events", json=event_body(starts_at=f"2026-0{m}-01T09:00:00Z",
                                                    ends_at=f"2026-0{m}-01T17:00:00Z")).get_json()["id"]
           for m in (1, 2, 3)]
    rep = api(factory.user("field_rep"))
    page1 = rep.get("/api/v1/events?limit=2").get_json()
    assert [e["id"] for e in page1["items"]] == [ids[2], ids[1]]
    page2 = rep.get(f"/api/v1/events?limit=2&cursor={page1['next_cursor']}").get_json()
    assert ids[0] in [e["id"] for e in page2["items"]]
    assert rep.get(f"/api/v1/events/{ids[0]}").status_code == 200
    assert rep.get("/api/v1/events/999999").status_code == 404


def test_email_invitations_check_consent_and_list_skipped(api, factory, db, app):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    ok = factory.hcp()
    no_consent = factory.hcp()
    withdrawn = factory.hcp()
    grant(db, ok, channel="email", purpose="events")
    grant(db, withdrawn, channel="email", purpose="events")
    from tests.consent_support import withdraw

    withdraw(db, withdrawn, channel="email", purpose="events")
    resp = api(marketer).post(f"/api/v1/events/{event.id}/invitations",
                              json={"hcp_ids": [ok.id, no_consent.id, withdrawn.id]})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["sent"] == 1 and body["sent_hcp_ids"] == [ok.id]
    skipped = {s["hcp_id"]: s for s in body["skipped"]}
    assert set(skipped) == {no_consent.id, withdrawn.id}
    assert all(s["reason"].startswith("no consent for email/events") for s in skipped.values())
    assert skipped[no_consent.id]["rule"] != skipped[withdrawn.id]["rule"]
    mails = mails_to(app.config["CRM_OUTBOX_DIR"], ok.email)
    assert len(mails) == 1 and mails[0]["Subject"] == f"Invitation: {event.name}"
    assert mails[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mails_to(app.config["CRM_OUTBOX_DIR"], no_consent.email) == []
    # the invitation is a timeline fact for the invited HCP only
    inv = db.query(Invitation).filter_by(event_id=event.id, hcp_id=ok.id).one()
    assert db.get(Interaction, inv.interaction_id).kind == "event.invited"
    listed = api(marketer).get(f"/api/v1/events/{event.id}/invitations").get_json()["items"]
    assert {(i["hcp_id"], i["status"]) for i in listed} == {(ok.id, "sent"), (no_consent.id, "skipped"),
                                                            (withdrawn.id, "skipped")}


def test_second_invitation_sends_no_second_mail(api, factory, db, app):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    grant(db, hcp, channel="email", purpose="events")
    c = api(marketer)
    assert c.post(f"/api/v1/events/{event.id}/invitations", json={"hcp_ids": [hcp.id]}).get_json()["sent"] == 1
    again = c.post(f"/api/v1/events/{event.id}/invitations", json={"hcp_ids": [hcp.id]}).get_json()
    assert again["sent"] == 0 and again["skipped"][0]["rule"] == "already-invited"
    assert len(mails_to(app.config["CRM_OUTBOX_DIR"], hcp.email)) == 1


def test_skipped_hcp_is_invited_once_consent_arrives(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    c = api(marketer)
    assert c.post(f"/api/v1/events/{event.id}/invitations", json={"hcp_ids": [hcp.id]}).get_json()["sent"] == 0
    grant(db, hcp, channel="email", purpose="events")
    assert c.post(f"/api/v1/events/{event.id}/invitations", json={"hcp_ids": [hcp.id]}).get_json()["sent"] == 1
    assert db.query(Invitation).filter_by(event_id=event.id, hcp_id=hcp.id).one().status == "sent"


def test_invitation_refusals(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    c = api(marketer)
    assert c.post(f"/api/v1/events/{event.id}/invitations", json={"hcp_ids": [999999]}).status_code == 422
    assert c.post(f"/api/v1/events/{event.id}/invitations", json={"hcp_ids": []}).status_code == 422
    assert c.post("/api/v1/events/999999/invitations", json={"hcp_ids": [1]}).status_code == 404
    rep = api(factory.user("field_rep"))
    assert rep.post(f"/api/v1/events/{event.id}/invitations", json={"hcp_ids": [factory.hcp().id]}).status_code == 403


def test_invitation_by_other_channel_needs_no_email_consent(api, factory, db, app):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    body = api(marketer).post(f"/api/v1/events/{event.id}/invitations",
                              json={"hcp_ids": [hcp.id], "channel": "other"}).get_json()
    assert body["sent"] == 1
    assert mails_to(app.config["CRM_OUTBOX_DIR"], hcp.email) == []


def test_registration_is_idempotent(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    c = api(marketer)
    first = c.post(f"/api/v1/events/{event.id}/registrations", json={"hcp_id": hcp.id})
    again = c.post(f"/api/v1/events/{event.id}/registrations", json={"hcp_id": hcp.id})
    assert first.status_code == 201 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert len(c.get(f"/api/v1/events/{event.id}/registrations").get_json()["items"]) == 1
    assert c.post(f"/api/v1/events/{event.id}/registrations", json={"hcp_id": 999999}).status_code == 422


def _timeline(client, hcp_id):
    return client.get(f"/api/v1/hcps/{hcp_id}/timeline?channel=event").get_json()["items"]


def test_attendance_is_one_interaction_with_all_attendees(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    a, b, c_ = factory.hcp(), factory.hcp(), factory.hcp()
    c = api(marketer)
    r1 = c.post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": a.id, "status": "attended"})
    assert r1.status_code == 201
    first_item = r1.get_json()["attended_interaction_id"]
    r2 = c.post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": b.id, "status": "attended"})
    second_item = r2.get_json()["attended_interaction_id"]
    assert second_item != first_item
    old = db.get(Interaction, first_item)
    new = db.get(Interaction, second_item)
    assert old.superseded_by_id == new.id and new.supersedes_id == old.id
    assert sorted(p.hcp_id for p in new.participants) == sorted([a.id, b.id])
    assert new.kind == "event.attended" and new.channel == "event" and new.occurred_at == event.starts_at
    # one event = one current item on every attendee's timeline
    rep = api(factory.user("field_rep"))
    for hcp in (a, b):
        items = _timeline(rep, hcp.id)
        assert [i["id"] for i in items if i["kind"] == "event.attended"] == [new.id]
    no_show = c.post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": c_.id, "status": "no_show"})
    assert no_show.status_code == 201
    items = _timeline(rep, c_.id)
    assert [i["kind"] for i in items] == ["event.no_show"]
    # attendees' item is unchanged by a no-show
    db.refresh(event)
    assert event.attendance_interaction_id == new.id


def test_same_attendance_twice_changes_nothing(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    c = api(marketer)
    first = c.post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": hcp.id, "status": "attended"})
    count = db.query(Interaction).count()
    again = c.post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": hcp.id, "status": "attended"})
    assert first.status_code == 201 and again.status_code == 200
    assert db.query(Interaction).count() == count
    assert db.query(Attendance).filter_by(event_id=event.id).count() == 1


def test_no_show_who_came_after_all_is_corrected(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp, other = factory.hcp(), factory.hcp()
    c = api(marketer)
    c.post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": other.id, "status": "attended"})
    c.post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": hcp.id, "status": "no_show"})
    no_show_item = db.query(Attendance).filter_by(event_id=event.id, hcp_id=hcp.id).one().no_show_interaction_id
    resp = c.post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": hcp.id, "status": "attended"})
    assert resp.status_code == 200
    group = resp.get_json()["attended_interaction_id"]
    assert db.get(Interaction, no_show_item).superseded_by_id == group
    rep = api(factory.user("field_rep"))
    assert [i["kind"] for i in _timeline(rep, hcp.id)] == ["event.attended"]
    # compliance sees the correction next to the original
    compliance = api(factory.user("compliance"))
    assert sorted(i["kind"] for i in _timeline(compliance, hcp.id)) == ["event.attended", "event.no_show"]
    # and back: the last mark wins, the attendee leaves the group item
    c.post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": hcp.id, "status": "no_show"})
    assert [i["kind"] for i in _timeline(rep, hcp.id)] == ["event.no_show"]
    assert [i["hcp_ids"] for i in _timeline(rep, other.id)] == [[other.id]]


def test_last_attendee_marked_no_show_leaves_no_attended_item(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    c = api(marketer)
    c.post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": hcp.id, "status": "attended"})
    c.post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": hcp.id, "status": "no_show"})
    rep = api(factory.user("field_rep"))
    assert [i["kind"] for i in _timeline(rep, hcp.id)] == ["event.no_show"]
    db.refresh(event)
    assert event.attendance_interaction_id is None


def test_attendance_idempotent_on_external_id(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    a, b = factory.hcp(), factory.hcp()
    c = api(marketer)
    url = f"/api/v1/events/{event.id}/attendance"
    assert c.post(url, json={"hcp_id": a.id, "status": "attended", "external_id": "ATT-1"}).status_code == 201
    assert c.post(url, json={"hcp_id": a.id, "status": "attended", "external_id": "ATT-1"}).status_code == 200
    clash = c.post(url, json={"hcp_id": b.id, "status": "attended", "external_id": "ATT-1"})
    assert clash.status_code == 409


def test_attendance_refusals(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    c = api(marketer)
    url = f"/api/v1/events/{event.id}/attendance"
    assert c.post(url, json={"hcp_id": hcp.id, "status": "maybe"}).status_code == 422
    assert c.post(url, json={"hcp_id": 999999, "status": "attended"}).status_code == 422
    assert c.post("/api/v1/events/999999/attendance", json={"hcp_id": hcp.id, "status": "attended"}).status_code \
        == 404
    assert c.post(url, data="{", content_type="application/json").status_code == 400
    for role in ("field_rep", "call_centre", "compliance"):
        assert api(factory.user(role)).post(url, json={"hcp_id": hcp.id, "status": "attended"}).status_code == 403


def test_medical_round_table_is_existence_only_for_reps_and_marketers(api, factory, db):
    medical = factory.user("medical")
    event = make_event(db, medical, type="round_table", sensitivity="medical", name="Off-label data review")
    hcp = factory.hcp()
    api(medical).post(f"/api/v1/events/{event.id}/attendance", json={"hcp_id": hcp.id, "status": "attended"})
    for role in ("field_rep", "marketer"):
        item = _timeline(api(factory.user(role)), hcp.id)[0]
        assert item["redacted"] is True and item["summary"] == "" and item["details"] == {}
        assert item["redaction_reason"] == "Details restricted to Medical Affairs"
    item = _timeline(api(factory.user("medical")), hcp.id)[0]
    assert item["redacted"] is False and item["details"]["event_name"] == "Off-label data review"
