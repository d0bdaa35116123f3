"""Enqueue mail in the business transaction; hand it over later, marking it sent only once it has left.

Why an outbox: a mail handed over in an after-commit hook that fails (SMTP down, disk full) was lost, and
the CRM still said "sent". Here the mail is a row written with the campaign send, the invitation or the
consent request it belongs to; ``deliver_pending`` takes it from there:

1. claim: in a short transaction of its own, due rows (``queued`` and due, or ``sending`` whose lease ran
   out) become ``sending`` with a lease and one more attempt. PostgreSQL skips rows another worker has
   locked (``FOR UPDATE SKIP LOCKED``); SQLite serialises the claim on its write lock (every transaction
   begins ``IMMEDIATE``). Two workers never claim the same row while its lease holds.
2. hand over, with no transaction open, one message at a time;
3. record, one row per transaction: ``sent`` once the adapter returned, else ``queued`` again after an
   exponential backoff, or ``failed`` after ``CRM_MAIL_MAX_ATTEMPTS``. The business row follows (the campaign
   recipient's or invitation's ``queued`` -> ``sent`` | ``failed``).

Consent is checked again before a campaign mail, an invitation or a survey is handed over: one that waited for a
retry while the HCP unsubscribed (or was erased) is ``failed`` with the rule and never leaves.

Never twice: a worker that dies between the hand-over and step 3 leaves its claimed rows ``sending``; when
the lease runs out they are claimed again, so at worst the one message in flight is handed over a second
time. It carries the same Message-ID (fixed when the row was written), so receivers can drop the repeat.

``deliver_pending`` is a plain function of the app: the after-commit hook, ``crm mail send`` and any
scheduler call it the same way.
"""

from __future__ import annotations

import email.utils
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from crm.audit import services as audit
from crm.db import DbSession, among, insert_ignoring_conflicts, on_commit, utcnow
from crm.errors import Conflict, Invalid, NotFound
from crm.extensions import db
from crm.integrations.email import EmailMessage, get_sender
from crm.mail.models import MAIL_KINDS, MailOutbox

ERASED_RECIPIENT = "(erased)"

# How many rows one claim takes; the lease covers handing all of them over.
CLAIM_BATCH = 20


@dataclass(frozen=True)
class OutgoingMail:
    """One mail to enqueue, with what it belongs to (``enqueue_many``)."""

    message: EmailMessage
    key: str
    hcp_id: int | None = None
    campaign_message_id: int | None = None
    invitation_id: int | None = None
    consent_event_id: int | None = None


def _setting(app: Flask, name: str, default: float) -> float:
    return float(app.config.get(name, default))


def mail_domain(app: Flask | None = None) -> str:
    """The domain of ``CRM_MAIL_FROM``, for Message-IDs."""
    from_addr = (app or current_app).config.get("CRM_MAIL_FROM", "")
    return email.utils.parseaddr(from_addr)[1].rpartition("@")[2] or "localhost"


def new_message_id(idstring: str, app: Flask | None = None) -> str:
    """A Message-ID for a mail about to be enqueued; it stays the same on every attempt."""
    return email.utils.make_msgid(idstring=idstring, domain=mail_domain(app))


def _serialise(message: EmailMessage) -> str:
    return json.dumps({"subject": message.subject, "text": message.text, "html": message.html,
                       "headers": message.headers}, separators=(",", ":"))


def _row(mail: OutgoingMail, kind: str, now: datetime) -> dict[str, Any]:
    if kind not in MAIL_KINDS:
        raise Invalid(errors={"kind": [f"must be one of {', '.join(MAIL_KINDS)}"]})
    if not mail.message.to.strip():
        raise Invalid(errors={"to": ["a mail needs a recipient"]})
    if not mail.key or len(mail.key) > 200:
        raise Invalid(errors={"key": ["an idempotency key of 1 to 200 characters is required"]})
    message_id = mail.message.message_id or new_message_id(f"{kind}.{mail.hcp_id or 0}")
    return {"kind": kind, "idempotency_key": mail.key, "hcp_id": mail.hcp_id,
            "campaign_message_id": mail.campaign_message_id, "invitation_id": mail.invitation_id,
            "consent_event_id": mail.consent_event_id, "recipient": mail.message.to,
            "message": _serialise(mail.message), "message_id": message_id[:250], "state": "queued",
            "attempts": 0, "next_attempt_at": now, "locked_until": None, "last_error": None, "created_at": now,
            "sent_at": None}


@dataclass(frozen=True)
class Queued:
    """What ``enqueue_many`` tells about each mail: its outbox row, state and (fixed) Message-ID."""

    id: int
    key: str
    state: str
    message_id: str


