"""Consent pages.

Public, no login (``consent_public``): the double opt-in confirmation, one-click unsubscribe (RFC 8058)
and the HCP preference centre. The signed token in the URL is the proof, so these routes alone are
CSRF-exempt; GET (and HEAD) only shows a page (mail scanners change nothing), only POST changes consent.

Staff (``consent_pages``): an HCP's ledger (printable, CSV) with the "was it allowed at that instant?"
answer, the capture page for reps and the call centre, coverage, consent gaps, expiring consents and
re-consent per territory, and the admin's erasure page.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask import flash as flash_message
from sqlalchemy import select

from crm.access.policy import can_see_consent_evidence, require_write
from crm.auth.context import actor, client_address, page_auth, viewer
from crm.consent import queries, services, tokens
from crm.consent.models import ALL, CONSENT_CHANNELS, LEDGER_SOURCES, PURPOSES, ConsentEvent, ConsentToken, Notice
from crm.db import utcnow
from crm.errors import Invalid
from crm.extensions import csrf, db
from crm.hcps.models import Territory
from crm.timezones import local_time

public_bp = Blueprint("consent_public", __name__, url_prefix="/consent")
bp = Blueprint("consent_pages", __name__)


@bp.app_template_filter("consent_time")
def consent_time(value: datetime | None) -> str:
    """To the second, in the reader's time zone with the zone shown: ``2026-01-02 10:30:00 CET``."""
    return local_time(value, "seconds") if value else ""


def _label(value: str) -> str:
    return value.replace("_", " ")


def _evidence_ip_ua() -> tuple[str | None, str | None]:
    return client_address(), (request.headers.get("User-Agent") or "unknown")[:1000]


# -- public token pages ------------------------------------------------------------------------------

_STATE_TEXT = {
    "used": ("This link has already been used.", "Nothing more needs to be done; you can close this page."),
    "expired": ("This link has expired.", "Links in our emails are valid for a limited time. "
                                          "Ask us again and we will send you a new one."),
}


def _link_state_page(state: str, detail: str | None = None) -> tuple[str, int]:
    title, text = _STATE_TEXT.get(state, ("This link no longer applies.", detail or ""))
    return render_template("consent/public/link_state.html", title=title, text=detail or text, state=state), 410


def _open(raw: str, purpose: str) -> tuple[ConsentToken, str]:
    token = tokens.resolve(db.session, raw, purpose)
    return token, tokens.status(token)


@public_bp.route("/confirm/<token>", methods=["GET", "POST"])
@csrf.exempt
def confirm(token: str):
    tok, state = _open(token, "confirm")
    if state != "valid":
        return _link_state_page(state)
    request_event = db.session.get(ConsentEvent, tok.event_id) if tok.event_id else None
    notice = db.session.get(Notice, request_event.notice_id) if request_event and request_event.notice_id else None
    if request.method != "POST":  # GET, and HEAD (Flask answers it with GET): a page only
        return render_template("consent/public/confirm.html", token=token, channel=_label(tok.channel or ""),
                               purpose=_label(tok.consent_purpose or ""), notice=notice)
    ip, ua = _evidence_ip_ua()
    try:
        services.confirm(db.session, tok, ip_address=ip, user_agent=ua)
    except services.LinkNoLongerValid as exc:
        return _link_state_page("overtaken", exc.detail)
    prefs = tokens.issue(db.session, "preferences", tok.hcp_id, reference=f"token:{tok.id}")
    return render_template("consent/public/done.html", title="Thank you: your choice is confirmed",
                           text="We will send you information by email as you asked. You can withdraw at any "
                                "time with one click in any of our emails.",
                           preferences_url=url_for(".preferences", token=prefs))


