"""Login throttling per (account, address) with backoff, and the client address behind trusted proxies.

The throttle's clock is a fixture (``clock``), so no test depends on how fast the machine runs.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crm.auth.models import LoginAttempt
from crm.consent import services as consent
from crm.consent import tokens
from crm.consent.models import ConsentEvent
from crm.extensions import db as _db
from tests.auth_support import Clock
from tests.conftest import PASSWORD, database_url, make_app
from tests.consent_support import grant

ATTACKER = "198.51.100.66"
USER_HOME = "192.0.2.10"
PROXY = "10.0.0.2"


@pytest.fixture
def clock(monkeypatch):
    return Clock.install(monkeypatch)


def _token(client, email, password, address=None, forwarded=None):
    environ = {"REMOTE_ADDR": address} if address else None
    headers = {"X-Forwarded-For": forwarded} if forwarded else None
    return client.post("/api/v1/auth/token", json={"email": email, "password": password},
                       environ_base=environ, headers=headers)


def _fail(client, user, address, times, forwarded=None):
    for _ in range(times):
        resp = _token(client, user.email, "wrong-password-123", address, forwarded)
        assert resp.status_code == 401


def test_an_attacker_elsewhere_does_not_lock_the_real_user_out(client, factory, clock):
    user = factory.user("medical")
    _fail(client, user, ATTACKER, 5)
    refused = _token(client, user.email, PASSWORD, ATTACKER)
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert refused.headers["Retry-After"] == "1"
    assert refused.get_json()["detail"] == "Too many failed sign-in attempts. Try again in 1 second."
    # the real user, at another address, is not affected
    assert _token(client, user.email, PASSWORD, USER_HOME).status_code == 201
    # still backing off for the attacker (the user's success elsewhere clears nothing for them)
    clock.advance(0.5)
    assert _token(client, user.email, "wrong-password-123", ATTACKER).status_code == 429


def test_backoff_doubles_and_one_try_is_allowed_after_it_expires(client, factory, clock):
    user = factory.user("marketer")
    _fail(client, user, ATTACKER, 5)
    assert _token(client, user.email, "wrong-password-123", ATTACKER).headers["Retry-After"] == "1"
    refused_attempts = len(list(_attempts(client)))
    clock.advance(1)
    assert _token(client, user.email, "wrong-password-123", ATTACKER).status_code == 401  # one more try
    second = _token(client, user.email, "wrong-password-123", ATTACKER)
    assert second.status_code == 429 and second.headers["Retry-After"] == "2"
    assert second.get_json()["detail"].endswith("Try again in 2 seconds.")
    clock.advance(2)
    _fail(client, user, ATTACKER, 1)
    assert _token(client, user.email, PASSWORD, ATTACKER).headers["Retry-After"] == "4"
    # refused attempts are not counted as failures (a refusal checks no password)
    assert len(list(_attempts(client))) == refused_attempts + 2 * 2


def _attempts(client):
    with client.application.app_context():
        return _db.session.scalars(select(LoginAttempt).where(LoginAttempt.succeeded.is_(False))).all()


def test_backoff_is_capped(client, factory, clock, monkeypatch):
    monkeypatch.setitem(client.application.config, "CRM_LOGIN_BACKOFF_MAX_SECONDS", 5)
    user = factory.user("marketer")
    _fail(client, user, ATTACKER, 5)
    for wait in (1, 2, 4, 5, 5):
        resp = _token(client, user.email, "wrong-password-123", ATTACKER)
        assert resp.headers["Retry-After"] == str(wait)
        clock.advance(wait)
        _fail(client, user, ATTACKER, 1)


def test_a_success_resets_the_backoff_for_that_account_and_address(client, factory, clock):
    user = factory.user("marketer")
    _fail(client, user, USER_HOME, 5)
    assert _token(client, user.email, PASSWORD, USER_HOME).status_code == 429
    clock.advance(1)
    assert _token(client, user.email, PASSWORD, USER_HOME).status_code == 201
    # five fresh failures are allowed again before any wait
    _fail(client, user, USER_HOME, 5)
    assert _token(client, user.email, PASSWORD, USER_HOME).status_code == 429


def test_failures_older_than_the_window_are_forgotten(client, factory, clock, app):
    user = factory.user("marketer")
    _fail(client, user, USER_HOME, 5)
    clock.advance(app.config["CRM_LOGIN_WINDOW_MINUTES"] * 60 + 1)
    _fail(client, user, USER_HOME, 4)
    assert _token(client, user.email, PASSWORD, USER_HOME).status_code == 201


def test_the_web_login_page_says_when_to_try_again(client, auth, factory, clock):
    user = factory.user("compliance")
    for _ in range(5):
        assert auth.login(user, password="wrong-password-123").status_code == 401
    page = auth.login(user)
    assert page.status_code == 429
    assert page.headers["Retry-After"] == "1"
    assert "Try again in 1 second." in page.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not signed in


def test_unknown_accounts_are_throttled_alike(client, clock):
    for _ in range(5):
        resp = _token(client, "nobody@pharma.example", "wrong-password-123", ATTACKER)
        assert resp.status_code == 401
    assert _token(client, "nobody@pharma.example", "wrong-password-123", ATTACKER).status_code == 429


def test_one_address_across_many_accounts_backs_off_but_others_still_sign_in(client, factory, clock, monkeypatch):
    monkeypatch.setitem(client.application.config, "CRM_LOGIN_MAX_FAILS_ADDRESS", 8)
    user = factory.user("field_rep")
    for n in range(8):  # credential stuffing: one try per account
        assert _token(client, f"guess{n}@pharma.example", "Spring2026!x", ATTACKER).status_code == 401
    stuffed = _token(client, user.email, PASSWORD, ATTACKER)
    assert stuffed.status_code == 429 and stuffed.headers["Retry-After"] == "1"
    assert _token(client, user.email, PASSWORD, USER_HOME).status_code == 201
    clock.advance(1)
    assert _token(client, "guess99@pharma.example", "Spring2026!x", ATTACKER).status_code == 401
    assert _token(client, user.email, PASSWORD, ATTACKER).headers["Retry-After"] == "2"
    # a valid login from that address does not reset its count across accounts
    clock.advance(2)
    assert _token(client, user.email, PASSWORD, ATTACKER).status_code == 201
    assert _token(client, "guess100@pharma.example", "Spring2026!x", ATTACKER).status_code == 401
    assert _token(client, "guess101@pharma.example", "Spring2026!x", ATTACKER).status_code == 429


# -- the client address behind proxies ----------------------------------------------------------


@pytest.fixture(scope="module")
def proxied_app(app):
    """The same application and database, configured behind one trusted proxy."""
    application = make_app(database_url(), CRM_TRUSTED_PROXIES=1)
    yield application
    with application.app_context():
        _db.engine.dispose()


@pytest.fixture
def proxied(proxied_app, db):
    return proxied_app.test_client()


def test_without_trusted_proxies_a_forwarded_for_header_is_ignored(client, factory, clock):
    user = factory.user("marketer")
    for n in range(5):  # a new spoofed address every time does not escape the throttle
        resp = _token(client, user.email, "wrong-password-123", ATTACKER, forwarded=f"203.0.113.{n}")
        assert resp.status_code == 401
    assert _token(client, user.email, PASSWORD, ATTACKER, forwarded="203.0.113.99").status_code == 429
    keys = {a.key for a in _attempts(client)}
    assert f"address:{ATTACKER}" in keys
    assert not any(k.startswith("address:203.0.113.") for k in keys)


def test_behind_a_trusted_proxy_the_throttle_keys_on_the_client(proxied, factory, clock):
    user = factory.user("marketer")
    _fail(proxied, user, PROXY, 5, forwarded=ATTACKER)
    assert _token(proxied, user.email, PASSWORD, PROXY, forwarded=ATTACKER).status_code == 429
    # the real user comes through the same proxy from another address
    assert _token(proxied, user.email, PASSWORD, PROXY, forwarded=USER_HOME).status_code == 201
    keys = {a.key for a in _attempts(proxied)}
    assert f"address:{ATTACKER}" in keys and f"address:{PROXY}" not in keys


def test_behind_one_proxy_only_the_address_it_added_counts(proxied, factory, clock):
    user = factory.user("marketer")
    # the client sends its own X-Forwarded-For; the proxy appends the address it saw
    for n in range(5):
        resp = _token(proxied, user.email, "wrong-password-123", PROXY, forwarded=f"203.0.113.{n}, {ATTACKER}")
        assert resp.status_code == 401
    assert _token(proxied, user.email, PASSWORD, PROXY, forwarded=f"203.0.113.77, {ATTACKER}").status_code == 429


@pytest.fixture
def confirm_link(db, factory):
    hcp = factory.hcp()
    grant(db, hcp, "email", "promotional", "paper_form")
    raw = tokens.issue(db, "confirm", hcp.id, channel="email", consent_purpose="promotional",
                       event_id=db.query(ConsentEvent).filter_by(hcp_id=hcp.id).one().id)
    return hcp, raw


def _confirmed_ip(db, hcp):
    event = db.query(ConsentEvent).filter_by(hcp_id=hcp.id, event_type="confirmed").one()
    return consent.read_evidence(event)["ip_address"]


def test_consent_evidence_ip_is_the_clients_behind_a_trusted_proxy(proxied, db, confirm_link):
    hcp, raw = confirm_link
    done = proxied.post(f"/consent/confirm/{raw}", environ_base={"REMOTE_ADDR": PROXY},
                        headers={"X-Forwarded-For": "203.0.113.9", "User-Agent": "Firefox/140"})
    assert done.status_code == 200
    assert _confirmed_ip(db, hcp) == "203.0.113.9"


def test_consent_evidence_ip_ignores_a_spoofed_header_without_proxies(client, db, confirm_link):
    hcp, raw = confirm_link
    done = client.post(f"/consent/confirm/{raw}", environ_base={"REMOTE_ADDR": USER_HOME},
                       headers={"X-Forwarded-For": "203.0.113.9", "User-Agent": "Firefox/140"})
    assert done.status_code == 200
    assert _confirmed_ip(db, hcp) == USER_HOME


def test_a_spoofed_forwarded_for_does_not_carry_a_session_to_another_address(client, auth, factory):
    user = factory.user("marketer")
    agent = {"User-Agent": "Firefox/140"}
    client.environ_base.update({"REMOTE_ADDR": USER_HOME, "HTTP_USER_AGENT": "Firefox/140"})
    assert auth.login(user).status_code == 302
    assert client.get("/", headers=agent).status_code == 200
    # the same cookie from the attacker's address, naming the victim's address in the header
    stolen = client.get("/", headers={**agent, "X-Forwarded-For": USER_HOME},
                        environ_base={"REMOTE_ADDR": ATTACKER})
    assert stolen.status_code == 302


def test_trusted_proxies_setting(tmp_path, monkeypatch):
    from crm.config import ConfigError, Settings

    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    assert Settings.from_env({}).flask_config()["CRM_TRUSTED_PROXIES"] == 0
    assert Settings.from_env({"CRM_TRUSTED_PROXIES": "2"}).flask_config()["CRM_TRUSTED_PROXIES"] == 2
    for bad in ("-1", "one"):
        with pytest.raises(ConfigError, match="CRM_TRUSTED_PROXIES"):
            Settings.from_env({"CRM_TRUSTED_PROXIES": bad})
