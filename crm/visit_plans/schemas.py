"""Planned-visit shapes: what the API accepts (strict: unknown fields are 422) and what it returns.

Schemas check shape only; rules that need the database or the clock (territories, past dates, overlaps)
live in ``crm.visit_plans.services``.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm.schemas import MAX_YEAR, MIN_YEAR, PageArgs, QuerySchema, StrictSchema, UTCDateTime
from crm.visit_plans.models import PLAN_MODES, PLAN_STATUSES
from crm.visits.schemas import Stripped

MAX_OBJECTIVE_CHARS = 2000
MAX_REASON_CHARS = 500
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def parse_week(raw: str) -> date:
    """The Monday of ``raw``: an ISO week (``2026-W50``) or any day of it (``2026-12-09``).

    ValueError with a sentence a person can act on when it is neither, or out of the years both databases
    hold."""
    value = raw.strip()
    match = _WEEK.match(value)
    try:
        if match:
            monday = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
        else:
            day = date.fromisoformat(value)
            monday = day - timedelta(days=day.weekday())
    except ValueError:
        raise ValueError("Give an ISO week (2026-W50) or a day of the week (2026-12-09).") from None
    if not MIN_YEAR <= monday.year <= MAX_YEAR - 1:
        raise ValueError(f"The week must be in the years {MIN_YEAR} to {MAX_YEAR - 1}.")
    return monday


class WeekField(fields.String):
    """``?week=``: an ISO week or a day; loads as the Monday of that week."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> date:  # type: ignore[override]
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parse_week(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


def _products() -> fields.List:
    return fields.List(Stripped(validate=validate.Length(max=40)), validate=validate.Length(max=20),
                       metadata={"description": "Product skus to detail (active products of the catalogue)."})


class VisitPlanCreateSchema(StrictSchema):
    hcp_id = fields.Integer(required=True, strict=True)
    planned_start = UTCDateTime(required=True, metadata={"description": "Not in the past."})
    planned_end = UTCDateTime(required=True, metadata={"description": "After planned_start, at most 12 hours."})
    mode = fields.String(load_default="in_person", validate=validate.OneOf(PLAN_MODES))
    objective = fields.String(load_default="", validate=validate.Length(max=MAX_OBJECTIVE_CHARS))
    products = _products()


class VisitPlanUpdateSchema(StrictSchema):
    """Reschedule (new times) and/or change what the visit is for; only the fields sent change."""

    planned_start = UTCDateTime(metadata={"description": "The new start: not in the past."})
    planned_end = UTCDateTime()
    mode = fields.String(validate=validate.OneOf(PLAN_MODES))
    objective = fields.String(validate=validate.Length(max=MAX_OBJECTIVE_CHARS))
    products = _products()
    reason = fields.String(validate=validate.Length(max=MAX_REASON_CHARS),
                           metadata={"description": "Why it is rescheduled (kept in the plan's history)."})
    version = fields.Integer(strict=True, metadata={"description": "Optimistic lock: a stale version is 409."})

    @validates_schema
    def _something(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not set(data) - {"reason", "version"}:
            raise ValidationError("Send at least one of planned_start, planned_end, mode, objective, products.",
                                  "_schema")


class VisitPlanCancelSchema(StrictSchema):
    reason = fields.String(load_default="", validate=validate.Length(max=MAX_REASON_CHARS))


class VisitPlanListArgs(PageArgs):
    week = WeekField(load_default=None, metadata={
        "description": "An ISO week (2026-W50) or a day of it: plans starting Monday to Sunday (UTC). "
                       "Without it, plans from today on."})
    mine = fields.Boolean(load_default=False, metadata={"description": "Only the caller's plans."})
    owner_id = fields.Integer(load_default=None)
    hcp_id = fields.Integer(load_default=None)
    territory = fields.String(load_default=None, validate=validate.Length(max=40),
                              metadata={"description": "Territory code: plans for its HCPs (the team week)."})
    status = fields.String(load_default=None, validate=validate.OneOf(PLAN_STATUSES))


class PlannedVsDoneArgs(QuerySchema):
    since = fields.Date(load_default=None, metadata={"description": "First day (default: the quarter's first)."})
    until = fields.Date(load_default=None, metadata={"description": "Last day, inclusive (default: the "
                                                                    "quarter's last)."})
    owner_id = fields.Integer(load_default=None, metadata={
        "description": "Whose plans and visits, per HCP (default: the caller's). A field rep: own only."})
    hcp_id = fields.Integer(load_default=None, metadata={
        "description": "One HCP: every owner's plans and visits for that HCP."})

    @validates_schema
    def _order(self, data: dict[str, Any], **kwargs: Any) -> None:
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            raise ValidationError("must not be before since", "until")
        if since and until and (until - since).days > 366:
            raise ValidationError("a period lasts at most 367 days", "until")


class VisitPlanOwnerOut(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()


class VisitPlanRescheduleOut(Schema):
    from_start = UTCDateTime()
    from_end = UTCDateTime()
    to_start = UTCDateTime()
    to_end = UTCDateTime()
    reason = fields.String(allow_none=True)
    changed_by_id = fields.Integer(allow_none=True)
    changed_at = UTCDateTime()


class VisitPlanConflictOut(Schema):
    id = fields.Integer()
    hcp_id = fields.Integer()
    planned_start = UTCDateTime()
    planned_end = UTCDateTime()


class VisitPlanOut(Schema):
    """One planned visit as a viewer may see it. A Medical Affairs plan read by field force or marketing
    withholds its objective, products and mode (``redacted`` and the reason say so)."""

    id = fields.Integer()
    status = fields.String(metadata={"description": "planned, started (turned into a draft visit) or cancelled"})
    hcp_id = fields.Integer()
    hcp_name = fields.String()
    owner = fields.Nested(VisitPlanOwnerOut)
    planned_start = UTCDateTime()
    planned_end = UTCDateTime()
    mode = fields.String(allow_none=True)
    objective = fields.String(allow_none=True)
    products = fields.List(fields.String())
    sensitivity = fields.String()
    visit_id = fields.Integer(allow_none=True)
    started_at = UTCDateTime(allow_none=True)
    cancelled_at = UTCDateTime(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    reschedules = fields.List(fields.Nested(VisitPlanRescheduleOut))
    version = fields.Integer()
    created_at = UTCDateTime()
    updated_at = UTCDateTime()
    redacted = fields.Boolean()
    redaction_reason = fields.String(allow_none=True)
    rule = fields.String(metadata={"description": "The visibility rule that applied."})
    why = fields.String(metadata={"description": "Why can I see this? The rule in words."})
    conflicts = fields.List(fields.Nested(VisitPlanConflictOut), metadata={
        "description": "On writes: the owner's other planned visits that overlap this one (a warning; "
                       "the plan is saved)."})


class VisitPlanPage(Schema):
    items = fields.List(fields.Nested(VisitPlanOut))
    next_cursor = fields.String(allow_none=True)


class PlannedVsDoneCounts(Schema):
    planned = fields.Integer(metadata={"description": "Plans starting in the period, cancelled ones left out."})
    started = fields.Integer(metadata={"description": "Of those, turned into a visit."})
    missed = fields.Integer(metadata={"description": "Of those, still planned after their end."})
    upcoming = fields.Integer(metadata={"description": "Of those, still planned and not over yet."})
    cancelled = fields.Integer(metadata={"description": "Plans in the period that were cancelled."})
    done = fields.Integer(metadata={"description": "Submitted visits in the period (an amended visit once)."})


class PlannedVsDoneRow(PlannedVsDoneCounts):
    hcp_id = fields.Integer()
    hcp_name = fields.String()


class PlannedVsDoneOut(Schema):
    since = fields.Date()
    until = fields.Date()
    owner_id = fields.Integer(allow_none=True)
    hcp_id = fields.Integer(allow_none=True)
    totals = fields.Nested(PlannedVsDoneCounts)
    items = fields.List(fields.Nested(PlannedVsDoneRow))
