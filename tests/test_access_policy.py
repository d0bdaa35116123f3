"""SPEC section 4, one test per row of the policy table, without HTTP."""

import pytest

from crm.access.policy import (
    ROLES,
    Level,
    Viewer,
    can_see_consent_evidence,
    contact_data_decision,
    item_decision,
    mask_email,
    mask_phone,
    write_decision,
)
from crm.errors import Forbidden

EXPECTED = {
    ("field_rep", "standard"): Level.FULL,
    ("field_rep", "medical"): Level.EXISTENCE,
    ("field_rep", "pv"): Level.EXISTENCE,
    ("marketer", "standard"): Level.FULL,
    ("marketer", "medical"): Level.EXISTENCE,
    ("marketer", "pv"): Level.EXISTENCE,
    ("call_centre", "standard"): Level.FULL,
    ("call_centre", "medical"): Level.FULL,
    ("call_centre", "pv"): Level.FULL,
    ("medical", "standard"): Level.FULL,
    ("medical", "medical"): Level.FULL,
    ("medical", "pv"): Level.FULL,
    ("compliance", "standard"): Level.FULL,
    ("compliance", "medical"): Level.FULL,
    ("compliance", "pv"): Level.FULL,
    ("admin", "standard"): Level.FULL,
    ("admin", "medical"): Level.FULL,
    ("admin", "pv"): Level.FULL,
}


@pytest.mark.parametrize(("role", "sensitivity"), sorted(EXPECTED))
def test_visibility_table_row(role, sensitivity):
    decision = item_decision(Viewer(1, role), sensitivity)
    assert decision.level == EXPECTED[(role, sensitivity)]
    assert decision.rule and decision.reason
    assert decision.level != Level.HIDDEN  # a contact that happened is never invisible


def test_restricted_items_say_why():
    assert item_decision(Viewer(1, "field_rep"), "medical").reason == "Details restricted to Medical Affairs"
    assert item_decision(Viewer(1, "marketer"), "pv").reason == "Details restricted to Pharmacovigilance"


def test_unknown_sensitivity_falls_back_to_existence_not_full():
    assert item_decision(Viewer(1, "admin"), "secret").level == Level.EXISTENCE


@pytest.mark.parametrize(("role", "in_territory", "clear"), [
    ("field_rep", True, True), ("field_rep", False, False), ("marketer", True, False),
    ("call_centre", False, True), ("medical", False, True), ("compliance", False, True), ("admin", False, True),
])
def test_contact_data(role, in_territory, clear):
    viewer = Viewer(1, role, frozenset({7}))
    decision = contact_data_decision(viewer, 7 if in_territory else 8)
    assert decision.allowed is clear
    assert decision.rule


def test_rep_sees_contact_data_only_for_hcps_with_a_territory_they_cover():
    assert contact_data_decision(Viewer(1, "field_rep", frozenset({7})), None).allowed is False


@pytest.mark.parametrize("role", ROLES)
def test_consent_evidence(role):
    assert can_see_consent_evidence(Viewer(1, role)).allowed is (role in ("compliance", "admin"))


def test_masking():
    assert mask_email("john@hospital.org") == "j***@h***.org"
    assert mask_phone("+1 555 010 1234") == "+* *** *** **34"
    assert mask_email(None) is None


def test_writes_outside_territory_and_role_name_the_rule():
    rep = Viewer(1, "field_rep", frozenset({7}))
    assert write_decision(rep, "visit.create", [7]).allowed
    refused = write_decision(rep, "visit.create", [8])
    assert not refused.allowed and refused.rule == "visit.create:territory"
    assert write_decision(Viewer(2, "marketer"), "visit.create", [7]).rule == "visit.create:role"
    assert write_decision(Viewer(3, "medical"), "visit.create", [8]).allowed
    assert not write_decision(Viewer(4, "compliance"), "visit.create", [7]).allowed


def test_require_write_raises_forbidden_with_rule():
    from crm.access.policy import require_write

    with pytest.raises(Forbidden) as info:
        require_write(Viewer(1, "marketer"), "hcp.merge")
    assert info.value.rule == "hcp.merge:role"
