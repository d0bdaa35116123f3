"""Issue 14 items 2-4: pages a new user reads without developer words.

People, not ids (the HCP picker and its visibility), labels instead of codes, times in each user's time
zone (with the zone shown, DST edges included), the settings page, and the phone-friendly header and icons.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from crm.access.policy import ROLES, Viewer
from crm.audit.models import AuditRecord
from crm.auth.models import User
from crm.hcps import picker
from crm.labels import KINDS, label
from crm.timeline.services import record_interaction
from crm.timezones import local_time, parse_zone
from tests.conftest import days_ago

# -- helpers -------------------------------------------------------------------------------------------


class _Text(HTMLParser):
    """The text a reader sees: no tags, no attributes (tooltips may keep codes), no scripts or styles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "datalist"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style", "datalist") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


CODE = re.compile(r"\b(?:visit|email|event|call_centre|order|survey|consent)\.[a-z_]+\b")
ROLE_CODE = re.compile(r"\b(?:field_rep|call_centre|marketer|medical|compliance|admin)\b")


def _codes_in(text: str) -> list[str]:
    found = CODE.findall(text)
    # role codes: the words "medical", "compliance", "marketer" are plain English too; the codes with an
    # underscore never are
    found += [m for m in ROLE_CODE.findall(text) if "_" in m]
    return found


def _pick(client, q, **params):
    resp = client.get("/hcps/pick", query_string={"q": q, **params})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["items"]


def _viewer(user, territory_ids=()):
    return Viewer(user_id=user.id, role=user.role, territory_ids=frozenset(territory_ids))


# -- the picker ----------------------------------------------------------------------------------------


def test_picker_for_a_visit_keeps_a_field_rep_to_own_territories(client, auth, factory):
    north, south = factory.territory("NP-1"), factory.territory("SP-1")
    mine = factory.hcp(territory=north, first_name="Ada", last_name="Pickwell")
    theirs = factory.hcp(territory=south, first_name="Bea", last_name="Pickwell")
    auth.login(factory.user("field_rep", territories=[north]))
    items = _pick(client, "Pickwell", **{"for": "visit.create"})
    assert [i["id"] for i in items] == [mine.id]
    assert items[0]["name"] == "Ada Pickwell" and "NP-1" in items[0]["detail"]
    assert set(items[0]) == {"id", "name", "detail"}  # no contact data through a picker
    # an action that is not territorial (reading everyone is the default): both
    assert {i["id"] for i in _pick(client, "Pickwell")} == {mine.id, theirs.id}


def test_picker_for_medical_visits_and_exports_is_not_territorial(client, auth, factory):
    north, south = factory.territory("NP-2"), factory.territory("SP-2")
    a = factory.hcp(territory=north, last_name="Zedwick")
    b = factory.hcp(territory=south, last_name="Zedwick")
    auth.login(factory.user("medical"))
    assert {i["id"] for i in _pick(client, "zedwick", **{"for": "visit.create"})} == {a.id, b.id}
    auth.logout()
    auth.login(factory.user("compliance"))
    assert {i["id"] for i in _pick(client, "zedwick", **{"for": "hcp.export"})} == {a.id, b.id}


def test_picker_leaves_out_merged_hcps_and_answers_bad_input_with_4xx(client, auth, factory, db):
    t = factory.territory("NP-3")
    survivor = factory.hcp(territory=t, last_name="Mergeley")
    loser = factory.hcp(territory=t, last_name="Mergeley")
    loser.merged_into_id = survivor.id
    db.flush()
    auth.login(factory.user("admin"))
    assert [i["id"] for i in _pick(client, "Mergeley")] == [survivor.id]
    assert _pick(client, "") == []
    assert client.get("/hcps/pick", query_string={"q": "x", "for": "nonsense"}).status_code == 422
    assert client.get("/hcps/pick", query_string={"q": "x" * 500}).status_code == 422
    assert client.get("/hcps/pick", query_string={"q": "a\x00b"}).status_code in (200, 422)


def test_picker_needs_a_signed_in_user(client, factory):
    resp = client.get("/hcps/pick", query_string={"q": "a"})
    assert resp.status_code in (302, 401)


