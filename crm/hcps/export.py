"""Data-subject export (GDPR Art. 15): everything the CRM holds about one HCP, as JSON.

What "everything" is comes from the metadata, not from a list kept here: every row of every table
with a foreign key to ``hcps.id`` (identifiers, affiliations, territory history, timeline
participations, visits, consent ledger and state, ... and whatever a later feature adds), plus
the rows those point to (the interactions themselves, the visits attended, the HCOs, the notices),
except staff records (users and their sessions). Contact data is in clear: the export is the
answer to the person themselves. Blind indexes are left out (keyed hashes, meaningless outside).
Every export is audited.
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Table, or_, select

from crm.access.policy import require_write
from crm.audit import services as audit
from crm.db import Base, DbSession, UTCDateTime, iso_z, utcnow
from crm.hcps.merge import hcp_references
from crm.hcps.models import HCP

FORMAT = "pharma-crm/data-subject-export/1"
# Tables reached through a foreign key that are about staff, not about the HCP.
_NOT_FOLLOWED = frozenset({"users", "api_tokens", "web_sessions", "login_attempts", "hcps"})


def json_value(value: Any) -> Any:
    """A stored value as JSON holds it: times in UTC with Z, dates ISO, decimals as strings, bytes base64."""
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _rows(session: DbSession, table: Table, condition: Any) -> list[dict[str, Any]]:
    order = list(table.primary_key.columns)
    result = session.execute(select(table).where(condition).order_by(*order)).mappings()
    return [{k: json_value(v) for k, v in row.items() if not k.endswith("_bidx")} for row in result]


def _outline_if_someone_elses(table: Table, row: dict[str, Any], hcp_id: int) -> dict[str, Any]:
    """A related row that is another HCP's record (the host's visit of a group visit this HCP attended)
    keeps only its keys and times: its notes, signature and other content are that HCP's data."""
    hcps = Base.metadata.tables["hcps"]
    owners = [fk.parent.name for fk in table.foreign_keys if fk.column.table is hcps and fk.parent.name in row]
    if not owners or any(row[name] == hcp_id for name in owners):
        return row
    kept = {c.name for c in table.columns
            if c.primary_key or c.foreign_keys or isinstance(c.type, (DateTime, UTCDateTime))}
    return {**{k: v for k, v in row.items() if k in kept},
            "withheld": "another HCP's record: only its keys and times are part of this export"}


def _log_sensitive_content(session: DbSession, actor: Any, hcp_id: int, interactions: list[dict[str, Any]]) -> None:
    """The export hands over medical and pv items in full: each such item is a sensitive read
    (``what="export"``) on the compliance read log, next to the export's audit record, logged through the
    one read path (``crm.access.reads.log_reads``)."""
    from crm.access.reads import log_reads
    from crm.auth.services import viewer_for

    if actor is None:  # the command line: the audit record names the export, there is no reader to log
        return
    log_reads(session, viewer_for(session, actor),
              ((row["id"], hcp_id, str(row.get("sensitivity"))) for row in interactions), what="export")


def export_hcp(session: DbSession, actor: Any, hcp: HCP) -> dict[str, Any]:
    """The export document for ``hcp`` (admin or compliance; ``actor=None`` for the command line)."""
    if actor is not None:
        from crm.auth.services import viewer_for

        require_write(viewer_for(session, actor), "hcp.export")
    hcps = Base.metadata.tables["hcps"]
    profile = _rows(session, hcps, hcps.c.id == hcp.id)[0]
    records: dict[str, list[dict[str, Any]]] = {}
    wanted: dict[str, dict[str, set[Any]]] = {}  # parent table -> column -> values
    for table, columns in hcp_references():
        rows = _rows(session, table, or_(*[c == hcp.id for c in columns]))
        if not rows:
            continue
        # ``hcps`` itself: the records merged into this one (the same person's other records)
        records["merged_records" if table is hcps else table.name] = rows
        for fk in table.foreign_keys:
            parent = fk.column.table
            if parent.name in _NOT_FOLLOWED or fk.parent.name not in rows[0]:
                continue
            values = {r[fk.parent.name] for r in rows if r[fk.parent.name] is not None}
            if values:
                wanted.setdefault(parent.name, {}).setdefault(fk.column.name, set()).update(values)
    related: dict[str, list[dict[str, Any]]] = {}
    for name, by_column in sorted(wanted.items()):
        table = Base.metadata.tables[name]
        condition = or_(*[table.c[col].in_(sorted(values)) for col, values in by_column.items()])
        related[name] = [_outline_if_someone_elses(table, row, hcp.id) for row in _rows(session, table, condition)]
    document = {
        "format": FORMAT,
        "generated_at": iso_z(utcnow()),
        "hcp_id": hcp.id,
        "profile": profile,
        "records": dict(sorted(records.items())),
        "related": related,
    }
    _log_sensitive_content(session, actor, hcp.id, related.get("interactions", []))
    audit.record(session, actor, "hcp.export", "hcp", hcp.id,
                 {"tables": {k: len(v) for k, v in records.items()}},
                 reason="data-subject export")
    return document
