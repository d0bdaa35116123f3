"""The email adapter listens to consent: the double opt-in confirmation mail (no advertising in it) and
the data-subject download link mailed to the HCP's address on file.

Consent does not import integrations; it sends ``consent_confirmation_requested`` and the mail is
built here and handed over after the commit.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template

from crm import signals
from crm.db import on_commit
from crm.integrations.email import EmailMessage, get_sender

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
    sender = get_sender(current_app._get_current_object())  # type: ignore[attr-defined]
    logger = current_app.logger

    def deliver() -> None:
        # The data is committed: a failed hand-over must not turn the request into an error. The
        # request stays `pending`; granting again sends a fresh link.
        try:
            sender.send(message)
        except Exception:
            logger.exception("double opt-in confirmation mail for consent event %s was not handed over", event.id)

    on_commit(session, deliver)


signals.consent_confirmation_requested.connect(send_confirmation)


def send_data_export_link(hcp_id: Any, *, session: Any, to: str, name: str, download_url: str, expires_at: Any,
                          **_: Any) -> None:
    """The one place the data-subject download link is mailed (to the address on file, after the commit)."""
    context = {"name": name, "download_url": download_url,
               "expires": expires_at.strftime("%Y-%m-%d %H:%M UTC")}
    message = EmailMessage(
        to=to,
        subject="Your copy of the data we hold about you",
        text=render_template("consent/mail/data_export.txt", **context),
        html=render_template("consent/mail/data_export.html", **context),
        headers={"Auto-Submitted": "auto-generated"},
    )
    sender = get_sender(current_app._get_current_object())  # type: ignore[attr-defined]
    logger = current_app.logger

    def deliver() -> None:
        # Committed already: a failed hand-over is logged; asking again once the link expired sends a new one.
        try:
            sender.send(message)
        except Exception:
            logger.exception("data-subject download link for HCP %s was not handed over", hcp_id)

    on_commit(session, deliver)


signals.data_export_requested.connect(send_data_export_link)
