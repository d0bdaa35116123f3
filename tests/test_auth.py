"""Tokens, sessions, throttling, CSRF, redirects and size limits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm.auth.models import ApiToken
from crm.auth.services import update_user
from crm.db import utcnow
from tests.conftest import PASSWORD


def test_token_issue_and_use(client, factory):
    user = factory.user("marketer")
    resp = client.post("/api/v1/auth/token", json={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["user"] == {"id": user.id, "email": user.email, "name": user.name, "role": "marketer"}
    assert body["expires_at"].endswith("Z")


def test_wrong_credentials_do_not_say_whether_the_account_exists(client, factory):
    user = factory.user("marketer")
    wrong = client.post("/api/v1/auth/token", json={"email": user.email, "password": "nope-nope-nope"})
    ghost = client.post("/api/v1/auth/token", json={"email": "ghost@pharma.example", "password": "x" * 12})
    assert wrong.status_code == ghost.status_code == 401
    assert wrong.get_json()["detail"] == ghost.get_json()["detail"]
    assert wrong.mimetype == "application/problem+json"


def test_failed_logins_are_throttled_per_account(client, factory, db):
    user = factory.user("marketer")
    for _ in range(5):
        bad = {"email": user.email, "password": "bad-password!"}
        assert client.post("/api/v1/auth/token", json=bad).status_code == 401
    # even the right password is refused while throttled
    resp = client.post("/api/v1/auth/token", json={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 429
    ghost = "nobody@pharma.example"
    for _ in range(5):
        client.post("/api/v1/auth/token", json={"email": ghost, "password": "bad-password!"})
    assert client.post("/api/v1/auth/token", json={"email": ghost, "password": "x" * 12}).status_code == 429


def test_long_password_with_emoji_is_not_truncated(client, factory):
    password = ("pässwörd-🔐🧪" * 8)[:72]
    user = factory.user("marketer", password=password)
    assert client.post("/api/v1/auth/token", json={"email": user.email, "password": password}).status_code == 201
    # differs only after byte 72: bcrypt would accept it; we must not
    near = {"email": user.email, "password": password[:-1] + "x"}
    assert client.post("/api/v1/auth/token", json=near).status_code == 401


def test_forged_expired_revoked_tokens(api, client, factory, db):
    user = factory.user("marketer")
    ok = api(user)
    assert ok.get("/api/v1/openapi.json").status_code == 200
    assert client.get("/api/v1/hcps", headers={"Authorization": "Bearer forged"}).status_code == 401
    assert client.get("/api/v1/hcps").status_code == 401
    tok = db.query(ApiToken).filter_by(user_id=user.id).one()
    tok.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    assert ok.get("/api/v1/hcps").status_code == 401


def test_token_dies_when_user_disabled_or_role_changes(api, factory, db):
    user = factory.user("marketer")
    c = api(user)
    assert c.get("/api/v1/hcps").status_code == 200
    update_user(db, None, user, role="medical")
    assert c.get("/api/v1/hcps").status_code == 401
    user2 = factory.user("marketer")
    c2 = api(user2)
    update_user(db, None, user2, active=False)
    assert c2.get("/api/v1/hcps").status_code == 401


def test_web_login_logout_ends_server_side_session(client, auth, factory):
    user = factory.user("marketer")
    resp = auth.login(user)
    assert resp.status_code == 302
    assert client.get("/").status_code == 200
    cookie = client.get_cookie("crm_session")
    assert cookie is not None
    auth.logout()
    assert client.get("/").status_code == 302
    # replaying the old cookie does not bring the session back
    client.set_cookie("crm_session", cookie.value)
    assert client.get("/").status_code == 302


def test_disabled_users_live_session_ends(client, auth, factory, db):
    user = factory.user("marketer")
    auth.login(user)
    assert client.get("/").status_code == 200
    update_user(db, None, user, active=False)
    assert client.get("/").status_code == 302


def test_next_redirects_only_to_local_paths(client, auth, factory):
    user = factory.user("marketer")
    resp = auth.login(user, next_url="https://evil.example/x")
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    auth.logout()
    resp = auth.login(user, next_url="//evil.example")
    assert resp.headers["Location"] == "/"
    auth.logout()
    resp = auth.login(user, next_url="/api/docs")
    assert resp.headers["Location"] == "/api/docs"


def test_form_post_without_csrf_token_is_refused(client, factory):
    user = factory.user("marketer")
    resp = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 400
    assert client.get("/").status_code == 302


def test_login_page_shows_generic_error(client, auth, factory):
    user = factory.user("marketer")
    resp = auth.login(user, password="wrong-wrong-wrong")
    assert resp.status_code == 401
    assert "Wrong email or password." in resp.get_data(as_text=True)


def test_body_over_limit_is_413(client, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    resp = client.post("/api/v1/auth/token", data=b"x" * (limit + 1), content_type="application/json")
    assert resp.status_code == 413
    assert resp.mimetype == "application/problem+json"


def test_malformed_json_is_400_and_unknown_fields_422(client):
    resp = client.post("/api/v1/auth/token", data="{not json", content_type="application/json")
    assert resp.status_code == 400
    resp = client.post("/api/v1/auth/token", json={"email": "a@b.c", "password": "x", "admin": True})
    assert resp.status_code == 422
    assert "admin" in resp.get_json()["errors"]


def test_security_headers(client):
    resp = client.get("/login")
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok", "database": "ok"}


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "compliance", "admin"])
def test_delete_token_revokes_the_token_of_the_request_only(api, client, factory, db, role):
    user = factory.user(role)
    c, other = api(user), api(user)
    resp = c.delete("/api/v1/auth/token")
    assert resp.status_code == 204 and resp.get_data() == b""
    assert c.get("/api/v1/hcps").status_code == 401
    again = c.delete("/api/v1/auth/token")
    assert again.status_code == 401 and again.mimetype == "application/problem+json"
    # the user's other token lives on
    assert other.get("/api/v1/hcps").status_code == 200
    assert db.query(ApiToken).filter_by(user_id=user.id).filter(ApiToken.revoked_at.isnot(None)).count() == 1


def test_delete_token_needs_a_live_token(client):
    assert client.delete("/api/v1/auth/token").status_code == 401
    assert client.delete("/api/v1/auth/token", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_token_revocation_is_documented(client):
    op = client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/auth/token"]["delete"]
    assert op["security"] == [{"bearer": []}]
    assert {"204", "401"} <= set(op["responses"]) and "200" not in op["responses"]
    change = client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/auth/password"]["post"]
    assert "204" in change["responses"] and "422" in change["responses"] and "429" in change["responses"]
