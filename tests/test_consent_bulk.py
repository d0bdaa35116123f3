"""The set-based consent decision (``can_contact_many``, campaign ``evaluate``) against a per-HCP reference
built from the plain reads (``current_states``, ``state_at``, the HCP row), on a mix of HCPs that covers
every rule."""

from __future__ import annotations

from datetime import timedelta

from crm.campaigns import services as campaigns
from crm.consent import services
from crm.consent.models import ConsentEvent
from crm.db import utcnow
from crm.hcps.models import HCP
from tests.campaigns_support import email_consent
from tests.consent_support import grant, withdraw

UNKNOWN = 999_999


def mixed_audience(app, db, factory) -> dict[str, int]:
    """One HCP per rule of an email x promotional send (double opt-in applies), by name."""
    from crm.hcps.erasure import erase_hcp
    from crm.hcps.merge import merge_hcps

    now = utcnow()
    h = {name: factory.hcp() for name in (
        "granted", "confirmed_then_withdrawn", "withdrawn_all", "pending", "expired_unjobbed", "expired_jobbed",
        "other_pair_only", "nothing", "no_address", "bounced", "already_sent", "survivor", "loser", "erased",
        "renewal_pending", "granted_recently", "merged_pointer_only")}
    for name in ("granted", "confirmed_then_withdrawn", "withdrawn_all", "no_address", "bounced", "already_sent",
                 "survivor", "renewal_pending"):
        email_consent(db, h[name])
    withdraw(db, h["confirmed_then_withdrawn"], "email", "promotional", "call_centre")
    withdraw(db, h["withdrawn_all"], "all", "all", "call_centre")
    grant(db, h["pending"], "email", "promotional")  # requested, never confirmed
    grant(db, h["renewal_pending"], "email", "promotional")  # a renewal request leaves the consent standing
    app.config["CRM_DOUBLE_OPT_IN"] = False
    try:  # grants from long ago, lapsed: one before the expiry job ran, one after
        grant(db, h["expired_unjobbed"], "email", "promotional", occurred_at=now - timedelta(days=800))
        grant(db, h["expired_jobbed"], "email", "promotional", occurred_at=now - timedelta(days=900))
        grant(db, h["granted_recently"], "email", "promotional", occurred_at=now - timedelta(hours=1))
    finally:
        app.config["CRM_DOUBLE_OPT_IN"] = True
    services.expire_due(db)
    grant(db, h["expired_unjobbed"], "phone", "events")  # not the pair asked about
    db.flush()
    # "expired_unjobbed" must still read as expired although the job has now run: lapse it again, later
    app.config["CRM_DOUBLE_OPT_IN"] = False
    try:
        grant(db, h["expired_unjobbed"], "email", "promotional", occurred_at=now - timedelta(days=745))
    finally:
        app.config["CRM_DOUBLE_OPT_IN"] = True
    grant(db, h["other_pair_only"], "phone", "promotional")
    h["no_address"].email, h["no_address"].email_bidx = None, None
    h["bounced"].email_status = "invalid"
    withdraw(db, h["loser"], "email", "promotional", "call_centre", occurred_at=now - timedelta(days=30))
    merge_hcps(db, None, h["survivor"], h["loser"], "same person")  # the loser's "no" wins on the survivor
    erase_hcp(db, None, h["erased"], "Art. 17 request")
    email_consent(db, h["merged_pointer_only"])
    h["merged_pointer_only"].merged_into_id = h["survivor"].id  # status still active: the pointer alone counts
    db.flush()
    return {name: hcp.id for name, hcp in h.items()}


def expected_now(db, hcp_id: int, channel: str, purpose: str, at) -> services.ContactDecision:
    """The decision for "now", one HCP at a time, from the derived table as ``current_states`` reads it."""
    hcp = db.get(HCP, hcp_id)
    if hcp is None:
        return services.ContactDecision(False, "hcp-unknown", (), "none", "No such HCP", at)
    if hcp.status == "erased":
        return services.ContactDecision(False, "hcp-erased", (), "none", "The HCP's data was erased", at)
    if hcp.status == "merged" or hcp.merged_into_id is not None:
        return services.ContactDecision(False, "hcp-merged", (), "none",
                                        f"Merged into HCP {hcp.merged_into_id}: contact that record", at)
    ps = {(s.channel, s.purpose): s for s in services.current_states(db, hcp_id, at)}[(channel, purpose)]
    ids = ps.event_ids
    if ids:  # cited as the ledger's fold cites them: a confirmation with its request, an expiry with its grant
        last = db.get(ConsentEvent, ids[-1])
        if last.event_type == "expired" and last.refers_to_event_id:
            ids = (last.refers_to_event_id, *ids)
            last = db.get(ConsentEvent, last.refers_to_event_id)
        if last.event_type == "confirmed" and last.refers_to_event_id:
            ids = (last.refers_to_event_id, *ids)
    rule, reason = services.RULES[ps.state]
    return services.ContactDecision(ps.state == "granted", rule, ids, ps.state, reason, at, ps.valid_until)