def test_picker_choices_fallback_searches_what_was_typed_within_scope(app, db, factory):
    north, south = factory.territory("NP-4"), factory.territory("SP-4")
    rep = factory.user("field_rep", territories=[north])
    chosen = factory.hcp(territory=north, last_name="Quillfeather")
    other = factory.hcp(territory=north, last_name="Quillon")
    outside = factory.hcp(territory=south, last_name="Quillby")
    with app.test_request_context("/visits/new", method="POST", data={"hcp_id_q": "quill"}):
        c = picker.choices(db, _viewer(rep, [north.id]), "hcp_id", str(chosen.id), "visit.create")
    assert [h["id"] for h in c["chosen"]] == [chosen.id]
    assert [h["id"] for h in c["found"]] == [other.id]  # the chosen one is not repeated; outside is left out
    assert outside.id not in {h["id"] for h in c["found"]}
    assert picker.ids_of("1, 2 x 99999999999999 2") == [1, 2]


def test_new_visit_form_uses_the_picker_and_find_works_without_javascript(client, auth, factory):
    t = factory.territory("NP-5")
    hcp = factory.hcp(territory=t, first_name="Carla", last_name="Findlay")
    auth.login(factory.user("field_rep", territories=[t]))
    page = client.get("/visits/new").get_data(as_text=True)
    assert 'name="hcp_id" inputmode' not in page and "HCP id" not in page
    assert 'id="hcp_id-q"' in page and '<label for="hcp_id-q">' in page and 'data-hcp-picker' in page
    token = auth.csrf_token("/visits/new")
    resp = client.post("/visits/new", data={"csrf_token": token, "hcp_id_q": "findlay", "picker_find": "hcp_id",
                                            "notes": "kept as typed"})
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert f'<option value="{hcp.id}">Carla Findlay' in page and "kept as typed" in page


def test_visit_saved_with_attendees_chosen_in_the_picker(client, auth, factory, db):
    from crm.visits.models import Visit

    t = factory.territory("NP-6")
    main = factory.hcp(territory=t, last_name="Mainly")
    a, b = factory.hcp(territory=t, last_name="Alongside"), factory.hcp(territory=t, last_name="Beside")
    rep = factory.user("field_rep", territories=[t])
    auth.login(rep)
    token = auth.csrf_token("/visits/new")
    resp = client.post("/visits/new", data={
        "csrf_token": token, "hcp_id": str(main.id), "occurred_at": "2026-01-12T09:30", "tz_choice": "0",
        "mode": "in_person", "attendee_hcp_ids": [str(a.id), str(b.id)], "action": "save"})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    visit = db.scalar(select(Visit).where(Visit.hcp_id == main.id))
    assert sorted(x.hcp_id for x in visit.attendees) == sorted([a.id, b.id])
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Alongside" in page and "Beside" in page  # the chosen HCPs show by name


def test_forms_that_asked_for_ids_now_offer_pickers(client, auth, factory):
    auth.login(factory.user("marketer"))
    for path in ("/campaigns/new", "/campaigns/audiences"):
        page = client.get(path).get_data(as_text=True)
        assert "HCP ids" not in page and 'id="hcp_ids-q"' in page, path
    auth.logout()
    auth.login(factory.user("compliance"))
    page = client.get("/admin/masterdata/export").get_data(as_text=True)
    assert "HCP id" not in page and 'id="hcp_id-q"' in page
    page = client.get("/audit/sensitive-reads").get_data(as_text=True)
    assert "user id" not in page and "HCP id" not in page and 'id="hcp_id-q"' in page


def test_data_export_form_finds_without_javascript_and_asks_for_a_choice(client, auth, factory):
    hcp = factory.hcp(first_name="Elsa", last_name="Exportova")
    auth.login(factory.user("compliance"))
    resp = client.get("/admin/masterdata/export/go", query_string={"hcp_id_q": "exportova", "picker_find": "hcp_id"})
    assert resp.status_code == 200 and f'<option value="{hcp.id}">Elsa Exportova' in resp.get_data(as_text=True)
    resp = client.get("/admin/masterdata/export/go", query_string={"hcp_id": ""})
    assert resp.status_code == 422 and "Search for the HCP" in resp.get_data(as_text=True)
    resp = client.get("/admin/masterdata/export/go", query_string={"hcp_id": str(hcp.id)})
    assert resp.status_code == 302


def test_campaign_with_hcps_chosen_in_the_picker(client, auth, factory, db):
    from crm.campaigns.models import Campaign
    from tests.campaigns_support import make_template

    marketer = factory.user("marketer")
    template = make_template(db, marketer, factory.user("compliance"))
    a, b = factory.hcp(last_name="Campbell"), factory.hcp(last_name="Campion")
    auth.login(marketer)
    token = auth.csrf_token("/campaigns/new")
    resp = client.post("/campaigns/new", data={"csrf_token": token, "name": "Picked", "template_id": str(template.id),
                                               "hcp_ids": [str(a.id), str(b.id)]})
    assert resp.status_code == 303, resp.get_data(as_text=True)
    assert db.scalar(select(Campaign).where(Campaign.name == "Picked")) is not None


