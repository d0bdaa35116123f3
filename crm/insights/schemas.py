"""Shapes of the insights API: one query shape (period and segment) and one output shape per chart."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm.insights.services import MAX_DAYS
from crm.schemas import QuerySchema, UTCDateTime

_PERIOD = f"at most {MAX_DAYS} days"


class InsightArgs(QuerySchema):
    since = UTCDateTime(load_default=None, metadata={
        "description": f"inclusive, UTC; default: the Monday 12 weeks before until's week (13 weeks); {_PERIOD}"})
    until = UTCDateTime(load_default=None, metadata={"description": "exclusive, UTC; default: now"})
    segment_id = fields.Integer(strict=False, load_default=None, validate=validate.Range(min=1),
                                metadata={"description": "narrow the figures to a saved segment's HCPs"})


class SegmentRef(Schema):
    id = fields.Integer()
    name = fields.String()


class _Period(Schema):
    since = UTCDateTime()
    until = UTCDateTime()
    segment = fields.Nested(SegmentRef, allow_none=True)
    glossary_url = fields.String(metadata={"description": "where the figure is defined"})


class ChannelWeekOut(Schema):
    week_start = fields.Date(metadata={"description": "the Monday of the week (UTC)"})
    channel = fields.String()
    label = fields.String()
    interactions = fields.Integer()
    restricted = fields.Integer(metadata={"description": "of them, medical or pv items (counted; content never shown)"})


class ChannelTotalOut(Schema):
    channel = fields.String()
    label = fields.String()
    interactions = fields.Integer()
    restricted = fields.Integer()


class ChannelMixOut(_Period):
    weeks = fields.List(fields.Date())
    channels = fields.List(fields.String())
    items = fields.List(fields.Nested(ChannelWeekOut), metadata={"description": "one per week and channel"})
    totals = fields.List(fields.Nested(ChannelTotalOut))


class ReachOut(Schema):
    segment_id = fields.Integer(allow_none=True, metadata={"description": "null: all HCPs"})
    segment = fields.String()
    hcps = fields.Integer(metadata={"description": "HCPs the segment holds now"})
    reach = fields.Integer()
    reach_rate_pct = fields.Float(allow_none=True)
    touches = fields.Integer()
    frequency = fields.Float()


class ReachPageOut(_Period):
    items = fields.List(fields.Nested(ReachOut))


class FunnelStepsOut(Schema):
    sent = fields.Integer()
    delivered = fields.Integer()
    opened = fields.Integer()
    clicked = fields.Integer()
    bounced = fields.Integer()
    unsubscribed = fields.Integer()


class CampaignFunnelOut(FunnelStepsOut):
    campaign_id = fields.Integer()
    name = fields.String()
    sent_at = UTCDateTime(allow_none=True)


class FunnelPageOut(_Period):
    campaigns = fields.Integer()
    totals = fields.Nested(FunnelStepsOut)
    items = fields.List(fields.Nested(CampaignFunnelOut))


class CoverageOut(Schema):
    channel = fields.String()
    purpose = fields.String()
    granted = fields.Integer()
    pending = fields.Integer()
    withdrawn = fields.Integer()
    expired = fields.Integer()
    none = fields.Integer()
    coverage_pct = fields.Float()


class CoveragePageOut(_Period):
    hcps = fields.Integer(metadata={"description": "HCPs counted (not erased or merged; of the segment, with one)"})
    items = fields.List(fields.Nested(CoverageOut))


class PlanRowOut(Schema):
    plan_id = fields.Integer()
    name = fields.String()
    cycle_start = fields.Date()
    cycle_end = fields.Date()
    elapsed_pct = fields.Float()
    hcps = fields.Integer()
    planned = fields.Integer()
    attained = fields.Integer()
    touches = fields.Integer()
    attainment_pct = fields.Float(allow_none=True)
    reach = fields.Integer()
    reach_rate_pct = fields.Float(allow_none=True)
    behind = fields.Integer()


class PlanPageOut(_Period):
    items = fields.List(fields.Nested(PlanRowOut))


class NpsFiguresOut(Schema):
    responses = fields.Integer()
    promoters = fields.Integer()
    passives = fields.Integer()
    detractors = fields.Integer()
    nps = fields.Integer(allow_none=True)


class NpsMonthOut(NpsFiguresOut):
    month = fields.String(metadata={"description": "YYYY-MM of the answers"})


class NpsTrendOut(_Period):
    overall = fields.Nested(NpsFiguresOut)
    items = fields.List(fields.Nested(NpsMonthOut))
