"""The HCP search page: default scope per role, one click to everyone, filters, paging, masking."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def setup(factory):
    north, south = factory.territory("PN", "North"), factory.territory("PS", "South")
    mine = factory.hcp(north, first_name="Mina", last_name="Mine", phone="+1 555 000 1111",
                       profession="nurse")
    theirs = factory.hcp(south, first_name="Theo", last_name="Theirs", phone="+1 555 000 2222")
    return {"north": north, "south": south, "mine": mine, "theirs": theirs}


def page(client, url="/hcps"):
    resp = client.get(url)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_data(as_text=True)


def test_rep_starts_with_my_territories_and_everyone_is_one_click_away(client, auth, factory, setup):
    auth.login(factory.user("field_rep", territories=[setup["north"]]))
    html = page(client)
    assert "Mine, Mina" in html and "Theirs" not in html
    assert re.search(r'href="[^"]*scope=all[^"]*"[^>]*>Everyone', html)
    assert 'aria-current="page">My territories' in html
    everyone = page(client, "/hcps?scope=all")
    assert "Mine, Mina" in everyone and "Theirs, Theo" in everyone
    # contact data: clear in the rep's territory, masked outside it
    assert "+1 555 000 1111" in everyone and "+* *** *** **22" in everyone and "000 2222" not in everyone


def test_other_roles_start_with_everyone(client, auth, factory, setup):
    auth.login(factory.user("marketer"))
    html = page(client)
    assert "Mine, Mina" in html and "Theirs, Theo" in html
    assert "My territories" not in html  # a marketer covers no territory: no toggle


def test_rows_link_to_the_hcp_page(client, auth, factory, setup):
    auth.login(factory.user("medical"))
    html = page(client)
    assert f'href="/hcps/{setup["mine"].id}"' in html


def test_search_box_and_filters(client, auth, factory, setup):
    auth.login(factory.user("call_centre"))
    html = page(client, "/hcps?q=theo&profession=&specialty=&territory=")  # empty boxes mean no filter
    assert "Theirs, Theo" in html and "Mine, Mina" not in html
    html = page(client, "/hcps?profession=nurse")
    assert "Mine, Mina" in html and "Theirs" not in html
    html = page(client, "/hcps?territory=PS")
    assert "Theirs, Theo" in html and "Mine, Mina" not in html
    assert "No HCPs match" in page(client, "/hcps?q=nobody-at-all")


def test_paging_keeps_filters_and_scope(client, auth, factory, setup):
    for i in range(3):
        factory.hcp(setup["north"], last_name=f"Page{i}")
    auth.login(factory.user("field_rep", territories=[setup["north"]]))
    html = page(client, "/hcps?limit=2&q=page")
    assert "Page0" in html and "Page1" in html and "Page2" not in html
    nxt = re.search(r'href="([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert "scope=mine" in nxt and "q=page" in nxt
    html2 = page(client, nxt + "&limit=2")
    assert "Page2" in html2 and "Page0" not in html2 and 'rel="next"' not in html2
    assert "First page" in html2


def test_page_errors_and_login(client, auth, factory, setup):
    assert client.get("/hcps").status_code == 302
    auth.login(factory.user("admin"))
    bad = client.get("/hcps?cursor=garbage")
    assert bad.status_code == 422 and "cursor" in bad.get_data(as_text=True)
    assert client.get("/hcps?territory=NOPE").status_code == 422


def test_page_has_no_inline_script_or_style(client, auth, factory, setup):
    auth.login(factory.user("field_rep", territories=[setup["north"]]))
    html = page(client, "/hcps?scope=all")
    assert "style=" not in html and "<script>" not in html and "<script " not in html
    assert 'name="viewport"' in html and 'class="table-wrap"' in html
