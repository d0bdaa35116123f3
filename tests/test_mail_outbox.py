"""The mail outbox: a mail is "sent" only once the email adapter took it; a refusal is retried with backoff,
then ``failed`` and visible; two workers never hand one mail over twice; the Message-ID never changes."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text

from crm.campaigns.models import CampaignMessage
from crm.consent.models import ConsentEvent
from crm.db import utcnow
from crm.events import services as events
from crm.events.models import Invitation
from crm.extensions import db as _db
from crm.integrations.email import EmailError, EmailMessage
from crm.mail import services as mail
from crm.mail.models import MailOutbox
from tests.campaigns_support import email_consent, make_campaign, make_template, send_now, viewer_of
from tests.consent_support import grant, withdraw
from tests.events_support import make_event


class FakeSender:
    """An email adapter that refuses the first ``refuse`` hand-overs (or those to ``refuse_to``) and keeps
    what it took."""

    def __init__(self, refuse: int = 0, refuse_to: frozenset[str] = frozenset()) -> None:
        self.refuse, self.refuse_to = refuse, refuse_to
        self.taken: list[EmailMessage] = []
        self.calls = 0
        self.lock = threading.Lock()

    def send(self, message: EmailMessage) -> str:
        with self.lock:
            self.calls += 1
            if self.refuse > 0 or message.to in self.refuse_to:
                self.refuse -= 1
                raise EmailError("421 4.3.2 service not available")
            self.taken.append(message)
        return message.message_id or ""


@pytest.fixture
def sender(app, monkeypatch):
    fake = FakeSender()
    monkeypatch.setitem(app.extensions, "crm_email_sender", fake)
    monkeypatch.setitem(app.config, "CRM_MAIL_SEND_AFTER_COMMIT", False)  # the tests hand over themselves
    return fake


@pytest.fixture
def people(factory):
    return {"marketer": factory.user("marketer"), "compliance": factory.user("compliance")}


def _rows(db, **where: Any) -> list[MailOutbox]:
    db.expire_all()
    return list(db.scalars(select(MailOutbox).filter_by(**where).order_by(MailOutbox.id)))


def _campaign(db, factory, people, n=1):
    hcps = [factory.hcp() for _ in range(n)]
    for hcp in hcps:
        email_consent(db, hcp)
    db.execute(delete(MailOutbox))  # the double opt-in confirmations are not these tests' business
    template = make_template(db, people["marketer"], people["compliance"])
    campaign = make_campaign(db, people["marketer"], template, [h.id for h in hcps])

    result = send_now(db, people["marketer"], campaign)
    assert result.sent == [h.id for h in hcps]
    return campaign, hcps


def _recipient(db, campaign, hcp) -> CampaignMessage:
    db.expire_all()
    return db.scalar(select(CampaignMessage).where(CampaignMessage.campaign_id == campaign.id,
                                                   CampaignMessage.hcp_id == hcp.id))


# -- campaign mails --------------------------------------------------------------------------------

def test_a_campaign_mail_is_queued_at_the_send_and_sent_only_once_the_adapter_took_it(app, db, factory, people,
                                                                                     sender):
    campaign, (hcp,) = _campaign(db, factory, people)
    row = _rows(db, kind="campaign")[0]
    assert (row.state, row.attempts, row.hcp_id) == ("queued", 0, hcp.id)
    assert _recipient(db, campaign, hcp).status == "queued"
    assert sender.taken == []

    assert mail.deliver_pending(app) == {"sent": 1}
    row = _rows(db, kind="campaign")[0]
    assert row.state == "sent" and row.sent_at is not None and row.message is None  # the body is not kept
    recipient = _recipient(db, campaign, hcp)
    assert recipient.status == "sent" and recipient.sent_at is not None
    assert [m.to for m in sender.taken] == [hcp.email]
    assert sender.taken[0].message_id == row.message_id == recipient.message_id
    assert "List-Unsubscribe" in sender.taken[0].headers and "X-SMTPAPI" in sender.taken[0].headers
    assert mail.deliver_pending(app, now=utcnow() + timedelta(days=1)) == {}  # never twice


def test_a_refused_hand_over_stays_queued_with_backoff_and_is_retried_later(app, db, factory, people, sender):
    sender.refuse = 2
    campaign, (hcp,) = _campaign(db, factory, people)
    now = utcnow()
    assert mail.deliver_pending(app, now=now) == {"retry": 1}
    row = _rows(db)[0]
    assert row.state == "queued" and row.attempts == 1 and "421" in row.last_error
    first_try = row.next_attempt_at
    assert first_try - now == timedelta(seconds=60)
    assert _recipient(db, campaign, hcp).status == "queued"  # not "sent": the mail has not left
    # not due yet: nothing happens before the backoff ran out
    assert mail.deliver_pending(app, now=first_try - timedelta(seconds=1)) == {}
    assert mail.deliver_pending(app, now=first_try) == {"retry": 1}
    second_try = _rows(db)[0].next_attempt_at
    assert second_try - first_try == timedelta(seconds=120)  # doubled
    assert mail.deliver_pending(app, now=second_try) == {"sent": 1}
    assert _rows(db)[0].state == "sent" and _rows(db)[0].attempts == 3
    assert _recipient(db, campaign, hcp).status == "sent"
    assert sender.calls == 3 and len(sender.taken) == 1


def test_after_the_last_attempt_the_mail_is_failed_and_the_marketer_sees_it(app, db, factory, people, sender, api,
                                                                           monkeypatch):
    monkeypatch.setitem(app.config, "CRM_MAIL_MAX_ATTEMPTS", 3)
    sender.refuse = 100
    campaign, (hcp, other) = _campaign(db, factory, people, n=2)
    clock = utcnow()
    for _ in range(3):
        mail.deliver_pending(app, now=clock)
        clock += timedelta(days=1)
    rows = _rows(db)
    assert {(r.state, r.attempts) for r in rows} == {("failed", 3)}
    assert mail.deliver_pending(app, now=clock + timedelta(days=30)) == {}  # failed: no more tries on its own
    recipient = _recipient(db, campaign, hcp)
    assert recipient.status == "failed" and "421" in recipient.detail and recipient.sent_at is None

    marketer = api(people["marketer"])
    funnel = marketer.get(f"/api/v1/campaigns/{campaign.id}").get_json()["funnel"]
    assert (funnel["queued"], funnel["sent"], funnel["failed"]) == (0, 0, 2)
    items = marketer.get(f"/api/v1/campaigns/{campaign.id}/recipients").get_json()["items"]
    assert {i["status"] for i in items} == {"failed"} and all("421" in i["detail"] for i in items)


def test_a_failed_campaign_page_shows_it(app, db, factory, people, sender, auth, client, monkeypatch):
    monkeypatch.setitem(app.config, "CRM_MAIL_MAX_ATTEMPTS", 1)
    sender.refuse = 1
    campaign, _ = _campaign(db, factory, people)
    mail.deliver_pending(app)
    auth.login(people["marketer"])
    page = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "failed</strong>" in page and "not handed over after every retry" in page


def test_crm_mail_retry_arms_failed_mails_and_hands_them_over(app, db, factory, people, sender, runner, monkeypatch):
    monkeypatch.setitem(app.config, "CRM_MAIL_MAX_ATTEMPTS", 1)
    sender.refuse = 1
    campaign, (hcp,) = _campaign(db, factory, people)
    first = runner.invoke(args=["crm", "mail", "send"])
    assert first.exit_code == 1 and "1 failed" in first.output
    status = runner.invoke(args=["crm", "mail", "status"])
    assert "failed: 1" in status.output and "421" in status.output and hcp.email not in status.output
    row = _rows(db)[0]
    assert runner.invoke(args=["crm", "mail", "retry", "--id", str(row.id + 1000)]).exit_code == 1
    again = runner.invoke(args=["crm", "mail", "retry"])
    assert again.exit_code == 0, again.output
    assert "armed again: 1" in again.output and "1 sent" in again.output
    assert _rows(db)[0].state == "sent" and _recipient(db, campaign, hcp).status == "sent"
    refused = runner.invoke(args=["crm", "mail", "retry", "--id", str(row.id)])
    assert refused.exit_code == 1 and "Only failed mails" in refused.output
    assert runner.invoke(args=["crm", "mail", "send"]).output.strip() == "mail: nothing due"


def test_a_mail_waiting_for_a_retry_never_reaches_an_hcp_who_unsubscribed_meanwhile(app, db, factory, people,
                                                                                    sender, caplog):
    sender.refuse = 1
    campaign, (hcp,) = _campaign(db, factory, people)
    now = utcnow()
    assert mail.deliver_pending(app, now=now) == {"retry": 1}
    withdraw(db, hcp, channel="email", purpose="promotional", source="email_link")
    caplog.clear()
    assert mail.deliver_pending(app, now=now + timedelta(hours=1)) == {"failed": 1}
    assert sender.taken == []
    # the ledger doing its work is logged for the record, not raised as a warning to act on
    (drop,) = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert drop.levelname == "INFO" and "consent-withdrawn" in drop.getMessage()
    row = _rows(db)[0]
    assert row.state == "failed" and "consent-withdrawn" in row.last_error and row.message is None
    recipient = _recipient(db, campaign, hcp)
    assert recipient.status == "failed" and "consent-withdrawn" in recipient.detail


def test_a_queued_mail_of_an_erased_hcp_never_leaves_and_keeps_no_address(app, db, factory, people, sender):
    from crm.hcps.erasure import erase_hcp

    campaign, (hcp,) = _campaign(db, factory, people)
    address = hcp.email
    erase_hcp(db, factory.user("admin"), hcp, reason="Art. 17 request")
    row = _rows(db)[0]  # erasure itself clears the row and fails the mail: nothing is due any more
    assert row.state == "failed" and row.recipient != address and row.message is None
    assert "hcp-erased" in row.last_error
    assert db.get(CampaignMessage, row.campaign_message_id).status == "failed"
    assert mail.deliver_pending(app) == {}
    assert sender.taken == []


def test_a_resend_of_the_campaign_never_queues_a_second_mail(app, db, factory, people, sender):

    campaign, (hcp,) = _campaign(db, factory, people)
    again = send_now(db, people["marketer"], campaign)
    assert again.sent == [] and again.skipped[0]["reason"] == "already-sent"  # queued counts as sent
    assert len(_rows(db)) == 1
    mail.deliver_pending(app)
    assert len(sender.taken) == 1


def test_a_failed_recipient_is_evaluated_again_by_the_next_send_and_keeps_its_message_id(app, db, factory, people,
                                                                                        sender, monkeypatch):

    monkeypatch.setitem(app.config, "CRM_MAIL_MAX_ATTEMPTS", 1)
    sender.refuse = 1
    campaign, (hcp,) = _campaign(db, factory, people)
    mail.deliver_pending(app)
    failed = _rows(db)[0]
    failed_id, message_id = failed.id, failed.message_id
    assert failed.state == "failed"
    again = send_now(db, people["marketer"], campaign)
    assert again.sent == [hcp.id]
    row = _rows(db)[0]
    assert (row.id, row.state, row.attempts, row.message_id) == (failed_id, "queued", 0, message_id)
    assert _recipient(db, campaign, hcp).status == "queued"
    assert mail.deliver_pending(app) == {"sent": 1}
    assert sender.taken[0].message_id == message_id
    assert _recipient(db, campaign, hcp).message_id == message_id


def test_a_send_that_rolls_back_leaves_no_mail(app, db, factory, people, sender):
    savepoint = db.begin_nested()
    _campaign(db, factory, people)
    assert len(_rows(db)) == 1
    savepoint.rollback()
    assert _rows(db) == [] and mail.deliver_pending(app) == {} and sender.taken == []


def test_personal_data_in_the_outbox_is_encrypted(app, db, factory, people, sender):
    _campaign(db, factory, people)
    raw = db.execute(text("SELECT recipient, message FROM mail_outbox")).one()
    hcp_email = _rows(db)[0].recipient
    assert hcp_email not in raw.recipient and hcp_email not in raw.message and "Dear" not in raw.message


# -- two workers, crashes ------------------------------------------------------------------------------

def test_a_claimed_mail_is_not_handed_over_by_a_second_worker_while_the_lease_holds(app, db, factory, people,
                                                                                   sender):
    _campaign(db, factory, people, n=3)
    now = utcnow()
    claimed = mail.claim(app, now, 10)  # worker A takes them ...
    assert len(claimed) == 3 and {r.state for r in _rows(db)} == {"sending"}
    assert mail.deliver_pending(app, now=now + timedelta(minutes=5)) == {}  # ... worker B finds nothing
    assert sender.taken == []


def test_a_worker_that_died_after_the_hand_over_causes_at_most_one_repeat_with_the_same_message_id(
        app, db, factory, people, sender):
    _campaign(db, factory, people)
    now = utcnow()
    [(outbox_id, attempt)] = mail.claim(app, now, 10)
    row = _rows(db)[0]
    message = EmailMessage(to=row.recipient, subject="x", text="x", message_id=row.message_id)
    sender.send(message)  # handed over, then the worker died before recording it
    lease = row.locked_until - now
    assert mail.deliver_pending(app, now=now + lease - timedelta(seconds=1)) == {}  # the lease still holds
    assert mail.deliver_pending(app, now=now + lease + timedelta(seconds=1)) == {"sent": 1}
    assert [m.message_id for m in sender.taken] == [row.message_id, row.message_id]  # receivers can drop it
    assert _rows(db)[0].attempts == 2
    # the dead worker's late record changes nothing: the row is no longer its own
    assert mail._record(app, outbox_id, attempt, "late", now) == "lost"
    assert _rows(db)[0].state == "sent"


def _committed_campaign(app, n):
    from crm.auth.services import create_user
    from tests.conftest import PASSWORD, Factory

    with app.app_context():
        session = _db.session
        factory = Factory(session)
        marketer = create_user(session, None, email="m@pharma.example", name="M", role="marketer", password=PASSWORD)
        compliance = create_user(session, None, email="c@pharma.example", name="C", role="compliance",
                                 password=PASSWORD)
        hcps = []
        for i in range(n):
            hcp = factory.hcp(email=f"hcp{i}@clinic.example")
            email_consent(session, hcp)
            hcps.append(hcp)
        template = make_template(session, marketer, compliance)
        campaign = make_campaign(session, marketer, template, [h.id for h in hcps])
        session.execute(delete(MailOutbox))  # the double opt-in confirmations are not this test's business
        result = send_now(session, marketer, campaign)
        assert len(result.sent) == n, result.skipped
        session.commit()
        _db.session.remove()


@pytest.mark.committing
def test_two_workers_at_once_hand_each_mail_over_exactly_once(committing_app, monkeypatch):
    app = committing_app
    monkeypatch.setitem(app.config, "CRM_MAIL_SEND_AFTER_COMMIT", False)
    fake = FakeSender()
    monkeypatch.setitem(app.extensions, "crm_email_sender", fake)
    monkeypatch.setattr(mail, "CLAIM_BATCH", 3)  # many small claims, so the two workers interleave
    _committed_campaign(app, 30)
    start = threading.Barrier(2)
    results: list[Any] = []

    def worker() -> None:
        with app.app_context():
            start.wait()
            results.append(mail.deliver_pending(app, trigger="worker"))
            _db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["sent"] for r in results) == 30
    ids = [m.message_id for m in fake.taken]
    assert len(ids) == 30 and len(set(ids)) == 30
    with app.app_context():
        states = dict(_db.session.execute(select(MailOutbox.state, func.count()).group_by(MailOutbox.state)).all())
        assert states == {"sent": 30}
        assert _db.session.scalar(select(func.count()).select_from(CampaignMessage)
                                  .where(CampaignMessage.status == "sent")) == 30
        _db.session.remove()


@pytest.mark.committing
def test_after_the_commit_the_campaign_mails_leave_and_a_refusal_is_not_lost(committing_app, monkeypatch):
    app = committing_app
    fake = FakeSender(refuse_to=frozenset({"hcp1@clinic.example"}))
    monkeypatch.setitem(app.extensions, "crm_email_sender", fake)
    _committed_campaign(app, 3)  # the commit hands them over at once
    assert sorted(m.to for m in fake.taken) == ["hcp0@clinic.example", "hcp2@clinic.example"]
    with app.app_context():
        rows = {r.recipient: r for r in _db.session.scalars(select(MailOutbox))}
        assert rows["hcp1@clinic.example"].state == "queued" and rows["hcp1@clinic.example"].attempts == 1
        assert rows["hcp0@clinic.example"].state == "sent"
        _db.session.remove()


# -- invitations and double opt-in -----------------------------------------------------------------------

def test_an_invitation_by_email_follows_its_mail(app, db, factory, sender, api, monkeypatch):
    monkeypatch.setitem(app.config, "CRM_MAIL_MAX_ATTEMPTS", 2)
    marketer = factory.user("marketer")
    good, bad = factory.hcp(), factory.hcp()
    for hcp in (good, bad):
        grant(db, hcp, channel="email", purpose="events")
    event = make_event(db, marketer)
    result = events.invite(db, marketer, viewer_of(marketer), event, [good.id, bad.id])
    assert sorted(result.sent) == sorted([good.id, bad.id])
    db.expire_all()
    assert {i.status for i in db.scalars(select(Invitation))} == {"queued"}
    sender.refuse_to = frozenset({bad.email})
    mail.deliver_pending(app)
    mail.deliver_pending(app, now=utcnow() + timedelta(hours=1))
    db.expire_all()
    statuses = {i.hcp_id: (i.status, i.reason) for i in db.scalars(select(Invitation))}
    assert statuses[good.id] == ("sent", None)
    assert statuses[bad.id][0] == "failed" and "421" in statuses[bad.id][1]
    listed = api(marketer).get(f"/api/v1/events/{event.id}/invitations").get_json()["items"]
    assert {i["hcp_id"]: i["status"] for i in listed} == {good.id: "sent", bad.id: "failed"}
    # a queued or sent invitation is not sent again; a failed one may be
    again = events.invite(db, marketer, viewer_of(marketer), event, [good.id, bad.id])
    assert again.sent == [bad.id] and again.skipped[0]["rule"] == "already-invited"
    sender.refuse_to = frozenset()
    assert mail.deliver_pending(app) == {"sent": 1}
    assert len([m for m in sender.taken if m.to == bad.email]) == 1


def test_an_invitation_recorded_for_another_channel_sends_no_mail(app, db, factory, sender):
    marketer = factory.user("marketer")
    hcp = factory.hcp()
    event = make_event(db, marketer)
    events.invite(db, marketer, viewer_of(marketer), event, [hcp.id], channel="other")
    db.expire_all()
    assert db.scalar(select(Invitation.status)) == "sent" and _rows(db) == []


def test_the_double_opt_in_mail_is_in_the_outbox_and_retried_when_refused(app, db, factory, sender):
    hcp = factory.hcp()
    sender.refuse = 1
    requested = grant(db, hcp, channel="email", purpose="promotional", source="paper_form")
    assert requested.event_type == "requested"
    [row] = _rows(db, kind="double_opt_in")
    assert row.consent_event_id == requested.id and row.hcp_id == hcp.id
    now = utcnow()
    assert mail.deliver_pending(app, now=now) == {"retry": 1}
    assert mail.state_of(db, consent_event_ids=[requested.id]) == {requested.id: "queued"}
    assert mail.deliver_pending(app, now=now + timedelta(minutes=2)) == {"sent": 1}
    assert mail.state_of(db, consent_event_ids=[requested.id]) == {requested.id: "sent"}
    [message] = sender.taken
    assert message.to == hcp.email and "/consent/confirm/" in message.text
    assert db.scalar(select(func.count()).select_from(ConsentEvent).where(ConsentEvent.hcp_id == hcp.id)) == 1


# -- enqueue ---------------------------------------------------------------------------------------

def test_enqueue_is_idempotent_on_its_key_and_checks_its_input(app, db, factory, sender):
    from crm.errors import Invalid

    hcp = factory.hcp()
    message = EmailMessage(to=hcp.email, subject="Your data", text="Here is the link.")
    first = mail.enqueue(db, message, key=f"data-export:{hcp.id}:1", hcp_id=hcp.id)
    second = mail.enqueue(db, message, key=f"data-export:{hcp.id}:1", hcp_id=hcp.id)
    assert first.id == second.id and first.kind == "other" and first.message_id.startswith("<")
    assert len(_rows(db)) == 1
    with pytest.raises(Invalid):
        mail.enqueue(db, message, key="x", kind="pigeon")
    with pytest.raises(Invalid):
        mail.enqueue(db, EmailMessage(to=" ", subject="s", text="t"), key="y")
    assert mail.deliver_pending(app) == {"sent": 1}
    assert sender.taken[0].message_id == first.message_id
