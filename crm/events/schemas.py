"""Input and output schemas of the events API (shape only; rules that need the database are in services)."""

from __future__ import annotations

from decimal import Decimal

from marshmallow import Schema, fields, validate

from crm.events.models import (
    ATTENDANCE_STATUSES,
    CAP_ACTIONS,
    EVENT_SENSITIVITIES,
    EVENT_TYPES,
    INVITATION_CHANNELS,
    TRANSFER_KINDS,
)
from crm.schemas import PageArgs, QuerySchema, StrictSchema, UTCDateTime

_TEXT = validate.Length(max=300)
_ID = validate.Range(min=1)
# Amounts are Numeric(14, 3) columns: more would overflow the column (a database error, not a 422).
_MONEY = validate.Range(min=Decimal("-99999999999.999"), max=Decimal("99999999999.999"))


class EventIn(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=300))
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    starts_at = UTCDateTime(required=True)
    ends_at = UTCDateTime(required=True, metadata={"description": "must be after starts_at"})
    venue = fields.String(load_default=None, allow_none=True, validate=_TEXT)
    url = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))
    products = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list)
    organiser = fields.String(required=True, validate=validate.Length(min=1, max=200))
    sensitivity = fields.String(load_default="standard", validate=validate.OneOf(EVENT_SENSITIVITIES),
                                metadata={"description": "a medical round table is `medical`"})
    country = fields.String(load_default="US", validate=validate.Length(equal=2))
    external_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=120),
                                metadata={"description": "the event platform's id; a repeat answers 200"})


class ReadVisibilityOut(Schema):
    level = fields.String()
    rule = fields.String()
    reason = fields.String()


class EventOut(Schema):
    id = fields.Integer()
    name = fields.String()
    type = fields.String()
    starts_at = UTCDateTime()
    ends_at = UTCDateTime()
    venue = fields.String(allow_none=True)
    url = fields.String(allow_none=True)
    products = fields.List(fields.String())
    organiser = fields.String()
    sensitivity = fields.String()
    country = fields.String()
    external_id = fields.String(allow_none=True)
    attendance_interaction_id = fields.Integer(allow_none=True)
    redacted = fields.Boolean(metadata={"description": "a medical event read by field force or marketing: its "
                                                      "name, place, organiser and products are withheld"})
    redaction_reason = fields.String(allow_none=True)
    visibility = fields.Nested(ReadVisibilityOut)


class EventPage(Schema):
    items = fields.List(fields.Nested(EventOut))
    next_cursor = fields.String(allow_none=True)


class EventListArgs(PageArgs):
    upcoming = fields.Boolean(load_default=False)


class InvitationIn(StrictSchema):
    hcp_ids = fields.List(fields.Integer(validate=_ID), required=True, validate=validate.Length(min=1, max=2000))
    channel = fields.String(load_default="email", validate=validate.OneOf(INVITATION_CHANNELS),
                            metadata={"description": "`email` checks consent (email, events) and sends a mail"})


class InvitationSkippedOut(Schema):
    hcp_id = fields.Integer()
    reason = fields.String()
    rule = fields.String()


class InvitationCapWarningOut(Schema):
    hcp_id = fields.Integer()
    warning = fields.String(allow_none=True)


class InvitationResultOut(Schema):
    sent = fields.Integer()
    sent_hcp_ids = fields.List(fields.Integer())
    skipped = fields.List(fields.Nested(InvitationSkippedOut))
    cap_warnings = fields.List(fields.Nested(InvitationCapWarningOut))


class InvitationOut(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    hcp_id = fields.Integer()
    channel = fields.String()
    status = fields.String()
    reason = fields.String(allow_none=True)
    rule = fields.String(allow_none=True)
    invited_at = UTCDateTime()
    interaction_id = fields.Integer(allow_none=True)


class RegistrationIn(StrictSchema):
    hcp_id = fields.Integer(required=True, validate=_ID)
    registered_at = UTCDateTime(load_default=None)
    external_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200))


class RegistrationOut(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    hcp_id = fields.Integer()
    registered_at = UTCDateTime()
    source = fields.String()
    external_id = fields.String(allow_none=True)
    interaction_id = fields.Integer(allow_none=True)


class AttendanceIn(StrictSchema):
    hcp_id = fields.Integer(required=True, validate=_ID)
    status = fields.String(required=True, validate=validate.OneOf(ATTENDANCE_STATUSES))
    external_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200),
                                metadata={"description": "the platform's attendee id; idempotent per event"})


