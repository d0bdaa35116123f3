"""Merging duplicate HCP records: the survivor takes everything, the loser keeps a pointer.

Every table with a foreign key to ``hcps.id`` is found in the metadata, so a feature added later
is covered without touching this module. By default its rows are re-pointed to the survivor;
where a primary key or unique constraint would then collide (both records took part in the same
interaction, both attended the same visit), the loser's duplicate row is dropped and the survivor's
kept. Tables that need more than that register a handler (the consent ledger is append-only and
is never updated: its feature copies events instead). The loser becomes ``status="merged"`` with
``merged_into_id`` set, and the whole merge is one audit record with the counts per table and the
reason.

Two records that carry different values of a national identifier (``NATIONAL_IDENTIFIER_KINDS``:
one per person, such as the NPI) are two people as far as the registry knows: their merge is refused
(409, naming the identifiers) unless an admin overrides it explicitly with a reason of its own, which
the merge's audit record keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Table, UniqueConstraint, delete, exists, select, update

from crm.access.policy import require_write
from crm.audit import services as audit
from crm.db import Base, DbSession, utcnow
from crm.errors import Conflict, Invalid
from crm.hcps.models import HCP

# Identifiers a person has exactly one of: two records with different values are two people unless an
# admin says otherwise. Licences (``licence:<state>``) are left out: one person may hold several.
NATIONAL_IDENTIFIER_KINDS = ("npi", "national_id")

MergeHandler = Callable[[DbSession, Any, int, int], "int | None"]
"""``fn(session, actor, survivor_id, loser_id)``: move the loser's rows of one table; returns how many."""

_HANDLERS: dict[str, MergeHandler] = {}


def register_merge_handler(table_name: str, fn: MergeHandler) -> None:
    """Let ``fn`` handle ``table_name`` in every merge instead of the generic re-pointing."""
    _HANDLERS[table_name] = fn


def hcp_references() -> list[tuple[Table, list[Column[Any]]]]:
    """Every table with a foreign key to ``hcps.id``, with those columns (``hcps`` itself included)."""
    hcps = Base.metadata.tables["hcps"]
    out = []
    for table in Base.metadata.sorted_tables:
        columns = sorted((fk.parent for fk in table.foreign_keys
                          if fk.column.table is hcps and fk.column.name == "id"), key=lambda c: c.name)
        if columns:
            out.append((table, columns))
    return out


@dataclass
class MergeResult:
    survivor_id: int
    loser_id: int
    moved: dict[str, int] = field(default_factory=dict)  # "table.column" -> rows re-pointed
    dropped: dict[str, int] = field(default_factory=dict)  # "table" -> loser rows dropped as duplicates
    conflicts_overridden: list[dict[str, Any]] = field(default_factory=list)  # see identifier_conflicts
    audit_id: int | None = None


def identifier_conflicts(survivor: HCP, loser: HCP) -> list[dict[str, Any]]:
    """The national identifiers (``NATIONAL_IDENTIFIER_KINDS``) both records carry with different values:
    ``[{"kind", "survivor": [values], "loser": [values]}]``, empty when the two may be one person."""
    out = []
    for kind in NATIONAL_IDENTIFIER_KINDS:
        mine = sorted(i.value for i in survivor.identifiers if i.kind == kind)
        theirs = sorted(i.value for i in loser.identifiers if i.kind == kind)
        if mine and theirs and mine != theirs:
            out.append({"kind": kind, "survivor": mine, "loser": theirs})
    return out


def describe_conflicts(conflicts: list[dict[str, Any]], survivor_id: int, loser_id: int) -> str:
    """``npi 1234567893 (HCP 1) vs 1245319599 (HCP 2)``, for messages."""
    return "; ".join(f"{c['kind']} {', '.join(c['survivor'])} (HCP {survivor_id}) vs "
                     f"{', '.join(c['loser'])} (HCP {loser_id})" for c in conflicts)


