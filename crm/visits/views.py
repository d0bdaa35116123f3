"""The phone-first visit form: new draft, edit draft, submit with the HCP's signature, my drafts.

Times: ``datetime-local`` inputs carry no offset, and the server never guesses one. The form sends the
browser's offset (a hidden field that crm/static/visit.js fills for the chosen date, so daylight saving is
right) or the offset the user picked; with neither, the page says so and keeps what was typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from crm.access.policy import owner_decision, require_owner, require_write
from crm.auth.context import actor, page_auth, viewer
from crm.db import utcnow
from crm.errors import Conflict, Forbidden, Invalid, flatten_messages
from crm.extensions import db
from crm.hcps import picker
from crm.hcps.models import HCP
from crm.products.models import Product, SampleLot
from crm.visits import services
from crm.visits.models import Visit
from crm.visits.schemas import VisitChangesSchema, VisitCreateSchema

bp = Blueprint("visits_pages", __name__)

# Offsets in use somewhere in the world, minutes east of UTC, for people who pick theirs by hand.
TZ_OFFSETS = (-720, -660, -600, -570, -540, -480, -420, -360, -300, -240, -210, -180, -150, -120, -60, 0, 60, 120,
              180, 210, 240, 270, 300, 330, 345, 360, 390, 420, 480, 525, 540, 570, 600, 630, 660, 720, 765, 780,
              840)
_MIN_OFFSET, _MAX_OFFSET = -720, 840
_LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


def offset_label(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "\u2212"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{mins:02d}"


class FormState:
    """What the form shows: the raw strings a person typed (kept on errors) or a visit's values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key, "")

    @classmethod
    def blank(cls, hcp_id: str) -> FormState:
        return cls({"hcp_id": hcp_id, "mode": "in_person", "products": [], "samples": [], "tz_choice": ""})

    @classmethod
    def from_form(cls, form: MultiDict[str, str]) -> FormState:
        values: dict[str, Any] = {key: form.get(key, "") for key in (
            "hcp_id", "occurred_at", "tz_choice", "tz_offset", "duration_minutes", "mode", "meeting_url",
            "key_messages", "notes", "follow_up_date", "follow_up_text", "version", "reason")}
        # the picker's multi-select sends one value per HCP; a typed list (older form) still parses
        values["attendee_hcp_ids"] = ", ".join(v.strip() for v in form.getlist("attendee_hcp_ids") if v.strip())
        values["products"] = form.getlist("products")
        values["samples"] = _sample_rows(form)
        values["signature"] = form.get("signature", "")
        return cls(values)

    @classmethod
    def from_shown(cls, shown: dict[str, Any]) -> FormState:
        """The form for an amendment, filled from the visit as the read path gave it (full level only)."""
        occurred = shown["occurred_at"].astimezone(UTC)
        follow_up = shown["follow_up"] or {}
        return cls({
            "hcp_id": str(shown["hcp_id"]),
            "occurred_at": occurred.strftime(_LOCAL_FORMAT),
            "occurred_at_utc": occurred.isoformat().replace("+00:00", "Z"),
            "tz_choice": "0",
            "tz_offset": "",
            "duration_minutes": "" if shown["duration_minutes"] is None else str(shown["duration_minutes"]),
            "mode": shown["mode"],
            "meeting_url": shown.get("meeting_url") or "",
            "products": list(shown["products"]),
            "key_messages": "\n".join(shown["key_messages"]),
            "samples": [{"sku": s["sku"], "quantity": str(s["quantity"]), "lot": s["lot"]} for s in shown["samples"]],
            "notes": shown["notes"] or "",
            "follow_up_date": follow_up["date"].isoformat() if follow_up.get("date") else "",
            "follow_up_text": follow_up.get("text") or "",
            "attendee_hcp_ids": ", ".join(str(i) for i in shown["attendee_hcp_ids"]),
            "version": str(shown["version"]),
            "reason": "",
        })

    @classmethod
    def from_visit(cls, visit: Visit) -> FormState:
        # Rendered in UTC with the UTC offset chosen, which is right without JS; visit.js turns it into
        # the browser's local time (data-utc) and switches the offset to "detected".
        return cls({
            "hcp_id": str(visit.hcp_id),
            "occurred_at": visit.occurred_at.astimezone(UTC).strftime(_LOCAL_FORMAT),
            "occurred_at_utc": visit.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "tz_choice": "0",
            "tz_offset": "",
            "duration_minutes": "" if visit.duration_minutes is None else str(visit.duration_minutes),
            "mode": visit.mode,
            "meeting_url": visit.meeting_url or "",
            "products": list(visit.products),
            "key_messages": "\n".join(visit.key_messages),
            "samples": [{"sku": s.sku, "quantity": str(s.quantity), "lot": s.lot} for s in visit.samples],
            "notes": visit.notes,
            "follow_up_date": visit.follow_up_date.isoformat() if visit.follow_up_date else "",
            "follow_up_text": visit.follow_up_text or "",
            "attendee_hcp_ids": ", ".join(str(a.hcp_id) for a in visit.attendees),
            "version": str(visit.version),
        })


