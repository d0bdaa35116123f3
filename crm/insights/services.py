"""The insights: one set of figures for every role (issue 12 item 4), each a set-based SQL aggregation.

- interactions per channel per week: one grouped query over ``interactions`` (a segment adds an EXISTS on
  the participants);
- reach and frequency by segment: touches per HCP grouped once, then one query that sums them per segment
  with ``CASE`` (the segments' conditions come from the one filter builder), and one that counts each
  segment's HCPs the same way; two statements however many segments;
- the campaign funnel: the campaigns sent in the period, through ``crm.campaigns.services.funnels``;
- consent coverage per channel x purpose: ``crm.consent.queries.coverage`` (narrowed to the segment);
- plan attainment: ``crm.plans.attainment.attainment_totals`` (summed in SQL) for the plans whose cycle
  meets the period;
- NPS trend: ``crm.surveys.services.nps_results`` by month of the answer.

The figures are the same for every role: they are counts, never content. Restricted (medical, pv) items
count like any other; only their number leaves here (``restricted`` in the channel mix). Every KPI is
defined in ``crm.insights.kpis``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Date, Integer, String, case, cast, column, false, func, literal_column, select, true, values

from crm.campaigns.models import Audience, Campaign
from crm.campaigns.services import funnels
from crm.consent.queries import coverage
from crm.db import DbSession, UTCDateTime, utcnow
from crm.errors import Invalid
from crm.hcps.models import HCP
from crm.insights.kpis import CHANNEL_LABELS as TOUCH_LABELS
from crm.plans.attainment import attainment_totals, period_touches
from crm.plans.models import EngagementPlan
from crm.segments.filters import current_hcps
from crm.segments.models import Segment
from crm.segments.services import segment_where
from crm.surveys.services import nps_results
from crm.timeline.models import CHANNELS, SENSITIVITIES, Interaction, InteractionParticipant

DEFAULT_WEEKS = 13
# Two years and a day or two of slack: the longest period any chart takes (about 105 weekly columns).
MAX_DAYS = 732
# Reach over a period longer than this reads the participants in HCP order (see ``reach_frequency``).
LONG_PERIOD = timedelta(days=183)
MAX_SEGMENTS = 30
MAX_CAMPAIGNS = 20
MAX_PLANS = 12
CHANNEL_LABELS = {**TOUCH_LABELS, "order": "Orders", "consent": "Consent changes"}
ALL_HCPS = "All HCPs"
FUNNEL_STEPS = ("sent", "delivered", "opened", "clicked", "bounced", "unsubscribed")
FUNNEL_LABELS = {"sent": "Sent", "delivered": "Delivered", "opened": "Opened", "clicked": "Clicked",
                 "bounced": "Bounced", "unsubscribed": "Unsubscribed"}
COVERAGE_STATES = ("granted", "pending", "withdrawn", "expired", "none")


@dataclass(frozen=True)
class Window:
    """The period [since, until) in UTC and the segment the figures are narrowed to (None: everyone)."""

    since: datetime
    until: datetime
    segment: Segment | None = None

    def hcp_where(self) -> Any:
        """The segment's HCPs as a condition on ``HCP`` (None without a segment; nobody for an empty one)."""
        if self.segment is None:
            return None
        where = segment_where(self.segment)
        return false() if where is None else where

    def describe(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until,
                "segment": None if self.segment is None else {"id": self.segment.id, "name": self.segment.name}}


def week_of(day: date) -> date:
    """The Monday of ``day``'s week."""
    return day - timedelta(days=day.weekday())


def default_since(until: datetime) -> datetime:
    """Thirteen whole weeks up to ``until``: the Monday twelve weeks before ``until``'s week, 00:00 UTC."""
    monday = week_of((until - timedelta(microseconds=1)).date()) - timedelta(weeks=DEFAULT_WEEKS - 1)
    return datetime.combine(monday, time.min, tzinfo=UTC)


def window(session: DbSession, *, since: datetime | None = None, until: datetime | None = None,
           segment_id: int | None = None, now: datetime | None = None) -> Window:
    """Check and complete the period and segment (until: now; since: 13 weeks back). ``Invalid`` (422) when
    since is not before until, the period is longer than ``MAX_DAYS`` or the segment does not exist."""
    errors: dict[str, list[str]] = {}
    until = until or now or utcnow()
    since = since or default_since(until)
    if since >= until:
        errors["since"] = ["must be before until"]
    elif until - since > timedelta(days=MAX_DAYS):
        errors["until"] = [f"the period is at most {MAX_DAYS} days (two years); narrow since or until"]
    segment = None
    if segment_id is not None:
        segment = session.get(Segment, segment_id)
        if segment is None:
            errors["segment_id"] = [f"no segment with id {segment_id}"]
    if errors:
        raise Invalid("The period or segment cannot be used for insights.", errors=errors)
    return Window(since, until, segment)


