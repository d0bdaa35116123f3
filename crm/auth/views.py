"""Login and logout pages. Sessions are server-side rows; logout really ends them."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user
from marshmallow import ValidationError

from crm.auth import services
from crm.auth.context import actor, client_address, page_auth
from crm.auth.schemas import SettingsFormSchema
from crm.db import utcnow
from crm.errors import Invalid, TooManyAttempts, Unauthorized
from crm.extensions import db
from crm.timezones import local_time, zone_names

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """Only local paths: ``//evil``, ``https://evil``, ``\\\\evil`` and the like go home instead."""
    if not target:
        return url_for("home.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
        return url_for("home.index")
    if "\\" in target or any(ord(c) < 32 for c in target):
        return url_for("home.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    status = 200
    headers = {}
    if request.method == "POST":
        email = request.form.get("email", "")
        password = request.form.get("password", "")
        try:
            user = services.check_password(db.session, email, password, client_address())
        except (Unauthorized, TooManyAttempts) as exc:
            error, status = exc.detail, exc.status
            if isinstance(exc, TooManyAttempts) and exc.retry_after:
                headers["Retry-After"] = str(exc.retry_after)
            db.session.info["keep_on_error"] = True  # keep the recorded failure
        else:
            raw = services.start_web_session(db.session, user)
            session.clear()
            session["sid"] = raw
            login_user(user)
            return redirect(safe_next(request.args.get("next") or request.form.get("next")))
    return render_template("auth/login.html", error=error, next=request.args.get("next", "")), status, headers


_PASSWORD_LABELS = {"current_password": "Current password", "password": "New password",
                    "confirm_password": "New password again"}


@bp.route("/password", methods=["GET", "POST"])
@page_auth()
def password():
    """Change one's own password; on success every session and token of the user ends, so sign in again."""
    error, errors, status, headers = None, {}, 200, {}
    if request.method == "POST":
        new = request.form.get("new_password", "")
        if new != request.form.get("confirm_password", ""):
            errors, status = {"confirm_password": ["does not match the new password"]}, 422
        else:
            try:
                services.change_own_password(db.session, actor(), request.form.get("current_password", ""), new,
                                             client_address())
            except Invalid as exc:  # a wrong current password is kept for the throttle by the service
                errors, status = exc.errors, exc.status
            except TooManyAttempts as exc:
                error, status = exc.detail, exc.status
                headers["Retry-After"] = str(exc.retry_after or 1)
            else:
                logout_user()
                session.clear()
                flash("Your password is changed; sign in with the new one.")
                return redirect(url_for("auth.login"))
    return render_template("auth/password.html", error=error, errors=errors, labels=_PASSWORD_LABELS), status, headers


@bp.route("/settings", methods=["GET", "POST"])
@page_auth()
def settings():
    """Each user's own settings: the time zone pages show times in (a list of IANA names, typed or picked).

    The browser's proposal on first sign-in (crm/static/timezone.js) posts ``only_if_unset=1`` and gets
    204: it never overrides a zone the user chose.
    """
    errors: dict[str, list[str]] = {}
    status = 200
    typed = actor().time_zone or ""
    if request.method == "POST":
        typed = request.form.get("time_zone", "")
        try:
            data = SettingsFormSchema().load(request.form.to_dict())
            changed = services.set_time_zone(db.session, actor(), actor(), data["time_zone"],
                                             only_if_unset=data["only_if_unset"])
        except ValidationError:  # empty, too long, or a malformed flag
            errors, status = {"time_zone": ["Choose a time zone from the list, e.g. Europe/Berlin."]}, 422
        except Invalid as exc:
            errors, status = exc.errors, exc.status
        else:
            if data["only_if_unset"]:
                return "", 204
            flash(f"Times are now shown in {actor().time_zone}." if changed else "Nothing changed.")
            return redirect(url_for("auth.settings"))
    return render_template("auth/settings.html", errors=errors, typed=typed, zones=zone_names(),
                           example=local_time(utcnow())), status


@bp.post("/logout")
def logout():
    services.end_web_session(db.session, session.get("sid"))
    logout_user()
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.login"))
