"""Sample accountability over JSON: shipments, transfers, inventory, the ledger, counts, discrepancies."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from crm.auth.context import actor, api_auth, viewer
from crm.extensions import db
from crm.openapi import doc
from crm.samples import services
from crm.samples.models import SampleConsignment, SampleCount, SampleDiscrepancy, SampleMovement
from crm.samples.schemas import (
    AcknowledgeIn,
    ConsignmentArgs,
    ConsignmentIn,
    ConsignmentOut,
    ConsignmentPage,
    CountIn,
    CountOut,
    CountPage,
    DiscrepancyArgs,
    DiscrepancyOut,
    DiscrepancyPage,
    InventoryOut,
    MovementOut,
    MovementPage,
    ReviewIn,
    UserArgs,
)
from crm.schemas import decode_cursor, encode_cursor, load_args, load_body, page

bp = Blueprint("samples_api", __name__, url_prefix="/api/v1/samples")
TAGS = ["samples"]


# -- dumps (the pages use them too) -------------------------------------------------------------------

def consignment_dict(c: SampleConsignment) -> dict[str, Any]:
    labels = services.lot_labels(db.session, (line.lot_id for line in c.lines))
    discrepancies = list(db.session.scalars(select(SampleDiscrepancy.id).where(
        SampleDiscrepancy.consignment_id == c.id).order_by(SampleDiscrepancy.id)))
    return {
        "id": c.id, "kind": c.kind, "status": c.status, "from_user_id": c.from_user_id, "to_user_id": c.to_user_id,
        "sent_at": c.sent_at, "received_at": c.received_at, "note": c.note,
        "lines": [{"id": line.id, "sku": labels[line.lot_id][0], "lot": labels[line.lot_id][1],
                   "expires_on": labels[line.lot_id][2], "quantity_sent": line.quantity_sent,
                   "quantity_received": line.quantity_received} for line in c.lines],
        "discrepancy_ids": discrepancies,
    }


def movement_dicts(rows: list[SampleMovement]) -> list[dict[str, Any]]:
    labels = services.lot_labels(db.session, (m.lot_id for m in rows))
    return [{"id": m.id, "kind": m.kind, "sku": labels[m.lot_id][0], "lot": labels[m.lot_id][1],
             "quantity": m.quantity, "occurred_at": m.occurred_at, "recorded_at": m.recorded_at,
             "consignment_id": m.consignment_id, "visit_id": m.visit_id, "count_id": m.count_id} for m in rows]


def count_dict(c: SampleCount) -> dict[str, Any]:
    labels = services.lot_labels(db.session, (line.lot_id for line in c.lines))
    return {"id": c.id, "user_id": c.user_id, "counted_at": c.counted_at, "note": c.note,
            "lines": [{"sku": labels[line.lot_id][0], "lot": labels[line.lot_id][1], "expected": line.expected,
                       "counted": line.counted} for line in c.lines]}


def discrepancy_dicts(rows: list[SampleDiscrepancy]) -> list[dict[str, Any]]:
    labels = services.lot_labels(db.session, (d.lot_id for d in rows))
    names = services.user_names(db.session, (d.user_id for d in rows))
    return [{"id": d.id, "user_id": d.user_id, "user_name": names.get(d.user_id, ""), "sku": labels[d.lot_id][0],
             "lot": labels[d.lot_id][1], "source": d.source, "consignment_id": d.consignment_id,
             "count_id": d.count_id, "expected": d.expected, "actual": d.actual, "difference": d.difference,
             "reported_at": d.reported_at, "status": d.status, "reviewed_at": d.reviewed_at,
             "review_note": d.review_note} for d in rows]


def _before(args: dict[str, Any]) -> int | None:
    return decode_cursor(args["cursor"], (int,))[0] if args.get("cursor") else None


def _next(last_id: int | None) -> str | None:
    return encode_cursor(last_id) if last_id is not None else None


def _whose(args: dict[str, Any]) -> int:
    user_id = args.get("user_id") or viewer().user_id
    services.require_own_or_oversight(viewer(), user_id)
    return user_id


# -- shipments and transfers --------------------------------------------------------------------------

@bp.post("/shipments")
@doc("Ship samples to a field rep (administrators)", tags=TAGS, body=ConsignmentIn, responses={201: ConsignmentOut},
     errors=(400, 401, 403, 413, 415, 422))
@api_auth
def create_shipment():
    """From the company's sample stock. Each line names a sku, one of its lots (not expired) and the units.
    Nothing enters the rep's inventory until the rep acknowledges receipt."""
    data = load_body(ConsignmentIn())
    shipment = services.create_shipment(db.session, actor(), viewer(), to_user_id=data["to_user_id"],
                                        lines=data["lines"], note=data["note"])
    return ConsignmentOut().dump(consignment_dict(shipment)), 201


