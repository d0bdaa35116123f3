"""HCP search: by name, identifier and email; filters; my territories; keyset paging; merged left out."""

from __future__ import annotations

import pytest

from crm.access.policy import Viewer
from crm.errors import Invalid
from crm.hcps.identifiers import make_npi
from crm.hcps.models import HCPIdentifier
from crm.hcps.services import search_hcps

ANYONE = Viewer(user_id=0, role="marketer")


def names(hcps):
    return [h.last_name for h in hcps]


@pytest.fixture
def people(factory, db):
    north, south = factory.territory("N1", "North"), factory.territory("S1", "South")
    ada = factory.hcp(north, first_name="Ada", last_name="Lovelace", email="ada@engine.org",
                      profession="specialist", specialty="Cardiology")
    grace = factory.hcp(south, first_name="Grace", last_name="Hopper", email="grace@navy.mil",
                        profession="pharmacist", specialty="Oncology")
    alan = factory.hcp(north, first_name="Alan", last_name="Turing", email="alan@bletchley.uk")
    db.add(HCPIdentifier(hcp_id=grace.id, kind="npi", value=make_npi(1815)))
    db.flush()
    return {"north": north, "south": south, "ada": ada, "grace": grace, "alan": alan}


@pytest.mark.parametrize("q, expected", [
    ("lovelace", ["Lovelace"]),
    ("LOVE", ["Lovelace"]),
    ("ove", ["Lovelace"]),
    ("ada lovelace", ["Lovelace"]),
    ("lovelace ada", ["Lovelace"]),
    ("a", ["Hopper", "Lovelace", "Turing"]),
    ("ada hopper", []),
    ("%", []),
    ("_", []),
])
def test_search_by_name(db, people, q, expected):
    assert names(search_hcps(db, ANYONE, q=q)[0]) == expected


def test_search_by_identifier_is_exact(db, people):
    assert names(search_hcps(db, ANYONE, q=make_npi(1815))[0]) == ["Hopper"]
    assert search_hcps(db, ANYONE, q=make_npi(1815)[:6])[0] == []


def test_search_by_email_is_exact_through_the_blind_index(db, people):
    assert names(search_hcps(db, ANYONE, q="Grace@Navy.mil")[0]) == ["Hopper"]
    assert search_hcps(db, ANYONE, q="grace@navy")[0] == []


def test_filters(db, people):
    assert names(search_hcps(db, ANYONE, profession="pharmacist")[0]) == ["Hopper"]
    assert names(search_hcps(db, ANYONE, specialty="cardiology")[0]) == ["Lovelace"]
    assert names(search_hcps(db, ANYONE, territory_code="N1")[0]) == ["Lovelace", "Turing"]
    assert names(search_hcps(db, ANYONE, q="a", territory_code="S1")[0]) == ["Hopper"]
    with pytest.raises(Invalid) as err:
        search_hcps(db, ANYONE, territory_code="NOPE")
    assert "territory" in err.value.errors


def test_mine_keeps_the_viewers_current_territories(db, people):
    rep = Viewer(user_id=1, role="field_rep", territory_ids=frozenset({people["south"].id}))
    assert names(search_hcps(db, rep, mine=True)[0]) == ["Hopper"]
    assert names(search_hcps(db, rep, mine=False)[0]) == ["Hopper", "Lovelace", "Turing"]
    assert search_hcps(db, ANYONE, mine=True)[0] == []


def test_merged_hcps_are_left_out(db, people, factory):
    factory.hcp(people["north"], first_name="Ada", last_name="Lovelace", merged_into_id=people["ada"].id,
                status="merged", email="ada.old@engine.org")
    found = search_hcps(db, ANYONE, q="lovelace")[0]
    assert [h.id for h in found] == [people["ada"].id]


def test_keyset_paging_has_no_duplicates_or_gaps(db, factory):
    t = factory.territory()
    # equal last names and equal full names force the (first_name, id) tie-breaks
    made = [factory.hcp(t, first_name=first, last_name=last)
            for last in ("Smith", "Baker", "Smith", "Adams", "Smith")
            for first in ("Zoe", "Ann", "Ann", "Max")]
    expected = sorted(made, key=lambda h: (h.last_name, h.first_name, h.id))
    seen, cursor, pages = [], None, 0
    while True:
        rows, cursor = search_hcps(db, ANYONE, territory_code=t.code, limit=3, cursor=cursor)
        seen.extend(rows)
        pages += 1
        if cursor is None:
            break
    assert [h.id for h in seen] == [h.id for h in expected]
    assert pages == 7  # 20 items by 3: the last page is short and carries no cursor


def test_an_exactly_full_last_page_has_no_next_cursor(db, factory):
    t = factory.territory()
    for _ in range(4):
        factory.hcp(t)
    rows, cursor = search_hcps(db, ANYONE, territory_code=t.code, limit=2)
    rows2, cursor2 = search_hcps(db, ANYONE, territory_code=t.code, limit=2, cursor=cursor)
    assert len(rows) == len(rows2) == 2 and cursor2 is None


# -- through the API ---------------------------------------------------------------------------------

def test_api_search_and_paging(api, factory, db, people):
    c = api(factory.user("marketer"))
    out = c.get("/api/v1/hcps?q=hopper").get_json()
    assert [h["last_name"] for h in out["items"]] == ["Hopper"] and out["next_cursor"] is None
    assert out["items"][0]["email"] == "g***@n***.mil"  # masked for a marketer
    by_npi = c.get(f"/api/v1/hcps?q={make_npi(1815)}").get_json()["items"]
    assert [h["id"] for h in by_npi] == [people["grace"].id]
    first = c.get("/api/v1/hcps?limit=2").get_json()
    second = c.get(f"/api/v1/hcps?limit=2&cursor={first['next_cursor']}").get_json()
    assert [h["last_name"] for h in first["items"] + second["items"]] == ["Hopper", "Lovelace", "Turing"]
    assert c.get("/api/v1/hcps?profession=pharmacist&specialty=Oncology&territory=S1").get_json()["items"]


def test_api_mine_for_a_rep(api, factory, people):
    rep = api(factory.user("field_rep", territories=[people["north"]]))
    mine = rep.get("/api/v1/hcps?mine=true").get_json()["items"]
    assert [h["last_name"] for h in mine] == ["Lovelace", "Turing"]
    assert all(h["contact_data"]["visible"] for h in mine)
    everyone = rep.get("/api/v1/hcps").get_json()["items"]
    assert len(everyone) == 3
    assert [h["contact_data"]["visible"] for h in everyone if h["last_name"] == "Hopper"] == [False]


@pytest.mark.parametrize("query, field", [
    ("cursor=not-a-cursor", "cursor"),
    ("limit=0", "limit"),
    ("limit=201", "limit"),
    ("profession=wizard", "profession"),
    ("territory=NOPE", "territory"),
    ("mine=perhaps", "mine"),
])
def test_api_bad_query_is_422(api, factory, people, query, field):
    resp = api(factory.user("marketer")).get(f"/api/v1/hcps?{query}")
    assert resp.status_code == 422
    assert field in resp.get_json()["errors"]
