"""Record and verify the audit trail.

Every service that writes calls ``record``. Records are chained: each stores the hash of the previous
one, so an edited, deleted or inserted record breaks the chain at that point and ``verify_chain``
names it. The hash is an HMAC-SHA256 under ``CRM_AUDIT_KEY``, a key kept outside the database, so
whoever can write to the database alone cannot re-hash the chain after an edit nor append a forgery.
Records written before the chain was keyed (``hash_version`` 1, plain SHA-256) still verify the old
way; the first keyed record seals them, and no unkeyed record may follow a keyed one.

A chain alone cannot show that its newest records were deleted, so every verification that finds the
chain intact anchors its head (id, hash, count): in ``audit_verifications`` (signed with the audit
key) and in ``CRM_AUDIT_ANCHOR_FILE`` outside the database. The next verification compares the chain
with both anchors and reports a truncation.

Writers are serialised on the chain head (an advisory lock on PostgreSQL; SQLite's BEGIN IMMEDIATE
already serialises writers), so two transactions never fork the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import select, text

from crm.audit.models import AuditRecord, AuditVerification
from crm.db import DbSession, as_session, iso_z, utcnow
from crm.hcps.models import HCP_PERSONAL_AUDIT_KEYS

GENESIS = "0" * 64
# Personal data is never stored in clear in the trail: it is permanent and hash-chained, so a value put
# there could never be erased. Keys personal wherever they appear:
PERSONAL_FIELDS = frozenset({"email", "phone", "address_line", "signature", "evidence", "ip_address",
                             "user_agent", "password", "password_hash"})
# ...and keys personal in the records of one entity (``state`` is an address on an HCP, not on an order).
PERSONAL_FIELDS_OF: dict[str, frozenset[str]] = {"hcp": HCP_PERSONAL_AUDIT_KEYS}
_PERSONAL_MARK = "[personal data withheld]"
_AUDIT_LOCK_ID = 7_310_001
UNKEYED, KEYED = 1, 2  # hash_version: plain SHA-256 (before the key), HMAC-SHA256 under CRM_AUDIT_KEY


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


def _withheld(value: Any) -> Any:
    """``value`` with every personal leaf replaced by the mark; keys and ``None`` stay (so a change of an
    HCP's NPI still reads ``{"npi": {"before": mark, "after": mark}}``)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _withheld(v) for k, v in value.items()}
    return _PERSONAL_MARK


def withhold_personal(entity: str, changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` with the personal fields of ``entity`` withheld, however the caller built them."""
    personal = PERSONAL_FIELDS | PERSONAL_FIELDS_OF.get(entity, frozenset())
    return {k: _withheld(v) if k in personal else v for k, v in changes.items()}


def audit_key() -> bytes:
    return str(current_app.config["CRM_AUDIT_KEY"]).encode()


def _digest(rec: Any, key: bytes | None = None) -> str:
    """The hash of a record (an AuditRecord or a row of its table) over its content and its link:
    HMAC-SHA256 under ``key`` for keyed records, plain SHA-256 for the records of before the key."""
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
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if getattr(rec, "hash_version", KEYED) == UNKEYED:
        return hashlib.sha256(raw).hexdigest()
    return hmac.new(key if key is not None else audit_key(), raw, hashlib.sha256).hexdigest()


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
    key = audit_key()
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
            changes=json.loads(json.dumps(withhold_personal(entity, _jsonable(changes or {})), sort_keys=True)),
            reason=reason,
            prev_hash=prev or GENESIS,
            hash_version=KEYED,
        )
        rec.hash = prev = _digest(rec, key)
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
    head_id: int | None = None  # the newest record walked (None for an empty trail)
    head_hash: str = GENESIS
    truncated: bool = False


def verify_chain(session: DbSession, batch: int = 5000) -> ChainReport:
    """Walk the chain in order; report the first record whose link or hash does not hold.

    Reads plain rows, not ORM objects: what is checked is what the database holds now, never a copy
    cached in the session, and memory stays flat on long chains.
    """
    table = AuditRecord.__table__
    key = audit_key()
    prev = GENESIS
    keyed_seen = False
    checked = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(table).where(table.c.id > last_id).order_by(table.c.id).limit(batch)
        ).all()
        if not rows:
            return ChainReport(True, checked, head_id=last_id or None, head_hash=prev)
        for rec in rows:
            if rec.prev_hash != prev:
                return ChainReport(False, checked, rec.id, "its link to the previous record does not match")
            if rec.hash_version not in (UNKEYED, KEYED) or (keyed_seen and rec.hash_version != KEYED):
                return ChainReport(False, checked, rec.id, "it is not keyed, yet it follows keyed records")
            if not hmac.compare_digest(_digest(rec, key), rec.hash):
                return ChainReport(False, checked, rec.id, "its content does not match its hash")
            keyed_seen = keyed_seen or rec.hash_version == KEYED
            prev = rec.hash
            checked += 1
            last_id = rec.id


# -- the anchored head ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Anchor:
    """The head of an intact chain as one verification saw it, signed with the audit key."""

    head_id: int | None
    head_hash: str
    count: int
    where: str  # "database" or "file", for the report

    def message(self) -> bytes:
        return f"crm-audit-anchor|{self.head_id or 0}|{self.head_hash}|{self.count}".encode()

    def signature(self, key: bytes) -> str:
        return hmac.new(key, self.message(), hashlib.sha256).hexdigest()


def anchor_file() -> Path | None:
    """Where the anchor outside the database is kept (``CRM_AUDIT_ANCHOR_FILE``); None when switched off."""
    value = str(current_app.config.get("CRM_AUDIT_ANCHOR_FILE") or "").strip()
    return Path(value) if value else None


class _AnchorProblem(Exception):
    pass


def _signed(anchor: Anchor, signature: Any, key: bytes) -> Anchor:
    if not isinstance(signature, str) or not hmac.compare_digest(anchor.signature(key), signature):
        raise _AnchorProblem(f"the anchor in the {anchor.where} is not signed with the audit key "
                             "(forged or edited)")
    return anchor


def _database_anchor(session: DbSession, key: bytes) -> Anchor | None:
    row = session.execute(
        select(AuditVerification.head_id, AuditVerification.head_hash, AuditVerification.checked,
               AuditVerification.signature)
        .where(AuditVerification.ok.is_(True), AuditVerification.signature.is_not(None))
        .order_by(AuditVerification.id.desc()).limit(1)).first()
    if row is None:
        return None
    return _signed(Anchor(row.head_id, row.head_hash or "", row.checked, "database"), row.signature, key)


def _file_anchor(path: Path | None, key: bytes) -> Anchor | None:
    if path is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        anchor = Anchor(data["head_id"], str(data["head_hash"]), int(data["count"]), "file")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _AnchorProblem(f"the anchor file {path} cannot be read") from exc
    return _signed(anchor, data.get("signature"), key)


def _compare(session: DbSession, report: ChainReport, anchor: Anchor) -> ChainReport | None:
    """A report of truncation when the chain is behind ``anchor``, else None."""
    if anchor.head_id is not None:
        table = AuditRecord.__table__
        held = session.execute(select(table.c.hash).where(table.c.id == anchor.head_id)).scalar()
        if held is None:
            return ChainReport(False, report.checked, anchor.head_id,
                               f"truncated: record {anchor.head_id}, the head anchored in the {anchor.where} "
                               f"({anchor.count} records), is missing; the chain now ends at record "
                               f"{report.head_id} ({report.checked} records)",
                               report.head_id, report.head_hash, truncated=True)
        if held != anchor.head_hash:
            return ChainReport(False, report.checked, anchor.head_id,
                               f"record {anchor.head_id}, the head anchored in the {anchor.where}, has changed",
                               report.head_id, report.head_hash, truncated=True)
    if report.checked < anchor.count or (report.head_id or 0) < (anchor.head_id or 0):
        return ChainReport(False, report.checked, anchor.head_id,
                           f"truncated: the chain ends at record {report.head_id} ({report.checked} records), "
                           f"behind the head anchored in the {anchor.where}: record {anchor.head_id} "
                           f"({anchor.count} records)",
                           report.head_id, report.head_hash, truncated=True)
    return None


def _write_anchor_file(path: Path, anchor: Anchor, key: bytes) -> None:
    """Replace the anchor file atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"head_id": anchor.head_id, "head_hash": anchor.head_hash, "count": anchor.count,
                       "anchored_at": iso_z(utcnow()), "signature": anchor.signature(key)}, sort_keys=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def verify_anchored(session: DbSession) -> ChainReport:
    """Walk the chain, then compare its head with the anchors of earlier verifications."""
    report = verify_chain(session)
    if not report.ok:
        return report
    key = audit_key()
    try:
        anchors = [_database_anchor(session, key), _file_anchor(anchor_file(), key)]
    except _AnchorProblem as exc:
        return ChainReport(False, report.checked, None, str(exc), report.head_id, report.head_hash,
                           truncated=True)
    for anchor in anchors:
        if anchor is not None:
            behind = _compare(session, report, anchor)
            if behind is not None:
                return behind
    return report


def verify_and_store(session: DbSession, actor: Any) -> tuple[ChainReport, AuditVerification]:
    """Walk the chain, compare it with the anchored head, and keep the outcome; when the chain is intact,
    its head becomes the new anchor (a signed row here, and the anchor file).

    ``actor`` is the user who asked, or None for the command line. The outcome is not itself an audit
    record: it changes no business data, and appending to the chain being checked would muddle it.
    """
    report = verify_anchored(session)
    key = audit_key()
    anchor = Anchor(report.head_id, report.head_hash, report.checked, "database") if report.ok else None
    path = anchor_file()
    if anchor is not None and path is not None:
        try:
            _write_anchor_file(path, anchor, key)
        except OSError as exc:
            # An anchor that cannot be kept is a failed verification: the operator must hear of it.
            report = ChainReport(False, report.checked, None, f"the chain is intact, but its head cannot be "
                                 f"anchored in {path}: {exc.strerror or exc}", report.head_id, report.head_hash)
            anchor = None
    row = AuditVerification(
        verified_at=utcnow(),
        actor_id=getattr(actor, "id", None),
        actor_label="command line" if actor is None else f"{actor.name} <{actor.role}>",
        ok=report.ok,
        checked=report.checked,
        broken_id=report.broken_id,
        problem=report.problem,
        head_id=anchor.head_id if anchor else None,
        head_hash=anchor.head_hash if anchor else None,
        signature=anchor.signature(key) if anchor else None,
    )
    session.add(row)
    session.flush()
    return report, row


def latest_verification(session: DbSession) -> AuditVerification | None:
    return session.scalar(select(AuditVerification).order_by(AuditVerification.id.desc()).limit(1))
