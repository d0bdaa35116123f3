"""Authentication: API tokens, server-side web sessions, throttled password checks, viewers."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from flask import current_app
from sqlalchemy import Select, String, and_, bindparam, cast, func, or_, select

from crm.access.policy import ROLES, Viewer
from crm.audit import services as audit
from crm.auth.models import ApiToken, LoginAttempt, User, WebSession
from crm.db import DbSession, as_session, driver_rows, keep_on_error, utcnow
from crm.errors import Invalid, TooManyAttempts, Unauthorized
from crm.hcps.models import Territory, UserTerritoryAssignment
from crm.security.crypto import blind_index
from crm.security.passwords import hash_password, password_problem, verify_password
from crm.security.tokens import new_token, token_hash

_GENERIC = "Wrong email or password."


def find_user_by_email(session: DbSession, email: str) -> User | None:
    return session.scalar(select(User).where(User.email_bidx == blind_index(email)))


def current_territory_ids(session: DbSession, user_id: int, at: datetime | None = None) -> frozenset[int]:
    at = at or utcnow()
    rows = session.scalars(
        select(UserTerritoryAssignment.territory_id).where(
            UserTerritoryAssignment.user_id == user_id,
            UserTerritoryAssignment.valid_from <= at,
            or_(UserTerritoryAssignment.valid_to.is_(None), UserTerritoryAssignment.valid_to > at),
        )
    )
    return frozenset(rows)


def viewer_for(session: DbSession, user: User, at: datetime | None = None) -> Viewer:
    """The policy's view of ``user``: role and territories covered at ``at`` (now by default)."""
    return Viewer(user.id, user.role, current_territory_ids(session, user.id, at))


def _pair_key(email: str, address: str | None) -> str:
    # Hashed: the blind index and an IPv6 address together do not fit the key column.
    pair = f"{blind_index(email) or '-'}|{address or '-'}"
    return "pair:" + hashlib.sha256(pair.encode()).hexdigest()


def _throttle_keys(email: str, address: str | None) -> dict[str, int]:
    """Throttle keys and the failures each allows before backing off.

    Per (account, address), so an attacker elsewhere cannot lock the real user out; per address across
    accounts, with a much higher allowance, against credential stuffing. No key is per account alone.
    """
    cfg = current_app.config
    keys = {_pair_key(email, address): cfg["CRM_LOGIN_MAX_FAILS"]}
    if address:
        keys[f"address:{address}"] = cfg["CRM_LOGIN_MAX_FAILS_ADDRESS"]
    return keys


def _wait_seconds(session: DbSession, key: str, allowed: int, now: datetime) -> float:
    """How long ``key`` must still wait: 0 within its allowance, then 1 s, 2 s, 4 s ... capped, counted
    from its last failure. Failures before the window or before the key's last success do not count."""
    cfg = current_app.config
    since = now - timedelta(minutes=cfg["CRM_LOGIN_WINDOW_MINUTES"])
    # "After the last success" by id, not by time: ids order the attempts even within one clock tick.
    last_ok = session.scalar(select(func.max(LoginAttempt.id)).where(
        LoginAttempt.key == key, LoginAttempt.occurred_at >= since, LoginAttempt.succeeded.is_(True)))
    fails, last_fail = session.execute(select(func.count(), func.max(LoginAttempt.occurred_at)).where(
        LoginAttempt.key == key, LoginAttempt.occurred_at >= since, LoginAttempt.succeeded.is_(False),
        LoginAttempt.id > (last_ok or 0))).one()
    if fails < allowed or last_fail is None:
        return 0.0
    # The exponent is bounded before the power so a long attack cannot overflow it.
    cap = float(cfg["CRM_LOGIN_BACKOFF_MAX_SECONDS"])
    backoff = min(2.0 ** min(fails - allowed, 62), cap)
    return max(0.0, (last_fail + timedelta(seconds=backoff) - now).total_seconds())


def _check_throttle(session: DbSession, email: str, address: str | None) -> None:
    now = utcnow()
    wait = max(_wait_seconds(session, key, allowed, now) for key, allowed in _throttle_keys(email, address).items())
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        # Same answer whether or not the account exists: ghosts are throttled alike.
        when = f"{seconds} second{'s' if seconds != 1 else ''}"
        raise TooManyAttempts(f"Too many failed sign-in attempts. Try again in {when}.", retry_after=seconds)


def check_password(session: DbSession, email: str, password: str, address: str | None) -> User:
    """The user for these credentials, or ``Unauthorized`` (``TooManyAttempts`` while backing off).

    Failures are recorded for the throttle in a way that survives the failed request's rollback; a success
    clears the (account, address) backoff but not the address's count across accounts.
    """
    _check_throttle(session, email, address)
    user = find_user_by_email(session, email)
    ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.active:
        _record_failure(session, email, address, user.id if user else None)
        raise Unauthorized(_GENERIC)
    session.add(LoginAttempt(key=_pair_key(email, address), succeeded=True, user_id=user.id, occurred_at=utcnow()))
    session.flush()
    return user


