"""Segments: a marketer saves a filter once; campaigns (through an audience that names the segment),
engagement plans and insights select HCPs with it. Everyone reads segments (they hold no personal data)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from crm.access.policy import Viewer, require_write
from crm.audit import services as audit
from crm.db import DbSession, among
from crm.errors import Conflict, Invalid, NotFound
from crm.hcps.models import HCP
from crm.segments.filters import HcpFilter, clean_criteria, count_matching, criteria_errors, filter_where
from crm.segments.models import Segment
from crm.surveys.services import register_segmenter


def get_segment(session: DbSession, segment_id: int) -> Segment:
    segment = session.get(Segment, segment_id)
    if segment is None:
        raise NotFound(f"Segment {segment_id} does not exist.")
    return segment


def segment_where(segment: Segment) -> Any:
    """The SQL condition on ``HCP`` for the HCPs the segment means now."""
    return filter_where(HcpFilter.of(segment))


def segment_size(session: DbSession, segment: Segment) -> int:
    return count_matching(session, segment_where(segment))


def segment_sizes(session: DbSession, segments: Sequence[Segment]) -> dict[int, int]:
    return {s.id: segment_size(session, s) for s in segments}


def create_segment(session: DbSession, actor: Any, viewer: Viewer, data: dict[str, Any]) -> Segment:
    """Save a segment (marketer). At least one criterion; professions, tiers and territory codes must
    exist; a name in use is a conflict."""
    require_write(viewer, "segment.write")
    criteria = clean_criteria(data)
    errors = criteria_errors(session, criteria)
    name = (data.get("name") or "").strip()
    if not name:
        errors["name"] = ["must not be empty"]
    if not any(criteria.values()):
        errors["segment"] = ["choose at least one criterion (profession, specialty, territory, tag or tier)"]
    if errors:
        raise Invalid("The segment cannot be saved.", errors=errors)
    if session.scalar(select(Segment.id).where(Segment.name == name[:200])) is not None:
        raise Conflict(f"A segment named {name!r} exists already.")
    segment = Segment(name=name[:200], description=(data.get("description") or "").strip()[:500],
                      created_by_id=actor.id, **criteria)
    try:
        with session.begin_nested():  # two saves of one name at once: the unique constraint decides
            session.add(segment)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"A segment named {name!r} exists already.") from exc
    audit.record(session, actor, "segment.create", "segment", segment.id,
                 audit.created({"name": segment.name, "description": segment.description, **criteria}))
    return segment


def segments_of(session: DbSession, hcp_ids: list[int]) -> dict[int, list[str]]:
    """The saved segments (names) each of ``hcp_ids`` belongs to now, one query per segment through the
    filter builder. Survey results break down by it (``crm.surveys.services.register_segmenter``)."""
    out: dict[int, list[str]] = {}
    if not hcp_ids:
        return out
    for segment in session.scalars(select(Segment).order_by(Segment.name, Segment.id)):
        where = segment_where(segment)
        if where is None:
            continue
        for hcp_id in session.scalars(select(HCP.id).where(where, among(session, HCP.id, hcp_ids))):
            out.setdefault(hcp_id, []).append(segment.name)
    return out


register_segmenter("segment", segments_of)


def segment_dict(segment: Segment, hcp_count: int) -> dict[str, Any]:
    user = segment.created_by
    return {"id": segment.id, "name": segment.name, "description": segment.description,
            **HcpFilter.of(segment).as_dict(), "hcp_count": hcp_count,
            "created_by": None if user is None else {"id": user.id, "name": user.name, "role": user.role},
            "created_at": segment.created_at}