def _week_start(session: DbSession, column: Any) -> Any:
    """The Monday (a date) of the UTC week that holds ``column``, worked out by the database."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.date_trunc(literal_column("'week'"), func.timezone(literal_column("'UTC'"), column)), Date)
    # SQLite holds UTC text; 'weekday 0' moves forward to Sunday (or stays), six days back is Monday.
    return func.date(column, literal_column("'weekday 0'"), literal_column("'-6 days'"))


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def weeks_of(w: Window) -> list[date]:
    """Every week (its Monday) the period touches, in order."""
    first, last = week_of(w.since.date()), week_of((w.until - timedelta(microseconds=1)).date())
    return [first + timedelta(weeks=n) for n in range((last - first).days // 7 + 1)]


# -- interactions per channel per week ------------------------------------------------------------------

def _segment_items(w: Window) -> Any:
    """The items of the period with at least one of the segment's HCPs, as a one-column ``SELECT`` of
    interaction ids (None without a segment). The segment's HCPs are selected once and each one's items
    read from its timeline index: the database builds the id set once and the counts test membership in it
    (a semi-join), rather than looking for a participant of the segment for every item of the period."""
    hcp_where = w.hcp_where()
    if hcp_where is None:
        return None
    p = InteractionParticipant
    return select(p.interaction_id).where(p.hcp_id.in_(select(HCP.id).where(hcp_where)),
                                          p.occurred_at >= w.since, p.occurred_at < w.until)


def _weekly_counts(session: DbSession, w: Window) -> dict[tuple[date, str], tuple[int, int]]:
    """(week, channel) -> (items, restricted items) of the latest versions in the period, segment-narrowed.

    PostgreSQL groups the period's rows by week and channel (a hash aggregate). SQLite has no hash
    aggregate: grouping sorts every row and works the week out per row, which at two years and 1M items
    takes about a second; instead each (week, channel, sensitivity) is counted as one range of the partial
    index ``ix_interactions_weekly`` (channel, sensitivity, occurred_at of the latest versions), the weeks'
    bounds worked out here: a few thousand range counts, no per-row arithmetic and no sort."""
    i = Interaction
    items = _segment_items(w)
    counts: dict[tuple[date, str], tuple[int, int]] = {}
    if session.get_bind().dialect.name == "postgresql":
        week = _week_start(session, i.occurred_at).label("week")
        restricted = func.sum(case((i.sensitivity != "standard", 1), else_=0))
        query = (select(week, i.channel, func.count(), restricted)
                 .where(i.occurred_at >= w.since, i.occurred_at < w.until, i.superseded_by_id.is_(None))
                 .group_by(week, i.channel))
        if items is not None:
            query = query.where(i.id.in_(items))
        for wk, channel, n, r in session.execute(query):
            counts[(_as_date(wk), channel)] = (int(n), int(r or 0))
        return counts
    bounds = [(k, max(w.since, datetime.combine(monday, time.min, tzinfo=UTC)),
               min(w.until, datetime.combine(monday + timedelta(weeks=1), time.min, tzinfo=UTC)))
              for k, monday in enumerate(weeks_of(w))]
    weeks = values(column("k", Integer), column("lo", UTCDateTime()), column("hi", UTCDateTime()),
                   name="weeks").data(bounds).cte("weeks")
    kinds = values(column("channel", String), column("sensitivity", String), name="kinds").data(
        [(c, s) for c in CHANNELS for s in SENSITIVITIES]).cte("kinds")
    counted = (select(func.count()).select_from(i)
               .where(i.channel == kinds.c.channel, i.sensitivity == kinds.c.sensitivity,
                      i.occurred_at >= weeks.c.lo, i.occurred_at < weeks.c.hi, i.superseded_by_id.is_(None)))
    if items is not None:
        # ``id + 0``: a test of membership in the id set built once, never a walk of that set per range
        # (which SQLite's planner otherwise picks, through the primary key, for every week and kind).
        counted = counted.where((i.id + 0).in_(items))
    mondays = weeks_of(w)
    for k, channel, sensitivity, n in session.execute(
            select(weeks.c.k, kinds.c.channel, kinds.c.sensitivity, counted.scalar_subquery())
            .select_from(weeks).join(kinds, true())):
        if n:
            items_before, restricted_before = counts.get((mondays[k], channel), (0, 0))
            counts[(mondays[k], channel)] = (items_before + int(n),
                                             restricted_before + (int(n) if sensitivity != "standard" else 0))
    return counts


def channel_mix(session: DbSession, w: Window) -> dict[str, Any]:
    """Timeline items per week and channel (a corrected item once, as its latest version; an item with
    several HCPs once), with how many of them are restricted (medical, pv); every week and channel listed."""
    counts = _weekly_counts(session, w)
    weeks = weeks_of(w)
    items = [{"week_start": wk, "channel": c, "label": CHANNEL_LABELS.get(c, c),
              "interactions": counts.get((wk, c), (0, 0))[0], "restricted": counts.get((wk, c), (0, 0))[1]}
             for wk in weeks for c in CHANNELS]
    totals = [{"channel": c, "label": CHANNEL_LABELS.get(c, c),
               "interactions": sum(v[0] for (_, ch), v in counts.items() if ch == c),
               "restricted": sum(v[1] for (_, ch), v in counts.items() if ch == c)} for c in CHANNELS]
    return {**w.describe(), "weeks": weeks, "channels": list(CHANNELS), "items": items, "totals": totals,
            "glossary_url": "/glossary#kpi-interactions-per-week"}


# -- reach and frequency by segment ---------------------------------------------------------------------

def _groups(session: DbSession, w: Window) -> list[tuple[int | None, str, Any]]:
    """(segment id, name, condition on HCP): everyone, then the chosen segment or every saved one."""
    segments = [w.segment] if w.segment is not None else list(
        session.scalars(select(Segment).order_by(Segment.name, Segment.id).limit(MAX_SEGMENTS)))
    out: list[tuple[int | None, str, Any]] = [(None, ALL_HCPS, current_hcps())]
    for s in segments:
        where = segment_where(s)
        out.append((s.id, s.name, false() if where is None else where))
    return out


def reach_frequency(session: DbSession, w: Window) -> dict[str, Any]:
    """Per segment (and for all HCPs): its HCPs now, those touched in the period (reach), the touches
    (the touch table of engagement plans) and touches per reached HCP (frequency). Two statements."""
    groups = _groups(session, w)
    p = InteractionParticipant
    per_hcp_query = select(p.hcp_id.label("hcp_id"), func.count().label("n")).where(
        *period_touches(w.since, w.until)).group_by(p.hcp_id)
    if w.until - w.since > LONG_PERIOD:
        # A long period holds most participants: reading them all in HCP order from the (covering) timeline
        # index groups them without a sort, which SQLite's planner does not pick by itself (its range scan
        # of the period index then sorts every row: 0.6 s against 0.45 s at two years and 1M items; the
        # range scan wins below half a year). ``hcp_id > 0`` is true of every row (ids start at 1): a range
        # on the timeline index's first column that makes SQLite's planner read that index.
        per_hcp_query = per_hcp_query.where(p.hcp_id > 0)
    per_hcp = per_hcp_query.subquery()
    touched_cols, size_cols = [], []
    for _sid, _name, where in groups:
        touched_cols += [func.coalesce(func.sum(case((where, per_hcp.c.n), else_=0)), 0),
                         func.coalesce(func.sum(case((where, 1), else_=0)), 0)]
        size_cols.append(func.coalesce(func.sum(case((where, 1), else_=0)), 0))
    touched = session.execute(select(*touched_cols).select_from(per_hcp).join(HCP, HCP.id == per_hcp.c.hcp_id)).one()
    sizes = session.execute(select(*size_cols).select_from(HCP)).one()
    items = []
    for k, (sid, name, _where) in enumerate(groups):
        touches, reach, hcps = int(touched[2 * k]), int(touched[2 * k + 1]), int(sizes[k])
        items.append({"segment_id": sid, "segment": name, "hcps": hcps, "reach": reach,
                      "reach_rate_pct": round(100 * reach / hcps, 1) if hcps else None, "touches": touches,
                      "frequency": round(touches / reach, 2) if reach else 0.0})
    return {**w.describe(), "items": items, "glossary_url": "/glossary#kpi-segment-reach"}


# -- the campaign funnel --------------------------------------------------------------------------------

def campaign_funnel(session: DbSession, w: Window) -> dict[str, Any]:
    """The funnel of the campaigns last sent in the period (with a segment: those whose audience is the
    segment), newest first, and their sum per step."""
    query = (select(Campaign.id, Campaign.name, Campaign.last_sent_at)
             .where(Campaign.last_sent_at >= w.since, Campaign.last_sent_at < w.until)
             .order_by(Campaign.last_sent_at.desc(), Campaign.id.desc()).limit(MAX_CAMPAIGNS))
    if w.segment is not None:
        query = query.join(Audience, Audience.id == Campaign.audience_id).where(Audience.segment_id == w.segment.id)
    rows = session.execute(query).all()
    figures = funnels(session, [r.id for r in rows])
    items = [{"campaign_id": r.id, "name": r.name, "sent_at": r.last_sent_at,
              **{step: int(figures[r.id].get(step, 0)) for step in FUNNEL_STEPS}} for r in rows]
    totals = {step: sum(item[step] for item in items) for step in FUNNEL_STEPS}
    return {**w.describe(), "campaigns": len(items), "totals": totals, "items": items,
            "glossary_url": "/glossary#kpi-funnel-sent"}


# -- consent coverage -----------------------------------------------------------------------------------

def consent_coverage(session: DbSession, w: Window) -> dict[str, Any]:
    """HCPs per (channel, purpose) and consent state now (of the segment's HCPs, with a segment)."""
    total, items = coverage(session, hcp_where=w.hcp_where())
    return {**w.describe(), "hcps": total, "items": items, "glossary_url": "/glossary#kpi-consent-coverage"}


# -- plan attainment ------------------------------------------------------------------------------------

def plan_attainment(session: DbSession, w: Window, now: datetime | None = None) -> dict[str, Any]:
    """Attainment of the engagement plans whose cycle meets the period (with a segment: the plans scoped
    to it), newest cycle first, each summed in SQL by the plans' ``attainment_totals`` (the same totals as
    the plan's own attainment page)."""
    first, last = w.since.date(), (w.until - timedelta(microseconds=1)).date()
    query = (select(EngagementPlan).where(EngagementPlan.cycle_start <= last, EngagementPlan.cycle_end >= first)
             .order_by(EngagementPlan.cycle_start.desc(), EngagementPlan.id.desc()).limit(MAX_PLANS))
    if w.segment is not None:
        query = query.where(EngagementPlan.segment_id == w.segment.id)
    items = []
    for plan in session.scalars(query):
        result = attainment_totals(session, plan, now=now)
        t = result["totals"]
        items.append({"plan_id": plan.id, "name": plan.name, "cycle_start": plan.cycle_start,
                      "cycle_end": plan.cycle_end, "elapsed_pct": result["elapsed_pct"], "hcps": t["hcps"],
                      "planned": t["planned"], "attained": t["attained"], "touches": t["touches"],
                      "attainment_pct": t["attainment_pct"], "reach": t["reach"],
                      "reach_rate_pct": t["reach_rate_pct"], "behind": t["behind"]})
    return {**w.describe(), "items": items, "glossary_url": "/glossary#kpi-attainment"}


# -- NPS trend ------------------------------------------------------------------------------------------

def months_of(w: Window) -> list[str]:
    first, last = w.since.date().replace(day=1), (w.until - timedelta(microseconds=1)).date().replace(day=1)
    out = []
    while first <= last:
        out.append(f"{first:%Y-%m}")
        first = (first + timedelta(days=32)).replace(day=1)
    return out


def nps_trend(session: DbSession, w: Window) -> dict[str, Any]:
    """NPS per month of the answer in the period (every month listed; null without answers), and overall."""
    result = nps_results(session, since=w.since, until=w.until, hcp_where=w.hcp_where())
    by_month = {m["key"]: m for m in result["by_month"]}
    empty = {"responses": 0, "promoters": 0, "passives": 0, "detractors": 0, "nps": None}
    items = [{"month": m, **{k: by_month.get(m, empty)[k] for k in empty}} for m in months_of(w)]
    overall = {k: result[k] for k in empty}
    return {**w.describe(), "overall": overall, "items": items, "glossary_url": "/glossary#kpi-nps"}


CHARTS = {
    "channel-mix": channel_mix,
    "reach": reach_frequency,
    "campaign-funnel": campaign_funnel,
    "consent-coverage": consent_coverage,
    "plan-attainment": plan_attainment,
    "nps-trend": nps_trend,
}


def all_insights(session: DbSession, w: Window) -> dict[str, dict[str, Any]]:
    """Every chart's figures for one period and segment."""
    return {name: fn(session, w) for name, fn in CHARTS.items()}