def _list(kind: str) -> dict[str, Any]:
    args = load_args(ConsignmentArgs())
    rows, last = services.list_consignments(db.session, viewer(), kind, user_id=args["user_id"],
                                            status=args["status"], limit=args["limit"], before_id=_before(args))
    return page([ConsignmentOut().dump(consignment_dict(c)) for c in rows], _next(last))


@bp.get("/shipments")
@doc("Shipments, newest first", tags=TAGS, query=ConsignmentArgs, responses={200: ConsignmentPage}, errors=(401, 422))
@api_auth
def list_shipments():
    """A rep sees the shipments sent to them (`status=sent`: waiting for their acknowledgement); compliance and
    administrators see all (`user_id` narrows to one rep)."""
    return _list("shipment")


@bp.get("/shipments/<int:shipment_id>")
@doc("One shipment", tags=TAGS, responses={200: ConsignmentOut}, errors=(401, 403, 404))
@api_auth
def show_shipment(shipment_id: int):
    return ConsignmentOut().dump(consignment_dict(
        services.get_consignment(db.session, viewer(), shipment_id, "shipment")))


def _acknowledge(consignment_id: int, kind: str) -> dict[str, Any]:
    data = load_body(AcknowledgeIn())
    consignment = services.get_consignment(db.session, viewer(), consignment_id, kind)
    received = {line["id"]: line["quantity_received"] for line in data["lines"]}
    services.acknowledge(db.session, actor(), viewer(), consignment, received)
    return ConsignmentOut().dump(consignment_dict(consignment))


@bp.post("/shipments/<int:shipment_id>/acknowledge")
@doc("Acknowledge receipt of a shipment (the receiving rep)", tags=TAGS, body=AcknowledgeIn,
     responses={200: ConsignmentOut}, errors=(400, 401, 403, 404, 409, 413, 415, 422))
@api_auth
def acknowledge_shipment(shipment_id: int):
    """The units received enter your inventory. Give `quantity_received` for a line that arrived short (or
    over): the difference is reported to compliance as a discrepancy. Twice: 409."""
    return _acknowledge(shipment_id, "shipment")


@bp.post("/transfers")
@doc("Transfer samples to another field rep", tags=TAGS, body=ConsignmentIn, responses={201: ConsignmentOut},
     errors=(400, 401, 403, 413, 415, 422))
@api_auth
def create_transfer():
    """Field reps, from their own inventory: the units leave it now and enter the other rep's when they
    acknowledge. More than you hold, or an expired lot: 422 on the line."""
    data = load_body(ConsignmentIn())
    transfer = services.send_transfer(db.session, actor(), viewer(), to_user_id=data["to_user_id"],
                                      lines=data["lines"], note=data["note"])
    return ConsignmentOut().dump(consignment_dict(transfer)), 201


@bp.get("/transfers")
@doc("Transfers, newest first", tags=TAGS, query=ConsignmentArgs, responses={200: ConsignmentPage}, errors=(401, 422))
@api_auth
def list_transfers():
    """A rep sees the transfers they sent or are sent; compliance and administrators see all."""
    return _list("transfer")


@bp.get("/transfers/<int:transfer_id>")
@doc("One transfer", tags=TAGS, responses={200: ConsignmentOut}, errors=(401, 403, 404))
@api_auth
def show_transfer(transfer_id: int):
    return ConsignmentOut().dump(consignment_dict(
        services.get_consignment(db.session, viewer(), transfer_id, "transfer")))