@public_bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt
def unsubscribe(token: str):
    """GET shows a button; POST unsubscribes: the form's button, or an RFC 8058 one-click POST
    (body ``List-Unsubscribe=One-Click``) sent by the mail client."""
    tok, state = _open(token, "unsubscribe")
    if state != "valid":
        return _link_state_page(state)
    if request.method != "POST":  # GET, and HEAD (Flask answers it with GET): a page only
        return render_template("consent/public/unsubscribe.html", token=token,
                               purpose=_label(tok.consent_purpose or "all"))
    everything = request.form.get("scope") == "all"
    ip, ua = _evidence_ip_ua()
    try:
        services.unsubscribe(db.session, tok, everything=everything, ip_address=ip, user_agent=ua)
    except services.LinkNoLongerValid as exc:
        return _link_state_page("used", exc.detail)
    what = "any email from us" if everything or not tok.consent_purpose else f"{_label(tok.consent_purpose)} email"
    prefs = tokens.issue(db.session, "preferences", tok.hcp_id, reference=f"token:{tok.id}")
    return render_template("consent/public/done.html", title="You are unsubscribed",
                           text=f"You will no longer receive {what}.",
                           preferences_url=url_for(".preferences", token=prefs))


@public_bp.route("/preferences/<token>", methods=["GET", "POST"])
@csrf.exempt
def preferences(token: str):
    tok, state = _open(token, "preferences")
    if state != "valid":
        return _link_state_page(state)
    hcp = services.get_hcp(db.session, tok.hcp_id)
    if request.method == "POST":  # only POST changes anything (HEAD is answered as GET)
        wanted = {(c, p) for c in CONSENT_CHANNELS for p in PURPOSES if request.form.get(f"c:{c}:{p}") == "on"}
        ip, ua = _evidence_ip_ua()
        try:
            fresh, changes = services.save_preferences(db.session, tok, wanted, ip_address=ip, user_agent=ua)
        except services.LinkNoLongerValid as exc:
            return _link_state_page("used", exc.detail)
        return redirect(url_for(".preferences", token=fresh, saved=len(changes)), code=303)
    states = {(s.channel, s.purpose): s for s in services.current_states(db.session, hcp.id)}
    return render_template("consent/public/preferences.html", token=token, hcp=hcp, states=states,
                           channels=CONSENT_CHANNELS, purposes=PURPOSES, label=_label,
                           saved=request.args.get("saved"))


@public_bp.post("/preferences/<token>/my-data")
@csrf.exempt
def request_my_data(token: str):
    """"Send me my data": the preference link may have been forwarded, so nothing is downloaded here; a
    fresh, short-lived, single-use link goes to the HCP's address on file."""
    tok, state = _open(token, "preferences")
    if state != "valid":
        return _link_state_page(state)
    result = services.request_data_export(db.session, tok)
    if result.outcome == "no-address":
        text = ("We hold no email address for you, so we cannot send you the link. Please contact us and we will "
                "answer your request another way.")
    else:
        text = (f"We have sent a link to {result.address}. It works once, for {result.minutes} minutes. "
                + ("A link sent a moment ago is still valid: please use that one. " if result.outcome == "already-sent"
                   else "") + "If the address is no longer yours, please contact us.")
    return render_template("consent/public/done.html", title="Check your email", text=text,
                           preferences_url=url_for(".preferences", token=token))


@public_bp.route("/my-data/<token>", methods=["GET", "POST"])
@csrf.exempt
def my_data(token: str):
    """The link mailed to the HCP: GET (and HEAD) shows a button; the POST downloads, once."""
    tok, state = _open(token, "data_export")
    if state != "valid":
        return _link_state_page(state)
    if request.method != "POST":
        return render_template("consent/public/my_data.html", token=token)
    try:
        hcp, document = services.download_data_export(db.session, tok)
    except services.LinkNoLongerValid as exc:
        return _link_state_page("used", exc.detail)
    resp = Response(json.dumps(document, indent=2, ensure_ascii=False), mimetype="application/json")
    resp.headers["Content-Disposition"] = f'attachment; filename="my-data-{hcp.id}.json"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- staff pages -------------------------------------------------------------------------------------