def _record_failure(session: DbSession, email: str, address: str | None, user_id: int | None) -> None:
    now = utcnow()  # the throttle's clock, not the column default's, so both agree
    for key in _throttle_keys(email, address):
        session.add(LoginAttempt(key=key, succeeded=False, user_id=user_id, occurred_at=now))
    session.flush()
    # The request ends in 401, but the failure must be kept for the throttle to work.
    keep_on_error(session)


def issue_token(session: DbSession, email: str, password: str, address: str | None) -> tuple[str, ApiToken, User]:
    user = check_password(session, email, password, address)
    raw = new_token()
    tok = ApiToken(
        user_id=user.id,
        token_hash=token_hash(raw),
        role_at_issue=user.role,
        expires_at=utcnow() + timedelta(hours=current_app.config["CRM_TOKEN_TTL_HOURS"]),
    )
    session.add(tok)
    session.flush()
    return raw, tok, user


def revoke_token(session: DbSession, raw: str) -> None:
    """Revoke one bearer token (its holder signing out of the API); unknown or revoked: no change."""
    tok = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(raw)))
    if tok is not None and tok.revoked_at is None:
        tok.revoked_at = utcnow()
        session.flush()


_TOKEN_REFUSED = "The token is invalid, expired or revoked."  # noqa: S105 - a message, not a secret


@cache
def _token_viewer_statement(dialect: str) -> Select[Any]:
    """Token -> (user id, role, current territory ids) in one statement, built once per dialect.

    Only a live token of an active user whose role has not changed since the token was issued
    matches: an expired, revoked, disabled or re-roled credential finds no row. Nothing about the
    viewer is cached between requests, so a revocation holds from the very next request."""
    agg = func.string_agg if dialect == "postgresql" else func.group_concat
    now = bindparam("now", type_=ApiToken.expires_at.type)
    a = UserTerritoryAssignment
    territories = (
        select(agg(cast(a.territory_id, String), ","))
        .where(a.user_id == ApiToken.user_id, a.valid_from <= now, or_(a.valid_to.is_(None), a.valid_to > now))
        .correlate(ApiToken).scalar_subquery()
    )
    return (
        select(ApiToken.user_id, User.role, territories)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None),
               ApiToken.expires_at > now, User.active.is_(True), User.role == ApiToken.role_at_issue)
    )


def viewer_for_token(session: DbSession, raw: str) -> Viewer:
    """The policy's viewer behind a bearer token (role and territories covered now); expired, revoked,
    disabled or re-roled: 401. One statement; no User is loaded and no personal datum decrypted
    (``crm.auth.context.actor`` loads the User when a request needs it)."""
    real = as_session(session)
    real.flush()  # as autoflush would: a revocation earlier in this transaction counts
    # Compiled once and run on the driver's cursor (crm.db.DriverStatement): every API request runs it.
    rows = driver_rows(real, "token_viewer", _token_viewer_statement,
                       {"token_hash": token_hash(raw), "now": utcnow()})
    row = rows[0] if rows else None
    if row is None:
        raise Unauthorized(_TOKEN_REFUSED)
    user_id, role, joined = row
    return Viewer(user_id, role, frozenset(int(t) for t in joined.split(",")) if joined else frozenset())


def start_web_session(session: DbSession, user: User) -> str:
    raw = new_token()
    session.add(
        WebSession(
            user_id=user.id,
            session_hash=token_hash(raw),
            role_at_issue=user.role,
            expires_at=utcnow() + timedelta(hours=current_app.config["CRM_SESSION_TTL_HOURS"]),
        )
    )
    session.flush()
    return raw


def user_for_web_session(session: DbSession, raw: str | None) -> User | None:
    if not raw:
        return None
    ws = session.scalar(select(WebSession).where(WebSession.session_hash == token_hash(raw)))
    if ws is None or ws.revoked_at is not None or ws.expires_at <= utcnow():
        return None
    user = session.get(User, ws.user_id)
    if user is None or not user.active or user.role != ws.role_at_issue:
        return None
    return user


def end_web_session(session: DbSession, raw: str | None) -> None:
    if not raw:
        return
    ws = session.scalar(select(WebSession).where(WebSession.session_hash == token_hash(raw)))
    if ws is not None and ws.revoked_at is None:
        ws.revoked_at = utcnow()


def revoke_all_credentials(session: DbSession, user_id: int) -> None:
    now = utcnow()
    for model in (ApiToken, WebSession):
        for row in session.scalars(select(model).where(model.user_id == user_id, model.revoked_at.is_(None))):
            row.revoked_at = now  # type: ignore[attr-defined]  # both models have it; mypy sees their base


