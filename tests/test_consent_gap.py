"""Promotional contacts logged without a granted consent at their instant carry consent_gap."""

from __future__ import annotations

import pytest

from crm.consent.listeners import needed_consent
from crm.timeline.services import record_interaction
from tests.conftest import utc
from tests.consent_support import grant, withdraw


def _record(db, hcp_ids, kind, details, at=utc(2026, 3, 1, 10), sensitivity="standard"):
    item, _ = record_interaction(db, None, hcp_ids=hcp_ids, occurred_at=at, channel=kind.split(".")[0], kind=kind,
                                 details=details, sensitivity=sensitivity)
    return item


def test_visit_without_consent_is_a_gap_and_with_consent_is_not(db, factory):
    with_consent, without = factory.hcp(), factory.hcp()
    grant(db, with_consent, "visit", "promotional", occurred_at=utc(2026, 1, 1))
    assert not _record(db, [with_consent.id], "visit.submitted", {"mode": "in_person"}).consent_gap
    assert _record(db, [without.id], "visit.submitted", {"mode": "in_person"}).consent_gap
    # a group visit: one participant without consent is enough
    assert _record(db, [with_consent.id, without.id], "visit.submitted", {"mode": "in_person"}).consent_gap


def test_remote_visit_needs_remote_meeting_consent(db, factory):
    hcp = factory.hcp()
    grant(db, hcp, "visit", "promotional", occurred_at=utc(2026, 1, 1))
    assert _record(db, [hcp.id], "visit.submitted", {"mode": "remote"}).consent_gap
    grant(db, hcp, "remote_meeting", "promotional", occurred_at=utc(2026, 1, 1))
    assert not _record(db, [hcp.id], "visit.submitted", {"mode": "remote"}).consent_gap


def test_gap_is_judged_at_the_interactions_instant(db, factory):
    hcp = factory.hcp()
    grant(db, hcp, "email", "events", "web_form", occurred_at=utc(2026, 1, 1))
    withdraw(db, hcp, "email", "events", "email_link", occurred_at=utc(2026, 2, 1))
    assert not _record(db, [hcp.id], "email.sent", {"purpose": "events"}, at=utc(2026, 1, 15)).consent_gap
    assert _record(db, [hcp.id], "email.sent", {"purpose": "events"}, at=utc(2026, 2, 15)).consent_gap


def test_outbound_product_call_needs_phone_consent_but_inbound_does_not(db, factory):
    hcp = factory.hcp()
    out = {"direction": "outbound", "reason": "product_information"}
    assert _record(db, [hcp.id], "call_centre.product_information", out).consent_gap
    assert not _record(db, [hcp.id], "call_centre.product_information", {**out, "direction": "inbound"}).consent_gap
    assert not _record(db, [hcp.id], "call_centre.medical_inquiry",
                       {"direction": "outbound", "reason": "medical_inquiry"}, sensitivity="medical").consent_gap


@pytest.mark.parametrize("kind,details,sensitivity,needed", [
    ("visit.submitted", {"mode": "in_person"}, "standard", ("visit", "promotional")),
    ("visit.submitted", {"mode": "in_person"}, "medical", None),
    ("email.sent", {}, "standard", ("email", "promotional")),
    ("email.sent", {"purpose": "market_research"}, "standard", ("email", "market_research")),
    ("email.opened", {}, "standard", None),
    ("event.attended", {}, "standard", None),
])
def test_needed_consent_table(kind, details, sensitivity, needed):
    from crm.timeline.models import Interaction

    item = Interaction(kind=kind, channel=kind.split(".")[0], details=details, sensitivity=sensitivity)
    assert needed_consent(item) == needed


def test_consent_interactions_are_never_gaps(db, factory):
    hcp = factory.hcp()
    withdraw(db, hcp, "all", "all", "call_centre")
    from crm.timeline.models import Interaction

    item = db.query(Interaction).filter_by(channel="consent").one()
    assert item.kind == "consent.withdrawn" and not item.consent_gap


def test_a_backdated_consent_or_withdrawal_decides_the_gap_again(db, factory):
    hcp = factory.hcp()
    visit = _record(db, [hcp.id], "visit.submitted", {"mode": "in_person"}, at=utc(2026, 3, 1, 10))
    unrelated = _record(db, [hcp.id], "email.sent", {"purpose": "events"}, at=utc(2026, 3, 2, 10))
    assert visit.consent_gap and unrelated.consent_gap
    # the signed paper form from before the visit is entered late: the visit was allowed after all
    grant(db, hcp, "visit", "promotional", occurred_at=utc(2026, 2, 1))
    assert visit.consent_gap is False
    assert unrelated.consent_gap is True  # another channel: still a gap
    # a withdrawal reported afterwards, effective before the visit, makes it a gap again
    withdraw(db, hcp, "visit", "promotional", "call_centre", occurred_at=utc(2026, 2, 15))
    assert visit.consent_gap is True


def test_a_backdated_event_rechecks_every_kind_of_promotional_contact(db, factory):
    hcp = factory.hcp()
    call = _record(db, [hcp.id], "call_centre.product_information",
                   {"direction": "outbound", "reason": "product_information"}, at=utc(2026, 3, 1, 10))
    mail = _record(db, [hcp.id], "email.sent", {"purpose": "events"}, at=utc(2026, 3, 2, 10))
    opened = _record(db, [hcp.id], "email.opened", {}, at=utc(2026, 3, 2, 11))
    assert call.consent_gap and mail.consent_gap and not opened.consent_gap
    grant(db, hcp, "phone", "promotional", "call_centre", occurred_at=utc(2026, 2, 1))
    grant(db, hcp, "email", "events", "web_form", occurred_at=utc(2026, 2, 1))
    assert call.consent_gap is False and mail.consent_gap is False
    withdraw(db, hcp, "all", "all", "call_centre", occurred_at=utc(2026, 2, 20))
    assert call.consent_gap is True and mail.consent_gap is True
    assert opened.consent_gap is False  # an open is not a contact the company made
