"""The email adapter listens to consent: the double opt-in confirmation mail (no advertising in it) and
the data-subject download link mailed to the HCP's address on file.

Consent does not import integrations; it sends ``consent_confirmation_requested`` and the mail is
built here and put in the mail outbox (``crm.mail``), which hands it over after the commit.
"""

from __future__ import annotations

from typing import Any

from flask import render_template

from crm import signals
from crm.integrations.email import EmailMessage
from crm.mail.services import enqueue

PAIR_LABELS = {
    ("email", "promotional"): "information about our products by email",
}


def send_confirmation(event: Any, *, session: Any, to: str, name: str, confirm_url: str, preferences_url: str,
                      channel: str, purpose: str, **_: Any) -> None:
    what = PAIR_LABELS.get((channel, purpose), f"{purpose.replace('_', ' ')} messages by {channel}")
    context = {"name": name, "what": what, "confirm_url": confirm_url, "preferences_url": preferences_url}
    message = EmailMessage(
        to=to,
        subject="Please confirm your email preferences",
        text=render_template("consent/mail/confirm.txt", **context),
        html=render_template("consent/mail/confirm.html", **context),
        headers={"Auto-Submitted": "auto-generated"},
    )
    # Into the mail outbox with the request: handed over after the commit, retried when refused. The
    # request stays `pending` until the HCP confirms; granting again sends a fresh link.
    enqueue(session, message, key=f"double_opt_in:{event.id}", kind="double_opt_in", hcp_id=event.hcp_id,
            consent_event_id=event.id)


signals.consent_confirmation_requested.connect(send_confirmation)


def send_data_export_link(hcp_id: Any, *, session: Any, to: str, name: str, download_url: str, expires_at: Any,
                          **_: Any) -> None:
    """The one place the data-subject download link is mailed (to the address on file, through the outbox)."""
    context = {"name": name, "download_url": download_url,
               "expires": expires_at.strftime("%Y-%m-%d %H:%M UTC")}
    message = EmailMessage(
        to=to,
        subject="Your copy of the data we hold about you",
        text=render_template("consent/mail/data_export.txt", **context),
        html=render_template("consent/mail/data_export.html", **context),
        headers={"Auto-Submitted": "auto-generated"},
    )
    # Into the mail outbox like every other mail: handed over after the commit, retried when refused. One
    # link is open at a time per HCP, so its expiry names the request.
    enqueue(session, message, key=f"data_export:{hcp_id}:{expires_at.isoformat()}", kind="other", hcp_id=hcp_id)


signals.data_export_requested.connect(send_data_export_link)
