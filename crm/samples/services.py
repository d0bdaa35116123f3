"""Sample accountability: shipments, inventory, disbursement on visit submit, transfers, counts, discrepancies.

Every change to what a rep holds is one ``SampleMovement`` plus the same change to ``SampleInventory``, in
one transaction; decrements are conditional updates (``quantity >= n``), so two submits racing for the last
units cannot take the balance below zero on either engine (SQLite serialises writers; on PostgreSQL the
second update waits for the first's row lock and then finds too few units). Services take the actor and the
policy viewer, audit every write, flush and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from crm.access.policy import Viewer, require_write, write_decision
from crm.audit import services as audit
from crm.auth.models import User
from crm.db import DbSession, utcnow
from crm.errors import Conflict, Forbidden, Invalid, NotFound
from crm.products.models import Product, SampleLot
from crm.samples.models import (
    SampleConsignment,
    SampleConsignmentLine,
    SampleCount,
    SampleCountLine,
    SampleDiscrepancy,
    SampleInventory,
    SampleMovement,
)

MAX_LINE_QUANTITY = 100_000
# Who may hold samples: the field force carries them (SPEC section 6, visits).
HOLDER_ROLES = frozenset({"field_rep"})

KIND_LABELS = {
    "received": "Shipment received",
    "disbursed": "Given in a visit",
    "transfer_out": "Transferred to another rep",
    "transfer_in": "Transferred from another rep",
    "count_adjustment": "Count adjustment",
    "disbursement_corrected": "Back from an amended visit",
}
SOURCE_LABELS = {"shipment": "Shipment received", "transfer": "Transfer received", "count": "Periodic count"}


@dataclass(frozen=True)
class LotRef:
    lot: SampleLot
    sku: str
    product_name: str


# -- helpers ------------------------------------------------------------------------------------------

def _lots(session: DbSession, lines: Sequence[dict[str, Any]], on: date, *, field: str = "lines",
          refuse_expired: bool = True) -> tuple[list[LotRef], dict[str, list[str]]]:
    """The lot of each ``{"sku", "lot"}`` line, and errors by field path (``lines.N.lot``)."""
    skus = {line["sku"] for line in lines}
    found = {(sku, lot.lot_number): (lot, name) for sku, name, lot in session.execute(
        select(Product.sku, Product.name, SampleLot).join(SampleLot, SampleLot.product_id == Product.id)
        .where(Product.sku.in_(skus)))} if skus else {}
    known_skus = set(session.scalars(select(Product.sku).where(Product.sku.in_(skus)))) if skus else set()
    out: list[LotRef] = []
    errors: dict[str, list[str]] = {}
    seen: dict[tuple[str, str], int] = {}
    for i, line in enumerate(lines):
        key = (line["sku"], line["lot"])
        if key in seen:
            errors[f"{field}.{i}.lot"] = [f"lot {line['lot']} of {line['sku']} is already on line {seen[key]}"]
            continue
        seen[key] = i
        if line["sku"] not in known_skus:
            errors[f"{field}.{i}.sku"] = [f"{line['sku']}: unknown sku"]
            continue
        hit = found.get(key)
        if hit is None:
            errors[f"{field}.{i}.lot"] = [f"{line['lot']}: no such lot of {line['sku']}"]
            continue
        lot, name = hit
        if refuse_expired and lot.expires_on < on:
            errors[f"{field}.{i}.lot"] = [f"{line['lot']}: expired on {lot.expires_on.isoformat()}"]
            continue
        out.append(LotRef(lot, line["sku"], name))
    return out, errors


def _holder(session: DbSession, user_id: int, field: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise Invalid("The recipient is unknown.", errors={field: [f"user {user_id} does not exist"]})
    if user.role not in HOLDER_ROLES or not user.active:
        raise Invalid("The recipient cannot hold samples.",
                      errors={field: [f"{user.name} is not an active field rep: only field reps hold samples"]})
    return user


def _add(session: DbSession, user_id: int, lot_id: int, quantity: int) -> None:
    """Add ``quantity`` (> 0) units to a balance, creating the row when it is the rep's first of that lot."""
    table = SampleInventory.__table__
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(SampleInventory).values(user_id=user_id, lot_id=lot_id, quantity=quantity, updated_at=utcnow())
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.user_id, table.c.lot_id],
        set_={"quantity": table.c.quantity + quantity, "updated_at": utcnow()},
    )
    session.execute(stmt)