@bp.post("/transfers/<int:transfer_id>/acknowledge")
@doc("Acknowledge receipt of a transfer (the receiving rep)", tags=TAGS, body=AcknowledgeIn,
     responses={200: ConsignmentOut}, errors=(400, 401, 403, 404, 409, 413, 415, 422))
@api_auth
def acknowledge_transfer(transfer_id: int):
    """As for a shipment: units received enter your inventory; a difference is a discrepancy."""
    return _acknowledge(transfer_id, "transfer")


# -- inventory, ledger, counts, discrepancies ---------------------------------------------------------

@bp.get("/inventory")
@doc("What a rep holds now, per lot", tags=TAGS, query=UserArgs, responses={200: InventoryOut},
     errors=(401, 403, 422))
@api_auth
def inventory():
    """Yours by default; compliance and administrators may ask for any `user_id`. Soonest expiry first;
    expired lots are listed (they may not be given) until counted out."""
    user_id = _whose(load_args(UserArgs()))
    return InventoryOut().dump({"user_id": user_id, "items": services.inventory(db.session, user_id)})


@bp.get("/movements")
@doc("The ledger of a rep's samples, newest first", tags=TAGS, query=UserArgs, responses={200: MovementPage},
     errors=(401, 403, 422))
@api_auth
def movements():
    """Every unit in or out: shipment received, given in a visit, transfer out and in, count adjustment. The
    inventory of a lot is the sum of its movements."""
    args = load_args(UserArgs())
    rows, last = services.movements(db.session, _whose(args), limit=args["limit"], before_id=_before(args))
    return page(MovementOut(many=True).dump(movement_dicts(rows)), _next(last))


@bp.post("/counts")
@doc("Record a periodic count of your samples", tags=TAGS, body=CountIn, responses={201: CountOut},
     errors=(400, 401, 403, 409, 413, 415, 422))
@api_auth
def create_count():
    """Field reps. List every lot you hold with the units counted (a lot left out is 422). Differences adjust
    your inventory to what was counted and are reported to compliance as discrepancies. When your inventory
    changes while the count is saved: 409, count again."""
    data = load_body(CountIn())
    count = services.record_count(db.session, actor(), viewer(), data["lines"], note=data["note"])
    return CountOut().dump(count_dict(count)), 201


@bp.get("/counts")
@doc("Counts, newest first", tags=TAGS, query=UserArgs, responses={200: CountPage}, errors=(401, 422))
@api_auth
def list_counts():
    """A rep's own counts; compliance and administrators see all (`user_id` narrows)."""
    args = load_args(UserArgs())
    rows, last = services.list_counts(db.session, viewer(), user_id=args["user_id"], limit=args["limit"],
                                      before_id=_before(args))
    return page([CountOut().dump(count_dict(c)) for c in rows], _next(last))


@bp.get("/discrepancies")
@doc("Sample discrepancies (compliance, administrators)", tags=TAGS, query=DiscrepancyArgs,
     responses={200: DiscrepancyPage}, errors=(401, 403, 422))
@api_auth
def discrepancies():
    """Shipments or transfers received short or over, and counts that differ from the ledger; `status=open`
    is what waits for compliance."""
    args = load_args(DiscrepancyArgs())
    rows, last = services.list_discrepancies(db.session, viewer(), status=args["status"], user_id=args["user_id"],
                                             limit=args["limit"], before_id=_before(args))
    return page(DiscrepancyOut(many=True).dump(discrepancy_dicts(rows)), _next(last))


@bp.post("/discrepancies/<int:discrepancy_id>/review")
@doc("Close a discrepancy with what the review found (compliance)", tags=TAGS, body=ReviewIn,
     responses={200: DiscrepancyOut}, errors=(400, 401, 403, 404, 409, 413, 415, 422))
@api_auth
def review(discrepancy_id: int):
    data = load_body(ReviewIn())
    found = services.review_discrepancy(db.session, actor(), viewer(), discrepancy_id, data["note"])
    return DiscrepancyOut().dump(discrepancy_dicts([found])[0])
