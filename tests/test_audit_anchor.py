"""The audit chain is keyed (HMAC under CRM_AUDIT_KEY) and its head anchored: re-hashing without the key,
an appended forgery and deleting the newest records are each detected."""

from __future__ import annotations

import hashlib
import hmac
import json
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, text

from crm.audit.models import AuditRecord, AuditVerification
from crm.audit.services import GENESIS, latest_verification, verify_and_store, verify_chain
from crm.db import iso_z
from crm.hcps.services import create_territory

KEY = b"test-audit-key"  # tests/conftest.py


def _chain(db, n):
    """``n`` more records written through a service; every record as plain values, oldest first (the CLI
    commits, which expires ORM objects)."""
    for _ in range(n):
        create_territory(db, None, f"AN{db.scalar(select(func.count()).select_from(AuditRecord))}", "Anchor")
    return [SimpleNamespace(**row) for row in _rows(db)]


def _payload(row) -> bytes:
    return json.dumps({
        "prev": row["prev_hash"], "at": iso_z(row["occurred_at"]), "actor_id": row["actor_id"],
        "actor": row["actor_label"], "action": row["action"], "entity": row["entity"],
        "entity_id": row["entity_id"], "changes": row["changes"], "reason": row["reason"],
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _rows(db, since_id=0):
    return [dict(r._mapping) for r in db.execute(
        select(AuditRecord.__table__).where(AuditRecord.id >= since_id).order_by(AuditRecord.id))]


def _rewrite(db, row, **values):
    sets = ", ".join(f"{k} = :{k}" for k in values)
    params = dict(values)
    if "changes" in params:
        params["changes"] = json.dumps(params["changes"])
    db.execute(text(f"UPDATE audit_records SET {sets} WHERE id = :id"), {**params, "id": row["id"]})  # noqa: S608


@pytest.fixture
def anchor_file(app, tmp_path, monkeypatch):
    path = tmp_path / "anchor" / "audit-anchor.json"
    monkeypatch.setitem(app.config, "CRM_AUDIT_ANCHOR_FILE", str(path))
    return path


def test_records_are_hmac_keyed_and_a_clean_chain_verifies(app, db, monkeypatch):
    recs = _chain(db, 3)
    first = _rows(db)[0]
    assert first["hash_version"] == 2
    assert first["hash"] == hmac.new(KEY, _payload(first), hashlib.sha256).hexdigest()
    assert first["hash"] != hashlib.sha256(_payload(first)).hexdigest()
    report = verify_chain(db)
    assert report.ok and report.checked == 3 and report.head_id == recs[-1].id and report.head_hash == recs[-1].hash
    # the key matters: under another key the very first record fails
    monkeypatch.setitem(app.config, "CRM_AUDIT_KEY", "another-key")
    assert verify_chain(db).broken_id == recs[0].id


@pytest.mark.parametrize("version", [2, 1])
def test_rehashing_from_an_edited_record_onward_without_the_key_is_detected(db, version):
    """The attacker edits a record and recomputes every hash after it with plain SHA-256 (keeping the
    version, or claiming the old unkeyed scheme): the edited record is named."""
    _chain(db, 5)
    rows = _rows(db)
    target = rows[2]
    prev = target["prev_hash"]
    for row in rows[2:]:
        row = {**row, "prev_hash": prev}
        if row["id"] == target["id"]:
            row["changes"] = {"code": {"before": None, "after": "FORGED"}}
        digest = hashlib.sha256(_payload(row)).hexdigest()
        _rewrite(db, row, prev_hash=prev, hash=digest, changes=row["changes"], hash_version=version)
        prev = digest
    report = verify_chain(db)
    assert not report.ok and report.broken_id == target["id"]
    assert report.problem == ("its content does not match its hash" if version == 2
                              else "it is not keyed, yet it follows keyed records")


def test_an_appended_forgery_is_detected(db):
    recs = _chain(db, 3)
    head = _rows(db)[-1]
    forged = {**head, "prev_hash": head["hash"], "action": "territory.create", "entity_id": "424242",
              "changes": {"code": {"before": None, "after": "X"}}}
    for version, digest in [(2, hashlib.sha256(_payload(forged)).hexdigest()),
                            (2, hmac.new(b"guessed-key", _payload(forged), hashlib.sha256).hexdigest()),
                            (1, hashlib.sha256(_payload(forged)).hexdigest())]:
        with db.begin_nested() as attempt:
            db.execute(AuditRecord.__table__.insert().values(
                occurred_at=head["occurred_at"], actor_id=None, actor_label=head["actor_label"],
                action=forged["action"], entity=forged["entity"], entity_id=forged["entity_id"],
                changes=forged["changes"], reason=None, prev_hash=head["hash"], hash=digest, hash_version=version))
            report = verify_chain(db)
            assert not report.ok and report.checked == len(recs) and report.broken_id > recs[-1].id
            attempt.rollback()
    assert verify_chain(db).ok


def test_records_of_before_the_key_verify_the_old_way_and_are_sealed_by_the_first_keyed_one(db):
    # two records as the unkeyed chain wrote them (hash_version 1 is what the migration gives them)
    prev = GENESIS
    legacy_ids = []
    for i in range(2):
        row = {"prev_hash": prev, "occurred_at": _now(), "actor_id": None, "actor_label": "system",
               "action": "territory.create", "entity": "territory", "entity_id": str(900 + i),
               "changes": {"code": {"before": None, "after": f"OLD{i}"}}, "reason": None}
        digest = hashlib.sha256(_payload(row)).hexdigest()
        legacy_ids.append(db.execute(AuditRecord.__table__.insert().values(**row, hash=digest)
                                     .returning(AuditRecord.id)).scalar_one())
        prev = digest
    assert _rows(db)[0]["hash_version"] == 1
    recs = _chain(db, 2)
    assert recs[2].prev_hash == prev and recs[2].hash_version == 2
    assert verify_chain(db).ok and verify_chain(db).checked == 4

    # rewriting the old part consistently (no key needed for it) breaks at the first keyed record
    first = _rows(db)[0]
    first["changes"] = {"code": {"before": None, "after": "FORGED"}}
    new_first = hashlib.sha256(_payload(first)).hexdigest()
    _rewrite(db, first, changes=first["changes"], hash=new_first)
    second = {**_rows(db)[1], "prev_hash": new_first}
    _rewrite(db, second, prev_hash=new_first, hash=hashlib.sha256(_payload(second)).hexdigest())
    report = verify_chain(db)
    assert not report.ok and report.broken_id == recs[2].id


def _now():
    from crm.db import utcnow

    return utcnow()


def test_deleting_the_newest_records_is_reported_as_truncation(runner, db, anchor_file):
    recs = _chain(db, 5)
    first = runner.invoke(args=["crm", "audit", "verify"])
    assert first.exit_code == 0, first.output
    anchored = json.loads(anchor_file.read_text())
    assert (anchored["head_id"], anchored["head_hash"], anchored["count"]) == (recs[-1].id, recs[-1].hash, 5)
    row = latest_verification(db)
    assert (row.head_id, row.head_hash, row.checked) == (recs[-1].id, recs[-1].hash, 5) and row.signature

    db.execute(text("DELETE FROM audit_records WHERE id >= :id"), {"id": recs[3].id})
    assert verify_chain(db).ok  # the chain alone cannot see it
    result = runner.invoke(args=["crm", "audit", "verify"])
    assert result.exit_code == 1
    assert f"truncated: record {recs[4].id}" in result.output and "is missing" in result.output
    assert f"the chain now ends at record {recs[2].id} (3 records)" in result.output
    latest = latest_verification(db)
    assert not latest.ok and latest.signature is None  # a broken chain is never anchored
    assert json.loads(anchor_file.read_text()) == anchored  # nor written to the file


def test_the_file_anchor_catches_a_truncation_whose_database_anchors_were_deleted_too(runner, db, anchor_file):
    recs = _chain(db, 4)
    assert runner.invoke(args=["crm", "audit", "verify"]).exit_code == 0
    db.execute(text("DELETE FROM audit_records WHERE id = :id"), {"id": recs[-1].id})
    db.execute(text("DELETE FROM audit_verifications"))
    result = runner.invoke(args=["crm", "audit", "verify"])
    assert result.exit_code == 1
    assert f"record {recs[-1].id}, the head anchored in the file" in result.output and "truncated" in result.output


def test_truncation_then_new_records_is_still_caught(db, anchor_file):
    recs = _chain(db, 4)
    verify_and_store(db, None)
    db.execute(text("DELETE FROM audit_records WHERE id >= :id"), {"id": recs[2].id})
    db.info.pop("audit_head", None)  # the session's cached head is gone with the records (a new transaction)
    _chain(db, 5)  # the app goes on writing: more records than anchored, a higher id
    report, _row = verify_and_store(db, None)
    assert not report.ok and report.truncated and report.broken_id == recs[-1].id
    assert "is missing" in report.problem


def test_a_chain_rewritten_whole_as_unkeyed_records_is_caught_by_the_anchor(db, anchor_file):
    """Without the key, the one consistent rewrite left is to pass every record off as written before
    the key (plain SHA-256). The chain alone then verifies; the anchored head has changed."""
    recs = _chain(db, 3)
    verify_and_store(db, None)
    prev = GENESIS
    for row in _rows(db):
        row = {**row, "prev_hash": prev}
        if row["id"] == recs[1].id:
            row["changes"] = {"code": {"before": None, "after": "FORGED"}}
        digest = hashlib.sha256(_payload(row)).hexdigest()
        _rewrite(db, row, prev_hash=prev, hash=digest, changes=row["changes"], hash_version=1)
        prev = digest
    assert verify_chain(db).ok
    report, _ = verify_and_store(db, None)
    assert not report.ok and report.truncated and report.broken_id == recs[-1].id
    assert report.problem == f"record {recs[-1].id}, the head anchored in the database, has changed"


def test_a_forged_or_edited_anchor_is_refused(db, anchor_file):
    recs = _chain(db, 4)
    verify_and_store(db, None)
    # an anchor row rewritten to an older head (to hide a truncation) no longer matches its signature
    with db.begin_nested() as attempt:
        db.execute(text("UPDATE audit_verifications SET head_id = :i, head_hash = :h, checked = 2"),
                   {"i": recs[1].id, "h": recs[1].hash})
        report, _ = verify_and_store(db, None)
        assert not report.ok and "anchor in the database is not signed with the audit key" in report.problem
        attempt.rollback()
    # the same for the file
    data = json.loads(anchor_file.read_text())
    anchor_file.write_text(json.dumps({**data, "count": 2, "head_id": recs[1].id, "head_hash": recs[1].hash}))
    report, _ = verify_and_store(db, None)
    assert not report.ok and "anchor in the file is not signed" in report.problem
    anchor_file.write_text("not json")
    report, _ = verify_and_store(db, None)
    assert not report.ok and "cannot be read" in report.problem


def test_the_anchor_moves_forward_with_each_clean_verification(db, anchor_file):
    _chain(db, 2)
    assert verify_and_store(db, None)[0].ok
    recs = _chain(db, 3)
    report, row = verify_and_store(db, None)
    assert report.ok and row.head_id == recs[-1].id and row.checked == 5
    assert json.loads(anchor_file.read_text())["count"] == 5
    assert db.scalar(select(func.count()).select_from(AuditVerification)) == 2


def test_the_verify_button_anchors_and_reports_truncation(client, auth, db, factory, anchor_file):
    user = factory.user("compliance")
    recs = _chain(db, 3)
    auth.login(user)
    token = auth.csrf_token("/audit")
    client.post("/audit/verify", data={"csrf_token": token})
    assert latest_verification(db).ok and anchor_file.exists()
    db.execute(text("DELETE FROM audit_records WHERE id = :id"), {"id": recs[-1].id})
    client.post("/audit/verify", data={"csrf_token": token})
    page = client.get("/audit").get_data(as_text=True)
    assert f"Broken at record {recs[-1].id}" in page and "truncated" in page


def test_an_anchor_file_that_cannot_be_written_fails_the_verification(runner, db, app, tmp_path, monkeypatch):
    _chain(db, 2)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setitem(app.config, "CRM_AUDIT_ANCHOR_FILE", str(blocker / "audit-anchor.json"))
    result = runner.invoke(args=["crm", "audit", "verify"])
    assert result.exit_code == 1
    assert "the chain is intact, but its head cannot be anchored in" in result.output
    assert latest_verification(db).signature is None
