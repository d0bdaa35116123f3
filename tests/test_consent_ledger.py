"""The consent ledger and its rules, tested through the services (no HTTP)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, event, func, select, text, update
from sqlalchemy.exc import DatabaseError

from crm.audit.models import AuditRecord
from crm.consent import services, tokens
from crm.consent.ddl import trigger_statements
from crm.consent.models import ConsentEvent, ConsentState
from crm.db import utcnow
from crm.errors import Conflict, Forbidden, Invalid
from crm.extensions import db as _db
from crm.timeline.models import Interaction
from tests.conftest import utc
from tests.consent_support import EVIDENCE, PNG, active_notice, grant, withdraw


def test_ledger_rows_cannot_be_updated_or_deleted(db, factory):
    hcp = factory.hcp()
    e = grant(db, hcp)
    with pytest.raises(DatabaseError, match="append-only"), db.begin_nested():
        db.execute(update(ConsentEvent).where(ConsentEvent.id == e.id).values(source="import"))
    with pytest.raises(DatabaseError, match="append-only"), db.begin_nested():
        db.execute(delete(ConsentEvent).where(ConsentEvent.id == e.id))
    with pytest.raises(DatabaseError, match="append-only"), db.begin_nested():
        db.execute(text("UPDATE consent_events SET occurred_at = recorded_at"))
    assert db.get(ConsentEvent, e.id).source == "paper_form"


def _copy_over(db, source_id: int, *, new_id: int | None = None, source: str = "import") -> None:
    """Write a copy of ledger row ``source_id`` (another source) over an existing row, the way each engine allows:
    SQLite ``INSERT OR REPLACE`` (delete + insert, which fires no DELETE trigger), PostgreSQL
    ``INSERT ... ON CONFLICT DO UPDATE``."""
    columns = [c.name for c in ConsentEvent.__table__.columns]
    select_list = ", ".join(
        ":new_id" if c == "id" and new_id is not None else ":source" if c == "source" else c for c in columns)
    params = {"id": source_id, "source": source, "new_id": new_id}
    names = ", ".join(columns)
    if db.get_bind().dialect.name == "sqlite":
        db.execute(text(f"INSERT OR REPLACE INTO consent_events ({names}) SELECT {select_list} "
                        "FROM consent_events WHERE id = :id"), params)
    else:
        db.execute(text(f"INSERT INTO consent_events ({names}) SELECT {select_list} FROM consent_events "
                        "WHERE id = :id ON CONFLICT (id) DO UPDATE SET source = EXCLUDED.source"), params)


def test_ledger_rows_cannot_be_replaced_by_an_insert(db, factory):
    hcp = factory.hcp()
    e = grant(db, hcp)
    db.flush()
    with pytest.raises(DatabaseError, match="append-only"), db.begin_nested():
        _copy_over(db, e.id)
    db.expire_all()
    assert db.get(ConsentEvent, e.id).source == "paper_form"
    if db.get_bind().dialect.name == "sqlite":
        # REPLACE also deletes a row that conflicts on (source, external_id) under a new id
        imported = grant(db, hcp, "post", "events", "import", external_id="row-1")
        with pytest.raises(DatabaseError, match="append-only"), db.begin_nested():
            db.execute(text("INSERT OR REPLACE INTO consent_events (id, hcp_id, origin_hcp_id, channel, purpose, "
                            "event_type, occurred_at, recorded_at, source, external_id, captured_by_role) "
                            "SELECT :new_id, hcp_id, origin_hcp_id, channel, purpose, 'withdrawn', occurred_at, "
                            "recorded_at, source, external_id, captured_by_role FROM consent_events WHERE id = :id"),
                       {"id": imported.id, "new_id": imported.id + 1000})
        db.expire_all()
        assert db.get(ConsentEvent, imported.id).event_type == "granted"
        assert db.get(ConsentEvent, imported.id + 1000) is None
    # an ordinary append still works
    assert withdraw(db, hcp).event_type == "withdrawn"


def test_trigger_sql_exists_for_both_dialects():
    assert any("BEFORE UPDATE" in s for s in trigger_statements("sqlite"))
    assert any("BEFORE DELETE" in s for s in trigger_statements("sqlite"))
    pg = " ".join(trigger_statements("postgresql"))
    assert "BEFORE UPDATE OR DELETE" in pg and "TRUNCATE" in pg
    with pytest.raises(ValueError):
        trigger_statements("mysql")


def test_grant_records_event_state_timeline_and_audit(db, factory):
    from crm.audit.models import AuditRecord

    hcp = factory.hcp()
    notice = active_notice(db)
    e = grant(db, hcp, "visit", "promotional", "paper_form", occurred_at=utc(2026, 1, 10, 9))
    assert (e.event_type, e.source, e.notice_version) == ("granted", "paper_form", notice.version)
    assert e.notice_text_hash == notice.text_hash and e.evidence_hash
    assert e.valid_until == utc(2028, 1, 10, 9)
    state = db.get(ConsentState, (hcp.id, "visit", "promotional"))
    assert state.state == "granted" and state.last_event_id == e.id
    item = db.query(Interaction).filter(Interaction.channel == "consent").one()
    assert item.kind == "consent.granted" and item.source == "crm" and item.owner_role == "system"
    assert item.details["consent_event_id"] == e.id and item.details["ledger_source"] == "paper_form"
    rec = db.query(AuditRecord).filter_by(action="consent.granted", entity_id=str(e.id)).one()
    assert "signature" not in str(rec.changes) and "PF-2026" not in str(rec.changes)


def test_evidence_is_encrypted_at_rest(db, factory):
    hcp = factory.hcp()
    e = grant(db, hcp, source="web_form")
    raw = db.execute(text("SELECT evidence FROM consent_events WHERE id = :i"), {"i": e.id}).scalar()
    assert "203.0.113.9" not in raw and "Mozilla" not in raw
    assert services.read_evidence(e)["ip_address"] == "203.0.113.9"


@pytest.mark.parametrize("source", ["visit", "paper_form", "call_centre", "web_form", "email_link", "import", "esp"])
def test_grant_without_the_evidence_its_source_requires_is_refused(db, factory, source):
    hcp = factory.hcp()
    notice = active_notice(db)
    with pytest.raises(Invalid) as err:
        services.grant_consent(db, None, hcp, "visit", "promotional", source, notice_version=notice.version,
                               evidence={})
    assert all(k.startswith("evidence.") for k in err.value.errors)
    assert db.query(ConsentEvent).count() == 0


def test_bad_evidence_values_are_refused(db, factory):
    hcp = factory.hcp()
    notice = active_notice(db)
    for evidence, field in (({"signature": "data:image/png;base64,AAAA"}, "evidence.signature"),
                            ({"signature": "javascript:alert(1)"}, "evidence.signature"),
                            ({"signature": PNG, "colour": "red"}, "evidence.colour")):
        with pytest.raises(Invalid) as err:
            services.grant_consent(db, None, hcp, "visit", "promotional", "visit", notice_version=notice.version,
                                   evidence=evidence)
        assert field in err.value.errors
    with pytest.raises(Invalid) as err:
        services.grant_consent(db, None, hcp, "email", "events", "web_form", notice_version=notice.version,
                               evidence={"ip_address": "999.1.1.1", "user_agent": "x"})
    assert "evidence.ip_address" in err.value.errors


def test_grant_needs_an_active_notice_and_a_known_pair(db, factory):
    hcp = factory.hcp()
    draft = services.create_notice(db, None, language="en", title="Draft", text="draft text")
    for version in (None, "nope-v9", draft.version):
        with pytest.raises(Invalid) as err:
            services.grant_consent(db, None, hcp, "visit", "events", "paper_form", notice_version=version,
                                   evidence=EVIDENCE["paper_form"])
        assert "notice_version" in err.value.errors
    notice = services.activate_notice(db, None, draft)
    with pytest.raises(Invalid):
        services.grant_consent(db, None, hcp, "all", "events", "paper_form", notice_version=notice.version,
                               evidence=EVIDENCE["paper_form"])
    with pytest.raises(Invalid):
        services.grant_consent(db, None, hcp, "fax", "events", "paper_form", notice_version=notice.version,
                               evidence=EVIDENCE["paper_form"])
    with pytest.raises(Invalid):
        grant(db, hcp, occurred_at=datetime(2026, 1, 1))  # naive
    with pytest.raises(Invalid):
        grant(db, hcp, occurred_at=utcnow() + timedelta(days=1))


def test_notice_edited_while_active_is_refused_and_versions_continue(db):
    notice = services.create_notice(db, None, language="en", title="T", text="first")
    services.update_notice(db, None, notice, text="first, corrected")
    assert notice.text_hash == services.text_hash("first, corrected")
    services.activate_notice(db, None, notice)
    with pytest.raises(Conflict):
        services.update_notice(db, None, notice, text="sneaky change")
    assert notice.text == "first, corrected"
    with pytest.raises(Conflict):
        services.activate_notice(db, None, notice)
    second = services.create_notice(db, None, language="en", title="T", text="second")
    assert (notice.version, second.version) == ("en-v1", "en-v2")
    services.activate_notice(db, None, second)
    assert notice.status == "retired" and second.status == "active"
    assert services.active_notice(db, "en").id == second.id
    de = services.create_notice(db, None, language="de", country="de", title="T", text="Text")
    assert de.version == "de-DE-v1"


def test_retired_notice_only_for_paper_forms_and_imports(db, factory):
    hcp = factory.hcp()
    old = active_notice(db, text="old")
    active_notice(db, text="new")
    with pytest.raises(Invalid):
        services.grant_consent(db, None, hcp, "visit", "events", "visit", notice_version=old.version,
                               evidence=EVIDENCE["visit"])
    e, _ = services.grant_consent(db, None, hcp, "visit", "events", "paper_form", notice_version=old.version,
                                  evidence=EVIDENCE["paper_form"])
    assert e.notice_version == old.version


def test_state_at_any_past_instant_comes_from_the_ledger(db, factory):
    hcp = factory.hcp()
    grant(db, hcp, "phone", "events", occurred_at=utc(2025, 3, 1))
    withdraw(db, hcp, "phone", "events", occurred_at=utc(2025, 6, 1))
    grant(db, hcp, "phone", "events", occurred_at=utc(2025, 9, 1))

    def at(when):
        return {(s.channel, s.purpose): s.state for s in services.state_at(db, hcp.id, when)}[("phone", "events")]

    assert at(utc(2025, 2, 1)) == "none"
    assert at(utc(2025, 4, 1)) == "granted"
    assert at(utc(2025, 7, 1)) == "withdrawn"
    assert at(utc(2025, 10, 1)) == "granted"
    assert at(utc(2027, 9, 1)) == "expired"


def test_withdrawal_one_second_before_a_send_makes_the_send_skip(db, factory):
    a, b = factory.hcp(), factory.hcp()
    send_at = utc(2026, 2, 1, 12)
    for h in (a, b):
        grant(db, h, "email", "events", "web_form", occurred_at=utc(2026, 1, 1))
    withdraw(db, a, "email", "events", "email_link", occurred_at=send_at - timedelta(seconds=1))
    decisions = services.can_contact_many(db, [a.id, b.id], "email", "events", send_at)
    assert not decisions[a.id].allowed and decisions[a.id].rule == "consent-withdrawn"
    assert decisions[b.id].allowed and decisions[b.id].rule == "consent-granted"
    # a second before the withdrawal, the same send would have gone out
    assert services.can_contact(db, a.id, "email", "events", send_at - timedelta(seconds=2)).allowed


def test_channel_opt_in_and_a_later_global_withdrawal(db, factory):
    hcp = factory.hcp()
    g = grant(db, hcp, "sms", "market_research", occurred_at=utc(2026, 1, 1))
    w = withdraw(db, hcp, "all", "all", occurred_at=utc(2026, 1, 5))
    d = services.can_contact(db, hcp.id, "sms", "market_research", utc(2026, 1, 6))
    assert not d.allowed and d.rule == "consent-withdrawn" and d.evidence_event_ids == (w.id,)
    assert services.can_contact(db, hcp.id, "sms", "market_research", utc(2026, 1, 4)).evidence_event_ids == (g.id,)
    # the derived table agrees, for every pair the global withdrawal covers
    states = {(s.channel, s.purpose): s.state for s in services.current_states(db, hcp.id)}
    assert set(states.values()) == {"withdrawn"}
    # a later, specific re-consent holds again
    grant(db, hcp, "sms", "market_research", occurred_at=utc(2026, 2, 1))
    assert services.can_contact(db, hcp.id, "sms", "market_research", utc(2026, 2, 2)).allowed


def test_expired_consent_is_denied_even_before_the_job_ran(db, factory):
    hcp = factory.hcp()
    g = grant(db, hcp, "post", "events", occurred_at=utcnow() - timedelta(days=800))
    d = services.can_contact(db, hcp.id, "post", "events")
    assert not d.allowed and d.rule == "consent-expired" and g.id in d.evidence_event_ids
    assert {(s.channel, s.purpose): s.state for s in services.current_states(db, hcp.id)}[("post", "events")] == \
        "expired"
    # the job writes the event once, at the instant the consent lapsed
    assert services.expire_due(db) == 1
    assert services.expire_due(db) == 0
    expired = db.query(ConsentEvent).filter_by(hcp_id=hcp.id, event_type="expired").one()
    assert expired.occurred_at == g.valid_until and expired.refers_to_event_id == g.id
    assert db.get(ConsentState, (hcp.id, "post", "events")).state == "expired"
    assert not services.can_contact(db, hcp.id, "post", "events").allowed


def test_validity_is_configurable_per_purpose(app, db, factory):
    hcp = factory.hcp()
    old = dict(app.config["CRM_CONSENT_VALIDITY_MONTHS"])
    app.config["CRM_CONSENT_VALIDITY_MONTHS"]["market_research"] = 6
    try:
        e = grant(db, hcp, "phone", "market_research", occurred_at=utc(2026, 8, 31))
    finally:
        app.config["CRM_CONSENT_VALIDITY_MONTHS"] = old
    assert e.valid_until == utc(2027, 2, 28)


def test_double_opt_in_request_pending_then_confirmed(db, factory):
    hcp = factory.hcp()
    req = grant(db, hcp, "email", "promotional", "paper_form")
    assert req.event_type == "requested"
    assert services.can_contact(db, hcp.id, "email", "promotional").rule == "double-opt-in-pending"
    token = db.query(tokens.ConsentToken).filter_by(hcp_id=hcp.id, purpose="confirm").one()
    assert token.event_id == req.id
    confirmed = services.confirm(db, token, ip_address="198.51.100.7", user_agent="Mail/1.0")
    assert confirmed.refers_to_event_id == req.id and confirmed.source == "email_link"
    assert services.read_evidence(confirmed) == {"ip_address": "198.51.100.7", "user_agent": "Mail/1.0"}
    d = services.can_contact(db, hcp.id, "email", "promotional")
    assert d.allowed and d.evidence_event_ids == (req.id, confirmed.id)
    with pytest.raises(services.LinkNoLongerValid):
        services.confirm(db, token, ip_address="198.51.100.7", user_agent="Mail/1.0")


def test_double_opt_in_can_be_switched_off(app, db, factory):
    hcp = factory.hcp()
    app.config["CRM_DOUBLE_OPT_IN"] = False
    try:
        e = grant(db, hcp, "email", "promotional", "paper_form")
    finally:
        app.config["CRM_DOUBLE_OPT_IN"] = True
    assert e.event_type == "granted"
    assert services.can_contact(db, hcp.id, "email", "promotional").allowed


def test_double_opt_in_needs_an_email_address(db, factory):
    hcp = factory.hcp(email=None)
    with pytest.raises(Invalid):
        grant(db, hcp, "email", "promotional", "paper_form")


def test_confirmation_after_a_withdrawal_does_not_grant(db, factory):
    hcp = factory.hcp()
    grant(db, hcp, "email", "promotional", "paper_form")
    token = db.query(tokens.ConsentToken).filter_by(hcp_id=hcp.id, purpose="confirm").one()
    withdraw(db, hcp, "email", "all", "call_centre")
    with pytest.raises(services.LinkNoLongerValid):
        services.confirm(db, token, ip_address="198.51.100.7", user_agent="Mail/1.0")
    assert not services.can_contact(db, hcp.id, "email", "promotional").allowed


def test_conflicting_records_after_a_merge_least_permissive_wins(db, factory):
    survivor, loser = factory.hcp(), factory.hcp()
    grant(db, survivor, "phone", "events", occurred_at=utc(2026, 3, 1))
    w = withdraw(db, loser, "phone", "events", occurred_at=utc(2026, 1, 1))
    grant(db, loser, "visit", "events", occurred_at=utc(2026, 1, 2))
    copied = services.merge_consents(db, None, survivor.id, loser.id)
    assert copied == 2 and services.merge_consents(db, None, survivor.id, loser.id) == 0
    d = services.can_contact(db, survivor.id, "phone", "events", utc(2026, 4, 1))
    assert not d.allowed and d.rule == "consent-withdrawn"
    copy = db.query(ConsentEvent).filter_by(hcp_id=survivor.id, merged_from_event_id=w.id).one()
    assert copy.occurred_at == w.occurred_at and copy.origin_hcp_id == loser.id and copy.source == w.source
    assert services.can_contact(db, survivor.id, "visit", "events", utc(2026, 4, 1)).allowed
    assert db.get(ConsentState, (survivor.id, "phone", "events")).state == "withdrawn"
    # what the HCP says after the merge applies to both records: a new grant holds
    grant(db, survivor, "phone", "events", occurred_at=utc(2026, 5, 1))
    assert services.can_contact(db, survivor.id, "phone", "events", utc(2026, 5, 2)).allowed


def test_after_a_merge_the_grant_that_lapses_first_decides_now_as_in_the_ledger(db, factory):
    from datetime import timedelta as td

    survivor, loser = factory.hcp(), factory.hcp()
    now = utcnow()
    grant(db, survivor, "phone", "events", occurred_at=now - td(days=800))  # lapsed; the expiry job has not run
    grant(db, loser, "phone", "events", occurred_at=now - td(days=1))  # holds for two more years
    services.merge_consents(db, None, survivor.id, loser.id)
    derived = services.can_contact(db, survivor.id, "phone", "events")  # "now": the derived state table
    folded = services.can_contact(db, survivor.id, "phone", "events", now - td(seconds=5))  # the ledger
    assert not derived.allowed and derived.rule == "consent-expired"
    assert (folded.allowed, folded.rule) == (derived.allowed, derived.rule)


def test_merge_through_the_hcp_merge_registry(db, factory):
    from crm.hcps.merge import merge_hcps

    survivor, loser = factory.hcp(), factory.hcp()
    grant(db, loser, "email", "promotional", "paper_form")
    token = db.query(tokens.ConsentToken).filter_by(hcp_id=loser.id, purpose="confirm").one()
    withdraw(db, loser, "phone", "all", "call_centre")
    audits = db.scalar(select(func.count()).select_from(AuditRecord))
    result = merge_hcps(db, None, survivor, loser, "same person")
    assert result.moved["consent_events"] == 2
    # copying the ledger writes no audit records of its own: the merge is one record, which counts them
    recs = db.scalars(select(AuditRecord).order_by(AuditRecord.id).offset(audits)).all()
    assert [(r.action, r.changes["moved"]["consent_events"]) for r in recs] == [("hcp.merge", 2)]
    assert db.query(ConsentEvent).filter_by(hcp_id=loser.id).count() == 2  # the originals stay put
    assert services.can_contact(db, survivor.id, "email", "promotional").state == "pending"
    # the confirmation mailed to the duplicate still works, on the survivor
    token = db.get(tokens.ConsentToken, token.id)
    services.confirm(db, token, ip_address="198.51.100.7", user_agent="Mail/1.0")
    assert services.can_contact(db, survivor.id, "email", "promotional").allowed
    assert services.can_contact(db, loser.id, "email", "promotional").rule == "hcp-merged"


def test_merged_and_erased_hcps_are_never_contacted(db, factory):
    from crm.hcps.erasure import erase_hcp

    a, b = factory.hcp(), factory.hcp()
    grant(db, a, "phone", "events")
    grant(db, b, "phone", "events")
    erase_hcp(db, None, a, "Art. 17 request")
    b.merged_into_id, b.status = a.id, "merged"
    db.flush()
    decisions = services.can_contact_many(db, [a.id, b.id, 999_999], "phone", "events")
    assert [decisions[i].rule for i in (a.id, b.id, 999_999)] == ["hcp-erased", "hcp-merged", "hcp-unknown"]
    assert not any(d.allowed for d in decisions.values())
    with pytest.raises(Conflict):
        grant(db, a, "phone", "events")


def test_can_contact_many_runs_a_constant_number_of_queries(db, factory):
    few = [factory.hcp() for _ in range(2)]
    many = few + [factory.hcp() for _ in range(40)]
    for h in many[::3]:
        grant(db, h, "email", "events", "web_form")
    counted: list[str] = []

    def count(*args, **kw):
        counted.append(args[2])

    engine = db.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        services.can_contact_many(db, [h.id for h in few], "email", "events")
        small = len(counted)
        counted.clear()
        result = services.can_contact_many(db, [h.id for h in many], "email", "events")
        large = len(counted)
        counted.clear()
        services.can_contact_many(db, [h.id for h in few], "email", "events", utcnow() - timedelta(days=1))
        small_past = len(counted)
        counted.clear()
        services.can_contact_many(db, [h.id for h in many], "email", "events", utcnow() - timedelta(days=1))
        large_past = len(counted)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert small == large == 1  # now: the HCPs joined to their derived state
    assert small_past == large_past == 2  # a past instant: the HCPs, then their ledger
    assert sum(d.allowed for d in result.values()) == len(many[::3])


def test_capture_roles_territories_and_sources(db, factory):
    t, other = factory.territory(), factory.territory()
    hcp, far = factory.hcp(t), factory.hcp(other)
    notice = active_notice(db)
    rep = factory.user("field_rep", [t])
    e, _ = services.grant_consent(db, rep, hcp, "visit", "promotional", "visit", notice_version=notice.version,
                                  evidence=EVIDENCE["visit"])
    assert e.captured_by_id == rep.id and e.captured_by_role == "field_rep"
    with pytest.raises(Forbidden) as err:
        services.grant_consent(db, rep, far, "visit", "promotional", "visit", notice_version=notice.version,
                               evidence=EVIDENCE["visit"])
    assert err.value.rule == "consent.capture:territory"
    with pytest.raises(Forbidden) as err:
        services.grant_consent(db, rep, hcp, "visit", "promotional", "paper_form", notice_version=notice.version,
                               evidence=EVIDENCE["paper_form"])
    assert err.value.rule == "consent.capture:source"
    agent = factory.user("call_centre")
    services.withdraw_consent(db, agent, far, "phone", "all", "call_centre", evidence=EVIDENCE["call_centre"])
    for role in ("compliance", "marketer", "medical"):
        with pytest.raises(Forbidden):
            services.withdraw_consent(db, factory.user(role), hcp, "phone", "all", "call_centre")


def test_withdrawal_needs_no_evidence_and_counts_even_without_a_grant(db, factory):
    hcp = factory.hcp()
    e = withdraw(db, hcp, "email", "market_research", "call_centre")
    assert e.event_type == "withdrawn" and e.evidence is None
    assert services.can_contact(db, hcp.id, "email", "market_research").state == "withdrawn"


def test_replayed_external_id_returns_the_first_event(db, factory):
    hcp = factory.hcp()
    notice = active_notice(db)
    first, created = services.grant_consent(db, None, hcp, "post", "events", "import", notice_version=notice.version,
                                            evidence=EVIDENCE["import"], external_id="crm-legacy-1")
    again, created_again = services.grant_consent(db, None, hcp, "post", "events", "import",
                                                  notice_version=notice.version, evidence=EVIDENCE["import"],
                                                  external_id="crm-legacy-1")
    assert created and not created_again and again.id == first.id
    assert db.query(ConsentEvent).filter_by(hcp_id=hcp.id).count() == 1


def test_ties_in_occurred_at_resolve_least_permissive_not_by_entry_order(db, factory):
    hcp = factory.hcp()
    at = utc(2026, 1, 1, 10)
    grant(db, hcp, "phone", "events", occurred_at=at)
    withdraw(db, hcp, "phone", "events", occurred_at=at)
    assert services.can_contact(db, hcp.id, "phone", "events", at).state == "withdrawn"
    grant(db, hcp, "phone", "events", occurred_at=at)  # entered later, same instant: the "no" still wins
    assert services.can_contact(db, hcp.id, "phone", "events", at).state == "withdrawn"
    grant(db, hcp, "phone", "events", occurred_at=at + timedelta(seconds=1))  # a later instant does win
    assert services.can_contact(db, hcp.id, "phone", "events", at + timedelta(seconds=1)).state == "granted"


def test_add_months_clamps_to_month_end():
    assert services.add_months(datetime(2024, 1, 31, tzinfo=UTC), 1) == datetime(2024, 2, 29, tzinfo=UTC)
    assert services.add_months(datetime(2026, 11, 15, tzinfo=UTC), 24) == datetime(2028, 11, 15, tzinfo=UTC)


@pytest.mark.committing
def test_concurrent_grant_and_withdraw_both_recorded_state_follows_the_later(committing_app):
    from crm.hcps.models import HCP

    with committing_app.app_context():
        notice = services.create_notice(_db.session, None, language="en", title="T", text="notice")
        services.activate_notice(_db.session, None, notice)
        hcp = HCP(first_name="Con", last_name="Current", profession="gp", email="con@clinic.example")
        _db.session.add(hcp)
        _db.session.commit()
        hcp_id, version = hcp.id, notice.version
        _db.session.remove()

    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    earlier, later = utc(2026, 1, 1, 9), utc(2026, 1, 1, 10)

    def run(action: str, when: datetime) -> None:
        try:
            with committing_app.app_context():
                session = _db.session
                barrier.wait(timeout=30)  # before any query: on SQLite the first query takes the write lock
                h = session.get(HCP, hcp_id)
                if action == "grant":
                    services.grant_consent(session, None, h, "phone", "events", "paper_form",
                                           notice_version=version, evidence=EVIDENCE["paper_form"], occurred_at=when)
                else:
                    services.withdraw_consent(session, None, h, "phone", "events", "call_centre", occurred_at=when)
                session.commit()
                _db.session.remove()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=("withdraw", later)), threading.Thread(target=run,
                                                                                       args=("grant", earlier))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with committing_app.app_context():
        events = _db.session.query(ConsentEvent).filter_by(hcp_id=hcp_id).all()
        assert sorted(e.event_type for e in events) == ["granted", "withdrawn"]
        assert _db.session.get(ConsentState, (hcp_id, "phone", "events")).state == "withdrawn"
        assert not services.can_contact(_db.session, hcp_id, "phone", "events", later).allowed
        assert services.can_contact(_db.session, hcp_id, "phone", "events", earlier).allowed
        _db.session.remove()


# -- same instant, and "now" versus an instant a moment ago ----------------------------------------------

def test_same_instant_conflict_least_permissive_wins_whatever_the_entry_order(db, factory):
    at = utc(2026, 3, 1, 9)
    first, second = factory.hcp(), factory.hcp()
    # entered withdrawal first, grant second (the grant has the higher id)
    w1 = withdraw(db, first, "phone", "events", occurred_at=at)
    grant(db, first, "phone", "events", occurred_at=at)
    # entered grant first, withdrawal second
    grant(db, second, "phone", "events", occurred_at=at)
    w2 = withdraw(db, second, "phone", "events", occurred_at=at)
    for hcp, w in ((first, w1), (second, w2)):
        assert db.get(ConsentState, (hcp.id, "phone", "events")).state == "withdrawn"
        assert {(s.channel, s.purpose): s.state for s in services.state_at(db, hcp.id, at)}[("phone", "events")] \
            == "withdrawn"
        for when in (at, at + timedelta(days=1), None):
            d = services.can_contact(db, hcp.id, "phone", "events", when)
            assert not d.allowed and d.rule == "consent-withdrawn" and d.evidence_event_ids == (w.id,), when
    # a withdrawal of everything at the same instant as a specific grant wins as well
    third = factory.hcp()
    w3 = withdraw(db, third, "all", "all", occurred_at=at)
    grant(db, third, "phone", "events", occurred_at=at)
    assert services.can_contact(db, third.id, "phone", "events", at).evidence_event_ids == (w3.id,)
    assert not services.can_contact(db, third.id, "phone", "events").allowed


def test_a_confirmation_link_is_overtaken_by_a_withdrawal_at_the_same_instant(db, factory):
    hcp = factory.hcp()
    at = utcnow() - timedelta(minutes=1)
    withdraw(db, hcp, "email", "promotional", "call_centre", occurred_at=at)
    request = grant(db, hcp, "email", "promotional", "paper_form", occurred_at=at)
    assert request.event_type == "requested"
    assert not services.request_still_open(db, request)
    token = db.query(tokens.ConsentToken).filter_by(hcp_id=hcp.id, purpose="confirm").one()
    with pytest.raises(services.LinkNoLongerValid):
        services.confirm(db, token, ip_address="198.51.100.7", user_agent="Mail/1.0")


def _frozen_now(monkeypatch, now):
    monkeypatch.setattr(services, "utcnow", lambda: now)


def test_the_evidence_cited_does_not_depend_on_how_close_to_now_the_instant_is(app, db, factory, monkeypatch):
    """``can_contact`` reads "now" from the derived table and a past instant from the ledger: both must cite
    the same events (an expiry cites the grant it ended, a confirmation its request)."""
    hcp = factory.hcp()
    app.config["CRM_DOUBLE_OPT_IN"] = False
    try:
        g = grant(db, hcp, "email", "events", occurred_at=utcnow() - timedelta(days=800))
    finally:
        app.config["CRM_DOUBLE_OPT_IN"] = True
    assert services.expire_due(db) == 1
    expired = db.query(ConsentEvent).filter_by(hcp_id=hcp.id, event_type="expired").one()
    req = grant(db, hcp, "email", "promotional")
    token = db.query(tokens.ConsentToken).filter_by(hcp_id=hcp.id, purpose="confirm").one()
    confirmed = services.confirm(db, token, ip_address="198.51.100.7", user_agent="Mail/1.0")
    now = confirmed.occurred_at + timedelta(minutes=5)
    _frozen_now(monkeypatch, now)
    for purpose, expected in (("events", (g.id, expired.id)), ("promotional", (req.id, confirmed.id))):
        answers = {offset: services.can_contact(db, hcp.id, "email", purpose, now - timedelta(seconds=offset))
                   for offset in (0, 0.5, 1.5, 60)}
        assert {o: d.evidence_event_ids for o, d in answers.items()} == dict.fromkeys(answers, expected), purpose
        assert len({(d.allowed, d.rule, d.state, d.valid_until) for d in answers.values()}) == 1, purpose


def test_an_instant_just_before_a_change_is_answered_as_it_was(db, factory, monkeypatch):
    """An instant a fraction of a second ago is answered from the ledger as it stood then, not from the
    derived table, which already holds a later change."""
    hcp = factory.hcp()
    g = grant(db, hcp, "phone", "events", occurred_at=utcnow() - timedelta(days=1))
    w = withdraw(db, hcp, "phone", "events", occurred_at=utcnow())
    _frozen_now(monkeypatch, w.occurred_at + timedelta(milliseconds=300))
    before = services.can_contact(db, hcp.id, "phone", "events", w.occurred_at - timedelta(milliseconds=200))
    assert before.allowed and before.evidence_event_ids == (g.id,)
    after = services.can_contact(db, hcp.id, "phone", "events", w.occurred_at)
    assert not after.allowed and after.evidence_event_ids == (w.id,)
    many = services.can_contact_many(db, [hcp.id], "phone", "events", w.occurred_at - timedelta(milliseconds=1))
    assert many[hcp.id] == services.can_contact(db, hcp.id, "phone", "events",
                                                w.occurred_at - timedelta(milliseconds=1))
    assert many[hcp.id].allowed


def test_merge_copies_keep_the_evidence_digest_and_its_scheme(db, factory):
    survivor, loser = factory.hcp(), factory.hcp()
    original = grant(db, loser, "post", "events", "paper_form")
    services.merge_consents(db, None, survivor.id, loser.id)
    copy = db.query(ConsentEvent).filter_by(hcp_id=survivor.id, merged_from_event_id=original.id).one()
    assert (copy.evidence_hash, copy.evidence_hash_scheme) == (original.evidence_hash, "hmac-sha256")
    assert services.verify_evidence(copy) is True