def merge_hcps(session: DbSession, actor: Any, survivor: HCP, loser: HCP, reason: str, *,
               override_identifier_conflict: bool = False, override_reason: str | None = None) -> MergeResult:
    """Merge ``loser`` into ``survivor`` (admin; the command line acts as ``actor=None``).

    Refused: no reason (422), an HCP into itself (422), a loser or survivor that is already merged
    or erased (409), two records with different national identifiers (409 naming them) unless
    ``override_identifier_conflict`` is set with an ``override_reason`` (422 without one), which the
    audit record keeps with the identifiers. Both rows are locked (and their versions bumped), so a
    concurrent edit or a second merge of the same records fails instead of interleaving.
    """
    if actor is not None:
        from crm.auth.services import viewer_for

        require_write(viewer_for(session, actor), "hcp.merge")
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("A merge needs a reason.", errors={"reason": ["Must not be blank."]})
    if survivor.id == loser.id:
        raise Invalid(f"HCP {survivor.id} cannot be merged into itself.", errors={"loser": ["Same as the survivor."]})
    session.flush()
    session.execute(select(HCP.id).where(HCP.id.in_([survivor.id, loser.id])).order_by(HCP.id).with_for_update())
    session.refresh(survivor)
    session.refresh(loser)
    for hcp, role in ((loser, "merged"), (survivor, "merged into")):
        if hcp.status == "merged":
            raise Conflict(f"HCP {hcp.id} was already merged into HCP {hcp.merged_into_id}; it cannot be "
                           f"{role} again. Use HCP {hcp.merged_into_id} instead.", merged_into=hcp.merged_into_id)
        if hcp.status == "erased":
            raise Conflict(f"HCP {hcp.id} was erased; an erased record cannot be {role}.")
    conflicts = identifier_conflicts(survivor, loser)
    override_reason = (override_reason or "").strip() or None
    if conflicts and not override_identifier_conflict:
        raise Conflict(
            f"HCP {survivor.id} and HCP {loser.id} carry different identifiers "
            f"({describe_conflicts(conflicts, survivor.id, loser.id)}): they look like two people. "
            "An admin may still merge them with an explicit override and its reason.",
            conflicting_identifiers=conflicts)
    if conflicts and override_reason is None:
        raise Invalid("Overriding an identifier conflict needs its own reason.",
                      errors={"override_reason": ["Say why records with different identifiers are one person."]})

    result = MergeResult(survivor.id, loser.id, conflicts_overridden=conflicts)
    for table, columns in hcp_references():
        handler = _HANDLERS.get(table.name)
        if handler is not None:
            result.moved[table.name] = handler(session, actor, survivor.id, loser.id) or 0
            continue
        for column in columns:
            dropped = _drop_colliding(session, table, column, survivor.id, loser.id)
            if dropped:
                result.dropped[table.name] = result.dropped.get(table.name, 0) + dropped
            moved = _repoint(session, table, column, survivor.id, loser.id)
            if moved:
                result.moved[f"{table.name}.{column.name}"] = moved

    previous_status = loser.status
    loser.status = "merged"
    loser.merged_into_id = survivor.id
    survivor.updated_at = utcnow()  # bumps the survivor's version: edits made against the old one conflict
    session.flush()
    rec = audit.record(session, actor, "hcp.merge", "hcp", loser.id, {
        "survivor_id": survivor.id,
        "loser_id": loser.id,
        "status": {"before": previous_status, "after": "merged"},
        "merged_into": {"before": None, "after": survivor.id},
        "moved": dict(sorted(result.moved.items())),
        "dropped_duplicates": dict(sorted(result.dropped.items())),
        **({"identifier_conflict_overridden": {"conflicts": conflicts, "override_reason": override_reason}}
           if conflicts else {}),
    }, reason=reason)
    result.audit_id = rec.id
    # Rows were moved with set-based statements: what the session holds about them is stale now.
    session.expire_all()
    return result


def _unique_sets(table: Table, column: Column[Any]) -> list[set[str]]:
    """Column-name sets that must be unique and contain ``column``; partial indexes are left out on
    purpose: a collision on one fails the merge loudly instead of dropping rows by a guess."""
    sets = [set(table.primary_key.columns.keys())]
    sets += [set(c.columns.keys()) for c in table.constraints if isinstance(c, UniqueConstraint)]
    sets += [set(ix.columns.keys()) for ix in table.indexes if ix.unique
             and ix.dialect_options["sqlite"].get("where") is None
             and ix.dialect_options["postgresql"].get("where") is None]
    return [s for s in sets if column.name in s]


def _drop_colliding(session: DbSession, table: Table, column: Column[Any], survivor_id: int, loser_id: int) -> int:
    """Delete the loser's rows that would duplicate a survivor's row once re-pointed; keep the survivor's."""
    dropped = 0
    for names in _unique_sets(table, column):
        other = table.alias()
        same = [other.c[n] == table.c[n] for n in sorted(names - {column.name})]
        stmt = delete(table).where(
            table.c[column.name] == loser_id,
            exists().where(other.c[column.name] == survivor_id, *same),
        )
        dropped += _rowcount(session.execute(stmt))
    return dropped


def _repoint(session: DbSession, table: Table, column: Column[Any], survivor_id: int, loser_id: int) -> int:
    values: dict[str, Any] = {column.name: survivor_id}
    version = _version_column(table)
    if version is not None:
        values[version.name] = version + 1
    stmt = update(table).where(table.c[column.name] == loser_id).values(values)
    return _rowcount(session.execute(stmt))


def _rowcount(result: Any) -> int:
    """Rows an UPDATE or DELETE touched (the result of ``session.execute`` of one; typed loosely)."""
    return int(result.rowcount or 0)


def _version_column(table: Table) -> Any:
    """The optimistic-locking column of the model mapped to ``table``, if any: a moved row is a changed row."""
    for mapper in Base.registry.mappers:
        if mapper.local_table is table and mapper.version_id_col is not None:
            return mapper.version_id_col
    return None


# -- handlers for master-data tables with time ranges -----------------------------------------------

def _close_open_rows(table_name: str, key: str | None) -> MergeHandler:
    """Re-point the loser's effective-dated rows; an open loser row that the survivor also has open
    (the same ``key`` value, or any when ``key`` is None) is closed now, so history is kept and the
    survivor has one current row, its own."""

    def handler(session: DbSession, actor: Any, survivor_id: int, loser_id: int) -> int:
        table = Base.metadata.tables[table_name]
        now = utcnow()
        survivor_open = select(table.c.id).where(table.c.hcp_id == survivor_id, table.c.valid_to.is_(None))
        if key is not None:
            other = table.alias()
            overlap = exists().where(other.c.hcp_id == survivor_id, other.c.valid_to.is_(None),
                                     other.c[key] == table.c[key])
        else:
            overlap = exists(survivor_open)
        session.execute(update(table).where(table.c.hcp_id == loser_id, table.c.valid_to.is_(None), overlap)
                        .values(valid_to=now))
        return _rowcount(session.execute(update(table).where(table.c.hcp_id == loser_id).values(hcp_id=survivor_id)))

    return handler


register_merge_handler("hcp_territory_assignments", _close_open_rows("hcp_territory_assignments", None))
register_merge_handler("affiliations", _close_open_rows("affiliations", "hco_id"))
