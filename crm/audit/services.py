"""Record and verify the audit trail.

Every service that writes calls ``record``. Records are chained: each stores the hash of the previous
one, so an edited, deleted or inserted record breaks the chain at that point and ``verify_chain``
names it. Writers are serialised on the chain head (an advisory lock on PostgreSQL; SQLite's
BEGIN IMMEDIATE already serialises writers), so two transactions never fork the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, text

from crm.audit.models import AuditRecord, AuditVerification
from crm.db import DbSession, as_session, iso_z, utcnow

GENESIS = "0" * 64
PERSONAL_FIELDS = frozenset({"email", "phone", "address_line", "signature", "evidence", "ip_address",
                             "user_agent", "password", "password_hash"})
_PERSONAL_MARK = "[personal data withheld]"
_AUDIT_LOCK_ID = 7_310_001


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``{field: {"before": x, "after": y}}`` for fields that changed; personal data never in clear."""
    out: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        if b == a:
            continue
        if key in PERSONAL_FIELDS:
            out[key] = {"before": _PERSONAL_MARK if b is not None else None,
                        "after": _PERSONAL_MARK if a is not None else None}
        else:
            out[key] = {"before": _jsonable(b), "after": _jsonable(a)}
    return out


def created(values: dict[str, Any]) -> dict[str, Any]:
    return diff({}, values)


def _digest(rec: Any) -> str:
    """The hash of a record (an AuditRecord or a row of its table) over its content and its link."""
    payload = {
        "prev": rec.prev_hash,
        "at": iso_z(rec.occurred_at),
        "actor_id": rec.actor_id,
        "actor": rec.actor_label,
        "action": rec.action,
        "entity": rec.entity,
        "entity_id": rec.entity_id,
        "changes": rec.changes,
        "reason": rec.reason,
    }
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _lock_chain(session: DbSession) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_ID})


def record(
    session: DbSession,
    actor: Any,
    action: str,
    entity: str,
    entity_id: Any,
    changes: dict[str, Any] | None = None,
    reason: str | None = None,
) -> AuditRecord:
    """Append one audit record for a write done by ``actor`` (a User, or None for the system).

    ``changes`` is normally built with ``diff``/``created``; values must be JSON-able.
    """
    return record_many(session, actor, [(action, entity, entity_id, changes, reason)])[0]


def record_many(
    session: DbSession,
    actor: Any,
    entries: Iterable[tuple[str, str, Any, dict[str, Any] | None, str | None]],
) -> list[AuditRecord]:
    """Append several records at once, chained in the order given: ``(action, entity, entity_id,
    changes, reason)`` each. One flush for all of them (a batch that changes many rows)."""
    entries = list(entries)
    if not entries:
        return []
    # The chain's head: locked and read once per transaction (or savepoint); later records of the same
    # transaction chain onto the one before, which only this transaction can have appended meanwhile.
    real = as_session(session)
    current = real.get_nested_transaction() or real.get_transaction()
    head = real.info.get("audit_head")
    if head is not None and head[0] is current:
        prev = head[1]
    else:
        _lock_chain(session)
        prev = session.execute(select(AuditRecord.hash).order_by(AuditRecord.id.desc()).limit(1)).scalar()
    label = "system" if actor is None else f"{actor.name} <{actor.role}>"
    now = utcnow()
    records = []
    for action, entity, entity_id, changes, reason in entries:
        rec = AuditRecord(
            occurred_at=now,
            actor_id=getattr(actor, "id", None),
            actor_label=label,
            action=action,
            entity=entity,
            entity_id=str(entity_id),
            # round-trip so what is hashed is exactly what the JSON column gives back
            changes=json.loads(json.dumps(_jsonable(changes or {}), sort_keys=True)),
            reason=reason,
            prev_hash=prev or GENESIS,
        )
        rec.hash = prev = _digest(rec)
        records.append(rec)
    session.add_all(records)
    session.flush()
    real.info["audit_head"] = (current, prev)
    return records


@dataclass
class ChainReport:
    ok: bool
    checked: int
    broken_id: int | None = None
    problem: str | None = None


def verify_chain(session: DbSession, batch: int = 5000) -> ChainReport:
    """Walk the chain in order; report the first record whose link or hash does not hold.

    Reads plain rows, not ORM objects: what is checked is what the database holds now, never a copy
    cached in the session, and memory stays flat on long chains.
    """
    table = AuditRecord.__table__
    prev = GENESIS
    checked = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(table).where(table.c.id > last_id).order_by(table.c.id).limit(batch)
        ).all()
        if not rows:
            return ChainReport(True, checked)
        for rec in rows:
            if rec.prev_hash != prev:
                return ChainReport(False, checked, rec.id, "its link to the previous record does not match")
            if _digest(rec) != rec.hash:
                return ChainReport(False, checked, rec.id, "its content does not match its hash")
            prev = rec.hash
            checked += 1
            last_id = rec.id


def verify_and_store(session: DbSession, actor: Any) -> tuple[ChainReport, AuditVerification]:
    """Walk the chain and keep the outcome, so the audit page can show the latest result cheaply.

    ``actor`` is the user who asked, or None for the command line. The outcome is not itself an audit
    record: it changes no business data, and appending to the chain being checked would muddle it.
    """
    report = verify_chain(session)
    row = AuditVerification(
        verified_at=utcnow(),
        actor_id=getattr(actor, "id", None),
        actor_label="command line" if actor is None else f"{actor.name} <{actor.role}>",
        ok=report.ok,
        checked=report.checked,
        broken_id=report.broken_id,
        problem=report.problem,
    )
    session.add(row)
    session.flush()
    return report, row


def latest_verification(session: DbSession) -> AuditVerification | None:
    return session.scalar(select(AuditVerification).order_by(AuditVerification.id.desc()).limit(1))
