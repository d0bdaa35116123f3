"""The email-sending interface: a message, a sender, and the one place a MIME message is built."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage as MimeMessage
from email.policy import SMTP, SMTPUTF8, Policy
from typing import Any, Protocol


@dataclass(frozen=True)
class EmailMessage:
    """What the application wants sent. ``html`` is optional; ``headers`` are extra headers
    (``List-Unsubscribe`` ...). Header values with line breaks are refused when the MIME is built."""

    to: str
    subject: str
    text: str
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Set by callers that must know the Message-ID before the hand-over (campaign sends record it);
    # otherwise the sender makes one.
    message_id: str | None = None


class EmailSender(Protocol):
    """Hands one message over for delivery and returns its Message-ID; raises when it cannot."""

    def send(self, message: EmailMessage) -> str: ...


class EmailError(RuntimeError):
    """A message could not be built or handed over."""


_RESERVED = frozenset({"from", "to", "subject", "date", "message-id", "content-type",
                       "content-transfer-encoding", "mime-version"})


class _UriListHeader(UnstructuredHeader):
    """``List-Unsubscribe`` (RFC 2369): a list of ``<URI>``s that mail clients parse as written. The
    default folding turns a line longer than 78 characters without spaces (a signed link) into RFC 2047
    encoded words, which no client reads as a URI. Written as given instead: ASCII only, folded only
    between its URIs, each line within RFC 5322's 998 characters."""

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        if not value.isascii():
            raise ValueError("List-Unsubscribe must be ASCII (a list of <URI>s)")
        super().parse(value, kwds)

    def fold(self, *, policy: Policy) -> str:
        # ``name`` comes from BaseHeader, which the registry mixes in when it builds the header class.
        name: str = self.name  # type: ignore[attr-defined]
        uris = [u.strip() for u in str(self).split(">,")]
        parts = [u if u.endswith(">") else u + ">" for u in uris[:-1]] + uris[-1:]
        lines, line = [], f"{name}: {parts[0]}"
        for part in parts[1:]:
            if len(line) + len(part) + 2 > 998:
                lines.append(line + ",")
                line = " " + part
            else:
                line += ", " + part
        lines.append(line)
        if any(len(x) > 998 for x in lines):
            raise ValueError(f"{name}: a URI longer than a header line may be")
        return policy.linesep.join(lines) + policy.linesep


def _headers() -> HeaderRegistry:
    registry = HeaderRegistry()
    registry.map_to_type("list-unsubscribe", _UriListHeader)  # type: ignore[arg-type]  # BaseHeader mixed in
    return registry


_SMTP = SMTP.clone(header_factory=_headers())
_SMTPUTF8 = SMTPUTF8.clone(header_factory=_headers())


def build_mime(message: EmailMessage, from_addr: str) -> MimeMessage:
    """A standards-conforming MIME message (text, plus an HTML alternative when there is one)."""
    # Internationalised addresses (RFC 6531) cannot be encoded words; they need the SMTPUTF8 form.
    mime = MimeMessage(policy=_SMTP if (message.to + from_addr).isascii() else _SMTPUTF8)
    try:
        mime["From"] = from_addr
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = email.utils.formatdate(localtime=False)
        domain = from_addr.rpartition("@")[2].strip(">") or "localhost"
        mime["Message-ID"] = message.message_id or email.utils.make_msgid(domain=domain)
        for name, value in message.headers.items():
            if name.lower() in _RESERVED:
                raise EmailError(f"header {name} is set by the sender, not the message")
            mime[name] = value
    except ValueError as exc:  # the email package refuses CR/LF in header values (header injection)
        raise EmailError(str(exc)) from exc
    mime.set_content(message.text)
    if message.html:
        mime.add_alternative(message.html, subtype="html")
    return mime
