"""The HCP page offers each role the actions it may take, and no others."""

import pytest

EXPECTED = {
    "field_rep": {"Log a visit", "Take an order", "Capture consent", "Consent"},
    "medical": {"Log a visit", "Consent"},
    "marketer": {"Consent"},
    "call_centre": {"Log a contact", "Capture consent", "Consent"},
    "compliance": {"Consent"},
    "admin": {"Capture consent", "Consent", "Erase (GDPR)"},
}
ALL = set().union(*EXPECTED.values())


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_actions_per_role(role, client, auth, factory):
    territory = factory.territory()
    hcp = factory.hcp(territory=territory)
    user = factory.user(role, territories=[territory] if role == "field_rep" else [])
    auth.login(user)
    page = client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
    shown = {label for label in ALL if f">{label}</a>" in page}
    assert shown == EXPECTED[role]
