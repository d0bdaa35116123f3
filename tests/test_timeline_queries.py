"""Reading the timeline without HTTP: order, filters, keyset paging, supersession, feed, fatigue strip."""

from __future__ import annotations

from datetime import timedelta

import pytest
from marshmallow import ValidationError
from sqlalchemy import event, select

from crm.access.policy import Level, Viewer
from crm.extensions import db as _db
from crm.timeline.models import SensitiveRead
from crm.timeline.queries import (
    TimelineFilters,
    fatigue_strip,
    feed_channel_counts,
    feed_page,
    get_item,
    serialize_item,
    timeline_page,
)
from crm.timeline.services import record_interaction
from tests.conftest import utc

COMPLIANCE = Viewer(0, "compliance")


def rec(db, hcps, at, channel="visit", kind=None, actor=None, **kw):
    ids = [h.id for h in hcps] if isinstance(hcps, list) else [hcps.id]
    item, _ = record_interaction(db, actor, hcp_ids=ids, occurred_at=at, channel=channel,
                                 kind=kind or f"{channel}.submitted", **kw)
    return item


def viewer_of(user):
    return Viewer(user.id, user.role)


def ids_of(items):
    return [i["id"] for i in items]


def all_pages(fetch, limit):
    seen, cursor, pages = [], None, 0
    while True:
        items, cursor = fetch(limit, cursor)
        pages += 1
        seen.extend(ids_of(items))
        if cursor is None:
            return seen, pages


def test_newest_first_and_ties_broken_by_id(db, factory):
    h = factory.hcp()
    old = rec(db, h, utc(2026, 1, 1))
    tie_a = rec(db, h, utc(2026, 1, 5))
    tie_b = rec(db, h, utc(2026, 1, 5))
    new = rec(db, h, utc(2026, 2, 1))
    items, cursor = timeline_page(db, COMPLIANCE, h.id, TimelineFilters(), 50, None)
    assert ids_of(items) == [new.id, tie_b.id, tie_a.id, old.id]
    assert cursor is None
    assert items[0]["occurred_at"] == "2026-02-01T00:00:00Z"


def test_since_inclusive_until_exclusive(db, factory):
    h = factory.hcp()
    before = rec(db, h, utc(2026, 1, 1, 23, 59, 59))
    at_since = rec(db, h, utc(2026, 1, 2))
    inside = rec(db, h, utc(2026, 1, 3, 12))
    at_until = rec(db, h, utc(2026, 1, 4))
    f = TimelineFilters(since=utc(2026, 1, 2), until=utc(2026, 1, 4))
    items, _ = timeline_page(db, COMPLIANCE, h.id, f, 50, None)
    assert ids_of(items) == [inside.id, at_since.id]
    assert before.id not in ids_of(items) and at_until.id not in ids_of(items)


def test_channel_kind_product_owner_filters(db, factory):
    rep, other = factory.user("field_rep"), factory.user("field_rep")
    h = factory.hcp()
    visit = rec(db, h, utc(2026, 1, 1), actor=rep, products=["SKU-A"])
    visit_other = rec(db, h, utc(2026, 1, 2), actor=other, products=["SKU-B"])
    opened = rec(db, h, utc(2026, 1, 3), channel="email", kind="email.opened", source="esp")
    clicked = rec(db, h, utc(2026, 1, 4), channel="email", kind="email.clicked", source="esp")
    call = rec(db, h, utc(2026, 1, 5), channel="call_centre", kind="call_centre.other", products=["SKU-A"])

    def page(**kw):
        return ids_of(timeline_page(db, COMPLIANCE, h.id, TimelineFilters(**kw), 50, None)[0])

    assert page(channels=["visit", "call_centre"]) == [call.id, visit_other.id, visit.id]
    assert page(kinds=["email.opened", "email.clicked"]) == [clicked.id, opened.id]
    assert page(kinds=["email.opened"]) == [opened.id]
    assert page(products=["SKU-A"]) == [call.id, visit.id]
    assert page(products=["SKU-A", "SKU-B"]) == [call.id, visit_other.id, visit.id]
    assert page(owner_id=rep.id) == [visit.id]
    assert page(channels=["visit"], products=["SKU-B"]) == [visit_other.id]
    assert page(channels=["order"]) == []