class AttendanceOut(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    hcp_id = fields.Integer()
    status = fields.String()
    source = fields.String()
    external_id = fields.String(allow_none=True)
    recorded_at = UTCDateTime()
    no_show_interaction_id = fields.Integer(allow_none=True)
    attended_interaction_id = fields.Integer(allow_none=True)
    redacted = fields.Boolean()
    redaction_reason = fields.String(allow_none=True)


class TransferIn(StrictSchema):
    hcp_id = fields.Integer(required=True, validate=_ID)
    kind = fields.String(required=True, validate=validate.OneOf(TRANSFER_KINDS))
    amount = fields.Decimal(required=True, as_string=True, allow_nan=False, validate=_MONEY,
                            metadata={"description": "greater than zero, at most the currency's decimals"})
    currency = fields.String(required=True, validate=validate.Length(equal=3),
                             metadata={"description": "ISO 4217 code"})
    date = fields.Date(required=True)
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class TransferTotalOut(Schema):
    currency = fields.String()
    amount = fields.String()


class TransferCapStatusCapOut(Schema):
    country = fields.String()
    currency = fields.String()
    annual_cap = fields.String()
    action = fields.String()
    remaining = fields.String()


class TransferCapStatusOut(Schema):
    hcp_id = fields.Integer()
    year = fields.Integer()
    totals = fields.List(fields.Nested(TransferTotalOut))
    cap = fields.Nested(TransferCapStatusCapOut, allow_none=True)
    over_cap = fields.Boolean()
    warning = fields.String(allow_none=True)


class TransferOut(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    hcp_id = fields.Integer()
    kind = fields.String()
    amount = fields.Decimal(as_string=True)
    currency = fields.String()
    date = fields.Date(attribute="paid_on")
    description = fields.String(allow_none=True)
    recorded_at = UTCDateTime()
    redacted = fields.Boolean(metadata={"description": "the note of a transfer at a medical event is withheld "
                                                      "from field force and marketing"})
    redaction_reason = fields.String(allow_none=True)


class TransferResultOut(TransferOut):
    warning = fields.String(allow_none=True)
    annual = fields.Nested(TransferCapStatusOut)


class TransferListOut(Schema):
    items = fields.List(fields.Nested(TransferOut))


class HcpTransfersOut(Schema):
    hcp_id = fields.Integer()
    year = fields.Integer()
    annual = fields.Nested(TransferCapStatusOut)
    items = fields.List(fields.Nested(TransferOut))


class TransferYearArgs(QuerySchema):
    year = fields.Integer(load_default=None, validate=validate.Range(min=2000, max=2100))


class TransferReportArgs(QuerySchema):
    year = fields.Integer(required=True, validate=validate.Range(min=2000, max=2100))
    format = fields.String(load_default="open_payments", validate=validate.OneOf(["open_payments", "efpia"]))
    country = fields.String(load_default=None, validate=validate.Length(equal=2))


class TransferCapIn(StrictSchema):
    currency = fields.String(required=True, validate=validate.Length(equal=3))
    annual_cap = fields.Decimal(required=True, as_string=True, allow_nan=False, validate=_MONEY)
    action = fields.String(required=True, validate=validate.OneOf(CAP_ACTIONS))


class TransferCapOut(Schema):
    country = fields.String()
    currency = fields.String()
    annual_cap = fields.Decimal(as_string=True)
    action = fields.String()


class TransferCapListOut(Schema):
    items = fields.List(fields.Nested(TransferCapOut))


class DisclosureConsentIn(StrictSchema):
    granted = fields.Boolean(required=True)
    occurred_at = UTCDateTime(load_default=None)


class DisclosureConsentOut(Schema):
    id = fields.Integer()
    hcp_id = fields.Integer()
    granted = fields.Boolean()
    occurred_at = UTCDateTime()


class InvitationListOut(Schema):
    items = fields.List(fields.Nested(InvitationOut))


class RegistrationListOut(Schema):
    items = fields.List(fields.Nested(RegistrationOut))


class AttendanceListOut(Schema):
    items = fields.List(fields.Nested(AttendanceOut))
