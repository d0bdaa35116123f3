"""The segment API: a marketer saves segments; everyone reads them."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import select

from crm.auth.context import actor, api_auth, viewer
from crm.extensions import db
from crm.openapi import doc
from crm.schemas import PageArgs, decode_cursor, encode_cursor, load_args, load_body, page
from crm.segments import services
from crm.segments.models import Segment
from crm.segments.schemas import SegmentIn, SegmentOut, SegmentPage

bp = Blueprint("segments_api", __name__, url_prefix="/api/v1")
TAGS = ["segments"]


@bp.post("/segments")
@doc("Save a segment (a filter over HCPs)", tags=TAGS, body=SegmentIn, responses={201: SegmentOut},
     errors=(400, 401, 403, 409, 422))
@api_auth
def create_segment():
    """Marketer. Criteria combine with AND, values of one criterion with OR; at least one criterion. The HCPs
    it holds are worked out whenever it is used (campaigns, engagement plans, insights). A name in use: 409."""
    data = load_body(SegmentIn())
    segment = services.create_segment(db.session, actor(), viewer(), data)
    return SegmentOut().dump(services.segment_dict(segment, services.segment_size(db.session, segment))), 201


@bp.get("/segments")
@doc("Segments, newest first, each with how many HCPs it holds now", tags=TAGS, query=PageArgs,
     responses={200: SegmentPage}, errors=(401, 422))
@api_auth
def list_segments():
    args = load_args(PageArgs())
    query = select(Segment).order_by(Segment.id.desc()).limit(args["limit"] + 1)
    if args["cursor"]:
        (last_id,) = decode_cursor(args["cursor"], (int,))
        query = query.where(Segment.id < last_id)
    rows = list(db.session.scalars(query))
    more = len(rows) > args["limit"]
    rows = rows[:args["limit"]]
    sizes = services.segment_sizes(db.session, rows)
    items = [SegmentOut().dump(services.segment_dict(s, sizes[s.id])) for s in rows]
    return page(items, encode_cursor(rows[-1].id) if more else None)


@bp.get("/segments/<int:segment_id>")
@doc("One segment with how many HCPs it holds now", tags=TAGS, responses={200: SegmentOut}, errors=(401, 404))
@api_auth
def get_segment(segment_id: int):
    segment = services.get_segment(db.session, segment_id)
    return SegmentOut().dump(services.segment_dict(segment, services.segment_size(db.session, segment)))