def test_keyset_paging_returns_every_item_exactly_once(db, factory):
    h = factory.hcp()
    base = utc(2025, 6, 1)
    made = []
    for n in range(120):
        # Groups of three share an instant, so the id tie-break decides page borders.
        made.append(rec(db, h, base + timedelta(hours=n // 3)).id)
    rep = Viewer(1, "field_rep")
    seen, pages = all_pages(lambda limit, cursor: timeline_page(db, rep, h.id, TimelineFilters(), limit, cursor), 50)
    assert pages == 3
    assert len(seen) == 120 and set(seen) == set(made)
    expected = sorted(made, key=lambda i: (-(made.index(i) // 3), -i))
    assert seen == expected


def test_a_page_is_one_query_whatever_its_size(app, db, factory):
    h, rep = factory.hcp(), factory.user("field_rep")
    for n in range(60):
        rec(db, h, utc(2026, 1, 1) + timedelta(minutes=n), actor=rep, products=["SKU-A", "SKU-B"])
    hcp_id, who, name = h.id, viewer_of(rep), rep.name
    db.expire_all()
    statements: list[str] = []

    def count(conn, cursor, statement, params, context, executemany):
        statements.append(statement)

    event.listen(_db.engine, "before_cursor_execute", count)
    try:
        for limit in (5, 50):
            items, _ = timeline_page(db, who, hcp_id, TimelineFilters(), limit, None)
            assert len(items) == limit
            assert items[0]["products"] == ["SKU-A", "SKU-B"] and items[0]["owner"]["name"] == name
    finally:
        event.remove(_db.engine, "before_cursor_execute", count)
    assert len(statements) == 2  # one per page: keyset scan, rows, owners, participants and skus together


def test_tampered_cursor_is_a_validation_error(db, factory):
    h = factory.hcp()
    for bad in ("not-a-cursor", "W10", "WyJ4IiwxXQ"):  # junk, [] and ["x",1]
        with pytest.raises(ValidationError) as err:
            timeline_page(db, COMPLIANCE, h.id, TimelineFilters(), 50, bad)
        assert "cursor" in err.value.messages


def test_group_interaction_is_on_every_participants_timeline(db, factory):
    a, b, c = factory.hcp(), factory.hcp(), factory.hcp()
    event_item = rec(db, [a, b, c], utc(2026, 3, 1), channel="event", kind="event.attended",
                     source="event_platform")
    for h in (a, b, c):
        items, _ = timeline_page(db, COMPLIANCE, h.id, TimelineFilters(), 50, None)
        assert ids_of(items) == [event_item.id]
        assert items[0]["hcp_ids"] == sorted([a.id, b.id, c.id])


def test_superseded_items_hidden_for_rep_and_marketer_both_shown_to_compliance(db, factory):
    h = factory.hcp()
    old = rec(db, h, utc(2026, 1, 2), summary="first version")
    new = rec(db, h, utc(2026, 1, 2), summary="corrected", supersedes=old)
    for role in ("field_rep", "marketer", "call_centre", "medical"):
        items, _ = timeline_page(db, Viewer(1, role), h.id, TimelineFilters(), 50, None)
        assert ids_of(items) == [new.id], role
        assert items[0]["supersedes"] == old.id
    for role in ("compliance", "admin"):
        items, _ = timeline_page(db, Viewer(1, role), h.id, TimelineFilters(), 50, None)
        assert ids_of(items) == [new.id, old.id]
        assert items[1]["superseded_by"] == new.id and items[0]["supersedes"] == old.id
    feed, _ = feed_page(db, Viewer(1, "marketer"), TimelineFilters(), 50, None)
    assert old.id not in ids_of(feed) and new.id in ids_of(feed)
    feed, _ = feed_page(db, COMPLIANCE, TimelineFilters(), 50, None)
    assert {old.id, new.id} <= set(ids_of(feed))
    # Asked for by id, a superseded item exists for everyone and points to its correction.
    assert get_item(db, Viewer(1, "field_rep"), old.id)["superseded_by"] == new.id


def test_serialize_levels(db, factory, monkeypatch):
    rep_user = factory.user("field_rep")
    h = factory.hcp()
    item = rec(db, h, utc(2026, 1, 2, 10, 30), channel="call_centre", kind="call_centre.medical_inquiry",
               actor=rep_user, summary="asked about dosing in renal impairment", safe_summary="Medical inquiry",
               details={"question": "free text"}, sensitivity="medical", products=["SKU-A"], consent_gap=True)
    full = serialize_item(Viewer(2, "medical"), item)
    assert full["summary"] == "asked about dosing in renal impairment"
    assert full["details"] == {"question": "free text"} and full["products"] == ["SKU-A"]
    assert full["redacted"] is False and full["redaction_reason"] is None
    assert full["visibility"] == {"level": "full", "rule": "medical-affairs-role",
                                  "reason": "Medical Affairs owns medical content"}
    hidden = serialize_item(Viewer(3, "marketer"), item)
    assert hidden["summary"] == "" and hidden["details"] == {} and hidden["products"] == []
    assert hidden["redacted"] is True
    assert hidden["redaction_reason"] == "Details restricted to Medical Affairs"
    assert hidden["visibility"]["level"] == "existence" and hidden["visibility"]["rule"] == "medical-firewall"
    for key in ("id", "occurred_at", "channel", "kind", "source", "sensitivity", "consent_gap", "hcp_ids"):
        assert hidden[key] == full[key]
    assert hidden["occurred_at"] == "2026-01-02T10:30:00Z"
    assert hidden["owner"] == {"id": rep_user.id, "name": rep_user.name, "role": "field_rep"}
    # The summary level (not used by the default table) shows the safe summary and nothing else.
    from crm.access import policy

    monkeypatch.setitem(policy.VISIBILITY["marketer"], "medical", (Level.SUMMARY, "test-summary", "Summary only"))
    summary = serialize_item(Viewer(3, "marketer"), item)
    assert summary["summary"] == "Medical inquiry" and summary["details"] == {}
    assert summary["redacted"] is True and summary["redaction_reason"] == "Summary only"
    assert summary["visibility"]["level"] == "summary"


def test_system_items_have_no_owner_user(db, factory):
    h = factory.hcp()
    item = rec(db, h, utc(2026, 1, 2), channel="email", kind="email.delivered", source="esp")
    out = serialize_item(COMPLIANCE, item)
    assert out["owner"] == {"id": None, "name": None, "role": "system"}


def test_sensitive_reads_logged_once_per_page_for_full_reads_only(db, factory):
    medical, rep = factory.user("medical"), factory.user("field_rep")
    h = factory.hcp()
    pv = rec(db, h, utc(2026, 1, 3), channel="call_centre", kind="call_centre.adverse_event", sensitivity="pv")
    med = rec(db, h, utc(2026, 1, 2), channel="call_centre", kind="call_centre.medical_inquiry",
              sensitivity="medical")
    rec(db, h, utc(2026, 1, 1))
    timeline_page(db, viewer_of(rep), h.id, TimelineFilters(), 50, None)
    assert db.scalars(select(SensitiveRead)).all() == []
    timeline_page(db, viewer_of(medical), h.id, TimelineFilters(), 50, None)
    rows = db.scalars(select(SensitiveRead)).all()
    assert sorted((r.viewer_id, r.interaction_id, r.hcp_id, r.sensitivity, r.what) for r in rows) == sorted([
        (medical.id, pv.id, h.id, "pv", "interaction"), (medical.id, med.id, h.id, "medical", "interaction"),
    ])


def test_fatigue_strip_counts_30_and_90_days_per_channel_and_department(db, factory):
    rep, marketer = factory.user("field_rep"), factory.user("marketer")
    h, other = factory.hcp(), factory.hcp()
    now = utc(2026, 6, 30, 12)
    rec(db, h, now - timedelta(days=1), actor=rep)                          # visit, 30 and 90
    rec(db, h, now - timedelta(days=29), actor=rep)                         # visit, 30 and 90
    rec(db, h, now - timedelta(days=45), actor=rep)                         # visit, 90 only
    rec(db, h, now - timedelta(days=91), actor=rep)                         # too old for counts
    rec(db, h, now - timedelta(days=10), channel="email", kind="email.sent", actor=marketer)  # email, 30 and 90
    rec(db, h, now - timedelta(days=60), channel="event", kind="event.attended", source="event_platform")
    rec(db, h, now - timedelta(days=2), channel="consent", kind="consent.granted")  # not a touch
    rec(db, h, now + timedelta(days=3), actor=rep)                          # after now: not counted
    rec(db, other, now - timedelta(days=1), actor=rep)                      # someone else's timeline
    old = rec(db, h, now - timedelta(days=5), channel="call_centre", kind="call_centre.other")
    rec(db, h, now - timedelta(days=5), channel="call_centre", kind="call_centre.other", supersedes=old)

    strip = fatigue_strip(db, h.id, now=now)
    by_channel = {r["channel"]: (r["last_30_days"], r["last_90_days"]) for r in strip["by_channel"]}
    assert by_channel == {"visit": (2, 3), "email": (1, 1), "event": (0, 1), "call_centre": (1, 1),
                          "survey": (0, 0)}
    assert "consent" not in by_channel and "order" not in by_channel
    by_department = {r["department"]: (r["last_30_days"], r["last_90_days"]) for r in strip["by_department"]}
    assert by_department == {"field_rep": (2, 3), "marketer": (1, 1), "system": (1, 2)}
    labels = {r["department"]: r["label"] for r in strip["by_department"]}
    assert labels["field_rep"] == "Field force" and labels["marketer"] == "Marketing"
    assert strip["touches"] == {"last_30_days": 4, "last_90_days": 6}
    last = {r["channel"]: r["occurred_at"] for r in strip["last_by_channel"]}
    assert last["visit"] == "2026-06-29T12:00:00Z"
    assert last["consent"] == "2026-06-28T12:00:00Z"
    assert last["event"] == "2026-05-01T12:00:00Z"
    assert strip["last_by_channel"][0]["channel"] == "visit"  # most recent first
    assert strip["as_of"] == "2026-06-30T12:00:00Z"


# Issue 11: a touch is a contact the company made, not what the HCP (or the ERP) did afterwards.
TOUCHES = [
    ("visit", "visit.submitted"), ("email", "email.sent"), ("event", "event.invited"), ("event", "event.attended"),
    ("call_centre", "call_centre.product_information"), ("call_centre", "call_centre.medical_inquiry"),
    ("call_centre", "call_centre.medical_answer"), ("survey", "survey.sent"),
]
NOT_TOUCHES = [
    ("email", "email.delivered"), ("email", "email.opened"), ("email", "email.clicked"), ("email", "email.bounced"),
    ("email", "email.unsubscribed"), ("order", "order.queued"), ("order", "order.sent"), ("order", "order.shipped"),
    ("order", "order.rejected"), ("event", "event.registered"), ("event", "event.no_show"),
    ("survey", "survey.answered"), ("consent", "consent.granted"),
]


@pytest.mark.parametrize(("channel", "kind"), TOUCHES)
def test_fatigue_strip_counts_contacts_the_company_made(db, factory, channel, kind):
    h = factory.hcp()
    now = utc(2026, 6, 30, 12)
    rec(db, h, now - timedelta(days=3), channel=channel, kind=kind)
    strip = fatigue_strip(db, h.id, now=now)
    assert strip["touches"] == {"last_30_days": 1, "last_90_days": 1}
    by_channel = {r["channel"]: r["last_30_days"] for r in strip["by_channel"]}
    assert by_channel[channel] == 1


@pytest.mark.parametrize(("channel", "kind"), NOT_TOUCHES)
def test_fatigue_strip_does_not_count_what_followed_a_contact(db, factory, channel, kind):
    h = factory.hcp()
    now = utc(2026, 6, 30, 12)
    rec(db, h, now - timedelta(days=3), channel=channel, kind=kind)
    strip = fatigue_strip(db, h.id, now=now)
    assert strip["touches"] == {"last_30_days": 0, "last_90_days": 0}
    assert strip["by_department"] == []
    # It is still the last thing that happened on its channel.
    assert [r["channel"] for r in strip["last_by_channel"]] == [channel]


def test_fatigue_strip_of_a_quiet_hcp(db, factory):
    h = factory.hcp()
    strip = fatigue_strip(db, h.id)
    assert strip["touches"] == {"last_30_days": 0, "last_90_days": 0}
    assert strip["by_department"] == [] and strip["last_by_channel"] == []


def test_feed_filters_by_territory_profession_specialty_and_counts(db, factory):
    north, south = factory.territory(), factory.territory()
    gp_north = factory.hcp(territory=north, profession="gp")
    pharm_north = factory.hcp(territory=north, profession="pharmacist", specialty="Hospital Pharmacy")
    gp_south = factory.hcp(territory=south, profession="gp")
    a = rec(db, gp_north, utc(2026, 1, 1))
    b = rec(db, pharm_north, utc(2026, 1, 2), channel="email", kind="email.opened", source="esp")
    c = rec(db, gp_south, utc(2026, 1, 3))
    group = rec(db, [gp_south, pharm_north], utc(2026, 1, 4), channel="event", kind="event.attended",
                source="event_platform")
    window = {"since": utc(2026, 1, 1), "until": utc(2026, 1, 5)}

    def feed(**kw):
        return ids_of(feed_page(db, COMPLIANCE, TimelineFilters(**window, **kw), 50, None)[0])

    assert feed() == [group.id, c.id, b.id, a.id]
    assert feed(territory=north.code) == [group.id, b.id, a.id]
    assert feed(territory=south.code) == [group.id, c.id]
    assert feed(profession="gp") == [group.id, c.id, a.id]
    assert feed(territory=north.code, profession="gp") == [a.id]
    assert feed(specialty="hospital pharmacy") == [group.id, b.id]
    assert feed(territory="NOPE") == []
    assert feed(channels=["visit"], territory=north.code) == [a.id]
    counts = feed_channel_counts(db, COMPLIANCE, TimelineFilters(**window, territory=north.code))
    assert counts == {"visit": 1, "email": 1, "event": 1}


def test_feed_keyset_paging_and_redaction(db, factory):
    h = factory.hcp()
    made = [rec(db, h, utc(2026, 2, 1) + timedelta(minutes=n // 2),
                channel="call_centre", kind="call_centre.adverse_event", sensitivity="pv").id for n in range(25)]
    rep = Viewer(1, "field_rep")
    window = TimelineFilters(since=utc(2026, 2, 1), until=utc(2026, 2, 2))
    seen, pages = all_pages(lambda limit, cursor: feed_page(db, rep, window, limit, cursor), 10)
    assert pages == 3 and sorted(seen) == sorted(made) and len(seen) == 25
    items, _ = feed_page(db, rep, window, 5, None)
    assert all(i["redacted"] and i["redaction_reason"] == "Details restricted to Pharmacovigilance" for i in items)
    assert db.scalars(select(SensitiveRead)).all() == []
