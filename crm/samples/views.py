"""Sample pages: my samples (inventory, waiting acknowledgements, the ledger), ship (admin), transfer and
count (reps), and the discrepancies compliance reviews."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from crm.access.policy import write_decision
from crm.auth.context import actor, page_auth, viewer
from crm.errors import Invalid
from crm.extensions import db
from crm.pageforms import page_id
from crm.samples import services
from crm.samples.api import consignment_dict, count_dict, discrepancy_dicts, movement_dicts
from crm.samples.models import SampleConsignment

bp = Blueprint("samples_pages", __name__)
FORM_LINES = 5
LEDGER_SHOWN = 50


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"kind_labels": services.KIND_LABELS, "source_labels": services.SOURCE_LABELS}


def _can(action: str) -> bool:
    return write_decision(viewer(), action).allowed


def _lines(prefix: str = "") -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Form rows ``sku_N``, ``lot_N``, ``quantity_N`` that are filled in, as API-shaped lines."""
    lines: list[dict[str, Any]] = []
    errors: dict[str, list[str]] = {}
    for i in range(FORM_LINES * 20):
        sku = request.form.get(f"sku_{i}", "").strip()
        lot = request.form.get(f"lot_{i}", "").strip()
        raw = request.form.get(f"quantity_{i}", "").strip()
        if not (sku or lot or raw):
            continue
        number = page_id(raw) if raw != "0" else 0
        if not sku or not lot or number is None or "\x00" in sku + lot or len(sku) > 40 or len(lot) > 60:
            errors[f"lines.{len(lines)}"] = [f"row {i + 1}: give the sku, the lot and the units as a whole number"]
            continue
        lines.append({"sku": sku, "lot": lot, "quantity": number})
    return lines, errors


def _quantity_errors(lines: list[dict[str, Any]], key: str = "quantity", low: int = 1) -> dict[str, list[str]]:
    return {f"lines.{i}.{key}": [f"must be {low} to {services.MAX_LINE_QUANTITY}"]
            for i, line in enumerate(lines) if not low <= line[key] <= services.MAX_LINE_QUANTITY}


@bp.get("/samples")
@page_auth()
def index():
    """A rep's samples; compliance and administrators pick a rep (``?user_id=``)."""
    who = viewer()
    oversee = services.may_oversee(who)
    user_id = (page_id(request.args.get("user_id")) if oversee else None) or who.user_id
    waiting = [consignment_dict(c) for c in db.session.query(SampleConsignment).filter(
        SampleConsignment.to_user_id == user_id, SampleConsignment.status == "sent").order_by(SampleConsignment.id)]
    moves, _ = services.movements(db.session, user_id, limit=LEDGER_SHOWN)
    counts, _ = services.list_counts(db.session, who, user_id=user_id, limit=5)
    sent, _ = services.list_consignments(db.session, who, "transfer", user_id=user_id, limit=10)
    return render_template(
        "samples/index.html", user_id=user_id, own=user_id == who.user_id, oversee=oversee,
        reps=services.holders(db.session) if oversee else [], names=services.user_names(
            db.session, [user_id, *(c["from_user_id"] for c in waiting), *(t.to_user_id for t in sent),
                         *(t.from_user_id for t in sent)]),
        inventory=services.inventory(db.session, user_id), waiting=waiting, movements=movement_dicts(moves),
        counts=[count_dict(c) for c in counts], transfers=[consignment_dict(t) for t in sent],
        can_ship=_can("sample.ship"), can_transfer=_can("sample.transfer"), can_count=_can("sample.count"))


@bp.post("/samples/consignments/<int:consignment_id>/acknowledge")
@page_auth("field_rep")
def acknowledge(consignment_id: int):
    consignment = db.session.get(SampleConsignment, consignment_id)
    if consignment is None:
        flash("Those samples no longer exist.")
        return redirect(url_for(".index"))
    received: dict[int, int] = {}
    for line in consignment.lines:
        raw = request.form.get(f"received_{line.id}", "").strip()
        number = 0 if raw == "0" else page_id(raw)
        if number is None:
            flash(f"Enter the units received as a whole number (line {line.id}).")
            return redirect(url_for(".index"))
        received[line.id] = number
    try:
        found = services.acknowledge(db.session, actor(), viewer(), consignment, received)
    except Invalid as exc:
        flash(f"Not acknowledged: {exc.detail} " + " ".join(m for ms in exc.errors.values() for m in ms))
        return redirect(url_for(".index"))
    label = "Shipment" if consignment.kind == "shipment" else "Transfer"
    flash(f"{label} #{consignment.id} acknowledged: the units are in your inventory."
          + (f" {len(found)} difference(s) reported to compliance." if found else ""))
    return redirect(url_for(".index"))