def _take(session: DbSession, user_id: int, lot_id: int, quantity: int) -> bool:
    """Take ``quantity`` (> 0) units from a balance if it holds that many; False (nothing taken) otherwise."""
    result = session.execute(
        update(SampleInventory)
        .where(SampleInventory.user_id == user_id, SampleInventory.lot_id == lot_id,
               SampleInventory.quantity >= quantity)
        .values(quantity=SampleInventory.quantity - quantity, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _balance(session: DbSession, user_id: int, lot_id: int) -> int:
    return session.scalar(select(SampleInventory.quantity).where(
        SampleInventory.user_id == user_id, SampleInventory.lot_id == lot_id)) or 0


def _move(session: DbSession, actor: Any, user_id: int, lot_id: int, kind: str, quantity: int, *,
          occurred_at: datetime | None = None, consignment_id: int | None = None, visit_id: int | None = None,
          count_id: int | None = None) -> SampleMovement:
    movement = SampleMovement(user_id=user_id, lot_id=lot_id, kind=kind, quantity=quantity,
                              occurred_at=occurred_at or utcnow(), recorded_by_id=getattr(actor, "id", None),
                              consignment_id=consignment_id, visit_id=visit_id, count_id=count_id)
    session.add(movement)
    return movement


def may_oversee(viewer: Viewer) -> bool:
    return write_decision(viewer, "sample.oversight").allowed


def require_own_or_oversight(viewer: Viewer, user_id: int) -> None:
    """A rep reads their own samples; compliance and administrators anyone's; 403 otherwise."""
    if user_id != viewer.user_id and not may_oversee(viewer):
        raise Forbidden("Only compliance and administrators see another person's samples.",
                        rule="sample.oversight:role")


# -- shipments and transfers --------------------------------------------------------------------------

def create_shipment(session: DbSession, actor: Any, viewer: Viewer, *, to_user_id: int,
                    lines: Sequence[dict[str, Any]], note: str | None = None,
                    sent_at: datetime | None = None) -> SampleConsignment:
    """Send samples from the company's warehouse to a field rep (administrators: ``sample.ship``).

    Each line names a sku, one of its lots (not expired on the day it is sent) and a quantity. Nothing
    enters the rep's inventory until they acknowledge receipt (``acknowledge``). ``sent_at`` (default now)
    lets the demo back-fill history; the API always sends now.
    """
    require_write(viewer, "sample.ship")
    _holder(session, to_user_id, "to_user_id")
    sent_at = sent_at or utcnow()
    lots, errors = _lots(session, lines, sent_at.date())
    if errors:
        raise Invalid("The shipment has invalid lines.", errors=errors)
    return _consign(session, actor, "shipment", None, to_user_id, lots, lines, note, sent_at)


def _consign(session: DbSession, actor: Any, kind: str, from_user_id: int | None, to_user_id: int,
             lots: list[LotRef], lines: Sequence[dict[str, Any]], note: str | None,
             sent_at: datetime | None = None) -> SampleConsignment:
    consignment = SampleConsignment(kind=kind, status="sent", from_user_id=from_user_id, to_user_id=to_user_id,
                                    sent_by_id=actor.id, sent_at=sent_at or utcnow(),
                                    note=(note or "").strip() or None)
    consignment.lines = [SampleConsignmentLine(lot_id=ref.lot.id, quantity_sent=line["quantity"])
                         for ref, line in zip(lots, lines, strict=True)]
    session.add(consignment)
    session.flush()
    audit.record(session, actor, f"sample_{kind}.send", "sample_consignment", consignment.id, audit.created({
        "kind": kind, "from_user_id": from_user_id, "to_user_id": to_user_id,
        "lines": [{"sku": ref.sku, "lot": ref.lot.lot_number, "quantity": line["quantity"]}
                  for ref, line in zip(lots, lines, strict=True)],
    }))
    return consignment


def send_transfer(session: DbSession, actor: Any, viewer: Viewer, *, to_user_id: int,
                  lines: Sequence[dict[str, Any]], note: str | None = None) -> SampleConsignment:
    """Transfer samples from the actor's inventory to another field rep (``sample.transfer``).

    The units leave the sender's inventory now (``transfer_out``) and enter the recipient's when they
    acknowledge receipt. More than the sender holds, or an expired lot: 422, nothing written.
    """
    require_write(viewer, "sample.transfer")
    if to_user_id == actor.id:
        raise Invalid("A transfer goes to another rep.", errors={"to_user_id": ["choose another rep than yourself"]})
    _holder(session, to_user_id, "to_user_id")
    lots, errors = _lots(session, lines, utcnow().date())
    if errors:
        raise Invalid("The transfer has invalid lines.", errors=errors)
    with session.begin_nested():
        short: dict[str, list[str]] = {}
        for i, (ref, line) in enumerate(zip(lots, lines, strict=True)):
            if not _take(session, actor.id, ref.lot.id, line["quantity"]):
                short[f"lines.{i}.quantity"] = [
                    f"you hold {_balance(session, actor.id, ref.lot.id)} unit(s) of lot {ref.lot.lot_number} "
                    f"of {ref.sku} ({line['quantity']} to transfer)"]
        if short:
            raise Invalid("You do not hold enough units to transfer.", errors=short)
    consignment = _consign(session, actor, "transfer", actor.id, to_user_id, lots, lines, note)
    for ref, line in zip(lots, lines, strict=True):
        _move(session, actor, actor.id, ref.lot.id, "transfer_out", -line["quantity"], consignment_id=consignment.id)
    session.flush()
    return consignment


def acknowledge(session: DbSession, actor: Any, viewer: Viewer, consignment: SampleConsignment,
                received: dict[int, int] | None = None, *,
                received_at: datetime | None = None) -> list[SampleDiscrepancy]:
    """The receiving rep confirms what arrived: ``received`` maps line ids to the units received (a line not
    in it arrived in full). The units enter their inventory; a line received short or over becomes a
    discrepancy for compliance. Only the recipient (403); twice is 409, also when two acknowledgements race.
    """
    if consignment.to_user_id != viewer.user_id:
        raise Forbidden("Only the rep the samples were sent to acknowledges them.",
                        rule=f"sample_{consignment.kind}.acknowledge:recipient")
    received = dict(received or {})
    line_ids = {line.id for line in consignment.lines}
    errors = {f"lines.{line_id}": ["not a line of this shipment"] for line_id in received if line_id not in line_ids}
    errors.update({f"lines.{line_id}": [f"must be 0 to {MAX_LINE_QUANTITY}"]
                   for line_id, qty in received.items() if not 0 <= qty <= MAX_LINE_QUANTITY})
    if errors:
        raise Invalid("The acknowledgement has invalid lines.", errors=errors)
    # The status moves first, conditionally: of two acknowledgements at once only one finds it "sent".
    claimed = session.execute(
        update(SampleConsignment).where(SampleConsignment.id == consignment.id, SampleConsignment.status == "sent")
        .values(status="received", received_at=received_at or utcnow(), received_by_id=actor.id)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        raise Conflict("These samples were already acknowledged.")
    session.refresh(consignment)
    kind = "received" if consignment.kind == "shipment" else "transfer_in"
    found: list[SampleDiscrepancy] = []
    for line in consignment.lines:
        qty = received.get(line.id, line.quantity_sent)
        line.quantity_received = qty
        if qty:
            _add(session, consignment.to_user_id, line.lot_id, qty)
            _move(session, actor, consignment.to_user_id, line.lot_id, kind, qty, consignment_id=consignment.id,
                  occurred_at=received_at)
        if qty != line.quantity_sent:
            found.append(SampleDiscrepancy(
                user_id=consignment.to_user_id, lot_id=line.lot_id, source=consignment.kind,
                consignment_id=consignment.id, expected=line.quantity_sent, actual=qty, status="open"))
    session.add_all(found)
    session.flush()
    audit.record(session, actor, f"sample_{consignment.kind}.acknowledge", "sample_consignment", consignment.id, {
        "status": {"before": "sent", "after": "received"},
        "received": {"before": None, "after": {str(line.id): line.quantity_received for line in consignment.lines}},
        "discrepancies": {"before": None, "after": [d.id for d in found]},
    })
    return found


def get_consignment(session: DbSession, viewer: Viewer, consignment_id: int, kind: str) -> SampleConsignment:
    """One shipment or transfer: its parties, compliance and administrators may read it (403 otherwise)."""
    consignment = session.get(SampleConsignment, consignment_id)
    if consignment is None or consignment.kind != kind:
        raise NotFound(f"{kind.title()} {consignment_id} does not exist.")
    if viewer.user_id not in (consignment.to_user_id, consignment.from_user_id) and not may_oversee(viewer):
        raise Forbidden("Only its sender, its recipient, compliance and administrators see it.",
                        rule=f"sample_{kind}.read:party")
    return consignment


def list_consignments(session: DbSession, viewer: Viewer, kind: str, *, user_id: int | None = None,
                      status: str | None = None, limit: int = 50,
                      before_id: int | None = None) -> tuple[list[SampleConsignment], int | None]:
    """Newest first. Reps see those sent to or by them; compliance and administrators everyone's
    (``user_id`` narrows to one rep)."""
    stmt = select(SampleConsignment).where(SampleConsignment.kind == kind)
    if not may_oversee(viewer):
        user_id = viewer.user_id
    if user_id is not None:
        stmt = stmt.where((SampleConsignment.to_user_id == user_id) | (SampleConsignment.from_user_id == user_id))
    if status is not None:
        stmt = stmt.where(SampleConsignment.status == status)
    if before_id is not None:
        stmt = stmt.where(SampleConsignment.id < before_id)
    rows = list(session.scalars(stmt.order_by(SampleConsignment.id.desc()).limit(limit + 1)))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


# -- disbursement -------------------------------------------------------------------------------------

def disburse_for_visit(session: DbSession, actor: Any, *, owner_id: int, visit_id: int, occurred_at: datetime,
                       samples: Sequence[tuple[str, int, str]],
                       given_before: Sequence[tuple[str, int, str]] = ()) -> list[SampleMovement]:
    """Take the samples ``(sku, quantity, lot)`` of a visit being submitted from its owner's inventory, one
    ``disbursed`` movement per lot, in the caller's transaction.

    ``given_before`` are the samples of the visit an amendment corrects: only the difference moves (more
    units are disbursed; units no longer given go back as ``disbursement_corrected``). A lot the owner does
    not hold enough of is a 422 on ``samples.N.quantity`` (all problems at once) and nothing is taken. Lot
    validity (a sample product, not expired on the visit's day) is checked by the visit before this.
    """
    if not samples and not given_before:
        return []
    skus = {sku for sku, _q, _l in (*samples, *given_before)}
    lots = {(sku, lot.lot_number): lot for sku, lot in session.execute(
        select(Product.sku, SampleLot).join(SampleLot, SampleLot.product_id == Product.id)
        .where(Product.sku.in_(skus)))}
    delta: dict[int, int] = {}
    first_line: dict[int, int] = {}
    errors: dict[str, list[str]] = {}
    for i, (sku, quantity, lot_number) in enumerate(samples):
        lot = lots.get((sku, lot_number))
        if lot is None:
            errors[f"samples.{i}.lot"] = [f"{lot_number}: no such lot of {sku}"]
            continue
        delta[lot.id] = delta.get(lot.id, 0) + quantity
        first_line.setdefault(lot.id, i)
    for sku, quantity, lot_number in given_before:
        lot = lots.get((sku, lot_number))
        if lot is not None:
            delta[lot.id] = delta.get(lot.id, 0) - quantity
    if errors:
        raise Invalid("The samples cannot be given.", errors=errors)
    by_id = {lot.id: (sku, lot) for (sku, _n), lot in lots.items()}
    with session.begin_nested():  # a shortfall on one lot gives back what the others took
        for lot_id, quantity in delta.items():
            if quantity > 0 and not _take(session, owner_id, lot_id, quantity):
                sku, lot = by_id[lot_id]
                held = _balance(session, owner_id, lot_id)
                errors[f"samples.{first_line[lot_id]}.quantity"] = [
                    f"your inventory holds {held} unit(s) of lot {lot.lot_number} of {sku}; this visit gives "
                    f"{quantity}{' more' if given_before else ''}"]
        if errors:
            raise Invalid("Not enough samples in your inventory.", errors=errors)
    movements = []
    for lot_id, quantity in delta.items():
        if quantity > 0:
            movements.append(_move(session, actor, owner_id, lot_id, "disbursed", -quantity, occurred_at=occurred_at,
                                   visit_id=visit_id))
        elif quantity < 0:
            _add(session, owner_id, lot_id, -quantity)
            movements.append(_move(session, actor, owner_id, lot_id, "disbursement_corrected", -quantity,
                                   occurred_at=occurred_at, visit_id=visit_id))
    session.flush()
    return movements


# -- counts and discrepancies -------------------------------------------------------------------------

def record_count(session: DbSession, actor: Any, viewer: Viewer, lines: Sequence[dict[str, Any]], *,
                 note: str | None = None) -> SampleCount:
    """A periodic count of the actor's samples (``sample.count``): the units counted per lot.

    Every lot the rep holds must be counted (422 names the missing ones); a lot counted that the ledger
    does not know them to hold counts against zero. Each difference becomes a ``count_adjustment`` movement
    (so the inventory equals what was counted) and an open discrepancy for compliance. When a disbursement
    or transfer changes a balance while the count is saved, the count is refused (409: count again).
    """
    require_write(viewer, "sample.count")
    lots, errors = _lots(session, lines, utcnow().date(), refuse_expired=False)
    for i, line in enumerate(lines):
        if not 0 <= line["counted"] <= MAX_LINE_QUANTITY:
            errors[f"lines.{i}.counted"] = [f"must be 0 to {MAX_LINE_QUANTITY}"]
    held = {row.lot_id: row.quantity for row in session.scalars(
        select(SampleInventory).where(SampleInventory.user_id == actor.id, SampleInventory.quantity > 0))}
    counted_ids = {ref.lot.id for ref in lots}
    missing = [lot for lot in session.scalars(select(SampleLot).where(SampleLot.id.in_(held)))
               if lot.id not in counted_ids] if held else []
    if missing and not errors:
        errors["lines"] = ["count every lot you hold; missing: " + ", ".join(sorted(m.lot_number for m in missing))]
    if not lines and not errors:
        errors["lines"] = ["count at least one lot"]
    if errors:
        raise Invalid("The count cannot be recorded.", errors=errors)
    count = SampleCount(user_id=actor.id, counted_at=utcnow(), recorded_by_id=actor.id,
                        note=(note or "").strip() or None)
    session.add(count)
    session.flush()
    found: list[SampleDiscrepancy] = []
    with session.begin_nested():
        for ref, line in zip(lots, lines, strict=True):
            expected, counted = held.get(ref.lot.id, 0), line["counted"]
            count.lines.append(SampleCountLine(lot_id=ref.lot.id, expected=expected, counted=counted))
            if counted == expected:
                continue
            # Conditional on the balance read above: a concurrent movement makes the count stale.
            changed = session.execute(
                update(SampleInventory)
                .where(SampleInventory.user_id == actor.id, SampleInventory.lot_id == ref.lot.id,
                       SampleInventory.quantity == expected)
                .values(quantity=counted, updated_at=utcnow()).execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if not changed:
                if expected != 0 or _balance(session, actor.id, ref.lot.id) != 0:
                    raise Conflict("Your inventory changed while the count was saved; count again.")
                _add(session, actor.id, ref.lot.id, counted)
            _move(session, actor, actor.id, ref.lot.id, "count_adjustment", counted - expected, count_id=count.id)
            found.append(SampleDiscrepancy(user_id=actor.id, lot_id=ref.lot.id, source="count", count_id=count.id,
                                           expected=expected, actual=counted, status="open"))
        session.add_all(found)
        session.flush()
    audit.record(session, actor, "sample_count.record", "sample_count", count.id, audit.created({
        "lines": [{"sku": ref.sku, "lot": ref.lot.lot_number, "expected": held.get(ref.lot.id, 0),
                   "counted": line["counted"]} for ref, line in zip(lots, lines, strict=True)],
        "discrepancies": [d.id for d in found],
    }))
    return count


def list_counts(session: DbSession, viewer: Viewer, *, user_id: int | None = None, limit: int = 50,
                before_id: int | None = None) -> tuple[list[SampleCount], int | None]:
    """Counts newest first: a rep's own; compliance and administrators everyone's (``user_id`` narrows)."""
    stmt = select(SampleCount)
    if not may_oversee(viewer):
        user_id = viewer.user_id
    if user_id is not None:
        stmt = stmt.where(SampleCount.user_id == user_id)
    if before_id is not None:
        stmt = stmt.where(SampleCount.id < before_id)
    rows = list(session.scalars(stmt.order_by(SampleCount.id.desc()).limit(limit + 1)))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def list_discrepancies(session: DbSession, viewer: Viewer, *, status: str | None = None, user_id: int | None = None,
                       limit: int = 50, before_id: int | None = None) -> tuple[list[SampleDiscrepancy], int | None]:
    """Discrepancies newest first, for compliance and administrators (403 otherwise)."""
    require_write(viewer, "sample.oversight")
    stmt = select(SampleDiscrepancy)
    if status is not None:
        stmt = stmt.where(SampleDiscrepancy.status == status)
    if user_id is not None:
        stmt = stmt.where(SampleDiscrepancy.user_id == user_id)
    if before_id is not None:
        stmt = stmt.where(SampleDiscrepancy.id < before_id)
    rows = list(session.scalars(stmt.order_by(SampleDiscrepancy.id.desc()).limit(limit + 1)))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def open_discrepancy_count(session: DbSession) -> int:
    return session.scalar(select(func.count()).select_from(SampleDiscrepancy)
                          .where(SampleDiscrepancy.status == "open")) or 0


def review_discrepancy(session: DbSession, actor: Any, viewer: Viewer, discrepancy_id: int,
                       note: str) -> SampleDiscrepancy:
    """Compliance closes a discrepancy with what was found (``sample.discrepancy.review``); twice is 409."""
    require_write(viewer, "sample.discrepancy.review")
    discrepancy = session.get(SampleDiscrepancy, discrepancy_id)
    if discrepancy is None:
        raise NotFound(f"Discrepancy {discrepancy_id} does not exist.")
    note = (note or "").strip()
    if not note:
        raise Invalid("Say what the review found.", errors={"note": ["Must not be blank."]})
    claimed = session.execute(
        update(SampleDiscrepancy).where(SampleDiscrepancy.id == discrepancy_id, SampleDiscrepancy.status == "open")
        .values(status="reviewed", reviewed_by_id=actor.id, reviewed_at=utcnow(), review_note=note)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        raise Conflict("This discrepancy was already reviewed.")
    session.refresh(discrepancy)
    audit.record(session, actor, "sample_discrepancy.review", "sample_discrepancy", discrepancy.id,
                 {"status": {"before": "open", "after": "reviewed"}}, reason=note)
    return discrepancy


# -- reads --------------------------------------------------------------------------------------------

def inventory(session: DbSession, user_id: int, today: date | None = None) -> list[dict[str, Any]]:
    """What ``user_id`` holds now, per lot with units, soonest expiry first; ``expired`` lots may not be given."""
    today = today or utcnow().date()
    rows = session.execute(
        select(SampleInventory.quantity, SampleLot, Product.sku, Product.name)
        .join(SampleLot, SampleLot.id == SampleInventory.lot_id)
        .join(Product, Product.id == SampleLot.product_id)
        .where(SampleInventory.user_id == user_id, SampleInventory.quantity > 0)
        .order_by(SampleLot.expires_on, Product.sku, SampleLot.lot_number)
    ).all()
    return [{"sku": sku, "product_name": name, "lot": lot.lot_number, "lot_id": lot.id,
             "expires_on": lot.expires_on, "expired": lot.expires_on < today, "quantity": qty}
            for qty, lot, sku, name in rows]


def movements(session: DbSession, user_id: int, *, limit: int = 50,
              before_id: int | None = None) -> tuple[list[SampleMovement], int | None]:
    """The ledger of ``user_id``'s samples, newest first."""
    stmt = select(SampleMovement).where(SampleMovement.user_id == user_id)
    if before_id is not None:
        stmt = stmt.where(SampleMovement.id < before_id)
    rows = list(session.scalars(stmt.order_by(SampleMovement.id.desc()).limit(limit + 1)))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def lot_labels(session: DbSession, lot_ids: Iterable[int]) -> dict[int, tuple[str, str, date]]:
    """``{lot id: (sku, lot number, expires on)}``."""
    ids = set(lot_ids)
    if not ids:
        return {}
    return {lot.id: (sku, lot.lot_number, lot.expires_on) for sku, lot in session.execute(
        select(Product.sku, SampleLot).join(SampleLot, SampleLot.product_id == Product.id)
        .where(SampleLot.id.in_(ids)))}


def user_names(session: DbSession, user_ids: Iterable[int | None]) -> dict[int, str]:
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    return {uid: name for uid, name in session.execute(select(User.id, User.name).where(User.id.in_(ids)))}


def holders(session: DbSession) -> list[User]:
    """Every active field rep, by name (the recipients a shipment or transfer may go to)."""
    return list(session.scalars(select(User).where(User.role.in_(HOLDER_ROLES), User.active.is_(True))
                                .order_by(User.name, User.id)))


def verify_ledger(session: DbSession) -> list[dict[str, int]]:
    """Balances that differ from the sum of their movements (empty when the ledger is whole)."""
    sums = {(u, lot): int(total) for u, lot, total in session.execute(
        select(SampleMovement.user_id, SampleMovement.lot_id, func.sum(SampleMovement.quantity))
        .group_by(SampleMovement.user_id, SampleMovement.lot_id))}
    balances = {(row.user_id, row.lot_id): row.quantity for row in session.scalars(select(SampleInventory))}
    return [{"user_id": u, "lot_id": lot, "balance": balances.get((u, lot), 0), "movements": sums.get((u, lot), 0)}
            for u, lot in sorted(set(sums) | set(balances)) if balances.get((u, lot), 0) != sums.get((u, lot), 0)]
