"""Query and output schemas of the timeline, the feed and the contact-fatigue strip.

The items themselves are built and redacted by the one read path (``crm.access.reads``, ``ITEM_SHAPE``); the output
schemas here describe that shape for the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm.hcps.professions import PROFESSIONS
from crm.schemas import PageArgs, UTCDateTime
from crm.timeline.models import CHANNELS, SENSITIVITIES, SOURCES
from crm.timeline.queries import TimelineFilters


class TimelineQuerySchema(PageArgs):
    channel = fields.List(fields.String(validate=validate.OneOf(CHANNELS)), load_default=list,
                          metadata={"description": "repeatable; any of them matches"})
    kind = fields.List(fields.String(validate=validate.Length(min=1, max=60)), load_default=list,
                       metadata={"description": "repeatable, e.g. email.opened"})
    product = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list,
                          metadata={"description": "product sku; repeatable"})
    owner = fields.Integer(load_default=None, validate=validate.Range(min=1),
                           metadata={"description": "user id of the item's owner"})
    since = UTCDateTime(load_default=None, metadata={"description": "inclusive"})
    until = UTCDateTime(load_default=None, metadata={"description": "exclusive"})

    @validates_schema
    def _window(self, data: dict[str, Any], **_kwargs: Any) -> None:
        since, until = data.get("since"), data.get("until")
        if since is not None and until is not None and until <= since:
            raise ValidationError({"until": ["must be later than since"]})


class FeedQuerySchema(TimelineQuerySchema):
    territory = fields.String(load_default=None, validate=validate.Length(min=1, max=40),
                              metadata={"description": "territory code of a participant"})
    profession = fields.String(load_default=None, validate=validate.OneOf(PROFESSIONS))
    specialty = fields.String(load_default=None, validate=validate.Length(min=1, max=120))


def filters_from_args(args: dict[str, Any]) -> TimelineFilters:
    """The loaded query args of either schema as ``TimelineFilters``."""
    return TimelineFilters(
        channels=list(args.get("channel") or []),
        kinds=list(args.get("kind") or []),
        products=list(args.get("product") or []),
        owner_id=args.get("owner"),
        since=args.get("since"),
        until=args.get("until"),
        territory=args.get("territory"),
        profession=args.get("profession"),
        specialty=args.get("specialty"),
    )


# -- output (documentation of the shapes the views return) -----------------------------------------

class TimelineOwnerSchema(Schema):
    id = fields.Integer(allow_none=True)
    name = fields.String(allow_none=True)
    role = fields.String(metadata={"description": "the owning department; `system` for outside sources"})


class TimelineVisibilitySchema(Schema):
    level = fields.String(validate=validate.OneOf(["full", "summary", "existence"]))
    rule = fields.String(metadata={"description": "the policy rule that applied"})
    reason = fields.String(metadata={"description": "why the viewer sees this much (\"why can I see this?\")"})


class TimelineItemSchema(Schema):
    id = fields.Integer()
    hcp_ids = fields.List(fields.Integer(), metadata={"description": "the participants"})
    occurred_at = UTCDateTime()
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    kind = fields.String()
    source = fields.String(validate=validate.OneOf(SOURCES))
    summary = fields.String(metadata={"description": "empty when withheld"})
    owner = fields.Nested(TimelineOwnerSchema)
    products = fields.List(fields.String(), metadata={"description": "skus; empty when withheld"})
    details = fields.Dict(metadata={"description": "channel-specific; empty when withheld"})
    sensitivity = fields.String(validate=validate.OneOf(SENSITIVITIES))
    redacted = fields.Boolean()
    redaction_reason = fields.String(allow_none=True)
    consent_gap = fields.Boolean()
    supersedes = fields.Integer(allow_none=True)
    superseded_by = fields.Integer(allow_none=True)
    visibility = fields.Nested(TimelineVisibilitySchema)


class TimelineItemPageSchema(Schema):
    items = fields.List(fields.Nested(TimelineItemSchema))
    next_cursor = fields.String(allow_none=True)


class FatigueWindowSchema(Schema):
    last_30_days = fields.Integer()
    last_90_days = fields.Integer()


class FatigueChannelSchema(FatigueWindowSchema):
    channel = fields.String()


class FatigueDepartmentSchema(FatigueWindowSchema):
    department = fields.String(metadata={"description": "the owning role"})
    label = fields.String()


class FatigueLastContactSchema(Schema):
    channel = fields.String()
    occurred_at = UTCDateTime()


class FatigueStripSchema(Schema):
    hcp_id = fields.Integer()
    as_of = UTCDateTime()
    touches = fields.Nested(FatigueWindowSchema)
    by_channel = fields.List(fields.Nested(FatigueChannelSchema))
    by_department = fields.List(fields.Nested(FatigueDepartmentSchema))
    last_by_channel = fields.List(fields.Nested(FatigueLastContactSchema),
                                  metadata={"description": "most recent first"})
