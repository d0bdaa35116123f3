"""The insights API: every role reads the same figures (counts, never content).

`GET /api/v1/insights/channel-mix?since=&until=` is fixed by issue 12; the other charts of the insights
page answer beside it with the same query (`since` inclusive, `until` exclusive, `segment_id`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from marshmallow import Schema

from crm.auth.context import api_auth
from crm.extensions import db
from crm.insights import services
from crm.insights.schemas import (
    ChannelMixOut,
    CoveragePageOut,
    FunnelPageOut,
    InsightArgs,
    NpsTrendOut,
    PlanPageOut,
    ReachPageOut,
)
from crm.openapi import doc
from crm.schemas import load_args

bp = Blueprint("insights_api", __name__, url_prefix="/api/v1/insights")
TAGS = ["insights"]
_ERRORS = (401, 422)


def _answer(chart: str, schema: Schema) -> Any:
    args = load_args(InsightArgs())
    w = services.window(db.session, since=args["since"], until=args["until"], segment_id=args["segment_id"])
    return schema.dump(services.CHARTS[chart](db.session, w))


@bp.get("/channel-mix")
@doc("Interactions per channel per week", tags=TAGS, query=InsightArgs, responses={200: ChannelMixOut},
     errors=_ERRORS)
@api_auth
def channel_mix():
    """Every role, the same figures. Each timeline item counts once (however many HCPs took part; a
    corrected item as its latest version); restricted (medical, pv) items count and are also counted
    apart in `restricted`; their content is never part of the answer. Every week of the period is listed.
    since not before until, a period over two years or an unknown segment: 422."""
    return _answer("channel-mix", ChannelMixOut())


@bp.get("/reach")
@doc("Reach and frequency by segment", tags=TAGS, query=InsightArgs, responses={200: ReachPageOut}, errors=_ERRORS)
@api_auth
def reach():
    """All HCPs, then every saved segment (or the one chosen): its HCPs now, those touched in the period
    (the touch table of engagement plans, see /glossary), touches and touches per reached HCP."""
    return _answer("reach", ReachPageOut())


@bp.get("/campaign-funnel")
@doc("The funnel of the campaigns sent in the period", tags=TAGS, query=InsightArgs,
     responses={200: FunnelPageOut}, errors=_ERRORS)
@api_auth
def campaign_funnel():
    """Campaigns last sent in the period (with `segment_id`: those whose audience is that segment), newest
    first, at most 20: sent, delivered, opened, clicked, bounced, unsubscribed, and their sum."""
    return _answer("campaign-funnel", FunnelPageOut())


@bp.get("/consent-coverage")
@doc("Consent coverage per channel and purpose", tags=TAGS, query=InsightArgs, responses={200: CoveragePageOut},
     errors=_ERRORS)
@api_auth
def consent_coverage():
    """HCPs per consent state now for every (channel, purpose) pair, of the segment's HCPs with
    `segment_id`. The period does not change it (consent is as it stands now)."""
    return _answer("consent-coverage", CoveragePageOut())


@bp.get("/plan-attainment")
@doc("Attainment of the engagement plans whose cycle meets the period", tags=TAGS, query=InsightArgs,
     responses={200: PlanPageOut}, errors=_ERRORS)
@api_auth
def plan_attainment():
    """Every plan (the same for every role), newest cycle first, at most 12; with `segment_id` the plans
    scoped to that segment. The figures are the plan page's own (`/engagement-plans/{id}/attainment`)."""
    return _answer("plan-attainment", PlanPageOut())


@bp.get("/nps-trend")
@doc("NPS per month", tags=TAGS, query=InsightArgs, responses={200: NpsTrendOut}, errors=_ERRORS)
@api_auth
def nps_trend():
    """Answers to NPS surveys in the period, per month of the answer (every month listed; `nps` null
    without answers) and overall; with `segment_id` only the answers of the segment's HCPs."""
    return _answer("nps-trend", NpsTrendOut())