_LABELS = {"hcp_id": "HCP", "occurred_at": "Date and time", "duration_minutes": "Duration", "mode": "Mode",
           "meeting_url": "Meeting link",
           "products": "Products", "key_messages": "Key messages", "notes": "Notes", "follow_up": "Follow-up",
           "follow_up.date": "Follow-up date", "follow_up.text": "Follow-up text", "signature": "Signature",
           "attendee_hcp_ids": "Other HCPs present", "samples": "Samples", "_schema": "Visit",
           "reason": "Reason for the amendment", "changes": "Changes"}


def field_label(field: str) -> str:
    """``samples.0.lot`` -> ``Sample 1 lot``: error messages a person can place on the form."""
    match = re.fullmatch(r"samples\.(\d+)\.(\w+)", field)
    if match:
        return f"Sample {int(match.group(1)) + 1} {match.group(2)}"
    return _LABELS.get(field, field.replace("_", " ").capitalize())


def _sample_rows(form: MultiDict[str, str]) -> list[dict[str, str]]:
    skus, qtys, lots = form.getlist("sample_sku"), form.getlist("sample_quantity"), form.getlist("sample_lot")
    rows = []
    for i in range(max(len(skus), len(qtys), len(lots))):
        row = {"sku": _at(skus, i), "quantity": _at(qtys, i), "lot": _at(lots, i)}
        if any(v.strip() for v in row.values()):  # an untouched blank row is not a sample
            rows.append(row)
    return rows


def _at(values: list[str], i: int) -> str:
    return values[i] if i < len(values) else ""


def _occurred_at(state: FormState, errors: dict[str, list[str]]) -> str | None:
    """The local date-time and the chosen (or detected) offset as one ISO 8601 string with offset."""
    local = state["occurred_at"].strip()
    if not local:
        errors["occurred_at"] = ["When did the visit take place?"]
        return None
    raw_offset = (state["tz_choice"] or state["tz_offset"]).strip()
    if not raw_offset:
        errors["occurred_at"] = ["Your time zone could not be detected: choose your UTC offset."]
        return None
    try:
        naive = datetime.fromisoformat(local)
        offset = int(raw_offset)
    except ValueError:
        errors["occurred_at"] = ["Not a valid date and time."]
        return None
    if naive.tzinfo is not None or not _MIN_OFFSET <= offset <= _MAX_OFFSET:
        errors["occurred_at"] = ["Not a valid date and time."]
        return None
    return naive.replace(tzinfo=timezone(timedelta(minutes=offset))).isoformat()