def enqueue(session: DbSession, message: EmailMessage, *, key: str, kind: str = "other", hcp_id: int | None = None,
            campaign_message_id: int | None = None, invitation_id: int | None = None,
            consent_event_id: int | None = None) -> MailOutbox:
    """Put one mail in the outbox, in the caller's transaction; it is handed over after the commit.

    ``key`` makes it idempotent: the same key again returns the row already there (a ``failed`` one is
    armed again with this message). ``message.message_id``, when set, is kept; otherwise one is made.
    """
    queued = enqueue_many(session, [OutgoingMail(message, key, hcp_id, campaign_message_id, invitation_id,
                                                 consent_event_id)], kind=kind)[0]
    return session.get_one(MailOutbox, queued.id)


def enqueue_many(session: DbSession, mails: Sequence[OutgoingMail], *, kind: str) -> list[Queued]:
    """``enqueue`` for many mails of one kind in a few statements (a campaign send); results in input order.
    Nothing is decrypted on the way: only the rows of failed mails armed again are loaded."""
    if not mails:
        return []
    now = utcnow()
    rows = [_row(m, kind, now) for m in mails]
    insert_ignoring_conflicts(session, MailOutbox.__table__, rows, ["idempotency_key"], ["id"])
    keys = [m.key for m in mails]
    found = {key: Queued(row_id, key, state, message_id) for row_id, key, state, message_id in session.execute(
        select(MailOutbox.id, MailOutbox.idempotency_key, MailOutbox.state, MailOutbox.message_id)
        .where(among(session, MailOutbox.idempotency_key, keys)))}
    failed = [q.id for q in found.values() if q.state == "failed"]
    if failed:  # asked again for mails that never left: try again with the new message
        by_key = {r["idempotency_key"]: r for r in rows}
        for row in session.scalars(select(MailOutbox).where(MailOutbox.id.in_(failed))
                                   .execution_options(populate_existing=True)):
            fresh = by_key[row.idempotency_key]
            # The Message-ID stays: the earlier attempts may have reached someone after all.
            row.recipient, row.message = fresh["recipient"], fresh["message"]
            row.state, row.attempts, row.next_attempt_at, row.locked_until = "queued", 0, now, None
            found[row.idempotency_key] = Queued(row.id, row.idempotency_key, "queued", row.message_id)
        session.flush()
    _deliver_after_commit(session, list(dict.fromkeys(found[k].id for k in keys if found[k].state == "queued")))
    return [found[k] for k in keys]


def _deliver_after_commit(session: DbSession, ids: list[int]) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not ids or not app.config.get("CRM_MAIL_SEND_AFTER_COMMIT", True):
        return

    def deliver() -> None:
        # A queue task hands them over (a consumer, or at once in huey's immediate mode); the rows are
        # committed, so a queue that cannot be reached only delays them until the sweep or `crm mail send`.
        from crm.jobs.queue import enqueue_mail

        enqueue_mail(app, ids)

    on_commit(session, deliver)


# -- hand-over -------------------------------------------------------------------------------------

def fresh_session() -> Session:
    return db.session.session_factory()


def _lease(app: Flask) -> timedelta:
    per_message = _setting(app, "CRM_MAIL_SEND_TIMEOUT_SECONDS", 30) + 5
    return timedelta(seconds=per_message * CLAIM_BATCH + 60)


def backoff(attempts: int, app: Flask) -> timedelta:
    """Base, 2 x base, 4 x base ... up to the cap, after ``attempts`` failed attempts."""
    base = _setting(app, "CRM_MAIL_RETRY_BASE_SECONDS", 60)
    cap = _setting(app, "CRM_MAIL_RETRY_MAX_SECONDS", 6 * 3600)
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


def _due(now: datetime) -> Any:
    return or_(and_(MailOutbox.state == "queued", MailOutbox.next_attempt_at <= now),
               and_(MailOutbox.state == "sending", MailOutbox.locked_until < now))


