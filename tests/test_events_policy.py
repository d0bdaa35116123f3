"""The policy rows added for events and the call centre: one check per (action, role)."""

from __future__ import annotations

import pytest

from crm.access.policy import ROLES, Viewer, write_decision

ALLOWED = {
    "event.write": {"marketer", "medical"},
    "transfer.write": {"marketer", "medical"},
    "transfer_cap.manage": {"admin"},
    "transparency_report.read": {"compliance", "admin"},
    "call_centre.contact": {"call_centre"},
    "medical_inquiry.answer": {"medical"},
    "medical_inquiry.queue": {"medical", "compliance", "call_centre", "admin"},
    "adverse_event.open": {"call_centre", "medical"},
    "adverse_event.close": {"call_centre", "medical"},
    "adverse_event.queue": {"medical", "compliance", "call_centre", "admin"},
    "guardrail.manage": {"compliance"},
}


@pytest.mark.parametrize("action", sorted(ALLOWED))
@pytest.mark.parametrize("role", ROLES)
def test_write_rule(action, role):
    decision = write_decision(Viewer(1, role), action)
    assert decision.allowed is (role in ALLOWED[action])
    if not decision.allowed:
        assert decision.rule == f"{action}:role"
