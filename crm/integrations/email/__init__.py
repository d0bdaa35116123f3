"""Email sending behind one interface; the backend is chosen by ``CRM_EMAIL_BACKEND``.

``get_sender(app).send(EmailMessage(...))`` returns once the mail is handed over (raises otherwise).
Application code does not call it directly: it puts the mail in the mail outbox with
``crm.mail.services.enqueue(session, message, key=..., kind=...)``, which hands it over after the commit
and retries a refusal.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from crm.integrations.email.base import EmailError, EmailMessage, EmailSender, build_mime
from crm.integrations.email.outbox import FileOutboxSender
from crm.integrations.email.smtp import SmtpSender

_BACKENDS: dict[str, Callable[[Flask], EmailSender]] = {}


def register_backend(name: str, factory: Callable[[Flask], EmailSender]) -> None:
    _BACKENDS[name] = factory


def get_sender(app: Flask) -> EmailSender:
    """The configured sender, built once per app."""
    sender = app.extensions.get("crm_email_sender")
    if sender is None:
        name = app.config.get("CRM_EMAIL_BACKEND", "file")
        try:
            factory = _BACKENDS[name]
        except KeyError as exc:
            raise EmailError(f"unknown CRM_EMAIL_BACKEND {name!r}; known: {', '.join(sorted(_BACKENDS))}") from exc
        sender = app.extensions["crm_email_sender"] = factory(app)
    return sender


register_backend("file", lambda app: FileOutboxSender(app.config["CRM_OUTBOX_DIR"], app.config["CRM_MAIL_FROM"]))
register_backend("smtp", lambda app: SmtpSender(app.config["CRM_SMTP_URL"], app.config["CRM_MAIL_FROM"]))

__all__ = ["EmailError", "EmailMessage", "EmailSender", "FileOutboxSender", "SmtpSender", "build_mime",
           "get_sender", "register_backend"]