def claim(app: Flask, now: datetime, limit: int, ids: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """Take up to ``limit`` due rows for this worker; ``(id, attempt number)`` each, committed."""
    with fresh_session() as s:
        query = (select(MailOutbox.id).where(_due(now)).order_by(MailOutbox.next_attempt_at, MailOutbox.id)
                 .limit(limit).with_for_update(skip_locked=True))
        if ids is not None:
            query = query.where(among(s, MailOutbox.id, list(ids)))
        taken = list(s.scalars(query))
        if not taken:
            s.rollback()
            return []
        s.execute(update(MailOutbox).where(MailOutbox.id.in_(taken), _due(now))
                  .values(state="sending", locked_until=now + _lease(app), attempts=MailOutbox.attempts + 1)
                  .execution_options(synchronize_session=False))
        claimed = [(row_id, attempts) for row_id, attempts in s.execute(
            select(MailOutbox.id, MailOutbox.attempts).where(MailOutbox.id.in_(taken))
            .order_by(MailOutbox.next_attempt_at, MailOutbox.id))]
        s.commit()
    return claimed


def _purpose(s: DbSession, row: MailOutbox) -> str | None:
    """The consent purpose a promotional mail needs (campaign: its template's; invitation: events; survey:
    market research)."""
    from crm.campaigns.models import Campaign, CampaignMessage, EmailTemplate

    if row.kind == "survey":
        return "market_research"
    if row.campaign_message_id is not None:
        return s.scalar(select(EmailTemplate.purpose).join(Campaign, Campaign.template_id == EmailTemplate.id)
                        .join(CampaignMessage, CampaignMessage.campaign_id == Campaign.id)
                        .where(CampaignMessage.id == row.campaign_message_id))
    if row.invitation_id is not None:
        return "events"
    return None


def _load(outbox_id: int, now: datetime) -> tuple[EmailMessage | None, str | None]:
    """The message to hand over, or why it must not leave: consent is checked again at the hand-over, so a
    mail waiting for a retry never reaches an HCP who unsubscribed (or was erased) meanwhile."""
    from crm.consent.services import can_contact_many

    with fresh_session() as s:
        row = s.get(MailOutbox, outbox_id)
        if row is None or row.message is None:
            s.rollback()
            return None, "the message is gone"
        purpose = _purpose(s, row)
        if purpose is not None and row.hcp_id is not None:
            decision = can_contact_many(s, [row.hcp_id], "email", purpose, now)[row.hcp_id]
            if not decision.allowed:
                s.rollback()
                return None, f"not sent: {decision.rule} (consent checked again at the hand-over)"
        data = json.loads(row.message)
        message = EmailMessage(to=row.recipient, subject=data["subject"], text=data["text"], html=data.get("html"),
                               headers=dict(data.get("headers") or {}), message_id=row.message_id)
        s.rollback()
    return message, None


def _follow(s: DbSession, row: MailOutbox, state: str, when: datetime, error: str | None) -> None:
    """The business row shows where its mail is: ``queued``, ``sent`` or ``failed``."""
    from crm.campaigns.models import CampaignMessage
    from crm.events.models import Invitation

    problem = None if state != "failed" else (error or "not delivered")
    if row.campaign_message_id is not None:
        message = s.get(CampaignMessage, row.campaign_message_id)
        if message is not None and message.status in ("queued", "failed", "sent"):
            message.status = state
            message.sent_at = when if state == "sent" else None
            message.detail = None if problem is None else problem[:300]
    if row.invitation_id is not None:
        invitation = s.get(Invitation, row.invitation_id)
        if invitation is not None and invitation.status in ("queued", "failed", "sent"):
            invitation.status = state
            invitation.reason = None if problem is None else f"mail not delivered: {problem}"[:300]


def _record(app: Flask, outbox_id: int, attempt: int, error: str | None, now: datetime, *,
            final: bool = False) -> str:
    """Step 3 for one row; returns ``sent``, ``retry``, ``failed`` or ``lost`` (another worker took the row
    over after this one's lease ran out: it decides). ``final``: the error is not worth a retry."""
    with fresh_session() as s:
        row = s.get(MailOutbox, outbox_id, with_for_update=True, populate_existing=True)
        if row is None or row.state != "sending" or row.attempts != attempt:
            s.rollback()
            return "lost"
        when = utcnow()
        row.locked_until = None
        if error is None:
            row.state, row.sent_at, row.last_error, row.message = "sent", when, None, None
            outcome = "sent"
        else:
            row.last_error = error[:1000]
            if final or attempt >= int(_setting(app, "CRM_MAIL_MAX_ATTEMPTS", 8)):
                row.state, outcome = "failed", "failed"
                if final:  # it will never leave: keep no body, and no address of an erased HCP
                    row.message = None
                    if "hcp-erased" in error:
                        row.recipient = ERASED_RECIPIENT
            else:
                row.state, row.next_attempt_at, outcome = "queued", now + backoff(attempt, app), "retry"
        if outcome != "retry":
            _follow(s, row, row.state, when, error)
        s.commit()
    return outcome


def deliver_pending(app: Flask, *, ids: Iterable[int] | None = None, now: datetime | None = None,
                    limit: int = 1000, trigger: str = "worker") -> Counter[str]:
    """Hand over every mail that is due (or only ``ids``), at most ``limit``; counts per outcome:
    ``sent``, ``retry`` (refused, tried again later), ``failed`` (gave up), ``lost`` (see ``_record``).

    A plain function of the app, so a scheduler can run it; it opens and commits its own transactions.
    """
    now = now or utcnow()
    wanted = None if ids is None else list(dict.fromkeys(ids))
    counts: Counter[str] = Counter()
    sender = get_sender(app)
    done = 0
    while done < limit:
        batch = claim(app, now, min(CLAIM_BATCH, limit - done), wanted)
        if not batch:
            break
        done += len(batch)
        for outbox_id, attempt in batch:
            message, error = _load(outbox_id, utcnow())
            if message is None:
                # Consent withdrawn since the send was decided: the ledger working as it should (the outbox
                # row keeps the reason), not something for an operator to act on; anything else is.
                level = logging.INFO if error and error.startswith("not sent: ") else logging.WARNING
                app.logger.log(level, "mail (outbox %s) dropped: %s", outbox_id, error)
                counts[_record(app, outbox_id, attempt, error, now, final=True)] += 1
                continue
            try:
                sender.send(message)
            except Exception as exc:  # any refusal is a failed attempt of this mail only
                error = f"{type(exc).__name__}: {exc}"
                app.logger.warning("mail %s (outbox %s, %s) not handed over, attempt %s: %s",
                                   message.message_id, outbox_id, trigger, attempt, error)
            counts[_record(app, outbox_id, attempt, error, now)] += 1
    return counts


# -- operators -------------------------------------------------------------------------------------

def forget_hcp(session: DbSession, hcp_id: int) -> int:
    """Erasure (GDPR Art. 17): the outbox keeps no address and no message of mails to the HCP, and a mail not
    yet handed over never leaves (``failed``, and its campaign recipient or invitation says so). Returns how
    many rows were cleared. A worker already handing one over finds the row taken from it (``lost``)."""
    when = utcnow()
    rows = list(session.scalars(select(MailOutbox).where(MailOutbox.hcp_id == hcp_id)))
    for row in rows:
        if row.state in ("queued", "sending"):
            row.state, row.locked_until = "failed", None
            row.last_error = "hcp-erased: the HCP was erased before the hand-over"
            _follow(session, row, "failed", when, row.last_error)
        row.recipient, row.message = ERASED_RECIPIENT, None
    session.flush()
    return len(rows)


def retry(session: DbSession, actor: Any, outbox_ids: Sequence[int] | None = None) -> list[MailOutbox]:
    """Arm ``failed`` mails again (every one, or those of ``outbox_ids``): attempts from zero, due now, and
    the business rows back to ``queued``. Audited. Handing them over is the caller's (``deliver_pending``)."""
    query = select(MailOutbox).order_by(MailOutbox.id)
    if outbox_ids is None:
        rows = list(session.scalars(query.where(MailOutbox.state == "failed")))
    else:
        rows = list(session.scalars(query.where(MailOutbox.id.in_(list(outbox_ids)))))
        missing = sorted(set(outbox_ids) - {r.id for r in rows})
        if missing:
            raise NotFound(f"No mail with outbox id {', '.join(map(str, missing))}.")
        not_failed = [f"{r.id} ({r.state})" for r in rows if r.state != "failed"]
        if not_failed:
            raise Conflict(f"Only failed mails can be retried; not: {', '.join(not_failed)}.")
    now = utcnow()
    for row in rows:
        before = {"state": row.state, "attempts": row.attempts, "last_error": row.last_error}
        row.state, row.attempts, row.next_attempt_at, row.locked_until = "queued", 0, now, None
        _follow(session, row, "queued", now, None)
        audit.record(session, actor, "mail.retry", "mail_outbox", row.id,
                     audit.diff(before, {"state": "queued", "attempts": 0, "last_error": row.last_error}))
    session.flush()
    return rows


def summary(session: DbSession) -> dict[str, int]:
    """How many mails are in each state."""
    from sqlalchemy import func

    return {state: n for state, n in session.execute(
        select(MailOutbox.state, func.count()).group_by(MailOutbox.state).order_by(MailOutbox.state))}


def state_of(session: DbSession, *, consent_event_ids: Sequence[int]) -> dict[int, str]:
    """The mail state of double opt-in requests, by their ``requested`` consent event."""
    if not consent_event_ids:
        return {}
    return {event_id: state for event_id, state in session.execute(
        select(MailOutbox.consent_event_id, MailOutbox.state)
        .where(among(session, MailOutbox.consent_event_id, list(consent_event_ids)))) if event_id is not None}