def create_user(
    session: DbSession,
    actor: Any,
    *,
    email: str,
    name: str,
    role: str,
    password: str,
    territory_codes: list[str] | tuple[str, ...] = (),
) -> User:
    """Create a user (admin, or the CLI as ``actor=None``). Unknown territory codes are an error."""
    errors: dict[str, list[str]] = {}
    if role not in ROLES:
        errors["role"] = [f"must be one of {', '.join(ROLES)}"]
    if "@" not in email:
        errors["email"] = ["must be an email address"]
    problem = password_problem(password, email=email, name=name)
    if problem:
        errors["password"] = [problem]
    if not name.strip():
        errors["name"] = ["must not be empty"]
    territories = []
    for code in territory_codes:
        t = session.scalar(select(Territory).where(Territory.code == code))
        if t is None:
            errors.setdefault("territory", []).append(f"unknown territory code {code!r}")
        else:
            territories.append(t)
    if not errors and find_user_by_email(session, email) is not None:
        errors["email"] = ["a user with this email exists"]
    if errors:
        raise Invalid("The user cannot be created.", errors=errors)
    user = User(email=email.strip(), email_bidx=blind_index(email), name=name.strip(), role=role,
                password_hash=hash_password(password))
    session.add(user)
    session.flush()
    for t in territories:
        session.add(UserTerritoryAssignment(user_id=user.id, territory_id=t.id))
    audit.record(session, actor, "user.create", "user", user.id,
                 audit.created({"email": email, "name": name, "role": role,
                                "territories": list(territory_codes)}))
    return user


def update_user(session: DbSession, actor: Any, user: User, *, role: str | None = None,
                active: bool | None = None) -> User:
    """Change role or active flag; either change kills the user's tokens and sessions."""
    before = {"role": user.role, "active": user.active}
    if role is not None:
        if role not in ROLES:
            raise Invalid(errors={"role": [f"must be one of {', '.join(ROLES)}"]})
        user.role = role
    if active is not None:
        user.active = active
    after = {"role": user.role, "active": user.active}
    if before != after:
        revoke_all_credentials(session, user.id)
        audit.record(session, actor, "user.update", "user", user.id, audit.diff(before, after))
    return user


def set_password(session: DbSession, actor: Any, user: User, password: str) -> None:
    """Give ``user`` a new password (their own change, or an admin's reset from the CLI).

    The policy of ``password_problem`` applies; all the user's tokens and sessions end, so a stolen
    credential does not outlive the change.
    """
    problem = password_problem(password, email=user.email, name=user.name)
    if problem:
        raise Invalid("The password cannot be set.", errors={"password": [problem]})
    before = user.password_hash
    user.password_hash = hash_password(password)
    revoke_all_credentials(session, user.id)
    session.flush()
    audit.record(session, actor, "user.password.set", "user", user.id,
                 audit.diff({"password": before}, {"password": user.password_hash}))


def set_time_zone(session: DbSession, actor: Any, user: User, name: str, *, only_if_unset: bool = False) -> bool:
    """Set the zone ``user`` reads times in (an IANA name; ``UTC`` allowed). Returns whether it changed.

    ``only_if_unset`` is the browser's proposal on first sign-in: it never overrides a zone the user chose.
    An unknown name is a 422 on ``time_zone`` with a message that says what is expected.
    """
    from crm.timezones import parse_zone

    zone = parse_zone(name)
    if zone is None:
        raise Invalid("The time zone cannot be set.", errors={"time_zone": [
            "Unknown time zone; choose one from the list, e.g. Europe/Berlin or America/New_York."]})
    if only_if_unset and user.time_zone:
        return False
    if user.time_zone == zone.key:
        return False
    before = user.time_zone
    user.time_zone = zone.key
    session.flush()
    audit.record(session, actor, "user.settings", "user", user.id,
                 audit.diff({"time_zone": before}, {"time_zone": zone.key}))
    return True


def change_own_password(session: DbSession, user: User, current: str, new: str, address: str | None) -> None:
    """A signed-in user changes their password; the current one is checked (and throttled) like a login."""
    try:
        check_password(session, user.email, current, address)
    except Unauthorized as exc:  # the failure is already kept for the throttle
        raise Invalid("The password cannot be changed.", errors={"current_password": ["is not correct"]}) from exc
    set_password(session, user, user, new)


def assign_territory(session: DbSession, actor: Any, user: User, territory: Territory,
                     valid_from: datetime | None = None) -> UserTerritoryAssignment:
    row = UserTerritoryAssignment(user_id=user.id, territory_id=territory.id, valid_from=valid_from or utcnow())
    session.add(row)
    session.flush()
    audit.record(session, actor, "user.territory.assign", "user", user.id,
                 audit.created({"territory": territory.code}))
    return row


def end_territory(session: DbSession, actor: Any, user: User, territory: Territory,
                  at: datetime | None = None) -> None:
    at = at or utcnow()
    rows = session.scalars(select(UserTerritoryAssignment).where(and_(
        UserTerritoryAssignment.user_id == user.id, UserTerritoryAssignment.territory_id == territory.id,
        UserTerritoryAssignment.valid_to.is_(None))))
    for row in rows:
        row.valid_to = at
    audit.record(session, actor, "user.territory.end", "user", user.id,
                 audit.diff({"territory": territory.code}, {}))
