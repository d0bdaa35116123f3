"""The email platform's event webhook: signatures, bad input, exactly-once, matching, consent and bounces."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text

from crm.campaigns.models import EmailEvent
from crm.consent import services as consent
from crm.consent.models import ConsentEvent
from crm.extensions import db as _db
from crm.integrations.sendgrid.signature import TIMESTAMP_HEADER, public_key_b64
from crm.timeline.models import Interaction, InteractionParticipant
from tests.campaigns_support import (
    body,
    email_consent,
    event,
    make_campaign,
    make_template,
    new_key,
    send_now,
    signed,
)

URL = "/api/v1/integrations/email/events"


@pytest.fixture
def key(app, monkeypatch):
    """A configured webhook key pair (the platform's private half signs)."""
    private = new_key()
    monkeypatch.setitem(app.config, "CRM_ESP_WEBHOOK_PUBLIC_KEY", public_key_b64(private))
    return private


def stored(db) -> int:
    return db.scalar(select(func.count()).select_from(EmailEvent)) or 0


def items_of(db, hcp_id: int, kind_prefix: str = "email.") -> list[Interaction]:
    return list(db.scalars(select(Interaction).join(InteractionParticipant).where(
        InteractionParticipant.hcp_id == hcp_id, Interaction.kind.startswith(kind_prefix)).order_by(Interaction.id)))


# -- signatures ------------------------------------------------------------------------------------

def test_signed_batch_is_accepted(client, db, factory, key):
    hcp = factory.hcp()
    raw = body(event("sg-ok-1", "delivered", email=hcp.email))
    resp = client.post(URL, data=raw, headers=signed(key, raw))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["recorded"] == 1
    assert [i.kind for i in items_of(db, hcp.id)] == ["email.delivered"]


def test_unsigned_request_is_refused_and_nothing_stored(client, db, factory, key):
    hcp = factory.hcp()
    raw = body(event("sg-unsigned", "unsubscribe", email=hcp.email))
    resp = client.post(URL, data=raw, content_type="application/json")
    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
    assert stored(db) == 0
    assert items_of(db, hcp.id, "") == []


def test_request_signed_with_another_key_is_refused(client, db, factory, key):
    hcp = factory.hcp()
    raw = body(event("sg-other-key", "unsubscribe", email=hcp.email))
    resp = client.post(URL, data=raw, headers=signed(new_key(), raw))
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "esp-webhook:signature"
    assert stored(db) == 0


def test_one_byte_changed_after_signing_is_refused(client, db, factory, key):
    hcp = factory.hcp()
    raw = body(event("sg-tamper", "delivered", email=hcp.email))
    headers = signed(key, raw)
    tampered = raw.replace(b"delivered", b"Delivered")
    assert len(tampered) == len(raw) and tampered != raw
    resp = client.post(URL, data=tampered, headers=headers)
    assert resp.status_code == 403
    assert stored(db) == 0


def test_wrong_timestamp_header_is_refused(client, db, factory, key):
    hcp = factory.hcp()
    raw = body(event("sg-wrong-ts", "delivered", email=hcp.email))
    headers = signed(key, raw)
    headers[TIMESTAMP_HEADER] = str(int(headers[TIMESTAMP_HEADER]) + 1)
    resp = client.post(URL, data=raw, headers=headers)
    assert resp.status_code == 403
    assert stored(db) == 0


def test_replayed_old_signed_body_is_refused(client, db, factory, key):
    """A body captured with a valid signature cannot be replayed after the tolerance."""
    hcp = factory.hcp()
    raw = body(event("sg-stale", "unsubscribe", email=hcp.email))
    resp = client.post(URL, data=raw, headers=signed(key, raw, timestamp=str(int(time.time()) - 3600)))
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "esp-webhook:timestamp"
    assert stored(db) == 0


def test_garbage_signature_header_is_refused(client, db, key):
    raw = body(event("sg-garbage", "delivered"))
    headers = signed(key, raw)
    headers["X-Twilio-Email-Event-Webhook-Signature"] = "not base64 !!"
    assert client.post(URL, data=raw, headers=headers).status_code == 403
    assert stored(db) == 0


def test_production_without_a_key_refuses_everything(client, db, app, monkeypatch):
    monkeypatch.setitem(app.config, "CRM_ENV", "production")
    monkeypatch.setitem(app.config, "CRM_ESP_WEBHOOK_PUBLIC_KEY", "")
    resp = client.post(URL, data=body(event("sg-prod", "delivered")), content_type="application/json")
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "esp-webhook:not-configured"
    assert stored(db) == 0


# -- bad bodies (no key configured: development) ------------------------------------------------------

def post(client, payload: bytes | Any):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(URL, data=data, content_type="application/json")


def test_body_that_is_not_json_is_400(client, db):
    resp = post(client, b"[{\"sg_event_id\": ")
    assert resp.status_code == 400
    assert resp.mimetype == "application/problem+json"
    assert stored(db) == 0


def test_body_that_is_not_an_array_is_422(client, db):
    resp = post(client, {"sg_event_id": "sg-obj", "event": "delivered", "timestamp": 1700000000})
    assert resp.status_code == 422
    assert resp.get_json()["errors"] == {"_schema": ["Expected a JSON array."]}
    assert stored(db) == 0


def test_event_without_sg_event_id_is_rejected_alone_and_the_good_ones_are_recorded(client, db, factory, caplog):
    hcp = factory.hcp()
    good = event("sg-good-in-bad-batch", "delivered", email=hcp.email)
    bad = {"event": "open", "timestamp": 1700000000, "email": hcp.email}
    resp = post(client, [good, bad])
    assert resp.status_code == 200, resp.get_json()
    answer = resp.get_json()
    assert answer["received"] == 2 and answer["recorded"] == 1
    assert len(answer["rejected"]) == 1
    rejected = answer["rejected"][0]
    assert rejected["index"] == 1 and rejected["sg_event_id"] is None and "sg_event_id" in rejected["reason"]
    assert stored(db) == 1 and [i.kind for i in items_of(db, hcp.id)] == ["email.delivered"]
    logged = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(logged) == 1 and "event 1" in logged[0]
    assert hcp.email not in logged[0]  # the address is personal data: not in the log


@pytest.mark.parametrize("timestamp", ["1700000000", "yesterday", None, True, [1], 1e30, -5])
def test_timestamp_that_is_not_a_usable_number_is_a_per_event_rejection(client, db, timestamp):
    resp = post(client, [event("sg-ts-ok", "delivered"), {**event("sg-ts-bad", "open"), "timestamp": timestamp}])
    assert resp.status_code == 200
    assert resp.get_json()["rejected"] == [
        {"index": 1, "sg_event_id": "sg-ts-bad", "reason": resp.get_json()["rejected"][0]["reason"]}]
    assert resp.get_json()["rejected"][0]["reason"].startswith("timestamp: ")
    assert stored(db) == 1
    assert db.scalar(select(EmailEvent.sg_event_id)) == "sg-ts-ok"


def test_timestamps_shared_by_events_and_the_future_limit_are_checked_for_every_event(client, db):
    now = int(time.time())
    batch = [event("sg-same-1", "open", timestamp=now - 600), event("sg-same-2", "open", timestamp=now - 600),
             event("sg-same-3", "open", timestamp=float(now - 600)),
             event("sg-soon", "open", timestamp=now + 1800),  # clock skew within the hour: kept
             event("sg-later", "open", timestamp=now + 7200), event("sg-later-again", "open", timestamp=now + 7200),
             {**event("sg-zero", "open"), "timestamp": 0}]
    answer = post(client, batch).get_json()
    assert sorted(r["sg_event_id"] for r in answer["rejected"]) == ["sg-later", "sg-later-again", "sg-zero"]
    rows = {e.sg_event_id: e for e in db.scalars(select(EmailEvent))}
    assert sorted(rows) == ["sg-same-1", "sg-same-2", "sg-same-3", "sg-soon"]
    assert rows["sg-same-1"].occurred_at == rows["sg-same-2"].occurred_at == rows["sg-same-3"].occurred_at
    assert int(rows["sg-same-1"].occurred_at.timestamp()) == now - 600


def test_numbers_beyond_64_bits_are_kept_exactly_in_the_raw_event(client, db):
    big = 2**70 + 1
    raw = json.dumps([event("sg-big", "open", hcp_id=big, extra=big)]).encode()
    answer = post(client, raw).get_json()
    assert answer["recorded"] == 1 and answer["unmatched"] == 1  # the hcp_id is out of range: ignored
    assert db.scalar(select(EmailEvent.raw).where(EmailEvent.sg_event_id == "sg-big"))["extra"] == big


def test_an_hcp_id_of_nobody_falls_back_to_the_address(client, db, factory):
    hcp = factory.hcp(email="fallback@clinic.example")
    answer = post(client, [event("sg-fallback", "open", hcp_id="999999", email="Fallback@Clinic.example")]).get_json()
    assert answer["recorded"] == 1 and answer["unmatched"] == 0
    row = db.scalar(select(EmailEvent).where(EmailEvent.sg_event_id == "sg-fallback"))
    assert (row.hcp_id, row.matched_by, row.email) == (hcp.id, "email", None)
    assert [i.kind for i in items_of(db, hcp.id)] == ["email.opened"]


def test_event_that_is_not_an_object_and_event_without_type(client, db):
    resp = post(client, ["just a string", {"sg_event_id": "sg-no-type", "timestamp": 1700000000}, None])
    assert resp.status_code == 200
    answer = resp.get_json()
    assert [(r["index"], r["sg_event_id"]) for r in answer["rejected"]] == [(0, None), (1, "sg-no-type"),
                                                                           (2, None)]
    assert answer["rejected"][0]["reason"] == "Expected a JSON object."
    assert answer["rejected"][1]["reason"].startswith("event: ")
    assert answer["received"] == 3 and answer["recorded"] == 0 and stored(db) == 0


def test_unsubscribes_in_a_batch_with_a_bad_event_are_applied_once_and_the_resend_changes_nothing(
        client, db, factory):
    marketer, compliance = factory.user("marketer"), factory.user("compliance")
    hcp, other = factory.hcp(), factory.hcp()
    email_consent(db, hcp, "promotional")
    email_consent(db, other, "promotional")
    campaign = make_campaign(db, marketer, make_template(db, marketer, compliance), [hcp.id])
    batch = [
        event("sg-unsub-in-bad", "unsubscribe", email=hcp.email, hcp_id=str(hcp.id), campaign_id=str(campaign.id),
              timestamp=time.time() + 1),
        {**event("sg-broken", "open", email=hcp.email), "timestamp": "not a time"},
        event("sg-spam-in-bad", "spamreport", email=other.email, timestamp=time.time() + 1),
    ]
    first = post(client, batch)
    assert first.status_code == 200
    assert first.get_json()["consent_withdrawals"] == 2
    assert [r["sg_event_id"] for r in first.get_json()["rejected"]] == ["sg-broken"]
    assert not consent.can_contact(db, hcp.id, "email", "promotional").allowed
    assert not consent.can_contact(db, other.id, "email", "promotional").allowed
    # The platform may still send the same bytes again: nothing is doubled.
    again = post(client, batch).get_json()
    assert (again["recorded"], again["duplicates"], again["consent_withdrawals"]) == (0, 2, 0)
    assert len(again["rejected"]) == 1
    assert stored(db) == 2
    assert db.scalar(select(func.count()).select_from(ConsentEvent).where(
        ConsentEvent.external_id.in_(["sg-unsub-in-bad", "sg-spam-in-bad"]))) == 2


def test_a_batch_of_only_bad_events_is_answered_200_with_every_one_reported(client, db):
    resp = post(client, [{"event": "open"}, {"sg_event_id": "x" * 500, "event": "open", "timestamp": 1700000000}])
    assert resp.status_code == 200
    rejected = resp.get_json()["rejected"]
    assert [r["index"] for r in rejected] == [0, 1]
    assert rejected[1]["sg_event_id"] == "x" * 100 and "sg_event_id" in rejected[1]["reason"]
    assert stored(db) == 0


def test_a_bad_event_in_a_signed_batch_is_reported_but_a_bad_signature_still_refuses_it_whole(
        client, db, factory, key):
    raw = body(event("sg-signed-good", "delivered"), {"event": "open"})
    ok = client.post(URL, data=raw, headers=signed(key, raw))
    assert ok.status_code == 200 and ok.get_json()["recorded"] == 1 and len(ok.get_json()["rejected"]) == 1
    tampered = raw.replace(b"sg-signed-good", b"sg-signed-evil")
    refused = client.post(URL, data=tampered, headers=signed(key, raw))
    assert refused.status_code == 403
    assert stored(db) == 1


def test_body_of_20_mb_is_413_and_nothing_stored(client, db):
    raw = b"[" + b" " * (20 * 1024 * 1024) + b"]"
    resp = client.post(URL, data=raw, content_type="application/json")
    assert resp.status_code == 413
    assert resp.mimetype == "application/problem+json"
    assert stored(db) == 0


def test_empty_array_is_fine(client, db):
    resp = post(client, [])
    assert resp.status_code == 200
    assert resp.get_json()["received"] == 0 and resp.get_json()["rejected"] == []


# -- matching, kinds, unknown types -------------------------------------------------------------------

def test_events_are_tied_by_custom_arg_then_by_email_and_unmatched_are_kept(client, db, factory):
    by_arg = factory.hcp()
    by_mail = factory.hcp(email="Dr.Mixed@Clinic.Example")
    resp = post(client, [
        event("sg-m1", "delivered", email="someone-else@clinic.example", hcp_id=str(by_arg.id)),
        event("sg-m2", "open", email="dr.mixed@clinic.example"),
        event("sg-m3", "click", email="nobody@nowhere.example", url="https://pharma.example/x"),
        event("sg-m4", "open", email="nobody@nowhere.example", hcp_id="not-a-number"),
    ])
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["unmatched"] == 2
    assert [i.kind for i in items_of(db, by_arg.id)] == ["email.delivered"]
    assert [i.kind for i in items_of(db, by_mail.id)] == ["email.opened"]
    rows = {e.sg_event_id: e for e in db.scalars(select(EmailEvent))}
    assert (rows["sg-m1"].hcp_id, rows["sg-m1"].matched_by) == (by_arg.id, "hcp_id")
    assert (rows["sg-m2"].hcp_id, rows["sg-m2"].matched_by) == (by_mail.id, "email")
    assert rows["sg-m3"].hcp_id is None and rows["sg-m3"].email == "nobody@nowhere.example"
    # personal data is not kept in the raw event, and matched events do not keep the address at all
    assert "email" not in rows["sg-m2"].raw and rows["sg-m2"].email is None
    stored_cipher = db.execute(text("SELECT email FROM email_events WHERE sg_event_id = 'sg-m3'")).scalar()
    assert "nobody" not in stored_cipher


def test_unmatched_list_page_masks_addresses_for_marketers(client, db, factory, auth):
    post(client, [event("sg-unmatched-page", "bounce", email="ghost@nowhere.example", reason="550 no such user")])
    marketer, admin, rep = factory.user("marketer"), factory.user("admin"), factory.user("field_rep")
    auth.login(marketer)
    page = client.get("/campaigns/email-events/unmatched").get_data(as_text=True)
    assert "sg-unmatched-page" in page and "g***@n***.example" in page and "ghost@nowhere" not in page
    auth.logout()
    auth.login(admin)
    assert "ghost@nowhere.example" in client.get("/campaigns/email-events/unmatched").get_data(as_text=True)
    auth.logout()
    auth.login(rep)
    assert client.get("/campaigns/email-events/unmatched").status_code == 403


def test_processed_and_unknown_types_are_recorded_but_not_on_the_timeline(client, db, factory):
    hcp = factory.hcp()
    resp = post(client, [event("sg-proc", "processed", email=hcp.email),
                         event("sg-new-kind", "machine_opened", email=hcp.email)])
    assert resp.status_code == 200
    rows = {e.sg_event_id: e for e in db.scalars(select(EmailEvent))}
    assert rows["sg-proc"].event_type == "processed"
    assert (rows["sg-new-kind"].event_type, rows["sg-new-kind"].platform_type) == ("unknown", "machine_opened")
    assert items_of(db, hcp.id) == []


def test_every_known_type_has_its_timeline_kind(client, db, factory):
    hcp = factory.hcp()
    kinds = {"delivered": "email.delivered", "open": "email.opened", "click": "email.clicked",
             "bounce": "email.bounced", "dropped": "email.dropped", "deferred": "email.deferred",
             "spamreport": "email.spamreport", "unsubscribe": "email.unsubscribed",
             "group_unsubscribe": "email.unsubscribed"}
    resp = post(client, [event(f"sg-kind-{k}", k, email=hcp.email, type="blocked") for k in kinds])
    assert resp.status_code == 200, resp.get_json()
    items = items_of(db, hcp.id)
    assert sorted(i.kind for i in items) == sorted(kinds.values())
    assert {i.source for i in items} == {"esp"}
    assert {i.external_id for i in items} == {f"sg-kind-{k}" for k in kinds}


def test_events_of_a_merged_hcp_go_to_the_survivor(client, db, factory):
    survivor, loser = factory.hcp(), factory.hcp()
    loser.status, loser.merged_into_id = "merged", survivor.id
    db.flush()
    assert post(client, [event("sg-merged", "open", hcp_id=loser.id)]).status_code == 200
    assert [i.kind for i in items_of(db, survivor.id)] == ["email.opened"]
    assert items_of(db, loser.id) == []


def test_addresses_lead_to_the_active_record_and_merge_chains_to_the_last_survivor(client, db, factory):
    inactive = factory.hcp(email="shared@clinic.example", status="inactive")
    active = factory.hcp(email="Shared@Clinic.example ")
    first, middle, last = factory.hcp(email="old@clinic.example"), factory.hcp(), factory.hcp()
    first.status, first.merged_into_id = "merged", middle.id
    middle.status, middle.merged_into_id = "merged", last.id
    db.flush()
    assert inactive.id < active.id
    batch = [event("sg-shared", "open", email="shared@clinic.example"),
             event("sg-chain-id", "open", hcp_id=first.id),
             event("sg-chain-mail", "click", email="old@clinic.example")]
    assert post(client, batch).status_code == 200
    assert [i.external_id for i in items_of(db, active.id)] == ["sg-shared"]
    assert items_of(db, inactive.id) == []
    assert sorted(i.external_id for i in items_of(db, last.id)) == ["sg-chain-id", "sg-chain-mail"]
    assert items_of(db, first.id) == [] and items_of(db, middle.id) == []


# -- exactly once -------------------------------------------------------------------------------------

def test_the_same_batch_three_times_adds_nothing_after_the_first(client, db, factory):
    hcp = factory.hcp()
    email_consent(db, hcp)
    batch = [event("sg-rep-1", "delivered", email=hcp.email), event("sg-rep-2", "open", email=hcp.email),
             event("sg-rep-3", "unsubscribe", email=hcp.email)]
    answers = [post(client, batch).get_json() for _ in range(3)]
    assert [a["recorded"] for a in answers] == [3, 0, 0]
    assert [a["duplicates"] for a in answers] == [0, 3, 3]
    assert stored(db) == 3
    assert len(items_of(db, hcp.id)) == 3
    withdrawals = db.scalars(select(ConsentEvent).where(ConsentEvent.hcp_id == hcp.id,
                                                        ConsentEvent.event_type == "withdrawn")).all()
    assert len(withdrawals) == 1 and withdrawals[0].source == "esp"


def test_duplicate_ids_inside_one_batch_count_once(client, db, factory):
    hcp = factory.hcp()
    resp = post(client, [event("sg-twice", "open", email=hcp.email), event("sg-twice", "open", email=hcp.email)])
    assert resp.get_json()["recorded"] == 1
    assert len(items_of(db, hcp.id)) == 1


def test_a_batch_takes_a_constant_number_of_queries(app, client, db, factory):
    hcps = [factory.hcp() for _ in range(30)]

    def count(events: list[dict[str, Any]]) -> int:
        statements: list[str] = []

        def record(conn, cursor, statement, *args):  # noqa: ANN001
            statements.append(statement)

        with app.app_context():
            engine = _db.engine
        sa_event.listen(engine, "before_cursor_execute", record)
        try:
            assert post(client, events).status_code == 200
        finally:
            sa_event.remove(engine, "before_cursor_execute", record)
        return len(statements)

    small = count([event(f"sg-q-a{i}", "open", email=h.email) for i, h in enumerate(hcps[:3])])
    large = count([event(f"sg-q-b{i}", "open", email=h.email) for i, h in enumerate(hcps)]
                  + [event(f"sg-q-c{i}", "delivered", hcp_id=h.id) for i, h in enumerate(hcps)])
    assert large == small


@pytest.mark.committing
def test_the_same_batch_on_two_workers_at_once_is_recorded_once(committing_app):
    from crm.hcps.models import HCP as HCPModel
    from crm.security.crypto import blind_index

    with committing_app.app_context():
        hcp = HCPModel(first_name="Con", last_name="Current", profession="gp", email="con.current@clinic.example",
                       email_bidx=blind_index("con.current@clinic.example"))
        _db.session.add(hcp)
        _db.session.commit()
        hcp_id = hcp.id
    batch = body(*[event(f"sg-race-{i}", "open", email="con.current@clinic.example") for i in range(50)])
    barrier = threading.Barrier(2)
    answers: list[Any] = []

    def worker() -> None:
        client = committing_app.test_client()
        barrier.wait()
        resp = client.post(URL, data=batch, content_type="application/json")
        answers.append((resp.status_code, resp.get_json()))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [a[0] for a in answers] == [200, 200]
    assert sorted(a[1]["recorded"] for a in answers) == [0, 50]
    with committing_app.app_context():
        assert _db.session.scalar(select(func.count()).select_from(EmailEvent)) == 50
        items = _db.session.scalar(select(func.count()).select_from(InteractionParticipant).where(
            InteractionParticipant.hcp_id == hcp_id))
        assert items == 50


# -- consent and contact points ---------------------------------------------------------------------

def test_unsubscribe_withdraws_the_campaigns_purpose_and_shows_on_the_timeline(client, db, factory):
    marketer, compliance = factory.user("marketer"), factory.user("compliance")
    hcp = factory.hcp()
    email_consent(db, hcp, "promotional")
    email_consent(db, hcp, "events")
    campaign = make_campaign(db, marketer, make_template(db, marketer, compliance), [hcp.id])
    # (the HCP clicks after the consent was given: the event's instant is now)
    resp = post(client, [event("sg-unsub", "unsubscribe", email=hcp.email, hcp_id=str(hcp.id),
                               campaign_id=str(campaign.id), timestamp=time.time() + 1)])
    assert resp.get_json()["consent_withdrawals"] == 1
    assert not consent.can_contact(db, hcp.id, "email", "promotional").allowed
    assert consent.can_contact(db, hcp.id, "email", "events").allowed  # only the campaign's purpose
    kinds = [i.kind for i in items_of(db, hcp.id, "")]
    assert "email.unsubscribed" in kinds and "consent.withdrawn" in kinds
    withdrawal = db.scalar(select(ConsentEvent).where(ConsentEvent.external_id == "sg-unsub"))
    assert (withdrawal.source, withdrawal.purpose, withdrawal.channel) == ("esp", "promotional", "email")


@pytest.mark.parametrize("kind", ["group_unsubscribe", "spamreport"])
def test_group_unsubscribe_and_spam_report_without_campaign_withdraw_every_purpose(client, db, factory, kind):
    hcp = factory.hcp()
    email_consent(db, hcp, "promotional")
    email_consent(db, hcp, "events")
    resp = post(client, [event(f"sg-{kind}", kind, email=hcp.email, timestamp=time.time() + 1)])
    assert resp.get_json()["consent_withdrawals"] == 1
    for purpose in ("promotional", "events"):
        decision = consent.can_contact(db, hcp.id, "email", purpose)
        assert (decision.allowed, decision.rule) == (False, "consent-withdrawn")


def test_hard_bounce_marks_the_address_invalid_and_the_next_send_skips_it(client, db, factory):
    marketer, compliance = factory.user("marketer"), factory.user("compliance")
    hcp = factory.hcp()
    email_consent(db, hcp)
    resp = post(client, [event("sg-bounce", "bounce", email=hcp.email, type="bounce",
                               reason="550 5.1.1 The email account does not exist")])
    assert resp.get_json()["emails_invalid"] == 1
    db.refresh(hcp)
    assert hcp.email_status == "invalid" and "does not exist" in hcp.email_status_reason

    campaign = make_campaign(db, marketer, make_template(db, marketer, compliance), [hcp.id])
    result = send_now(db, marketer, campaign)
    assert result.sent == [] and result.skipped[0]["reason"] == "email-invalid"


def test_blocked_bounce_and_dropped_for_other_reasons_keep_the_address(client, db, factory):
    a, b, c = factory.hcp(), factory.hcp(), factory.hcp()
    resp = post(client, [
        event("sg-blocked", "bounce", email=a.email, type="blocked", reason="421 try later"),
        event("sg-drop-unsub", "dropped", email=b.email, reason="Unsubscribed Address"),
        event("sg-drop-bounced", "dropped", email=c.email, reason="Bounced Address"),
    ])
    assert resp.get_json()["emails_invalid"] == 1
    for hcp, status in ((a, "valid"), (b, "valid"), (c, "invalid")):
        db.refresh(hcp)
        assert hcp.email_status == status


def test_a_new_address_is_valid_again(api, db, factory):
    admin = factory.user("admin")
    hcp = factory.hcp(email_status="invalid", email_status_reason="bounce: 550")
    resp = api(admin).patch(f"/api/v1/hcps/{hcp.id}", json={"email": "new.address@clinic.example",
                                                              "version": hcp.version})
    assert resp.status_code == 200, resp.get_json()
    db.refresh(hcp)
    assert hcp.email_status == "valid"


def test_openapi_documents_the_webhook_without_auth(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    op = spec["paths"]["/api/v1/integrations/email/events"]["post"]
    assert "security" not in op
    assert {"400", "401", "403", "413", "422"} <= set(op["responses"])
    answer = op["responses"]["200"]["content"]["application/json"]["schema"]
    ref = answer["$ref"].rsplit("/", 1)[-1]
    properties = spec["components"]["schemas"][ref]["properties"]
    assert properties["rejected"]["type"] == "array"
    item = properties["rejected"]["items"]
    item = spec["components"]["schemas"][item["$ref"].rsplit("/", 1)[-1]] if "$ref" in item else item
    assert set(item["properties"]) == {"index", "sg_event_id", "reason"}


# -- mixed batches (set-based side effects) ---------------------------------------------------------

def test_mixed_batch_duplicates_unsubscribe_and_open_of_one_hcp_unknown_and_already_withdrawn(client, db, factory):
    """One batch: the same unsubscribe twice, an open and an unsubscribe of one HCP, an HCP already withdrawn,
    an address nobody has, and a hard bounce: each effect once, in one statement per kind."""
    from crm.audit.models import AuditRecord
    from crm.consent.models import ConsentState

    marketer, compliance = factory.user("marketer"), factory.user("compliance")
    opener, gone, bouncer = factory.hcp(), factory.hcp(), factory.hcp()
    for hcp in (opener, gone, bouncer):
        email_consent(db, hcp, "events")
    consent.withdraw_consent(db, None, gone, "email", "all", "esp", evidence={"event_id": "earlier"},
                             external_id="sg-earlier")
    campaign = make_campaign(db, marketer, make_template(db, marketer, compliance, purpose="events"),
                             [opener.id, gone.id, bouncer.id])
    # an ORM row of the state already in the session must not be read stale after the batch
    assert db.get(ConsentState, (opener.id, "email", "events")).state == "granted"
    now = time.time() + 1
    cid = str(campaign.id)
    events = [
        event("sg-mix-open", "open", hcp_id=str(opener.id), campaign_id=cid, timestamp=now),
        event("sg-mix-unsub", "unsubscribe", hcp_id=str(opener.id), campaign_id=cid, timestamp=now),
        event("sg-mix-unsub", "unsubscribe", hcp_id=str(opener.id), campaign_id=cid, timestamp=now),
        event("sg-mix-gone", "group_unsubscribe", email=gone.email, timestamp=now),
        event("sg-mix-nobody", "unsubscribe", email="nobody@nowhere.example", timestamp=now),
        event("sg-mix-bounce", "bounce", hcp_id=str(bouncer.id), type="bounce", reason="550 no such user"),
        event("sg-mix-bounce-2", "bounce", hcp_id=str(bouncer.id), type="bounce", reason="550 again"),
    ]
    out = post(client, events).get_json()
    assert (out["received"], out["recorded"], out["duplicates"], out["unmatched"]) == (7, 6, 1, 1)
    assert (out["consent_withdrawals"], out["emails_invalid"]) == (2, 1)
    assert db.get(ConsentState, (opener.id, "email", "events")).state == "withdrawn"
    assert not consent.can_contact(db, opener.id, "email", "events").allowed
    assert sorted(i.kind for i in items_of(db, opener.id, "")
                  if i.kind != "consent.confirmed" and i.kind != "consent.granted") == [
        "consent.withdrawn", "email.opened", "email.unsubscribed"]
    # the HCP who had withdrawn already gets a second "no" on the ledger (a fact worth keeping), still withdrawn
    gone_events = db.scalars(select(ConsentEvent).where(ConsentEvent.hcp_id == gone.id,
                                                        ConsentEvent.event_type == "withdrawn")).all()
    assert sorted(e.external_id for e in gone_events) == ["sg-earlier", "sg-mix-gone"]
    assert consent.can_contact(db, gone.id, "email", "events").rule == "consent-withdrawn"
    # evidence and its keyed digest as a single withdrawal keeps them; one audit record per ledger event
    mine = db.scalar(select(ConsentEvent).where(ConsentEvent.external_id == "sg-mix-unsub"))
    assert consent.read_evidence(mine) == {"event_id": "sg-mix-unsub"} and consent.verify_evidence(mine)
    assert (mine.source, mine.purpose, mine.captured_by_role) == ("esp", "events", "system")
    audited = db.scalars(select(AuditRecord.entity_id).where(AuditRecord.action == "consent.withdrawn",
                                                             AuditRecord.entity_id.in_([str(mine.id)]))).all()
    assert audited == [str(mine.id)]
    db.refresh(bouncer)
    assert (bouncer.email_status, bouncer.email_status_reason) == ("invalid", "bounce: 550 again")  # the last
    assert db.scalar(select(func.count()).select_from(AuditRecord).where(
        AuditRecord.action == "hcp.email_invalid", AuditRecord.entity_id == str(bouncer.id))) == 1
    # the same batch again: nothing more
    again = post(client, events).get_json()
    assert (again["recorded"], again["consent_withdrawals"], again["emails_invalid"]) == (0, 0, 0)


def test_unsubscribe_of_a_merged_duplicate_goes_to_the_survivor_and_an_erased_hcp_takes_nothing(client, db, factory):
    survivor, duplicate, erased = factory.hcp(), factory.hcp(), factory.hcp()
    email_consent(db, survivor, "events")
    duplicate.status, duplicate.merged_into_id = "merged", survivor.id
    erased.status = "erased"
    db.flush()
    out = post(client, [event("sg-dup", "unsubscribe", hcp_id=str(duplicate.id), timestamp=time.time() + 1),
                        event("sg-erased", "unsubscribe", hcp_id=str(erased.id), timestamp=time.time() + 1)]).get_json()
    assert out["consent_withdrawals"] == 1
    assert consent.can_contact(db, survivor.id, "email", "events").rule == "consent-withdrawn"
    assert db.scalar(select(ConsentEvent.hcp_id).where(ConsentEvent.external_id == "sg-dup")) == survivor.id
    assert db.scalar(select(ConsentEvent.id).where(ConsentEvent.external_id == "sg-erased")) is None


def test_a_backdated_unsubscribe_marks_the_campaign_mail_sent_after_it_as_a_consent_gap(client, db, factory):
    """The platform reports an unsubscribe late: the campaign mail sent after its instant was sent without
    consent (a gap); the other HCP's mail, whose unsubscribe came after the mail, is no gap."""
    from datetime import timedelta

    from crm.campaigns import services
    from crm.campaigns.sending import hand_over_now
    from crm.db import utcnow
    from tests.campaigns_support import viewer_of
    from tests.consent_support import grant

    marketer, compliance = factory.user("marketer"), factory.user("compliance")
    late, early = factory.hcp(), factory.hcp()
    for hcp in (late, early):
        grant(db, hcp, channel="email", purpose="events", occurred_at=utcnow() - timedelta(hours=3))
    campaign = make_campaign(db, marketer, make_template(db, marketer, compliance, purpose="events"),
                             [late.id, early.id])
    sent_at = utcnow() - timedelta(hours=1)
    services.send_campaign(db, marketer, viewer_of(marketer), campaign, at=sent_at)
    hand_over_now(db, marketer, campaign.id, at=sent_at)  # what the send job does after the commit
    out = post(client, [
        event("sg-late", "unsubscribe", hcp_id=str(late.id), campaign_id=str(campaign.id),
              timestamp=time.time() - 2 * 3600),
        event("sg-after", "unsubscribe", hcp_id=str(early.id), campaign_id=str(campaign.id),
              timestamp=time.time() - 1800)]).get_json()
    assert out["consent_withdrawals"] == 2
    gaps = {hcp.id: [i.consent_gap for i in items_of(db, hcp.id) if i.kind == "email.sent"] for hcp in (late, early)}
    assert gaps == {late.id: [True], early.id: [False]}


def test_events_another_worker_records_between_the_check_and_the_insert_are_left_to_it(db, factory, monkeypatch):
    """The seen-check and the insert are two statements: on PostgreSQL a concurrent writer can record some of
    the batch in between. Its events are then not counted, not put on the timeline and not acted on here."""
    from datetime import UTC, datetime

    from crm.campaigns import engagement
    from crm.campaigns.engagement import IncomingEmailEvent, ingest_events

    hcp = factory.hcp()
    real = engagement.insert_driver_rows

    def racing(session, table, keys, rows, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if table is EmailEvent.__table__:
            theirs = [r for r in rows if r[0] == "sg-race-b"]
            real(session, table, keys, theirs, *args, **kwargs)  # the other worker, a moment before
        return real(session, table, keys, rows, *args, **kwargs)

    monkeypatch.setattr(engagement, "insert_driver_rows", racing)
    at = datetime(2026, 3, 1, 10, tzinfo=UTC)
    events = [IncomingEmailEvent("sg-race-a", "open", at, hcp_id=hcp.id),
              IncomingEmailEvent("sg-race-b", "unsubscribe", at, hcp_id=hcp.id),
              IncomingEmailEvent("sg-race-c", "open", at, email="nobody@nowhere.example")]
    result = ingest_events(db, events)
    assert (result.recorded, result.duplicates, result.unmatched) == (2, 1, 1)
    assert (result.timeline_items, result.consent_withdrawals) == (1, 0)
    assert [i.external_id for i in items_of(db, hcp.id)] == ["sg-race-a"]
