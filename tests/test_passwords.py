"""Password policy: long enough, not common or predictable, not the user's email or name; where it applies."""

from __future__ import annotations

import pytest

from crm.audit.models import AuditRecord
from crm.auth.models import ApiToken, WebSession
from crm.auth.services import find_user_by_email
from crm.security.passwords import common_passwords, password_problem, verify_password
from tests.auth_support import Clock
from tests.conftest import PASSWORD

GOOD = "mauve lantern orbit"


@pytest.fixture
def clock(monkeypatch):
    return Clock.install(monkeypatch)


@pytest.mark.parametrize("password", [
    "Password2026!", "p@ssw0rd1234", "qwerty123456", "123456qwerty", "Welcome12345", "Summer2026!!",
    "iloveyou2026", "passwordpassword", "aaaaaaaaaaaa", "abcabcabcabc", "123456789012", "0987654321098",
    "qwertyuiopas", "1qaz2wsx3edc", "zyxwvutsrqpo", "LETMEIN-2026",
])
def test_common_and_predictable_passwords_are_refused(password):
    assert "too common" in password_problem(password)


@pytest.mark.parametrize("password", [GOOD, PASSWORD, "marketer-demo-2026", "4829-1937-5521", "Tr0ub4dor&3xx"])
def test_long_uncommon_passwords_are_accepted(password):
    assert password_problem(password) is None


def test_length_limits():
    assert password_problem("k7#Vq9!mZ2x") == "must be at least 12 characters"  # 11
    assert password_problem("k7#Vq9!mZ2xw") is None
    assert password_problem("k" * 1025) == "must be at most 1024 characters"


@pytest.mark.parametrize("password", ["ada.lovelace@x.example", "Ada.Lovelace2026", "adalovelace!!",
                                      "Ada Lovelace 1815"])
def test_the_users_email_or_name_is_refused(password):
    assert password_problem(password, email="ada.lovelace@x.example", name="Ada Lovelace") == (
        "must not be your email address or name")


def test_the_bundled_list_is_a_reasonable_size_and_lower_case():
    common = common_passwords()
    assert len(common) >= 500
    assert all(p == p.casefold().strip() and p for p in common)
    assert {"123456", "password", "qwerty", "iloveyou", "letmein"} <= common


def test_creating_a_user_refuses_a_common_password(factory):
    from crm.errors import Invalid

    with pytest.raises(Invalid) as info:
        factory.user("marketer", password="Password2026!")
    assert "too common" in info.value.errors["password"][0]
    with pytest.raises(Invalid) as info:
        factory.user("marketer", name="Grace Hopper", password="gracehopper1906")
    assert info.value.errors["password"] == ["must not be your email address or name"]


def test_cli_users_create_refuses_a_common_password(runner, db):
    result = runner.invoke(args=["crm", "users", "create", "--email", "new@pharma.example", "--name", "New One",
                                 "--role", "marketer", "--password", "qwerty123456"])
    assert result.exit_code == 1
    assert "error: password: is too common" in result.output
    assert find_user_by_email(db, "new@pharma.example") is None
    ok = runner.invoke(args=["crm", "users", "create", "--email", "new@pharma.example", "--name", "New One",
                             "--role", "marketer", "--password", GOOD])
    assert ok.exit_code == 0, ok.output


def test_cli_set_password_applies_the_policy_and_ends_every_credential(runner, api, auth, client, factory, db):
    user = factory.user("admin")
    c = api(user)
    auth.login(user)
    assert c.get("/api/v1/hcps").status_code == 200 and client.get("/").status_code == 200
    result = runner.invoke(args=["crm", "users", "set-password", "--email", user.email, "--password", GOOD])
    assert result.exit_code == 0, result.output
    db.expire_all()
    assert verify_password(user.password_hash, GOOD)
    assert c.get("/api/v1/hcps").status_code == 401
    assert client.get("/").status_code == 302
    assert db.query(ApiToken).filter_by(user_id=user.id, revoked_at=None).count() == 0
    assert db.query(WebSession).filter_by(user_id=user.id, revoked_at=None).count() == 0
    record = db.query(AuditRecord).filter_by(action="user.password.set", entity_id=str(user.id)).one()
    assert GOOD not in str(record.changes) and user.password_hash not in str(record.changes)
    unknown = runner.invoke(args=["crm", "users", "set-password", "--email", "ghost@pharma.example",
                                  "--password", GOOD])
    assert unknown.exit_code == 1 and "no user" in unknown.output


