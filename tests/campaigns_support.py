"""Helpers shared by the campaign and email-event tests: consent that holds, templates, campaigns, signing."""

from __future__ import annotations

import json
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from crm.access.policy import Viewer
from crm.campaigns import services
from crm.consent import services as consent
from crm.consent.models import ConsentToken
from crm.integrations.sendgrid.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.consent_support import grant

HTML = "<p>Dear {{ hcp.first_name }} {{ hcp.last_name }},</p><p>News about Cardiozol.</p>"
TEXT = "Dear {{ hcp.first_name }} {{ hcp.last_name }},\nNews about Cardiozol."


def viewer_of(user: Any) -> Viewer:
    return Viewer(user.id, user.role, frozenset())


def email_consent(db: Any, hcp: Any, purpose: str = "promotional") -> None:
    """A granted email consent; promotional goes through the double opt-in confirmation, as in real life."""
    event = grant(db, hcp, channel="email", purpose=purpose, source="paper_form")
    if event.event_type == "requested":
        token = db.scalar(select(ConsentToken).where(ConsentToken.event_id == event.id,
                                                     ConsentToken.purpose == "confirm"))
        consent.confirm(db, token, ip_address="203.0.113.9", user_agent="Mozilla/5.0 (test)")


def send_now(db: Any, marketer: Any, campaign: Any) -> Any:
    """``send_campaign`` and, in the same transaction, the hand-over its job would do after the commit (for
    service-level tests that look at the outbox before any commit)."""
    from crm.campaigns.sending import hand_over_now

    result = services.send_campaign(db, marketer, viewer_of(marketer), campaign)
    hand_over_now(db, marketer, campaign.id)
    return result


def make_template(db: Any, marketer: Any, compliance: Any | None = None, **overrides: Any) -> Any:
    data: dict[str, Any] = {"name": f"Cardiozol launch {time.monotonic_ns()}",
                            "subject": "News for {{ hcp.last_name }}", "html_body": HTML, "text_body": TEXT,
                            "purpose": "promotional", "language": "en", "products": []}
    data.update(overrides)
    template = services.create_template(db, marketer, viewer_of(marketer), data)
    if compliance is not None:
        services.approve_template(db, compliance, viewer_of(compliance), template)
    return template


def make_campaign(db: Any, marketer: Any, template: Any, hcp_ids: list[int], name: str = "Spring launch") -> Any:
    return services.create_campaign(db, marketer, viewer_of(marketer),
                                    {"name": name, "template_id": template.id, "audience": {"hcp_ids": hcp_ids}})


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def signed(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    ts = timestamp or str(int(time.time()))
    return {SIGNATURE_HEADER: sign(key, ts, body), TIMESTAMP_HEADER: ts, "Content-Type": "application/json"}


def event(sg_event_id: str, kind: str = "delivered", **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"sg_event_id": sg_event_id, "event": kind, "timestamp": int(time.time()) - 60,
                           "sg_message_id": f"msg-{sg_event_id}"}
    out.update(fields)
    return out


def body(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


def campaign_mails(outbox: Any, address: str) -> list[Any]:
    """Campaign mails to ``address`` in the file outbox (double opt-in confirmations left out)."""
    from tests.consent_support import mails_to

    return [m for m in mails_to(outbox, address) if m["X-SMTPAPI"] is not None]


def unsubscribe_url(mail: Any) -> str:
    """The one-click HTTPS link of a mail's ``List-Unsubscribe: <https://...>, <mailto:...>``."""
    uris = [u.strip().strip("<>") for u in mail["List-Unsubscribe"].split(",")]
    [url] = [u for u in uris if u.startswith(("http://", "https://"))]
    return url
