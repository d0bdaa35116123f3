"""Visits over JSON: create a draft, edit it, submit it, amend a submitted one, read and list."""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, request

from crm.auth.context import actor, api_auth, viewer
from crm.errors import Invalid
from crm.extensions import db
from crm.openapi import doc
from crm.schemas import load_args, load_body, page
from crm.visits import services
from crm.visits.models import Visit
from crm.visits.schemas import (
    AmendSchema,
    SubmitSchema,
    VisitCreateSchema,
    VisitListArgs,
    VisitOutSchema,
    VisitPageSchema,
    VisitUpdateSchema,
)

bp = Blueprint("visits_api", __name__, url_prefix="/api/v1/visits")

_TAGS = ["visits"]
IDEMPOTENCY_HEADER = "Idempotency-Key"


def _out(visit: Visit, *, is_read: bool = False) -> dict:
    amended_by_id = services.amended_by(db.session, [visit.id]).get(visit.id)
    return VisitOutSchema().dump(services.visible_visit(db.session, viewer(), visit, amended_by_id, is_read=is_read))


@bp.post("")
@api_auth
@doc("Create a draft visit", tags=_TAGS, body=VisitCreateSchema,
     responses={201: VisitOutSchema, 200: "A repeat with the same Idempotency-Key and body: the visit it created"},
     errors=(400, 401, 403, 404, 413, 415, 422))
def create():
    """Field force for HCPs (and attendees) in their own territories; Medical Affairs anywhere (a medical
    visit). Unknown skus are 422; an unknown HCP is 404. Samples name a sample product, a lot of it that is
    not expired on the visit's day and a quantity up to the product's per-visit maximum (422 on
    `samples.N.sku|lot|quantity`); a blank signature pad is 422 on `signature`.

    Send an `Idempotency-Key` header (1 to 200 printable characters, per user) from an outside tool: a
    repeat of the key with the same body answers 200 with the visit it created; the same key with another
    body is 422 on `Idempotency-Key`."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    data = load_body(VisitCreateSchema())
    if key is None:
        return _out(services.create_visit(db.session, actor(), viewer(), data)), 201
    key = key.strip()
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise Invalid(errors={IDEMPOTENCY_HEADER: ["must be 1 to 200 printable characters"]})
    fingerprint = hashlib.sha256(json.dumps(request.get_json(), sort_keys=True, separators=(",", ":"))
                                 .encode()).hexdigest()
    visit, replayed = services.create_visit_once(db.session, actor(), viewer(), data, idempotency_key=key,
                                                 request_hash=fingerprint)
    return _out(visit), 200 if replayed else 201


@bp.get("")
@api_auth
@doc("List visits", tags=_TAGS, query=VisitListArgs, responses={200: VisitPageSchema}, errors=(401, 422))
def index():
    """Newest first; ``mine=true&status=draft`` gives the caller's drafts. Content of medical visits is
    withheld from field force and marketing, as on the timeline."""
    args = load_args(VisitListArgs())
    rows, next_cursor = services.list_visits(
        db.session,
        owner_id=actor().id if args["mine"] else None,
        status=args["status"],
        hcp_id=args["hcp_id"],
        limit=args["limit"],
        cursor=args["cursor"],
    )
    later = services.amended_by(db.session, [v.id for v in rows])
    items = [VisitOutSchema().dump(v) for v in services.visible_visits(db.session, viewer(), rows, later)]
    return page(items, next_cursor)


@bp.get("/<int:visit_id>")
@api_auth
@doc("One visit", tags=_TAGS, responses={200: VisitOutSchema}, errors=(401, 404))
def show(visit_id: int):
    """Any internal role may read a visit; the signature image is never returned (``signed`` says
    whether there is one)."""
    return _out(services.get_visit(db.session, visit_id), is_read=True)


@bp.patch("/<int:visit_id>")
@api_auth
@doc("Edit a draft visit (owner only)", tags=_TAGS, body=VisitUpdateSchema, responses={200: VisitOutSchema},
     errors=(400, 401, 403, 404, 409, 413, 415, 422))
def update(visit_id: int):
    """Only the fields sent change. ``version`` (optional) must match the stored one, else 409; a
    submitted visit is 409 (amend it instead)."""
    data = load_body(VisitUpdateSchema())
    expected = data.pop("version", None)
    visit = services.get_visit(db.session, visit_id)
    services.update_visit(db.session, actor(), viewer(), visit, data, expected_version=expected)
    return _out(visit)


@bp.post("/<int:visit_id>/submit")
@api_auth
@doc("Submit a draft: lock it and put it on the timeline", tags=_TAGS, body=SubmitSchema,
     responses={200: VisitOutSchema}, errors=(400, 401, 403, 404, 409, 413, 415, 422))
def submit(visit_id: int):
    """Samples need the HCP's signature (on the draft or in this body): else 422 on ``signature``.
    Submitting twice is 409. The body may be left out."""
    data = load_body(SubmitSchema()) if request.content_length or request.is_json else {}
    visit = services.get_visit(db.session, visit_id)
    services.submit_visit(db.session, actor(), viewer(), visit, signature=data.get("signature"))
    return _out(visit)


@bp.post("/<int:visit_id>/amend")
@api_auth
@doc("Amend a submitted visit with a reason", tags=_TAGS, body=AmendSchema, responses={201: VisitOutSchema},
     errors=(400, 401, 403, 404, 409, 413, 415, 422))
def amend(visit_id: int):
    """Creates a new submitted visit with the changes; its timeline item supersedes the old one, and
    both stay. The owner may amend, and Medical Affairs may amend medical visits."""
    data = load_body(AmendSchema())
    visit = services.get_visit(db.session, visit_id)
    new = services.amend_visit(db.session, actor(), viewer(), visit, data["changes"], data["reason"])
    return _out(new), 201
