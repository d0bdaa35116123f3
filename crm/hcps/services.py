"""HCP/HCO master data and territories. Services take the actor, flush, audit; never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import object_session
from sqlalchemy.sql.elements import ColumnElement

from crm import signals
from crm.access.policy import (
    Viewer,
    contact_data_decision,
    mask_address,
    mask_email,
    mask_phone,
    require_write,
)
from crm.audit import services as audit
from crm.db import DbSession, among, iso_z, utcnow
from crm.errors import Conflict, Invalid, NotFound
from crm.hcps.identifiers import npi_problem
from crm.hcps.models import (
    HCO,
    HCP,
    Affiliation,
    HCPIdentifier,
    HCPTerritoryAssignment,
    Territory,
)
from crm.schemas import decode_cursor, encode_cursor
from crm.security.crypto import blind_index

# Fields copied as they come (stripped; an empty string clears an optional one).
_TEXT_FIELDS = ("first_name", "last_name", "profession", "specialty", "email", "phone", "address_line",
                "city", "postal_code", "state", "country", "status", "tier")
_REQUIRED_TEXT = frozenset({"first_name", "last_name", "profession", "country", "status"})
_UNIQUE_LOCK_BASE = 7_310_100


def create_territory(session: DbSession, actor: Any, code: str, name: str) -> tuple[Territory, bool]:
    """Create a territory; an existing code changes nothing. Returns (territory, created)."""
    code = code.strip()
    existing = session.scalar(select(Territory).where(Territory.code == code))
    if existing is not None:
        return existing, False
    territory = Territory(code=code, name=name.strip() or code)
    session.add(territory)
    session.flush()
    audit.record(session, actor, "territory.create", "territory", territory.id,
                 audit.created({"code": code, "name": territory.name}))
    return territory, True


def territory_by_code(session: DbSession, code: str, field: str = "territory") -> Territory:
    """The territory with ``code``; an unknown code is a 422 on ``field``."""
    territory = session.scalar(select(Territory).where(Territory.code == code.strip()))
    if territory is None:
        raise Invalid(errors={field: [f"Unknown territory code {code!r}."]})
    return territory


# -- reading -------------------------------------------------------------------------------------

def get_hcp(session: DbSession, hcp_id: int) -> HCP:
    """One HCP by id (404 when missing). A merged HCP is returned too: its output says where it went."""
    hcp = session.get(HCP, hcp_id)
    if hcp is None:
        raise NotFound(f"No HCP with id {hcp_id}.")
    return hcp


def search_hcps(
    session: DbSession,
    viewer: Viewer,
    q: str | None = None,
    territory_code: str | None = None,
    profession: str | None = None,
    specialty: str | None = None,
    mine: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[HCP], str | None]:
    """One page of HCPs ordered by (last_name, first_name, id); returns ``(hcps, next_cursor)``.

    ``q`` matches a name (every word a substring of first or last name, case-insensitive), an
    identifier value exactly, or an email exactly (through the blind index, the email is never
    stored in clear). ``mine`` keeps the viewer's current territories. Merged HCPs are left out:
    their survivor stands for them.
    """
    stmt = select(HCP).where(HCP.merged_into_id.is_(None))
    if q and q.strip():
        stmt = stmt.where(_matches(q.strip()))
    if territory_code:
        stmt = stmt.where(HCP.territory_id == territory_by_code(session, territory_code).id)
    if profession:
        stmt = stmt.where(HCP.profession == profession)
    if specialty:
        stmt = stmt.where(func.lower(HCP.specialty) == specialty.strip().lower())
    if mine:
        stmt = stmt.where(HCP.territory_id.in_(sorted(viewer.territory_ids)))
    if cursor:
        last, first, last_id = decode_cursor(cursor, (str, str, int))
        stmt = stmt.where(or_(
            HCP.last_name > last,
            and_(HCP.last_name == last, or_(HCP.first_name > first,
                                            and_(HCP.first_name == first, HCP.id > last_id))),
        ))
    rows = list(session.scalars(stmt.order_by(HCP.last_name, HCP.first_name, HCP.id).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    tail = rows[-1]
    return rows, encode_cursor(tail.last_name, tail.first_name, tail.id)


def _matches(term: str) -> ColumnElement[bool]:
    words = term.split()
    by_name = and_(*[
        or_(HCP.first_name.icontains(w, autoescape=True), HCP.last_name.icontains(w, autoescape=True))
        for w in words
    ])
    by_identifier = HCP.id.in_(select(HCPIdentifier.hcp_id).where(HCPIdentifier.value == term))
    conditions: list[ColumnElement[bool]] = [by_name, by_identifier]
    if "@" in term:
        conditions.append(HCP.email_bidx == blind_index(term))
    return or_(*conditions)


def hcp_public_dict(session_or_none: DbSession | None, viewer: Viewer, hcp: HCP) -> dict[str, Any]:
    """THE output shape of one HCP for the API and the pages, contact data clear or masked for ``viewer``."""
    return hcp_public_dicts(session_or_none, viewer, [hcp])[0]


def hcp_public_dicts(session_or_none: DbSession | None, viewer: Viewer, hcps: Sequence[HCP]) -> list[dict[str, Any]]:
    """``hcp_public_dict`` for many HCPs, with their affiliations loaded in one query."""
    session = session_or_none or (object_session(hcps[0]) if hcps else None)
    affiliations = _current_affiliations(session, [h.id for h in hcps]) if session is not None else {}
    return [_public(viewer, h, affiliations.get(h.id, [])) for h in hcps]


def _public(viewer: Viewer, hcp: HCP, affiliations: list[dict[str, Any]]) -> dict[str, Any]:
    contact = contact_data_decision(viewer, hcp.territory_id)
    clear = contact.allowed
    out: dict[str, Any] = {
        "id": hcp.id,
        "first_name": hcp.first_name,
        "last_name": hcp.last_name,
        "full_name": hcp.full_name,
        "profession": hcp.profession,
        "specialty": hcp.specialty,
        "status": hcp.status,
        "territory": ({"code": hcp.territory.code, "name": hcp.territory.name}
                      if hcp.territory is not None else None),
        "identifiers": _identifiers(hcp),
        "email": hcp.email if clear else mask_email(hcp.email),
        "phone": hcp.phone if clear else mask_phone(hcp.phone),
        "address_line": hcp.address_line if clear else mask_address(hcp.address_line),
        "contact_data": {"visible": clear, "rule": contact.rule, "reason": contact.reason},
        # a bounced address is not contact data: everyone may know not to use it (the reason is the platform's)
        "email_status": {"status": hcp.email_status, "reason": hcp.email_status_reason,
                         "since": iso_z(hcp.email_status_at)},
        "city": hcp.city,
        "postal_code": hcp.postal_code,
        "state": hcp.state,
        "country": hcp.country,
        "tags": split_tags(hcp.tags),
        "tier": hcp.tier,
        "influence_tier": hcp.influence_tier,
        "expertise": list(hcp.expertise or []),
        "affiliations": affiliations,
        "version": hcp.version,
        "merged_into": hcp.merged_into_id,
        "created_at": iso_z(hcp.created_at),
        "updated_at": iso_z(hcp.updated_at),
    }
    if hcp.merged_into_id is not None:
        out["merged_into_url"] = f"/api/v1/hcps/{hcp.merged_into_id}"
    return out


def _identifiers(hcp: HCP) -> dict[str, str]:
    return {i.kind: i.value for i in sorted(hcp.identifiers, key=lambda i: (i.kind, i.id or 0))}


def split_tags(raw: str | None) -> list[str]:
    return [t.strip() for t in (raw or "").split(",") if t.strip()]


def _current_affiliations(session: DbSession, hcp_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    if not hcp_ids:
        return {}
    now = utcnow()
    rows = session.scalars(
        select(Affiliation)
        .where(Affiliation.hcp_id.in_(hcp_ids), Affiliation.valid_from <= now,
               or_(Affiliation.valid_to.is_(None), Affiliation.valid_to > now))
        .order_by(Affiliation.hcp_id, Affiliation.valid_from, Affiliation.id)
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for a in rows:
        out.setdefault(a.hcp_id, []).append({"hco_id": a.hco_id, "name": a.hco.name, "kind": a.hco.kind,
                                             "role": a.role})
    return out


# -- writing -------------------------------------------------------------------------------------

def create_hcp(session: DbSession, actor: Any, viewer: Viewer, data: dict[str, Any]) -> HCP:
    """Create an HCP from ``HCPCreateSchema`` data: admin anywhere, a field rep in own territories.

    ``territory`` is a territory code (unknown: 422). Email is stored encrypted with a blind index;
    an email or an identifier already held by another HCP is 409. The initial territory is written
    as an effective-dated assignment, so "which territory was this HCP in on that date" has an answer.
    """
    territory = _territory_or_none(session, data.get("territory"))
    require_write(viewer, "hcp.create", [territory.id if territory is not None else None])
    identifiers = _valid_identifiers(data.get("identifiers") or {})
    values = _clean_text(data)
    email_bidx = blind_index(values.get("email"))
    _lock_unique_values(session, email_bidx, identifiers)
    _ensure_email_free(session, email_bidx, None)
    _ensure_identifiers_free(session, identifiers, None)

    hcp = HCP(**{k: v for k, v in values.items() if v is not None})
    hcp.email_bidx = email_bidx
    hcp.territory = territory
    hcp.tags = _join_tags(data.get("tags"))
    hcp.identifiers = [HCPIdentifier(kind=k, value=v) for k, v in identifiers.items() if v is not None]
    _insert(session, hcp)
    if territory is not None:
        session.add(HCPTerritoryAssignment(hcp_id=hcp.id, territory_id=territory.id, valid_from=utcnow()))
        session.flush()
    changes = audit.created(_snapshot(hcp))
    audit.record(session, actor, "hcp.create", "hcp", hcp.id, changes)
    signals.hcp_changed.send(hcp, actor=actor, changed=set(changes))
    return hcp


def update_hcp(
    session: DbSession, actor: Any, viewer: Viewer, hcp: HCP, data: dict[str, Any], expected_version: int
) -> HCP:
    """Change only the fields in ``data`` (``HCPUpdateSchema`` without ``version``).

    Optimistic locking: ``expected_version`` is the version the client read; when the HCP has
    changed since, nothing is written and the answer is 409. Two writers that pass that check at the
    same moment are still caught by the versioned UPDATE (StaleDataError, also 409). A field rep edits
    HCPs in own territories only and cannot move one to a territory they do not cover. A territory
    change closes the open assignment and opens a new one.
    """
    require_write(viewer, "hcp.update", [hcp.territory_id])
    if hcp.merged_into_id is not None:
        raise Conflict(f"HCP {hcp.id} was merged into HCP {hcp.merged_into_id}; edit that record instead.",
                       merged_into=hcp.merged_into_id)
    if hcp.status == "erased":
        raise Conflict(f"HCP {hcp.id} was erased; its personal data cannot be edited.")
    if expected_version != hcp.version:
        raise Conflict(
            f"Someone else changed this HCP since you loaded it (you sent version {expected_version}, "
            f"it is now {hcp.version}). Reload it and apply your change again.",
            current_version=hcp.version,
        )
    new_territory = hcp.territory
    if "territory" in data:
        new_territory = _territory_or_none(session, data["territory"])
        if (new_territory.id if new_territory else None) != hcp.territory_id:
            require_write(viewer, "hcp.update", [new_territory.id if new_territory else None])
    identifiers = _valid_identifiers(data.get("identifiers") or {})
    values = _clean_text(data)
    missing = sorted(k for k, v in values.items() if v is None and k in _REQUIRED_TEXT)
    if missing:
        raise Invalid(errors={k: ["Must not be blank."] for k in missing})
    email_bidx = blind_index(values["email"]) if "email" in values else hcp.email_bidx
    _lock_unique_values(session, email_bidx, identifiers)
    if email_bidx != hcp.email_bidx:
        _ensure_email_free(session, email_bidx, hcp.id)
    _ensure_identifiers_free(session, identifiers, hcp.id)

    tags = _join_tags(data["tags"]) if "tags" in data else hcp.tags
    before = _snapshot(hcp)
    old_territory_id = hcp.territory_id
    try:
        # Changes are made inside the savepoint so that a failed flush undoes them all.
        with session.begin_nested():
            for key, value in values.items():
                setattr(hcp, key, value)
            if email_bidx != hcp.email_bidx:  # a new address has not bounced (yet)
                hcp.email_status, hcp.email_status_reason, hcp.email_status_at = "valid", None, None
            hcp.email_bidx = email_bidx
            hcp.tags = tags
            hcp.territory = new_territory
            _apply_identifiers(hcp, identifiers)
            changes = audit.diff(before, _snapshot(hcp))
            if not changes:
                return hcp
            # Always touch the row: a change of identifiers alone must still move the version.
            hcp.updated_at = utcnow()
            session.flush()
    except IntegrityError as exc:
        raise Conflict("An identifier of this HCP already belongs to another HCP.") from exc
    new_territory_id = new_territory.id if new_territory is not None else None
    if new_territory_id != old_territory_id:
        _move_territory(session, hcp.id, new_territory_id)
    audit.record(session, actor, "hcp.update", "hcp", hcp.id, changes)
    signals.hcp_changed.send(hcp, actor=actor, changed=set(changes))
    return hcp


def _territory_or_none(session: DbSession, code: str | None) -> Territory | None:
    if code is None or not code.strip():
        return None
    return territory_by_code(session, code)


def _clean_text(data: dict[str, Any]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key in _TEXT_FIELDS:
        if key in data:
            value = data[key]
            value = value.strip() if isinstance(value, str) else value
            out[key] = value or None
    return out


def _join_tags(tags: Iterable[str] | None) -> str | None:
    cleaned = list(dict.fromkeys(t.strip() for t in tags or () if t.strip()))
    joined = ",".join(cleaned)
    if len(joined) > 500:
        raise Invalid(errors={"tags": ["Too many or too long tags (500 characters in all)."]})
    return joined or None


def _valid_identifiers(identifiers: dict[str, str | None]) -> dict[str, str | None]:
    """Identifiers with their values trimmed; an NPI must pass the CMS check-digit rule."""
    out: dict[str, str | None] = {}
    errors: dict[str, list[str]] = {}
    for kind, value in identifiers.items():
        value = value.strip() if value is not None else None
        if value == "":
            errors[f"identifiers.{kind}"] = ["Must not be blank (send null to remove it)."]
            continue
        if kind == "npi" and value is not None:
            problem = "must be 10 digits" if not value.isascii() else npi_problem(value)
            if problem:
                errors["identifiers.npi"] = [f"The NPI {problem}."]
                continue
        out[kind] = value
    if errors:
        raise Invalid("The identifiers are not valid.", errors=errors)
    return out


def _lock_unique_values(session: DbSession, email_bidx: str | None, identifiers: dict[str, str | None]) -> None:
    """Serialise writers claiming the same email or identifier (PostgreSQL; SQLite writers already are).

    Email has no unique constraint (merged and imported records may share one), so the check below
    is the rule; the lock keeps two concurrent requests from both passing it.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({f"email:{email_bidx}"} if email_bidx else set())
    keys += sorted(f"id:{k}:{v}" for k, v in identifiers.items() if v is not None)
    for key in keys:
        session.execute(text("SELECT pg_advisory_xact_lock(:base, hashtext(:k))"),
                        {"base": _UNIQUE_LOCK_BASE, "k": key})


