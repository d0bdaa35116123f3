"""Suspected duplicate HCPs, by three rules, for the data steward to review and merge.

- ``email``: the same email address (compared through the blind index, never in clear);
- ``name_postal``: the same normalised first and last name (case, spaces, apostrophes, hyphens and
  dots ignored) and the same 5-character postal code;
- ``licence``: the same licence number (case, spaces, hyphens and leading zeros ignored) in the
  same state. Identical licences cannot be held twice (identifiers are unique), so this rule finds
  the near-identical ones; an import that meets a licence already held flags the row instead.

Merged and erased records are left out. Each rule is one grouped query, so the list costs a few
scans of ``hcps`` whatever its size; the page shows the first groups of each rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, func, select, type_coerce

from crm.db import DbSession
from crm.hcps.models import HCP, HCPIdentifier

RULES = {
    "email": "Same email address",
    "name_postal": "Same name and postal code",
    "licence": "Same licence number and state",
}
_LIVE = ("active", "inactive")


@dataclass
class DuplicateGroup:
    rule: str
    label: str  # what the records share, for the page
    hcps: list[HCP]


def _squeeze(column: Any, chars: str = " -'.") -> ColumnElement[str]:
    expr: Any = func.lower(func.trim(column))
    for ch in chars:
        expr = func.replace(expr, ch, "")
    return type_coerce(expr, String)


def _name_key() -> ColumnElement[str]:
    return (_squeeze(HCP.first_name) + "|" + _squeeze(HCP.last_name) + "|"
            + type_coerce(func.substr(HCP.postal_code, 1, 5), String))


def _licence_key() -> ColumnElement[str]:
    return HCPIdentifier.kind + "|" + type_coerce(func.ltrim(_squeeze(HCPIdentifier.value, " -"), "0"), String)


def suspected_duplicates(session: DbSession, rule: str, limit: int = 100) -> list[DuplicateGroup]:
    """Up to ``limit`` groups of live HCPs that look like one person under ``rule``."""
    live = HCP.status.in_(_LIVE)
    if rule == "email":
        key: Any = HCP.email_bidx
        keyed = select(key.label("k"), HCP.id.label("hcp_id")).where(live, HCP.email_bidx.is_not(None))
    elif rule == "name_postal":
        key = _name_key()
        keyed = select(key.label("k"), HCP.id.label("hcp_id")).where(live, HCP.postal_code.is_not(None))
    elif rule == "licence":
        key = _licence_key()
        keyed = (select(key.label("k"), HCPIdentifier.hcp_id.label("hcp_id"))
                 .join(HCP, HCP.id == HCPIdentifier.hcp_id)
                 .where(live, HCPIdentifier.kind.startswith("licence:")))
    else:
        raise ValueError(f"unknown duplicate rule {rule!r}")
    keyed_sq = keyed.subquery()
    dup_keys = (select(keyed_sq.c.k).group_by(keyed_sq.c.k)
                .having(func.count(func.distinct(keyed_sq.c.hcp_id)) > 1)
                .order_by(keyed_sq.c.k).limit(limit).subquery())
    pairs = session.execute(
        select(keyed_sq.c.k, keyed_sq.c.hcp_id).where(keyed_sq.c.k.in_(select(dup_keys.c.k)))
        .distinct().order_by(keyed_sq.c.k, keyed_sq.c.hcp_id)
    ).all()
    hcps = {h.id: h for h in session.scalars(select(HCP).where(HCP.id.in_({p.hcp_id for p in pairs})))} \
        if pairs else {}
    groups: dict[str, list[HCP]] = {}
    for k, hcp_id in pairs:
        groups.setdefault(k, []).append(hcps[hcp_id])
    return [DuplicateGroup(rule, _label(rule, k, members), members) for k, members in groups.items()]


def _label(rule: str, key: str, members: list[HCP]) -> str:
    if rule == "email":
        return "Same email address"
    if rule == "name_postal":
        first = members[0]
        return f"{first.first_name} {first.last_name}, postal code {(first.postal_code or '')[:5]}"
    kind, _, number = key.partition("|")
    return f"Licence {number} ({kind.removeprefix('licence:')})"
