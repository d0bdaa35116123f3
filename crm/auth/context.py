"""Who is asking: bearer tokens for the API, server-side sessions for pages."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g, request, session
from flask_login import current_user

from crm.access.policy import Viewer
from crm.auth import services
from crm.auth.models import User
from crm.errors import Forbidden, Unauthorized
from crm.extensions import db, login_manager


def bearer_token() -> str:
    """The token of this request's ``Authorization: Bearer`` header; none: ``Unauthorized``."""
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise Unauthorized("Send Authorization: Bearer <token> (POST /api/v1/auth/token gives one).")
    return raw.strip()


def api_auth(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Require a live bearer token; sets ``g.viewer`` (policy Viewer). The token is checked and the
    viewer read in one statement on every request (nothing cached: a revoked token, a disabled user or a
    changed role is refused on the next request); the User itself is loaded only if the view asks for
    ``actor()`` (most reads do not)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.viewer = services.viewer_for_token(db.session, bearer_token())
        return fn(*args, **kwargs)

    return wrapper


def page_auth(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Require a logged-in page user (optionally one of ``roles``); sets ``g.actor``/``g.viewer``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            user: User = current_user._get_current_object()
            if roles and user.role not in roles:
                raise Forbidden(f"This page is for {', '.join(roles)}", rule="page:role")
            g.actor = user
            g.viewer = services.viewer_for(db.session, user)
            return fn(*args, **kwargs)

        return wrapper

    return deco


def actor() -> User:
    """The signed-in User; on the API loaded on first use, by the id the token check found."""
    user = g.get("actor")
    if user is None:
        user = db.session.get(User, g.viewer.user_id)
        if user is None:  # deleted since the token was checked, in this very request
            raise Unauthorized("The token is invalid, expired or revoked.")
        g.actor = user
    return user


def viewer() -> Viewer:
    return g.viewer


def client_address() -> str | None:
    """The client's address: the one thing that login throttling, consent evidence and sessions record.

    ``remote_addr`` is the client's once ``CRM_TRUSTED_PROXIES`` hops of ProxyFix (crm.web) have read
    X-Forwarded-For; with 0, that header is ignored, so a client cannot name another address.
    """
    return request.remote_addr


def _session_identifier() -> str:
    # Flask-Login's own identifier reads X-Forwarded-For unchecked, so a stolen cookie replayed with the
    # victim's address in that header would pass "strong" session protection; use the resolved address.
    agent = request.headers.get("User-Agent", "")
    return hashlib.sha512(f"{client_address()}|{agent}".encode()).hexdigest()


def register_login(app: Any) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in."
    login_manager.session_protection = "strong"
    login_manager._session_identifier_generator = _session_identifier  # no public hook in Flask-Login 0.6

    @login_manager.user_loader
    def _load(user_id: str) -> User | None:
        user = services.user_for_web_session(db.session, session.get("sid"))
        if user is None or str(user.id) != user_id:
            return None
        return user