def _ensure_email_free(session: DbSession, email_bidx: str | None, own_id: int | None) -> None:
    if email_bidx is None:
        return
    stmt = select(HCP.id).where(HCP.email_bidx == email_bidx)
    if own_id is not None:
        stmt = stmt.where(HCP.id != own_id)
    other = session.scalar(stmt.order_by(HCP.id).limit(1))
    if other is not None:
        raise Conflict(f"Another HCP (id {other}) already has this email address.", existing_id=other)


def _ensure_identifiers_free(session: DbSession, identifiers: dict[str, str | None], own_id: int | None) -> None:
    for kind, value in identifiers.items():
        if value is None:
            continue
        holder = session.scalar(
            select(HCPIdentifier.hcp_id).where(HCPIdentifier.kind == kind, HCPIdentifier.value == value)
        )
        if holder is not None and holder != own_id:
            raise Conflict(f"The {kind} {value} already belongs to HCP {holder}.", existing_id=holder)


def _apply_identifiers(hcp: HCP, identifiers: dict[str, str | None]) -> None:
    for kind, value in identifiers.items():
        current = [i for i in hcp.identifiers if i.kind == kind]
        if value is None:
            for ident in current:
                hcp.identifiers.remove(ident)
        elif current:
            current[0].value = value
            for extra in current[1:]:
                hcp.identifiers.remove(extra)
        else:
            hcp.identifiers.append(HCPIdentifier(kind=kind, value=value))