def expected_at(db, hcp_id: int, channel: str, purpose: str, at) -> services.ContactDecision:
    """The decision at a past instant, one HCP at a time, folded from its ledger (``state_at``)."""
    now = expected_now(db, hcp_id, channel, purpose, at)
    if now.rule.startswith("hcp-"):
        return now
    ps = {(s.channel, s.purpose): s for s in services.state_at(db, hcp_id, at)}[(channel, purpose)]
    rule, reason = services.RULES[ps.state]
    return services.ContactDecision(ps.state == "granted", rule, ps.event_ids, ps.state, reason, at, ps.valid_until)


def test_can_contact_many_decides_as_the_per_hcp_reads_do(app, db, factory):
    h = mixed_audience(app, db, factory)
    ids = [*h.values(), UNKNOWN]
    now = utcnow()
    decisions = services.can_contact_many(db, ids, "email", "promotional", now)
    assert list(decisions) == ids
    assert decisions == {i: expected_now(db, i, "email", "promotional", now) for i in ids}
    rules = {name: decisions[i].rule for name, i in h.items()}
    assert rules == {
        "granted": "consent-granted", "confirmed_then_withdrawn": "consent-withdrawn",
        "withdrawn_all": "consent-withdrawn", "pending": "double-opt-in-pending",
        "expired_unjobbed": "consent-expired", "expired_jobbed": "consent-expired",
        "other_pair_only": "no-consent", "nothing": "no-consent", "no_address": "consent-granted",
        "bounced": "consent-granted", "already_sent": "consent-granted", "survivor": "consent-withdrawn",
        "loser": "hcp-merged", "erased": "hcp-erased", "renewal_pending": "consent-granted",
        "granted_recently": "consent-granted", "merged_pointer_only": "hcp-merged"}
    assert decisions[UNKNOWN].rule == "hcp-unknown"
    # "now" from the derived table agrees with the ledger folded at the same instant, evidence included
    assert {i: (d.rule, d.evidence_event_ids) for i, d in decisions.items()} == \
        {i: (e.rule, e.evidence_event_ids) for i in ids for e in [expected_at(db, i, "email", "promotional", now)]}
    # the same answers one HCP at a time
    assert all(services.can_contact(db, i, "email", "promotional", now) == decisions[i] for i in h.values())


def test_can_contact_many_at_past_instants_folds_the_ledger(app, db, factory):
    h = mixed_audience(app, db, factory)
    ids = [UNKNOWN, *reversed(h.values())]
    for at in (utcnow() - timedelta(minutes=30), utcnow() - timedelta(days=2), utcnow() - timedelta(days=750),
               utcnow() - timedelta(days=850)):
        decisions = services.can_contact_many(db, ids, "email", "promotional", at)
        assert list(decisions) == ids
        assert decisions == {i: expected_at(db, i, "email", "promotional", at) for i in ids}


def test_evaluate_matches_the_per_hcp_checks(app, db, factory):
    h = mixed_audience(app, db, factory)
    ids = [*h.values(), UNKNOWN]
    already = frozenset({h["already_sent"]})
    sent = {}
    for at in (utcnow(), utcnow() - timedelta(days=20)):
        result = campaigns.evaluate(db, ids, "promotional", at, already)
        expected_send, expected_skipped = [], []
        for i in ids:
            d = services.can_contact(db, i, "email", "promotional", at) if i != UNKNOWN else None
            hcp = db.get(HCP, i)
            if i in already:
                expected_skipped.append((i, "already-sent"))
            elif d is None or not d.allowed:
                expected_skipped.append((i, d.rule if d else "hcp-unknown"))
            elif not hcp.email:  # the address itself, decrypted
                expected_skipped.append((i, "no-email-address"))
            elif hcp.email_status == "invalid":
                expected_skipped.append((i, "email-invalid"))
            else:
                expected_send.append(i)
        assert result.send == expected_send
        assert result.skipped == expected_skipped
        assert result.decisions == services.can_contact_many(db, ids, "email", "promotional", at)
        sent[at > utcnow() - timedelta(days=1)] = {name for name, i in h.items() if i in result.send}
    assert sent[True] == {"granted", "renewal_pending", "granted_recently"}
    # twenty days ago the grant of "expired_unjobbed" still held, and the others were not given yet
    assert sent[False] == {"expired_unjobbed"}


def test_an_audience_beyond_any_bound_parameter_limit_is_one_query(db, factory):
    hcps = [factory.hcp() for _ in range(3)]
    email_consent(db, hcps[1], "events")
    ids = [hcps[2].id, *range(10**7, 10**7 + 40_000), hcps[1].id, hcps[0].id]  # SQLite allows 32,766 parameters
    decisions = services.can_contact_many(db, ids, "email", "events")
    assert list(decisions) == ids
    assert [decisions[h.id].rule for h in hcps] == ["no-consent", "consent-granted", "no-consent"]
    assert sum(d.rule == "hcp-unknown" for d in decisions.values()) == 40_000
    result = campaigns.evaluate(db, ids, "events", utcnow())
    assert result.send == [hcps[1].id] and len(result.skipped) == 40_002
