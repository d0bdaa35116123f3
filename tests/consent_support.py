"""Helpers shared by the consent tests: an active notice, evidence per source, outbox reading."""

from __future__ import annotations

import base64
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from crm.consent import services

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()

EVIDENCE = {
    "visit": {"signature": PNG},
    "paper_form": {"form_id": "PF-2026-0001"},
    "call_centre": {"recording_id": "REC-42"},
    "web_form": {"ip_address": "203.0.113.9", "user_agent": "Mozilla/5.0 (test)"},
    "email_link": {"ip_address": "203.0.113.9", "user_agent": "Mozilla/5.0 (test)"},
    "import": {"reference": "batch-7/row-3"},
    "esp": {"event_id": "sg-123"},
}


def active_notice(db: Any, language: str = "en", text: str = "We may contact you about our products.") -> Any:
    notice = services.create_notice(db, None, language=language, title="Contact consent", text=text)
    return services.activate_notice(db, None, notice)


def grant(db: Any, hcp: Any, channel: str = "visit", purpose: str = "promotional", source: str = "paper_form",
          actor: Any = None, **kw: Any) -> Any:
    notice = kw.pop("notice", None) or services.active_notice(db, "en") or active_notice(db)
    event, _ = services.grant_consent(db, actor, hcp, channel, purpose, source, notice_version=notice.version,
                                      evidence=kw.pop("evidence", EVIDENCE[source]), **kw)
    return event


def withdraw(db: Any, hcp: Any, channel: str = "visit", purpose: str = "promotional", source: str = "paper_form",
             actor: Any = None, **kw: Any) -> Any:
    event, _ = services.withdraw_consent(db, actor, hcp, channel, purpose, source, **kw)
    return event


def mails_to(outbox: str | Path, address: str) -> list[Any]:
    folder = Path(outbox)
    if not folder.exists():
        return []
    out = []
    for path in sorted(folder.glob("*.eml")):
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if msg["To"] == address:
            out.append(msg)
    return out


def link_token(message: Any, marker: str) -> str:
    """The token of the first link containing ``/consent/<marker>/`` in a mail's text part."""
    text = message.get_body(preferencelist=("plain",)).get_content()
    for word in text.split():
        if f"/consent/{marker}/" in word:
            return word.rsplit("/", 1)[1]
    raise AssertionError(f"no {marker} link in the mail")