def _insert(session: DbSession, hcp: HCP) -> None:
    """Insert in a savepoint; a unique identifier taken meanwhile by another transaction becomes a 409."""
    try:
        with session.begin_nested():
            session.add(hcp)
            session.flush()
    except IntegrityError as exc:
        raise Conflict("An identifier of this HCP already belongs to another HCP.") from exc


def _move_territory(session: DbSession, hcp_id: int, territory_id: int | None) -> None:
    now = utcnow()
    open_rows = session.scalars(select(HCPTerritoryAssignment).where(
        HCPTerritoryAssignment.hcp_id == hcp_id, HCPTerritoryAssignment.valid_to.is_(None)))
    for row in open_rows:
        row.valid_to = now
    if territory_id is not None:
        session.add(HCPTerritoryAssignment(hcp_id=hcp_id, territory_id=territory_id, valid_from=now))
    session.flush()


def _snapshot(hcp: HCP) -> dict[str, Any]:
    """The audited view of an HCP; audit.diff withholds the personal fields (email, phone, address)."""
    return {
        "first_name": hcp.first_name, "last_name": hcp.last_name, "profession": hcp.profession,
        "specialty": hcp.specialty, "email": hcp.email, "phone": hcp.phone, "address_line": hcp.address_line,
        "city": hcp.city, "postal_code": hcp.postal_code, "state": hcp.state, "country": hcp.country,
        "status": hcp.status, "territory": hcp.territory.code if hcp.territory is not None else None,
        "identifiers": _identifiers(hcp), "tags": split_tags(hcp.tags), "tier": hcp.tier,
    }