# -- labels --------------------------------------------------------------------------------------------


def test_labels_cover_the_glossary_codes_and_never_return_a_code():
    assert label("visit.submitted") == "Visit"
    assert label("email.opened", "kind") == "Email opened"
    assert label("field_rep", "role") == "Field force"
    assert label("pv", "sensitivity") == "Pharmacovigilance"
    assert label("gp", "profession") == "General practitioner"
    assert label("call_centre.something_new") == "Call centre: something new"
    assert label("user.password.set", "action") == "User: password set"
    assert label(None) == ""
    for code in KINDS:
        assert not CODE.search(label(code)), code


@pytest.fixture()
def demo(runner, db):
    result = runner.invoke(args=["crm", "demo", "--hcps", "24"])
    assert result.exit_code == 0, result.output
    return {u.role: u for u in db.scalars(select(User))}


def test_no_codes_on_each_roles_main_pages(client, auth, demo, db):
    from crm.hcps.models import HCP
    from crm.navigation import NAV

    hcp = db.scalar(select(HCP).order_by(HCP.id))
    for role in ROLES:
        user = demo[role]
        auth.login(user, password=f"{role}-demo-2026")
        paths = ["/", "/feed", f"/hcps/{hcp.id}", "/settings"]
        with client.application.test_request_context():
            from flask import url_for

            paths += [url_for(ep) for ep, _label in NAV[role] if ep in client.application.view_functions]
        for path in dict.fromkeys(paths):
            resp = client.get(path)
            assert resp.status_code == 200, (role, path, resp.status_code)
            text = visible_text(resp.get_data(as_text=True))
            assert _codes_in(text) == [], (role, path, _codes_in(text)[:5])
        auth.logout()


def test_rule_ids_only_in_tooltips_on_the_timeline(client, auth, factory, db):
    t = factory.territory("NP-7")
    hcp = factory.hcp(territory=t)
    record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=days_ago(1), channel="call_centre",
                       kind="call_centre.medical_inquiry", sensitivity="medical", summary="dose question")
    auth.login(factory.user("marketer"))
    page = client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
    text = visible_text(page)
    assert "Call centre: medical inquiry" in text and "call_centre.medical_inquiry" not in text
    assert "<code>" not in page.split("Why can I see this?")[1][:400]
    assert 'title="Rule: ' in page


# -- time zones ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "zone", "shown"), [
    # Europe: clocks go forward at 01:00 UTC on 2026-03-29 and back at 01:00 UTC on 2026-10-25
    (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), "Europe/Berlin", "2026-03-29 01:59 CET"),
    (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "Europe/Berlin", "2026-03-29 03:00 CEST"),
    (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "Europe/Berlin", "2026-10-25 02:30 CEST"),
    (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "Europe/Berlin", "2026-10-25 02:30 CET"),
    # United States: 2026-03-08 at 07:00 UTC, 02:00 EST becomes 03:00 EDT
    (datetime(2026, 3, 8, 6, 59, tzinfo=UTC), "America/New_York", "2026-03-08 01:59 EST"),
    (datetime(2026, 3, 8, 7, 0, tzinfo=UTC), "America/New_York", "2026-03-08 03:00 EDT"),
    # a date line: the local day differs from the UTC day
    (datetime(2026, 1, 1, 11, 0, tzinfo=UTC), "Pacific/Auckland", "2026-01-02 00:00 NZDT"),
    ("2026-07-01T12:00:00Z", "UTC", "2026-07-01 12:00 UTC"),
    (datetime(2026, 7, 1, 12, 0), "Asia/Kolkata", "2026-07-01 17:30 IST"),  # naive is stored UTC
])
def test_local_time_across_dst_edges(moment, zone, shown):
    assert local_time(moment, zone=ZoneInfo(zone)) == shown


def test_local_time_styles_and_odd_values():
    berlin = ZoneInfo("Europe/Berlin")
    moment = datetime(2026, 12, 31, 23, 30, 15, tzinfo=UTC)
    assert local_time(moment, "seconds", berlin) == "2027-01-01 00:30:15 CET"
    assert local_time(moment, "date", berlin) == "2027-01-01"
    assert local_time(None) == "" and local_time("") == ""
    assert local_time("not a time") == "not a time"


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "Europe/Berlin\x00", "x" * 300, "", " ",
                                  "/usr/share/zoneinfo/UTC", "Europe\\Berlin"])
def test_bad_zone_names_are_refused(name):
    assert parse_zone(name) is None


