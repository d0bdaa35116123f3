"""Erasure pseudonymises the HCP everywhere and keeps the consent ledger's proof."""

from __future__ import annotations

import pytest

from crm.audit.models import AuditRecord
from crm.consent import services
from crm.consent.models import ConsentEvent
from crm.errors import Conflict, Forbidden, Invalid
from crm.hcps.erasure import erase_hcp
from crm.hcps.models import HCP, HCPIdentifier
from tests.consent_support import grant


def test_erasure_keeps_the_ledger_and_clears_personal_data(db, factory):
    hcp = factory.hcp()
    db.add(HCPIdentifier(hcp_id=hcp.id, kind="npi", value="1234567893"))
    db.flush()
    e = grant(db, hcp, "visit", "events", "visit")
    erase_hcp(db, None, hcp, "GDPR Art. 17 request of 2026-03-01")
    db.expire_all()
    h = db.get(HCP, hcp.id)
    assert (h.first_name, h.last_name, h.status) == ("Erased", "Erased", "erased")
    assert h.email is None and h.email_bidx is None and h.phone is None and h.address_line is None
    assert db.query(HCPIdentifier).filter_by(hcp_id=hcp.id).count() == 0
    kept = db.get(ConsentEvent, e.id)
    assert kept.notice_version and kept.notice_text_hash and kept.evidence_hash == e.evidence_hash
    assert kept.occurred_at == e.occurred_at
    rec = db.query(AuditRecord).filter_by(action="hcp.erase", entity_id=str(hcp.id)).one()
    assert rec.reason.startswith("GDPR") and "Ada" not in str(rec.changes) and "clinic.example" not in str(rec.changes)
    assert not services.can_contact(db, hcp.id, "visit", "events").allowed
    with pytest.raises(Conflict):
        erase_hcp(db, None, h, "again")


def test_erasure_rules(db, factory):
    hcp = factory.hcp()
    with pytest.raises(Invalid):
        erase_hcp(db, None, hcp, "  ")
    for role in ("field_rep", "marketer", "compliance", "call_centre", "medical"):
        with pytest.raises(Forbidden):
            erase_hcp(db, factory.user(role), hcp, "reason")
    erase_hcp(db, factory.user("admin"), hcp, "reason")
    assert hcp.status == "erased"


def test_erase_cli(runner, db, factory):
    hcp = factory.hcp()
    result = runner.invoke(args=["crm", "hcps", "erase", str(hcp.id), "--reason", "Art. 17"])
    assert result.exit_code == 0, result.output
    assert "erased: HCP" in result.output
    assert db.get(HCP, hcp.id).status == "erased"
    again = runner.invoke(args=["crm", "hcps", "erase", str(hcp.id), "--reason", "Art. 17"])
    assert again.exit_code == 1 and "already erased" in again.output
    missing = runner.invoke(args=["crm", "hcps", "erase", "999999", "--reason", "x"])
    assert missing.exit_code == 1
    assert runner.invoke(args=["crm", "hcps", "erase", str(hcp.id)]).exit_code == 2  # --reason is required


def test_erase_page_admin_only(client, auth, db, factory):
    hcp = factory.hcp()
    auth.login(factory.user("compliance"))
    assert client.get(f"/hcps/{hcp.id}/erase").status_code == 403
    auth.logout()
    auth.login(factory.user("admin"))
    token = auth.csrf_token(f"/hcps/{hcp.id}/erase")
    wrong = client.post(f"/hcps/{hcp.id}/erase", data={"csrf_token": token, "reason": "x", "confirm": "0"})
    assert wrong.status_code == 422 and db.get(HCP, hcp.id).status == "active"
    ok = client.post(f"/hcps/{hcp.id}/erase", data={"csrf_token": token, "reason": "Art. 17", "confirm": str(hcp.id)})
    db.expire_all()
    assert ok.status_code == 302 and db.get(HCP, hcp.id).status == "erased"


def test_expire_cli_is_idempotent(runner, db, factory):
    from datetime import timedelta

    from crm.db import utcnow

    hcp = factory.hcp()
    grant(db, hcp, "phone", "events", occurred_at=utcnow() - timedelta(days=800))
    first = runner.invoke(args=["crm", "consent", "expire"])
    second = runner.invoke(args=["crm", "consent", "expire"])
    assert first.exit_code == second.exit_code == 0
    assert "expired: 1" in first.output and "expired: 0" in second.output
    assert db.query(ConsentEvent).filter_by(hcp_id=hcp.id, event_type="expired").count() == 1


def test_erasure_clears_the_mail_outbox_of_the_hcp(db, factory):
    """A mail to the HCP keeps neither the address nor the message, and one not yet handed over never leaves."""
    from sqlalchemy import text

    from crm.hcps.erasure import erase_hcp
    from crm.integrations.email import EmailMessage
    from crm.mail.models import MailOutbox
    from crm.mail.services import enqueue

    hcp = factory.hcp()
    other = factory.hcp()
    mine = enqueue(db, EmailMessage(to="dr.erase@clinic.example", subject="s", text="t"), key="erase-1",
                   hcp_id=hcp.id)
    theirs = enqueue(db, EmailMessage(to="dr.keep@clinic.example", subject="s", text="t"), key="erase-2",
                     hcp_id=other.id)
    erase_hcp(db, None, hcp, "data-subject request")
    db.flush()
    db.expire_all()
    row = db.get(MailOutbox, mine.id)
    assert row.recipient == "(erased)" and row.message is None and row.state == "failed"
    assert "hcp-erased" in row.last_error
    raw = db.execute(text("SELECT recipient, message FROM mail_outbox WHERE id = :i"), {"i": mine.id}).one()
    assert raw.message is None and "dr.erase" not in (raw.recipient or "")
    kept = db.get(MailOutbox, theirs.id)
    assert kept.recipient == "dr.keep@clinic.example" and kept.state == "queued"
