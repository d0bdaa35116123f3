"""Shapes of the engagement-plan API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm.insights.kpis import PLAN_CHANNELS
from crm.schemas import QuerySchema, StrictSchema, UTCDateTime

_TOUCHES = validate.Range(min=0, max=1000)
_GOALS_DOC = "touches per HCP in the cycle, per channel (" + ", ".join(PLAN_CHANNELS) + ")"


def _goals(description: str) -> fields.Dict:
    return fields.Dict(keys=fields.String(validate=validate.OneOf(PLAN_CHANNELS)),
                       values=fields.Integer(strict=True, validate=_TOUCHES), load_default=dict,
                       metadata={"description": description})


class PlanProductGoalIn(StrictSchema):
    sku = fields.String(required=True, validate=validate.Length(min=1, max=40))
    channel = fields.String(required=True, validate=validate.OneOf(PLAN_CHANNELS))
    touches = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1000))


class PlanTargetIn(StrictSchema):
    hcp_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    goals = _goals("this HCP's own goals; channels left out take the plan's channel goal")


class PlanIn(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    cycle_start = fields.Date(required=True, metadata={"description": "first day of the cycle (UTC)"})
    cycle_end = fields.Date(required=True, metadata={"description": "last day of the cycle, inclusive (UTC)"})
    segment_id = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1),
                                metadata={"description": "scope: the HCPs of this segment"})
    territory_codes = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list,
                                  validate=validate.Length(max=100),
                                  metadata={"description": "scope: HCPs in these territories (with a segment: "
                                                           "the segment's HCPs in these territories)"})
    channel_goals = _goals(_GOALS_DOC)
    product_goals = fields.List(fields.Nested(PlanProductGoalIn), load_default=list, validate=validate.Length(max=50))
    targets = fields.List(fields.Nested(PlanTargetIn), load_default=list, validate=validate.Length(max=10_000),
                          metadata={"description": "HCPs on the plan whatever the scope, with optional own goals"})


class PlanTerritoryRef(Schema):
    code = fields.String()
    name = fields.String()


class PlanSegmentRef(Schema):
    id = fields.Integer()
    name = fields.String()


class PlanCreator(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()


class PlanProductGoalOut(Schema):
    sku = fields.String()
    channel = fields.String()
    touches = fields.Integer()


class PlanTargetOut(Schema):
    hcp_id = fields.Integer()
    goals = fields.Dict(keys=fields.String(), values=fields.Integer())


class PlanOut(Schema):
    id = fields.Integer()
    name = fields.String()
    cycle_start = fields.Date()
    cycle_end = fields.Date()
    segment = fields.Nested(PlanSegmentRef, allow_none=True)
    territories = fields.List(fields.Nested(PlanTerritoryRef))
    channel_goals = fields.Dict(keys=fields.String(), values=fields.Integer(),
                                metadata={"description": _GOALS_DOC})
    product_goals = fields.List(fields.Nested(PlanProductGoalOut))
    targets = fields.List(fields.Nested(PlanTargetOut))
    created_by = fields.Nested(PlanCreator, allow_none=True)
    created_at = UTCDateTime()
    glossary_url = fields.String(metadata={"description": "where the plan's terms and KPIs are defined"})


class PlanPage(Schema):
    items = fields.List(fields.Nested(PlanOut))
    next_cursor = fields.String(allow_none=True)


class PlanListArgs(QuerySchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None)
    current = fields.Boolean(load_default=False, metadata={"description": "only plans whose cycle includes today"})


class AttainmentArgs(QuerySchema):
    territory = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list,
                            metadata={"description": "only HCPs in these territories (codes; repeatable)"})
    hcp_limit = fields.Integer(load_default=200, validate=validate.Range(min=0, max=5000),
                               metadata={"description": "how many per-HCP rows (those behind first)"})


_PCT = "percent, one decimal; null when nothing is planned"


class PlanMeasure(Schema):
    planned = fields.Integer(metadata={"description": "planned touches (glossary: kpi-planned-touches)"})
    touches = fields.Integer(metadata={"description": "touches that happened (kpi-touches)"})
    attained = fields.Integer(metadata={"description": "touches up to each HCP's goal"})
    attainment_pct = fields.Float(allow_none=True, metadata={"description": _PCT + " (kpi-attainment)"})
    reach = fields.Integer(metadata={"description": "distinct HCPs touched (kpi-reach)"})
    frequency = fields.Float(metadata={"description": "touches per reached HCP (kpi-frequency)"})


class PlanChannelMeasure(PlanMeasure):
    channel = fields.String()
    label = fields.String()


class PlanProductMeasure(PlanMeasure):
    sku = fields.String()
    channel = fields.String()


class PlanTerritoryMeasure(PlanMeasure):
    code = fields.String(allow_none=True, metadata={"description": "null: HCPs without a territory"})
    name = fields.String()
    hcps = fields.Integer()
    behind = fields.Integer()
    channels = fields.List(fields.Nested(PlanChannelMeasure))


class PlanRepMeasure(Schema):
    user_id = fields.Integer(allow_none=True)
    name = fields.String()
    role = fields.String()
    touches = fields.Integer()
    reach = fields.Integer()
    channels = fields.Dict(keys=fields.String(), values=fields.Integer())


class PlanHcpProgress(Schema):
    hcp_id = fields.Integer()
    name = fields.String()
    territory = fields.String(allow_none=True)
    tier = fields.String(allow_none=True)
    goals = fields.Dict(keys=fields.String(), values=fields.Integer())
    touches = fields.Dict(keys=fields.String(), values=fields.Integer())
    planned = fields.Integer()
    attained = fields.Integer()
    attainment_pct = fields.Float(allow_none=True)
    expected_by_now = fields.Integer(metadata={"description": "planned x the share of the cycle passed, rounded "
                                                              "down"})
    behind = fields.Boolean(metadata={"description": "kpi-behind-plan"})


class PlanTotals(PlanMeasure):
    hcps = fields.Integer(metadata={"description": "HCPs on the plan"})
    reach_rate_pct = fields.Float(allow_none=True)
    behind = fields.Integer(metadata={"description": "HCPs behind plan (kpi-behind-plan)"})


class AttainmentOut(Schema):
    plan_id = fields.Integer()
    as_of = UTCDateTime()
    cycle_start = fields.Date()
    cycle_end = fields.Date()
    elapsed_pct = fields.Float(metadata={"description": "share of the cycle passed"})
    territories_filter = fields.List(fields.String())
    totals = fields.Nested(PlanTotals)
    channels = fields.List(fields.Nested(PlanChannelMeasure))
    products = fields.List(fields.Nested(PlanProductMeasure))
    territories = fields.List(fields.Nested(PlanTerritoryMeasure))
    reps = fields.List(fields.Nested(PlanRepMeasure), metadata={"description": "touches by their owner"})
    hcps = fields.List(fields.Nested(PlanHcpProgress))
    hcps_shown = fields.Integer()
    glossary_url = fields.String()
