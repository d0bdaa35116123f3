"""Segment pages: the list with how many HCPs each holds now, a marketer's form, and one segment with the
plans and campaign audiences that use it."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy import select

from crm.access.policy import write_decision
from crm.auth.context import actor, page_auth, viewer
from crm.campaigns.models import Audience
from crm.errors import Conflict, Invalid
from crm.extensions import db
from crm.hcps.models import TIERS, Territory
from crm.hcps.professions import PROFESSIONS
from crm.plans.models import EngagementPlan
from crm.segments import services
from crm.segments.filters import HcpFilter, describe
from crm.segments.models import Segment

bp = Blueprint("segments_pages", __name__, url_prefix="/segments")


def _lines(name: str) -> list[str]:
    out: list[str] = []
    for raw in request.form.getlist(name):
        out.extend(part.strip() for part in raw.replace("\n", ",").split(","))
    return [v for v in out if v]


def _territory_names() -> dict[str, str]:
    return dict(db.session.execute(select(Territory.code, Territory.name)).all())


def _index(errors: list[str] | None = None, status: int = 200):
    segments = list(db.session.scalars(select(Segment).order_by(Segment.name).limit(500)))
    names = _territory_names()
    return render_template(
        "segments/index.html", segments=segments, sizes=services.segment_sizes(db.session, segments),
        described={s.id: describe(HcpFilter.of(s), names) for s in segments},
        territories=sorted(names.items()), professions=PROFESSIONS, tiers=TIERS, errors=errors or [],
        form=request.form, can_write=write_decision(viewer(), "segment.write").allowed), status


@bp.get("")
@page_auth()
def index():
    return _index()


@bp.post("")
@page_auth("marketer")
def create():
    data = {"name": request.form.get("name", ""), "description": request.form.get("description", ""),
            "professions": request.form.getlist("professions"), "specialties": _lines("specialties"),
            "territory_codes": request.form.getlist("territory_codes"), "tags": _lines("tags"),
            "tiers": request.form.getlist("tiers")}
    try:
        segment = services.create_segment(db.session, actor(), viewer(), data)
    except Invalid as exc:
        return _index([f"{k.replace('_', ' ')}: {'; '.join(v)}" for k, v in exc.errors.items()] or [exc.detail], 422)
    except Conflict as exc:
        return _index([exc.detail], 409)
    return redirect(url_for(".show", segment_id=segment.id), code=303)


@bp.get("/<int:segment_id>")
@page_auth()
def show(segment_id: int):
    segment = services.get_segment(db.session, segment_id)
    plans = list(db.session.scalars(select(EngagementPlan).where(EngagementPlan.segment_id == segment.id)
                                    .order_by(EngagementPlan.cycle_start.desc()).limit(100)))
    audiences = list(db.session.scalars(select(Audience).where(Audience.segment_id == segment.id)
                                        .order_by(Audience.id.desc()).limit(100)))
    return render_template("segments/show.html", segment=segment, size=services.segment_size(db.session, segment),
                           criteria=describe(HcpFilter.of(segment), _territory_names()), plans=plans,
                           audiences=audiences)