def _payload(state: FormState, *, with_hcp: bool) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The form as the API's JSON shape (so the same schema checks it), plus form-level errors."""
    errors: dict[str, list[str]] = {}
    payload: dict[str, Any] = {
        "mode": state["mode"] or "in_person",
        # A link typed for a remote visit is dropped when the rep switches to in person (never stored then).
        "meeting_url": (state["meeting_url"].strip() or None) if state["mode"] == "remote" else None,
        "products": state["products"],
        "key_messages": [line.strip() for line in state["key_messages"].splitlines() if line.strip()],
        "notes": state["notes"],
        "follow_up": None,
        "attendee_hcp_ids": [],
    }
    occurred_at = _occurred_at(state, errors)
    if occurred_at is not None:
        payload["occurred_at"] = occurred_at
    if with_hcp:
        if state["hcp_id"].strip().isdigit():
            payload["hcp_id"] = int(state["hcp_id"])
        else:
            errors["hcp_id"] = ["Which HCP was visited? Search for the HCP and choose them."]
    duration = state["duration_minutes"].strip()
    if duration:
        if duration.isdigit():
            payload["duration_minutes"] = int(duration)
        else:
            errors["duration_minutes"] = ["Minutes, as a whole number."]
    samples = []
    for i, row in enumerate(state["samples"]):
        qty = row["quantity"].strip()
        if not qty.isdigit():
            errors[f"samples.{i}.quantity"] = ["Quantity as a whole number above zero."]
            continue
        samples.append({"sku": row["sku"], "quantity": int(qty), "lot": row["lot"]})
    payload["samples"] = samples
    if state["follow_up_date"].strip() or state["follow_up_text"].strip():
        payload["follow_up"] = {"date": state["follow_up_date"].strip(), "text": state["follow_up_text"].strip()}
    for part in re.split(r"[,\s]+", state["attendee_hcp_ids"].strip()):
        if not part:
            continue
        if part.isdigit():
            payload["attendee_hcp_ids"].append(int(part))
        else:
            errors["attendee_hcp_ids"] = ["Choose the other HCPs from the search."]
    if state["signature"]:
        payload["signature"] = state["signature"]
    return payload, errors


def _render(state: FormState, visit: Visit | None, errors: dict[str, list[str]], status: int = 200,
            amending: Visit | None = None) -> Any:
    products = list(db.session.scalars(
        select(Product).where(Product.active.is_(True)).order_by(Product.name)))
    # Samples: only sample products, and the lots not yet expired today, as suggestions.
    sample_products = [p for p in products if p.is_sample]
    sample_lots = db.session.execute(
        select(Product.sku, SampleLot).join(SampleLot, SampleLot.product_id == Product.id)
        .where(Product.active.is_(True), Product.is_sample.is_(True), SampleLot.expires_on >= utcnow().date())
        .order_by(Product.sku, SampleLot.expires_on)).all()
    known = {p.sku for p in products}
    extra = [sku for sku in state["products"] if sku not in known]  # an inactive sku already on the draft
    hcp = None
    if state["hcp_id"].strip().isdigit():
        hcp = db.session.get(HCP, int(state["hcp_id"]))
    return render_template(
        "visits/form.html", state=state, visit=visit, errors=errors, products=products, extra_products=extra,
        sample_products=sample_products, sample_lots=sample_lots,
        hcp=hcp, label=field_label, tz_offsets=[(m, offset_label(m)) for m in TZ_OFFSETS],
        consent_pairs=VISIT_CONSENT_PAIRS, notice=None if amending else _notice_for_form(), amending=amending,
        consent_grant=request.form.getlist("consent_grant"), consent_withdraw=request.form.getlist("consent_withdraw"),
    ), status


def _notice_for_form() -> Any:
    from crm.consent.services import active_notice

    return active_notice(db.session, "en") if actor().role == "field_rep" else None


def _save(state: FormState, visit: Visit | None) -> Any:
    """Create or update the draft from the form, then submit it when asked. Any 422 re-renders the form
    with the messages and what was typed (the transaction rolls back; nothing half-saved)."""
    submitting = request.form.get("action") == "submit"
    creating = visit is None
    payload, errors = _payload(state, with_hcp=visit is None)
    schema = VisitCreateSchema() if visit is None else VisitChangesSchema()
    try:
        data = schema.load(payload)
    except ValidationError as exc:
        errors = {**flatten_messages(exc.messages), **errors}
    if errors:
        return _render(state, visit, errors, 422)
    try:
        if visit is None:
            visit = services.create_visit(db.session, actor(), viewer(), data)
        else:
            version = state["version"].strip()
            services.update_visit(db.session, actor(), viewer(), visit, data,
                                  expected_version=int(version) if version.isdigit() else None)
        if submitting:
            # grants first, so the visit is judged with the consent the HCP gave in it
            withdrawals = _record_visit_consents(visit)
            services.submit_visit(db.session, actor(), viewer(), visit)
            withdrawals()
    except Invalid as exc:
        # A draft created in this request is rolled back with it: show the "new" form again.
        return _render(state, None if creating else visit, exc.errors or {"_schema": [exc.detail]}, 422)
    if submitting:
        flash("Visit submitted: it is on the timeline.")
        return redirect(url_for("timeline_pages.hcp", hcp_id=visit.hcp_id))
    flash("Draft saved.")
    return redirect(url_for("visits_pages.edit", visit_id=visit.id))