def mark_emails_invalid(session: DbSession, actor: Any, reasons: dict[int, tuple[str, Any]]) -> int:
    """Mark the email contact point of each HCP in ``reasons`` (``{hcp_id: (reason, at)}``) invalid, as the
    email platform reported a hard bounce. Set-based: one read of the HCPs that change, one UPDATE for
    all of them (each with its own reason and instant; the record's version goes up as an edit's does),
    one audit insert (a record per HCP changed). Erased HCPs, HCPs without an address and addresses
    already marked are left alone. Returns how many HCPs changed."""
    from sqlalchemy import bindparam, update
    from sqlalchemy.orm.util import identity_key

    if not reasons:
        return 0
    changed = list(session.scalars(select(HCP.id).where(
        among(session, HCP.id, sorted(reasons)), HCP.status != "erased", HCP.email.is_not(None),
        HCP.email_status != "invalid").order_by(HCP.id)))
    if not changed:
        return 0
    table: Any = HCP.__table__
    session.execute(
        update(table).where(table.c.id == bindparam("hcp_id"), table.c.email_status != "invalid")
        .values(email_status="invalid", email_status_reason=bindparam("reason"), email_status_at=bindparam("at"),
                version=table.c.version + 1, updated_at=utcnow()),
        [{"hcp_id": hcp_id, "reason": reasons[hcp_id][0][:300], "at": reasons[hcp_id][1]} for hcp_id in changed])
    for hcp_id in changed:  # an HCP already loaded in the session is read again when next used
        loaded = session.identity_map.get(identity_key(HCP, hcp_id))
        if loaded is not None:
            session.expire(loaded)
    audit.record_many(session, actor, [
        ("hcp.email_invalid", "hcp", hcp_id,
         audit.diff({"email_status": "valid"}, {"email_status": "invalid", "reason": reasons[hcp_id][0][:300]}), None)
        for hcp_id in changed])
    return len(changed)