def _send_units(send: Any) -> tuple[Any, dict[str, list[str]]]:
    """The shipment and transfer forms: their lines and the receiving rep checked, then ``send(to_user_id,
    lines, note)``; the record made, or the errors to show (nothing written)."""
    lines, errors = _lines()
    to_user_id = page_id(request.form.get("to_user_id"))
    if to_user_id is None:
        errors["to_user_id"] = ["choose the rep who receives the samples"]
    if not lines and not errors:
        errors["lines"] = ["add at least one line"]
    errors.update(_quantity_errors(lines))
    if errors or to_user_id is None:
        return None, errors
    try:
        return send(to_user_id, lines, request.form.get("note", "")[:2000]), {}
    except Invalid as exc:
        return None, exc.errors or {"_": [exc.detail]}


@bp.route("/samples/shipments/new", methods=["GET", "POST"])
@page_auth("admin")
def new_shipment():
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        shipment, errors = _send_units(lambda to, lines, note: services.create_shipment(
            db.session, actor(), viewer(), to_user_id=to, lines=lines, note=note))
        if shipment is not None:
            flash(f"Shipment #{shipment.id} sent; it enters the rep's inventory when they acknowledge it.")
            return redirect(url_for(".new_shipment"))
    return render_template("samples/send.html", kind="shipment", reps=services.holders(db.session),
                           form=request.form, errors=errors, rows=range(FORM_LINES)), 422 if errors else 200


@bp.route("/samples/transfers/new", methods=["GET", "POST"])
@page_auth("field_rep")
def new_transfer():
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        transfer, errors = _send_units(lambda to, lines, note: services.send_transfer(
            db.session, actor(), viewer(), to_user_id=to, lines=lines, note=note))
        if transfer is not None:
            flash(f"Transfer #{transfer.id} sent; the units left your inventory.")
            return redirect(url_for(".index"))
    reps = [r for r in services.holders(db.session) if r.id != actor().id]
    return render_template("samples/send.html", kind="transfer", reps=reps, form=request.form, errors=errors,
                           rows=range(FORM_LINES), inventory=services.inventory(db.session, actor().id)), \
        422 if errors else 200


@bp.route("/samples/count", methods=["GET", "POST"])
@page_auth("field_rep")
def count():
    held = services.inventory(db.session, actor().id)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        lines: list[dict[str, Any]] = []
        for row in held:
            raw = request.form.get(f"counted_{row['lot_id']}", "").strip()
            number = 0 if raw == "0" else page_id(raw)
            if number is None:
                errors[f"counted_{row['lot_id']}"] = [f"lot {row['lot']}: enter the units counted (0 if none)"]
            else:
                lines.append({"sku": row["sku"], "lot": row["lot"], "counted": number})
        extra, extra_errors = _lines()
        errors.update(extra_errors)
        lines += [{"sku": e["sku"], "lot": e["lot"], "counted": e["quantity"]} for e in extra]
        errors.update(_quantity_errors(lines, "counted", 0))
        if not errors:
            try:
                recorded = services.record_count(db.session, actor(), viewer(), lines,
                                                 note=request.form.get("note", "")[:2000])
            except Invalid as exc:
                errors = exc.errors or {"_": [exc.detail]}
            else:
                differences = sum(1 for line in recorded.lines if line.counted != line.expected)
                flash(f"Count #{recorded.id} recorded." + (
                    f" {differences} difference(s) adjusted and reported to compliance." if differences
                    else " It matches your inventory."))
                return redirect(url_for(".index"))
    return render_template("samples/count.html", held=held, form=request.form, errors=errors,
                           rows=range(2)), 422 if errors else 200


@bp.get("/samples/discrepancies")
@page_auth("compliance", "admin")
def discrepancies():
    asked = request.args.get("status", "open")
    status = asked if asked in ("open", "reviewed") else None
    rows, _ = services.list_discrepancies(db.session, viewer(), status=status, limit=200)
    return render_template("samples/discrepancies.html", items=discrepancy_dicts(rows), status=status,
                           can_review=_can("sample.discrepancy.review"))


@bp.post("/samples/discrepancies/<int:discrepancy_id>/review")
@page_auth("compliance")
def review(discrepancy_id: int):
    try:
        services.review_discrepancy(db.session, actor(), viewer(), discrepancy_id,
                                    request.form.get("note", "")[:2000].replace("\x00", ""))
    except Invalid as exc:
        flash("Not closed: " + " ".join(m for ms in exc.errors.values() for m in ms))
    else:
        flash(f"Discrepancy #{discrepancy_id} reviewed.")
    return redirect(url_for(".discrepancies"))
