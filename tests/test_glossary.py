"""The glossary (issue 12 item 5): one lexicon in code, every KPI defined once, a page generated from both."""

from __future__ import annotations

import re

import pytest

from crm.glossary import TERMS
from crm.insights.kpis import KPIS, TOUCHES, kpi_anchor
from crm.timeline.models import CHANNELS

SPEC_TERMS = ("HCP", "HCO", "territory", "interaction", "channel", "kind", "source", "sensitivity", "consent",
              "purpose", "notice", "redacted")


def test_the_lexicon_holds_every_spec_term_once():
    names = [t.term for t in TERMS]
    assert set(SPEC_TERMS) <= set(names) and len(names) == len(set(names))
    assert len({t.anchor for t in TERMS}) == len(TERMS)


def test_every_kpi_is_defined_once_with_unit_and_counting_rule():
    assert len({k.key for k in KPIS}) == len(KPIS)
    for k in KPIS:
        assert k.name and k.definition and k.unit and k.counted
        assert re.fullmatch(r"kpi-[a-z-]+", k.anchor)
    assert kpi_anchor("reach") == "kpi-reach"
    with pytest.raises(KeyError):
        kpi_anchor("nope")


def test_the_touch_table_names_real_channels_and_kinds():
    for t in TOUCHES:
        assert t.channel in CHANNELS and t.kinds and all(k.startswith(f"{t.channel}.") for k in t.kinds)
    assert [t.channel for t in TOUCHES] == ["visit", "email", "event", "call_centre", "survey"]


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "compliance", "admin"])
def test_the_page_is_generated_from_the_code_for_every_role(client, auth, factory, role):
    auth.login(factory.user(role))
    page = client.get("/glossary").get_data(as_text=True)
    for t in TERMS:
        assert f'id="{t.anchor}"' in page
    for k in KPIS:
        assert f'id="{k.anchor}"' in page and k.name in page
    for t in TOUCHES:
        assert t.kinds[0] in page
    assert 'id="kpi-reach"' in page and 'id="term-hcp"' in page
    assert "/glossary" in client.get("/").get_data(as_text=True)  # in the navigation


def test_the_page_needs_a_login(client):
    assert client.get("/glossary").status_code == 302