def test_cli_set_password_refuses_a_common_password(runner, factory, db):
    user = factory.user("admin")
    refused = runner.invoke(args=["crm", "users", "set-password", "--email", user.email, "--password",
                                  "Welcome12345"])
    assert refused.exit_code == 1 and "error: password: is too common" in refused.output


def test_a_refused_password_changes_nothing(api, factory, db):
    from crm.auth.services import set_password
    from crm.errors import Invalid

    user = factory.user("admin")
    c = api(user)
    with pytest.raises(Invalid):
        set_password(db, None, user, "Welcome12345")
    assert verify_password(user.password_hash, PASSWORD)
    assert c.get("/api/v1/hcps").status_code == 200


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "compliance", "admin"])
def test_every_role_changes_its_own_password_through_the_api(api, client, factory, role):
    user = factory.user(role)
    c = api(user)
    other = api(user)
    resp = c.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": GOOD})
    assert resp.status_code == 204
    # every token ends, this one included
    assert c.get("/api/v1/hcps").status_code == 401
    assert other.get("/api/v1/hcps").status_code == 401
    assert client.post("/api/v1/auth/token", json={"email": user.email, "password": PASSWORD}).status_code == 401
    assert client.post("/api/v1/auth/token", json={"email": user.email, "password": GOOD}).status_code == 201


def test_password_change_refusals(api, client, factory, db, clock):
    user = factory.user("marketer")
    c = api(user)
    wrong = c.post("/api/v1/auth/password", json={"current_password": "not-my-password", "new_password": GOOD})
    assert wrong.status_code == 422 and wrong.get_json()["errors"] == {"current_password": ["is not correct"]}
    common = c.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": "Password2026!"})
    assert common.status_code == 422 and "too common" in common.get_json()["errors"]["password"][0]
    mine = c.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": user.email})
    assert mine.status_code == 422
    assert c.get("/api/v1/hcps").status_code == 200  # nothing changed, the token lives
    assert client.post("/api/v1/auth/password", json={"current_password": PASSWORD,
                                                       "new_password": GOOD}).status_code == 401
    # guessing the current password through this endpoint is throttled like a sign-in
    for _ in range(4):
        c.post("/api/v1/auth/password", json={"current_password": "not-my-password", "new_password": GOOD})
    throttled = c.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": GOOD})
    assert throttled.status_code == 429 and throttled.headers["Retry-After"]


def _change_page(client, auth, current, new, confirm=None):
    token = auth.csrf_token("/password")
    return client.post("/password", data={"csrf_token": token, "current_password": current, "new_password": new,
                                          "confirm_password": new if confirm is None else confirm})


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "compliance", "admin"])
def test_every_role_changes_its_password_on_the_page(client, auth, api, factory, role):
    user = factory.user(role)
    token_client = api(user)
    auth.login(user)
    page = client.get("/password")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert 'href="/settings"' in client.get("/").get_data(as_text=True)  # the header: your settings
    assert 'href="/password"' in client.get("/settings").get_data(as_text=True)
    done = _change_page(client, auth, PASSWORD, GOOD)
    assert done.status_code == 302 and done.headers["Location"] == "/login"
    assert client.get("/").status_code == 302  # signed out here...
    assert token_client.get("/api/v1/hcps").status_code == 401  # ...and on the API
    assert auth.login(user, password=PASSWORD).status_code == 401
    assert auth.login(user, password=GOOD).status_code == 302


def test_the_password_page_refuses_with_reasons(client, auth, factory, clock):
    user = factory.user("marketer")
    auth.login(user)
    mismatch = _change_page(client, auth, PASSWORD, GOOD, confirm=GOOD + "x")
    assert mismatch.status_code == 422 and "does not match" in mismatch.get_data(as_text=True)
    common = _change_page(client, auth, PASSWORD, "Password2026!")
    assert common.status_code == 422 and "too common" in common.get_data(as_text=True)
    wrong = _change_page(client, auth, "not-my-password", GOOD)
    assert wrong.status_code == 422 and "Current password: is not correct" in wrong.get_data(as_text=True)
    for _ in range(4):
        _change_page(client, auth, "not-my-password", GOOD)
    throttled = _change_page(client, auth, PASSWORD, GOOD)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert "Try again in 1 second." in throttled.get_data(as_text=True)
    assert client.get("/").status_code == 200  # still signed in, password unchanged
    no_csrf = client.post("/password", data={"current_password": PASSWORD, "new_password": GOOD,
                                             "confirm_password": GOOD})
    assert no_csrf.status_code == 400


def test_the_password_page_needs_a_signed_in_user(client):
    resp = client.get("/password")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")