# The (channel, purpose) pairs a rep can capture or withdraw in a visit, in the order the form shows them.
VISIT_CONSENT_PAIRS = [("visit", "promotional"), ("remote_meeting", "promotional"), ("email", "promotional"),
                       ("email", "events"), ("email", "medical_information"), ("phone", "promotional")]


def _pairs(field: str) -> list[tuple[str, str]]:
    chosen = set(request.form.getlist(field))
    return [pair for pair in VISIT_CONSENT_PAIRS if f"{pair[0]}:{pair[1]}" in chosen]


def _record_visit_consents(visit: Visit) -> Callable[[], None]:
    """Consent captured in the visit (SPEC section 7: "one tap in a visit"): grants need the HCP's signature
    on the active notice; withdrawals never need evidence. Same transaction as the visit; source `visit`.

    Grants are recorded now, at the visit's instant. Withdrawals are returned as a step to run after the
    visit is submitted, dated at the visit's end: the contact began with the consent it had.
    """
    from crm.consent.services import active_notice, grant_consent, withdraw_consent

    grants, withdrawals = _pairs("consent_grant"), _pairs("consent_withdraw")
    if not grants and not withdrawals:
        return lambda: None
    both = set(grants) & set(withdrawals)
    if both:
        raise Invalid(errors={"consent": ["a pair cannot be granted and withdrawn in the same visit"]})
    hcp = visit.hcp
    signature = request.form.get("consent_signature", "").strip()
    if grants:
        notice = active_notice(db.session, "en")
        if notice is None:
            raise Invalid(errors={"consent": ["no consent notice is active; ask an administrator"]})
        if not signature:
            raise Invalid(errors={"consent_signature": ["the HCP must sign the notice to give consent"]})
        for channel, purpose in grants:
            grant_consent(db.session, actor(), hcp, channel, purpose, "visit", notice_version=notice.version,
                          evidence={"signature": signature}, occurred_at=visit.occurred_at)
    ended = min(utcnow(), visit.occurred_at + timedelta(minutes=visit.duration_minutes or 0, seconds=1))

    def withdraw() -> None:
        for channel, purpose in withdrawals:
            withdraw_consent(db.session, actor(), hcp, channel, purpose, "visit",
                             evidence={"signature": signature} if signature else None, occurred_at=ended)

    return withdraw


@bp.route("/visits/new", methods=["GET", "POST"])
@page_auth()
def new():
    require_write(viewer(), "visit.create")
    if request.method == "POST":
        if picker.finding():  # "Find" in an HCP picker without JavaScript: the form again, with the matches
            return _render(FormState.from_form(request.form), None, {})
        return _save(FormState.from_form(request.form), None)
    hcp_id = request.args.get("hcp_id", "").strip()
    if hcp_id.isdigit():
        hcp = db.session.get(HCP, int(hcp_id))
        if hcp is not None:
            # Refuse a rep at once for an HCP outside their territories, not after the form is filled.
            require_write(viewer(), "visit.create", [hcp.territory_id])
    return _render(FormState.blank(hcp_id if hcp_id.isdigit() else ""), None, {})


@bp.route("/visits/<int:visit_id>", methods=["GET", "POST"])
@page_auth()
def edit(visit_id: int):
    visit = services.get_visit(db.session, visit_id)
    if request.method == "POST":
        # Decide before reading the form, so nobody but the owner ever gets the form back.
        require_owner(viewer(), visit.owner_id, "visit.edit")
        if visit.status != "draft":
            raise Conflict(services.LOCKED)
        if picker.finding():
            return _render(FormState.from_form(request.form), visit, {})
        return _save(FormState.from_form(request.form), visit)
    if visit.status == "draft" and visit.owner_id == actor().id:
        return _render(FormState.from_visit(visit), visit, {})
    chain = _chain(visit)
    later = {older.id: newer.id for older, newer in zip(chain, chain[1:], strict=False)}
    # The whole chain through the one read path: each version's reason as this viewer may read it.
    versions = services.visible_visits(db.session, viewer(), chain, later)
    shown = next(v for v in versions if v["id"] == visit.id)
    can_amend = (visit.status == "submitted" and visit.id not in later and not shown["redacted"]
                 and owner_decision(viewer(), visit.owner_id, "visit.amend", services.amend_delegates(visit)).allowed)
    return render_template("visits/show.html", visit=shown, hcp=visit.hcp,
                           versions=versions if len(chain) > 1 else [], can_amend=can_amend)


