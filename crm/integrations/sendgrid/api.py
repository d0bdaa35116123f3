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


class IngestOut(Schema):
    received = fields.Integer()
    recorded = fields.Integer(metadata={"description": "new events stored"})
    duplicates = fields.Integer(metadata={"description": "events already stored (replays)"})
    unmatched = fields.Integer(metadata={"description": "new events that match no HCP (kept in the unmatched list)"})
    timeline_items = fields.Integer()
    consent_withdrawals = fields.Integer()
    emails_invalid = fields.Integer()


@bp.post("/events")
@doc("Receive the email platform's events (SendGrid Event Webhook)", tags=["campaigns"],
     body=SendGridEventDoc(many=True), responses={200: IngestOut}, errors=(400, 401, 403, 413, 422), auth=False)
def receive_events():
    """All or nothing: any unusable event makes the answer 422 with per-event errors and nothing is stored.
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
    events = parse_batch(body, utcnow())
    result = ingest_events(db.session, events)
    return IngestOut().dump(result), 200
