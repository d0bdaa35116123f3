"""HCP and HCO master data over JSON: search, create, read, update (HCPs); list and read (HCOs)."""

from __future__ import annotations

from flask import Blueprint, url_for

from crm.auth.context import actor, api_auth, viewer
from crm.extensions import db
from crm.hcps import services
from crm.hcps.schemas import (
    HCOOutSchema,
    HCOPageSchema,
    HCOQuerySchema,
    HCPCreateSchema,
    HCPOutSchema,
    HCPPageSchema,
    HCPQuerySchema,
    HCPUpdateSchema,
    MergeOutSchema,
    MergeSchema,
)
from crm.openapi import doc
from crm.schemas import load_args, load_body, page

bp = Blueprint("hcps_api", __name__, url_prefix="/api/v1")


@bp.get("/hcps")
@api_auth
@doc("Search HCPs by name, identifier or email; filter by territory, profession, specialty", tags=["hcps"],
     query=HCPQuerySchema, responses={200: HCPPageSchema}, errors=(401, 422))
def list_hcps():
    """Every role may search every HCP; `mine=true` keeps the viewer's territories. Merged HCPs are left out."""
    args = load_args(HCPQuerySchema())
    hcps, next_cursor = services.search_hcps(
        db.session, viewer(), q=args.get("q"), territory_code=args.get("territory"),
        profession=args.get("profession"), specialty=args.get("specialty"), mine=args["mine"],
        limit=args["limit"], cursor=args["cursor"],
    )
    return page(services.hcp_public_dicts(db.session, viewer(), hcps), next_cursor)


@bp.post("/hcps")
@api_auth
@doc("Create an HCP (admin anywhere; field rep in own territories)", tags=["hcps"], body=HCPCreateSchema,
     responses={201: HCPOutSchema}, errors=(400, 401, 403, 409, 413, 415, 422))
def create_hcp():
    data = load_body(HCPCreateSchema())
    hcp = services.create_hcp(db.session, actor(), viewer(), data)
    headers = {"Location": url_for(".get_hcp", hcp_id=hcp.id)}
    return services.hcp_public_dict(db.session, viewer(), hcp), 201, headers


@bp.get("/hcps/<int:hcp_id>")
@api_auth
@doc("One HCP, contact data clear or masked for the viewer", tags=["hcps"], responses={200: HCPOutSchema},
     errors=(401, 404))
def get_hcp(hcp_id: int):
    """A merged HCP is still returned, with `merged_into` and `merged_into_url` naming the survivor."""
    hcp = services.get_hcp(db.session, hcp_id)
    return services.hcp_public_dict(db.session, viewer(), hcp)


@bp.patch("/hcps/<int:hcp_id>")
@api_auth
@doc("Change some fields of an HCP; send back the version you read", tags=["hcps"], body=HCPUpdateSchema,
     responses={200: HCPOutSchema}, errors=(400, 401, 403, 404, 409, 413, 415, 422))
def update_hcp(hcp_id: int):
    """Only the fields sent change. A stale `version` is 409 and nothing is written."""
    hcp = services.get_hcp(db.session, hcp_id)
    data = load_body(HCPUpdateSchema())
    expected = data.pop("version")
    services.update_hcp(db.session, actor(), viewer(), hcp, data, expected)
    return services.hcp_public_dict(db.session, viewer(), hcp)


@bp.post("/hcps/<int:hcp_id>/merge")
@api_auth
@doc("Merge a duplicate HCP into this one (admin)", tags=["hcps"], body=MergeSchema,
     responses={200: MergeOutSchema}, errors=(400, 401, 403, 404, 409, 413, 415, 422))
def merge_hcp(hcp_id: int):
    """The HCP in the path survives and takes the loser's timeline, consents, affiliations and
    identifiers; the loser points to it. Two records with different national identifiers (NPI,
    national id) are 409 with `conflicting_identifiers`, unless `override_identifier_conflict` is true
    and `override_reason` says why; the override is kept in the merge's audit record."""
    from crm.hcps.merge import merge_hcps

    data = load_body(MergeSchema())
    survivor = services.get_hcp(db.session, hcp_id)
    loser = services.get_hcp(db.session, data["loser_id"])
    result = merge_hcps(db.session, actor(), survivor, loser, data["reason"],
                        override_identifier_conflict=data["override_identifier_conflict"],
                        override_reason=data["override_reason"])
    return MergeOutSchema().dump({
        "survivor_id": result.survivor_id, "loser_id": result.loser_id, "moved": result.moved,
        "dropped": result.dropped, "identifier_conflicts_overridden": result.conflicts_overridden,
        "audit_id": result.audit_id,
    })


@bp.get("/hcos")
@api_auth
@doc("List HCOs with their affiliated HCP ids", tags=["hcos"], query=HCOQuerySchema,
     responses={200: HCOPageSchema}, errors=(401, 422))
def list_hcos():
    args = load_args(HCOQuerySchema())
    hcos, next_cursor = services.list_hcos(
        db.session, q=args.get("q"), kind=args.get("kind"), territory_code=args.get("territory"),
        limit=args["limit"], cursor=args["cursor"],
    )
    return page(services.hco_public_dicts(db.session, hcos), next_cursor)


@bp.get("/hcos/<int:hco_id>")
@api_auth
@doc("One HCO with its affiliated HCP ids", tags=["hcos"], responses={200: HCOOutSchema}, errors=(401, 404))
def get_hco(hco_id: int):
    hco = services.get_hco(db.session, hco_id)
    return services.hco_public_dicts(db.session, [hco])[0]