def test_settings_page_sets_and_shows_the_zone_per_user(client, auth, factory, db):
    t = factory.territory("NP-8")
    hcp = factory.hcp(territory=t)
    record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=datetime(2026, 7, 1, 12, 0, tzinfo=UTC),
                       channel="visit", kind="visit.submitted", summary="summer visit")
    rep = factory.user("field_rep", territories=[t])
    other = factory.user("marketer")
    auth.login(rep)
    page = client.get("/settings").get_data(as_text=True)
    assert '<label for="time_zone">Time zone</label>' in page and "timezone.js" in page  # unset: propose
    assert "timezone.js" in client.get("/").get_data(as_text=True)  # where a sign-in lands
    assert "2026-07-01 12:00 UTC" in client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
    token = auth.csrf_token("/settings")
    resp = client.post("/settings", data={"csrf_token": token, "time_zone": "Europe/Berlin"})
    assert resp.status_code == 302
    db.refresh(rep)
    assert rep.time_zone == "Europe/Berlin"
    page = client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
    assert "2026-07-01 14:00 CEST" in page and 'datetime="2026-07-01T12:00:00Z"' in page  # zone shown, UTC kept
    assert "timezone.js" not in client.get("/").get_data(as_text=True)  # chosen: nothing to propose
    record = db.scalars(select(AuditRecord).where(AuditRecord.action == "user.settings")).all()[-1]
    assert record.entity_id == str(rep.id) or record.entity_id == rep.id
    # the browser's later proposal never overrides a chosen zone
    resp = client.post("/settings", data={"csrf_token": token, "time_zone": "Asia/Tokyo", "only_if_unset": "1"})
    assert resp.status_code == 204
    db.refresh(rep)
    assert rep.time_zone == "Europe/Berlin"
    auth.logout()
    # per user: another user still reads UTC
    auth.login(other)
    assert "2026-07-01 12:00 UTC" in client.get(f"/hcps/{hcp.id}").get_data(as_text=True)


def test_browser_proposal_sets_an_unset_zone(client, auth, factory, db):
    user = factory.user("call_centre")
    auth.login(user)
    token = auth.csrf_token("/settings")
    resp = client.post("/settings", data={"csrf_token": token, "time_zone": "America/Chicago", "only_if_unset": "1"})
    assert resp.status_code == 204
    db.refresh(user)
    assert user.time_zone == "America/Chicago"


@pytest.mark.parametrize("bad", ["Mars/Olympus", "x" * 300, "", "Europe/Berlin\x00"])
def test_bad_zone_on_the_settings_page_gets_a_message(client, auth, factory, db, bad):
    user = factory.user("medical")
    auth.login(user)
    token = auth.csrf_token("/settings")
    resp = client.post("/settings", data={"csrf_token": token, "time_zone": bad})
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert 'role="alert"' in page and ("Unknown time zone" in page or "Choose a time zone" in page)
    db.refresh(user)
    assert user.time_zone is None


def test_api_times_stay_utc_whatever_the_users_zone(client, api, factory, db):
    t = factory.territory("NP-9")
    hcp = factory.hcp(territory=t)
    record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=datetime(2026, 7, 1, 12, 0, tzinfo=UTC),
                       channel="visit", kind="visit.submitted", summary="api visit")
    user = factory.user("admin")
    user.time_zone = "Asia/Tokyo"
    db.flush()
    body = api(user).get(f"/api/v1/hcps/{hcp.id}/timeline").get_json()
    assert body["items"][0]["occurred_at"] == "2026-07-01T12:00:00Z"


# -- phone: header, touch targets, icons ---------------------------------------------------------------


def test_header_folds_into_a_menu_and_icons_need_no_emoji_font(client, auth, factory, db):
    t = factory.territory("NP-10")
    hcp = factory.hcp(territory=t)
    for channel, kind in (("visit", "visit.submitted"), ("email", "email.opened"), ("consent", "consent.granted")):
        record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=days_ago(1), channel=channel, kind=kind,
                           source="crm", summary=f"{channel} item")
    auth.login(factory.user("field_rep", territories=[t]))
    page = client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
    assert 'id="nav-toggle"' in page and '<label for="nav-toggle"' in page and 'aria-label="Main"' in page
    assert "<svg" in page
    assert not any(ord(ch) >= 0x1F000 or 0x2600 <= ord(ch) <= 0x27BF for ch in page), "emoji on the page"
    assert "Field force" in visible_text(page) and "field_rep" not in visible_text(page)
    with client.get("/static/crm.css") as resp:
        css = resp.get_data(as_text=True)
    assert "min-height:44px" in css and ".nav-toggle:checked ~ .menu" in css
