"""The timeline API: one HCP's timeline and contact-fatigue strip, the interaction feed, one item."""

from __future__ import annotations

from flask import Blueprint

from crm.auth.context import api_auth, viewer
from crm.extensions import db
from crm.openapi import doc
from crm.schemas import load_args, page
from crm.timeline import queries
from crm.timeline.schemas import (
    FatigueStripSchema,
    FeedQuerySchema,
    TimelineItemPageSchema,
    TimelineItemSchema,
    TimelineQuerySchema,
    filters_from_args,
)

bp = Blueprint("timeline_api", __name__, url_prefix="/api/v1")

# Built once: a marshmallow schema costs more to build than to load a query string with.
TIMELINE_QUERY = TimelineQuerySchema()
FEED_QUERY = FeedQuerySchema()


@bp.get("/hcps/<int:hcp_id>/timeline")
@doc("One HCP's timeline, newest first, redacted for the caller", tags=["timeline"], query=TimelineQuerySchema,
     responses={200: TimelineItemPageSchema})
@api_auth
def hcp_timeline(hcp_id: int):
    """Every interaction the HCP took part in, ordered by occurred_at then id, descending, paged by an
    opaque keyset cursor. `channel`, `kind` and `product` may repeat; `since` is inclusive, `until`
    exclusive. Items the caller may not read in full keep their date, channel, kind and owning role and
    say why the rest is withheld."""
    args = load_args(TIMELINE_QUERY, pure=True)
    items, next_cursor = queries.timeline_page(
        db.session, viewer(), hcp_id, filters_from_args(args), args["limit"], args["cursor"]
    )
    if not items:  # a page with items is proof enough that the HCP exists
        queries.require_hcp(db.session, hcp_id)
    return page(items, next_cursor)


@bp.get("/hcps/<int:hcp_id>/fatigue")
@doc("The HCP's contact-fatigue strip", tags=["timeline"], responses={200: FatigueStripSchema},
     errors=(401, 404))
@api_auth
def hcp_fatigue(hcp_id: int):
    """Touches in the last 30 and 90 days per channel and per department, and the last contact per
    channel. Consent changes are not counted as touches."""
    queries.require_hcp(db.session, hcp_id)
    return queries.fatigue_strip(db.session, hcp_id)


@bp.get("/interactions")
@doc("The interaction feed across HCPs", tags=["timeline"], query=FeedQuerySchema,
     responses={200: TimelineItemPageSchema}, errors=(401, 422))
@api_auth
def feed():
    """The same items, redaction and paging as the timeline, across all HCPs; `territory` (code),
    `profession` and `specialty` match any participant."""
    args = load_args(FEED_QUERY, pure=True)
    items, next_cursor = queries.feed_page(db.session, viewer(), filters_from_args(args), args["limit"],
                                           args["cursor"])
    return page(items, next_cursor)


@bp.get("/interactions/<int:interaction_id>")
@doc("One interaction, redacted, with why the caller sees it", tags=["timeline"],
     responses={200: TimelineItemSchema}, errors=(401, 404))
@api_auth
def interaction(interaction_id: int):
    """One item in the timeline shape; `visibility` names the rule that applied."""
    return queries.get_item(db.session, viewer(), interaction_id)
