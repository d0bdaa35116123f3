"""The one HCP filter builder. Campaign audiences, segments, engagement plans and insights all select
HCPs through ``filter_where``; nothing else turns criteria into SQL.

Criteria combine with AND, the values of one criterion with OR. Only active HCPs that were not merged
into another record match a filter (an erased or merged record is nobody's audience). Specialties and
tags match case-insensitively for specialties, exactly for tags (tags are stored comma-separated).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select

from crm.db import DbSession
from crm.hcps.models import HCP, TIERS, Territory
from crm.hcps.professions import PROFESSIONS

CRITERIA = ("professions", "specialties", "territory_codes", "tags", "tiers")
CRITERIA_LABELS = {"professions": "Professions", "specialties": "Specialties", "territory_codes": "Territories",
                   "tags": "Tags", "tiers": "Tiers"}


@dataclass(frozen=True)
class HcpFilter:
    """What a saved filter holds; empty tuples mean "any"."""

    professions: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    territory_codes: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()

    @classmethod
    def of(cls, source: Any) -> HcpFilter:
        """The filter of any object or mapping with (some of) the criteria as attributes or keys."""
        def get(name: str) -> tuple[str, ...]:
            value = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
            return tuple(value or ())
        return cls(**{name: get(name) for name in CRITERIA})

    def is_empty(self) -> bool:
        return not any(getattr(self, name) for name in CRITERIA)

    def as_dict(self) -> dict[str, list[str]]:
        return {name: list(getattr(self, name)) for name in CRITERIA}


def clean_criteria(data: dict[str, Any]) -> dict[str, list[str]]:
    """The criteria of ``data`` trimmed, without blanks and duplicates (order kept); tiers upper-cased."""
    out: dict[str, list[str]] = {}
    for name in CRITERIA:
        values = (str(v).strip() for v in (data.get(name) or ()) if v is not None)
        if name == "tiers":
            values = (v.upper() for v in values)
        out[name] = list(dict.fromkeys(v for v in values if v))
    return out


def criteria_errors(session: DbSession, criteria: dict[str, list[str]]) -> dict[str, list[str]]:
    """What is wrong with cleaned criteria: unknown professions, tiers or territory codes."""
    errors: dict[str, list[str]] = {}
    bad = [p for p in criteria.get("professions", ()) if p not in PROFESSIONS]
    if bad:
        errors["professions"] = [f"unknown profession(s) {', '.join(bad)}; use {', '.join(PROFESSIONS)}"]
    bad = [t for t in criteria.get("tiers", ()) if t not in TIERS]
    if bad:
        errors["tiers"] = [f"unknown tier(s) {', '.join(bad)}; use {', '.join(TIERS)}"]
    codes = criteria.get("territory_codes") or []
    if codes:
        known = set(session.scalars(select(Territory.code).where(Territory.code.in_(codes))))
        bad = [c for c in codes if c not in known]
        if bad:
            errors["territory_codes"] = [f"unknown territory code(s) {', '.join(bad)}"]
    return errors


def current_hcps() -> Any:
    """The HCPs any filter may match: active records that were not merged away."""
    return and_(HCP.status == "active", HCP.merged_into_id.is_(None))


def filter_where(criteria: HcpFilter) -> Any:
    """The SQL condition on ``HCP`` that ``criteria`` means now; None when it has no criterion."""
    conditions: list[Any] = []
    if criteria.professions:
        conditions.append(HCP.profession.in_(criteria.professions))
    if criteria.specialties:
        conditions.append(func.lower(HCP.specialty).in_([s.lower() for s in criteria.specialties]))
    if criteria.territory_codes:
        conditions.append(HCP.territory_id.in_(
            select(Territory.id).where(Territory.code.in_(criteria.territory_codes)).scalar_subquery()))
    if criteria.tags:
        tagged = ("," + func.coalesce(HCP.tags, "") + ",")
        conditions.append(or_(*[tagged.contains(f",{t},", autoescape=True) for t in criteria.tags]))
    if criteria.tiers:
        conditions.append(HCP.tier.in_(criteria.tiers))
    if not conditions:
        return None
    return and_(current_hcps(), *conditions)


def matching_ids(session: DbSession, where: Any) -> list[int]:
    return [] if where is None else list(session.scalars(select(HCP.id).where(where).order_by(HCP.id)))


def count_matching(session: DbSession, where: Any) -> int:
    return 0 if where is None else session.scalar(select(func.count()).select_from(HCP).where(where)) or 0


def describe(criteria: HcpFilter, territory_names: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(label, values) per criterion given, in plain words for pages."""
    out = []
    for name in CRITERIA:
        values: Sequence[str] = getattr(criteria, name)
        if values:
            if name == "territory_codes" and territory_names:
                values = [f"{territory_names.get(c, c)} ({c})" for c in values]
            out.append((CRITERIA_LABELS[name], ", ".join(values)))
    return out


def union_ids(*groups: Iterable[int]) -> list[int]:
    return sorted({i for group in groups for i in group})
