"""Contact import from a call-centre system's CSV export.

Idempotent on the contact's external id: a contact already in the CRM is skipped, so a killed import
run again picks up where it stopped and doubles nothing (the command commits in batches). The HCP is
found by CRM id, NPI or email (blind index). Each row runs in its own savepoint: a bad row gets its
message in the report and the rest of the file imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select

from crm.callcentre import services as callcentre
from crm.callcentre.models import Contact
from crm.callcentre.schemas import ContactIn
from crm.db import DbSession, iso_z
from crm.errors import DomainError, flatten_messages
from crm.hcps.models import HCP, HCPIdentifier
from crm.integrations import csvfile
from crm.security.crypto import blind_index

ALIASES: dict[str, tuple[str, ...]] = {
    "external_id": ("external id", "contact id", "case id", "ticket id", "interaction id"),
    "hcp_id": ("hcp id", "crm id", "crm hcp id"),
    "npi": ("npi number",),
    "email": ("email address", "e-mail", "hcp email"),
    "occurred_at": ("occurred at", "date time", "datetime", "timestamp", "contact time", "received at"),
    "direction": ("inbound outbound",),
    "medium": ("channel", "contact medium"),
    "reason": ("contact reason", "category"),
    "summary": ("subject", "call summary"),
    "details": ("description", "notes", "call notes"),
    "follow_up_date": ("follow up date", "followup date"),
    "follow_up_text": ("follow up", "follow up text", "followup"),
    "products": ("product", "product sku", "skus"),
}
REQUIRED = ("external_id", "occurred_at", "direction", "medium", "reason", "summary")


@dataclass
class ContactRow:
    row: int
    external_id: str
    outcome: str  # created | skipped | error
    message: str = ""
    contact_id: int | None = None


def read_rows(data: bytes) -> list[csvfile.Row]:
    """Parse the whole file first (a file that cannot be read imports nothing), then import row by row."""
    _fields, rows = csvfile.read(data, ALIASES, REQUIRED)
    return list(rows)


def _find_hcp(session: DbSession, values: dict[str, str]) -> tuple[int | None, str | None]:
    raw_id = values.get("hcp_id", "")
    if raw_id:
        problem = csvfile.id_problem("hcp id", raw_id)
        if problem:
            return None, problem
        return int(raw_id), None
    if values.get("npi"):
        found = session.scalar(select(HCPIdentifier.hcp_id).where(HCPIdentifier.kind == "npi",
                                                                  HCPIdentifier.value == values["npi"]))
        if found is not None:
            return found, None
    if values.get("email"):
        found = session.scalar(select(HCP.id).where(HCP.email_bidx == blind_index(values["email"]))
                               .order_by(HCP.id).limit(1))
        if found is not None:
            return found, None
    return None, "no HCP with this hcp id, NPI or email"


def _when(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"occurred_at {raw!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise ValueError(f"occurred_at {raw!r} has no offset; times must say their zone (e.g. Z or +02:00)")
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        raise ValueError(f"occurred_at {raw!r} is outside the years {csvfile.MIN_YEAR} to {csvfile.MAX_YEAR}") from None
    problem = csvfile.year_problem("occurred_at", raw, value.year)
    if problem:
        raise ValueError(problem)
    return value


def _day(raw: str) -> date | None:
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"follow_up_date {raw!r} is not a date (YYYY-MM-DD)") from None
    problem = csvfile.year_problem("follow_up_date", raw, day.year)
    if problem:
        raise ValueError(problem)
    return day


def import_rows(session: DbSession, actor: Any, rows: list[csvfile.Row]) -> Iterator[ContactRow]:
    """Import ``rows`` one by one, yielding each outcome; the caller commits between batches."""
    seen: dict[str, int] = {}
    for row in rows:
        values = row.values
        ext = values.get("external_id", "")
        nul = csvfile.nul_problem(values)
        if nul:  # before any query: PostgreSQL cannot even compare with a NUL
            yield ContactRow(row.number, ext.replace("\x00", ""), "error", nul)
            continue
        if not ext:
            yield ContactRow(row.number, ext, "error", "external id is empty (it is what makes a re-run safe)")
            continue
        if ext in seen:
            yield ContactRow(row.number, ext, "error", f"external id {ext!r} was already in row {seen[ext]}")
            continue
        seen[ext] = row.number
        existing = session.scalar(select(Contact.id).where(Contact.external_id == ext))
        if existing is not None:
            yield ContactRow(row.number, ext, "skipped", "already imported", existing)
            continue
        try:
            yield _import_one(session, actor, row, values, ext)
        except ValueError as exc:
            yield ContactRow(row.number, ext, "error", str(exc))
        except DomainError as exc:
            errors = getattr(exc, "errors", {}) or {}
            detail = "; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()) or exc.detail
            yield ContactRow(row.number, ext, "error", detail)


def _import_one(session: DbSession, actor: Any, row: csvfile.Row, values: dict[str, str], ext: str) -> ContactRow:
    if row.extra_cells:
        raise ValueError("has more cells than the header has columns (a separator inside an unquoted value?)")
    for name in ("summary", "details", "follow_up_text"):
        problem = csvfile.formula_problem(values.get(name, ""))
        if problem:
            raise ValueError(f"{name} {problem}")
    hcp_id, problem = _find_hcp(session, values)
    if hcp_id is None:
        raise ValueError(problem or "no HCP")
    products = [p.strip() for p in values.get("products", "").replace("|", ",").split(",") if p.strip()]
    fields: dict[str, Any] = {
        "hcp_id": hcp_id, "occurred_at": _when(values["occurred_at"]), "direction": values["direction"].lower(),
        "medium": values["medium"].lower().replace(" ", "_"), "reason": values["reason"].lower().replace(" ", "_"),
        "summary": values["summary"], "details": values.get("details", ""), "products": products,
        "follow_up_date": _day(values.get("follow_up_date", "")),
        "follow_up_text": values.get("follow_up_text") or None,
    }
    _check_like_the_api(fields, ext)
    with session.begin_nested():
        result = callcentre.create_contact(session, actor, None, **fields, external_id=ext,
                                           source="call_centre_system")
    return ContactRow(row.number, ext, "created" if result.created else "skipped",
                      "" if result.created else "already imported", result.contact.id)


def _check_like_the_api(fields: dict[str, Any], ext: str) -> None:
    """The row must pass the API's own contact schema (lengths, choices, the database's bounds), so a
    row the API would refuse with a 422 is a row error here, not a database error."""
    follow_up = None
    if fields["follow_up_date"] is not None:
        follow_up = {"date": fields["follow_up_date"].isoformat(), "text": fields["follow_up_text"]}
    payload = {"hcp_id": fields["hcp_id"], "occurred_at": iso_z(fields["occurred_at"]),
               "direction": fields["direction"], "medium": fields["medium"], "reason": fields["reason"],
               "summary": fields["summary"], "details": fields["details"], "products": fields["products"],
               "follow_up": follow_up, "external_id": ext}
    try:
        ContactIn().load(payload)
    except ValidationError as exc:
        errors = flatten_messages(exc.messages)
        raise ValueError("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items())) from None