def _parse_at(raw: str | None) -> datetime | None:
    """The "was it allowed?" form's instant; the form says UTC, so a value without offset is UTC."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(errors={"at": ["not a valid date and time"]}) from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@bp.get("/hcps/<int:hcp_id>/consents")
@page_auth()
def ledger(hcp_id: int):
    hcp = services.get_hcp(db.session, hcp_id)
    now = utcnow()
    states = services.current_states(db.session, hcp_id, now)
    events = queries.serialize_events(db.session, viewer(), services.ledger(db.session, hcp_id))
    answer = None
    at = _parse_at(request.args.get("at"))
    channel, purpose = request.args.get("channel"), request.args.get("purpose")
    if at is not None:
        if channel not in CONSENT_CHANNELS or purpose not in PURPOSES:
            raise Invalid(errors={"channel": ["choose a channel and a purpose"]})
        answer = services.can_contact(db.session, hcp_id, channel, purpose, at)
    return render_template(
        "consent/ledger.html", hcp=hcp, states=states, events=events, answer=answer, at=at, now=now,
        channel=channel, purpose=purpose, channels=CONSENT_CHANNELS, purposes=PURPOSES, label=_label,
        evidence=can_see_consent_evidence(viewer()),
        reviews=queries.serialize_reviews(db.session, services.reviews(db.session, hcp_id)),
        can_review=viewer().role == "compliance",
        can_capture=viewer().role in services.ROLE_SOURCES,
    )


@bp.get("/hcps/<int:hcp_id>/consents.csv")
@page_auth("compliance", "admin")
def ledger_csv(hcp_id: int):
    services.get_hcp(db.session, hcp_id)
    events = services.ledger(db.session, hcp_id)
    if any(e.evidence for e in events):  # the digests are checked against the decrypted evidence
        queries.log_evidence_read(db.session, viewer(), hcp_id)
    header = ["event_id", "hcp_id", "occurred_at", "recorded_at", "event", "channel", "purpose", "source",
              "captured_by_role", "notice_version", "notice_text_hash", "valid_until", "refers_to_event_id",
              "merged_from_event_id", "evidence_hash", "evidence_hash_scheme", "evidence_verified"]
    rows = [[e.id, e.hcp_id, e.occurred_at, e.recorded_at, e.event_type, e.channel, e.purpose, e.source,
             e.captured_by_role, e.notice_version, e.notice_text_hash, e.valid_until, e.refers_to_event_id,
             e.merged_from_event_id, e.evidence_hash,
             (e.evidence_hash_scheme or services.LEGACY_EVIDENCE_HASH_SCHEME) if e.evidence_hash else "",
             services.verify_evidence(e)] for e in events]
    return _csv(queries.to_csv(header, rows), f"consent-ledger-hcp-{hcp_id}.csv")


def _csv(body: str, filename: str) -> Response:
    resp = Response(body, mimetype="text/csv")
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return resp


@bp.post("/hcps/<int:hcp_id>/consents/reviews")
@page_auth("compliance")
def add_review(hcp_id: int):
    hcp = services.get_hcp(db.session, hcp_id)
    event_id = request.form.get("event_id", "").strip()
    services.add_review(db.session, actor(), hcp, outcome=request.form.get("outcome", ""),
                        note=request.form.get("note", ""), event_id=int(event_id) if event_id.isdigit() else None)
    flash_message("Review saved.")
    return redirect(url_for(".ledger", hcp_id=hcp_id))


def _capture_sources(role: str) -> list[str]:
    return sorted(services.ROLE_SOURCES.get(role, frozenset()))


@bp.route("/hcps/<int:hcp_id>/consents/capture", methods=["GET", "POST"])
@page_auth("field_rep", "call_centre", "admin")
def capture(hcp_id: int):
    hcp = services.get_hcp(db.session, hcp_id)
    require_write(viewer(), "consent.capture", [hcp.territory_id])
    notices = db.session.scalars(select(Notice).where(Notice.status == "active")
                                 .order_by(Notice.language, Notice.country)).all()
    default_notice = services.active_notice(db.session, "en", hcp.country)
    sources = _capture_sources(viewer().role)
    form: dict[str, Any] = {"channel": "email", "purpose": "promotional", "action": "grant", "source": sources[0],
                            "notice_version": default_notice.version if default_notice else ""}
    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        form.update({k: request.form.get(k, "").strip() for k in ("channel", "purpose", "action", "source",
                                                                   "notice_version")})
        evidence = {k: request.form.get(k, "") for k in ("signature", "form_id", "recording_id", "reference", "note")}
        source = form["source"] if form["source"] in LEDGER_SOURCES else sources[0]
        try:
            if form["action"] == "withdraw":
                services.withdraw_consent(db.session, actor(), hcp, form["channel"], form["purpose"], source,
                                          evidence=evidence)
            else:
                event, _ = services.grant_consent(db.session, actor(), hcp, form["channel"], form["purpose"], source,
                                                  notice_version=form["notice_version"] or None, evidence=evidence)
                if event.event_type == "requested":
                    flash_message("A confirmation email was sent: the consent holds once the HCP confirms it.")
        except Invalid as exc:
            errors, status = exc.errors or {"_": [exc.detail]}, 422
        else:
            flash_message("Consent recorded.")
            return redirect(url_for(".ledger", hcp_id=hcp_id))
    shown = next((n for n in notices if n.version == form["notice_version"]), default_notice)
    return render_template("consent/capture.html", hcp=hcp, notices=notices, notice=shown, form=form, errors=errors,
                           sources=sources, channels=(*CONSENT_CHANNELS, ALL), purposes=(*PURPOSES, ALL),
                           label=_label), status


@bp.get("/consent/coverage")
@page_auth()
def coverage():
    total, items = queries.coverage(db.session)
    return render_template("consent/coverage.html", total=total, items=items, label=_label)


@bp.get("/consent/gaps")
@page_auth("compliance", "admin")
def gaps():
    items, next_cursor = queries.gaps_page(db.session, limit=100, cursor=request.args.get("cursor") or None)
    return render_template("consent/gaps.html", items=items, next_cursor=next_cursor, label=_label)


@bp.get("/consent/gaps.csv")
@page_auth("compliance", "admin")
def gaps_csv():
    rows, cursor = [], None
    while True:
        items, cursor = queries.gaps_page(db.session, limit=200, cursor=cursor)
        rows.extend(items)
        if cursor is None:
            break
    header = ["interaction_id", "occurred_at", "channel", "kind", "owner_role", "hcp_ids", "needed_channel",
              "needed_purpose"]
    body = queries.to_csv(header, [[i["interaction_id"], i["occurred_at"], i["channel"], i["kind"], i["owner_role"],
                                    " ".join(map(str, i["hcp_ids"])), (i["needed"] or {}).get("channel"),
                                    (i["needed"] or {}).get("purpose")] for i in rows])
    return _csv(body, "consent-gaps.csv")


def _expiring_args() -> tuple[int, list[int] | None, str]:
    try:
        days = max(0, min(int(request.args.get("days", "60")), 3660))
    except ValueError:
        days = 60
    code = request.args.get("territory", "").strip()
    if code:
        territory = db.session.scalar(select(Territory).where(Territory.code == code))
        return days, [territory.id] if territory else [], code
    if viewer().role == "field_rep":
        return days, sorted(viewer().territory_ids), ""
    return days, None, ""


@bp.get("/consent/expiring")
@page_auth()
def expiring():
    """Expiring and expired consents: compliance's list, and each rep's re-consent list (own territories)."""
    days, territory_ids, code = _expiring_args()
    items = queries.expiring(db.session, within_days=days, territory_ids=territory_ids)
    territories = db.session.scalars(select(Territory).order_by(Territory.code)).all()
    return render_template("consent/expiring.html", items=items, days=days, territory=code,
                           territories=territories, label=_label, now=utcnow())


@bp.get("/consent/expiring.csv")
@page_auth()
def expiring_csv():
    days, territory_ids, _ = _expiring_args()
    items = queries.expiring(db.session, within_days=days, territory_ids=territory_ids, limit=100_000)
    header = ["hcp_id", "hcp_name", "territory", "channel", "purpose", "state", "valid_until"]
    return _csv(queries.to_csv(header, [[i[k] for k in header] for i in items]), "consent-expiring.csv")


@bp.route("/hcps/<int:hcp_id>/erase", methods=["GET", "POST"])
@page_auth("admin")
def erase(hcp_id: int):
    from crm.hcps.erasure import erase_hcp

    hcp = services.get_hcp(db.session, hcp_id)
    error = None
    if request.method == "POST":
        if request.form.get("confirm") != str(hcp.id):
            error = "Type the HCP's id to confirm the erasure."
        else:
            try:
                erase_hcp(db.session, actor(), hcp, request.form.get("reason", ""))
            except Invalid as exc:
                error = "; ".join(m for ms in exc.errors.values() for m in ms) or exc.detail
            else:
                flash_message(f"HCP {hcp.id} was erased. The consent ledger's proof is kept.")
                return redirect(url_for(".ledger", hcp_id=hcp.id))
    return render_template("consent/erase.html", hcp=hcp, error=error), (422 if error else 200)
