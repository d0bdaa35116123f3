"""Consent request and response shapes (shape only: the rules live in ``crm.consent.services``)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm.consent.models import ALL, CONSENT_CHANNELS, EVENT_TYPES, LEDGER_SOURCES, PURPOSES, STATES
from crm.schemas import PageArgs, QuerySchema, StrictSchema, UTCDateTime


class ConsentEvidenceSchema(StrictSchema):
    signature = fields.String(metadata={"description": "visit: the HCP's signature, a PNG data URL"})
    form_id = fields.String(metadata={"description": "paper_form: the scanned form's id"})
    recording_id = fields.String(metadata={"description": "call_centre: the call recording's id"})
    ip_address = fields.String(metadata={"description": "web_form / email_link"})
    user_agent = fields.String(metadata={"description": "web_form / email_link"})
    reference = fields.String(metadata={"description": "import: the source record or batch reference"})
    event_id = fields.String(metadata={"description": "esp: the email platform's event id"})
    note = fields.String()


class ConsentCaptureSchema(StrictSchema):
    channel = fields.String(required=True, validate=validate.OneOf((*CONSENT_CHANNELS, ALL)))
    purpose = fields.String(required=True, validate=validate.OneOf((*PURPOSES, ALL)))
    action = fields.String(required=True, validate=validate.OneOf(("grant", "withdraw")))
    source = fields.String(required=True, validate=validate.OneOf(LEDGER_SOURCES))
    notice_version = fields.String(load_default=None, metadata={"description": "required for a grant"})
    evidence = fields.Nested(ConsentEvidenceSchema, load_default=dict)
    occurred_at = UTCDateTime(load_default=None, metadata={"description": "default: now; never in the future"})
    external_id = fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                                metadata={"description": "idempotency key of an outside system"})


class ConsentEventSchema(Schema):
    id = fields.Integer()
    hcp_id = fields.Integer()
    channel = fields.String()
    purpose = fields.String()
    event = fields.String(metadata={"enum": list(EVENT_TYPES)})
    occurred_at = UTCDateTime()
    recorded_at = UTCDateTime()
    source = fields.String()
    captured_by = fields.Dict(allow_none=True)
    notice_version = fields.String(allow_none=True)
    notice_text_hash = fields.String(allow_none=True)
    valid_until = UTCDateTime(allow_none=True)
    refers_to_event_id = fields.Integer(allow_none=True)
    merged_from_event_id = fields.Integer(allow_none=True)
    origin_hcp_id = fields.Integer()
    evidence_fields = fields.List(fields.String())
    evidence_hash = fields.String(allow_none=True, metadata={
        "description": "digest of the evidence (compliance and admin only); see evidence_hash_scheme"})
    evidence_hash_scheme = fields.String(allow_none=True, metadata={
        "description": "hmac-sha256 (keyed) or sha256 (events recorded before the keyed digest); "
                       "compliance and admin only"})
    evidence_verified = fields.Boolean(allow_none=True, metadata={
        "description": "the evidence still matches its digest (compliance and admin only; null without evidence)"})
    evidence = fields.Dict(allow_none=True, metadata={"description": "compliance and admin only"})
    evidence_visible = fields.Boolean()
    evidence_rule = fields.String()


class ConsentPairStateSchema(Schema):
    channel = fields.String()
    purpose = fields.String()
    state = fields.String(metadata={"enum": list(STATES)})
    since = UTCDateTime(allow_none=True)
    valid_until = UTCDateTime(allow_none=True)
    source = fields.String(allow_none=True)
    event_ids = fields.List(fields.Integer())


class ConsentStatesSchema(Schema):
    hcp_id = fields.Integer()
    at = UTCDateTime(allow_none=True)
    items = fields.List(fields.Nested(ConsentPairStateSchema))
    next_cursor = fields.String(allow_none=True)


class ConsentCaptureResultSchema(Schema):
    event = fields.Nested(ConsentEventSchema)
    state = fields.Nested(ConsentPairStateSchema, allow_none=True)
    double_opt_in = fields.Boolean()


class ConsentHistoryQuerySchema(PageArgs):
    at = UTCDateTime(load_default=None, metadata={"description": "the state at that instant instead of the ledger"})
    channel = fields.String(load_default=None, validate=validate.OneOf((*CONSENT_CHANNELS, ALL)))
    purpose = fields.String(load_default=None, validate=validate.OneOf((*PURPOSES, ALL)))


class ConsentHistorySchema(Schema):
    at = UTCDateTime(allow_none=True)
    items = fields.List(fields.Dict())
    next_cursor = fields.String(allow_none=True)


class ContactDecisionQuerySchema(QuerySchema):
    channel = fields.String(required=True, validate=validate.OneOf(CONSENT_CHANNELS))
    purpose = fields.String(required=True, validate=validate.OneOf(PURPOSES))
    at = UTCDateTime(load_default=None)


class ContactDecisionSchema(Schema):
    hcp_id = fields.Integer()
    channel = fields.String()
    purpose = fields.String()
    at = UTCDateTime()
    allowed = fields.Boolean()
    rule = fields.String()
    reason = fields.String()
    state = fields.String()
    valid_until = UTCDateTime(allow_none=True)
    evidence_event_ids = fields.List(fields.Integer())


class ConsentNoticeCreateSchema(StrictSchema):
    language = fields.String(required=True, validate=validate.Length(min=2, max=8))
    country = fields.String(load_default=None, validate=validate.Length(equal=2))
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    text = fields.String(required=True, validate=validate.Length(min=1, max=50_000))


class ConsentNoticeUpdateSchema(StrictSchema):
    title = fields.String(validate=validate.Length(min=1, max=200))
    text = fields.String(validate=validate.Length(min=1, max=50_000))


class ConsentNoticeSchema(Schema):
    id = fields.Integer()
    version = fields.String()
    language = fields.String()
    country = fields.String(allow_none=True)
    title = fields.String()
    text = fields.String()
    text_hash = fields.String()
    status = fields.String()
    created_at = UTCDateTime()
    activated_at = UTCDateTime(allow_none=True)
    retired_at = UTCDateTime(allow_none=True)


class ConsentNoticeQuerySchema(QuerySchema):
    language = fields.String(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(("draft", "active", "retired")))


class ConsentNoticePageSchema(Schema):
    items = fields.List(fields.Nested(ConsentNoticeSchema))
    next_cursor = fields.String(allow_none=True)


class ConsentReviewCreateSchema(StrictSchema):
    outcome = fields.String(required=True, validate=validate.OneOf(("ok", "issue")))
    note = fields.String(required=True, validate=validate.Length(min=1, max=5000))
    event_id = fields.Integer(load_default=None)


class ConsentReviewSchema(Schema):
    id = fields.Integer()
    hcp_id = fields.Integer()
    event_id = fields.Integer(allow_none=True)
    outcome = fields.String()
    note = fields.String()
    reviewer = fields.Dict()
    created_at = UTCDateTime()


class ConsentReviewPageSchema(Schema):
    items = fields.List(fields.Nested(ConsentReviewSchema))
    next_cursor = fields.String(allow_none=True)


class ConsentGapQuerySchema(PageArgs):
    since = UTCDateTime(load_default=None)
    until = UTCDateTime(load_default=None)


class ConsentGapSchema(Schema):
    interaction_id = fields.Integer()
    occurred_at = UTCDateTime()
    channel = fields.String()
    kind = fields.String()
    owner_role = fields.String()
    hcp_ids = fields.List(fields.Integer())
    needed = fields.Dict(allow_none=True)


class ConsentGapPageSchema(Schema):
    items = fields.List(fields.Nested(ConsentGapSchema))
    next_cursor = fields.String(allow_none=True)


class ConsentExpiringQuerySchema(QuerySchema):
    within_days = fields.Integer(load_default=60, validate=validate.Range(min=0, max=3660))
    territory = fields.String(load_default=None, metadata={"description": "territory code"})
    include_expired = fields.Boolean(load_default=True)


class ConsentExpiringSchema(Schema):
    hcp_id = fields.Integer()
    hcp_name = fields.String()
    territory = fields.String(allow_none=True)
    channel = fields.String()
    purpose = fields.String()
    state = fields.String()
    valid_until = UTCDateTime(allow_none=True)


class ConsentExpiringListSchema(Schema):
    items = fields.List(fields.Nested(ConsentExpiringSchema))
    next_cursor = fields.String(allow_none=True)


class ConsentCoverageSchema(Schema):
    total_hcps = fields.Integer()
    items = fields.List(fields.Dict())
    next_cursor = fields.String(allow_none=True)