# -- HCOs (read-only here) -----------------------------------------------------------------------

def get_hco(session: DbSession, hco_id: int) -> HCO:
    hco = session.get(HCO, hco_id)
    if hco is None:
        raise NotFound(f"No HCO with id {hco_id}.")
    return hco


def list_hcos(
    session: DbSession,
    q: str | None = None,
    kind: str | None = None,
    territory_code: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[HCO], str | None]:
    """One page of HCOs ordered by (name, id); ``q`` is a case-insensitive name substring."""
    stmt = select(HCO)
    if q and q.strip():
        stmt = stmt.where(HCO.name.icontains(q.strip(), autoescape=True))
    if kind:
        stmt = stmt.where(HCO.kind == kind)
    if territory_code:
        stmt = stmt.where(HCO.territory_id == territory_by_code(session, territory_code).id)
    if cursor:
        name, last_id = decode_cursor(cursor, (str, int))
        stmt = stmt.where(or_(HCO.name > name, and_(HCO.name == name, HCO.id > last_id)))
    rows = list(session.scalars(stmt.order_by(HCO.name, HCO.id).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].name, rows[-1].id)


def hco_public_dicts(session: DbSession, hcos: Sequence[HCO]) -> list[dict[str, Any]]:
    """HCOs with their currently affiliated HCP ids (one query for the affiliations, one for territories)."""
    ids = [h.id for h in hcos]
    now = utcnow()
    members: dict[int, list[int]] = {}
    if ids:
        rows = session.execute(
            select(Affiliation.hco_id, Affiliation.hcp_id)
            .where(Affiliation.hco_id.in_(ids), Affiliation.valid_from <= now,
                   or_(Affiliation.valid_to.is_(None), Affiliation.valid_to > now))
            .order_by(Affiliation.hco_id, Affiliation.hcp_id)
        )
        for hco_id, hcp_id in rows:
            if hcp_id not in members.setdefault(hco_id, []):
                members[hco_id].append(hcp_id)
    territory_ids = {h.territory_id for h in hcos if h.territory_id is not None}
    territories = ({t.id: t for t in session.scalars(select(Territory).where(Territory.id.in_(territory_ids)))}
                   if territory_ids else {})
    out = []
    for h in hcos:
        t = territories.get(h.territory_id) if h.territory_id is not None else None
        out.append({
            "id": h.id, "name": h.name, "kind": h.kind, "npi": h.npi, "city": h.city,
            "postal_code": h.postal_code, "state": h.state, "country": h.country, "status": h.status,
            "territory": {"code": t.code, "name": t.name} if t is not None else None,
            "hcp_ids": members.get(h.id, []),
            "created_at": iso_z(h.created_at), "updated_at": iso_z(h.updated_at),
        })
    return out