def _amendable(visit: Visit) -> dict[str, Any]:
    """The visit as the viewer reads it, if they may amend it from the page: owner (or Medical Affairs
    for a medical visit, as the API allows), a submitted visit not amended yet, and read in full, since
    the form shows its content (a rep's visit that turned out to be an adverse-event report is `pv`, and
    its content is withheld from its own owner too). Refusals are the same 403/409 as the API's."""
    require_owner(viewer(), visit.owner_id, "visit.amend", services.amend_delegates(visit))
    if visit.status != "submitted":
        raise Conflict("Only submitted visits are amended; edit the draft instead.")
    later = services.amended_by(db.session, [visit.id]).get(visit.id)
    if later is not None:
        raise Conflict(f"This visit was already amended by visit {later}; amend that one instead.")
    shown = services.visible_visit(db.session, viewer(), visit)
    if shown["redacted"]:
        raise Forbidden(f"{shown['redaction_reason']}: it cannot be amended from a form you may not read.",
                        rule="visit.amend:restricted")
    return shown


@bp.route("/visits/<int:visit_id>/amend", methods=["GET", "POST"])
@page_auth()
def amend(visit_id: int):
    """Amend a submitted visit: the form prefilled, a reason required, sent through ``amend_visit``
    (a new submitted visit whose timeline item supersedes the old one; both stay)."""
    visit = services.get_visit(db.session, visit_id)
    shown = _amendable(visit)
    if request.method == "GET":
        return _render(FormState.from_shown(shown), None, {}, amending=visit)
    state = FormState.from_form(request.form)
    state.values["hcp_id"] = str(visit.hcp_id)  # the HCP is kept; attendees may change
    if picker.finding():
        return _render(state, None, {}, amending=visit)
    payload, errors = _payload(state, with_hcp=False)
    reason = state["reason"].strip()
    if not reason:
        errors["reason"] = ["Say why the visit is amended."]
    try:
        changes = VisitChangesSchema().load(payload)
    except ValidationError as exc:
        errors = {**flatten_messages(exc.messages), **errors}
    if errors:
        return _render(state, None, errors, 422, amending=visit)
    try:
        new = services.amend_visit(db.session, actor(), viewer(), visit, changes, reason)
    except (Invalid, Conflict) as exc:
        problems = getattr(exc, "errors", None) or {"_schema": [exc.detail]}
        return _render(state, None, problems, 422 if isinstance(exc, Invalid) else 409, amending=visit)
    flash(f"Visit #{visit.id} amended: visit #{new.id} now stands for it on the timeline.")
    return redirect(url_for("visits_pages.edit", visit_id=new.id))


def _chain(visit: Visit) -> list[Visit]:
    """Every version of the visit, the original first: what it amends and what amended it."""
    older: list[Visit] = []
    at: Visit | None = visit
    while at is not None and at.amends_id is not None:
        at = db.session.get(Visit, at.amends_id)
        if at is not None:
            older.append(at)
    chain = [*reversed(older), visit]
    while True:
        later = services.amended_by(db.session, [chain[-1].id]).get(chain[-1].id)
        if later is None:
            return chain
        chain.append(services.get_visit(db.session, later))


@bp.get("/visits")
@page_auth()
def mine():
    drafts, _ = services.list_visits(db.session, owner_id=actor().id, status="draft", limit=200)
    recent, _ = services.list_visits(db.session, owner_id=actor().id, status="submitted", limit=20)
    today = utcnow().date()
    due = services.follow_ups_shown(db.session, viewer(),
                                    services.follow_ups_due(db.session, actor(), today + timedelta(days=7)))
    return render_template("visits/mine.html", drafts=drafts, recent=recent, due=due, today=today)
