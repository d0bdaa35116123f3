"""``POST /api/v1/integrations/email/events``: the SendGrid Event Webhook.

No bearer token (the platform has none) and no CSRF (no cookies): when ``CRM_ESP_WEBHOOK_PUBLIC_KEY`` is
set, the ECDSA signature over the timestamp and the raw body is the authentication, and anything unsigned
or badly signed is refused before the body is parsed, so nothing of it is stored. In production an
unconfigured key refuses every request (anyone could otherwise forge unsubscribes and bounces).
"""

from __future__ import annotations

from flask import Blueprint, current_app, request
from marshmallow import Schema, fields

from crm.campaigns.engagement import ingest_events
from crm.db import utcnow
from crm.errors import Forbidden
from crm.extensions import db
from crm.integrations.sendgrid import signature
from crm.integrations.sendgrid.events import parse_batch
from crm.openapi import doc

bp = Blueprint("email_events_api", __name__, url_prefix="/api/v1/integrations/email")


class SendGridEventDoc(Schema):
    """One event of the array (documentation of the platform's format; more fields are allowed)."""

    sg_event_id = fields.String(required=True, metadata={"description": "the external id; replays add nothing"})
    event = fields.String(required=True, metadata={
        "description": "processed, delivered, open, click, bounce, dropped, deferred, spamreport, unsubscribe, "
                       "group_unsubscribe (others are kept as unknown)"})
    timestamp = fields.Float(required=True, metadata={"description": "Unix time in seconds"})
    email = fields.String()
    hcp_id = fields.String(metadata={"description": "custom argument set at send time"})
    campaign_id = fields.String(metadata={"description": "custom argument set at send time"})
    reason = fields.String()
    type = fields.String(metadata={"description": "bounce type: bounce or blocked"})
    url = fields.String()


class RejectedEventOut(Schema):
    index = fields.Integer(metadata={"description": "position of the event in the array, from 0"})
    sg_event_id = fields.String(allow_none=True, metadata={"description": "the event's id, when it had one"})
    reason = fields.String(metadata={"description": "why the event cannot be used"})


class IngestOut(Schema):
    received = fields.Integer(metadata={"description": "events in the array, rejected ones included"})
    recorded = fields.Integer(metadata={"description": "new events stored"})
    duplicates = fields.Integer(metadata={"description": "events already stored (replays)"})
    unmatched = fields.Integer(metadata={"description": "new events that match no HCP (kept in the unmatched list)"})
    timeline_items = fields.Integer()
    consent_withdrawals = fields.Integer()
    emails_invalid = fields.Integer()
    rejected = fields.List(fields.Nested(RejectedEventOut), metadata={
        "description": "events that cannot be used and were not stored (the others are); sending them again "
                       "does not help"})


@bp.post("/events")
@doc("Receive the email platform's events (SendGrid Event Webhook)", tags=["campaigns"],
     body=SendGridEventDoc(many=True), responses={200: IngestOut}, errors=(400, 401, 403, 413, 422), auth=False)
def receive_events():
    """Each event on its own: the usable events are recorded (exactly once, by sg_event_id) and the answer is
    200 even when some events cannot be used; those are listed in ``rejected`` (index, sg_event_id when
    there is one, reason), logged, and not stored. A body that is not JSON is 400, not an array 422.
    Signed requests only when CRM_ESP_WEBHOOK_PUBLIC_KEY is set (401 unsigned, 403 bad signature or a
    timestamp outside the tolerance)."""
    body = request.get_data(cache=False)
    key = current_app.config.get("CRM_ESP_WEBHOOK_PUBLIC_KEY") or ""
    if key:
        signature.verify(key, request.headers, body,
                         tolerance=int(current_app.config.get("CRM_ESP_WEBHOOK_TOLERANCE_SECONDS",
                                                              signature.DEFAULT_TOLERANCE_SECONDS)))
    elif current_app.config.get("CRM_ENV") == "production":
        raise Forbidden("The email event webhook is not configured: set CRM_ESP_WEBHOOK_PUBLIC_KEY.",
                        rule="esp-webhook:not-configured")
    batch = parse_batch(body, utcnow())
    for rejected in batch.rejected:
        current_app.logger.warning("email event webhook: event %d (sg_event_id %r) rejected: %s",
                                   rejected.index, rejected.sg_event_id, rejected.reason)
    result = ingest_events(db.session, batch.events)
    out = IngestOut().dump(result)
    out["received"] = batch.received
    out["rejected"] = RejectedEventOut(many=True).dump(batch.rejected)
    return out, 200
