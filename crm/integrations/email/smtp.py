"""SMTP delivery: ``CRM_SMTP_URL`` like ``smtp://user:pass@host:587?starttls=1`` or ``smtps://host:465``."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from crm.integrations.email.base import EmailError, EmailMessage, build_mime

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    ssl: bool
    starttls: bool
    timeout: float

    @classmethod
    def from_url(cls, url: str, timeout: float = 30.0) -> SmtpSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise EmailError("CRM_SMTP_URL must look like smtp://user:pass@host:port or smtps://host:port")
        query = parse_qs(parts.query)
        use_ssl = parts.scheme == "smtps"
        try:
            port = parts.port or (465 if use_ssl else 25)
        except ValueError as exc:
            raise EmailError("CRM_SMTP_URL has an invalid port") from exc
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ssl=use_ssl,
            starttls=query.get("starttls", ["0"])[-1].lower() in _TRUE,
            timeout=timeout,
        )


class SmtpSender:
    """One connection per message: simple, and right for the volumes of a country affiliate."""

    def __init__(self, url: str, from_addr: str, *, starttls: bool | None = None, timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = SmtpSettings.from_url(url, timeout)
        self.starttls = self.settings.starttls if starttls is None else starttls
        self.from_addr = from_addr
        self.ssl_context = ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.ssl:
            return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self.ssl_context)
        return smtplib.SMTP(s.host, s.port, timeout=s.timeout)

    def send(self, message: EmailMessage) -> str:
        mime = build_mime(message, self.from_addr)
        try:
            with self._connect() as conn:
                conn.ehlo()
                if self.starttls:
                    conn.starttls(context=self.ssl_context)
                    conn.ehlo()
                if self.settings.username:
                    conn.login(self.settings.username, self.settings.password or "")
                refused = conn.send_message(mime)
        except (smtplib.SMTPException, OSError) as exc:
            raise EmailError(f"SMTP delivery to {self.settings.host}:{self.settings.port} failed: {exc}") from exc
        if refused:
            raise EmailError(f"the SMTP server refused recipients: {', '.join(refused)}")
        return str(mime["Message-ID"])
